//! Scale: a 100k-entry directory and a million files. Times and memory are
//! reported (eprintln), never asserted; the behaviour is.

mod core_support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use core_support::{assert_clean, format_opts, ROOT_CREDS};
use cowdax::fs::{Error, Fs, OpenOptions, ROOT_INO};
use cowdax::media::{Media, MmapMedia};

/// Anonymous resident memory of this process in KiB (Linux; excludes the
/// mapped image).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

/// An image file in /dev/shm (page-cache media, group commit).
fn image(dir: &Path, bytes: u64, journal_bytes: Option<u64>) -> Arc<dyn Media> {
    let path = dir.join("scale.img");
    let media: Arc<dyn Media> = Arc::new(MmapMedia::create(&path, bytes).expect("image"));
    Fs::mkfs(media.clone(), &format_opts(journal_bytes), ROOT_CREDS).expect("mkfs");
    media
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir")
}

#[test]
fn hundred_thousand_entry_directory_stays_fast_and_readdir_is_stable() {
    const N: usize = 100_000;
    let dir = tmpdir();
    let media = image(dir.path(), 512 << 20, None);
    let fs = Fs::open(media.clone(), OpenOptions::default()).expect("open");
    let big = fs
        .mkdir(ROOT_INO, b"big", 0o755, ROOT_CREDS)
        .expect("mkdir")
        .ino;
    let rss0 = rss_kib();
    let t = Instant::now();
    for i in 0..N {
        fs.mknod(
            big,
            format!("file-{i:06}").as_bytes(),
            libc::S_IFREG | 0o644,
            0,
            ROOT_CREDS,
        )
        .expect("create");
    }
    let create_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in (0..N).step_by(7) {
        fs.lookup(big, format!("file-{i:06}").as_bytes())
            .expect("lookup");
    }
    let lookup_s = t.elapsed().as_secs_f64();
    assert!(matches!(fs.lookup(big, b"absent"), Err(Error::NotFound)));
    // Paged readdir while entries are removed behind and ahead of the
    // cursor: every entry present throughout is returned exactly once.
    let t = Instant::now();
    let mut seen = HashSet::new();
    let mut offset = 0;
    let mut page = 0;
    loop {
        let mut batch = Vec::new();
        fs.readdir(big, offset, &mut |e| {
            batch.push((e.name.clone(), e.next_offset));
            batch.len() < 1000
        })
        .expect("readdir");
        let Some(&(_, last)) = batch.last() else {
            break;
        };
        for (name, _) in batch {
            assert!(seen.insert(name), "entry returned twice");
        }
        offset = last;
        // Remove an entry far ahead (multiple of 1000 + 500) each page.
        let victim = page * 1000 + 50_500;
        if victim < N {
            fs.unlink(big, format!("file-{victim:06}").as_bytes())
                .expect("unlink ahead");
        }
        page += 1;
    }
    let readdir_s = t.elapsed().as_secs_f64();
    let removed = (0..N)
        .filter(|v| *v >= 50_500 && (v - 50_500) % 1000 == 0 && (v - 50_500) / 1000 < page)
        .count();
    // "." and ".." plus the entries still present.
    assert_eq!(seen.len(), 2 + N - removed);
    let rss1 = rss_kib();
    let t = Instant::now();
    fs.unmount().expect("unmount");
    let unmount_s = t.elapsed().as_secs_f64();
    drop(fs);
    let t = Instant::now();
    let fs = Fs::open(media, OpenOptions::default()).expect("reopen");
    let mount_s = t.elapsed().as_secs_f64();
    assert_eq!(
        fs.getattr(big).expect("getattr").size,
        (N - removed) as u64 * 32
    );
    assert_clean(&fs);
    eprintln!(
        "100k dir: create {create_s:.2}s, {} lookups {lookup_s:.3}s, paged readdir {readdir_s:.2}s, \
         unmount(checkpoint) {unmount_s:.2}s, mount {mount_s:.2}s, RSS growth {} KiB",
        N / 7 + 1,
        rss1.saturating_sub(rss0)
    );
}

#[test]
fn a_million_files_mount_and_scrub() {
    const DIRS: usize = 1000;
    const PER_DIR: usize = 1000;
    let dir = tmpdir();
    let media = image(dir.path(), 2 << 30, Some(256 << 20));
    let fs = Fs::open(media.clone(), OpenOptions::default()).expect("open");
    let rss0 = rss_kib();
    let t = Instant::now();
    // Two threads create in disjoint directories (the core runs them in
    // parallel up to the journal commit).
    std::thread::scope(|scope| {
        for half in 0..2 {
            let fs = &fs;
            scope.spawn(move || {
                for d in (half..DIRS).step_by(2) {
                    let dino = fs
                        .mkdir(ROOT_INO, format!("d{d}").as_bytes(), 0o755, ROOT_CREDS)
                        .expect("mkdir")
                        .ino;
                    for f in 0..PER_DIR {
                        fs.mknod(
                            dino,
                            format!("f{f}").as_bytes(),
                            libc::S_IFREG | 0o644,
                            0,
                            ROOT_CREDS,
                        )
                        .expect("create");
                    }
                }
            });
        }
    });
    let create_s = t.elapsed().as_secs_f64();
    let rss1 = rss_kib();
    let t = Instant::now();
    fs.unmount().expect("unmount");
    let unmount_s = t.elapsed().as_secs_f64();
    drop(fs);
    let t = Instant::now();
    let fs = Fs::open(media, OpenOptions::default()).expect("reopen");
    let mount_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let report = fs.scrub().expect("scrub");
    let scrub_s = t.elapsed().as_secs_f64();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.inodes, (DIRS * PER_DIR + DIRS + 1) as u64);
    let d7 = fs.lookup(ROOT_INO, b"d7").expect("d7").ino;
    fs.lookup(d7, b"f999").expect("f999");
    eprintln!(
        "1M files: create {create_s:.1}s, unmount(checkpoint) {unmount_s:.1}s, mount {mount_s:.1}s, \
         scrub {scrub_s:.1}s, RSS growth while creating {} MiB ({} B/inode)",
        rss1.saturating_sub(rss0) / 1024,
        rss1.saturating_sub(rss0) * 1024 / (DIRS * PER_DIR) as u64
    );
}
