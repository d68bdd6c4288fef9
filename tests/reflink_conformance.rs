//! XFS semantics of dedupe, the extent report, preallocation and
//! copy-on-write layout through a real mount: the cowdax tools, and
//! unmodified `xfs_io` / `filefrag` through the LD_PRELOAD shim
//! (docs/CONFORMANCE.md, "Dedupe, the extent report, preallocation and CoW
//! fragmentation"). Every test unmounts and checks the image.

#[path = "reflink_support/mod.rs"]
mod reflink;
#[path = "fuse_support/mod.rs"]
mod support;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use cowdax::ioctl_abi as abi;
use reflink::*;
use support::TestFs;

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

fn write_file(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write file");
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .expect("fsync");
}

/// (mtime, ctime) in nanoseconds.
fn times(path: &Path) -> (i128, i128) {
    let m = std::fs::metadata(path).expect("stat");
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    (ns(m.mtime(), m.mtime_nsec()), ns(m.ctime(), m.ctime_nsec()))
}

/// (offset, length, shared) of every mapped extent, from the private ioctl.
fn extent_summary(path: &Path) -> Vec<(u64, u64, bool)> {
    mapped_extents(path)
        .iter()
        .map(|e| (e.file_offset, e.length, e.flags & abi::EXTENT_SHARED != 0))
        .collect()
}

#[test]
fn dedupe_tool_shares_partial_last_blocks_that_end_both_files() {
    let mut t = TestFs::new(64 * MIB);
    t.mount("");
    // 131,172 bytes: 32 whole blocks and a 100-byte tail, twice.
    let data = pattern(32 * 4096 + 100, 50);
    let (a, b) = (t.path("a"), t.path("b"));
    write_file(&a, &data);
    write_file(&b, &data);
    // Two 100-byte files with the same contents: only a tail each.
    let tail = pattern(100, 51);
    let (c, d) = (t.path("c"), t.path("d"));
    write_file(&c, &tail);
    write_file(&d, &tail);
    let out = tool_ok(&[
        "dedupe",
        path_str(&a),
        path_str(&b),
        path_str(&c),
        path_str(&d),
    ]);
    assert!(
        out.contains(&format!("({} bytes) in 2 ranges", 131_172 + 100)),
        "{out}"
    );
    assert_eq!(extent_summary(&b), vec![(0, 33 * 4096, true)]);
    assert_eq!(extent_summary(&d), vec![(0, 4096, true)]);
    assert!(same_contents(&a, &b));
    assert!(same_contents(&c, &d));
    // A second run finds nothing left.
    let again = tool_ok(&["dedupe", path_str(&a), path_str(&b)]);
    assert!(again.contains("not yet shared: 0 B (0 bytes)"), "{again}");
    t.finish();
}

#[test]
fn xfs_io_dedupe_to_both_eofs_keeps_timestamps_and_refuses_ranges_past_the_source() {
    let mut t = TestFs::new(64 * MIB);
    t.mount("");
    let data = pattern(32 * 4096 + 100, 52);
    let (a, b) = (t.path("a"), t.path("b"));
    write_file(&a, &data);
    write_file(&b, &data);
    let before = times(&b);
    // A change of either timestamp would be visible after this pause.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let dedupe = |args: &str| {
        with_shim("xfs_io")
            .args([
                "-c",
                &format!("dedupe {} {args}", path_str(&a)),
                path_str(&b),
            ])
            .output()
            .expect("run xfs_io")
    };
    let out = dedupe("0 0 131172");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("deduped 131172/131172 bytes"), "{stdout}");
    assert_eq!(times(&b), before, "dedupe moved mtime or ctime");
    assert_eq!(extent_summary(&b), vec![(0, 33 * 4096, true)]);
    // The 100-byte tails alone, after un-sharing them.
    write_at(&b, 32 * 4096, &data[32 * 4096..]);
    assert_eq!(
        extent_summary(&b),
        vec![(0, 32 * 4096, true), (32 * 4096, 4096, false)]
    );
    let out = dedupe("131072 131072 100");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("deduped 100/100 bytes"), "{stdout}");
    assert_eq!(extent_summary(&b), vec![(0, 33 * 4096, true)]);
    // FIDEDUPERANGE: a source range past the source's EOF is EINVAL, not
    // shortened.
    let out = dedupe("0 0 135168");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Invalid argument"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("deduped"));
    t.finish();
}

#[test]
fn extent_report_splits_extents_at_sharing_boundaries() {
    let mut t = TestFs::new(64 * MIB);
    t.mount("");
    let a = t.path("a");
    write_file(&a, &pattern((128 * KIB) as usize, 53));
    assert_eq!(extent_summary(&a), vec![(0, 128 * KIB, false)]);
    // Reflink the first 64 KiB elsewhere.
    tool_ok(&[
        "clone",
        path_str(&a),
        path_str(&t.path("b")),
        "--src-offset",
        "0",
        "--dst-offset",
        "0",
        "--length",
        "64K",
    ]);
    assert_eq!(
        extent_summary(&a),
        vec![(0, 64 * KIB, true), (64 * KIB, 64 * KIB, false)]
    );
    // cowdax extents: two rows, the first shared.
    let out = tool_ok(&["extents", path_str(&a)]);
    assert!(out.contains("2 extents found, 1 shared"), "{out}");
    // FIEMAP through the shim: [0..127] shared (0x2000), [128..255] last.
    let out = run_checked(with_shim("xfs_io").args(["-c", "fiemap -v", path_str(&a)]));
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("]:")).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].contains("[0..127]:") && rows[0].ends_with("0x2000"),
        "{out}"
    );
    assert!(
        rows[1].contains("[128..255]:") && rows[1].ends_with("0x1"),
        "{out}"
    );
    // filefrag -v: the shared flag on the first row only.
    let out = run_checked(with_shim("filefrag").args(["-v", path_str(&a)]));
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].contains("shared"), "{out}");
    assert!(!rows[1].contains("shared"), "{out}");
    t.finish();
}

#[test]
fn truncate_to_the_current_size_drops_fallocate_keep_size_preallocation() {
    let mut t = TestFs::new(64 * MIB);
    t.mount("");
    let f = t.path("f");
    write_file(&f, &pattern(10_000, 54));
    run_checked(std::process::Command::new("fallocate").args([
        "--keep-size",
        "-o",
        "10000",
        "-l",
        "64K",
        path_str(&f),
    ]));
    let blocks = |p: &Path| std::fs::metadata(p).expect("stat").blocks();
    assert!(blocks(&f) > 24, "preallocated past EOF: {}", blocks(&f));
    run_checked(std::process::Command::new("truncate").args(["-s", "10000", path_str(&f)]));
    assert_eq!(std::fs::metadata(&f).expect("stat").len(), 10_000);
    assert_eq!(blocks(&f), 24, "three blocks up to EOF, nothing past it");
    assert_eq!(
        extent_summary(&f).iter().map(|e| e.1).sum::<u64>(),
        3 * 4096
    );
    assert_eq!(read_at(&f, 0, 10_000), pattern(10_000, 54));
    t.finish();
}

/// A reflinked 8 MiB file whose copy is rewritten 4 KiB at a time in
/// `order` (block numbers): the copy's extent count.
fn cow_rewrite_extent_count(t: &TestFs, name: &str, order: &[u64], direct: bool) -> usize {
    let orig = t.path(&format!("{name}.orig"));
    let copy = t.path(name);
    write_pattern_file(&orig, 8 * MIB, 55);
    tool_ok(&["clone", path_str(&orig), path_str(&copy)]);
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if direct {
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_DIRECT);
    }
    let file = options.open(&copy).expect("open copy");
    // O_DIRECT wants an aligned buffer: a 4 KiB-aligned slice of a bigger one.
    let mut buf = vec![0u8; 8192];
    let at = buf.as_ptr().align_offset(4096);
    let block = &mut buf[at..at + 4096];
    block.copy_from_slice(&pattern(4096, 56));
    for &b in order {
        file.write_all_at(block, b * 4096).expect("rewrite 4 KiB");
    }
    file.sync_all().expect("fsync copy");
    drop(file);
    let extents = mapped_extents(&copy);
    assert!(extents.iter().all(|e| e.flags & abi::EXTENT_SHARED == 0));
    assert!(!same_contents(&orig, &copy));
    std::fs::remove_file(&orig).expect("remove orig");
    extents.len()
}

#[test]
fn cow_rewrite_of_a_reflinked_8_mib_file_stays_a_few_extents() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let blocks = 8 * MIB / 4096;
    // A fixed permutation of the 2,048 blocks.
    let mut random: Vec<u64> = (0..blocks).collect();
    let mut state = 19u64;
    for i in (1..random.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        random.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let sequential: Vec<u64> = (0..blocks).collect();
    let counts = [
        (
            "random",
            cow_rewrite_extent_count(&t, "random", &random, false),
        ),
        (
            "random-direct",
            cow_rewrite_extent_count(&t, "random-direct", &random, true),
        ),
        (
            "sequential",
            cow_rewrite_extent_count(&t, "sequential", &sequential, false),
        ),
    ];
    eprintln!("extents after a 4 KiB CoW rewrite of 8 MiB: {counts:?}");
    for (how, count) in counts {
        assert!(count <= 8, "{how} rewrite left {count} extents");
    }
    // The extent tool agrees.
    let out = tool_ok(&["extents", path_str(&t.path("random"))]);
    assert!(out.contains(", 0 shared"), "{out}");
    t.finish();
}
