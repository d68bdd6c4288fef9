//! write(2), with the caller's privileges (`write_as`) or as root.

use crate::fs::limits::MAX_FILE_BYTES;
use crate::fs::locks::wlock;
use crate::fs::privs::{Caller, Change, Privileged};
use crate::fs::txn::{guard, Edits, Guards};
use crate::fs::write_plan::{drop_privileges, eof_zero_piece, Fill, Piece};
use crate::fs::{Error, Fs, Ino, Modified, Result, Timestamp};

use super::{check_regular, BS};

impl Fs {
    /// Returns bytes written. Shared blocks are copied on write. Writes as
    /// a privileged caller (see [`Fs::write_as`]).
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32> {
        Ok(self.write_as(ino, offset, data, &Privileged)?.value)
    }
    /// `write` by `caller`: drops setuid/setgid as a data change by that
    /// caller must, and file capabilities always, in the write's
    /// transaction (src/fs/privs.rs).
    pub fn write_as(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        caller: &dyn Caller,
    ) -> Result<Modified<u32>> {
        let len = u32::try_from(data.len()).map_err(|_| Error::Invalid("write too large"))?;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_FILE_BYTES)
            .ok_or(Error::FileTooBig)?;
        if data.is_empty() {
            self.getattr(ino)?;
            return Ok(Modified::unchanged(0));
        }
        self.mutating(|| {
            let arc = self.inode(ino)?;
            let mut guards: Guards<'_> = vec![(ino, wlock(&arc))];
            let inode = guard(&guards, ino)?;
            check_regular(inode)?;
            let old_size = inode.attrs.size;
            let merged: Vec<u8>;
            let mut pieces = Vec::with_capacity(2);
            match eof_zero_piece(old_size, offset) {
                Some((zoff, zlen)) if zoff + zlen == offset && zoff / BS == offset / BS => {
                    // Same block: one piece (pieces must touch disjoint blocks).
                    let mut buf = vec![0u8; zlen as usize];
                    buf.extend_from_slice(data);
                    merged = buf;
                    pieces.push(Piece {
                        off: zoff,
                        fill: Fill::Bytes(&merged),
                    });
                }
                Some((zoff, zlen)) => {
                    pieces.push(Piece {
                        off: zoff,
                        fill: Fill::Zeros(zlen),
                    });
                    pieces.push(Piece {
                        off: offset,
                        fill: Fill::Bytes(data),
                    });
                }
                None => pieces.push(Piece {
                    off: offset,
                    fill: Fill::Bytes(data),
                }),
            }
            let stored = self.write_data(ino, inode, &pieces)?;
            let now = Timestamp::now();
            let mut records = Vec::new();
            let mut edits = Edits::default();
            let mode_changed =
                drop_privileges(Change::Data, &guards, ino, caller, &mut edits, &mut records)?;
            let needs_commit =
                !stored.records.is_empty() || end > old_size || mode_changed || !records.is_empty();
            if !needs_commit {
                // Pure in-place overwrite: timestamps are journaled lazily
                // (fsync, release, checkpoint).
                let inode = &mut guards[0].1;
                inode.attrs.mtime = now;
                inode.attrs.ctime = now;
                inode.attrs_dirty = true;
                return Ok(Modified::unchanged(len));
            }
            let a = edits.attrs(&guards, ino)?;
            a.size = a.size.max(end);
            a.mtime = now;
            a.ctime = now;
            let grows = !stored.records.is_empty();
            self.commit_data(&mut guards, stored, records, edits, grows)?;
            Ok(Modified {
                value: len,
                mode_changed,
            })
        })
    }
}
