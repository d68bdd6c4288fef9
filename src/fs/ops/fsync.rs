//! fsync(2) / fdatasync(2), and sync of the whole filesystem (`ino == 0`).

use crate::fs::locks::{mlock, rlock};
use crate::fs::{Fs, Ino, Result};

impl Fs {
    /// Make the inode's data and metadata (or all, for `ino == 0`) durable.
    pub fn fsync(&self, ino: Ino, datasync: bool) -> Result<()> {
        self.check_live()?;
        if !self.read_only {
            if ino == 0 {
                for (i, arc) in self.table.all() {
                    if rlock(&arc).attrs_dirty {
                        self.mutating(|| self.flush_attrs(i))?;
                    }
                }
            } else {
                let arc = self.inode(ino)?;
                let dirty = rlock(&arc).attrs_dirty;
                // fdatasync may skip timestamps (size changes are never lazy).
                if dirty && !datasync {
                    self.mutating(|| self.flush_attrs(ino))?;
                }
            }
            mlock(&self.store).sync()?;
        }
        self.media.fence()?;
        Ok(())
    }
}
