//! Cost of one journal commit (ns per transaction) for 128 B, 1 KiB and
//! 16 KiB payloads, plus the persistence work per transaction taken from
//! `Media::counters()`.
//!
//! Media: an image file in /dev/shm mapped by `MmapMedia` (page cache:
//! commits persist, `sync` msyncs); if that cannot be opened (no /dev/shm,
//! or a media layer without mapping support) the bench says so and uses
//! `SimMedia` instead. Checkpoints needed when the journal fills are taken
//! outside the timed region. The counters are also printed for `SimMedia`,
//! the byte-persistent (pmem) model, where every commit fences.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cowdax::media::{Media, MmapMedia, SimMedia};
use cowdax::store::{Access, FormatOptions, PhysExtent, Store, StoreError};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const IMAGE_BYTES: u64 = 64 << 20;
const PAYLOAD_SIZES: [usize; 3] = [128, 1024, 16 * 1024];
const COUNTED_COMMITS: u64 = 1000;

struct Image {
    media: Arc<dyn Media>,
    path: Option<PathBuf>,
}

impl Drop for Image {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn image() -> Image {
    let path = PathBuf::from(format!("/dev/shm/cowdax-bench-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&path);
    match MmapMedia::create(&path, IMAGE_BYTES) {
        Ok(media) => Image {
            media: Arc::new(media),
            path: Some(path),
        },
        Err(err) => {
            let _ = std::fs::remove_file(&path);
            eprintln!(
                "journal_commit: cannot create {}: {err}; using SimMedia",
                path.display()
            );
            Image {
                media: Arc::new(SimMedia::new(IMAGE_BYTES)),
                path: None,
            }
        }
    }
}

/// Alternates checkpoints between two fixed pool extents (one block of
/// payload is plenty for the empty checkpoint used here).
struct Checkpointer {
    slots: [PhysExtent; 2],
    next: usize,
}

impl Checkpointer {
    fn new(store: &Store) -> Checkpointer {
        let pool = store.geometry().pool_start;
        Checkpointer {
            slots: [
                PhysExtent {
                    start: pool,
                    len: 2,
                },
                PhysExtent {
                    start: pool + 2,
                    len: 2,
                },
            ],
            next: 0,
        }
    }

    fn make_room(&mut self, store: &mut Store, payload_len: usize) {
        let needed = cowdax::store::journal::record_bytes(payload_len as u64) * 2;
        if store.journal_free_bytes() < needed {
            let slot = self.slots[self.next];
            self.next = 1 - self.next;
            store
                .write_checkpoint(b"bench checkpoint", &[slot])
                .expect("checkpoint");
        }
    }
}

fn open_store() -> (Image, Store, Checkpointer) {
    open_store_on(image())
}

/// The pmem model: commits fence (byte-persistent), lines are counted.
fn simulated_image() -> Image {
    Image {
        media: Arc::new(SimMedia::new(IMAGE_BYTES)),
        path: None,
    }
}

fn open_store_on(image: Image) -> (Image, Store, Checkpointer) {
    Store::format(image.media.clone(), &FormatOptions::default()).expect("format");
    let (store, _) = Store::open(image.media.clone(), Access::ReadWrite).expect("open");
    let checkpointer = Checkpointer::new(&store);
    (image, store, checkpointer)
}

fn commit(store: &mut Store, payload: &[u8]) {
    match store.commit(payload) {
        Ok(_) => {}
        Err(StoreError::JournalFull) => panic!("make_room left too little space"),
        Err(err) => panic!("commit: {err}"),
    }
}

fn report_counters(label: &str, image: Image, size: usize, with_sync: bool) {
    let (image, mut store, mut checkpointer) = open_store_on(image);
    let payload = vec![0xa5u8; size];
    let mut work = cowdax::media::Counters::default();
    for _ in 0..COUNTED_COMMITS {
        checkpointer.make_room(&mut store, size);
        let before = image.media.counters();
        commit(&mut store, &payload);
        if with_sync {
            store.sync().expect("sync");
        }
        let delta = image.media.counters().since(&before);
        work.bytes_persisted += delta.bytes_persisted;
        work.lines_flushed += delta.lines_flushed;
        work.fences += delta.fences;
        work.msyncs += delta.msyncs;
    }
    let per = |n: u64| n as f64 / COUNTED_COMMITS as f64;
    eprintln!(
        "{label} {size} B on {}: per transaction {:.1} lines flushed, {:.2} fences, {:.2} msyncs, {:.0} bytes persisted",
        image.media.kind(),
        per(work.lines_flushed),
        per(work.fences),
        per(work.msyncs),
        per(work.bytes_persisted)
    );
}

fn bench_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_commit");
    for size in PAYLOAD_SIZES {
        report_counters("commit", image(), size, false);
        report_counters("commit+sync", image(), size, true);
        report_counters("commit", simulated_image(), size, false);
        let (_image, mut store, mut checkpointer) = open_store();
        let payload = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("commit", size), &size, |b, _| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    checkpointer.make_room(&mut store, size);
                    let start = Instant::now();
                    commit(&mut store, std::hint::black_box(&payload));
                    timed += start.elapsed();
                }
                timed
            })
        });
        group.bench_with_input(BenchmarkId::new("commit+sync", size), &size, |b, _| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    checkpointer.make_room(&mut store, size);
                    let start = Instant::now();
                    commit(&mut store, std::hint::black_box(&payload));
                    store.sync().expect("sync");
                    timed += start.elapsed();
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_commit);
criterion_main!(benches);
