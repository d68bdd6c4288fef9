//! Reflink and dedupe through a real mount with the cowdax tools and plain
//! `cp` (copy_file_range): sharing, copy-on-write, the owner map, usage.
//! Every test unmounts and checks the image (clean, scrub without errors).

#[path = "reflink_support/mod.rs"]
mod reflink;
#[path = "fuse_support/mod.rs"]
mod support;

use std::process::Command;

use cowdax::cli::ioctl_client::CowdaxFile;
use reflink::*;
use support::TestFs;

const MIB: u64 = 1 << 20;

#[test]
fn cowdax_clone_shares_every_block_and_uses_no_new_space() {
    let mut t = TestFs::new(256 * MIB);
    t.mount("");
    let src = t.path("src.img");
    let dst = t.path("dst.img");
    write_pattern_file(&src, 16 * MIB + 1000, 1);
    let before = usage(&t.mnt);
    let out = tool_ok(&["clone", path_str(&src), path_str(&dst)]);
    assert!(
        out.contains(&format!("cloned {} bytes", 16 * MIB + 1000)),
        "{out}"
    );
    let after = usage(&t.mnt);
    assert!(same_contents(&src, &dst));
    assert_eq!(after.physical_bytes, before.physical_bytes);
    assert_eq!(after.logical_bytes, 2 * before.logical_bytes);
    assert_eq!(after.saved_bytes, before.logical_bytes);
    assert_eq!(shared_bytes(&src), 16 * MIB + BLOCK);
    assert_eq!(shared_bytes(&dst), 16 * MIB + BLOCK);
    t.finish();
}

#[test]
fn plain_cp_of_a_1_gib_file_is_a_reflink() {
    let mut t = TestFs::new(1536 * MIB);
    t.mount("");
    let src = t.path("big.img");
    let dst = t.path("copy.img");
    // 1 GiB of incompressible data, written with large requests.
    run_checked(Command::new("dd").args([
        "if=/dev/urandom",
        &format!("of={}", path_str(&src)),
        "bs=4M",
        "count=256",
        "conv=fsync",
        "status=none",
    ]));
    let before = usage(&t.mnt);
    // coreutils cp: FICLONE fails (not forwarded by the kernel), then
    // copy_file_range, which cowdax answers with a clone.
    run_checked(Command::new("cp").arg(&src).arg(&dst));
    let after = usage(&t.mnt);
    assert_eq!(
        after.physical_bytes, before.physical_bytes,
        "cp allocated new data blocks"
    );
    assert_eq!(after.saved_bytes, 1 << 30);
    assert!(same_contents(&src, &dst));
    assert_eq!(shared_bytes(&dst), 1 << 30);
    // st_blocks stays truthful for shared files (cp must not see them as sparse).
    let meta = std::fs::metadata(&dst).expect("stat copy");
    assert_eq!(
        std::os::unix::fs::MetadataExt::blocks(&meta),
        (1 << 30) / 512
    );
    t.finish();
}

#[test]
fn writes_to_either_copy_are_copied_without_disturbing_the_other() {
    let mut t = TestFs::new(256 * MIB);
    t.mount("");
    let a = t.path("a");
    let b = t.path("b");
    write_pattern_file(&a, 4 * MIB, 2);
    tool_ok(&["clone", path_str(&a), path_str(&b)]);
    let original = read_at(&a, 0, (4 * MIB) as usize);

    // Write into the clone: the original keeps its bytes.
    write_at(&b, MIB + 100, b"written into b");
    assert_eq!(read_at(&a, 0, (4 * MIB) as usize), original);
    assert_eq!(read_at(&b, MIB + 100, 14), b"written into b");
    // Write into the original: the clone keeps its bytes.
    write_at(&a, 3 * MIB, &[0xAB; 8192]);
    assert_eq!(
        read_at(&b, 3 * MIB, 8192),
        original[(3 * MIB) as usize..][..8192]
    );
    assert_eq!(read_at(&a, 3 * MIB, 8192), vec![0xAB; 8192]);

    // The rewritten blocks are private to their file now.
    let covering = |path: &std::path::Path, offset: u64| {
        mapped_extents(path)
            .into_iter()
            .find(|e| e.file_offset <= offset && offset < e.file_offset + e.length)
            .expect("extent covering offset")
    };
    assert_eq!(
        covering(&b, MIB + 100).flags & cowdax::ioctl_abi::EXTENT_SHARED,
        0
    );
    assert_eq!(
        covering(&a, 3 * MIB).flags & cowdax::ioctl_abi::EXTENT_SHARED,
        0
    );
    assert_ne!(covering(&a, 0).flags & cowdax::ioctl_abi::EXTENT_SHARED, 0);
    // Three blocks were copied (one in b, two in a): the rest is shared.
    let u = usage(&t.mnt);
    assert_eq!(u.saved_bytes, 4 * MIB - 3 * BLOCK);
    t.finish();
}

#[test]
fn clone_of_a_range_lands_at_the_destination_offset() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let src = t.path("src");
    let dst = t.path("dst");
    write_pattern_file(&src, 2 * MIB, 3);
    write_pattern_file(&dst, MIB, 4);
    let dst_before = read_at(&dst, 0, MIB as usize);
    tool_ok(&[
        "clone",
        path_str(&src),
        path_str(&dst),
        "--src-offset",
        "64K",
        "--dst-offset",
        "512K",
        "--length",
        "1M",
    ]);
    assert_eq!(
        std::fs::metadata(&dst).expect("stat").len(),
        512 * 1024 + MIB
    );
    assert_eq!(read_at(&dst, 0, 512 * 1024), dst_before[..512 * 1024]);
    assert_eq!(
        read_at(&dst, 512 * 1024, MIB as usize),
        read_at(&src, 64 * 1024, MIB as usize)
    );
    // Cloning a whole file onto itself is refused before anything is
    // truncated.
    let out = tool(&["clone", path_str(&src), path_str(&src)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("are the same file"));
    assert_eq!(std::fs::metadata(&src).expect("stat").len(), 2 * MIB);
    // Unaligned offsets are refused and change nothing.
    let out = tool(&[
        "clone",
        path_str(&src),
        path_str(&dst),
        "--src-offset",
        "100",
        "--dst-offset",
        "0",
        "--length",
        "4096",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid argument"));
    assert_eq!(read_at(&dst, 0, 512 * 1024), dst_before[..512 * 1024]);
    t.finish();
}

#[test]
fn dedupe_shares_identical_and_almost_identical_files() {
    let mut t = TestFs::new(256 * MIB);
    t.mount("");
    std::fs::create_dir(t.path("set")).expect("mkdir");
    let a = t.path("set/a");
    let b = t.path("set/b");
    let c = t.path("set/sub/c");
    std::fs::create_dir(t.path("set/sub")).expect("mkdir");
    let unique = t.path("set/unique");
    write_pattern_file(&a, 8 * MIB, 10);
    write_pattern_file(&b, 8 * MIB, 10);
    write_pattern_file(&c, 8 * MIB, 10);
    // c differs from a in one byte of block 5.
    write_at(&c, 5 * BLOCK + 17, b"!");
    write_pattern_file(&unique, 2 * MIB, 99);
    let contents = [&a, &b, &c, &unique]
        .map(|p| read_at(p, 0, std::fs::metadata(p).expect("stat").len() as usize));
    let before = usage(&t.mnt);
    assert_eq!(before.saved_bytes, 0);

    let dry = tool_ok(&["dedupe", "-rn", path_str(&t.path("set"))]);
    assert!(dry.contains("dry run: nothing changed"), "{dry}");
    assert_eq!(usage(&t.mnt).saved_bytes, 0);

    let out = tool_ok(&["dedupe", "-r", path_str(&t.path("set"))]);
    let expected_saved = 8 * MIB + (8 * MIB - BLOCK);
    assert!(
        out.contains("deduped") && out.contains(&format!("({expected_saved} bytes) in")),
        "{out}"
    );
    assert!(
        out.contains("scanned") && out.contains("peak memory"),
        "{out}"
    );
    let after = usage(&t.mnt);
    assert_eq!(after.saved_bytes, expected_saved);
    assert_eq!(before.physical_bytes - after.physical_bytes, expected_saved);
    for (path, data) in [&a, &b, &c, &unique].iter().zip(&contents) {
        assert_eq!(&read_at(path, 0, data.len()), data, "{}", path.display());
    }
    assert_eq!(shared_bytes(&unique), 0);
    // A second run finds nothing left to do.
    let again = tool_ok(&["dedupe", "-r", path_str(&t.path("set"))]);
    assert!(
        again.contains("duplicate blocks not yet shared: 0 B"),
        "{again}"
    );
    t.finish();
}

#[test]
fn fsmap_shows_both_owners_of_a_shared_extent_and_one_after_cow() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let a = t.path("first");
    let b = t.path("second");
    write_pattern_file(&a, 64 * 1024, 5);
    tool_ok(&["clone", path_str(&a), path_str(&b)]);
    let phys = mapped_extents(&a)[0].phys_offset;
    let range = format!("{phys}:64K");
    let out = tool_ok(&["fsmap", path_str(&t.mnt), "--range", &range]);
    let owners_of = |out: &str, name: &str| out.lines().filter(|l| l.ends_with(name)).count();
    assert_eq!(owners_of(&out, "/first"), 1, "{out}");
    assert_eq!(owners_of(&out, "/second"), 1, "{out}");
    assert!(
        out.contains("2 owner records, 2 files, 65536 physical bytes"),
        "{out}"
    );
    let shared_column = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.ends_with(name))
            .and_then(|l| l.split_whitespace().nth(4))
            .map(str::to_string)
    };
    assert_eq!(
        shared_column(&out, "/first").as_deref(),
        Some("yes"),
        "{out}"
    );
    assert_eq!(
        shared_column(&out, "/second").as_deref(),
        Some("yes"),
        "{out}"
    );

    // Rewrite all of `second`: the old blocks belong to `first` alone.
    write_at(&b, 0, &vec![7u8; 64 * 1024]);
    let out = tool_ok(&["fsmap", path_str(&t.mnt), "--range", &range]);
    assert_eq!(owners_of(&out, "/first"), 1, "{out}");
    assert_eq!(owners_of(&out, "/second"), 0, "{out}");
    assert_eq!(
        shared_column(&out, "/first").as_deref(),
        Some("no"),
        "{out}"
    );
    // The whole map lists both files' blocks.
    let all = tool_ok(&["fsmap", path_str(&t.mnt)]);
    assert!(owners_of(&all, "/second") >= 1, "{all}");
    t.finish();
}

#[test]
fn extents_and_df_report_sharing() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let a = t.path("a");
    let b = t.path("b");
    write_pattern_file(&a, MIB, 6);
    tool_ok(&["clone", path_str(&a), path_str(&b)]);
    let out = tool_ok(&["extents", path_str(&b)]);
    assert!(
        out.contains(&format!("File size of {} is {MIB}", b.display())),
        "{out}"
    );
    assert!(out.contains("shared"), "{out}");
    assert!(out.contains(" yes:"), "{out}");
    assert!(out.contains("last"), "{out}");
    let json = tool_ok(&["df", "--json", path_str(&t.mnt)]);
    assert!(json.contains(&format!("\"saved_bytes\":{MIB}")), "{json}");
    let table = tool_ok(&["df", path_str(&t.mnt)]);
    assert!(
        table.contains("saved") && table.contains("1.00 MiB"),
        "{table}"
    );
    // The file API says the same.
    let file = CowdaxFile::open(&b).expect("open on cowdax");
    assert_eq!(file.usage().expect("usage").saved_bytes, MIB);
    drop(file);
    t.finish();
}

/// `cowdax counters --json` as a map of counter name to value.
fn counters_json(t: &TestFs) -> std::collections::BTreeMap<String, u64> {
    let json = tool_ok(&["counters", "--json", path_str(&t.mnt)]);
    json.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .map(|pair| {
            let (name, value) = pair.split_once(':').expect("name:value");
            (
                name.trim_matches('"').to_string(),
                value.parse().expect("integer"),
            )
        })
        .collect()
}

#[test]
fn counters_report_the_daemons_persistence_work() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let before = counters_json(&t);
    for name in [
        "bytes_stored",
        "bytes_persisted",
        "lines_flushed",
        "fences",
        "msyncs",
    ] {
        assert!(before.contains_key(name), "{name} missing: {before:?}");
    }
    let path = t.path("f");
    write_pattern_file(&path, MIB, 3);
    std::fs::File::open(&path).unwrap().sync_all().unwrap();
    let after = counters_json(&t);
    assert!(
        after["bytes_stored"] >= before["bytes_stored"] + MIB,
        "{before:?} -> {after:?}"
    );
    assert!(after["bytes_persisted"] >= before["bytes_persisted"] + MIB);
    assert!(after["fences"] > before["fences"]);
    let table = tool_ok(&["counters", path_str(&t.mnt)]);
    assert!(
        table.contains("persisted") && table.contains("msyncs"),
        "{table}"
    );
    t.finish();
}

#[test]
fn tools_refuse_paths_that_are_not_on_cowdax() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain");
    std::fs::write(&file, b"data").expect("write");
    for args in [
        vec!["df", path_str(dir.path())],
        vec!["counters", path_str(dir.path())],
        vec!["extents", path_str(&file)],
        vec!["fsmap", path_str(dir.path())],
        vec!["clone", path_str(&file), path_str(&dir.path().join("x"))],
    ] {
        let out = tool(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not on a cowdax mount"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn clone_over_a_cached_destination_is_visible_through_the_page_cache() {
    // With one daemon thread too: the invalidation must not wait for a
    // thread that is busy answering the clone.
    for options in ["", "threads=1"] {
        clone_over_cached_destination(options);
    }
}

fn clone_over_cached_destination(options: &str) {
    let mut t = TestFs::new(128 * MIB);
    t.mount(options);
    let src = t.path("src");
    let dst = t.path("dst");
    write_pattern_file(&src, MIB, 7);
    write_pattern_file(&dst, MIB, 8);
    // Keep the destination open and its pages cached (read and mapped).
    let reader = std::fs::File::open(&dst).expect("open dst");
    let mut cached = vec![0u8; MIB as usize];
    std::os::unix::fs::FileExt::read_exact_at(&reader, &mut cached, 0).expect("read dst");
    assert_eq!(cached, read_at(&dst, 0, MIB as usize));
    tool_ok(&[
        "clone",
        path_str(&src),
        path_str(&dst),
        "--src-offset",
        "0",
        "--dst-offset",
        "0",
        "--length",
        "1M",
    ]);
    // The daemon invalidated the range: the old handle reads the new bytes.
    let mut after = vec![0u8; MIB as usize];
    std::os::unix::fs::FileExt::read_exact_at(&reader, &mut after, 0).expect("reread dst");
    assert_eq!(after, read_at(&src, 0, MIB as usize));
    drop(reader);
    t.finish();
}

#[test]
fn dedupe_of_many_small_files_shares_every_duplicate_once() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let dir = t.path("many");
    std::fs::create_dir(&dir).expect("mkdir");
    // 150 distinct 16 KiB contents, each in two files (300 files), plus a
    // third copy of the first 10 contents.
    for content in 0..150u64 {
        let data = pattern(16 * 1024, 1000 + content);
        let copies = if content < 10 { 3 } else { 2 };
        for copy in 0..copies {
            std::fs::write(dir.join(format!("f{content}-{copy}")), &data).expect("write");
        }
    }
    let before = usage(&t.mnt);
    let out = tool_ok(&["dedupe", "-r", path_str(&dir)]);
    let expected_saved = (150 + 10) * 16 * 1024;
    assert!(out.contains("in 310 files"), "{out}");
    assert_eq!(
        before.physical_bytes - usage(&t.mnt).physical_bytes,
        expected_saved,
        "{out}"
    );
    for content in [0u64, 77, 149] {
        assert!(same_contents(
            &dir.join(format!("f{content}-0")),
            &dir.join(format!("f{content}-1"))
        ));
        assert_eq!(
            read_at(&dir.join(format!("f{content}-1")), 0, 16 * 1024),
            pattern(16 * 1024, 1000 + content)
        );
    }
    t.finish();
}
