//! lseek(2) with SEEK_DATA / SEEK_HOLE (and SET/CUR/END).

use crate::fs::locks::rlock;
use crate::fs::{Error, Fs, Ino, Result, Whence};

use super::{check_regular, BS};

impl Fs {
    pub fn seek(&self, ino: Ino, offset: u64, whence: Whence) -> Result<u64> {
        self.check_live()?;
        let arc = self.inode(ino)?;
        let inode = rlock(&arc);
        check_regular(&inode)?;
        let size = inode.attrs.size;
        if offset >= size {
            return Err(Error::NoData);
        }
        let block = offset / BS;
        let covering = inode
            .extents
            .range(..=block)
            .next_back()
            .filter(|(fb, e)| *fb + e.len_blocks as u64 > block)
            .map(|(fb, _)| *fb);
        match whence {
            Whence::Data => {
                if covering.is_some() {
                    return Ok(offset);
                }
                match inode.extents.range(block..).next() {
                    Some((fb, _)) if fb * BS < size => Ok(fb * BS),
                    _ => Err(Error::NoData),
                }
            }
            Whence::Hole => {
                let Some(mut fb) = covering else {
                    return Ok(offset);
                };
                // Walk contiguous extents (bounded by the extent count).
                while let Some(e) = inode.extents.get(&fb) {
                    fb += e.len_blocks as u64;
                }
                Ok((fb * BS).min(size).max(offset))
            }
        }
    }
}
