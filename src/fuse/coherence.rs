//! Keeping the kernel's page cache coherent with writes that bypass it.
//!
//! A write that does not go through the page cache (an open with
//! `FOPEN_DIRECT_IO`, or an `O_DIRECT` write) changes the media under pages
//! the kernel may hold: a shared mapping faults pages in, read-only opens
//! cache what they read. Before sending such a write the kernel writes back
//! and drops the cached pages of the range, but nothing stops a page fault
//! from bringing a page back (read from the media *before* the write lands)
//! while the write is on its way. That page then holds the old bytes of the
//! written range; if a store through a mapping dirties it, its writeback
//! carries those old bytes over the new ones and the write is lost (issue
//! 19: one thread `pwrite`s, another stores through `MAP_SHARED`, markers
//! vanish). XFS excludes page faults during direct I/O with its invalidate
//! lock; a FUSE server cannot, so the daemon closes the window itself:
//!
//! 1. A direct write first *protects* its range, then applies the bytes.
//! 2. If the page cache may hold pages of the file (some READ, cached write
//!    or writeback was served through any of its open handles), the daemon
//!    asks the kernel to drop the range's pages (`FUSE_NOTIFY_INVAL_INODE`)
//!    and only then answers the write, from a thread of its own
//!    ([`Invalidations`]). Dirty pages are written back ("laundered") by that
//!    invalidation: writebacks skip the protected range, whose cached bytes
//!    are older than the write. Pages faulted in after the write was applied
//!    read the new bytes.
//! 3. The protection ends when the invalidation is done, before the reply.
//!
//! So a writeback never carries bytes older than a direct write over that
//! write, and no page older than a completed direct write stays cached. The
//! reply waits on its own thread because the invalidation itself needs FUSE
//! worker threads (to answer the launder writebacks and any page read it
//! waits for): a worker blocked in it could deadlock the session.
//!
//! Writes through the page cache (write-through `write(2)` of a cached
//! open, writebacks) need none of this: the page already holds what they
//! write. docs/FUSE.md ("Caching and coherence") and docs/CONFORMANCE.md
//! give the argument case by case.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use fuser::ReplyWrite;
use nix::sys::signal::{SigSet, SigmaskHow};

use super::invalidator::CacheInvalidator;
use crate::fs::Ino;

/// What the daemon knows about one open inode's page cache. Shared by all
/// open handles of the inode (see [`CoherenceRegistry`]).
#[derive(Debug, Default)]
pub struct InodeCoherence {
    /// Set (under `protected`'s lock) once any request may have put pages
    /// of this inode into the page cache; never cleared while the inode is
    /// open. Read without the lock on the read path, under it by writers.
    may_cache: AtomicBool,
    /// Byte ranges of direct writes in flight, each with its ticket.
    protected: Mutex<Vec<(u64, Range<u64>)>>,
    next_ticket: AtomicU64,
}

/// A direct write's protection of its range, from before it is applied
/// until the page cache has been invalidated.
#[derive(Debug)]
#[must_use = "a protection must be released"]
pub struct Protection {
    ticket: u64,
    range: Range<u64>,
}

impl Protection {
    pub fn range(&self) -> &Range<u64> {
        &self.range
    }
}

impl InodeCoherence {
    fn protected(&self) -> MutexGuard<'_, Vec<(u64, Range<u64>)>> {
        // Each critical section is a push, a retain or a read; a panic in
        // one cannot leave the list half-changed.
        self.protected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Call before serving a READ or a write through the page cache: pages
    /// of this inode may be cached from now on.
    pub fn note_page_cache_use(&self) {
        if !self.may_cache.load(Ordering::Acquire) {
            let _protected = self.protected();
            self.may_cache.store(true, Ordering::Release);
        }
    }

    /// Step 1 of a direct write: protect `range` before applying it.
    pub fn protect(&self, range: Range<u64>) -> Protection {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        self.protected().push((ticket, range.clone()));
        Protection { ticket, range }
    }

    /// Step 2, after the write was applied: whether the page cache may hold
    /// pages that must be invalidated before the reply. If not, the
    /// protection ends here. Deciding under the lock orders this against
    /// [`note_page_cache_use`](Self::note_page_cache_use): a read that
    /// marks the inode after this check reads the media after the write.
    pub fn needs_invalidation(&self, protection: &Protection) -> bool {
        let mut protected = self.protected();
        if self.may_cache.load(Ordering::Acquire) {
            return true;
        }
        protected.retain(|(ticket, _)| *ticket != protection.ticket);
        false
    }

    /// Step 3: the invalidation is done (or the write failed).
    pub fn release(&self, protection: Protection) {
        self.protected()
            .retain(|(ticket, _)| *ticket != protection.ticket);
    }

    /// A writeback of cached pages over `range`: marks the inode and calls
    /// `apply` for each part of `range` outside every protected range, in
    /// order, while holding the lock, so no direct write can protect and
    /// apply in between. Stops at the first error.
    pub fn write_back<E>(
        &self,
        range: Range<u64>,
        mut apply: impl FnMut(Range<u64>) -> Result<(), E>,
    ) -> Result<(), E> {
        let protected = self.protected();
        self.may_cache.store(true, Ordering::Release);
        for part in unprotected_parts(range, protected.iter().map(|(_, r)| r.clone())) {
            apply(part)?;
        }
        Ok(())
    }
}

/// `range` minus every range of `holes`, as ascending, non-empty parts.
fn unprotected_parts(
    range: Range<u64>,
    holes: impl Iterator<Item = Range<u64>>,
) -> Vec<Range<u64>> {
    let mut holes: Vec<Range<u64>> = holes
        .filter(|hole| hole.start < range.end && range.start < hole.end)
        .collect();
    holes.sort_by_key(|hole| hole.start);
    let mut parts = Vec::new();
    let mut cursor = range.start;
    for hole in holes {
        if hole.start > cursor {
            parts.push(cursor..hole.start.min(range.end));
        }
        cursor = cursor.max(hole.end);
        if cursor >= range.end {
            break;
        }
    }
    if cursor < range.end {
        parts.push(cursor..range.end);
    }
    parts
}

/// The per-inode states of open regular files, shared by their handles.
/// An inode's state lives from its first open to its last release: once no
/// handle is open no mapping exists (a mapping holds its file open) and
/// the kernel wrote back the mapping's dirty pages at unmap.
#[derive(Debug, Default)]
pub struct CoherenceRegistry {
    open: Mutex<HashMap<Ino, (Arc<InodeCoherence>, u64)>>,
}

impl CoherenceRegistry {
    pub fn new() -> CoherenceRegistry {
        CoherenceRegistry::default()
    }

    fn table(&self) -> MutexGuard<'_, HashMap<Ino, (Arc<InodeCoherence>, u64)>> {
        // Single inserts, updates and removes: consistent after a panic.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A handle of `ino` was opened.
    pub fn open(&self, ino: Ino) -> Arc<InodeCoherence> {
        let mut table = self.table();
        let (state, handles) = table.entry(ino).or_default();
        *handles += 1;
        Arc::clone(state)
    }

    /// A handle of `ino` was released.
    pub fn release(&self, ino: Ino) {
        let mut table = self.table();
        if let Some((_, handles)) = table.get_mut(&ino) {
            *handles -= 1;
            if *handles == 0 {
                table.remove(&ino);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().len()
    }
}

/// A direct write waiting for its invalidation before its reply.
struct Invalidation {
    ino: Ino,
    state: Arc<InodeCoherence>,
    protection: Protection,
    reply: ReplyWrite,
    written: u32,
}

/// The thread that invalidates page-cache ranges after direct writes and
/// then answers them (module docs: why not in the FUSE worker).
pub struct Invalidations {
    queue: Sender<Invalidation>,
}

impl Invalidations {
    pub fn start(invalidator: Arc<CacheInvalidator>) -> std::io::Result<Invalidations> {
        let (queue, jobs) = mpsc::channel();
        // The daemon's termination signals belong to its signal thread, and
        // this thread starts before the daemon blocks them: start it with
        // every signal blocked (a new thread inherits the mask), so none is
        // ever delivered here, not even before it runs.
        let previous = SigSet::all().thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
        let spawned = std::thread::Builder::new()
            .name("cowdax-inval".into())
            .spawn(move || run_invalidations(&invalidator, jobs));
        previous.thread_set_mask()?;
        spawned?;
        Ok(Invalidations { queue })
    }

    /// Invalidates `protection`'s range of `ino`, then releases it and
    /// replies `written`.
    pub fn invalidate_then_reply(
        &self,
        ino: Ino,
        state: Arc<InodeCoherence>,
        protection: Protection,
        reply: ReplyWrite,
        written: u32,
    ) {
        let job = Invalidation {
            ino,
            state,
            protection,
            reply,
            written,
        };
        if let Err(mpsc::SendError(job)) = self.queue.send(job) {
            // The thread is gone (it only ends with the channel): do the
            // work here rather than never answer.
            log::error!("page cache invalidation thread is gone");
            finish(&CacheInvalidator::new(), job);
        }
    }
}

fn run_invalidations(invalidator: &CacheInvalidator, jobs: Receiver<Invalidation>) {
    for job in jobs {
        finish(invalidator, job);
    }
}

fn finish(invalidator: &CacheInvalidator, job: Invalidation) {
    let range = job.protection.range().clone();
    if let Err(err) = invalidator.invalidate_range(job.ino, range.start, range.end - range.start) {
        // ENOENT: the kernel has no such inode cached, so no pages either.
        if err.raw_os_error() != Some(libc::ENOENT) {
            log::warn!(
                "inode {}: dropping cached pages after a direct write failed: {err}",
                job.ino
            );
        }
    }
    job.state.release(job.protection);
    job.reply.written(job.written);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprotected_parts_cut_out_every_overlapping_range() {
        assert_eq!(unprotected_parts(0..100, std::iter::empty()), vec![0..100]);
        assert_eq!(
            unprotected_parts(0..100, [10..20, 50..60].into_iter()),
            vec![0..10, 20..50, 60..100]
        );
        assert_eq!(
            unprotected_parts(0..100, [50..60, 0..10, 55..70].into_iter()),
            vec![10..50, 70..100]
        );
        assert_eq!(
            unprotected_parts(10..20, std::iter::once(0..30)),
            Vec::<Range<u64>>::new()
        );
        assert_eq!(
            unprotected_parts(10..20, [0..10, 20..30].into_iter()),
            vec![10..20]
        );
        assert_eq!(
            unprotected_parts(10..20, std::iter::once(15..30)),
            vec![10..15]
        );
    }

    #[test]
    fn a_direct_write_needs_invalidation_only_once_pages_may_be_cached() {
        let state = InodeCoherence::default();
        let first = state.protect(0..4096);
        assert!(!state.needs_invalidation(&first));
        // needs_invalidation released it: a writeback is not held back.
        let mut applied = Vec::new();
        state
            .write_back(0..8192, |part| {
                applied.push(part);
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(applied, vec![0..8192]);
        // The writeback marked the inode: now direct writes invalidate, and
        // writebacks skip their ranges until they are released.
        let second = state.protect(1024..1032);
        assert!(state.needs_invalidation(&second));
        applied.clear();
        state
            .write_back(0..4096, |part| {
                applied.push(part);
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(applied, vec![0..1024, 1032..4096]);
        state.release(second);
        applied.clear();
        state
            .write_back(0..4096, |part| {
                applied.push(part);
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(applied, vec![0..4096]);
    }

    #[test]
    fn a_read_marks_the_inode() {
        let state = InodeCoherence::default();
        state.note_page_cache_use();
        let protection = state.protect(0..1);
        assert!(state.needs_invalidation(&protection));
        state.release(protection);
        assert!(state.protected().is_empty());
    }

    #[test]
    fn the_registry_shares_state_between_handles_until_the_last_release() {
        let registry = CoherenceRegistry::new();
        let a = registry.open(7);
        let b = registry.open(7);
        assert!(Arc::ptr_eq(&a, &b));
        registry.release(7);
        assert_eq!(registry.len(), 1);
        registry.release(7);
        assert_eq!(registry.len(), 0);
        let c = registry.open(7);
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
