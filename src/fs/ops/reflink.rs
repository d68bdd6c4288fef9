//! Reflinks: FICLONE / FICLONERANGE (`clone_range`: share blocks) and
//! copy_file_range (`copy_range`: shares whole blocks, copies the rest).
//! docs/REFLINK.md.

use crate::fs::codec::Record;
use crate::fs::limits::MAX_FILE_BYTES;
use crate::fs::locks::wlock;
use crate::fs::privs::{Caller, Change, Privileged};
use crate::fs::txn::{guard, Edits, Guards};
use crate::fs::write_plan::{blocks_for, drop_privileges, eof_zero_piece, Fill, Piece, Stored};
use crate::fs::{Error, Fs, Ino, Modified, Result, Timestamp};

use super::{check_regular, BS};

impl Fs {
    /// Share `len` bytes (block-aligned offsets; `len` may end at the source's
    /// EOF) from `src` to `dst`. Same file and overlapping ranges allowed.
    /// Returns bytes cloned. Extends `dst` if needed. `len == 0` clones to
    /// the source's EOF. Clones as a privileged caller (see
    /// [`Fs::clone_range_as`]).
    pub fn clone_range(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
    ) -> Result<u64> {
        Ok(self
            .clone_range_as(src, src_off, dst, dst_off, len, &Privileged)?
            .value)
    }
    /// `clone_range` by `caller`: a data change of `dst`, whose privileges
    /// drop in the clone's transaction (src/fs/privs.rs).
    pub fn clone_range_as(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
        caller: &dyn Caller,
    ) -> Result<Modified<u64>> {
        if src_off % BS != 0 || dst_off % BS != 0 {
            return Err(Error::Invalid("clone offsets must be block-aligned"));
        }
        self.mutating(|| {
            let arcs = self.inodes_sorted(&[src, dst])?;
            let mut guards: Guards<'_> = arcs.iter().map(|(i, a)| (*i, wlock(a))).collect();
            let s = guard(&guards, src)?;
            check_regular(s)?;
            check_regular(guard(&guards, dst)?)?;
            let src_size = s.attrs.size;
            let len = clamp_to_eof(src_off, len, src_size)?;
            if len == 0 {
                return Ok(Modified::unchanged(0));
            }
            let dst_end = dst_off
                .checked_add(len)
                .filter(|&e| e <= MAX_FILE_BYTES)
                .ok_or(Error::FileTooBig)?;
            let dst_size = guard(&guards, dst)?.attrs.size;
            if len % BS != 0 && dst_end < dst_size {
                return Err(Error::Invalid(
                    "a clone ending at the source's EOF must not end inside the destination",
                ));
            }
            let nblocks = blocks_for(len);
            let mut stored = Stored {
                records: Vec::new(),
                allocated: Vec::new(),
            };
            if let Some((zoff, zlen)) = eof_zero_piece(dst_size, dst_off) {
                stored = self.write_data(
                    dst,
                    guard(&guards, dst)?,
                    &[Piece {
                        off: zoff,
                        fill: Fill::Zeros(zlen),
                    }],
                )?;
            }
            let mut records = vec![Record::CloneRange {
                src,
                src_block: src_off / BS,
                dst,
                dst_block: dst_off / BS,
                len_blocks: nblocks,
            }];
            let now = Timestamp::now();
            let mut edits = Edits::default();
            let mode_changed =
                drop_privileges(Change::Data, &guards, dst, caller, &mut edits, &mut records)?;
            let a = edits.attrs(&guards, dst)?;
            a.size = a.size.max(dst_end);
            a.mtime = now;
            a.ctime = now;
            self.commit_data(&mut guards, stored, records, edits, true)?;
            Ok(Modified {
                value: len,
                mode_changed,
            })
        })
    }
    /// Clone the block-aligned middle and byte-copy head/tail (copy_file_range).
    /// Each part is its own transaction. Copies as a privileged caller (see
    /// [`Fs::copy_range_as`]).
    pub fn copy_range(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
    ) -> Result<u64> {
        Ok(self
            .copy_range_as(src, src_off, dst, dst_off, len, &Privileged)?
            .value)
    }
    /// `copy_range` by `caller`: each part is a data change of `dst`; the
    /// first one drops its privileges, in that part's transaction.
    pub fn copy_range_as(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
        caller: &dyn Caller,
    ) -> Result<Modified<u64>> {
        let src_size = self.getattr(src)?.size;
        if src_off >= src_size || len == 0 {
            return Ok(Modified::unchanged(0));
        }
        let len = len.min(src_size - src_off);
        let mut done = 0u64;
        let mode_changed = std::cell::Cell::new(false);
        let copy_bytes = |from: u64, to: u64, n: u64| -> Result<()> {
            let mut pos = 0;
            while pos < n {
                let chunk = (n - pos).min(1 << 20) as u32;
                let data = self.read(src, from + pos, chunk)?;
                if data.is_empty() {
                    break;
                }
                let written = self.write_as(dst, to + pos, &data, caller)?;
                mode_changed.set(mode_changed.get() | written.mode_changed);
                pos += data.len() as u64;
            }
            Ok(())
        };
        let overlapping = src == dst && src_off < dst_off + len && dst_off < src_off + len;
        if src_off % BS == dst_off % BS && !overlapping {
            let head = (BS - src_off % BS) % BS;
            let head = head.min(len);
            copy_bytes(src_off, dst_off, head)?;
            done += head;
            let middle = (len - done) / BS * BS;
            if middle > 0 {
                let cloned =
                    self.clone_range_as(src, src_off + done, dst, dst_off + done, middle, caller)?;
                mode_changed.set(mode_changed.get() | cloned.mode_changed);
                done += cloned.value;
            }
        }
        copy_bytes(src_off + done, dst_off + done, len - done)?;
        Ok(Modified {
            value: len,
            mode_changed: mode_changed.get(),
        })
    }
}

/// Length of a clone that starts at `off` and may end at EOF: `len == 0`
/// or a range past EOF ends at EOF; starting at or past EOF is invalid.
fn clamp_to_eof(off: u64, len: u64, size: u64) -> Result<u64> {
    if off >= size {
        return if off == size {
            Ok(0)
        } else {
            Err(Error::Invalid("clone source beyond EOF"))
        };
    }
    let avail = size - off;
    let len = if len == 0 { avail } else { len.min(avail) };
    if len % BS != 0 && off + len != size {
        return Err(Error::Invalid("clone length must be block-aligned"));
    }
    Ok(len)
}
