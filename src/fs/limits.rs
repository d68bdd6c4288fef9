//! The core's size limits, in one leaf module every layer may import (it
//! imports nothing): file size, extent length, link count, symlink and
//! xattr sizes, and the size a directory reports per entry. `NAME_MAX` is
//! public and lives in fs/mod.rs.

/// Largest file size (4 PiB): keeps every block computation far from
/// overflow.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 52;

/// Longest extent, in blocks (128 MiB). Bounding it keeps owner-map lookups
/// over a physical range bounded: entries overlapping `p` start at
/// `p - MAX_EXTENT_BLOCKS + 1` or later.
pub(crate) const MAX_EXTENT_BLOCKS: u64 = 32768;

/// Most hard links to one inode (and subdirectories + 2 of a directory).
pub(crate) const LINK_MAX: u32 = 65000;

/// Size a directory reports per entry.
pub(crate) const DIRENT_SIZE_BYTES: u64 = 32;

/// Longest symlink target (as Linux PATH_MAX).
pub(crate) const SYMLINK_MAX: usize = 4095;

/// Longest xattr name and value (Linux XATTR_NAME_MAX / XATTR_SIZE_MAX).
pub(crate) const XATTR_NAME_MAX: usize = 255;
pub(crate) const XATTR_VALUE_MAX: usize = 65536;
