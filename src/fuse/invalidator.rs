//! Kernel cache invalidation for changes the kernel did not make itself
//! (remaps by the private ioctls, attributes the daemon changes, direct
//! writes): fuser's notifier, once the session exists.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use fuser::{INodeNo, Notifier};

use crate::fs::Ino;

/// Invalidates kernel caches when the daemon changes data behind the
/// kernel's back (clone, dedupe). Holds fuser's notifier once the session
/// exists; before that there is nothing cached to invalidate.
#[derive(Debug, Default)]
pub struct CacheInvalidator {
    notifier: OnceLock<Notifier>,
}

impl CacheInvalidator {
    pub fn new() -> CacheInvalidator {
        CacheInvalidator::default()
    }

    /// Called once by the daemon after the session is mounted.
    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Drops the kernel's cached pages of `ino` in `offset..offset+len`
    /// (`len == 0`: to the end) and its cached attributes. Call after
    /// remapping a destination range; never while holding a core lock the
    /// kernel might need to answer (the kernel may write back dirty pages).
    pub fn invalidate_range(&self, ino: Ino, offset: u64, len: u64) -> std::io::Result<()> {
        let Some(notifier) = self.notifier.get() else {
            return Ok(());
        };
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let len = i64::try_from(len).unwrap_or(0);
        notifier.inval_inode(INodeNo(ino), offset, len)
    }

    /// Drops the kernel's cached attributes of `ino` only.
    pub fn invalidate_attributes(&self, ino: Ino) -> std::io::Result<()> {
        let Some(notifier) = self.notifier.get() else {
            return Ok(());
        };
        // A negative offset asks for attributes only, no page cache.
        notifier.inval_inode(INodeNo(ino), -1, 0)
    }

    /// Drops the kernel's cached dentry `name` in directory `parent`.
    pub fn invalidate_entry(&self, parent: Ino, name: &[u8]) -> std::io::Result<()> {
        let Some(notifier) = self.notifier.get() else {
            return Ok(());
        };
        notifier.inval_entry(INodeNo(parent), OsStr::from_bytes(name))
    }
}
