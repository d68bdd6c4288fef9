//! `cowdax mkfs` / `mkfs.cowdax` from the outside: creation, every refusal,
//! `-f`, and the argv[0] names.

mod cli_common;

use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;

use cli_common::*;

#[test]
fn mkfs_with_size_creates_an_image_of_that_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("new.img");
    let output = cowdax(&["mkfs", "--size", "32MiB", path_str(&image)]);
    assert_exit(&output, 0);
    assert_eq!(fs::metadata(&image).expect("image exists").len(), 32 << 20);
    let summary = stdout(&output);
    for field in ["32.00 MiB", "journal:", "UUID:", "label:"] {
        assert!(summary.contains(field), "summary lacks {field}:\n{summary}");
    }
    assert_fsck_clean(&image);
}

#[test]
fn mkfs_reports_label_and_journal_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("labelled.img");
    let output = cowdax(&[
        "mkfs",
        "--size",
        "32M",
        "--label",
        "scratch",
        "--journal-size",
        "1M",
        path_str(&image),
    ]);
    assert_exit(&output, 0);
    let summary = stdout(&output);
    assert!(summary.contains("scratch"), "{summary}");
    assert!(summary.contains("journal:  1.00 MiB"), "{summary}");
    assert_fsck_clean(&image);
}

#[test]
fn mkfs_formats_an_existing_blank_file_without_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("blank.img");
    blank_file(&image, 32 << 20);
    assert_exit(&cowdax(&["mkfs", path_str(&image)]), 0);
    assert_fsck_clean(&image);
}

#[test]
fn mkfs_of_a_missing_file_without_size_says_to_give_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("missing.img");
    let output = cowdax(&["mkfs", path_str(&image)]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("--size"), "{}", stderr(&output));
    assert!(!image.exists());
}

#[test]
fn mkfs_refuses_an_existing_cowdax_filesystem_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "twice.img");
    let before = read_image(&image);
    let output = cowdax(&["mkfs", path_str(&image)]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(message.contains("cowdax filesystem"), "{message}");
    assert!(message.contains("-f"), "{message}");
    assert!(
        read_image(&image) == before,
        "a refused mkfs wrote to the image"
    );
    assert_fsck_clean(&image);
}

#[test]
fn mkfs_force_overwrites_an_existing_cowdax_filesystem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("again.img");
    let first = cowdax(&["mkfs", "--size", IMAGE_SIZE, path_str(&image)]);
    assert_exit(&first, 0);
    let second = cowdax(&["mkfs", "-f", path_str(&image)]);
    assert_exit(&second, 0);
    let uuid_line = |text: String| {
        text.lines()
            .find(|line| line.contains("UUID:"))
            .map(str::to_string)
            .expect("summary has a UUID line")
    };
    assert_ne!(uuid_line(stdout(&first)), uuid_line(stdout(&second)));
    assert_fsck_clean(&image);
}

#[test]
fn mkfs_refuses_size_on_an_existing_file_without_force_and_resizes_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("resize.img");
    blank_file(&image, 32 << 20);
    let refused = cowdax(&["mkfs", "--size", "48M", path_str(&image)]);
    assert_exit(&refused, 1);
    assert!(stderr(&refused).contains("-f"), "{}", stderr(&refused));
    assert_eq!(fs::metadata(&image).expect("image").len(), 32 << 20);
    assert_exit(
        &cowdax(&["mkfs", "-f", "--size", "48M", path_str(&image)]),
        0,
    );
    assert_eq!(fs::metadata(&image).expect("image").len(), 48 << 20);
    assert_fsck_clean(&image);
}

/// A blank 32 MiB file carrying a foreign filesystem's magic bytes.
fn file_with_magic(
    dir: &std::path::Path,
    name: &str,
    offset: u64,
    magic: &[u8],
) -> std::path::PathBuf {
    let path = dir.join(name);
    blank_file(&path, 32 << 20);
    poke(&path, offset, magic);
    path
}

#[test]
fn mkfs_refuses_foreign_signatures_and_leaves_them_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, u64, &[u8], &str); 5] = [
        ("ext4.img", 1080, &[0x53, 0xEF], "ext2/ext3/ext4"),
        ("xfs.img", 0, b"XFSB", "XFS"),
        ("btrfs.img", 65600, b"_BHRfS_M", "btrfs"),
        ("swap.img", 4086, b"SWAPSPACE2", "swap"),
        ("luks.img", 0, b"LUKS\xba\xbe", "LUKS"),
    ];
    for (name, offset, magic, what) in cases {
        let image = file_with_magic(dir.path(), name, offset, magic);
        let before = read_image(&image);
        let output = cowdax(&["mkfs", path_str(&image)]);
        assert_exit(&output, 1);
        let message = stderr(&output);
        assert!(message.contains(what), "{name}: {message}");
        assert!(message.contains("-f"), "{name}: {message}");
        assert!(read_image(&image) == before, "{name}: refused mkfs wrote");
    }
}

#[test]
fn mkfs_force_overwrites_a_foreign_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = file_with_magic(dir.path(), "xfs.img", 0, b"XFSB");
    assert_exit(&cowdax(&["mkfs", "-f", path_str(&image)]), 0);
    assert_fsck_clean(&image);
}

#[test]
fn mkfs_refuses_a_real_ext4_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("real-ext4.img");
    blank_file(&image, 32 << 20);
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", path_str(&image)])
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .status()
        .expect("mkfs.ext4 must be installed (e2fsprogs; .ci/run installs it)");
    assert!(status.success(), "mkfs.ext4 failed: {status}");
    let output = cowdax(&["mkfs", path_str(&image)]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("ext2/ext3/ext4"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn mkfs_refuses_a_target_too_small_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("tiny.img");
    let output = cowdax(&["mkfs", "--size", "16K", path_str(&image)]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(message.contains("too small"), "{message}");
    assert!(message.contains("--size"), "{message}");
    assert!(!image.exists(), "a failed mkfs left its new file behind");
}

#[test]
fn mkfs_refuses_a_mounted_target_even_with_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "mounted.img");
    let before = read_image(&image);
    let mount = SourceMount::new(&image, &dir.path().join("mnt"));
    for args in [vec!["mkfs"], vec!["mkfs", "-f"]] {
        let mut args = args;
        args.push(path_str(&image));
        let output = cowdax(&args);
        assert_exit(&output, 1);
        let message = stderr(&output);
        assert!(message.contains("mounted"), "{message}");
        assert!(message.contains("umount"), "{message}");
    }
    drop(mount);
    assert!(
        read_image(&image) == before,
        "mkfs wrote to a mounted target"
    );
    assert_fsck_clean(&image);
}

#[test]
fn mkfs_rejects_a_bad_size_as_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("bad-size.img");
    let output = cowdax(&["mkfs", "--size", "12X", path_str(&image)]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("unit"), "{}", stderr(&output));
    assert!(!image.exists());
}

#[test]
fn invoked_as_mkfs_cowdax_the_binary_runs_mkfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("mkfs.cowdax");
    symlink(cowdax_binary(), &link).expect("symlink");
    let image = dir.path().join("via-link.img");
    let output = run_program(&link, &["--size", IMAGE_SIZE, path_str(&image)]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("UUID:"), "{}", stdout(&output));
    assert_fsck_clean(&image);
}

#[test]
fn help_explains_every_command_with_examples() {
    let output = cowdax(&["--help"]);
    assert_exit(&output, 0);
    let help = stdout(&output);
    for word in ["mkfs", "fsck", "dump", "mount", "Examples"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    for command in ["mkfs", "fsck", "dump"] {
        let output = cowdax(&[command, "--help"]);
        assert_exit(&output, 0);
        assert!(stdout(&output).contains("Example"), "{command} --help");
    }
}

#[test]
fn mkfs_formats_a_block_device_and_refuses_a_size_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backing = dir.path().join("loop-backing.img");
    blank_file(&backing, 32 << 20);
    let loop_device = LoopDevice::attach(&backing);
    let device = path_str(&loop_device.device);
    let output = cowdax(&["mkfs", device]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("block device"),
        "{}",
        stdout(&output)
    );
    let with_size = cowdax(&["mkfs", "-f", "--size", "16M", device]);
    assert_exit(&with_size, 1);
    assert!(
        stderr(&with_size).contains("device"),
        "{}",
        stderr(&with_size)
    );
    assert_fsck_clean(&loop_device.device);
}
