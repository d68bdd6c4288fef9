//! Filesystem core benches: create/lookup/unlink, 4 KiB writes in place vs
//! copy-on-write, clone of files with 1 / 1k / 100k extents, mount of an
//! image with many inodes; prints the DRAM cost per extent.
//!
//! Media: image files in /dev/shm mapped by `MmapMedia` (page cache, group
//! commit), falling back to the temp dir.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cowdax::fs::{Creds, FallocMode, Fs, Ino, OpenOptions, ROOT_INO};
use cowdax::media::{Media, MmapMedia};
use cowdax::store::FormatOptions;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const CREDS: Creds = Creds { uid: 0, gid: 0 };
const BS: u64 = 4096;

struct Image {
    fs: Option<Fs>,
    media: Arc<dyn Media>,
    path: PathBuf,
}

impl Drop for Image {
    fn drop(&mut self) {
        if let Some(fs) = self.fs.take() {
            let _ = fs.unmount();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Image {
    fn fs(&self) -> &Fs {
        self.fs.as_ref().expect("mounted")
    }
}

fn image(tag: &str, bytes: u64, journal_bytes: Option<u64>) -> Image {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!(
        "cowdax-core-bench-{tag}-{}.img",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let media: Arc<dyn Media> = Arc::new(MmapMedia::create(&path, bytes).expect("image"));
    let opts = FormatOptions {
        label: "bench".into(),
        journal_bytes,
        uuid: None,
    };
    Fs::mkfs(media.clone(), &opts, CREDS).expect("mkfs");
    let fs = Fs::open(media.clone(), OpenOptions::default()).expect("open");
    Image {
        fs: Some(fs),
        media,
        path,
    }
}

fn create(fs: &Fs, parent: Ino, name: &[u8]) -> Ino {
    fs.mknod(parent, name, libc::S_IFREG | 0o644, 0, CREDS)
        .expect("create")
        .ino
}

fn rss_anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// A file of `extents` one-block extents separated by holes, made with
/// fallocate so no data page is touched.
fn fragmented_file(fs: &Fs, name: &[u8], extents: u64) -> Ino {
    let ino = create(fs, ROOT_INO, name);
    for i in 0..extents {
        fs.fallocate(ino, 2 * i * BS, BS, FallocMode::Allocate)
            .expect("fallocate");
    }
    ino
}

/// DRAM per extent, measured first in the process (fresh heap) as the
/// RssAnon growth while 200k extents are created. Two layouts: a file of
/// one-block extents separated by holes (neighbouring physical blocks have
/// equal refcounts, so the refcount tree stays one run), and the same
/// extents alternately shared with a second file (every extent its own
/// refcount run: the worst case).
fn dram_per_extent(_c: &mut Criterion) {
    const EXTENTS: u64 = 200_000;
    let img = image("dram", 1 << 30, Some(64 << 20));
    let fs = img.fs();
    let rss0 = rss_anon_kib();
    let src = fragmented_file(fs, b"extents", EXTENTS);
    let rss1 = rss_anon_kib();
    eprintln!(
        "DRAM per extent (extent map + owner map + refcount tree, RssAnon delta): {} bytes",
        rss1.saturating_sub(rss0) * 1024 / EXTENTS
    );
    let other = create(fs, ROOT_INO, b"sharer");
    let rss2 = rss_anon_kib();
    for i in (0..EXTENTS).step_by(2) {
        fs.clone_range(src, 2 * i * BS, other, 2 * i * BS, BS)
            .expect("clone");
    }
    let rss3 = rss_anon_kib();
    eprintln!(
        "DRAM per extent when every other extent is shared (worst-case refcount runs): {} bytes \
         per added extent reference",
        rss3.saturating_sub(rss2) * 1024 / (EXTENTS / 2)
    );
}

fn namespace(c: &mut Criterion) {
    let img = image("ns", 256 << 20, None);
    let fs = img.fs();
    let dir = fs.mkdir(ROOT_INO, b"d", 0o755, CREDS).expect("mkdir").ino;
    for i in 0..10_000 {
        create(fs, dir, format!("existing-{i}").as_bytes());
    }
    let mut group = c.benchmark_group("namespace");
    let mut n = 0u64;
    group.bench_function("create+unlink", |b| {
        b.iter(|| {
            n += 1;
            let name = format!("tmp-{n}");
            create(fs, dir, name.as_bytes());
            fs.unlink(dir, name.as_bytes()).expect("unlink");
        })
    });
    let mut i = 0u64;
    group.bench_function("lookup (10k-entry dir)", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            fs.lookup(dir, format!("existing-{i}").as_bytes())
                .expect("lookup")
        })
    });
    group.finish();
}

fn writes(c: &mut Criterion) {
    const FILE_BLOCKS: u64 = 4096;
    let img = image("wr", 512 << 20, None);
    let fs = img.fs();
    let src = create(fs, ROOT_INO, b"src");
    let block = vec![0x5au8; BS as usize];
    let whole = vec![0xa5u8; (FILE_BLOCKS * BS) as usize];
    fs.write(src, 0, &whole).expect("fill");
    let mut group = c.benchmark_group("write 4KiB");
    let mut k = 0u64;
    group.bench_function("in place (unshared)", |b| {
        b.iter(|| {
            k = (k + 389) % FILE_BLOCKS;
            fs.write(src, k * BS, &block).expect("write")
        })
    });
    // CoW: every timed write hits a block still shared with `src`.
    group.bench_function("copy-on-write (shared)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let dst = create(fs, ROOT_INO, b"cow");
                fs.clone_range(src, 0, dst, 0, 0).expect("clone");
                let batch = (iters - done).min(FILE_BLOCKS);
                let start = Instant::now();
                for j in 0..batch {
                    fs.write(dst, ((j * 389) % FILE_BLOCKS) * BS, &block)
                        .expect("cow write");
                }
                total += start.elapsed();
                fs.unlink(ROOT_INO, b"cow").expect("unlink");
                done += batch;
            }
            total
        })
    });
    group.finish();
    let before = img.media.counters();
    for j in 0..100 {
        fs.write(src, j * BS, &block).expect("write");
    }
    let in_place = img.media.counters().since(&before);
    let dst = create(fs, ROOT_INO, b"cow-count");
    fs.clone_range(src, 0, dst, 0, 0).expect("clone");
    let before = img.media.counters();
    for j in 0..100 {
        fs.write(dst, j * BS, &block).expect("write");
    }
    let cow = img.media.counters().since(&before);
    eprintln!("per 4 KiB write, in place: {:?}", per(in_place, 100));
    eprintln!("per 4 KiB write, CoW:      {:?}", per(cow, 100));
}

fn per(c: cowdax::media::Counters, n: u64) -> [(&'static str, u64); 4] {
    [
        ("bytes_stored", c.bytes_stored / n),
        ("lines_flushed", c.lines_flushed / n),
        ("fences", c.fences / n),
        ("msyncs", c.msyncs / n),
    ]
}

fn clones(c: &mut Criterion) {
    let img = image("clone", 2 << 30, Some(64 << 20));
    let fs = img.fs();
    let mut group = c.benchmark_group("clone whole file");
    group.sample_size(10);
    for extents in [1u64, 1_000, 100_000] {
        let src = fragmented_file(fs, format!("src-{extents}").as_bytes(), extents);
        group.bench_with_input(BenchmarkId::from_parameter(extents), &extents, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dst = create(fs, ROOT_INO, b"dst");
                    let start = Instant::now();
                    fs.clone_range(src, 0, dst, 0, 0).expect("clone");
                    total += start.elapsed();
                    fs.unlink(ROOT_INO, b"dst").expect("unlink");
                }
                total
            })
        });
    }
    group.finish();
}

fn mount(c: &mut Criterion) {
    const DIRS: usize = 1000;
    const PER_DIR: usize = 1000;
    const REPLAYED: usize = 10_000;
    let mut img = image("mount", 2 << 30, Some(256 << 20));
    {
        let fs = img.fs();
        for d in 0..DIRS {
            let dir = fs
                .mkdir(ROOT_INO, format!("d{d}").as_bytes(), 0o755, CREDS)
                .expect("mkdir")
                .ino;
            for f in 0..PER_DIR {
                create(fs, dir, format!("f{f}").as_bytes());
            }
        }
    }
    if let Some(fs) = img.fs.take() {
        fs.unmount().expect("unmount");
    }
    let media = img.media.clone();
    // Then 10k creates that only the journal holds (no unmount): every
    // mount below loads the checkpoint and replays them.
    {
        let fs = Fs::open(media.clone(), OpenOptions::default()).expect("open");
        let dir = fs
            .mkdir(ROOT_INO, b"journal-only", 0o755, CREDS)
            .expect("mkdir")
            .ino;
        for f in 0..REPLAYED {
            create(&fs, dir, format!("j{f}").as_bytes());
        }
        fs.fsync(0, false).expect("sync");
    }
    let mut group = c.benchmark_group("mount");
    group.sample_size(10);
    group.bench_function("1M inodes (checkpoint load + replay of 10k creates)", |b| {
        b.iter(|| {
            // Read-only: nothing is written, every sample loads the same
            // checkpoint.
            let fs = Fs::open(media.clone(), OpenOptions { read_only: true }).expect("open");
            drop(fs);
        })
    });
    group.finish();
}

criterion_group!(benches, dram_per_extent, namespace, writes, clones, mount);
criterion_main!(benches);
