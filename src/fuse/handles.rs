//! Open file handles: what the kernel's `fh` numbers stand for.
//!
//! Every `open`/`create`/`opendir` takes a reference on the inode in the core
//! (`Fs::open_inode`), so an unlinked file stays readable until its last
//! handle is released; the handle records how the file was opened, which the
//! private ioctls use to check that the caller may read or write it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::coherence::{CoherenceRegistry, InodeCoherence};
use crate::fs::Ino;

/// One open file or directory.
#[derive(Debug)]
pub struct OpenFile {
    pub ino: Ino,
    /// The `open(2)` flags (`O_ACCMODE`, `O_APPEND`, …) the kernel passed.
    pub flags: i32,
    pub is_dir: bool,
    /// Set at open and after every write: the next read checks whether
    /// atime needs an update (relatime), so a stream of reads costs one
    /// check, not one per request.
    pub atime_check_pending: AtomicBool,
    /// Regular files: whether reads and writes through this handle bypass
    /// the page cache (`FOPEN_DIRECT_IO`).
    pub bypasses_page_cache: bool,
    /// Regular files: the page-cache state shared by all open handles of
    /// the inode ([`super::coherence`]). `None` for directories.
    pub coherence: Option<Arc<InodeCoherence>>,
}

impl OpenFile {
    pub fn readable(&self) -> bool {
        matches!(self.flags & libc::O_ACCMODE, libc::O_RDONLY | libc::O_RDWR)
    }
    pub fn writable(&self) -> bool {
        matches!(self.flags & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR)
    }
}

/// The table of open handles. Handle 0 is never issued, so a kernel request
/// without a handle (fh = 0) never matches an open file by accident.
#[derive(Debug, Default)]
pub struct HandleTable {
    next_fh: AtomicU64,
    open: Mutex<HashMap<u64, Arc<OpenFile>>>,
    coherence: CoherenceRegistry,
}

impl HandleTable {
    pub fn new() -> HandleTable {
        HandleTable {
            next_fh: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
            coherence: CoherenceRegistry::new(),
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<u64, Arc<OpenFile>>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (single insert/remove), so a poisoned lock is still consistent.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers an open directory and returns its handle number.
    pub fn insert_dir(&self, ino: Ino, flags: i32) -> u64 {
        self.insert(ino, flags, true, false, None)
    }

    /// Registers an open regular file (or other non-directory) and returns
    /// its handle number.
    pub fn insert_file(&self, ino: Ino, flags: i32, bypasses_page_cache: bool) -> u64 {
        let coherence = self.coherence.open(ino);
        self.insert(ino, flags, false, bypasses_page_cache, Some(coherence))
    }

    fn insert(
        &self,
        ino: Ino,
        flags: i32,
        is_dir: bool,
        bypasses_page_cache: bool,
        coherence: Option<Arc<InodeCoherence>>,
    ) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let file = Arc::new(OpenFile {
            ino,
            flags,
            is_dir,
            atime_check_pending: AtomicBool::new(true),
            bypasses_page_cache,
            coherence,
        });
        self.table().insert(fh, file);
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<OpenFile>> {
        self.table().get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<OpenFile>> {
        let file = self.table().remove(&fh)?;
        if file.coherence.is_some() {
            self.coherence.release(file.ino);
        }
        Some(file)
    }

    /// Number of handles currently open.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_unique_nonzero_and_removable() {
        let table = HandleTable::new();
        let a = table.insert_file(5, libc::O_RDONLY, false);
        let b = table.insert_file(5, libc::O_WRONLY, true);
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert!(table.get(a).is_some_and(|f| f.readable() && !f.writable()));
        assert!(table.get(b).is_some_and(|f| f.writable() && !f.readable()));
        assert_eq!(table.remove(a).map(|f| f.ino), Some(5));
        assert!(table.get(a).is_none());
        assert_eq!(table.len(), 1);
        let d = table.insert_dir(6, libc::O_RDONLY);
        assert!(table
            .get(d)
            .is_some_and(|f| f.is_dir && f.coherence.is_none()));
    }

    #[test]
    fn handles_of_one_file_share_its_coherence_state() {
        let table = HandleTable::new();
        let a = table.insert_file(5, libc::O_RDONLY, false);
        let b = table.insert_file(5, libc::O_RDWR, true);
        let state = |fh| table.get(fh).and_then(|f| f.coherence.clone()).unwrap();
        assert!(Arc::ptr_eq(&state(a), &state(b)));
        assert!(table.get(b).is_some_and(|f| f.bypasses_page_cache));
    }
}
