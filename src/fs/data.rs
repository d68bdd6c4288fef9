//! The data path: read, write (in place / allocating / copy-on-write),
//! truncate, fallocate, seek, fsync, clone, dedupe, copy.
//!
//! Ordering: data blocks are stored and persisted before the transaction
//! that maps them is committed (the commit's fence covers them), so a crash
//! never maps blocks whose contents were not written.

use super::acl;
use super::codec::Record;
use super::inode::{Inode, EXTENT_UNWRITTEN};
use super::limits::{MAX_EXTENT_BLOCKS, MAX_FILE_BYTES};
use super::locks::{mlock, rlock, wlock};
use super::privs::{self, Caller, Change, Privileged};
use super::space::Space;
use super::txn::{guard, Edits, Guards, LiveAccess};
use super::{
    Attr, DedupeOutcome, Error, FallocMode, FileKind, Fs, Ino, Modified, Result, SetAttr,
    TimeOrNow, Timestamp, Whence,
};
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

fn blocks_for(bytes: u64) -> u64 {
    bytes.div_ceil(BS)
}

/// Zero the untouched part of the old EOF block when a file grows from
/// `old_size` to cover `new_start` and beyond: bytes past EOF are not
/// guaranteed zero on media (truncate down leaves them), so extension
/// clears them. Returns the piece, if any.
fn eof_zero_piece(old_size: u64, new_start: u64) -> Option<(u64, u64)> {
    if old_size % BS == 0 || new_start <= old_size {
        return None;
    }
    let end = old_size.next_multiple_of(BS).min(new_start);
    Some((old_size, end - old_size))
}

/// Queue into this transaction what `change` of `ino` (locked in `guards`)
/// by `caller` drops (src/fs/privs.rs): file capabilities into `records`,
/// setuid/setgid into `edits`. True when the mode changes.
fn drop_privileges(
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
    fn commit_data(
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

    /// Size changes truncate/extend (shared blocks: decrement refcounts).
    /// Acts as a privileged caller (see [`Fs::setattr_as`]).
    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr> {
        self.setattr_as(ino, set, &Privileged)
    }

    /// `setattr` by `caller`: a size change (truncate, even to the same
    /// size) is a data change and a uid/gid change a chown; each drops
    /// privileges in the same transaction (src/fs/privs.rs).
    pub fn setattr_as(&self, ino: Ino, set: &SetAttr, caller: &dyn Caller) -> Result<Attr> {
        if let Some(size) = set.size {
            if size > MAX_FILE_BYTES {
                return Err(Error::FileTooBig);
            }
        }
        self.mutating(|| {
            let arc = self.inode(ino)?;
            let mut guards: Guards<'_> = vec![(ino, wlock(&arc))];
            let inode = guard(&guards, ino)?;
            if inode.deleted {
                return Err(Error::NotFound);
            }
            let now = Timestamp::now();
            let mut edits = Edits::default();
            let mut records = Vec::new();
            let mut stored = Stored {
                records: Vec::new(),
                allocated: Vec::new(),
            };
            let mut shrinks = false;
            if let Some(size) = set.size {
                match inode.attrs.kind {
                    FileKind::Regular => {}
                    FileKind::Directory => return Err(Error::IsDir),
                    _ => return Err(Error::Invalid("size of a non-regular file")),
                }
                let old = inode.attrs.size;
                // Truncating to the current size still drops what lies past
                // EOF (a `fallocate -k` preallocation), as XFS and ext4 do;
                // growing keeps it (and zeroes the old EOF block's tail).
                let past_eof = size == old
                    && inode
                        .extents
                        .range(..)
                        .next_back()
                        .is_some_and(|(fb, e)| fb + e.len_blocks as u64 > blocks_for(size));
                if size < old || past_eof {
                    records.push(Record::UnmapRange {
                        ino,
                        file_block: blocks_for(size),
                        len_blocks: u64::MAX - blocks_for(size),
                    });
                    shrinks = true;
                } else if let Some((zoff, zlen)) = eof_zero_piece(old, size) {
                    stored = self.write_data(
                        ino,
                        inode,
                        &[Piece {
                            off: zoff,
                            fill: Fill::Zeros(zlen),
                        }],
                    )?;
                }
                let a = edits.attrs(&guards, ino)?;
                if size != old {
                    a.mtime = now;
                }
                a.size = size;
            }
            if let Some(perm) = set.perm {
                edits.attrs(&guards, ino)?.perm = perm & 0o7777;
                // An access ACL follows the new bits, in this transaction.
                records.extend(acl::chmod_record(inode, ino, perm));
            }
            if set.size.is_some() {
                drop_privileges(Change::Data, &guards, ino, caller, &mut edits, &mut records)?;
            }
            if set.uid.is_some() || set.gid.is_some() {
                drop_privileges(
                    Change::Chown,
                    &guards,
                    ino,
                    caller,
                    &mut edits,
                    &mut records,
                )?;
            }
            let a = edits.attrs(&guards, ino)?;
            if let Some(uid) = set.uid {
                a.uid = uid;
            }
            if let Some(gid) = set.gid {
                a.gid = gid;
            }
            if let Some(t) = set.atime {
                a.atime = resolve_time(t, now);
            }
            if let Some(t) = set.mtime {
                a.mtime = resolve_time(t, now);
            }
            a.ctime = set.ctime.unwrap_or(now);
            let grows = !stored.records.is_empty() && !shrinks;
            self.commit_data(&mut guards, stored, records, edits, grows)?;
            Ok(guard(&guards, ino)?.to_attr(ino))
        })
    }

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

    /// FIDEDUPERANGE semantics for one destination.
    pub fn dedupe_range(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
    ) -> Result<DedupeOutcome> {
        if src_off % BS != 0 || dst_off % BS != 0 {
            return Err(Error::Invalid("dedupe offsets must be block-aligned"));
        }
        self.mutating(|| {
            let arcs = self.inodes_sorted(&[src, dst])?;
            let mut guards: Guards<'_> = arcs.iter().map(|(i, a)| (*i, wlock(a))).collect();
            let s = guard(&guards, src)?;
            let d = guard(&guards, dst)?;
            check_regular(s)?;
            check_regular(d)?;
            let src_size = s.attrs.size;
            let dst_size = d.attrs.size;
            if src_off.checked_add(len).is_none_or(|e| e > src_size)
                || dst_off.checked_add(len).is_none_or(|e| e > dst_size)
            {
                return Err(Error::Invalid("dedupe range beyond EOF"));
            }
            // A partial last block is shared only when it ends both files.
            let mut len = len;
            if len % BS != 0 && !(src_off + len == src_size && dst_off + len == dst_size) {
                len -= len % BS;
            }
            if len == 0 {
                return Ok(DedupeOutcome::Deduped { bytes: 0 });
            }
            // Compare in bounded chunks under both locks.
            const CHUNK_BYTES: u64 = 1 << 20;
            let mut pos = 0;
            let mut a = vec![0u8; CHUNK_BYTES.min(len) as usize];
            let mut b = a.clone();
            while pos < len {
                let n = CHUNK_BYTES.min(len - pos) as usize;
                read_into(&*self.media, s, src_off + pos, &mut a[..n])?;
                read_into(&*self.media, d, dst_off + pos, &mut b[..n])?;
                if a[..n] != b[..n] {
                    return Ok(DedupeOutcome::Differs);
                }
                pos += n as u64;
            }
            if src == dst && src_off == dst_off {
                return Ok(DedupeOutcome::Deduped { bytes: len });
            }
            let records = vec![Record::CloneRange {
                src,
                src_block: src_off / BS,
                dst,
                dst_block: dst_off / BS,
                len_blocks: blocks_for(len),
            }];
            // The contents did not change: no timestamp moves (the VFS
            // skips `file_modified` for a dedupe, unlike a clone).
            let edits = Edits::default();
            let stored = Stored {
                records: Vec::new(),
                allocated: Vec::new(),
            };
            self.commit_data(&mut guards, stored, records, edits, true)?;
            Ok(DedupeOutcome::Deduped { bytes: len })
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

/// File blocks per copy-on-write region (2 MiB): the unit in which a file
/// rewritten over shared blocks is kept physically contiguous.
const COW_REGION_BLOCKS: u64 = super::space::HUGE_BLOCKS;

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

fn push_map(records: &mut Vec<Record>, ino: Ino, fb: u64, phys: u64, flags: u8) {
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

fn resolve_time(t: TimeOrNow, now: Timestamp) -> Timestamp {
    match t {
        TimeOrNow::Now => now,
        TimeOrNow::At(ts) => ts,
    }
}

fn check_regular(inode: &Inode) -> Result<()> {
    if inode.deleted {
        return Err(Error::NotFound);
    }
    match inode.attrs.kind {
        FileKind::Regular => Ok(()),
        FileKind::Directory => Err(Error::IsDir),
        _ => Err(Error::Invalid("not a regular file")),
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
