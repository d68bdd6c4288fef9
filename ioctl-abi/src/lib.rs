//! The ABI of cowdax's private ioctls, shared by the daemon
//! (`src/fuse/ioctl.rs`), the `cowdax` tools (`src/cli/ioctl_client.rs`,
//! through `cowdax::ioctl_abi`) and the LD_PRELOAD shim (`preload/`). A
//! workspace crate of its own, depending on `std` and `libc` only, so the
//! shim does not pull in the main crate. It is also the one place that
//! computes ioctl command numbers (`_IOC`, `_IOC_SIZE`, …).
//!
//! FUSE forwards ioctls on files of a mount as *restricted* ioctls: the
//! kernel derives direction and size from the command number and copies
//! exactly `_IOC_SIZE` bytes in and out, with no embedded pointers and at
//! most 16383 bytes. So every command here is `_IOWR` on one fixed-size
//! argument block that carries both the request and the reply fields.
//!
//! Layout rules (checked by the tests at the bottom):
//! * every block starts with an 8-byte [`Header`]: magic `CDAX`, ABI
//!   version, block size in bytes; a block with a wrong magic, version or
//!   size is rejected (`EINVAL`) before any field is used;
//! * all integers are little-endian at fixed offsets, encoded and decoded
//!   field by field (no transmutes, no host-endian reads);
//! * all offsets and lengths are in bytes; physical offsets are byte
//!   offsets into the data region of the cowdax image.
//!
//! Type letter: `0xCD`. The VFS intercepts `'f'`, `'X'`, `0x94` (btrfs,
//! FICLONE & co.), `'T'`, `0x15` and `0x21`-style numbers before a
//! filesystem sees them; `0xCD` is used by no VFS ioctl (the only entry in
//! Documentation/userspace-api/ioctl/ioctl-number.rst is the removed
//! reiserfs), so these numbers reach the FUSE server.

/// `"CDAX"` read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"CDAX");
/// Bumped on any incompatible layout change.
pub const VERSION: u16 = 1;
/// The ioctl type letter of every cowdax command.
pub const IOCTL_TYPE: u8 = 0xCD;
/// Largest argument a restricted FUSE ioctl may carry (`_IOC_SIZE` is 14 bits).
pub const RESTRICTED_IOCTL_MAX_BYTES: usize = 16383;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_DIRBITS: u32 = 2;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
/// `_IOC_NONE`: no argument block.
pub const IOC_NONE: u32 = 0;
/// `_IOC_WRITE`: userspace writes the block, the kernel reads it.
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: the kernel writes the block back.
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)` as the Linux uapi headers compute it (the
/// generic layout used by x86, arm and riscv).
pub const fn ioc(dir: u32, ioctl_type: u8, nr: u8, size_bytes: usize) -> u32 {
    assert!(size_bytes <= RESTRICTED_IOCTL_MAX_BYTES);
    (dir << IOC_DIRSHIFT)
        | ((size_bytes as u32) << IOC_SIZESHIFT)
        | ((ioctl_type as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
}

/// `_IOWR(type, nr, size)`.
pub const fn iowr(ioctl_type: u8, nr: u8, size_bytes: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ioctl_type, nr, size_bytes)
}

/// `_IOW(type, nr, size)`.
pub const fn iow(ioctl_type: u8, nr: u8, size_bytes: usize) -> u32 {
    ioc(IOC_WRITE, ioctl_type, nr, size_bytes)
}

/// `_IOC_SIZE(cmd)`.
pub const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)) as usize
}

/// `_IOC_TYPE(cmd)`.
pub const fn ioc_type(cmd: u32) -> u8 {
    ((cmd >> IOC_TYPESHIFT) & ((1 << IOC_TYPEBITS) - 1)) as u8
}

/// `_IOC_DIR(cmd)`: [`IOC_NONE`] or a combination of [`IOC_WRITE`] and
/// [`IOC_READ`].
pub const fn ioc_dir(cmd: u32) -> u32 {
    (cmd >> IOC_DIRSHIFT) & ((1 << IOC_DIRBITS) - 1)
}

/// Why an argument block was rejected. Converted to an errno only at the
/// boundary ([`AbiError::errno`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiError {
    /// The block has the wrong length for its command.
    Size { expected: usize, actual: usize },
    /// The block does not start with [`MAGIC`].
    Magic(u32),
    /// The block's ABI version is not [`VERSION`].
    Version(u16),
    /// A count field exceeds the capacity of the block.
    Count { max: u32, actual: u32 },
}

impl std::fmt::Display for AbiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbiError::Size { expected, actual } => {
                write!(f, "argument block is {actual} bytes, expected {expected}")
            }
            AbiError::Magic(m) => write!(f, "bad argument magic {m:#010x}"),
            AbiError::Version(v) => {
                write!(f, "ABI version {v} is not supported (this is {VERSION})")
            }
            AbiError::Count { max, actual } => {
                write!(f, "count {actual} exceeds the block's capacity {max}")
            }
        }
    }
}

impl std::error::Error for AbiError {}

impl AbiError {
    pub fn errno(&self) -> i32 {
        libc::EINVAL
    }
}

/// Little-endian field reader over a block of known length. Every read is
/// bounds-checked by construction: decoders first check the block length
/// against the fixed size, and all offsets are constants below it.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.bytes.get(self.pos..self.pos + N) {
            out.copy_from_slice(src);
        }
        self.pos += N;
        out
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
}

/// Little-endian field writer into a zeroed block of the fixed size.
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn new(size: usize) -> Writer {
        Writer {
            bytes: Vec::with_capacity(size),
        }
    }
    fn put(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    fn header(&mut self, size: usize) {
        self.u32(MAGIC);
        self.u16(VERSION);
        self.u16(size as u16);
    }
    fn finish(mut self, size: usize) -> Vec<u8> {
        debug_assert!(self.bytes.len() <= size);
        self.bytes.resize(size, 0);
        self.bytes
    }
}

/// Checks length, magic, version and the recorded size of a block.
fn open_block(bytes: &[u8], size: usize) -> Result<Reader<'_>, AbiError> {
    if bytes.len() != size {
        return Err(AbiError::Size {
            expected: size,
            actual: bytes.len(),
        });
    }
    let mut r = Reader::new(bytes);
    let magic = r.u32();
    if magic != MAGIC {
        return Err(AbiError::Magic(magic));
    }
    let version = r.u16();
    if version != VERSION {
        return Err(AbiError::Version(version));
    }
    let recorded = r.u16() as usize;
    if recorded != size {
        return Err(AbiError::Size {
            expected: size,
            actual: recorded,
        });
    }
    Ok(r)
}

/// Size of the common header in bytes.
pub const HEADER_BYTES: usize = 8;

/// A 128-bit capability naming one open file handle of one mount.
pub type Token = [u8; 16];

// ---------------------------------------------------------------- GET_TOKEN

/// Token flag: the handle was opened for reading.
pub const TOKEN_READABLE: u32 = 1;
/// Token flag: the handle was opened for writing.
pub const TOKEN_WRITABLE: u32 = 2;

/// `GET_TOKEN`, issued on the fd to be named. Reply only: the daemon fills
/// every field. The token is random, bound to the open file handle the
/// ioctl came through, and dies when that handle is released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenArgs {
    /// Random per daemon: identifies the mount (a token of another mount
    /// is answered with `EXDEV`).
    pub mount_id: u64,
    pub token: Token,
    pub ino: u64,
    /// [`TOKEN_READABLE`] | [`TOKEN_WRITABLE`].
    pub flags: u32,
}

impl TokenArgs {
    pub const SIZE: usize = 48;
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(Self::SIZE);
        w.header(Self::SIZE);
        w.u64(self.mount_id);
        w.put(&self.token);
        w.u64(self.ino);
        w.u32(self.flags);
        w.finish(Self::SIZE)
    }
    pub fn decode(bytes: &[u8]) -> Result<TokenArgs, AbiError> {
        let mut r = open_block(bytes, Self::SIZE)?;
        Ok(TokenArgs {
            mount_id: r.u64(),
            token: r.take(),
            ino: r.u64(),
            flags: r.u32(),
        })
    }
}

// -------------------------------------------------------------- CLONE_RANGE

/// `CLONE_RANGE`, issued on the destination fd (opened for writing).
/// `length == 0` clones to the source's EOF (as FICLONERANGE). Offsets
/// must be block-aligned; the length too, unless the range ends at the
/// source's EOF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloneArgs {
    pub src_mount_id: u64,
    pub src_token: Token,
    pub src_offset: u64,
    pub dst_offset: u64,
    pub length: u64,
    /// Reply: bytes now shared.
    pub bytes_cloned: u64,
}

impl CloneArgs {
    pub const SIZE: usize = 64;
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(Self::SIZE);
        w.header(Self::SIZE);
        w.u64(self.src_mount_id);
        w.put(&self.src_token);
        w.u64(self.src_offset);
        w.u64(self.dst_offset);
        w.u64(self.length);
        w.u64(self.bytes_cloned);
        w.finish(Self::SIZE)
    }
    pub fn decode(bytes: &[u8]) -> Result<CloneArgs, AbiError> {
        let mut r = open_block(bytes, Self::SIZE)?;
        Ok(CloneArgs {
            src_mount_id: r.u64(),
            src_token: r.take(),
            src_offset: r.u64(),
            dst_offset: r.u64(),
            length: r.u64(),
            bytes_cloned: r.u64(),
        })
    }
}

// ------------------------------------------------------------- DEDUPE_RANGE

/// Dedupe status: the ranges were identical and now share blocks.
pub const DEDUPE_SAME: u32 = 0;
/// Dedupe status: the contents differ; nothing changed.
pub const DEDUPE_DIFFERS: u32 = 1;

/// `DEDUPE_RANGE`, issued on the source fd (opened for reading), one
/// destination named by its token. FIDEDUPERANGE semantics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DedupeArgs {
    pub dst_mount_id: u64,
    pub dst_token: Token,
    pub src_offset: u64,
    pub dst_offset: u64,
    pub length: u64,
    /// Reply: [`DEDUPE_SAME`] or [`DEDUPE_DIFFERS`].
    pub status: u32,
    /// Reply: bytes now shared.
    pub bytes_deduped: u64,
}

impl DedupeArgs {
    pub const SIZE: usize = 72;
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(Self::SIZE);
        w.header(Self::SIZE);
        w.u64(self.dst_mount_id);
        w.put(&self.dst_token);
        w.u64(self.src_offset);
        w.u64(self.dst_offset);
        w.u64(self.length);
        w.u32(self.status);
        w.u32(0);
        w.u64(self.bytes_deduped);
        w.finish(Self::SIZE)
    }
    pub fn decode(bytes: &[u8]) -> Result<DedupeArgs, AbiError> {
        let mut r = open_block(bytes, Self::SIZE)?;
        let dst_mount_id = r.u64();
        let dst_token = r.take();
        let src_offset = r.u64();
        let dst_offset = r.u64();
        let length = r.u64();
        let status = r.u32();
        let _reserved = r.u32();
        Ok(DedupeArgs {
            dst_mount_id,
            dst_token,
            src_offset,
            dst_offset,
            length,
            status,
            bytes_deduped: r.u64(),
        })
    }
}

// -------------------------------------------------------------- GET_EXTENTS

/// Extent flag: another reference maps (part of) these blocks.
pub const EXTENT_SHARED: u32 = 1;
/// Extent flag: allocated, never written (reads as zeros).
pub const EXTENT_UNWRITTEN: u32 = 2;
/// Extent flag: a hole (no physical blocks; `phys_offset` is 0).
pub const EXTENT_HOLE: u32 = 4;
/// Reply flag: this page holds the file's last extent.
pub const PAGE_LAST: u32 = 1;

/// One extent of a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtentRecord {
    pub file_offset: u64,
    pub phys_offset: u64,
    pub length: u64,
    pub flags: u32,
}

impl ExtentRecord {
    pub const SIZE: usize = 32;
}

/// Extents per `GET_EXTENTS` page: as many as fit the restricted ioctl limit.
pub const EXTENTS_PER_PAGE: usize = 500;

/// `GET_EXTENTS`, issued on the file. Request: `start_offset`,
/// `max_extents` (≤ [`EXTENTS_PER_PAGE`], 0 = as many as fit). Reply: the
/// extents that end after `start_offset`, in file order; `next_offset` to
/// continue; [`PAGE_LAST`] when no extent follows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtentsArgs {
    pub start_offset: u64,
    pub max_extents: u32,
    pub flags: u32,
    pub file_size: u64,
    pub next_offset: u64,
    pub extents: Vec<ExtentRecord>,
}

impl ExtentsArgs {
    const FIXED: usize = 48;
    pub const SIZE: usize = Self::FIXED + EXTENTS_PER_PAGE * ExtentRecord::SIZE;
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(Self::SIZE);
        w.header(Self::SIZE);
        w.u64(self.start_offset);
        w.u32(self.max_extents);
        let count = self.extents.len().min(EXTENTS_PER_PAGE);
        w.u32(count as u32);
        w.u32(self.flags);
        w.u32(0);
        w.u64(self.file_size);
        w.u64(self.next_offset);
        for e in &self.extents[..count] {
            w.u64(e.file_offset);
            w.u64(e.phys_offset);
            w.u64(e.length);
            w.u32(e.flags);
            w.u32(0);
        }
        w.finish(Self::SIZE)
    }
    pub fn decode(bytes: &[u8]) -> Result<ExtentsArgs, AbiError> {
        let mut r = open_block(bytes, Self::SIZE)?;
        let start_offset = r.u64();
        let max_extents = r.u32();
        let count = r.u32();
        let flags = r.u32();
        let _reserved = r.u32();
        let file_size = r.u64();
        let next_offset = r.u64();
        check_count(count, EXTENTS_PER_PAGE)?;
        check_count(max_extents, EXTENTS_PER_PAGE)?;
        let mut extents = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let file_offset = r.u64();
            let phys_offset = r.u64();
            let length = r.u64();
            let flags = r.u32();
            let _reserved = r.u32();
            extents.push(ExtentRecord {
                file_offset,
                phys_offset,
                length,
                flags,
            });
        }
        Ok(ExtentsArgs {
            start_offset,
            max_extents,
            flags,
            file_size,
            next_offset,
            extents,
        })
    }
}

fn check_count(count: u32, max: usize) -> Result<(), AbiError> {
    if count as usize > max {
        Err(AbiError::Count {
            max: max as u32,
            actual: count,
        })
    } else {
        Ok(())
    }
}

// -------------------------------------------------------------------- FSMAP

/// One owner of a physical range: file `ino` maps `phys_offset..+length`
/// at `file_offset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsmapRecord {
    pub phys_offset: u64,
    pub length: u64,
    pub ino: u64,
    pub file_offset: u64,
}

impl FsmapRecord {
    pub const SIZE: usize = 32;
}

/// Owner records per `FSMAP` page.
pub const FSMAP_PER_PAGE: usize = 500;

/// `FSMAP`, issued on any file or directory of the mount by root (like
/// XFS's GETFSMAP, it reveals every file's layout). Request: the physical
/// byte range (block-aligned) and `skip`, the number of records of this
/// range already received. Reply: records sorted by (phys, ino, file
/// offset), clipped to the range; `total` records in the range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsmapArgs {
    pub phys_start: u64,
    pub phys_len: u64,
    pub skip: u64,
    pub max_records: u32,
    pub total: u64,
    pub records: Vec<FsmapRecord>,
}

impl FsmapArgs {
    const FIXED: usize = 48;
    pub const SIZE: usize = Self::FIXED + FSMAP_PER_PAGE * FsmapRecord::SIZE;
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(Self::SIZE);
        w.header(Self::SIZE);
        w.u64(self.phys_start);
        w.u64(self.phys_len);
        w.u64(self.skip);
        w.u32(self.max_records);
        let count = self.records.len().min(FSMAP_PER_PAGE);
        w.u32(count as u32);
        w.u64(self.total);
        for rec in &self.records[..count] {
            w.u64(rec.phys_offset);
            w.u64(rec.length);
            w.u64(rec.ino);
            w.u64(rec.file_offset);
        }
        w.finish(Self::SIZE)
    }
    pub fn decode(bytes: &[u8]) -> Result<FsmapArgs, AbiError> {
        let mut r = open_block(bytes, Self::SIZE)?;
        let phys_start = r.u64();
        let phys_len = r.u64();
        let skip = r.u64();
        let max_records = r.u32();
        let count = r.u32();
        let total = r.u64();
        check_count(count, FSMAP_PER_PAGE)?;
        check_count(max_records, FSMAP_PER_PAGE)?;
        let mut records = Vec::with_capacity(count as usize);
        for _ in 0..count {
            records.push(FsmapRecord {
                phys_offset: r.u64(),
                length: r.u64(),
                ino: r.u64(),
                file_offset: r.u64(),
            });
        }
        Ok(FsmapArgs {
            phys_start,
            phys_len,
            skip,
            max_records,
            total,
            records,
        })
    }
}

// -------------------------------------------------------------------- PATHS

/// Bytes of path text one `PATHS` reply carries.
pub const PATHS_BUF_BYTES: usize = 8192;
/// Reply flag: more paths exist than fit (or than `max_paths`).
pub const PATHS_TRUNCATED: u32 = 1;

/// `PATHS`, issued by root on any file or directory of the mount: the
/// paths (relative to the mount root, starting with `/`) of inode `ino`,
/// at most `max_paths`, NUL-terminated one after another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathsArgs {
    pub ino: u64,
    pub max_paths: u32,
    pub flags: u32,
    pub paths: Vec<Vec<u8>>,
}

impl PathsArgs {
    const FIXED: usize = 32;
    pub const SIZE: usize = Self::FIXED + PATHS_BUF_BYTES;

    /// Packs as many whole paths as fit; sets [`PATHS_TRUNCATED`] if some
    /// did not.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(PATHS_BUF_BYTES);
        let mut count = 0u32;
        let mut flags = self.flags;
        for path in &self.paths {
            if path.contains(&0) || buf.len() + path.len() + 1 > PATHS_BUF_BYTES {
                flags |= PATHS_TRUNCATED;
                break;
            }
            buf.extend_from_slice(path);
            buf.push(0);
            count += 1;
        }
        let mut w = Writer::new(Self::SIZE);
        w.header(Self::SIZE);
        w.u64(self.ino);
        w.u32(self.max_paths);
        w.u32(count);
        w.u32(buf.len() as u32);
        w.u32(flags);
        w.put(&buf);
        w.finish(Self::SIZE)
    }
    pub fn decode(bytes: &[u8]) -> Result<PathsArgs, AbiError> {
        let mut r = open_block(bytes, Self::SIZE)?;
        let ino = r.u64();
        let max_paths = r.u32();
        let count = r.u32();
        let used = r.u32();
        let flags = r.u32();
        check_count(used, PATHS_BUF_BYTES)?;
        let buf = bytes
            .get(Self::FIXED..Self::FIXED + used as usize)
            .unwrap_or_default();
        let paths: Vec<Vec<u8>> = buf
            .split(|&b| b == 0)
            .take(count as usize)
            .map(<[u8]>::to_vec)
            .collect();
        if paths.len() != count as usize {
            return Err(AbiError::Count {
                max: paths.len() as u32,
                actual: count,
            });
        }
        Ok(PathsArgs {
            ino,
            max_paths,
            flags,
            paths,
        })
    }
}

// -------------------------------------------------------------------- USAGE

/// `USAGE`, issued on any file or directory of the mount. Reply only.
/// Also the cheap probe that tells a cowdax mount from other FUSE mounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageArgs {
    pub mount_id: u64,
    pub block_size: u64,
    pub logical_bytes: u64,
    pub physical_bytes: u64,
    pub saved_bytes: u64,
    pub metadata_bytes: u64,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Size of the whole region (image or device): physical offsets of
    /// data lie in `0..media_bytes`.
    pub media_bytes: u64,
}

impl UsageArgs {
    pub const SIZE: usize = 80;
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(Self::SIZE);
        w.header(Self::SIZE);
        for v in [
            self.mount_id,
            self.block_size,
            self.logical_bytes,
            self.physical_bytes,
            self.saved_bytes,
            self.metadata_bytes,
            self.total_bytes,
            self.free_bytes,
            self.media_bytes,
        ] {
            w.u64(v);
        }
        w.finish(Self::SIZE)
    }
    pub fn decode(bytes: &[u8]) -> Result<UsageArgs, AbiError> {
        let mut r = open_block(bytes, Self::SIZE)?;
        Ok(UsageArgs {
            mount_id: r.u64(),
            block_size: r.u64(),
            logical_bytes: r.u64(),
            physical_bytes: r.u64(),
            saved_bytes: r.u64(),
            metadata_bytes: r.u64(),
            total_bytes: r.u64(),
            free_bytes: r.u64(),
            media_bytes: r.u64(),
        })
    }
}

// ----------------------------------------------------------------- COUNTERS

/// `COUNTERS`, issued on any file or directory of the mount. Reply only:
/// the daemon's media work counters since it mapped the media
/// (`media::Counters`) and its idle-polling counters
/// (`fuse::idle_poll::IdlePollCounters`), for benchmarks and
/// `cowdax counters`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountersArgs {
    pub mount_id: u64,
    pub bytes_stored: u64,
    pub bytes_persisted: u64,
    pub lines_flushed: u64,
    pub fences: u64,
    pub msyncs: u64,
    pub idle_poll_engagements: u64,
    pub idle_poll_ms: u64,
}

impl CountersArgs {
    pub const SIZE: usize = 72;
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(Self::SIZE);
        w.header(Self::SIZE);
        for v in [
            self.mount_id,
            self.bytes_stored,
            self.bytes_persisted,
            self.lines_flushed,
            self.fences,
            self.msyncs,
            self.idle_poll_engagements,
            self.idle_poll_ms,
        ] {
            w.u64(v);
        }
        w.finish(Self::SIZE)
    }
    pub fn decode(bytes: &[u8]) -> Result<CountersArgs, AbiError> {
        let mut r = open_block(bytes, Self::SIZE)?;
        Ok(CountersArgs {
            mount_id: r.u64(),
            bytes_stored: r.u64(),
            bytes_persisted: r.u64(),
            lines_flushed: r.u64(),
            fences: r.u64(),
            msyncs: r.u64(),
            idle_poll_engagements: r.u64(),
            idle_poll_ms: r.u64(),
        })
    }
}

/// An empty request block (header only, zero fields) of `size` bytes, for
/// reply-only commands.
pub fn request_header(size: usize) -> Vec<u8> {
    let mut w = Writer::new(size);
    w.header(size);
    w.finish(size)
}

// ------------------------------------------------------------ command numbers

pub const GET_TOKEN: u32 = iowr(IOCTL_TYPE, 1, TokenArgs::SIZE);
pub const CLONE_RANGE: u32 = iowr(IOCTL_TYPE, 2, CloneArgs::SIZE);
pub const DEDUPE_RANGE: u32 = iowr(IOCTL_TYPE, 3, DedupeArgs::SIZE);
pub const GET_EXTENTS: u32 = iowr(IOCTL_TYPE, 4, ExtentsArgs::SIZE);
pub const FSMAP: u32 = iowr(IOCTL_TYPE, 5, FsmapArgs::SIZE);
pub const PATHS: u32 = iowr(IOCTL_TYPE, 6, PathsArgs::SIZE);
pub const USAGE: u32 = iowr(IOCTL_TYPE, 7, UsageArgs::SIZE);
pub const COUNTERS: u32 = iowr(IOCTL_TYPE, 8, CountersArgs::SIZE);

// Every block fits a restricted FUSE ioctl and its size fits the header's u16.
const _: () = assert!(ExtentsArgs::SIZE <= RESTRICTED_IOCTL_MAX_BYTES);
const _: () = assert!(FsmapArgs::SIZE <= RESTRICTED_IOCTL_MAX_BYTES);
const _: () = assert!(PathsArgs::SIZE <= RESTRICTED_IOCTL_MAX_BYTES);
const _: () = assert!(HEADER_BYTES + 8 + 16 + 8 + 4 <= TokenArgs::SIZE);
const _: () = assert!(HEADER_BYTES + 8 + 16 + 8 * 4 == CloneArgs::SIZE);
const _: () = assert!(HEADER_BYTES + 8 + 16 + 8 * 3 + 4 + 4 + 8 == DedupeArgs::SIZE);
const _: () = assert!(HEADER_BYTES + 8 * 9 == UsageArgs::SIZE);
const _: () = assert!(HEADER_BYTES + 8 * 8 == CountersArgs::SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_numbers_encode_type_size_and_direction() {
        for (cmd, size) in [
            (GET_TOKEN, TokenArgs::SIZE),
            (CLONE_RANGE, CloneArgs::SIZE),
            (DEDUPE_RANGE, DedupeArgs::SIZE),
            (GET_EXTENTS, ExtentsArgs::SIZE),
            (FSMAP, FsmapArgs::SIZE),
            (PATHS, PathsArgs::SIZE),
            (USAGE, UsageArgs::SIZE),
            (COUNTERS, CountersArgs::SIZE),
        ] {
            assert_eq!(ioc_size(cmd), size);
            assert_eq!(ioc_type(cmd), IOCTL_TYPE);
            assert_eq!(ioc_dir(cmd), IOC_READ | IOC_WRITE, "_IOWR");
        }
        // Same formula as the kernel's headers, as libc carries them.
        assert_eq!(iow(0x94, 9, 4) as libc::c_ulong, libc::FICLONE);
        assert_eq!(iow(0x94, 13, 32) as libc::c_ulong, libc::FICLONERANGE);
        assert_eq!(ioc_dir(iow(0x94, 13, 32)), IOC_WRITE);
        assert_eq!(ioc_dir(ioc(IOC_NONE, IOCTL_TYPE, 1, 0)), IOC_NONE);
    }

    #[test]
    fn blocks_round_trip_with_fixed_sizes() {
        let token = TokenArgs {
            mount_id: 7,
            token: [9; 16],
            ino: 42,
            flags: TOKEN_READABLE,
        };
        let bytes = token.encode();
        assert_eq!(bytes.len(), TokenArgs::SIZE);
        assert_eq!(TokenArgs::decode(&bytes), Ok(token));

        let clone = CloneArgs {
            src_mount_id: 1,
            src_token: [3; 16],
            src_offset: 4096,
            dst_offset: 8192,
            length: u64::MAX,
            bytes_cloned: 5,
        };
        assert_eq!(CloneArgs::decode(&clone.encode()), Ok(clone));

        let dedupe = DedupeArgs {
            dst_mount_id: 2,
            dst_token: [4; 16],
            src_offset: 1,
            dst_offset: 2,
            length: 3,
            status: DEDUPE_DIFFERS,
            bytes_deduped: 6,
        };
        assert_eq!(DedupeArgs::decode(&dedupe.encode()), Ok(dedupe));

        let extents = ExtentsArgs {
            start_offset: 4096,
            max_extents: 3,
            flags: PAGE_LAST,
            file_size: 1 << 40,
            next_offset: 12288,
            extents: vec![
                ExtentRecord {
                    file_offset: 0,
                    phys_offset: 65536,
                    length: 4096,
                    flags: EXTENT_SHARED,
                };
                EXTENTS_PER_PAGE
            ],
        };
        let bytes = extents.encode();
        assert_eq!(bytes.len(), ExtentsArgs::SIZE);
        assert_eq!(ExtentsArgs::decode(&bytes), Ok(extents));

        let fsmap = FsmapArgs {
            phys_start: 0,
            phys_len: 1 << 30,
            skip: 10,
            max_records: 2,
            total: 12,
            records: vec![FsmapRecord {
                phys_offset: 4096,
                length: 8192,
                ino: 5,
                file_offset: 0,
            }],
        };
        assert_eq!(FsmapArgs::decode(&fsmap.encode()), Ok(fsmap));

        let paths = PathsArgs {
            ino: 9,
            max_paths: 4,
            flags: 0,
            paths: vec![b"/a/b".to_vec(), b"/c".to_vec()],
        };
        assert_eq!(PathsArgs::decode(&paths.encode()), Ok(paths));

        let usage = UsageArgs {
            mount_id: 1,
            block_size: 4096,
            logical_bytes: 2,
            physical_bytes: 3,
            saved_bytes: 4,
            metadata_bytes: 5,
            total_bytes: 6,
            free_bytes: 7,
            media_bytes: 8,
        };
        assert_eq!(UsageArgs::decode(&usage.encode()), Ok(usage));
    }

    #[test]
    fn fields_are_little_endian_at_fixed_offsets() {
        let clone = CloneArgs {
            src_offset: 0x0102_0304_0506_0708,
            ..CloneArgs::default()
        };
        let bytes = clone.encode();
        assert_eq!(&bytes[..4], b"CDAX");
        assert_eq!(&bytes[32..40], &[8, 7, 6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn wrong_size_magic_version_and_counts_are_rejected() {
        let good = UsageArgs::default().encode();
        assert!(matches!(
            UsageArgs::decode(&good[..UsageArgs::SIZE - 1]),
            Err(AbiError::Size { .. })
        ));
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 0xff;
        assert!(matches!(
            UsageArgs::decode(&bad_magic),
            Err(AbiError::Magic(_))
        ));
        let mut bad_version = good.clone();
        bad_version[4] = 99;
        assert_eq!(UsageArgs::decode(&bad_version), Err(AbiError::Version(99)));
        let mut bad_recorded = good;
        bad_recorded[6] = 1;
        assert!(matches!(
            UsageArgs::decode(&bad_recorded),
            Err(AbiError::Size { .. })
        ));

        let mut extents = ExtentsArgs::default().encode();
        // count field at offset 20
        extents[20..24].copy_from_slice(&(EXTENTS_PER_PAGE as u32 + 1).to_le_bytes());
        assert!(matches!(
            ExtentsArgs::decode(&extents),
            Err(AbiError::Count { .. })
        ));

        let mut paths = PathsArgs::default().encode();
        // used-bytes field at offset 24
        paths[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            PathsArgs::decode(&paths),
            Err(AbiError::Count { .. })
        ));
        // more paths claimed than present in the buffer
        let mut paths = PathsArgs::default().encode();
        paths[20..24].copy_from_slice(&3u32.to_le_bytes());
        assert!(PathsArgs::decode(&paths).is_err());
    }

    proptest::proptest! {
        /// Any bytes after a valid header decode to a value or an error,
        /// never a panic, and a decoded value re-encodes to a valid block.
        #[test]
        fn decoders_never_panic_on_arbitrary_blocks(
            body in proptest::collection::vec(proptest::num::u8::ANY, 16048),
            size_pick in 0usize..7,
            truncate in 0usize..3,
        ) {
            let sizes = [
                TokenArgs::SIZE,
                CloneArgs::SIZE,
                DedupeArgs::SIZE,
                ExtentsArgs::SIZE,
                FsmapArgs::SIZE,
                PathsArgs::SIZE,
                UsageArgs::SIZE,
            ];
            let size = sizes[size_pick];
            let mut block = request_header(size);
            block[HEADER_BYTES..].copy_from_slice(&body[..size - HEADER_BYTES]);
            block.truncate(size - truncate);
            match size_pick {
                0 => { let _ = TokenArgs::decode(&block).map(|v| v.encode()); }
                1 => { let _ = CloneArgs::decode(&block).map(|v| v.encode()); }
                2 => { let _ = DedupeArgs::decode(&block).map(|v| v.encode()); }
                3 => {
                    if let Ok(v) = ExtentsArgs::decode(&block) {
                        proptest::prop_assert!(ExtentsArgs::decode(&v.encode()).is_ok());
                    }
                }
                4 => {
                    if let Ok(v) = FsmapArgs::decode(&block) {
                        proptest::prop_assert!(FsmapArgs::decode(&v.encode()).is_ok());
                    }
                }
                5 => {
                    if let Ok(v) = PathsArgs::decode(&block) {
                        proptest::prop_assert!(PathsArgs::decode(&v.encode()).is_ok());
                    }
                }
                _ => { let _ = UsageArgs::decode(&block).map(|v| v.encode()); }
            }
        }
    }

    #[test]
    fn paths_that_do_not_fit_are_marked_truncated() {
        let paths = PathsArgs {
            ino: 1,
            max_paths: 100,
            flags: 0,
            paths: vec![vec![b'x'; 5000], vec![b'y'; 5000]],
        };
        let decoded = PathsArgs::decode(&paths.encode()).expect("decodes");
        assert_eq!(decoded.paths.len(), 1);
        assert_eq!(decoded.flags & PATHS_TRUNCATED, PATHS_TRUNCATED);
    }
}
