//! Media layer: the only module with `unsafe` (DESIGN.md §2, §3).
//!
//! Everything above this module sees the region through the [`Media`] trait:
//! copy-in/copy-out access, aligned 8-byte atomic stores, and the two
//! durability primitives `persist(range)` and `fence()`.
//!
//! # Durability contract (all implementations)
//! * `write`/`store_u64` change the *volatile* contents immediately: every later
//!   `read` (from any thread) sees them.
//! * `persist(off, len)` schedules the bytes of that range, as they are now,
//!   for durability (pmem: CLWB/CLFLUSHOPT on each cache line; page-cache
//!   backing: remember the dirty range; [`sim::SimMedia`]: mark lines flushed).
//! * `fence()` returns only when every range passed to `persist` before it is
//!   durable (pmem: SFENCE; page cache: `msync` of the remembered ranges in
//!   the order they were persisted; sim: flushed lines become durable).
//! * On mappings flushed by CPU instructions (devdax, DAX files) a fence only
//!   orders the flushes of its own thread (x86 rule), so `persist` ends with
//!   an SFENCE of its own: a range is durable when `persist` returns there,
//!   and a `fence()` on any thread covers it. See docs/MEDIA.md.
//! * Bytes stored but not persisted-and-fenced may or may not survive a crash,
//!   at cache-line (64-byte) granularity, in any combination. Aligned 8-byte
//!   stores through `store_u64` are never torn.
//!
//! # Read protocol for borrowed slices (DESIGN.md §6)
//! [`Media::with_slice`] lends a `&[u8]` into the mapping for the duration of
//! a callback. The caller must guarantee that no store to that range can
//! happen while the callback runs; the filesystem core guarantees it by
//! holding the owning inode's lock and never writing shared extents in place.

pub mod claim;
pub mod detect;
pub mod flush;
pub mod mmap;
pub mod sim;

use std::fmt;

pub use flush::FlushMethod;
pub use mmap::{MmapMedia, OpenMode};
pub use sim::SimMedia;

/// Size of a CPU cache line: the unit of flushing and of crash tearing.
pub const CACHE_LINE_BYTES: u64 = 64;

/// What kind of backing a [`Media`] maps; decides how persistence works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    /// A devdax character device (`/dev/daxX.Y`): loads/stores + CPU flushes.
    DevDax,
    /// A file on a DAX-mounted filesystem mapped with `MAP_SYNC`.
    DaxFile,
    /// A block device mapped through the page cache (`/dev/pmem0`, loop).
    BlockDevice,
    /// A regular file mapped through the page cache (image file, /dev/shm).
    File,
    /// In-memory simulator used by tests (cache-line crash model).
    Simulated,
}

impl MediaKind {
    /// True when a fence makes stores durable by itself (CPU cache flushes),
    /// so every metadata transaction can be made durable at commit time.
    /// False for page-cache backings, where durability costs an `msync` and
    /// the journal uses group commit.
    pub fn is_byte_persistent(self) -> bool {
        matches!(
            self,
            MediaKind::DevDax | MediaKind::DaxFile | MediaKind::Simulated
        )
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            MediaKind::DevDax => "devdax character device (CPU cache flushes)",
            MediaKind::DaxFile => "file on a DAX filesystem (MAP_SYNC, CPU cache flushes)",
            MediaKind::BlockDevice => "block device via page cache (msync)",
            MediaKind::File => "regular file via page cache (msync)",
            MediaKind::Simulated => "simulated persistent memory",
        };
        f.write_str(s)
    }
}

/// Work counters: how persistence effort is reported honestly on emulated
/// pmem, where time alone flatters us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes written through `write`, `write_zeroes`, `copy_within`, `store_u64`.
    pub bytes_stored: u64,
    /// Bytes passed to `persist`.
    pub bytes_persisted: u64,
    /// Cache lines flushed (CLWB/CLFLUSHOPT/CLFLUSH), or that would have been.
    pub lines_flushed: u64,
    /// Calls of `fence`.
    pub fences: u64,
    /// `msync` system calls issued (page-cache backings only).
    pub msyncs: u64,
}

impl Counters {
    /// Difference `self - earlier`, for measuring one piece of work.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            bytes_stored: self.bytes_stored - earlier.bytes_stored,
            bytes_persisted: self.bytes_persisted - earlier.bytes_persisted,
            lines_flushed: self.lines_flushed - earlier.lines_flushed,
            fences: self.fences - earlier.fences,
            msyncs: self.msyncs - earlier.msyncs,
        }
    }
}

/// Errors of the media layer.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("access {off:#x}+{len:#x} is outside the media (size {size:#x})")]
    OutOfBounds { off: u64, len: u64, size: u64 },
    #[error("offset {0:#x} is not 8-byte aligned")]
    Misaligned(u64),
    #[error("{path}: {msg}")]
    Open { path: String, msg: String },
    // The OS error is part of the message, not a `source`: error chains
    // (anyhow's `{:#}`) would otherwise print it twice.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("msync failed: {0}")]
    Sync(std::io::Error),
    #[error("cannot {operation}: the media is opened read-only")]
    ReadOnly { operation: &'static str },
    #[error("{path}: {msg}")]
    InUse { path: String, msg: String },
    #[error("{0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, MediaError>;

/// Checks that `off..off+len` lies inside a region of `size` bytes.
pub fn check_range(off: u64, len: u64, size: u64) -> Result<()> {
    match off.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(MediaError::OutOfBounds { off, len, size }),
    }
}

/// Byte-addressable persistent region. See the module docs for the contract.
pub trait Media: Send + Sync + 'static {
    /// Size of the region in bytes.
    fn len(&self) -> u64;
    /// Never true for a usable region; present for API symmetry.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// What this region is backed by.
    fn kind(&self) -> MediaKind;
    /// Human-readable description (path and kind) for logs and `dump`.
    fn describe(&self) -> String;
    /// Copy `buf.len()` bytes at `off` out of the region.
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<()>;
    /// Copy `data` into the region at `off` (volatile until persisted).
    fn write(&self, off: u64, data: &[u8]) -> Result<()>;
    /// Store `len` zero bytes at `off`.
    fn write_zeroes(&self, off: u64, len: u64) -> Result<()>;
    /// Copy `len` bytes from `src` to `dst` inside the region (ranges may
    /// overlap; behaves like `memmove`). Used by copy-on-write.
    fn copy_within(&self, src: u64, dst: u64, len: u64) -> Result<()>;
    /// Aligned 8-byte atomic little-endian store (never torn by a crash).
    fn store_u64(&self, off: u64, value: u64) -> Result<()>;
    /// Aligned 8-byte atomic little-endian load.
    fn load_u64(&self, off: u64) -> Result<u64>;
    /// Schedule `off..off+len` for durability; see the module docs.
    fn persist(&self, off: u64, len: u64) -> Result<()>;
    /// Make everything persisted so far durable; see the module docs.
    fn fence(&self) -> Result<()>;
    /// Lend the bytes `off..off+len` to `f` without copying (read protocol in
    /// the module docs). Implementations without a mapping may copy.
    ///
    /// # Contract (what makes the borrowed slice sound)
    /// The method is safe to call, but the mapped implementation hands out a
    /// shared `&[u8]` into memory that stores through this `Media` (from any
    /// thread) could change under it. So every caller must guarantee, and
    /// state at the call site in a `// contract:` comment why:
    /// 1. no store, zeroing, `copy_within` or `store_u64` to any byte of
    ///    `off..off+len` runs, from any thread, while `f` runs;
    /// 2. no other process writes the region meanwhile: cowdax serves an
    ///    image from one process (the in-use mark of `media::claim`); a
    ///    read-only inspector of an image in use could see bytes change, so
    ///    inspectors copy (`read`) rather than borrow;
    /// 3. `f` treats the bytes as untrusted media content (they may be
    ///    damaged) and does not keep the slice (the borrow ends with `f`).
    ///
    /// An out-of-range `off..off+len` is an error, never a slice.
    fn with_slice(&self, off: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> Result<()>;
    /// Snapshot of the work counters.
    fn counters(&self) -> Counters;
}
