//! Filesystem core: a POSIX-shaped API over the store (DESIGN.md §5–§7).
//! No FUSE types, no `unsafe`. Usable as a library by tests, tools and benches.
//!
//! Inode numbers: the root directory is [`ROOT_INO`] (1, as FUSE expects).
//! Every mutating operation is crash-atomic: one journal transaction.

use std::time::SystemTime;

use crate::store::StoreError;

mod access;
pub mod acl;
mod apply;
mod codec;
mod filesystem;
mod inode;
mod limits;
mod locks;
mod ops;
mod privs;
mod space;
mod text;
mod txn;
mod write_plan;

pub use access::{may_access, may_dedupe_into, AtimeRule, MAY_EXEC, MAY_READ, MAY_WRITE};
pub use codec::{CHECKPOINT_VERSION, TXN_VERSION};
pub use filesystem::Fs;
pub use privs::{Caller, Privileged};
pub use text::{list_inodes, list_journal};

/// Inode number.
pub type Ino = u64;

/// The root directory's inode number.
pub const ROOT_INO: Ino = 1;

/// Longest file name component, in bytes.
pub const NAME_MAX: usize = 255;

/// Errors of the filesystem core. `errno()` is the one place they become
/// errno values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("no space left on device")]
    NoSpace,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("file name too long")]
    NameTooLong,
    #[error("no such attribute")]
    NoAttr,
    #[error("attribute value or list does not fit the buffer")]
    Range,
    #[error("attribute too large")]
    TooBig,
    #[error("file too large")]
    FileTooBig,
    #[error("too many links")]
    TooManyLinks,
    #[error("operation not permitted")]
    Perm,
    #[error("permission denied")]
    Access,
    #[error("read-only filesystem")]
    ReadOnly,
    #[error("operation not supported")]
    NotSupported,
    #[error("resource busy")]
    Busy,
    #[error("value too large for defined data type")]
    Overflow,
    #[error("no data at or after offset")]
    NoData,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Metadata read from media is inconsistent (a damaged image).
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// An internal invariant does not hold: a bug in cowdax, not damage on
    /// the media. Mapped to EIO like `Corrupt`, but logged as a bug.
    #[error("internal error (a bug in cowdax, not damaged media): {0}")]
    Internal(String),
}

impl Error {
    /// The errno value for this error (the single translation point).
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::Exists => libc::EEXIST,
            Error::NotDir => libc::ENOTDIR,
            Error::IsDir => libc::EISDIR,
            Error::NotEmpty => libc::ENOTEMPTY,
            Error::NoSpace => libc::ENOSPC,
            Error::Invalid(_) => libc::EINVAL,
            Error::NameTooLong => libc::ENAMETOOLONG,
            Error::NoAttr => libc::ENODATA,
            Error::Range => libc::ERANGE,
            Error::TooBig => libc::E2BIG,
            Error::FileTooBig => libc::EFBIG,
            Error::TooManyLinks => libc::EMLINK,
            Error::Perm => libc::EPERM,
            Error::Access => libc::EACCES,
            Error::ReadOnly => libc::EROFS,
            Error::NotSupported => libc::EOPNOTSUPP,
            Error::Busy => libc::EBUSY,
            Error::Overflow => libc::EOVERFLOW,
            Error::NoData => libc::ENXIO,
            Error::Store(StoreError::JournalFull)
            | Error::Store(StoreError::CheckpointSpace { .. }) => libc::ENOSPC,
            Error::Store(StoreError::ReadOnly) => libc::EROFS,
            Error::Store(_) | Error::Corrupt(_) | Error::Internal(_) => libc::EIO,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<crate::media::MediaError> for Error {
    fn from(e: crate::media::MediaError) -> Error {
        Error::Store(StoreError::Media(e))
    }
}

/// File type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    /// The `S_IFMT` bits for this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::Regular => libc::S_IFREG,
            FileKind::Directory => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
        }
    }

    /// The kind encoded in the `S_IFMT` bits of `mode`.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Some(FileKind::Regular),
            libc::S_IFDIR => Some(FileKind::Directory),
            libc::S_IFLNK => Some(FileKind::Symlink),
            libc::S_IFIFO => Some(FileKind::Fifo),
            libc::S_IFSOCK => Some(FileKind::Socket),
            libc::S_IFCHR => Some(FileKind::CharDevice),
            libc::S_IFBLK => Some(FileKind::BlockDevice),
            _ => None,
        }
    }
}

/// A timestamp with nanosecond precision (seconds may be negative).
///
/// Packed to 4-byte alignment: 12 bytes instead of 16 (4 bytes of padding
/// after `nanos`), which saves 16 bytes per inode in DRAM (four of them in
/// every inode's attributes). Fields are read by value, never borrowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(C, packed(4))]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    Timestamp {
                        secs: -(d.as_secs() as i64),
                        nanos: 0,
                    }
                } else {
                    Timestamp {
                        secs: -(d.as_secs() as i64) - 1,
                        nanos: 1_000_000_000 - d.subsec_nanos(),
                    }
                }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        if t.secs >= 0 {
            SystemTime::UNIX_EPOCH + std::time::Duration::new(t.secs as u64, t.nanos)
        } else {
            SystemTime::UNIX_EPOCH - std::time::Duration::new(t.secs.unsigned_abs(), 0)
                + std::time::Duration::new(0, t.nanos)
        }
    }
}

/// Attributes of an inode, as `stat` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    /// Permission bits and setuid/setgid/sticky (no `S_IFMT` bits).
    pub perm: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    /// Size in bytes (symlinks: target length; directories: entries × 32).
    pub size: u64,
    /// 512-byte units actually allocated to this file (shared blocks count
    /// fully in every file that maps them, as on XFS/btrfs).
    pub blocks: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub btime: Timestamp,
    pub generation: u64,
    /// Preferred I/O size (the block size).
    pub blksize: u32,
}

impl Attr {
    /// A plain inode 2 of `kind` with the given mode bits and owner, for
    /// unit tests of permission rules.
    #[cfg(test)]
    pub(crate) fn for_tests(kind: FileKind, perm: u32, uid: u32, gid: u32) -> Attr {
        Attr {
            ino: 2,
            kind,
            perm,
            nlink: 1,
            uid,
            gid,
            rdev: 0,
            size: 0,
            blocks: 0,
            atime: Timestamp::default(),
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            btime: Timestamp::default(),
            generation: 1,
            blksize: 4096,
        }
    }
}

/// The result of a data change by a [`Caller`], and whether the change
/// also dropped setuid/setgid: a cached copy of the mode is then stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Modified<T> {
    pub value: T,
    pub mode_changed: bool,
}

impl<T> Modified<T> {
    pub(crate) fn unchanged(value: T) -> Modified<T> {
        Modified {
            value,
            mode_changed: false,
        }
    }
}

/// Which attributes `setattr` changes (`None` = unchanged).
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub perm: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    pub ctime: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug)]
pub enum TimeOrNow {
    Now,
    At(Timestamp),
}

/// Who creates an inode.
#[derive(Clone, Copy, Debug)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
}

/// One directory entry from `readdir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: FileKind,
    pub name: Vec<u8>,
    /// Offset to pass to `readdir` to continue *after* this entry. Stable
    /// across concurrent modification of the directory.
    pub next_offset: u64,
}

/// `rename` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
}

/// `fallocate` modes (the ones the kernel forwards to FUSE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallocMode {
    /// Allocate, extending the size.
    Allocate,
    /// Allocate without changing the size.
    KeepSize,
    /// Deallocate (always with keep-size semantics).
    PunchHole,
    /// Zero the range (allocated, reads as zeros); `keep_size` as flagged.
    ZeroRange { keep_size: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whence {
    Data,
    Hole,
}

/// `xattr` set flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrSetMode {
    Any,
    Create,
    Replace,
}

/// Filesystem statistics (`statfs`), in blocks of `block_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u64,
    pub total_blocks: u64,
    pub free_blocks: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
    pub name_max: u32,
}

/// One extent of a file as the `extents` tool shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtentInfo {
    /// Byte offset in the file.
    pub file_offset: u64,
    /// Byte offset on the media (`None` for a hole).
    pub phys_offset: Option<u64>,
    pub len: u64,
    /// Some other extent reference maps (part of) these blocks.
    pub shared: bool,
    /// Allocated by fallocate, never written: reads as zeros.
    pub unwritten: bool,
}

/// One owner of a physical range (owner map query).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// First physical block of the owned piece.
    pub phys_block: u64,
    pub len_blocks: u64,
    pub ino: Ino,
    /// File block that maps `phys_block`.
    pub file_block: u64,
}

/// Space accounting including sharing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Sum over files of the bytes their extents map.
    pub logical_bytes: u64,
    /// Bytes of data blocks in use (each shared block once).
    pub physical_bytes: u64,
    /// logical − physical.
    pub saved_bytes: u64,
    /// Bytes of metadata blocks (checkpoint).
    pub metadata_bytes: u64,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// Result of a dedupe request for one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupeOutcome {
    /// The ranges were identical and now share blocks.
    Deduped { bytes: u64 },
    /// The contents differ: nothing changed.
    Differs,
}

/// Report of an invariant check (`scrub`, `fsck`).
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Human-readable descriptions of every violated invariant.
    pub errors: Vec<String>,
    pub inodes: u64,
    pub extents: u64,
    pub shared_blocks: u64,
}

/// Options when opening a formatted region.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    pub read_only: bool,
}
