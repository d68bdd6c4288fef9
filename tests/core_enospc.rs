//! ENOSPC is clean: the failing operation changes nothing, everything else
//! keeps working, and freeing space (also of shared extents) makes room.

mod core_support;

use std::sync::Arc;

use core_support::{assert_clean, format_opts, formatted, open, pattern, ROOT_CREDS};
use cowdax::fs::{Error, FallocMode, Fs, Ino, OpenOptions, SetAttr, ROOT_INO};
use cowdax::media::{Media, MmapMedia, OpenMode};

const BS: u64 = 4096;

fn create(fs: &Fs, name: &[u8]) -> Ino {
    fs.mknod(ROOT_INO, name, libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create")
        .ino
}

/// Append 64 KiB chunks until the filesystem is full; returns bytes written.
fn fill(fs: &Fs, ino: Ino) -> u64 {
    let chunk = pattern(99, 64 * 1024);
    let mut off = fs.getattr(ino).expect("getattr").size;
    loop {
        match fs.write(ino, off, &chunk) {
            Ok(n) => off += n as u64,
            Err(Error::NoSpace) => break,
            Err(e) => panic!("unexpected error while filling: {e}"),
        }
    }
    // Then single blocks, to really exhaust it.
    loop {
        match fs.write(ino, off, &chunk[..BS as usize]) {
            Ok(n) => off += n as u64,
            Err(Error::NoSpace) => return off,
            Err(e) => panic!("unexpected error while filling: {e}"),
        }
    }
}

#[test]
fn failing_write_changes_nothing_and_freeing_space_makes_room() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let keep = create(&fs, b"keep");
    let keep_data = pattern(1, 10_000);
    fs.write(keep, 0, &keep_data).expect("write");
    let filler = create(&fs, b"filler");
    let filled = fill(&fs, filler);
    assert!(filled > 0);
    let before = fs.getattr(keep).expect("getattr");
    // A large write into a hole of `keep` fails and leaves it untouched.
    assert!(matches!(
        fs.write(keep, 1 << 20, &pattern(2, 100_000)),
        Err(Error::NoSpace)
    ));
    assert_eq!(fs.getattr(keep).expect("getattr"), before);
    assert_eq!(fs.read(keep, 0, 1 << 21).expect("read"), keep_data);
    // Fallocate fails cleanly too.
    assert!(matches!(
        fs.fallocate(keep, 0, 1 << 20, FallocMode::Allocate),
        Err(Error::NoSpace)
    ));
    assert_eq!(fs.getattr(keep).expect("getattr"), before);
    // Everything not needing data blocks still works.
    fs.write(keep, 0, b"in place")
        .expect("in-place write needs no space");
    fs.mkdir(ROOT_INO, b"dir", 0o755, ROOT_CREDS)
        .expect("mkdir");
    fs.rename(ROOT_INO, b"keep", ROOT_INO, b"kept", Default::default())
        .expect("rename");
    assert_clean(&fs);
    let free_before = fs.statfs().expect("statfs").free_blocks;
    // Free space: truncate the filler, then the big write succeeds.
    fs.setattr(
        filler,
        &SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
    )
    .expect("truncate");
    assert!(fs.statfs().expect("statfs").free_blocks > free_before + 100);
    fs.write(keep, 1 << 20, &pattern(2, 100_000))
        .expect("write after freeing");
    assert_clean(&fs);
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
}

#[test]
fn cow_of_shared_extents_at_enospc_fails_cleanly_and_unsharing_frees_nothing() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let a = create(&fs, b"a");
    let data = pattern(3, 40 * BS as usize);
    fs.write(a, 0, &data).expect("write");
    let b = create(&fs, b"b");
    fs.clone_range(a, 0, b, 0, 0).expect("clone");
    let filler = create(&fs, b"filler");
    fill(&fs, filler);
    // CoW needs new blocks: fails, both files unchanged.
    assert!(matches!(
        fs.write(b, 0, &pattern(4, 8 * BS as usize)),
        Err(Error::NoSpace)
    ));
    assert_eq!(fs.read(a, 0, 1 << 20).expect("read a"), data);
    assert_eq!(fs.read(b, 0, 1 << 20).expect("read b"), data);
    // Cloning more needs no data blocks.
    let c = create(&fs, b"c");
    fs.clone_range(a, 0, c, 0, 0).expect("clone at ENOSPC");
    assert_clean(&fs);
    // Unlinking one sharer frees nothing (still shared by b and c).
    let free0 = fs.statfs().expect("statfs").free_blocks;
    fs.unlink(ROOT_INO, b"a").expect("unlink a");
    assert_eq!(fs.statfs().expect("statfs").free_blocks, free0);
    // Truncating shared files only drops references.
    fs.setattr(
        c,
        &SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
    )
    .expect("truncate c");
    assert_eq!(fs.read(b, 0, 1 << 20).expect("read b"), data);
    // Free real space by punching the filler; then the CoW write works.
    fs.fallocate(filler, 0, 64 * BS, FallocMode::PunchHole)
        .expect("punch");
    let new = pattern(4, 8 * BS as usize);
    fs.write(b, 0, &new).expect("cow after freeing");
    let mut expect = data.clone();
    expect[..new.len()].copy_from_slice(&new);
    assert_eq!(fs.read(b, 0, 1 << 20).expect("read b"), expect);
    assert_clean(&fs);
    // Unsharing the last copy frees the blocks.
    let used1 = fs.usage().expect("usage").physical_bytes;
    fs.unlink(ROOT_INO, b"b").expect("unlink b");
    let used2 = fs.usage().expect("usage").physical_bytes;
    assert_eq!(used1 - used2, 40 * BS);
    assert_clean(&fs);
    fs.unmount().expect("unmount");
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
}

#[test]
fn creating_many_inodes_on_a_full_device_stops_with_enospc_never_journal_full() {
    let sim = formatted(256, Some(16 * 1024));
    let fs = open(&sim);
    let filler = create(&fs, b"filler");
    fill(&fs, filler);
    let mut created = 0;
    let result = loop {
        let name = format!("n{created}");
        match fs.mknod(
            ROOT_INO,
            name.as_bytes(),
            libc::S_IFREG | 0o644,
            0,
            ROOT_CREDS,
        ) {
            Ok(_) => created += 1,
            Err(e) => break e,
        }
        assert!(created < 200_000, "metadata never ran out of space");
    };
    assert!(matches!(result, Error::NoSpace), "got {result:?}");
    eprintln!("created {created} inodes on a full device before ENOSPC");
    assert_clean(&fs);
    // Deleting still works and makes room again.
    fs.unlink(ROOT_INO, b"filler").expect("unlink filler");
    fs.mknod(ROOT_INO, b"after", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create after freeing");
    fs.unmount().expect("unmount with a full-ish device");
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
}

#[test]
fn an_operation_larger_than_a_tiny_journal_fails_with_enospc_and_changes_nothing() {
    // 16 KiB journal: one transaction may carry at most ~8 KiB.
    let sim = formatted(512, Some(16 * 1024));
    let fs = open(&sim);
    let f = create(&fs, b"f");
    assert!(matches!(
        fs.setxattr(f, b"user.big", &[1; 60_000], cowdax::fs::XattrSetMode::Any),
        Err(Error::NoSpace)
    ));
    assert!(matches!(fs.getxattr(f, b"user.big"), Err(Error::NoAttr)));
    fs.setxattr(f, b"user.small", &[1; 1000], cowdax::fs::XattrSetMode::Any)
        .expect("small xattr");
    assert_clean(&fs);
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
}

/// A filesystem on an image file (page-cache media: commits are made
/// durable in groups, by fsync or a checkpoint, not one by one as on pmem
/// or the simulator), as a FUSE mount of an image file has it.
fn group_commit_fs(
    dir: &std::path::Path,
    blocks: u64,
    journal_bytes: u64,
) -> (Fs, std::path::PathBuf) {
    let path = dir.join("image");
    let media: Arc<dyn Media> =
        Arc::new(MmapMedia::create(&path, blocks * BS).expect("create image"));
    Fs::mkfs(media.clone(), &format_opts(Some(journal_bytes)), ROOT_CREDS).expect("mkfs");
    let fs = Fs::open(media, OpenOptions::default()).expect("open");
    (fs, path)
}

#[test]
fn space_freed_by_an_unlink_is_usable_by_creates_before_anything_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A journal large enough that no checkpoint (which would make the
    // unlink durable) runs in between.
    let (fs, path) = group_commit_fs(dir.path(), 2048, 2 << 20);
    let filler = create(&fs, b"filler");
    fill(&fs, filler);
    // Metadata-only updates grow the journal, and with it the blocks kept
    // back for the next checkpoint, past what the full device has left
    // (what the size and time updates of a writeback-cache mount do).
    let mut made = 0;
    while fs
        .mknod(
            ROOT_INO,
            format!("small{made}").as_bytes(),
            libc::S_IFREG | 0o644,
            0,
            ROOT_CREDS,
        )
        .is_ok()
    {
        made += 1;
        assert!(made < 100_000, "creates never ran out of space");
    }
    // Deleting the filler frees (almost) everything, and statfs says so;
    // nothing has synced the journal since, which is what makes the freed
    // blocks reusable.
    fs.unlink(ROOT_INO, b"filler").expect("unlink");
    let statfs = fs.statfs().expect("statfs");
    assert!(statfs.free_blocks > 1500, "statfs: {statfs:?}");
    let ino = create(&fs, b"after");
    fs.write(ino, 0, &pattern(3, 1 << 20))
        .expect("write after unlink");
    assert_clean(&fs);
    fs.unmount().expect("unmount");
    drop(fs);
    let media: Arc<dyn Media> =
        Arc::new(MmapMedia::open(&path, OpenMode::ReadOnly).expect("reopen"));
    let fs = Fs::open(media, OpenOptions { read_only: true }).expect("open");
    assert_clean(&fs);
}
