//! Access times through the kernel under each atime mount option
//! (strictatime, relatime, noatime, nodiratime): file reads, including
//! re-reads of pages the kernel has cached, and directory listings.

mod fuse_support;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;

use fuse_support::*;

const IMAGE_BYTES: u64 = 128 << 20;
const OLD: i64 = 1_000_000_000;

fn mounted(options: &str) -> TestFs {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount(options);
    t
}

/// atime as (seconds, nanoseconds), through stat(2).
fn atime(path: &Path) -> (i64, i64) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.atime(), meta.atime_nsec())
}

/// Sets atime (mtime unchanged); ctime moves to now.
fn set_atime(path: &Path, secs: i64) {
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::new(secs, 0),
        &TimeSpec::UTIME_OMIT,
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    assert_eq!(atime(path), (secs, 0));
}

/// One read that reaches the daemon whatever the kernel has cached
/// (O_DIRECT reads of a FUSE file are always sent).
fn read_direct(path: &Path) -> Vec<u8> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let n = file.read_at(&mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

fn list(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Lets the clock move on, so that an update is visible as a change.
fn tick() {
    std::thread::sleep(std::time::Duration::from_millis(5));
}

#[test]
fn strictatime_every_read_of_a_cached_file_moves_atime() {
    // cache=auto (default) caches read-only opens, cache=page every open.
    for cache in ["auto", "page"] {
        strict_rereads(&format!("allow_other,strictatime,cache={cache}"));
    }
}

fn strict_rereads(options: &str) {
    let t = mounted(options);
    let path = t.path("hot");
    std::fs::write(&path, vec![7u8; 16384]).unwrap();
    // A plain read-only open: by default served through the page cache.
    let file = File::open(&path).unwrap();
    let mut buf = vec![0u8; 16384];
    file.read_exact_at(&mut buf, 0).unwrap();
    // The pages are now cached if the open uses the cache. Each re-read,
    // through the same open and through new opens, must move atime.
    for round in 0..3 {
        set_atime(&path, OLD);
        file.read_exact_at(&mut buf, 0).unwrap();
        assert!(
            atime(&path).0 > OLD,
            "{options}, round {round}: re-read through the same open left atime unchanged"
        );
        set_atime(&path, OLD);
        let mut again = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut again).unwrap();
        assert_eq!(again.len(), 16384);
        assert!(
            atime(&path).0 > OLD,
            "{options}, round {round}: re-read through a new open left atime unchanged"
        );
    }
    // Unlike relatime, strictatime moves an atime that is already newer
    // than mtime and ctime.
    let mut last = atime(&path);
    for _ in 0..3 {
        tick();
        file.read_exact_at(&mut buf, 0).unwrap();
        let now = atime(&path);
        assert!(now > last, "atime {now:?} did not move past {last:?}");
        last = now;
    }
    // A mapping of the file still works (direct_io with mmap allowed).
    let output = run_ok(
        std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import mmap,sys\nf=open(sys.argv[1],'rb')\n\
                 m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\nprint(m[100])",
            )
            .arg(&path),
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "7");
    drop(file);
    t.finish();
}

#[test]
fn relatime_moves_atime_only_when_not_newer_than_mtime_or_ctime() {
    let t = mounted("allow_other,relatime");
    let path = t.path("rel");
    std::fs::write(&path, b"relative").unwrap();
    set_atime(&path, OLD);
    // atime <= mtime: the first read moves it, visible as read(2) returns.
    assert_eq!(read_direct(&path), b"relative");
    let moved = atime(&path);
    assert!(moved.0 > OLD, "first read left atime at {moved:?}");
    // Now atime is newer than mtime and ctime and less than a day old:
    // further reads, cached or not, leave it alone.
    tick();
    assert_eq!(read_direct(&path), b"relative");
    assert_eq!(std::fs::read(&path).unwrap(), b"relative");
    assert_eq!(atime(&path), moved);
    // A write moves mtime past atime: the next read moves atime again.
    tick();
    std::fs::write(&path, b"rewritten").unwrap();
    assert_eq!(read_direct(&path), b"rewritten");
    assert!(atime(&path) > moved, "read after a write left atime alone");
    t.finish();
}

#[test]
fn noatime_reads_and_listings_never_move_atime() {
    let t = mounted("allow_other,noatime");
    let dir = t.path("d");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("f");
    std::fs::write(&path, b"never").unwrap();
    set_atime(&path, OLD);
    set_atime(&dir, OLD);
    assert_eq!(read_direct(&path), b"never");
    assert_eq!(std::fs::read(&path).unwrap(), b"never");
    assert_eq!(list(&dir), 1);
    assert_eq!(atime(&path), (OLD, 0));
    assert_eq!(atime(&dir), (OLD, 0));
    t.finish();
}

#[test]
fn directory_listing_moves_its_atime_unless_nodiratime() {
    // relatime (the default): a listing of a directory whose atime is not
    // newer than its mtime/ctime moves it, as on ext4 and XFS.
    let t = mounted("allow_other");
    let dir = t.path("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("f"), b"x").unwrap();
    set_atime(&dir, OLD);
    assert_eq!(list(&dir), 1);
    assert!(
        atime(&dir).0 > OLD,
        "relatime: listing left the dir's atime"
    );
    t.finish();

    // strictatime: every listing.
    let t = mounted("allow_other,strictatime");
    let dir = t.path("d");
    std::fs::create_dir(&dir).unwrap();
    let mut last = atime(&dir);
    for _ in 0..3 {
        tick();
        assert_eq!(list(&dir), 0);
        let now = atime(&dir);
        assert!(now > last, "strictatime: listing left atime at {now:?}");
        last = now;
    }
    t.finish();

    // nodiratime: listings leave directories alone, file reads do not.
    let t = mounted("allow_other,strictatime,nodiratime");
    let dir = t.path("d");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("f");
    std::fs::write(&path, b"file").unwrap();
    set_atime(&dir, OLD);
    set_atime(&path, OLD);
    assert_eq!(list(&dir), 1);
    assert_eq!(atime(&dir), (OLD, 0), "nodiratime: listing moved atime");
    assert_eq!(std::fs::read(&path).unwrap(), b"file");
    assert!(atime(&path).0 > OLD, "nodiratime: file read left atime");
    t.finish();
}
