//! open and release of an inode (the open count keeps an unlinked inode
//! alive), and the lazy attribute flush at release, fsync and checkpoint.

use crate::fs::codec::Record;
use crate::fs::locks::wlock;
use crate::fs::txn::{guard, Guards, LiveAccess};
use crate::fs::{Error, Fs, Ino, Result};

impl Fs {
    /// An open file handle keeps an unlinked inode alive until `release`.
    pub fn open_inode(&self, ino: Ino) -> Result<()> {
        self.check_live()?;
        let arc = self.inode(ino)?;
        let mut inode = wlock(&arc);
        if inode.deleted {
            return Err(Error::NotFound);
        }
        inode.open_count = inode.open_count.saturating_add(1);
        Ok(())
    }
    pub fn release_inode(&self, ino: Ino) -> Result<()> {
        self.check_live()?;
        let arc = self.inode(ino)?;
        let (last, dirty, unlinked) = {
            let mut inode = wlock(&arc);
            if inode.deleted {
                return Err(Error::NotFound);
            }
            inode.open_count = inode.open_count.saturating_sub(1);
            (
                inode.open_count == 0,
                inode.attrs_dirty,
                inode.attrs.nlink == 0,
            )
        };
        if self.read_only {
            return Ok(());
        }
        if last && unlinked {
            return self.mutating(|| self.reclaim(ino));
        }
        if dirty {
            return self.mutating(|| self.flush_attrs(ino));
        }
        Ok(())
    }
    /// Journal attributes changed lazily (in-place write timestamps).
    pub(crate) fn flush_attrs(&self, ino: Ino) -> Result<()> {
        let arc = self.inode(ino)?;
        let mut guards: Guards<'_> = vec![(ino, wlock(&arc))];
        let inode = guard(&guards, ino)?;
        if inode.deleted || !inode.attrs_dirty {
            return Ok(());
        }
        let records = [Record::PutInode {
            ino,
            attrs: inode.attrs.clone(),
            target: inode.target().to_vec(),
        }];
        let mut access = LiveAccess::new(&mut guards);
        self.commit(&records, &mut access, false)?;
        Ok(())
    }
}
