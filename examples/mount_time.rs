//! Mount-time harness for issue 6: builds (once) an image with N files of
//! 4 KiB (one extent each) in 1000 directories, then times `Fs::open` on it
//! after a clean unmount (checkpoint load) and after a crash (checkpoint +
//! journal replay of 10k more files), read-only so every run loads the same
//! image. Phase times are logged by the core at debug level
//! (`RUST_LOG=cowdax::fs=debug`).
//!
//!   cargo run --release --example mount_time -- [FILES] [RUNS]
//!
//! Images are kept in /dev/shm/cowdax-mount-time-{FILES}-{clean,crash}.img
//! and reused by later runs (delete them to rebuild).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cowdax::fs::{Creds, Fs, OpenOptions, ROOT_INO};
use cowdax::media::{Media, MmapMedia, OpenMode};
use cowdax::store::FormatOptions;

const CREDS: Creds = Creds { uid: 0, gid: 0 };
const DIRS: u64 = 1000;
const REPLAYED: u64 = 10_000;

fn populate(fs: &Fs, files: u64) {
    let data = vec![0x5a_u8; 4096];
    let per_dir = files.div_ceil(DIRS);
    let mut made = 0;
    for d in 0..DIRS {
        if made == files {
            break;
        }
        let dir = fs
            .mkdir(ROOT_INO, format!("d{d}").as_bytes(), 0o755, CREDS)
            .expect("mkdir")
            .ino;
        for f in 0..per_dir.min(files - made) {
            let ino = fs
                .mknod(
                    dir,
                    format!("f{f}").as_bytes(),
                    libc::S_IFREG | 0o644,
                    0,
                    CREDS,
                )
                .expect("create")
                .ino;
            fs.write(ino, 0, &data).expect("write");
            made += 1;
        }
    }
}

fn build(clean: &Path, crash: &Path, files: u64) {
    let bytes = files * 4096 * 5 / 4 + (1 << 30);
    let media: Arc<dyn Media> = Arc::new(MmapMedia::create(clean, bytes).expect("image"));
    let opts = FormatOptions {
        label: "mount-time".into(),
        journal_bytes: Some(256 << 20),
        uuid: None,
    };
    Fs::mkfs(media.clone(), &opts, CREDS).expect("mkfs");
    let t = Instant::now();
    let fs = Fs::open(media.clone(), OpenOptions::default()).expect("open");
    populate(&fs, files);
    fs.unmount().expect("unmount");
    drop(fs);
    drop(media);
    eprintln!(
        "built {} in {:.1} s",
        clean.display(),
        t.elapsed().as_secs_f64()
    );
    std::fs::copy(clean, crash).expect("copy image");
    let media: Arc<dyn Media> =
        Arc::new(MmapMedia::open(crash, OpenMode::ReadWrite).expect("image"));
    let fs = Fs::open(media, OpenOptions::default()).expect("open");
    let dir = fs
        .mkdir(ROOT_INO, b"journal-only", 0o755, CREDS)
        .expect("mkdir")
        .ino;
    let data = vec![0xa5_u8; 4096];
    for f in 0..REPLAYED {
        let ino = fs
            .mknod(
                dir,
                format!("j{f}").as_bytes(),
                libc::S_IFREG | 0o644,
                0,
                CREDS,
            )
            .expect("create")
            .ino;
        fs.write(ino, 0, &data).expect("write");
    }
    fs.fsync(0, false).expect("sync");
    // Dropped without unmount: the next open replays the journal.
}

/// Anonymous resident memory of this process in KiB (heap, not the mapped
/// image), as tools/bench/mount_scale.sh reads it for the daemon.
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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    env_logger::init();
    let mut args = std::env::args().skip(1);
    let files: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("FILES"));
    let runs: usize = args.next().map_or(5, |a| a.parse().expect("RUNS"));
    let dir = PathBuf::from("/dev/shm");
    let clean = dir.join(format!("cowdax-mount-time-{files}-clean.img"));
    let crash = dir.join(format!("cowdax-mount-time-{files}-crash.img"));
    if !clean.exists() || !crash.exists() {
        build(&clean, &crash, files);
    }
    for (label, path) in [("clean", &clean), ("crash", &crash)] {
        let media: Arc<dyn Media> =
            Arc::new(MmapMedia::open(path, OpenMode::ReadOnly).expect("image"));
        let mut times = Vec::new();
        let mut grown_kib = Vec::new();
        for _ in 0..runs {
            let before_kib = rss_anon_kib();
            let t = Instant::now();
            let fs = Fs::open(media.clone(), OpenOptions { read_only: true }).expect("open");
            times.push(t.elapsed().as_secs_f64());
            // Growth while the mounted state is alive; it includes what the
            // allocator kept of freed temporaries, like the daemon's RSS.
            grown_kib.push(rss_anon_kib().saturating_sub(before_kib));
            drop(fs);
        }
        let all: Vec<String> = times.iter().map(|t| format!("{t:.3}")).collect();
        println!(
            "{label}: {files} files, median open {:.3} s over {runs} runs [{}]; \
             RssAnon growth by the first open {} bytes per file",
            median(&mut times),
            all.join(" "),
            grown_kib.first().copied().unwrap_or(0) * 1024 / files.max(1)
        );
    }
}
