//! `cowdax dump` from the outside: read-only, shows both superblocks.

mod cli_common;

use cli_common::*;

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
