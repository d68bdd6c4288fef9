//! fallocate(2): preallocate (unwritten extents), punch a hole, zero a
//! range.

use crate::fs::codec::Record;
use crate::fs::inode::EXTENT_UNWRITTEN;
use crate::fs::limits::{MAX_EXTENT_BLOCKS, MAX_FILE_BYTES};
use crate::fs::locks::wlock;
use crate::fs::privs::{Caller, Change, Privileged};
use crate::fs::txn::{guard, Edits, Guards};
use crate::fs::write_plan::{
    blocks_for, drop_privileges, eof_zero_piece, push_map, Fill, Piece, Stored,
};
use crate::fs::{Error, FallocMode, Fs, Ino, Modified, Result, Timestamp};

use super::{check_regular, BS};

impl Fs {
    /// fallocate as a privileged caller (see [`Fs::fallocate_as`]).
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: FallocMode) -> Result<()> {
        self.fallocate_as(ino, offset, len, mode, &Privileged)
            .map(|m| m.value)
    }
    /// fallocate by `caller`. Every mode is a data change (the kernel's
    /// `file_modified`): privileges drop in the same transaction.
    pub fn fallocate_as(
        &self,
        ino: Ino,
        offset: u64,
        len: u64,
        mode: FallocMode,
        caller: &dyn Caller,
    ) -> Result<Modified<()>> {
        if len == 0 {
            return Err(Error::Invalid("fallocate of zero bytes"));
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= MAX_FILE_BYTES)
            .ok_or(Error::FileTooBig)?;
        self.mutating(|| {
            let arc = self.inode(ino)?;
            let mut guards: Guards<'_> = vec![(ino, wlock(&arc))];
            let inode = guard(&guards, ino)?;
            check_regular(inode)?;
            let old_size = inode.attrs.size;
            let now = Timestamp::now();
            let mut edits = Edits::default();
            let mut records = Vec::new();
            let mode_changed =
                drop_privileges(Change::Data, &guards, ino, caller, &mut edits, &mut records)?;
            let done = |r: Result<()>| {
                r.map(|()| Modified {
                    value: (),
                    mode_changed,
                })
            };
            let first_full = offset.div_ceil(BS);
            let end_full = end / BS;
            let mut pieces: Vec<Piece<'_>> = Vec::new();
            let (keep_size, grows) = match mode {
                FallocMode::Allocate | FallocMode::KeepSize => {
                    // Unwritten blocks for every hole in the block range.
                    let first = offset / BS;
                    let last_excl = blocks_for(end);
                    let mut holes = Vec::new();
                    let mut pos = first;
                    for (fb, e) in inode.extents_in(first, last_excl - first) {
                        if fb > pos {
                            holes.push((pos, fb - pos));
                        }
                        pos = fb + e.len_blocks as u64;
                    }
                    if pos < last_excl {
                        holes.push((pos, last_excl - pos));
                    }
                    let need: u64 = holes.iter().map(|h| h.1).sum();
                    let runs = self.alloc_data(need)?;
                    let mut run_blocks = runs.iter().flat_map(|r| r.start..r.start + r.len);
                    for (hfb, hlen) in holes {
                        for fb in hfb..hfb + hlen {
                            let Some(p) = run_blocks.next() else {
                                self.unalloc(&runs);
                                return Err(Error::Internal("allocation came up short".into()));
                            };
                            push_map(&mut records, ino, fb, p, EXTENT_UNWRITTEN);
                        }
                    }
                    let stored = Stored {
                        records: Vec::new(),
                        allocated: runs,
                    };
                    if mode == FallocMode::Allocate && end > old_size {
                        if let Some((zoff, zlen)) = eof_zero_piece(old_size, end) {
                            // Fill the old EOF block's tail (data or CoW).
                            let zero = self.write_data(
                                ino,
                                inode,
                                &[Piece {
                                    off: zoff,
                                    fill: Fill::Zeros(zlen),
                                }],
                            );
                            match zero {
                                Ok(z) => {
                                    let mut recs = z.records;
                                    recs.append(&mut records);
                                    records = recs;
                                    let mut alloc = stored.allocated;
                                    alloc.extend(z.allocated);
                                    let a = edits.attrs(&guards, ino)?;
                                    a.size = end;
                                    a.ctime = now;
                                    let st = Stored {
                                        records: Vec::new(),
                                        allocated: alloc,
                                    };
                                    return done(self.commit_data(
                                        &mut guards,
                                        st,
                                        records,
                                        edits,
                                        true,
                                    ));
                                }
                                Err(e) => {
                                    self.unalloc(&stored.allocated);
                                    return Err(e);
                                }
                            }
                        }
                        edits.attrs(&guards, ino)?.size = end;
                    }
                    edits.attrs(&guards, ino)?.ctime = now;
                    return done(self.commit_data(&mut guards, stored, records, edits, true));
                }
                FallocMode::PunchHole => (true, false),
                FallocMode::ZeroRange { keep_size } => (keep_size, true),
            };
            // Punch / zero: partial head and tail blocks get zero bytes;
            // whole blocks are unmapped (zero range: remapped unwritten).
            let zero_end = if keep_size { end.min(old_size) } else { end };
            // An extending zero range that starts in the old EOF block also
            // clears that block's tail: one piece, so blocks stay disjoint.
            let eof_piece = if !keep_size && end > old_size {
                eof_zero_piece(old_size, offset)
            } else {
                None
            };
            let (zstart, eof_piece) = match eof_piece {
                Some((z, _)) if z / BS == offset / BS => (z, None),
                other => (offset, other),
            };
            if first_full > end_full {
                // Inside one block.
                if zstart < zero_end {
                    pieces.push(Piece {
                        off: zstart,
                        fill: Fill::Zeros(zero_end - zstart),
                    });
                }
            } else {
                let head_end = (first_full * BS).min(zero_end);
                if zstart < head_end {
                    pieces.push(Piece {
                        off: zstart,
                        fill: Fill::Zeros(head_end - zstart),
                    });
                }
                let tail_start = end_full * BS;
                if tail_start < zero_end && end_full * BS != end {
                    pieces.push(Piece {
                        off: tail_start,
                        fill: Fill::Zeros(zero_end - tail_start),
                    });
                }
            }
            let mut full_runs = Vec::new();
            if end_full > first_full {
                records.push(Record::UnmapRange {
                    ino,
                    file_block: first_full,
                    len_blocks: end_full - first_full,
                });
                if grows {
                    let runs = self.alloc_data(end_full - first_full)?;
                    let mut fb = first_full;
                    for r in &runs {
                        let mut done = 0;
                        while done < r.len {
                            let n = (r.len - done).min(MAX_EXTENT_BLOCKS);
                            records.push(Record::MapExtent {
                                ino,
                                file_block: fb,
                                phys_block: r.start + done,
                                len_blocks: n,
                                flags: EXTENT_UNWRITTEN,
                            });
                            fb += n;
                            done += n;
                        }
                    }
                    full_runs = runs;
                }
            }
            let mut stored = match self.write_data(ino, inode, &pieces) {
                Ok(s) => s,
                Err(e) => {
                    self.unalloc(&full_runs);
                    return Err(e);
                }
            };
            stored.allocated.extend(full_runs);
            let a = edits.attrs(&guards, ino)?;
            if !keep_size && end > old_size {
                a.size = end;
            }
            a.mtime = now;
            a.ctime = now;
            // Zero the old EOF tail when a zero range extends the file.
            {
                if let Some((zoff, zlen)) = eof_piece {
                    match self.write_data(
                        ino,
                        guard(&guards, ino)?,
                        &[Piece {
                            off: zoff,
                            fill: Fill::Zeros(zlen),
                        }],
                    ) {
                        Ok(z) => {
                            stored.records.extend(z.records);
                            stored.allocated.extend(z.allocated);
                        }
                        Err(e) => {
                            self.unalloc(&stored.allocated);
                            return Err(e);
                        }
                    }
                }
            }
            done(self.commit_data(&mut guards, stored, records, edits, grows))
        })
    }
}
