//! `SimMedia`: an in-memory persistent-memory simulator for crash tests.
//!
//! Model (the x86 persistence model at cache-line granularity):
//! * every store dirties the 64-byte lines it touches;
//! * `persist` snapshots the current contents of those lines ("flushed");
//! * `fence` makes all flushed snapshots durable;
//! * at a crash, the durable image survives, plus *any subset* of the lines
//!   that were stored but not yet flushed-and-fenced (a dirty line may be
//!   evicted by the cache at any time, a flushed one may or may not have
//!   reached the media).
//!
//! A fence hook lets a test observe every fence: it receives a
//! [`CrashPoint`] describing the state just *before* the fence takes effect,
//! from which crash images can be built and recovered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{check_range, Counters, Media, MediaError, MediaKind, Result, CACHE_LINE_BYTES};

const LINE: usize = CACHE_LINE_BYTES as usize;

/// The persistence state at one instant: what survives a crash for sure, and
/// which lines may additionally survive.
#[derive(Clone, Debug)]
pub struct CrashPoint {
    /// Number of fences executed before this point.
    pub fence_index: u64,
    /// The durable image.
    pub durable: Vec<u8>,
    /// Lines stored but not yet durable: (line byte offset, current contents).
    pub pending: Vec<(u64, [u8; LINE])>,
}

impl CrashPoint {
    /// The crash image made of the durable state plus the pending lines whose
    /// indices (into `pending`) are given.
    pub fn image<I: IntoIterator<Item = usize>>(&self, subset: I) -> Vec<u8> {
        let mut image = self.durable.clone();
        for idx in subset {
            let (off, bytes) = &self.pending[idx];
            let off = *off as usize;
            let end = (off + LINE).min(image.len());
            image[off..end].copy_from_slice(&bytes[..end - off]);
        }
        image
    }

    /// Every subset of pending lines when there are at most `max_exhaustive`
    /// of them, otherwise `samples` pseudo-random subsets (deterministic for a
    /// given `seed`) plus the empty and the full subset.
    pub fn subsets(&self, max_exhaustive: usize, samples: usize, seed: u64) -> Vec<Vec<usize>> {
        let n = self.pending.len();
        if n <= max_exhaustive && n < 32 {
            return (0u64..(1u64 << n))
                .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
                .collect();
        }
        let mut out = vec![Vec::new(), (0..n).collect()];
        let mut state = seed | 1;
        for _ in 0..samples {
            let mut subset = Vec::new();
            for i in 0..n {
                // xorshift64*: cheap, deterministic, good enough for sampling.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                if state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 63 == 1 {
                    subset.push(i);
                }
            }
            out.push(subset);
        }
        out
    }
}

type FenceHook = Box<dyn FnMut(&CrashPoint) + Send>;

struct SimState {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    /// Lines stored since their last flush.
    dirty: BTreeSet<u64>,
    /// Lines flushed but not yet fenced, with the contents at flush time.
    flushed: BTreeMap<u64, [u8; LINE]>,
}

/// In-memory simulated persistent memory. Cheap to clone (shared state).
#[derive(Clone)]
pub struct SimMedia {
    state: Arc<Mutex<SimState>>,
    hook: Arc<Mutex<Option<FenceHook>>>,
    len: u64,
    counters: Arc<SimCounters>,
    /// What `kind()` reports: `Simulated` (byte-persistent, commits fence)
    /// or `File` (page-cache flavoured, group commit; see `as_page_cache`).
    kind: MediaKind,
}

#[derive(Default)]
struct SimCounters {
    bytes_stored: AtomicU64,
    bytes_persisted: AtomicU64,
    lines_flushed: AtomicU64,
    fences: AtomicU64,
}

impl SimMedia {
    /// A zero-filled region of `len` bytes, all durable.
    pub fn new(len: u64) -> SimMedia {
        SimMedia::from_image(vec![0; len as usize])
    }

    /// A region whose durable and volatile contents are `image` (a crash
    /// image being recovered, or a copy of a real image).
    pub fn from_image(image: Vec<u8>) -> SimMedia {
        let len = image.len() as u64;
        SimMedia {
            state: Arc::new(Mutex::new(SimState {
                durable: image.clone(),
                volatile: image,
                dirty: BTreeSet::new(),
                flushed: BTreeMap::new(),
            })),
            hook: Arc::new(Mutex::new(None)),
            len,
            counters: Arc::new(SimCounters::default()),
            kind: MediaKind::Simulated,
        }
    }

    /// Another handle on the same simulated state that reports itself as
    /// page-cache backed (`MediaKind::File`): the journal then uses group
    /// commit, and only `sync` makes commits durable. The persistence model
    /// is unchanged, so crash tests of group commit use the same machinery.
    pub fn as_page_cache(&self) -> SimMedia {
        SimMedia {
            kind: MediaKind::File,
            ..self.clone()
        }
    }

    /// Install (or remove) the fence hook. It is called at every fence with
    /// the state just before the fence takes effect. It must not call back
    /// into this `SimMedia`.
    pub fn set_fence_hook(&self, hook: Option<FenceHook>) {
        *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    /// The current crash point (as if the machine crashed now).
    pub fn crash_point(&self) -> CrashPoint {
        let state = self.lock();
        self.crash_point_locked(&state)
    }

    /// What a crash right now would leave with no pending line surviving.
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// The current volatile contents (what a clean shutdown would leave).
    pub fn volatile_image(&self) -> Vec<u8> {
        self.lock().volatile.clone()
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic in a test thread must not hide the state from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn crash_point_locked(&self, state: &SimState) -> CrashPoint {
        let lines: BTreeSet<u64> = state
            .dirty
            .iter()
            .chain(state.flushed.keys())
            .copied()
            .collect();
        let pending = lines
            .into_iter()
            .map(|line| {
                let mut bytes = [0u8; LINE];
                let off = line as usize;
                let end = (off + LINE).min(state.volatile.len());
                bytes[..end - off].copy_from_slice(&state.volatile[off..end]);
                (line, bytes)
            })
            .collect();
        CrashPoint {
            fence_index: self.counters.fences.load(Ordering::Relaxed),
            durable: state.durable.clone(),
            pending,
        }
    }

    fn mark_dirty(state: &mut SimState, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = off / CACHE_LINE_BYTES * CACHE_LINE_BYTES;
        let mut line = first;
        while line < off + len {
            state.dirty.insert(line);
            line += CACHE_LINE_BYTES;
        }
    }

    fn stored(&self, len: u64) {
        self.counters.bytes_stored.fetch_add(len, Ordering::Relaxed);
    }
}

impl Media for SimMedia {
    fn len(&self) -> u64 {
        self.len
    }

    fn kind(&self) -> MediaKind {
        self.kind
    }

    fn describe(&self) -> String {
        format!("simulated pmem ({} bytes)", self.len)
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        check_range(off, buf.len() as u64, self.len)?;
        let state = self.lock();
        buf.copy_from_slice(&state.volatile[off as usize..off as usize + buf.len()]);
        Ok(())
    }

    fn write(&self, off: u64, data: &[u8]) -> Result<()> {
        check_range(off, data.len() as u64, self.len)?;
        let mut state = self.lock();
        state.volatile[off as usize..off as usize + data.len()].copy_from_slice(data);
        Self::mark_dirty(&mut state, off, data.len() as u64);
        self.stored(data.len() as u64);
        Ok(())
    }

    fn write_zeroes(&self, off: u64, len: u64) -> Result<()> {
        check_range(off, len, self.len)?;
        let mut state = self.lock();
        state.volatile[off as usize..(off + len) as usize].fill(0);
        Self::mark_dirty(&mut state, off, len);
        self.stored(len);
        Ok(())
    }

    fn copy_within(&self, src: u64, dst: u64, len: u64) -> Result<()> {
        check_range(src, len, self.len)?;
        check_range(dst, len, self.len)?;
        let mut state = self.lock();
        state
            .volatile
            .copy_within(src as usize..(src + len) as usize, dst as usize);
        Self::mark_dirty(&mut state, dst, len);
        self.stored(len);
        Ok(())
    }

    fn store_u64(&self, off: u64, value: u64) -> Result<()> {
        if off % 8 != 0 {
            return Err(MediaError::Misaligned(off));
        }
        // An aligned 8-byte store lies inside one line, so it is never torn.
        self.write(off, &value.to_le_bytes())
    }

    fn load_u64(&self, off: u64) -> Result<u64> {
        if off % 8 != 0 {
            return Err(MediaError::Misaligned(off));
        }
        let mut bytes = [0u8; 8];
        self.read(off, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn persist(&self, off: u64, len: u64) -> Result<()> {
        check_range(off, len, self.len)?;
        if len == 0 {
            return Ok(());
        }
        let mut state = self.lock();
        let first = off / CACHE_LINE_BYTES * CACHE_LINE_BYTES;
        let mut line = first;
        let mut lines = 0;
        while line < off + len {
            let start = line as usize;
            let end = (start + LINE).min(state.volatile.len());
            let mut bytes = [0u8; LINE];
            bytes[..end - start].copy_from_slice(&state.volatile[start..end]);
            state.flushed.insert(line, bytes);
            state.dirty.remove(&line);
            line += CACHE_LINE_BYTES;
            lines += 1;
        }
        self.counters
            .bytes_persisted
            .fetch_add(len, Ordering::Relaxed);
        self.counters
            .lines_flushed
            .fetch_add(lines, Ordering::Relaxed);
        Ok(())
    }

    fn fence(&self) -> Result<()> {
        let point = {
            let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner());
            if hook.is_some() {
                Some(self.crash_point_locked(&self.lock()))
            } else {
                None
            }
        };
        if let Some(point) = point {
            if let Some(hook) = self.hook.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                hook(&point);
            }
        }
        let mut state = self.lock();
        let flushed = std::mem::take(&mut state.flushed);
        for (line, bytes) in flushed {
            let start = line as usize;
            let end = (start + LINE).min(state.durable.len());
            state.durable[start..end].copy_from_slice(&bytes[..end - start]);
        }
        self.counters.fences.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn with_slice(&self, off: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        check_range(off, len, self.len)?;
        let state = self.lock();
        f(&state.volatile[off as usize..(off + len) as usize]);
        Ok(())
    }

    fn counters(&self) -> Counters {
        Counters {
            bytes_stored: self.counters.bytes_stored.load(Ordering::Relaxed),
            bytes_persisted: self.counters.bytes_persisted.load(Ordering::Relaxed),
            lines_flushed: self.counters.lines_flushed.load(Ordering::Relaxed),
            fences: self.counters.fences.load(Ordering::Relaxed),
            msyncs: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpersisted_store_is_pending_and_fenced_store_is_durable() {
        let media = SimMedia::new(4096);
        media.write(100, &[1, 2, 3]).unwrap();
        let point = media.crash_point();
        assert_eq!(point.pending.len(), 1);
        assert_eq!(point.pending[0].0, 64);
        assert_eq!(point.image([])[100], 0);
        assert_eq!(point.image([0])[100..103], [1, 2, 3]);
        media.persist(100, 3).unwrap();
        media.fence().unwrap();
        assert!(media.crash_point().pending.is_empty());
        assert_eq!(media.durable_image()[100..103], [1, 2, 3]);
    }

    #[test]
    fn flush_without_fence_is_not_durable() {
        let media = SimMedia::new(4096);
        media.write(0, &[9; 130]).unwrap();
        media.persist(0, 130).unwrap();
        assert_eq!(media.durable_image()[0], 0);
        assert_eq!(media.crash_point().pending.len(), 3);
    }

    #[test]
    fn store_after_flush_is_not_made_durable_by_the_fence() {
        let media = SimMedia::new(4096);
        media.write(0, &[1]).unwrap();
        media.persist(0, 1).unwrap();
        media.write(0, &[2]).unwrap();
        media.fence().unwrap();
        assert_eq!(media.durable_image()[0], 1);
        assert_eq!(media.crash_point().pending.len(), 1);
    }

    #[test]
    fn fence_hook_sees_state_before_the_fence() {
        let media = SimMedia::new(4096);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        media.set_fence_hook(Some(Box::new(move |p: &CrashPoint| {
            seen2
                .lock()
                .unwrap()
                .push((p.fence_index, p.pending.len(), p.durable[0]));
        })));
        media.write(0, &[5]).unwrap();
        media.persist(0, 1).unwrap();
        media.fence().unwrap();
        media.fence().unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![(0, 1, 0), (1, 0, 5)]);
    }

    #[test]
    fn out_of_bounds_and_misaligned_access_is_an_error() {
        let media = SimMedia::new(4096);
        assert!(media.write(4095, &[0, 0]).is_err());
        assert!(media.read(u64::MAX, &mut [0]).is_err());
        assert!(media.store_u64(4, 1).is_err());
        assert!(media.persist(4000, 200).is_err());
    }

    #[test]
    fn subsets_are_exhaustive_for_few_lines_and_sampled_for_many() {
        let media = SimMedia::new(1 << 16);
        media.write(0, &[1; 192]).unwrap();
        assert_eq!(media.crash_point().subsets(8, 10, 1).len(), 8);
        media.write(1024, &[1; 64 * 20]).unwrap();
        let subsets = media.crash_point().subsets(8, 10, 1);
        assert_eq!(subsets.len(), 12);
    }
}
