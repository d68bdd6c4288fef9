//! `cowdax dump` from the outside: read-only, shows both superblocks.

mod cli_common;

use std::path::Path;
use std::sync::Arc;

use cli_common::*;
use cowdax::fs::{Creds, Fs, OpenOptions, ROOT_INO};
use cowdax::media::{Media, MmapMedia, OpenMode};

const ROOT: Creds = Creds { uid: 0, gid: 0 };

/// Opens `image` with the library and makes a directory `dir` and a
/// symlink `ln` → `target-x` in the root; returns the filesystem and the
/// symlink's inode number (unmount for a checkpoint, drop to leave the
/// changes in the journal only).
fn with_known_content(image: &Path) -> (Fs, u64) {
    let media: Arc<dyn Media> =
        Arc::new(MmapMedia::open(image, OpenMode::ReadWrite).expect("open image read-write"));
    let fs = Fs::open(media, OpenOptions { read_only: false }).expect("open filesystem");
    fs.mkdir(ROOT_INO, b"dir", 0o755, ROOT).expect("mkdir");
    let link = fs
        .symlink(ROOT_INO, b"ln", b"target-x", ROOT)
        .expect("symlink");
    (fs, link.ino)
}

/// Replays and checkpoints the journal, so the image ends clean.
fn open_and_unmount(image: &Path) {
    let media: Arc<dyn Media> =
        Arc::new(MmapMedia::open(image, OpenMode::ReadWrite).expect("open image read-write"));
    let fs = Fs::open(media, OpenOptions { read_only: false }).expect("open filesystem");
    fs.unmount().expect("unmount");
}

#[test]
fn dump_prints_both_superblocks_journal_and_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "dump.img");
    let before = read_image(&image);
    let output = cowdax(&["dump", path_str(&image)]);
    assert_exit(&output, 0);
    let text = stdout(&output).to_lowercase();
    for part in ["superblock a", "superblock b", "journal", "checkpoint"] {
        assert!(text.contains(part), "dump lacks {part}:\n{text}");
    }
    assert!(read_image(&image) == before, "dump modified the image");
    assert_fsck_clean(&image);
}

#[test]
fn dump_of_a_damaged_superblock_still_prints_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "damaged.img");
    poke(&image, 24, &[0xa5; 8]);
    let output = cowdax(&["dump", path_str(&image)]);
    assert_exit(&output, 0);
    let text = stdout(&output).to_lowercase();
    assert!(text.contains("superblock a"), "{text}");
    assert!(text.contains("superblock b"), "{text}");
}

#[test]
fn dump_of_a_file_without_cowdax_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zeros = dir.path().join("zeros.img");
    blank_file(&zeros, 1 << 20);
    let output = cowdax(&["dump", path_str(&zeros)]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("not a cowdax") || stdout(&output).contains("not a cowdax"),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&output),
        stderr(&output)
    );
    let missing = cowdax(&["dump", path_str(&dir.path().join("nope"))]);
    assert_exit(&missing, 1);
}

#[test]
fn dump_journal_lists_each_record_of_the_live_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "journal.img");
    let (fs, link_ino) = with_known_content(&image);
    // Dropped without unmount: the changes are only in the journal.
    drop(fs);
    let before = read_image(&image);
    let plain = stdout(&cowdax(&["dump", path_str(&image)]));
    let output = cowdax(&["dump", "--journal", path_str(&image)]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        text.starts_with(&plain),
        "the summary comes first, unchanged:\n{text}"
    );
    let listing = &text[plain.len()..];
    for line in [
        "put_dirent dir 1 \"dir\" -> ino ".to_string(),
        format!("put_dirent dir 1 \"ln\" -> ino {link_ino} symlink cookie "),
        format!("put_inode ino {link_ino} symlink perm 0777 "),
        "target \"target-x\"".to_string(),
        "touch_dir dir 1 time ".to_string(),
    ] {
        assert!(
            listing.contains(&line),
            "listing lacks {line:?}:\n{listing}"
        );
    }
    let transactions = listing
        .lines()
        .filter(|l| l.starts_with("txn seq "))
        .count();
    assert!(
        transactions >= 2,
        "one transaction per operation:\n{listing}"
    );
    assert!(listing.contains("journal ends: "), "{listing}");
    assert!(read_image(&image) == before, "dump modified the image");
    open_and_unmount(&image);
    assert_fsck_clean(&image);
}

#[test]
fn dump_inodes_lists_the_checkpoint_inodes_and_one_inode_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "inodes.img");
    let (fs, link_ino) = with_known_content(&image);
    fs.unmount().expect("unmount writes a checkpoint");
    drop(fs);
    let before = read_image(&image);
    let output = cowdax(&["dump", "--inodes", path_str(&image)]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    for line in [
        "checkpoint inodes (generation ".to_string(),
        "inode 1: directory perm 0755 ".to_string(),
        "  entry \"dir\" -> ino ".to_string(),
        format!("  entry \"ln\" -> ino {link_ino} symlink cookie "),
        format!("inode {link_ino}: symlink perm 0777 "),
        "  target \"target-x\"".to_string(),
    ] {
        assert!(text.contains(&line), "listing lacks {line:?}:\n{text}");
    }
    let one = stdout(&cowdax(&[
        "dump",
        "--inode",
        &link_ino.to_string(),
        path_str(&image),
    ]));
    assert!(one.contains(&format!("inode {link_ino}: symlink")), "{one}");
    assert!(
        !one.contains("inode 1: "),
        "only the inode asked for:\n{one}"
    );
    let missing = cowdax(&["dump", "--inode", "999999", path_str(&image)]);
    assert_exit(&missing, 0);
    assert!(stdout(&missing).contains("inode 999999: not in the checkpoint"));
    assert!(read_image(&image) == before, "dump modified the image");
    assert_fsck_clean(&image);
}
