//! The core's readdir continued after a rename within the directory: the
//! moved entry keeps a cookie the directory already had, so a listing past
//! it never meets it again (issue 19), live, after journal replay and after
//! a checkpoint.

mod core_support;

use core_support::{assert_clean, formatted, open, ROOT_CREDS};
use cowdax::fs::{Fs, RenameFlags, ROOT_INO};

/// (name, ino, next_offset) of every entry after `offset`, "." and ".."
/// left out.
fn entries_after(fs: &Fs, dir: u64, offset: u64) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    fs.readdir(dir, offset, &mut |e| {
        if e.name != b"." && e.name != b".." {
            out.push((
                String::from_utf8(e.name.clone()).unwrap(),
                e.ino,
                e.next_offset,
            ));
        }
        true
    })
    .expect("readdir");
    out
}

fn names(entries: &[(String, u64, u64)]) -> Vec<&str> {
    entries.iter().map(|(n, _, _)| n.as_str()).collect()
}

#[test]
fn readdir_continued_after_a_rename_in_the_directory_returns_no_entry_twice() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let dir = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT_CREDS).expect("mkdir");
    let mut inos = Vec::new();
    for n in ["a", "b", "c", "d", "e"] {
        let attr = fs
            .mknod(dir.ino, n.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT_CREDS)
            .expect("create");
        inos.push(attr.ino);
    }
    let all = entries_after(&fs, dir.ino, 0);
    assert_eq!(names(&all), ["a", "b", "c", "d", "e"]);
    // A reader has seen a, b and c; its offset is c's cookie.
    let offset = all[2].2;
    // a moves to a fresh name, e replaces c (the editor's save).
    fs.rename(dir.ino, b"a", dir.ino, b"a2", RenameFlags::default())
        .expect("rename a");
    fs.rename(dir.ino, b"e", dir.ino, b"c", RenameFlags::default())
        .expect("rename e over c");
    let rest = entries_after(&fs, dir.ino, offset);
    assert_eq!(
        names(&rest),
        ["d"],
        "the reader already passed a2 (a's place) and c"
    );
    // From the start: each name where it was, c now the former e.
    let expect = vec![
        ("a2".to_string(), inos[0], all[0].2),
        ("b".to_string(), inos[1], all[1].2),
        ("c".to_string(), inos[4], all[2].2),
        ("d".to_string(), inos[3], all[3].2),
    ];
    assert_eq!(entries_after(&fs, dir.ino, 0), expect);
    // An exchange swaps the inodes, each name keeps its place.
    let exchange = RenameFlags {
        exchange: true,
        ..RenameFlags::default()
    };
    fs.rename(dir.ino, b"b", dir.ino, b"d", exchange)
        .expect("exchange");
    let swapped = vec![
        expect[0].clone(),
        ("b".to_string(), inos[3], all[1].2),
        expect[2].clone(),
        ("d".to_string(), inos[1], all[3].2),
    ];
    assert_eq!(entries_after(&fs, dir.ino, 0), swapped);
    assert_clean(&fs);
    // The cookies are the entries' own: the journal replays them…
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
    assert_eq!(entries_after(&fs, dir.ino, 0), swapped);
    // …and a checkpoint keeps them.
    fs.unmount().expect("unmount");
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
    assert_eq!(entries_after(&fs, dir.ino, 0), swapped);
    // A new entry still goes after every cookie ever handed out.
    fs.mknod(dir.ino, b"f", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create f");
    let last = entries_after(&fs, dir.ino, all[4].2);
    assert_eq!(names(&last), ["f"]);
    assert_clean(&fs);
}

#[test]
fn a_move_into_another_directory_gets_a_new_cookie_there() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let src = fs
        .mkdir(ROOT_INO, b"s", 0o755, ROOT_CREDS)
        .expect("mkdir s");
    let dst = fs
        .mkdir(ROOT_INO, b"t", 0o755, ROOT_CREDS)
        .expect("mkdir t");
    for n in [&b"x"[..], b"y"] {
        fs.mknod(dst.ino, n, libc::S_IFREG | 0o644, 0, ROOT_CREDS)
            .expect("create in t");
    }
    fs.mknod(src.ino, b"m", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create m");
    let before = entries_after(&fs, dst.ino, 0);
    // A reader of t is past y; m arrives as a new entry, after it.
    fs.rename(src.ino, b"m", dst.ino, b"m", RenameFlags::default())
        .expect("move");
    assert_eq!(names(&entries_after(&fs, dst.ino, before[1].2)), ["m"]);
    assert!(entries_after(&fs, src.ino, 0).is_empty());
    assert_clean(&fs);
}
