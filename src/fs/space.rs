//! Derived space metadata (DESIGN.md §5), never stored on media:
//! * the refcount tree: non-overlapping physical runs → reference count
//!   (blocks absent from it have refcount 0);
//! * the owner map: `(phys_block, ino, file_block) → len_blocks`, one entry
//!   per extent-map entry (M-to-N: a physical block may have many owners);
//! * free space: runs by start plus a (len, start) index for best fit, the
//!   blocks freed by transactions not yet durable (pending), and the
//!   checkpoint's blocks.
//!
//! Invariant (checked by `scrub`): for every pool block, refcount == number of
//! owner entries covering it == number of extent-map references; a block is
//! free iff its refcount is 0, it holds no checkpoint and is not pending.
//! The structural part that needs no extent maps is [`Space::check`]; debug
//! builds check it locally after every refcount edit, free and allocation
//! (docs/CORE.md, "Where the invariants are asserted"). The fields are
//! private so that only these methods change the trees.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::limits::MAX_EXTENT_BLOCKS;
use super::{Error, Ino, Result};
use crate::store::PhysExtent;

/// Blocks per 2 MiB (huge page) with 4 KiB blocks.
pub(crate) const HUGE_BLOCKS: u64 = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RefRun {
    pub len_blocks: u64,
    pub refcount: u32,
}

/// Key of one owner-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct OwnerKey {
    pub phys_block: u64,
    pub ino: Ino,
    pub file_block: u64,
}

/// Free runs with a by-length index.
#[derive(Clone, Debug, Default)]
pub(crate) struct FreeRuns {
    by_start: BTreeMap<u64, u64>,
    by_len: BTreeSet<(u64, u64)>,
    free_blocks: u64,
}

impl FreeRuns {
    /// Add `start..+len` (must not overlap a free run), merging neighbours.
    pub fn insert(&mut self, mut start: u64, mut len: u64) {
        if len == 0 {
            return;
        }
        // Freeing a block twice would later hand it to two owners.
        debug_assert!(
            self.overlapping(start, len).is_none(),
            "freeing {start}+{len}, which overlaps free run {:?}",
            self.overlapping(start, len)
        );
        self.free_blocks += len;
        if let Some((&ls, &ll)) = self.by_start.range(..start).next_back() {
            if ls + ll == start {
                self.by_start.remove(&ls);
                self.by_len.remove(&(ll, ls));
                start = ls;
                len += ll;
            }
        }
        if let Some(&rl) = self.by_start.get(&(start + len)) {
            self.by_start.remove(&(start + len));
            self.by_len.remove(&(rl, start + len));
            len += rl;
        }
        self.by_start.insert(start, len);
        self.by_len.insert((len, start));
    }

    /// Remove `start..+len`, which must lie inside one free run.
    pub fn take(&mut self, start: u64, len: u64) -> bool {
        let Some((&rs, &rl)) = self.by_start.range(..=start).next_back() else {
            return false;
        };
        if rs + rl < start + len {
            return false;
        }
        self.by_start.remove(&rs);
        self.by_len.remove(&(rl, rs));
        if start > rs {
            self.by_start.insert(rs, start - rs);
            self.by_len.insert((start - rs, rs));
        }
        let end = start + len;
        if end < rs + rl {
            self.by_start.insert(end, rs + rl - end);
            self.by_len.insert((rs + rl - end, end));
        }
        self.free_blocks -= len;
        true
    }

    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_start.iter().map(|(&s, &l)| (s, l))
    }

    /// A free run overlapping `start..+len`, if any.
    fn overlapping(&self, start: u64, len: u64) -> Option<(u64, u64)> {
        let end = start.saturating_add(len);
        let before = self
            .by_start
            .range(..start)
            .next_back()
            .filter(|(&s, &l)| s + l > start);
        let inside = self.by_start.range(start..end).next();
        before.or(inside).map(|(&s, &l)| (s, l))
    }

    /// The free-run invariants: runs disjoint and merged (never touching),
    /// the length index equal to the runs, `free_blocks` their sum.
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut prev_end: Option<u64> = None;
        let mut sum = 0u64;
        for (&s, &l) in &self.by_start {
            if l == 0 {
                return Err(format!("empty free run at {s}"));
            }
            if prev_end.is_some_and(|e| e >= s) {
                return Err(format!(
                    "free run {s}+{l} overlaps or touches the previous one"
                ));
            }
            if !self.by_len.contains(&(l, s)) {
                return Err(format!("free run {s}+{l} missing from the length index"));
            }
            prev_end = Some(s + l);
            sum += l;
        }
        if self.by_len.len() != self.by_start.len() {
            return Err("length index has runs that are not free".into());
        }
        if sum != self.free_blocks {
            return Err(format!(
                "free_blocks {} but runs sum to {sum}",
                self.free_blocks
            ));
        }
        Ok(())
    }

    /// Total blocks in the free runs.
    pub fn free_blocks(&self) -> u64 {
        self.free_blocks
    }
}

pub(crate) struct Space {
    pool_start: u64,
    total_blocks: u64,
    refcounts: BTreeMap<u64, RefRun>,
    owners: BTreeMap<OwnerKey, u32>,
    free: FreeRuns,
    /// Blocks whose last reference was dropped by transaction `seq`: not
    /// reusable until `seq` is durable (a crash could bring the reference back).
    pending_free: VecDeque<(u64, PhysExtent)>,
    checkpoint_extents: Vec<PhysExtent>,
    /// Blocks kept back from users so a checkpoint can always be written.
    checkpoint_reserve_blocks: u64,
    /// Sequence number of the transaction being applied (tags pending frees).
    apply_seq: u64,
    /// Next-fit cursor for small allocations.
    cursor: u64,
    /// A refcount underflow or missing owner seen while applying (a bug or
    /// corrupt input); reported by `scrub`.
    anomalies: Vec<String>,
}

impl Space {
    pub fn new(pool_start: u64, total_blocks: u64) -> Space {
        Space {
            pool_start,
            total_blocks,
            refcounts: BTreeMap::new(),
            owners: BTreeMap::new(),
            free: FreeRuns::default(),
            pending_free: VecDeque::new(),
            checkpoint_extents: Vec::new(),
            checkpoint_reserve_blocks: 0,
            apply_seq: 0,
            cursor: pool_start,
            anomalies: Vec::new(),
        }
    }

    pub fn pool_start(&self) -> u64 {
        self.pool_start
    }

    pub fn total_blocks(&self) -> u64 {
        self.total_blocks
    }

    /// The refcount tree: run start → run (blocks absent have refcount 0).
    pub fn refcounts(&self) -> &BTreeMap<u64, RefRun> {
        &self.refcounts
    }

    /// The owner map, one entry per extent-map entry.
    pub fn owners(&self) -> &BTreeMap<OwnerKey, u32> {
        &self.owners
    }

    /// Install the refcount tree and owner map derived from the extent
    /// maps at load (replacing any; the caller built them consistently).
    pub fn set_derived(
        &mut self,
        refcounts: BTreeMap<u64, RefRun>,
        owners: BTreeMap<OwnerKey, u32>,
    ) {
        self.refcounts = refcounts;
        self.owners = owners;
    }

    pub fn free(&self) -> &FreeRuns {
        &self.free
    }

    /// Make `start..+len` free space now (blocks no transaction can bring
    /// back: an old checkpoint, never-referenced pool space at load).
    pub fn free_now(&mut self, start: u64, len: u64) {
        self.free.insert(start, len);
    }

    /// Frees waiting for their transaction to become durable.
    pub fn pending_free(&self) -> impl Iterator<Item = &(u64, PhysExtent)> + '_ {
        self.pending_free.iter()
    }

    pub fn has_pending_free(&self) -> bool {
        !self.pending_free.is_empty()
    }

    /// The blocks holding the current checkpoint.
    pub fn checkpoint_extents(&self) -> &[PhysExtent] {
        &self.checkpoint_extents
    }

    pub fn set_checkpoint_extents(&mut self, extents: Vec<PhysExtent>) {
        self.checkpoint_extents = extents;
    }

    pub fn set_checkpoint_reserve_blocks(&mut self, blocks: u64) {
        self.checkpoint_reserve_blocks = blocks;
    }

    /// Start applying transaction `seq`: blocks it frees wait for `seq`
    /// to be durable. Sequences only grow.
    pub fn begin_apply(&mut self, seq: u64) {
        debug_assert!(
            seq >= self.apply_seq,
            "transaction {seq} applied after {}",
            self.apply_seq
        );
        self.apply_seq = seq;
    }

    /// Anomalies seen while applying (reported by `scrub`).
    pub fn anomalies(&self) -> &[String] {
        &self.anomalies
    }

    /// Blocks with a refcount > 0.
    pub fn referenced_blocks(&self) -> u64 {
        self.refcounts.values().map(|r| r.len_blocks).sum()
    }

    /// The structural invariants of the derived space metadata (what can be
    /// checked without the extent maps; `scrub` checks the rest): free runs
    /// consistent and inside the pool, refcount runs disjoint with counts
    /// ≥ 1, and no block both free and referenced. O(runs): for tests,
    /// scrub and debug builds.
    pub fn check(&self) -> std::result::Result<(), String> {
        self.free.check()?;
        if let Some((s, l)) = self.free.runs().find(|&(s, l)| !self.in_pool(s, l)) {
            return Err(format!("free run {s}+{l} lies outside the pool"));
        }
        let mut prev_end: Option<u64> = None;
        for (&s, r) in &self.refcounts {
            if r.len_blocks == 0 || r.refcount == 0 {
                return Err(format!("refcount run {s}: {r:?} is empty or zero"));
            }
            if prev_end.is_some_and(|e| e > s) {
                return Err(format!("refcount run {s} overlaps the previous one"));
            }
            prev_end = Some(s + r.len_blocks);
            if let Some(f) = self.free.overlapping(s, r.len_blocks) {
                return Err(format!(
                    "blocks {s}+{} are referenced but free run {f:?} covers them",
                    r.len_blocks
                ));
            }
        }
        Ok(())
    }

    /// `check` limited to the refcount runs around `start..+len` (cheap
    /// enough to run after every refcount edit in debug builds).
    fn check_around(&self, start: u64, len: u64) -> std::result::Result<(), String> {
        for (s, l, count) in self.refcounts_in(start.saturating_sub(1), len + 2) {
            if count > 0 {
                if let Some(f) = self.free.overlapping(s, l) {
                    return Err(format!(
                        "blocks {s}+{l} have refcount {count} but free run {f:?} covers them"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn pool_blocks(&self) -> u64 {
        self.total_blocks - self.pool_start
    }

    /// Is `start..+len` inside the pool?
    pub fn in_pool(&self, start: u64, len: u64) -> bool {
        start >= self.pool_start
            && start
                .checked_add(len)
                .is_some_and(|end| end <= self.total_blocks)
    }

    /// Split the refcount run covering `block` (if any) so one starts there.
    fn split_at(&mut self, block: u64) {
        if let Some((&s, &run)) = self.refcounts.range(..block).next_back() {
            if s + run.len_blocks > block {
                self.refcounts.insert(
                    s,
                    RefRun {
                        len_blocks: block - s,
                        refcount: run.refcount,
                    },
                );
                self.refcounts.insert(
                    block,
                    RefRun {
                        len_blocks: s + run.len_blocks - block,
                        refcount: run.refcount,
                    },
                );
            }
        }
    }

    /// Merge runs around `block` with equal counts that touch.
    fn merge_around(&mut self, block: u64) {
        let Some((&s, &run)) = self.refcounts.range(..=block).next_back() else {
            return;
        };
        if let Some((&ls, &lrun)) = self.refcounts.range(..s).next_back() {
            if ls + lrun.len_blocks == s && lrun.refcount == run.refcount {
                self.refcounts.remove(&s);
                self.refcounts.insert(
                    ls,
                    RefRun {
                        len_blocks: lrun.len_blocks + run.len_blocks,
                        refcount: run.refcount,
                    },
                );
            }
        }
    }

    fn adjust(&mut self, start: u64, len: u64, increment: bool) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = start + len;
        self.split_at(start);
        self.split_at(end);
        let mut pos = start;
        let covered: Vec<(u64, RefRun)> = self
            .refcounts
            .range(start..end)
            .map(|(&s, &r)| (s, r))
            .collect();
        let mut freed: Vec<(u64, u64)> = Vec::new();
        for (s, run) in covered {
            if s > pos {
                // A gap: refcount 0 there.
                if increment {
                    self.refcounts.insert(
                        pos,
                        RefRun {
                            len_blocks: s - pos,
                            refcount: 1,
                        },
                    );
                } else {
                    self.anomalies
                        .push(format!("refcount underflow at blocks {pos}+{}", s - pos));
                }
            }
            if increment {
                self.refcounts.insert(
                    s,
                    RefRun {
                        len_blocks: run.len_blocks,
                        refcount: run.refcount.saturating_add(1),
                    },
                );
            } else if run.refcount <= 1 {
                self.refcounts.remove(&s);
                freed.push((s, run.len_blocks));
            } else {
                self.refcounts.insert(
                    s,
                    RefRun {
                        len_blocks: run.len_blocks,
                        refcount: run.refcount - 1,
                    },
                );
            }
            pos = s + run.len_blocks;
        }
        if pos < end {
            if increment {
                self.refcounts.insert(
                    pos,
                    RefRun {
                        len_blocks: end - pos,
                        refcount: 1,
                    },
                );
            } else {
                self.anomalies
                    .push(format!("refcount underflow at blocks {pos}+{}", end - pos));
            }
        }
        // Re-merge at the edges and inside (bounded by the runs touched).
        let keys: Vec<u64> = self.refcounts.range(start..=end).map(|(&s, _)| s).collect();
        for k in keys.into_iter().rev() {
            self.merge_around(k);
        }
        debug_assert_eq!(self.check_around(start, len), Ok(()));
        for (s, l) in freed {
            self.pending_free
                .push_back((self.apply_seq, PhysExtent { start: s, len: l }));
        }
        if !self.anomalies.is_empty() {
            return Err(Error::Corrupt(self.anomalies.join("; ")));
        }
        Ok(())
    }

    pub fn incref(&mut self, start: u64, len: u64) -> Result<()> {
        if !self.in_pool(start, len) {
            return Err(Error::Corrupt(format!(
                "extent {start}+{len} lies outside the block pool"
            )));
        }
        self.adjust(start, len, true)
    }

    pub fn decref(&mut self, start: u64, len: u64) -> Result<()> {
        self.adjust(start, len, false)
    }

    /// Refcount runs overlapping `start..+len`, clipped, with gaps as 0.
    pub fn refcounts_in(&self, start: u64, len: u64) -> Vec<(u64, u64, u32)> {
        let end = start + len;
        let mut out = Vec::new();
        let mut pos = start;
        let first = self
            .refcounts
            .range(..start)
            .next_back()
            .filter(|(&s, r)| s + r.len_blocks > start)
            .map(|(&s, &r)| (s, r));
        let rest = self.refcounts.range(start..end).map(|(&s, &r)| (s, r));
        for (s, run) in first.into_iter().chain(rest) {
            let s_clip = s.max(start);
            let e_clip = (s + run.len_blocks).min(end);
            if s_clip > pos {
                out.push((pos, s_clip - pos, 0));
            }
            out.push((s_clip, e_clip - s_clip, run.refcount));
            pos = e_clip;
        }
        if pos < end {
            out.push((pos, end - pos, 0));
        }
        out
    }

    pub fn owner_insert(&mut self, phys_block: u64, ino: Ino, file_block: u64, len_blocks: u32) {
        self.owners.insert(
            OwnerKey {
                phys_block,
                ino,
                file_block,
            },
            len_blocks,
        );
    }

    pub fn owner_remove(&mut self, phys_block: u64, ino: Ino, file_block: u64) -> Result<()> {
        let key = OwnerKey {
            phys_block,
            ino,
            file_block,
        };
        if self.owners.remove(&key).is_none() {
            let msg = format!("owner map lacks ({phys_block}, ino {ino}, block {file_block})");
            self.anomalies.push(msg.clone());
            return Err(Error::Corrupt(msg));
        }
        Ok(())
    }

    /// Remove an entry that is known to exist (extent merge).
    pub fn owner_remove_quiet(&mut self, phys_block: u64, ino: Ino, file_block: u64) {
        let _ = self.owner_remove(phys_block, ino, file_block);
    }

    /// Owner entries overlapping `start..+len`.
    pub fn owners_in(&self, start: u64, len: u64) -> Vec<(OwnerKey, u32)> {
        let end = start.saturating_add(len);
        let from = OwnerKey {
            phys_block: start.saturating_sub(MAX_EXTENT_BLOCKS - 1),
            ino: 0,
            file_block: 0,
        };
        let to = OwnerKey {
            phys_block: end,
            ino: 0,
            file_block: 0,
        };
        self.owners
            .range(from..to)
            .filter(|(k, &l)| k.phys_block + l as u64 > start)
            .map(|(k, &l)| (*k, l))
            .collect()
    }

    /// Blocks users may still allocate.
    pub fn available_blocks(&self) -> u64 {
        self.free
            .free_blocks
            .saturating_sub(self.checkpoint_reserve_blocks)
    }

    /// Blocks freed but waiting for their transaction to become durable.
    pub fn pending_blocks(&self) -> u64 {
        self.pending_free.iter().map(|(_, e)| e.len).sum()
    }

    /// Move pending frees of transactions ≤ `durable_seq` to free space.
    pub fn release_durable(&mut self, durable_seq: u64) {
        while let Some(&(seq, ext)) = self.pending_free.front() {
            if seq > durable_seq {
                break;
            }
            self.pending_free.pop_front();
            self.free.insert(ext.start, ext.len);
        }
    }

    /// Allocate `len_blocks` for user data, in at most `max_runs` runs,
    /// respecting the checkpoint reserve. `None` (nothing taken) if the
    /// space is not there.
    pub fn alloc_data(&mut self, len_blocks: u64) -> Option<Vec<PhysExtent>> {
        if len_blocks > self.available_blocks() {
            return None;
        }
        self.alloc(len_blocks, usize::MAX)
    }

    /// Allocation policy: a 2 MiB-aligned run for large requests when one
    /// exists; next-fit from the cursor for small ones; then best fit; then
    /// the largest runs first.
    pub fn alloc(&mut self, len_blocks: u64, max_runs: usize) -> Option<Vec<PhysExtent>> {
        if len_blocks == 0 {
            return Some(Vec::new());
        }
        if len_blocks > self.free.free_blocks {
            return None;
        }
        if len_blocks >= HUGE_BLOCKS {
            let candidates: Vec<(u64, u64)> = self
                .free
                .by_len
                .range((len_blocks, 0)..)
                .take(64)
                .copied()
                .collect();
            for (run_len, run_start) in candidates {
                let aligned = run_start.next_multiple_of(HUGE_BLOCKS);
                if aligned + len_blocks <= run_start + run_len {
                    return Some(vec![self.take_run(aligned, len_blocks)]);
                }
            }
        } else {
            let cursor = self.cursor;
            let found = self
                .free
                .by_start
                .range(cursor..)
                .take(32)
                .find(|(_, &l)| l >= len_blocks)
                .map(|(&s, _)| s);
            if let Some(start) = found {
                return Some(vec![self.take_run(start, len_blocks)]);
            }
        }
        if let Some(&(_, start)) = self.free.by_len.range((len_blocks, 0)..).next() {
            return Some(vec![self.take_run(start, len_blocks)]);
        }
        // Fragmented: largest runs first.
        let mut runs = Vec::new();
        let mut need = len_blocks;
        // Bounded: at most `max_runs` runs are looked at (and never more
        // than the request needs, one block each at worst).
        let largest: Vec<(u64, u64)> = self
            .free
            .by_len
            .iter()
            .rev()
            .take(max_runs.min(len_blocks as usize))
            .copied()
            .collect();
        for (run_len, run_start) in largest {
            if need == 0 {
                break;
            }
            if runs.len() == max_runs {
                break;
            }
            let take = run_len.min(need);
            runs.push(PhysExtent {
                start: run_start,
                len: take,
            });
            need -= take;
        }
        if need > 0 {
            return None;
        }
        for r in &runs {
            self.free.take(r.start, r.len);
        }
        self.cursor = runs.last().map_or(self.cursor, |r| r.start + r.len);
        Some(runs)
    }

    /// Take exactly `start..start+len` for user data if all of it is free
    /// and the checkpoint reserve allows (copy-on-write placement next to
    /// the blocks the range continues). `None`: nothing taken.
    pub fn alloc_data_at(&mut self, start: u64, len: u64) -> Option<PhysExtent> {
        if len == 0 || len > self.available_blocks() {
            return None;
        }
        start.checked_add(len)?;
        self.free
            .take(start, len)
            .then_some(PhysExtent { start, len })
    }

    /// Take `offset..offset+len` of a free run of at least `span_blocks`
    /// for user data, leaving the rest of the run free for the blocks that
    /// will continue it (a file region being copied on write block by
    /// block). A full region prefers a 2 MiB-aligned run; a shorter span
    /// the smallest run that fits. `None`: nothing taken.
    pub fn alloc_data_in_run(
        &mut self,
        span_blocks: u64,
        offset: u64,
        len: u64,
    ) -> Option<PhysExtent> {
        if len == 0 || len > self.available_blocks() || offset.checked_add(len)? > span_blocks {
            return None;
        }
        let aligned = if span_blocks >= HUGE_BLOCKS {
            self.free
                .by_len
                .range((span_blocks, 0)..)
                .take(64)
                .map(|&(run_len, run_start)| {
                    (run_start.next_multiple_of(HUGE_BLOCKS), run_start + run_len)
                })
                .find(|&(base, run_end)| base + span_blocks <= run_end)
                .map(|(base, _)| base)
        } else {
            None
        };
        let base = aligned.or_else(|| {
            self.free
                .by_len
                .range((span_blocks, 0)..)
                .next()
                .map(|&(_, run_start)| run_start)
        })?;
        let start = base + offset;
        if !self.free.take(start, len) {
            return None;
        }
        // Next-fit allocations of other files continue after the run.
        self.cursor = base + span_blocks;
        Some(PhysExtent { start, len })
    }

    fn take_run(&mut self, start: u64, len: u64) -> PhysExtent {
        let taken = self.free.take(start, len);
        debug_assert!(taken, "allocator picked a run that is not free");
        debug_assert!(
            self.refcounts_in(start, len).iter().all(|r| r.2 == 0),
            "allocator picked referenced blocks {start}+{len}"
        );
        self.cursor = start + len;
        PhysExtent { start, len }
    }

    /// Return never-used allocated blocks (an operation that failed).
    pub fn unalloc(&mut self, runs: &[PhysExtent]) {
        for r in runs {
            self.free.insert(r.start, r.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcounts_split_merge_and_free_at_zero() {
        let mut s = Space::new(10, 1000);
        s.incref(100, 10).expect("incref");
        s.incref(105, 10).expect("incref");
        assert_eq!(
            s.refcounts_in(100, 15),
            vec![(100, 5, 1), (105, 5, 2), (110, 5, 1)]
        );
        s.apply_seq = 7;
        s.decref(105, 10).expect("decref");
        assert_eq!(s.refcounts_in(100, 15), vec![(100, 10, 1), (110, 5, 0)]);
        assert_eq!(
            s.pending_free.iter().copied().collect::<Vec<_>>(),
            vec![(7, PhysExtent { start: 110, len: 5 })]
        );
        assert!(s.decref(500, 1).is_err(), "underflow is detected");
    }

    #[test]
    fn allocator_prefers_aligned_runs_for_large_and_respects_reserve() {
        let mut s = Space::new(3, 4096);
        s.free.insert(3, 4093);
        let big = s.alloc(600, 1).expect("space");
        assert_eq!(big.len(), 1);
        assert_eq!(big[0].start % HUGE_BLOCKS, 0);
        let small = s.alloc(3, 1).expect("space");
        assert_eq!(small[0].len, 3);
        s.checkpoint_reserve_blocks = s.free.free_blocks;
        assert!(s.alloc_data(1).is_none());
        s.unalloc(&big);
        s.unalloc(&small);
        assert_eq!(s.free.free_blocks, 4093);
        assert_eq!(s.free.runs().count(), 1);
    }

    #[test]
    fn fragmented_allocation_uses_several_runs_or_none() {
        let mut s = Space::new(0, 100);
        s.free.insert(0, 3);
        s.free.insert(10, 3);
        s.free.insert(20, 3);
        assert!(s.alloc(7, 2).is_none());
        assert_eq!(s.free.free_blocks, 9);
        let runs = s.alloc(7, 3).expect("three runs");
        assert_eq!(runs.iter().map(|r| r.len).sum::<u64>(), 7);
        assert_eq!(s.free.free_blocks, 2);
    }

    #[test]
    fn check_accepts_built_state_and_catches_broken_state() {
        let mut s = Space::new(10, 1000);
        s.free_now(10, 90);
        s.free_now(200, 800);
        s.incref(100, 50).expect("incref");
        assert_eq!(s.check(), Ok(()));
        // A referenced block also listed as free: would be handed out twice.
        s.free.by_start.insert(120, 5);
        s.free.by_len.insert((5, 120));
        s.free.free_blocks += 5;
        let err = s.check().expect_err("referenced and free");
        assert!(err.contains("referenced"), "{err}");

        let mut s = Space::new(0, 100);
        s.free_now(0, 10);
        s.free.free_blocks = 3;
        assert!(s.check().expect_err("bad count").contains("free_blocks"));

        let mut s = Space::new(0, 100);
        s.refcounts.insert(
            5,
            RefRun {
                len_blocks: 4,
                refcount: 0,
            },
        );
        assert!(s.check().is_err(), "a zero count run is not stored");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "overlaps free run")]
    fn freeing_a_free_block_twice_is_caught() {
        let mut s = Space::new(0, 100);
        s.free_now(10, 10);
        s.free_now(15, 1);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "refcount")]
    fn a_refcount_edit_on_free_blocks_is_caught() {
        let mut s = Space::new(0, 100);
        s.free_now(0, 100);
        // Nobody allocated 40+4: referencing it leaves it in free space.
        let _ = s.incref(40, 4);
    }
}
