//! Filesystem core: a POSIX-shaped API over the store (DESIGN.md §5–§7).
//! No FUSE types, no `unsafe`. Usable as a library by tests, tools and benches.
//!
//! Inode numbers: the root directory is [`ROOT_INO`] (1, as FUSE expects).
//! Every mutating operation is crash-atomic: one journal transaction.

use std::sync::Arc;
use std::time::SystemTime;

use crate::media::Media;
use crate::store::{FormatOptions, StoreError};

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
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
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
            Error::Store(_) | Error::Corrupt(_) => libc::EIO,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// The filesystem. `Send + Sync`: every method takes `&self`.
pub struct Fs {
    media: Arc<dyn Media>,
}

/// Development placeholder: every body that calls this must be replaced
/// before the branch merges to main.
fn placeholder<T>() -> Result<T> {
    Err(Error::NotSupported)
}

impl Fs {
    /// Format `media` and create the root directory (mode 0755, owned by `creds`).
    pub fn mkfs(media: Arc<dyn Media>, opts: &FormatOptions, creds: Creds) -> Result<()> {
        let _ = (media, opts, creds);
        placeholder()
    }
    /// Open (mount) a formatted region: load the checkpoint, replay the
    /// journal, derive refcounts/owner map/free space, reclaim orphans.
    pub fn open(media: Arc<dyn Media>, opts: OpenOptions) -> Result<Fs> {
        let _ = (media, opts);
        placeholder()
    }
    /// Checkpoint, mark clean. Further calls fail.
    pub fn unmount(&self) -> Result<()> {
        placeholder()
    }
    pub fn media(&self) -> &Arc<dyn Media> {
        &self.media
    }

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        let _ = (parent, name);
        placeholder()
    }
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let _ = ino;
        placeholder()
    }
    /// Size changes truncate/extend (shared blocks: decrement refcounts).
    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr> {
        let _ = (ino, set);
        placeholder()
    }
    /// Regular files, FIFOs, sockets, device nodes (`mode` includes S_IFMT).
    pub fn mknod(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        rdev: u32,
        creds: Creds,
    ) -> Result<Attr> {
        let _ = (parent, name, mode, rdev, creds);
        placeholder()
    }
    pub fn mkdir(&self, parent: Ino, name: &[u8], perm: u32, creds: Creds) -> Result<Attr> {
        let _ = (parent, name, perm, creds);
        placeholder()
    }
    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8], creds: Creds) -> Result<Attr> {
        let _ = (parent, name, target, creds);
        placeholder()
    }
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let _ = ino;
        placeholder()
    }
    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        let _ = (ino, new_parent, new_name);
        placeholder()
    }
    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()> {
        let _ = (parent, name);
        placeholder()
    }
    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        let _ = (parent, name);
        placeholder()
    }
    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        let _ = (parent, name, new_parent, new_name, flags);
        placeholder()
    }
    /// Calls `f` for entries after `offset` (0 = start, includes "." and "..")
    /// until `f` returns false.
    pub fn readdir(
        &self,
        ino: Ino,
        offset: u64,
        f: &mut dyn FnMut(&DirEntry) -> bool,
    ) -> Result<()> {
        let _ = (ino, offset, f);
        placeholder()
    }

    /// An open file handle keeps an unlinked inode alive until `release`.
    pub fn open_inode(&self, ino: Ino) -> Result<()> {
        let _ = ino;
        placeholder()
    }
    pub fn release_inode(&self, ino: Ino) -> Result<()> {
        let _ = ino;
        placeholder()
    }
    /// Zero-copy read: `f` gets the bytes (short at EOF), borrowed from the
    /// mapping when they are contiguous, under the inode's read lock.
    pub fn read_with(
        &self,
        ino: Ino,
        offset: u64,
        len: u32,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        let _ = (ino, offset, len, f);
        placeholder()
    }
    pub fn read(&self, ino: Ino, offset: u64, len: u32) -> Result<Vec<u8>> {
        let _ = (ino, offset, len);
        placeholder()
    }
    /// Returns bytes written. Shared blocks are copied on write.
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32> {
        let _ = (ino, offset, data);
        placeholder()
    }
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: FallocMode) -> Result<()> {
        let _ = (ino, offset, len, mode);
        placeholder()
    }
    pub fn seek(&self, ino: Ino, offset: u64, whence: Whence) -> Result<u64> {
        let _ = (ino, offset, whence);
        placeholder()
    }
    /// Make the inode's data and metadata (or all, for `ino == 0`) durable.
    pub fn fsync(&self, ino: Ino, datasync: bool) -> Result<()> {
        let _ = (ino, datasync);
        placeholder()
    }
    pub fn statfs(&self) -> Result<StatFs> {
        placeholder()
    }

    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        let _ = (ino, name);
        placeholder()
    }
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], mode: XattrSetMode) -> Result<()> {
        let _ = (ino, name, value, mode);
        placeholder()
    }
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        let _ = ino;
        placeholder()
    }
    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<()> {
        let _ = (ino, name);
        placeholder()
    }

    /// Share `len` bytes (block-aligned offsets; `len` may end at the source's
    /// EOF) from `src` to `dst`. Same file and overlapping ranges allowed.
    /// Returns bytes cloned. Extends `dst` if needed.
    pub fn clone_range(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
    ) -> Result<u64> {
        let _ = (src, src_off, dst, dst_off, len);
        placeholder()
    }
    /// FIDEDUPERANGE semantics for one destination.
    pub fn dedupe_range(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
    ) -> Result<DedupeOutcome> {
        let _ = (src, src_off, dst, dst_off, len);
        placeholder()
    }
    /// Clone the block-aligned middle and byte-copy head/tail (copy_file_range).
    pub fn copy_range(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
    ) -> Result<u64> {
        let _ = (src, src_off, dst, dst_off, len);
        placeholder()
    }

    pub fn extents(&self, ino: Ino) -> Result<Vec<ExtentInfo>> {
        let _ = ino;
        placeholder()
    }
    /// Owners of physical blocks `phys_block..phys_block+len_blocks`.
    pub fn owners(&self, phys_block: u64, len_blocks: u64) -> Result<Vec<Owner>> {
        let _ = (phys_block, len_blocks);
        placeholder()
    }
    pub fn usage(&self) -> Result<Usage> {
        placeholder()
    }
    /// Paths of an inode (for fsmap output), at most `max` of them.
    pub fn paths_of(&self, ino: Ino, max: usize) -> Result<Vec<Vec<u8>>> {
        let _ = (ino, max);
        placeholder()
    }
    /// Rebuild refcounts/owner map/free space from the extent maps and
    /// compare with the live ones; check every DESIGN.md §5 invariant.
    pub fn scrub(&self) -> Result<CheckReport> {
        placeholder()
    }
    /// Write a checkpoint now.
    pub fn checkpoint(&self) -> Result<()> {
        placeholder()
    }
}
