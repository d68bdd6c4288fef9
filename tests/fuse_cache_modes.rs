//! The `cache=` mount option through the kernel: which opens fill the page
//! cache (observed with mincore through `fincore`), and coherence between
//! page-cached opens, direct opens and mappings of the same file in every
//! mode.

mod fuse_support;

use fuse_support::*;

/// Page cache residency and coherence, in Python because mmap needs
/// `unsafe` in Rust. argv: PATH MODE. Prints "ok" or fails an assert.
const CACHE_MODES_PY: &str = r#"
import mmap, os, subprocess, sys
path, mode = sys.argv[1], sys.argv[2]
SIZE = 1 << 20

def cached_pages():
    # fincore maps the file and asks mincore(2) which pages are resident.
    out = subprocess.run(["fincore", "--noheadings", "--output", "PAGES", path],
                         check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])

def drop_cache():
    # POSIX_FADV_DONTNEED drops the clean cached pages of this file.
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)

# Which opens fill the page cache.
rw = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(rw, b"A" * SIZE, 0)
written_cached = cached_pages()
drop_cache()
assert cached_pages() == 0
assert os.pread(rw, SIZE, 0) == b"A" * SIZE
rw_read_cached = cached_pages()
ro = os.open(path, os.O_RDONLY)
assert os.pread(ro, SIZE, 0) == b"A" * SIZE
ro_read_cached = cached_pages()
expect = {
    # (write through O_RDWR, read through O_RDWR, read through O_RDONLY)
    "auto": (False, False, True),
    "page": (True, True, True),
    "direct": (False, False, False),
}[mode]
got = (written_cached > 0, rw_read_cached > 0, ro_read_cached > 0)
assert got == expect, "cache=%s: pages cached after (rw write, rw read, ro read) = %r, expected %r" % (mode, got, expect)

# Coherence. The read-only open may hold cached pages (auto, page).
os.pwrite(rw, b"B" * 4096, 8192)
assert os.pread(ro, 4096, 8192) == b"B" * 4096, "read-only open reads stale data after a write"
view = mmap.mmap(ro, SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
os.pwrite(rw, b"C" * 4096, 16384)
assert view[16384:20480] == b"C" * 4096, "a mapping does not see a write"
store = mmap.mmap(rw, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
store[0:5] = b"store"
assert os.pread(ro, 5, 0) == b"store", "read-only open does not see a shared store"
assert os.pread(rw, 5, 0) == b"store", "read-write open does not see a shared store"
assert view[0:5] == b"store"
store.flush()
os.ftruncate(rw, 4096)
os.pwrite(rw, b"tail", 6000)
assert os.fstat(ro).st_size == 6004
assert os.pread(ro, 8, 4094) == b"AA" + bytes(6), "truncated range not zero through the cache"
assert os.pread(ro, 4, 6000) == b"tail"
store.close()
view.close()
os.close(ro)
os.close(rw)
print("ok")
"#;

fn check_mode(mode: &str) {
    let mut t = TestFs::new(128 << 20);
    t.mount(&format!("cache={mode}"));
    let path = t.path("cached");
    let output = run_ok(
        std::process::Command::new("python3")
            .arg("-c")
            .arg(CACHE_MODES_PY)
            .arg(&path)
            .arg(mode),
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
    // What the last open left is on the media.
    t.unmount();
    t.mount("");
    let content = std::fs::read(&path).unwrap();
    assert_eq!(content.len(), 6004);
    assert_eq!(&content[0..5], b"store");
    assert!(content[5..4096].iter().all(|&b| b == b'A'));
    assert!(content[4096..6000].iter().all(|&b| b == 0));
    assert_eq!(&content[6000..], b"tail");
    t.finish();
}

#[test]
fn cache_auto_caches_read_only_opens_only_and_stays_coherent() {
    check_mode("auto");
}

#[test]
fn cache_page_caches_every_open_and_stays_coherent() {
    check_mode("page");
}

#[test]
fn cache_direct_caches_no_open_and_stays_coherent() {
    check_mode("direct");
}
