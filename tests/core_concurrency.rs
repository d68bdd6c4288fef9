//! Concurrent callers: writers, cloners, creators and readers on many
//! threads; afterwards every file has the contents its writer put there and
//! scrub is clean.

mod core_support;

use std::sync::Barrier;

use core_support::{assert_clean, formatted, open, pattern, ROOT_CREDS};
use cowdax::fs::{RenameFlags, ROOT_INO};

const BS: u64 = 4096;
const THREADS: usize = 4;
const ROUNDS: usize = 60;

#[test]
fn concurrent_writes_clones_creates_and_renames_keep_invariants() {
    let sim = formatted(8192, None);
    let fs = open(&sim);
    let shared = fs
        .mknod(
            ROOT_INO,
            b"shared-src",
            libc::S_IFREG | 0o644,
            0,
            ROOT_CREDS,
        )
        .expect("src");
    let src_data = pattern(77, 16 * BS as usize);
    fs.write(shared.ino, 0, &src_data).expect("write src");
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (fs, barrier, src_data) = (&fs, &barrier, &src_data);
            scope.spawn(move || {
                let dir = fs
                    .mkdir(ROOT_INO, format!("t{t}").as_bytes(), 0o755, ROOT_CREDS)
                    .expect("mkdir")
                    .ino;
                let mine = fs
                    .mknod(dir, b"file", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
                    .expect("create")
                    .ino;
                // Each thread's file starts as a clone of the shared source,
                // then is overwritten piecewise (CoW) while others do the same.
                fs.clone_range(shared.ino, 0, mine, 0, 0).expect("clone");
                barrier.wait();
                let mut expect = src_data.clone();
                for r in 0..ROUNDS {
                    let off = ((r * 7 + t * 3) % 20) as u64 * 1000;
                    let bytes = pattern((t * 1000 + r) as u64, 3000);
                    fs.write(mine, off, &bytes).expect("write");
                    let end = off as usize + bytes.len();
                    if expect.len() < end {
                        expect.resize(end, 0);
                    }
                    expect[off as usize..end].copy_from_slice(&bytes);
                    // Namespace churn in the shared root directory.
                    let name = format!("tmp-{t}-{r}");
                    fs.mknod(
                        ROOT_INO,
                        name.as_bytes(),
                        libc::S_IFREG | 0o600,
                        0,
                        ROOT_CREDS,
                    )
                    .expect("create tmp");
                    fs.rename(
                        ROOT_INO,
                        name.as_bytes(),
                        dir,
                        b"renamed",
                        RenameFlags::default(),
                    )
                    .expect("rename");
                    // Readers of the shared source never see a change.
                    assert_eq!(
                        fs.read(shared.ino, 0, 16 * BS as u32).expect("read src"),
                        *src_data
                    );
                    let _ = fs.readdir(ROOT_INO, 0, &mut |_| true);
                }
                assert_eq!(fs.read(mine, 0, 1 << 20).expect("read mine"), expect);
            });
        }
    });
    assert_clean(&fs);
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
    for t in 0..THREADS {
        let dir = fs
            .lookup(ROOT_INO, format!("t{t}").as_bytes())
            .expect("dir");
        fs.lookup(dir.ino, b"renamed").expect("renamed");
    }
}

/// A tiny journal forces stop-the-world checkpoints while threads create,
/// write, clone and unlink: no deadlock, nothing lost, invariants hold.
#[test]
fn checkpoints_under_concurrent_load_neither_deadlock_nor_lose_operations() {
    let sim = formatted(4096, Some(16 * 1024));
    let fs = open(&sim);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let fs = &fs;
            scope.spawn(move || {
                let dir = fs
                    .mkdir(ROOT_INO, format!("w{t}").as_bytes(), 0o755, ROOT_CREDS)
                    .expect("mkdir")
                    .ino;
                for i in 0..80 {
                    let name = format!("f{i}");
                    let f = fs
                        .mknod(dir, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT_CREDS)
                        .expect("create")
                        .ino;
                    fs.write(f, 0, &pattern((t * 100 + i) as u64, 3000))
                        .expect("write");
                    if i % 3 == 0 {
                        let c = fs
                            .mknod(
                                dir,
                                format!("c{i}").as_bytes(),
                                libc::S_IFREG | 0o644,
                                0,
                                ROOT_CREDS,
                            )
                            .expect("create clone");
                        fs.clone_range(f, 0, c.ino, 0, 0).expect("clone");
                    }
                    if i % 4 == 1 {
                        fs.unlink(dir, format!("f{}", i - 1).as_bytes())
                            .expect("unlink");
                    }
                }
            });
        }
    });
    assert_clean(&fs);
    let usage = fs.usage().expect("usage");
    assert!(usage.metadata_bytes > 0, "no checkpoint happened");
    fs.unmount().expect("unmount");
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
    for t in 0..THREADS {
        let dir = fs
            .lookup(ROOT_INO, format!("w{t}").as_bytes())
            .expect("dir")
            .ino;
        for i in 0..80usize {
            let present = fs.lookup(dir, format!("f{i}").as_bytes()).is_ok();
            // f{i} with i % 4 == 0 was unlinked by iteration i + 1.
            assert_eq!(present, i % 4 != 0, "f{i} of w{t}");
        }
        let f = fs.lookup(dir, b"f1").expect("f1").ino;
        assert_eq!(
            fs.read(f, 0, 4000).expect("read"),
            pattern((t * 100 + 1) as u64, 3000)
        );
    }
}

#[test]
fn read_only_open_serves_reads_and_writes_nothing() {
    let sim = formatted(512, None);
    let fs = open(&sim);
    let f = fs
        .mknod(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create")
        .ino;
    fs.write(f, 0, b"hello").expect("write");
    fs.unmount().expect("unmount");
    drop(fs);
    let before = sim.volatile_image();
    let ro = cowdax::fs::Fs::open(
        std::sync::Arc::new(sim.clone()),
        cowdax::fs::OpenOptions { read_only: true },
    )
    .expect("open read-only");
    assert_eq!(ro.read(f, 0, 10).expect("read"), b"hello");
    assert!(matches!(
        ro.write(f, 0, b"x"),
        Err(cowdax::fs::Error::ReadOnly)
    ));
    assert!(matches!(
        ro.mkdir(ROOT_INO, b"d", 0o755, ROOT_CREDS),
        Err(cowdax::fs::Error::ReadOnly)
    ));
    assert_clean(&ro);
    ro.unmount().expect("unmount read-only");
    drop(ro);
    assert!(
        sim.volatile_image() == before,
        "a read-only mount wrote to the media"
    );
}
