//! read(2): `read_with` lends the bytes in place, `read` copies them.

use crate::fs::inode::Inode;
use crate::fs::locks::rlock;
use crate::fs::{Fs, Ino, Result};

use super::{check_regular, BS};

impl Fs {
    /// Zero-copy read: `f` gets the bytes (short at EOF), borrowed from the
    /// mapping when they are contiguous, under the inode's read lock.
    pub fn read_with(
        &self,
        ino: Ino,
        offset: u64,
        len: u32,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        self.check_live()?;
        let arc = self.inode(ino)?;
        let inode = rlock(&arc);
        check_regular(&inode)?;
        let size = inode.attrs.size;
        if offset >= size || len == 0 {
            f(&[]);
            return Ok(());
        }
        let len = (len as u64).min(size - offset);
        let first = offset / BS;
        let last = (offset + len - 1) / BS;
        let exts = inode.extents_in(first, last - first + 1);
        if let [(fb, e)] = exts.as_slice() {
            if *fb == first && e.len_blocks as u64 == last - first + 1 && !e.unwritten() {
                let phys_off = e.phys_block * BS + offset % BS;
                // contract: the inode's read lock is held for the whole
                // call, every store into this file's blocks takes its write
                // lock, and shared (refcount > 1) extents are never written
                // in place, so no store reaches the range while `f` runs.
                self.media.with_slice(phys_off, len, f)?;
                return Ok(());
            }
        }
        let mut buf = vec![0u8; len as usize];
        read_into(&*self.media, &inode, offset, &mut buf)?;
        f(&buf);
        Ok(())
    }
    pub fn read(&self, ino: Ino, offset: u64, len: u32) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_with(ino, offset, len, &mut |b| out.extend_from_slice(b))?;
        Ok(out)
    }
}

/// Gather `buf.len()` bytes at `offset` of `inode` (holes and unwritten
/// extents read as zeros). The caller holds the inode's lock.
pub(crate) fn read_into(
    media: &dyn crate::media::Media,
    inode: &Inode,
    offset: u64,
    buf: &mut [u8],
) -> Result<()> {
    buf.fill(0);
    if buf.is_empty() {
        return Ok(());
    }
    let len = buf.len() as u64;
    let first = offset / BS;
    let last = (offset + len - 1) / BS;
    for (fb, e) in inode.extents_in(first, last - first + 1) {
        if e.unwritten() {
            continue;
        }
        let ext_start = fb * BS;
        let ext_end = ext_start + e.len_blocks as u64 * BS;
        let lo = ext_start.max(offset);
        let hi = ext_end.min(offset + len);
        if lo >= hi {
            continue;
        }
        let phys = e.phys_block * BS + (lo - ext_start);
        media.read(
            phys,
            &mut buf[(lo - offset) as usize..(hi - offset) as usize],
        )?;
    }
    Ok(())
}
