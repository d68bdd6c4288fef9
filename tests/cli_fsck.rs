//! `cowdax fsck` / `fsck.cowdax` from the outside: fsck(8) exit codes,
//! read-only `-n`, repair with `-y`.

mod cli_common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use cli_common::*;
use cowdax::fs::{Creds, Fs, OpenOptions, ROOT_INO};
use cowdax::media::{Media, MmapMedia, OpenMode};
use cowdax::store::{inspect, Access, Store, BLOCK_SIZE};

/// A byte inside superblock A's checksummed fields (block 0).
const SUPERBLOCK_A_FIELD_OFFSET: u64 = 24;

#[test]
fn fsck_of_a_fresh_image_is_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "fresh.img");
    for mode in ["-n", "-y", "-p"] {
        let output = cowdax(&["fsck", mode, path_str(&image)]);
        assert_exit(&output, 0);
        assert!(
            stdout(&output).contains("clean"),
            "{mode}: {}",
            stdout(&output)
        );
    }
}

#[test]
fn fsck_of_a_missing_file_is_an_operational_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = cowdax(&["fsck", "-n", path_str(&dir.path().join("nope.img"))]);
    assert_exit(&output, 8);
    assert!(
        stderr(&output).contains("no such file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn fsck_of_a_file_without_cowdax_is_an_operational_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zeros = dir.path().join("zeros.img");
    blank_file(&zeros, 32 << 20);
    let ext4 = dir.path().join("ext4.img");
    blank_file(&ext4, 32 << 20);
    poke(&ext4, 1080, &[0x53, 0xEF]);
    for image in [&zeros, &ext4] {
        for mode in ["-n", "-y"] {
            let before = read_image(image);
            let output = cowdax(&["fsck", mode, path_str(image)]);
            assert_exit(&output, 8);
            assert!(
                stderr(&output).contains("not a cowdax"),
                "{}",
                stderr(&output)
            );
            assert!(read_image(image) == before, "fsck wrote to a foreign file");
        }
    }
}

#[test]
fn fsck_with_conflicting_modes_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "usage.img");
    assert_exit(&cowdax(&["fsck", "-n", "-y", path_str(&image)]), 16);
    assert_exit(&cowdax(&["fsck"]), 16);
    assert_fsck_clean(&image);
}

#[test]
fn fsck_n_reports_a_corrupt_superblock_without_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "bad-sb.img");
    let original = read_image(&image);
    poke(
        &image,
        SUPERBLOCK_A_FIELD_OFFSET,
        &[original[SUPERBLOCK_A_FIELD_OFFSET as usize] ^ 0xff],
    );
    let corrupted = read_image(&image);
    let output = cowdax(&["fsck", "-n", path_str(&image)]);
    assert_exit(&output, 4);
    assert!(
        stdout(&output).contains("superblock"),
        "{}",
        stdout(&output)
    );
    assert!(
        read_image(&image) == corrupted,
        "fsck -n modified the image"
    );
}

#[test]
fn fsck_y_rewrites_a_corrupt_superblock_copy_from_the_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "fix-sb.img");
    let original = read_image(&image);
    poke(
        &image,
        SUPERBLOCK_A_FIELD_OFFSET,
        &[original[SUPERBLOCK_A_FIELD_OFFSET as usize] ^ 0xff],
    );
    let output = cowdax(&["fsck", "-y", path_str(&image)]);
    assert_exit(&output, 1);
    assert!(stdout(&output).contains("MODIFIED"), "{}", stdout(&output));
    assert_fsck_clean(&image);
}

#[test]
fn fsck_n_never_modifies_a_clean_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "readonly.img");
    let before = read_image(&image);
    let modified_before = std::fs::metadata(&image).and_then(|m| m.modified()).ok();
    assert_exit(&cowdax(&["fsck", "-n", "-f", path_str(&image)]), 0);
    assert!(read_image(&image) == before, "fsck -n modified the image");
    let modified_after = std::fs::metadata(&image).and_then(|m| m.modified()).ok();
    assert_eq!(modified_before, modified_after);
}

#[test]
fn fsck_refuses_a_mounted_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "busy.img");
    let mount = SourceMount::new(&image, &dir.path().join("mnt"));
    let output = cowdax(&["fsck", "-y", path_str(&image)]);
    assert_exit(&output, 8);
    assert!(stderr(&output).contains("mounted"), "{}", stderr(&output));
    drop(mount);
    assert_fsck_clean(&image);
}

#[test]
fn invoked_as_fsck_cowdax_the_binary_runs_fsck() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "via-link.img");
    let link = dir.path().join("fsck.cowdax");
    symlink(cowdax_binary(), &link).expect("symlink");
    let output = run_program(&link, &["-n", path_str(&image)]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("clean"), "{}", stdout(&output));
    let missing = run_program(&link, &["-n", path_str(&dir.path().join("nope"))]);
    assert_exit(&missing, 8);
}

/// Opens `image` with the library, makes a directory, and returns the open
/// filesystem (unmount it for a clean image; drop it for a crashed one).
fn mounted_with_a_directory(image: &Path) -> Fs {
    let media: Arc<dyn Media> =
        Arc::new(MmapMedia::open(image, OpenMode::ReadWrite).expect("open image read-write"));
    let fs = Fs::open(media, OpenOptions { read_only: false }).expect("open filesystem");
    fs.mkdir(ROOT_INO, b"dir", 0o755, Creds { uid: 0, gid: 0 })
        .expect("mkdir");
    fs
}

fn is_marked_clean(image: &Path) -> bool {
    let media: Arc<dyn Media> =
        Arc::new(MmapMedia::open(image, OpenMode::ReadOnly).expect("open image read-only"));
    let (_store, recovered) = Store::open(media, Access::ReadOnly).expect("store opens");
    recovered.was_clean
}

#[test]
fn fsck_n_leaves_the_journal_of_an_unclean_image_for_the_next_mount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "crashed.img");
    // Dropped without unmount: like a daemon that was killed.
    drop(mounted_with_a_directory(&image));
    assert!(!is_marked_clean(&image));
    let before = read_image(&image);
    let output = cowdax(&["fsck", "-n", path_str(&image)]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("replayed by the next mount"),
        "{}",
        stdout(&output)
    );
    assert!(read_image(&image) == before, "fsck -n modified the image");
}

#[test]
fn fsck_y_replays_the_journal_of_an_unclean_image_into_a_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "replay.img");
    drop(mounted_with_a_directory(&image));
    let output = cowdax(&["fsck", "-y", path_str(&image)]);
    // Replaying a journal is recovery, not an error: exit 0.
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("journal replayed"),
        "{}",
        stdout(&output)
    );
    assert!(is_marked_clean(&image));
    let media: Arc<dyn Media> =
        Arc::new(MmapMedia::open(&image, OpenMode::ReadOnly).expect("open image"));
    let fs = Fs::open(media, OpenOptions { read_only: true }).expect("open read-only");
    fs.lookup(ROOT_INO, b"dir")
        .expect("the replayed directory exists");
    drop(fs);
    assert_fsck_clean(&image);
}

#[test]
fn fsck_reports_a_corrupt_checkpoint_as_uncorrected_and_does_not_guess() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "bad-checkpoint.img");
    mounted_with_a_directory(&image)
        .unmount()
        .expect("unmount writes a checkpoint");
    let media = MmapMedia::open(&image, OpenMode::ReadOnly).expect("open image");
    let checkpoint = inspect(&media)
        .checkpoint
        .expect("a checkpoint after unmount");
    let descriptor = checkpoint.descriptor.expect("a valid descriptor");
    drop(media);
    // The payload follows the descriptor block in the checkpoint's first extent.
    let payload_offset = (descriptor.extents[0].start + 1) * BLOCK_SIZE + 10;
    let original = read_image(&image)[payload_offset as usize];
    poke(&image, payload_offset, &[original ^ 0xff]);
    let corrupted = read_image(&image);
    for mode in ["-n", "-y"] {
        let output = cowdax(&["fsck", mode, path_str(&image)]);
        assert_exit(&output, 4);
        assert!(
            stderr(&output).contains("checkpoint"),
            "{}",
            stderr(&output)
        );
        assert!(
            read_image(&image) == corrupted,
            "fsck {mode} wrote to an image it cannot repair"
        );
    }
}
