//! The utilities every command shares (issue 17): one size grammar for
//! every size argument and mount option, one mountinfo parser that decodes
//! the kernel's octal escapes. Every test that mounts unmounts and checks
//! the image.

#[path = "reflink_support/mod.rs"]
mod reflink;
#[path = "fuse_support/mod.rs"]
mod support;

use cowdax::fuse::options::MountOptions;
use reflink::{path_str, same_contents, tool_ok, write_pattern_file};
use support::TestFs;

const MIB: u64 = 1 << 20;

/// `max_write=` and `max_readahead=` take what `mkfs --size` takes: `K`,
/// `KB`, `KiB` … in any case, with or without a space. They took only a
/// bare number or one letter before (`max_write=1MiB` was refused).
#[test]
fn size_mount_options_accept_the_size_grammar() {
    for (text, bytes) in [
        ("1MiB", 1u32 << 20),
        ("1M", 1 << 20),
        ("1mb", 1 << 20),
        ("256KiB", 256 << 10),
        ("64 k", 64 << 10),
        ("4096", 4096),
        ("4096B", 4096),
    ] {
        let opts = MountOptions::parse(&[format!("max_write={text},max_readahead={text}")])
            .unwrap_or_else(|err| panic!("max_write={text}: {err}"));
        assert_eq!(opts.max_write_bytes, bytes, "max_write={text}");
        assert_eq!(opts.max_readahead_bytes, bytes, "max_readahead={text}");
    }
    // Zero read-ahead stays valid; the ranges and garbage are still refused.
    let opts = MountOptions::parse(&["max_readahead=0"]).expect("max_readahead=0");
    assert_eq!(opts.max_readahead_bytes, 0);
    for bad in [
        "max_write=2MiB",
        "max_write=1K",
        "max_write=1.5M",
        "max_write=1P",
        "max_readahead=1G",
        "max_readahead=MiB",
    ] {
        assert!(MountOptions::parse(&[bad]).is_err(), "{bad} was accepted");
    }
}

/// A real mount with `-o max_write=1MiB,max_readahead=512KiB` serves
/// writes and reads.
#[test]
fn a_mount_with_max_write_1mib_serves_reads_and_writes() {
    let mut t = TestFs::new(64 * MIB);
    t.mount("max_write=1MiB,max_readahead=512KiB");
    let (big, copy) = (t.path("big"), t.path("copy"));
    write_pattern_file(&big, 3 * MIB + 123, 7);
    std::fs::copy(&big, &copy).expect("copy through the mount");
    assert!(same_contents(&big, &copy));
    t.finish();
}

/// `cowdax fsmap MNT` prints owners as absolute paths under MNT. The
/// kernel writes a space, tab, newline or backslash in a mount point as an
/// octal escape (`\040`, `\011`, `\012`, `\134`); fsmap decoded only
/// `\040` and so, for this mount point, fell back to paths relative to the
/// mount root.
#[test]
fn fsmap_prints_absolute_paths_under_a_mount_point_with_escaped_characters() {
    let mut t = TestFs::new(64 * MIB);
    t.mnt = t.dir.path().join("with space\tand\\backslash");
    std::fs::create_dir(&t.mnt).expect("mkdir the mount point");
    t.mount("");
    assert!(t.is_mounted(), "the mountinfo lookup finds the mount");
    let file = t.path("file");
    write_pattern_file(&file, 64 * 1024, 3);
    let out = tool_ok(&["fsmap", path_str(&t.mnt)]);
    let absolute = file.display().to_string();
    assert!(
        out.lines().any(|line| line.ends_with(&absolute)),
        "no line ends with {absolute:?}:\n{out}"
    );
    t.finish();
}
