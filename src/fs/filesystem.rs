//! The `Fs` object: inode table, locks, transactions, open/mkfs,
//! checkpoints.
//!
//! # Lock order (outermost first; never acquire against it)
//! 1. `global` (RwLock): every operation holds it shared; checkpoint,
//!    unmount and scrub hold it exclusive (stop-the-world).
//! 2. `rename_lock` (Mutex): directory moves (loop check is stable under it).
//! 3. inode locks (RwLock per inode), several at once only in ascending ino
//!    order.
//! 4. `space` (Mutex): refcounts, owner map, free space.
//! 5. `store` (Mutex): the journal.
//!
//! Table shard locks are leaves: held only to look up/insert/remove an Arc,
//! never while waiting for another lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::apply::{apply, InodeAccess};
use super::codec::{self, Record, Writer};
use super::inode::{InoMap, Inode, InodeAttrs, ShardedInodes, INODE_SHARDS};
use super::locks::{mlock, rlock, wlock};
use super::txn::LiveAccess;
use std::collections::BTreeMap;

use super::space::{OwnerKey, RefRun, Space};
use super::{Creds, Error, FileKind, Ino, OpenOptions, Result, Timestamp, ROOT_INO};
use crate::media::Media;
use crate::store::{Access, FormatOptions, PhysExtent, Store, StoreError, BLOCK_SIZE};

const SHARDS: usize = INODE_SHARDS;

pub(crate) use super::inode::InodeRef;

/// Sharded map ino → inode.
pub(crate) struct InodeTable {
    shards: Vec<RwLock<InoMap<InodeRef>>>,
}

impl InodeTable {
    fn shard(&self, ino: Ino) -> &RwLock<InoMap<InodeRef>> {
        &self.shards[(ino as usize) % SHARDS]
    }
    /// The table of the inodes loaded at mount: their shard maps as they
    /// are, each behind its lock.
    fn from_shards(inodes: ShardedInodes) -> InodeTable {
        InodeTable {
            shards: inodes.shards.into_iter().map(RwLock::new).collect(),
        }
    }
    pub fn get(&self, ino: Ino) -> Option<InodeRef> {
        rlock(self.shard(ino)).get(&ino).cloned()
    }
    pub fn insert(&self, ino: Ino, inode: Inode) {
        wlock(self.shard(ino)).insert(ino, Arc::new(RwLock::new(inode)));
    }
    pub fn remove(&self, ino: Ino) {
        wlock(self.shard(ino)).remove(&ino);
    }
    pub fn len(&self) -> u64 {
        self.shards.iter().map(|s| rlock(s).len() as u64).sum()
    }
    /// Every inode (in no particular order).
    pub fn all(&self) -> Vec<(Ino, InodeRef)> {
        let mut out: Vec<(Ino, InodeRef)> = Vec::new();
        for s in &self.shards {
            out.extend(rlock(s).iter().map(|(&i, r)| (i, r.clone())));
        }
        out
    }
}

/// The filesystem. `Send + Sync`: every method takes `&self`.
pub struct Fs {
    pub(crate) media: Arc<dyn Media>,
    pub(crate) global: RwLock<()>,
    pub(crate) rename_lock: Mutex<()>,
    pub(crate) table: InodeTable,
    pub(crate) space: Mutex<Space>,
    pub(crate) store: Mutex<Store>,
    pub(crate) next_ino: AtomicU64,
    pub(crate) next_generation: AtomicU64,
    pub(crate) read_only: bool,
    pub(crate) unmounted: AtomicBool,
    /// Set when DRAM and journal may disagree (an apply failed after a
    /// commit): the filesystem refuses further changes.
    pub(crate) poisoned: AtomicBool,
    /// Size of the last checkpoint payload and bytes journaled since: the
    /// estimate of the next checkpoint's size (space reserve).
    pub(crate) last_checkpoint_bytes: AtomicU64,
    pub(crate) journaled_bytes: AtomicU64,
    /// Whether the journal was more than half full after the last commit or
    /// checkpoint: the cue for `mutating` to checkpoint first. Kept here so
    /// that every operation (an in-place write included) need not take the
    /// store lock, which a commit holds across its fence.
    journal_past_half: AtomicBool,
}

impl Fs {
    /// Format `media` and create the root directory (mode 0755, owned by `creds`).
    pub fn mkfs(media: Arc<dyn Media>, opts: &FormatOptions, creds: Creds) -> Result<()> {
        Store::format(media.clone(), opts)?;
        let (mut store, _recovered) = Store::open(media, Access::ReadWrite)?;
        let now = Timestamp::now();
        let root = InodeAttrs {
            kind: FileKind::Directory,
            perm: 0o755,
            nlink: 2,
            uid: creds.uid,
            gid: creds.gid,
            rdev: 0,
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            generation: 1,
            parent: ROOT_INO,
            next_cookie: 3,
        };
        let payload = codec::encode_txn(&[Record::PutInode {
            ino: ROOT_INO,
            attrs: root,
            target: Vec::new(),
        }]);
        store.commit(&payload)?;
        store.sync()?;
        store.set_clean(true)?;
        Ok(())
    }

    /// Open (mount) a formatted region: load the checkpoint, replay the
    /// journal, derive refcounts/owner map/free space, reclaim orphans.
    pub fn open(media: Arc<dyn Media>, opts: OpenOptions) -> Result<Fs> {
        let access = if opts.read_only {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let started = std::time::Instant::now();
        // The checkpoint is decoded where it lies (checksum verified there),
        // not from a fresh 100+ MiB copy: that copy cost page faults and a
        // memcpy in every mount.
        let (store, recovered) = Store::open_in_place(media.clone(), access)?;
        let geometry = store.geometry();
        let store_opened = started.elapsed();
        // Inodes are decoded straight into their shared form (one
        // allocation each, moved into the table by pointer), not into a map
        // of ~200-byte values copied into Arcs afterwards.
        let mut inodes = ShardedInodes::with_capacity(0);
        let mut next_ino = ROOT_INO + 1;
        let mut next_generation = 2;
        let checkpoint_bytes = match (&recovered.checkpoint, &recovered.checkpoint_in_place) {
            (Some(payload), _) => payload.len() as u64,
            (None, Some(runs)) => runs.iter().map(|&(_, len)| len).sum(),
            (None, None) => 0,
        };
        let state = match (&recovered.checkpoint, &recovered.checkpoint_in_place) {
            (Some(payload), _) => Some(codec::decode_checkpoint(payload)?),
            (None, Some(runs)) => Some(decode_checkpoint_in_place(media.as_ref(), runs)?),
            (None, None) => None,
        };
        if let Some(state) = state {
            next_ino = next_ino.max(state.next_ino);
            next_generation = next_generation.max(state.next_generation);
            inodes = state.inodes;
        }
        let checkpoint_decoded = started.elapsed();
        let mut journaled = 0u64;
        for payload in &recovered.transactions {
            journaled += payload.len() as u64;
            for rec in codec::decode_txn(payload)? {
                // An inode created and deleted since the checkpoint is in
                // no table: its number and generation are known only
                // here, and must not be handed out again (file handles
                // name inodes by both).
                if let Record::PutInode { ino, attrs, .. } = &rec {
                    next_ino = next_ino.max(ino.saturating_add(1));
                    next_generation = next_generation.max(attrs.generation.saturating_add(1));
                }
                apply(&rec, &mut inodes, None)?;
            }
        }
        let journal_replayed = started.elapsed();
        match inodes.get(ROOT_INO) {
            Some(root) if rlock(root).attrs.kind == FileKind::Directory => {}
            _ => return Err(Error::Corrupt("no root directory".into())),
        }
        // One pass over the table (each pass is ~1M cache misses).
        let mut orphans: Vec<Ino> = Vec::new();
        for (&ino, inode) in inodes.iter() {
            let inode = rlock(inode);
            next_ino = next_ino.max(ino.saturating_add(1));
            next_generation = next_generation.max(inode.attrs.generation.saturating_add(1));
            if inode.attrs.nlink == 0 && ino != ROOT_INO {
                orphans.push(ino);
            }
        }
        let space = derive_space(
            &inodes,
            &recovered.checkpoint_extents,
            geometry.pool_start,
            geometry.total_blocks,
        )?;
        let space_derived = started.elapsed();
        let inode_count = inodes.len();
        let table = InodeTable::from_shards(inodes);
        let table_built = started.elapsed();
        log::debug!(
            "open: {inode_count} inodes; store {store_opened:?}, checkpoint decode +{:?}, \
             journal replay +{:?}, derive space +{:?}, inode table +{:?}",
            checkpoint_decoded - store_opened,
            journal_replayed - checkpoint_decoded,
            space_derived - journal_replayed,
            table_built - space_derived,
        );
        let fs = Fs {
            media,
            global: RwLock::new(()),
            rename_lock: Mutex::new(()),
            table,
            space: Mutex::new(space),
            store: Mutex::new(store),
            next_ino: AtomicU64::new(next_ino),
            next_generation: AtomicU64::new(next_generation),
            read_only: opts.read_only,
            unmounted: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            last_checkpoint_bytes: AtomicU64::new(checkpoint_bytes),
            journaled_bytes: AtomicU64::new(journaled),
            journal_past_half: AtomicBool::new(false),
        };
        fs.note_journal_fill(&mlock(&fs.store));
        fs.update_reserve();
        if !fs.read_only {
            for ino in orphans {
                fs.mutating(|| fs.reclaim(ino))?;
            }
        }
        Ok(fs)
    }

    /// Checkpoint, mark clean. Further calls fail.
    pub fn unmount(&self) -> Result<()> {
        if self.unmounted.load(Ordering::Acquire) {
            return Err(Error::Invalid("already unmounted"));
        }
        let _g = wlock(&self.global);
        if !self.read_only && !self.poisoned.load(Ordering::Acquire) {
            self.checkpoint_locked()?;
            mlock(&self.store).set_clean(true)?;
        }
        self.unmounted.store(true, Ordering::Release);
        Ok(())
    }

    pub fn media(&self) -> &Arc<dyn Media> {
        &self.media
    }

    /// Write a checkpoint now.
    pub fn checkpoint(&self) -> Result<()> {
        self.check_writable()?;
        let _g = wlock(&self.global);
        self.check_writable()?;
        self.checkpoint_locked()
    }

    pub(crate) fn check_live(&self) -> Result<()> {
        if self.unmounted.load(Ordering::Acquire) {
            return Err(Error::Invalid("filesystem is unmounted"));
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_live()?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Corrupt(
                "metadata update failed earlier; filesystem is frozen".into(),
            ));
        }
        Ok(())
    }

    /// Run a mutating operation under the shared global lock. Checkpoints
    /// first when the journal is at least half full; if the journal still
    /// fills up, checkpoints and retries once, so JournalFull never reaches
    /// a caller. `op` must change nothing when it fails.
    pub(crate) fn mutating<T>(&self, op: impl Fn() -> Result<T>) -> Result<T> {
        self.check_writable()?;
        if self.journal_half_full() {
            // A failed checkpoint here is not the operation's failure: the
            // journal still has room (and an unlink may be what frees the
            // space the checkpoint lacks).
            if let Err(e) = self.checkpoint() {
                log::warn!("checkpoint before an operation failed: {e}");
            }
        }
        let first = {
            let _g = rlock(&self.global);
            self.check_writable()?;
            op()
        };
        match first {
            Err(Error::Store(StoreError::JournalFull)) => {
                self.checkpoint()?;
                let _g = rlock(&self.global);
                op()
            }
            other => other,
        }
    }

    fn journal_half_full(&self) -> bool {
        self.journal_past_half.load(Ordering::Relaxed)
    }

    /// Record the journal's fill level; call with the store locked after
    /// anything that changes it (commit, checkpoint, open).
    fn note_journal_fill(&self, store: &Store) {
        let past_half =
            store.journal_free_bytes().saturating_mul(2) < store.journal_capacity_bytes();
        self.journal_past_half.store(past_half, Ordering::Relaxed);
    }

    /// Look up an inode Arc.
    pub(crate) fn inode(&self, ino: Ino) -> Result<InodeRef> {
        self.table.get(ino).ok_or(Error::NotFound)
    }

    /// Arcs of the given inodes, deduplicated, in ascending ino order (the
    /// lock order).
    pub(crate) fn inodes_sorted(&self, inos: &[Ino]) -> Result<Vec<(Ino, InodeRef)>> {
        let mut v: Vec<Ino> = inos.to_vec();
        v.sort_unstable();
        v.dedup();
        v.into_iter().map(|i| Ok((i, self.inode(i)?))).collect()
    }

    pub(crate) fn alloc_ino(&self) -> (Ino, u64) {
        (
            self.next_ino.fetch_add(1, Ordering::Relaxed),
            self.next_generation.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// Blocks the next checkpoint may need if the metadata grows by
    /// `extra_bytes`.
    fn reserve_for(&self, store: &Store, extra_bytes: u64) -> u64 {
        let estimate = self.last_checkpoint_bytes.load(Ordering::Relaxed)
            + self.journaled_bytes.load(Ordering::Relaxed)
            + extra_bytes
            + 64 * 1024;
        store.checkpoint_blocks_needed(estimate as usize).0 + 4
    }

    fn update_reserve(&self) {
        let reserve = {
            let store = mlock(&self.store);
            self.reserve_for(&store, 0)
        };
        mlock(&self.space).set_checkpoint_reserve_blocks(reserve);
    }

    /// Commit `records` as one transaction and apply them to DRAM.
    /// `grows` = the operation adds metadata: it fails with NoSpace (before
    /// anything is written) if a checkpoint would then not fit.
    pub(crate) fn commit(
        &self,
        records: &[Record],
        access: &mut dyn InodeAccess,
        grows: bool,
    ) -> Result<u64> {
        if records.is_empty() {
            return Ok(0);
        }
        let payload = codec::encode_txn(records);
        // Space before store (lock order). Holding the space lock across the
        // commit keeps DRAM refcount changes in journal order, so a block
        // freed by transaction `seq` is tagged with the right `seq`.
        let mut space = mlock(&self.space);
        let seq = {
            let mut store = mlock(&self.store);
            space.release_durable(store.durable_seq());
            if grows {
                let reserve = self.reserve_for(&store, payload.len() as u64);
                if space.free().free_blocks() < reserve && space.has_pending_free() {
                    // Blocks freed by transactions not yet durable (an
                    // unlink on group-commit media) are what is missing:
                    // make them durable, as `alloc_data` does, instead of
                    // failing until something else syncs.
                    store.sync()?;
                    space.release_durable(store.durable_seq());
                }
                if space.free().free_blocks() < reserve {
                    return Err(Error::NoSpace);
                }
            }
            let seq = match store.commit(&payload) {
                Ok(seq) => seq,
                // One operation bigger than the journal can ever hold (a
                // tiny journal): nothing was written; report it as space.
                Err(StoreError::TransactionTooLarge(_)) => return Err(Error::NoSpace),
                Err(e) => return Err(e.into()),
            };
            self.journaled_bytes
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
            self.note_journal_fill(&store);
            space.set_checkpoint_reserve_blocks(self.reserve_for(&store, 0));
            space.release_durable(store.durable_seq());
            seq
        };
        space.begin_apply(seq);
        for rec in records {
            if let Err(e) = apply(rec, access, Some(&mut space)) {
                self.poisoned.store(true, Ordering::Release);
                // The records were built by this code against state it
                // validated at load: one that does not apply is a bug.
                let e = match e {
                    Error::Corrupt(msg) => {
                        Error::Internal(format!("applying committed record: {msg}"))
                    }
                    other => other,
                };
                log::error!("applying committed record {rec:?} failed: {e}");
                return Err(e);
            }
        }
        Ok(seq)
    }

    /// Insert created inodes into the table and drop deleted ones.
    pub(crate) fn publish(&self, created: Vec<(Ino, Inode)>, deleted: &[Ino]) {
        for (ino, inode) in created {
            self.table.insert(ino, inode);
        }
        for &ino in deleted {
            self.table.remove(ino);
        }
    }

    /// Allocate data blocks (respecting the checkpoint reserve); makes
    /// durable pending frees usable, syncing the journal if that is what
    /// stands between the caller and free space.
    pub(crate) fn alloc_data(&self, len_blocks: u64) -> Result<Vec<PhysExtent>> {
        {
            let mut space = mlock(&self.space);
            if let Some(runs) = space.alloc_data(len_blocks) {
                return Ok(runs);
            }
            if !space.has_pending_free() {
                return Err(Error::NoSpace);
            }
            let durable = {
                let mut store = mlock(&self.store);
                store.sync()?;
                store.durable_seq()
            };
            space.release_durable(durable);
            if let Some(runs) = space.alloc_data(len_blocks) {
                return Ok(runs);
            }
        }
        Err(Error::NoSpace)
    }

    pub(crate) fn unalloc(&self, runs: &[PhysExtent]) {
        mlock(&self.space).unalloc(runs);
    }

    /// Delete an inode whose link count and open count are 0.
    pub(crate) fn reclaim(&self, ino: Ino) -> Result<()> {
        let arc = self.inode(ino)?;
        let mut guards = vec![(ino, wlock(&arc))];
        if guards[0].1.deleted || guards[0].1.attrs.nlink != 0 || guards[0].1.open_count != 0 {
            return Ok(());
        }
        let mut access = LiveAccess::new(&mut guards);
        self.commit(&[Record::DeleteInode { ino }], &mut access, false)?;
        let deleted = std::mem::take(&mut access.deleted);
        drop(access);
        drop(guards);
        self.publish(Vec::new(), &deleted);
        Ok(())
    }

    /// Serialize everything and publish it as the new checkpoint. Caller
    /// holds `global` exclusively.
    pub(crate) fn checkpoint_locked(&self) -> Result<()> {
        let all = self.table.all();
        let mut w = Writer::default();
        // Reserve the expected size once: regrowing a buffer of hundreds of
        // MiB costs more than encoding into it.
        let estimate = self.last_checkpoint_bytes.load(Ordering::Relaxed)
            + self.journaled_bytes.load(Ordering::Relaxed);
        w.buf
            .reserve(usize::try_from(estimate).unwrap_or(0).saturating_add(4096));
        codec::encode_checkpoint_header(
            &mut w,
            self.next_ino.load(Ordering::Relaxed),
            self.next_generation.load(Ordering::Relaxed),
            all.len() as u64,
        );
        for (ino, arc) in &all {
            let inode = rlock(arc);
            codec::encode_checkpoint_inode(&mut w, *ino, &inode);
        }
        let payload = w.buf;
        let mut space = mlock(&self.space);
        let mut store = mlock(&self.store);
        let (needed, max_extents) = store.checkpoint_blocks_needed(payload.len());
        let runs =
            space
                .alloc(needed, max_extents)
                .ok_or(Error::Store(StoreError::CheckpointSpace {
                    needed,
                    max_extents,
                }))?;
        let old = match store.write_checkpoint(&payload, &runs) {
            Ok(old) => old,
            Err(e) => {
                space.unalloc(&runs);
                return Err(e.into());
            }
        };
        for ext in old {
            space.free_now(ext.start, ext.len);
        }
        space.set_checkpoint_extents(runs);
        // Every journaled transaction is now inside a durable checkpoint.
        space.release_durable(u64::MAX);
        self.last_checkpoint_bytes
            .store(payload.len() as u64, Ordering::Relaxed);
        self.journaled_bytes.store(0, Ordering::Relaxed);
        self.note_journal_fill(&store);
        space.set_checkpoint_reserve_blocks(self.reserve_for(&store, 0));
        drop(store);
        drop(space);
        for (_, arc) in &all {
            wlock(arc).attrs_dirty = false;
        }
        Ok(())
    }

    pub(crate) fn block_size(&self) -> u64 {
        BLOCK_SIZE
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        // Without an unmount this is like a daemon exit: make what was
        // committed durable (group commit), but write no checkpoint.
        if !self.read_only && !self.unmounted.load(Ordering::Acquire) {
            if let Err(e) = mlock(&self.store).sync() {
                log::warn!("sync at drop failed: {e}");
            }
        }
    }
}

/// Rebuild refcounts, owner map and free space from the extent maps and the
/// checkpoint's blocks (mount, scrub).
/// Decode a checkpoint payload from its byte runs on media: straight from
/// the mapping when it is one run (the usual case: checkpoints are
/// allocated as one run when the pool allows), else from a copy.
fn decode_checkpoint_in_place(
    media: &dyn Media,
    runs: &[(u64, u64)],
) -> Result<codec::CheckpointState> {
    if let [(off, len)] = runs {
        let mut decoded = None;
        // contract: this runs at open, before any store is possible, on the
        // current checkpoint's blocks (never rewritten while current); the
        // decoder validates every byte it reads and copies what it keeps.
        media.with_slice(*off, *len, &mut |payload| {
            decoded = Some(codec::decode_checkpoint(payload));
        })?;
        return decoded.unwrap_or_else(|| Err(Error::Internal("checkpoint was not read".into())));
    }
    let total: u64 = runs.iter().map(|&(_, len)| len).sum();
    let mut payload = vec![
        0u8;
        usize::try_from(total)
            .map_err(|_| Error::Invalid("checkpoint larger than memory"))?
    ];
    let mut filled = 0usize;
    for &(off, len) in runs {
        let len = len as usize;
        media.read(off, &mut payload[filled..filled + len])?;
        filled += len;
    }
    codec::decode_checkpoint(&payload)
}

pub(crate) fn derive_space(
    inodes: &ShardedInodes,
    checkpoint_extents: &[PhysExtent],
    pool_start: u64,
    total_blocks: u64,
) -> Result<Space> {
    let mut space = Space::new(pool_start, total_blocks);
    // Built in bulk rather than by `incref`/`owner_insert` per extent: the
    // inode table iterates in hash order, so per-extent inserts land at
    // random places of both trees (cache misses, node splits), and
    // `incref` splits and re-merges refcount runs each time. Sorting once
    // and building the trees from sorted runs is several times faster at
    // 1M extents and yields the same maps.
    // Most files have one extent or none: a good first size without an
    // extra pass over the table to count them.
    let mut owners: Vec<(OwnerKey, u32)> = Vec::with_capacity(inodes.len());
    for (&ino, inode) in inodes.iter() {
        let inode = rlock(inode);
        for (&fb, e) in &inode.extents {
            let len_blocks = e.len_blocks as u64;
            if !space.in_pool(e.phys_block, len_blocks) {
                return Err(Error::Corrupt(format!(
                    "extent {}+{len_blocks} lies outside the block pool",
                    e.phys_block
                )));
            }
            owners.push((
                OwnerKey {
                    phys_block: e.phys_block,
                    ino,
                    file_block: fb,
                },
                e.len_blocks,
            ));
        }
    }
    owners.sort_unstable_by_key(|&(key, _)| key);
    // Sorted input: the owner tree is bulk-built without per-key searches.
    space.set_derived(refcount_runs(&owners), owners.into_iter().collect());
    let mut used: Vec<(u64, u64)> = space
        .refcounts()
        .iter()
        .map(|(&s, r)| (s, r.len_blocks))
        .collect();
    for ext in checkpoint_extents {
        if !space.in_pool(ext.start, ext.len) {
            return Err(Error::Corrupt("checkpoint outside the pool".into()));
        }
        if !space
            .refcounts_in(ext.start, ext.len)
            .iter()
            .all(|r| r.2 == 0)
        {
            return Err(Error::Corrupt(
                "checkpoint blocks are also mapped by a file".into(),
            ));
        }
        used.push((ext.start, ext.len));
    }
    used.sort_unstable();
    let mut pos = pool_start;
    for (s, l) in used {
        if s > pos {
            space.free_now(pos, s - pos);
        }
        pos = pos.max(s + l);
    }
    if pos < total_blocks {
        space.free_now(pos, total_blocks - pos);
    }
    space.set_checkpoint_extents(checkpoint_extents.to_vec());
    Ok(space)
}

/// The refcount runs implied by owner entries sorted by physical block:
/// maximal runs of blocks covered by the same nonzero number of entries
/// (what `incref` of every entry would build). A sweep over start and end
/// points: starts come sorted with the entries, ends are sorted once.
fn refcount_runs(sorted_owners: &[(OwnerKey, u32)]) -> BTreeMap<u64, RefRun> {
    let mut ends: Vec<u64> = sorted_owners
        .iter()
        .filter(|(_, len)| *len > 0)
        .map(|(key, len)| key.phys_block + *len as u64)
        .collect();
    ends.sort_unstable();
    let mut starts = sorted_owners
        .iter()
        .filter(|(_, len)| *len > 0)
        .map(|(key, _)| key.phys_block)
        .peekable();
    let mut ends = ends.into_iter().peekable();
    let mut runs: Vec<(u64, RefRun)> = Vec::new();
    let mut depth: u64 = 0;
    let mut pos = 0u64;
    loop {
        let next = match (starts.peek(), ends.peek()) {
            (Some(&s), Some(&e)) => s.min(e),
            (Some(&s), None) => s,
            (None, Some(&e)) => e,
            (None, None) => break,
        };
        if depth > 0 && next > pos {
            let refcount = u32::try_from(depth).unwrap_or(u32::MAX);
            match runs.last_mut() {
                Some((s, run)) if *s + run.len_blocks == pos && run.refcount == refcount => {
                    run.len_blocks += next - pos;
                }
                _ => runs.push((
                    pos,
                    RefRun {
                        len_blocks: next - pos,
                        refcount,
                    },
                )),
            }
        }
        while starts.next_if_eq(&next).is_some() {
            depth += 1;
        }
        while ends.next_if_eq(&next).is_some() {
            depth -= 1;
        }
        pos = next;
    }
    runs.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Refcount of every block `0..limit` according to a refcount tree.
    fn per_block(tree: &BTreeMap<u64, RefRun>, limit: u64) -> Vec<u32> {
        let mut counts = vec![0u32; limit as usize];
        for (&start, run) in tree {
            for block in start..start + run.len_blocks {
                counts[block as usize] = run.refcount;
            }
        }
        counts
    }

    #[test]
    fn checkpoints_decode_in_place_from_one_run_or_several() {
        let mut symlink = Inode::new(
            InodeAttrs {
                kind: FileKind::Symlink,
                perm: 0o777,
                nlink: 1,
                uid: 1,
                gid: 2,
                rdev: 0,
                size: 6,
                atime: Timestamp { secs: 1, nanos: 2 },
                mtime: Timestamp { secs: 3, nanos: 4 },
                ctime: Timestamp { secs: 5, nanos: 6 },
                btime: Timestamp { secs: -7, nanos: 8 },
                generation: 9,
                parent: 0,
                next_cookie: 0,
            },
            b"target".to_vec(),
        );
        symlink.set_xattr(b"user.a".to_vec(), b"b".to_vec());
        let mut w = Writer::default();
        codec::encode_checkpoint_header(&mut w, 8, 10, 1);
        codec::encode_checkpoint_inode(&mut w, 7, &symlink);
        let payload = w.buf;
        let media = crate::media::SimMedia::new(1 << 20);
        let split = payload.len() / 3;
        media.write(4096, &payload).expect("write");
        media.write(65536, &payload[..split]).expect("write");
        media.write(131072, &payload[split..]).expect("write");
        let one_run = [(4096, payload.len() as u64)];
        let two_runs = [
            (65536, split as u64),
            (131072, (payload.len() - split) as u64),
        ];
        for runs in [&one_run[..], &two_runs[..]] {
            let state = decode_checkpoint_in_place(&media, runs).expect("decodes");
            assert_eq!((state.next_ino, state.next_generation), (8, 10));
            let inode = rlock(state.inodes.get(7).expect("inode 7"));
            assert_eq!(inode.target(), b"target");
            assert_eq!(inode.xattrs().get(&b"user.a"[..]), Some(&b"b".to_vec()));
        }
        // A run cut short is refused, not misread.
        let short = [(4096, payload.len() as u64 - 1)];
        assert!(decode_checkpoint_in_place(&media, &short).is_err());
    }

    proptest! {
        #[test]
        fn swept_refcount_runs_match_incref_of_every_extent(
            extents in prop::collection::vec((0u64..200, 0u32..24), 0..40)
        ) {
            let mut by_incref = Space::new(0, 256);
            let mut owners = Vec::new();
            for (i, &(phys_block, len_blocks)) in extents.iter().enumerate() {
                by_incref.incref(phys_block, len_blocks as u64).expect("in pool");
                owners.push((OwnerKey { phys_block, ino: i as Ino, file_block: 0 }, len_blocks));
            }
            owners.sort_unstable_by_key(|&(key, _)| key);
            let swept = refcount_runs(&owners);
            prop_assert_eq!(per_block(&swept, 256), per_block(by_incref.refcounts(), 256));
            // Maximal runs: no two touching runs share a count.
            let runs: Vec<(u64, RefRun)> = swept.iter().map(|(&s, &r)| (s, r)).collect();
            for pair in runs.windows(2) {
                let touching = pair[0].0 + pair[0].1.len_blocks == pair[1].0;
                prop_assert!(!(touching && pair[0].1.refcount == pair[1].1.refcount));
                prop_assert!(pair[0].1.refcount > 0);
            }
        }
    }
}
