//! The write planner, shared by every operation that changes file data
//! (write, truncate by setattr, fallocate, clone/copy, dedupe): classify
//! each touched block (in place / allocate / copy on write), place
//! copy-on-write runs next to the file's own blocks, store and persist the
//! data, and build the mapping records (`write_data`); commit them with
//! the operation's attribute edits (`commit_data`). The operations
//! themselves are in src/fs/ops/.
//!
//! Ordering: data blocks are stored and persisted before the transaction
//! that maps them is committed (the commit's fence covers them), so a crash
//! never maps blocks whose contents were not written.

use super::codec::Record;
use super::inode::Inode;
use super::limits::MAX_EXTENT_BLOCKS;
use super::locks::mlock;
use super::privs::{self, Caller, Change};
use super::space::Space;
use super::txn::{guard, Edits, Guards, LiveAccess};
use super::{Error, Fs, Ino, Result};
use crate::store::{PhysExtent, BLOCK_SIZE};

const BS: u64 = BLOCK_SIZE;

/// Where the bytes of one piece come from.
#[derive(Clone, Copy)]
pub(crate) enum Fill<'d> {
    Bytes(&'d [u8]),
    Zeros(u64),
}

/// Bytes to store at a file offset. The pieces of one `write_data` call
/// touch disjoint sets of blocks.
#[derive(Clone, Copy)]
pub(crate) struct Piece<'d> {
    pub off: u64,
    pub fill: Fill<'d>,
}

impl Piece<'_> {
    fn len(&self) -> u64 {
        match self.fill {
            Fill::Bytes(b) => b.len() as u64,
            Fill::Zeros(n) => n,
        }
    }
}

/// What one touched block needs.
#[derive(Clone, Copy, Debug)]
enum Action {
    /// Zeros over a hole or unwritten block: nothing to store.
    Skip,
    /// Written and owned only by this file: store in place.
    InPlace(u64),
    /// Unwritten and unshared: zero the untouched part, store, mark written.
    InPlaceUnwritten(u64),
    /// Needs a new block; `copy_from` = the shared written block being
    /// copied on write (None: hole or shared unwritten → zero-fill);
    /// `cow`: it replaces a shared block (placed by [`cow_placement`]).
    New { copy_from: Option<u64>, cow: bool },
}

/// New bytes for blocks contiguous on the media, stored in one go.
struct StoreRun {
    phys_block: u64,
    blocks: u64,
    piece: usize,
    /// File offset of the first byte.
    file_off: u64,
    /// Offset of the first byte inside the first block.
    first_block_off: u64,
    len: u64,
}

/// Result of storing data: the mapping records to commit and the blocks
/// allocated for them (to give back if the commit fails).
pub(crate) struct Stored {
    pub records: Vec<Record>,
    pub allocated: Vec<PhysExtent>,
}

pub(super) fn blocks_for(bytes: u64) -> u64 {
    bytes.div_ceil(BS)
}

/// Zero the untouched part of the old EOF block when a file grows from
/// `old_size` to cover `new_start` and beyond: bytes past EOF are not
/// guaranteed zero on media (truncate down leaves them), so extension
/// clears them. Returns the piece, if any.
pub(super) fn eof_zero_piece(old_size: u64, new_start: u64) -> Option<(u64, u64)> {
    if old_size % BS == 0 || new_start <= old_size {
        return None;
    }
    let end = old_size.next_multiple_of(BS).min(new_start);
    Some((old_size, end - old_size))
}

/// Queue into this transaction what `change` of `ino` (locked in `guards`)
/// by `caller` drops (src/fs/privs.rs): file capabilities into `records`,
/// setuid/setgid into `edits`. True when the mode changes.
pub(super) fn drop_privileges(
    change: Change,
    guards: &Guards<'_>,
    ino: Ino,
    caller: &dyn Caller,
    edits: &mut Edits,
    records: &mut Vec<Record>,
) -> Result<bool> {
    let inode = guard(guards, ino)?;
    privs::drop_capability(change, inode, ino, records);
    // The group is the inode's before this transaction (a chown's new
    // group does not count: the kernel decides on the inode as it was);
    // the mode includes a chmod of the same setattr.
    let (kind, gid) = (inode.attrs.kind, inode.attrs.gid);
    let perm = edits.edited(ino).map_or(inode.attrs.perm, |a| a.perm);
    let after = privs::perm_after(change, kind, perm, gid, caller);
    if after == perm {
        return Ok(false);
    }
    edits.attrs(guards, ino)?.perm = after;
    Ok(true)
}

impl Fs {
    /// Plan, allocate, store and persist `pieces` into `inode`'s blocks.
    /// Fails with NoSpace before storing anything if blocks are missing.
    pub(crate) fn write_data(
        &self,
        ino: Ino,
        inode: &Inode,
        pieces: &[Piece<'_>],
    ) -> Result<Stored> {
        let media = &self.media;
        // 1. Classify every touched block.
        let mut plan: Vec<(u64, Action, usize)> = Vec::new(); // (file_block, action, piece index)
        {
            let space = mlock(&self.space);
            for (pi, piece) in pieces.iter().enumerate() {
                if piece.len() == 0 {
                    continue;
                }
                let first = piece.off / BS;
                let last = (piece.off + piece.len() - 1) / BS;
                let zeros = matches!(piece.fill, Fill::Zeros(_));
                let exts = inode.extents_in(first, last - first + 1);
                let mut ext_iter = exts.iter().peekable();
                for fb in first..=last {
                    while let Some((efb, e)) = ext_iter.peek() {
                        if efb + e.len_blocks as u64 <= fb {
                            ext_iter.next();
                        } else {
                            break;
                        }
                    }
                    let mapped = ext_iter
                        .peek()
                        .filter(|(efb, _)| *efb <= fb)
                        .map(|(efb, e)| (e.phys_block + (fb - efb), e.unwritten()));
                    let action = match mapped {
                        None if zeros => Action::Skip,
                        None => Action::New {
                            copy_from: None,
                            cow: false,
                        },
                        Some((_, true)) if zeros => Action::Skip,
                        Some((phys, unwritten)) => {
                            let shared =
                                space.refcounts_in(phys, 1).first().is_some_and(|r| r.2 > 1);
                            match (shared, unwritten) {
                                (false, false) => Action::InPlace(phys),
                                (false, true) => Action::InPlaceUnwritten(phys),
                                (true, false) => Action::New {
                                    copy_from: Some(phys),
                                    cow: true,
                                },
                                (true, true) => Action::New {
                                    copy_from: None,
                                    cow: true,
                                },
                            }
                        }
                    };
                    plan.push((fb, action, pi));
                }
            }
        }
        // 2. Allocate (nothing is stored if this fails). Copy-on-write
        // blocks go where they continue the file's own blocks; the rest
        // (and CoW blocks with no such place) by the usual policy.
        let new_blocks = plan
            .iter()
            .filter(|(_, a, _)| matches!(a, Action::New { .. }))
            .count() as u64;
        let placed = self.place_cow_runs(inode, &plan);
        let placed_blocks: u64 = placed.iter().map(|(_, e)| e.len).sum();
        let mut allocated = match self.alloc_data(new_blocks - placed_blocks) {
            Ok(runs) => runs,
            Err(e) => {
                let placed: Vec<PhysExtent> = placed.iter().map(|(_, e)| *e).collect();
                self.unalloc(&placed);
                return Err(e);
            }
        };
        let mut new_iter = allocated.iter().flat_map(|r| r.start..r.start + r.len);
        // `placed` is sorted by file block, its runs disjoint.
        let placed_phys = |fb: u64| {
            let i = placed.partition_point(|(pfb, e)| pfb + e.len <= fb);
            placed
                .get(i)
                .filter(|(pfb, _)| *pfb <= fb)
                .map(|(pfb, e)| e.start + (fb - pfb))
        };
        // 3. Store and persist. Untouched parts of each block are prepared
        // first (zeroed or copied); the new bytes of consecutive blocks that
        // are contiguous on the media go out in one store and one persist.
        let mut maps: Vec<(u64, u64)> = Vec::new(); // (file_block, phys) now written
        let flush = |run: &StoreRun| -> Result<()> {
            let off = run.phys_block * BS + run.first_block_off;
            match pieces[run.piece].fill {
                Fill::Bytes(data) => {
                    let src = (run.file_off - pieces[run.piece].off) as usize;
                    media.write(off, &data[src..src + run.len as usize])?;
                }
                Fill::Zeros(_) => media.write_zeroes(off, run.len)?,
            }
            media.persist(run.phys_block * BS, run.blocks * BS)?;
            Ok(())
        };
        let result: Result<()> = (|| {
            let mut run: Option<StoreRun> = None;
            for &(fb, action, pi) in &plan {
                let piece = pieces[pi];
                let block_start = fb * BS;
                let lo = piece.off.max(block_start) - block_start;
                let hi = (piece.off + piece.len()).min(block_start + BS) - block_start;
                let phys = match action {
                    Action::Skip => continue,
                    Action::InPlace(p) => p,
                    Action::InPlaceUnwritten(p) => {
                        media.write_zeroes(p * BS, lo)?;
                        media.write_zeroes(p * BS + hi, BS - hi)?;
                        maps.push((fb, p));
                        p
                    }
                    Action::New { copy_from, .. } => {
                        let Some(p) = placed_phys(fb).or_else(|| new_iter.next()) else {
                            return Err(Error::Internal("allocation came up short".into()));
                        };
                        match copy_from {
                            Some(old) if lo > 0 || hi < BS => {
                                media.copy_within(old * BS, p * BS, BS)?;
                            }
                            Some(_) => {}
                            None => {
                                media.write_zeroes(p * BS, lo)?;
                                media.write_zeroes(p * BS + hi, BS - hi)?;
                            }
                        }
                        maps.push((fb, p));
                        p
                    }
                };
                let extends = run.as_ref().is_some_and(|r| {
                    r.piece == pi
                        && r.phys_block + r.blocks == phys
                        && r.first_block_off + r.len == r.blocks * BS
                        && lo == 0
                });
                match run.as_mut() {
                    Some(r) if extends => {
                        r.blocks += 1;
                        r.len += hi - lo;
                    }
                    _ => {
                        if let Some(r) = run.take() {
                            flush(&r)?;
                        }
                        run = Some(StoreRun {
                            phys_block: phys,
                            blocks: 1,
                            piece: pi,
                            file_off: block_start + lo,
                            first_block_off: lo,
                            len: hi - lo,
                        });
                    }
                }
            }
            if let Some(r) = run.take() {
                flush(&r)?;
            }
            Ok(())
        })();
        // Data before metadata: the blocks the commit will map must be
        // durable before the journal record can be (the commit's own fence
        // would cover both at once, allowing a record without its data).
        let result = result.and_then(|()| {
            if maps.is_empty() {
                Ok(())
            } else {
                media.fence().map_err(Error::from)
            }
        });
        if let Err(e) = result {
            allocated.extend(placed.iter().map(|(_, e)| *e));
            self.unalloc(&allocated);
            return Err(e);
        }
        allocated.extend(placed.iter().map(|(_, e)| *e));
        // 4. Mapping records, coalesced into runs.
        let mut records = Vec::new();
        let mut i = 0;
        while i < maps.len() {
            let (fb, p) = maps[i];
            let mut n = 1;
            while i + n < maps.len() && maps[i + n] == (fb + n as u64, p + n as u64) {
                n += 1;
            }
            records.push(Record::MapExtent {
                ino,
                file_block: fb,
                phys_block: p,
                len_blocks: n as u64,
                flags: 0,
            });
            i += n;
        }
        Ok(Stored { records, allocated })
    }

    /// Commit data records plus attribute edits; give blocks back on failure.
    pub(super) fn commit_data(
        &self,
        guards: &mut Guards<'_>,
        stored: Stored,
        mut records: Vec<Record>,
        edits: Edits,
        grows: bool,
    ) -> Result<()> {
        let mut all = stored.records;
        all.append(&mut records);
        edits.emit(&mut all);
        let mut access = LiveAccess::new(guards);
        if let Err(e) = self.commit(&all, &mut access, grows) {
            drop(access);
            self.unalloc(&stored.allocated);
            return Err(e);
        }
        Ok(())
    }
}

/// File blocks per copy-on-write region (2 MiB): the unit in which a file
/// rewritten over shared blocks is kept physically contiguous.
pub(super) const COW_REGION_BLOCKS: u64 = super::space::HUGE_BLOCKS;

/// What lies around file blocks `fb..fb+len` (inside one region) that are
/// about to be copied on write: where they would continue the nearest
/// blocks of their region that the file owns alone, nearest first; and
/// whether the region holds further shared blocks of the file. Only the
/// own region counts: anchoring to a neighbouring region, laid out
/// elsewhere, would give one region two layouts that collide.
struct CowNeighbourhood {
    goals: Vec<u64>,
    more_shared_in_region: bool,
}

fn cow_neighbourhood(inode: &Inode, space: &Space, fb: u64, len: u64) -> CowNeighbourhood {
    let end = fb + len;
    let region_start = fb - fb % COW_REGION_BLOCKS;
    // (distance, goal) of the nearest own block on each side.
    let mut left: Option<(u64, u64)> = None;
    let mut right: Option<(u64, u64)> = None;
    let mut shared_elsewhere_in_region = 0u64;
    for (efb, e) in inode.extents_in(region_start, COW_REGION_BLOCKS) {
        for (phys, n, refcount) in space.refcounts_in(e.phys_block, e.len_blocks as u64) {
            let run_fb = efb + (phys - e.phys_block);
            let run_end = run_fb + n;
            if refcount > 1 {
                let overlap = run_end.min(end).saturating_sub(run_fb.max(fb));
                shared_elsewhere_in_region += n - overlap;
            } else if refcount == 1 && run_end <= fb {
                // Extents come in file order: the last one is the nearest.
                left = Some((fb - (run_end - 1), phys + n - 1 + (fb - (run_end - 1))));
            } else if refcount == 1 && run_fb >= end && right.is_none() {
                right = (phys)
                    .checked_sub(run_fb - fb)
                    .map(|goal| (run_fb - end + 1, goal));
            }
        }
    }
    let mut near: Vec<(u64, u64)> = left.into_iter().chain(right).collect();
    near.sort_unstable();
    CowNeighbourhood {
        goals: near.into_iter().map(|(_, goal)| goal).collect(),
        more_shared_in_region: shared_elsewhere_in_region > 0,
    }
}

impl Fs {
    /// Physical places for the copy-on-write blocks of `plan`, so that a
    /// file rewritten piece by piece over shared blocks (in any order) ends
    /// in a few extents instead of one per write. Each run of consecutive
    /// CoW blocks (split at region boundaries) goes where it continues the
    /// nearest block the file owns alone; failing that, when its region
    /// holds more shared blocks of the file, at its offset inside a free run
    /// spanning the region, whose rest stays free for the blocks to come
    /// (a placement, not a reservation: other files may take it). Runs
    /// without a place are left to the usual allocation. Returns
    /// (file_block, blocks) sorted by file block.
    fn place_cow_runs(
        &self,
        inode: &Inode,
        plan: &[(u64, Action, usize)],
    ) -> Vec<(u64, PhysExtent)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &(fb, action, _) in plan {
            if !matches!(action, Action::New { cow: true, .. }) {
                continue;
            }
            match runs.last_mut() {
                Some((start, len)) if *start + *len == fb && fb % COW_REGION_BLOCKS != 0 => {
                    *len += 1;
                }
                _ => runs.push((fb, 1)),
            }
        }
        if runs.is_empty() {
            return Vec::new();
        }
        runs.sort_unstable();
        let size_blocks = blocks_for(inode.attrs.size);
        let mut space = mlock(&self.space);
        let mut placed = Vec::new();
        for (fb, len) in runs {
            let near = cow_neighbourhood(inode, &space, fb, len);
            let region_start = fb - fb % COW_REGION_BLOCKS;
            let span = COW_REGION_BLOCKS.min(size_blocks.max(fb + len) - region_start);
            let extent = near
                .goals
                .iter()
                .find_map(|&goal| space.alloc_data_at(goal, len))
                .or_else(|| {
                    near.more_shared_in_region
                        .then(|| space.alloc_data_in_run(span, fb - region_start, len))
                        .flatten()
                });
            if let Some(extent) = extent {
                placed.push((fb, extent));
            }
        }
        placed
    }
}

pub(super) fn push_map(records: &mut Vec<Record>, ino: Ino, fb: u64, phys: u64, flags: u8) {
    if let Some(Record::MapExtent {
        file_block,
        phys_block,
        len_blocks,
        flags: f,
        ..
    }) = records.last_mut()
    {
        if *f == flags
            && *file_block + *len_blocks == fb
            && *phys_block + *len_blocks == phys
            && *len_blocks < MAX_EXTENT_BLOCKS
        {
            *len_blocks += 1;
            return;
        }
    }
    records.push(Record::MapExtent {
        ino,
        file_block: fb,
        phys_block: phys,
        len_blocks: 1,
        flags,
    });
}
