//! End-to-end behaviour of the core API on SimMedia.

mod core_support;

use core_support::{assert_clean, formatted, open, pattern, ROOT_CREDS};
use cowdax::fs::{DedupeOutcome, Error, FileKind, RenameFlags, ROOT_INO};

const BS: u64 = 4096;

#[test]
fn create_lookup_write_read_readdir_unlink_round_trip() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let attr = fs
        .mknod(ROOT_INO, b"hello", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create");
    assert_eq!(attr.kind, FileKind::Regular);
    assert_eq!(fs.lookup(ROOT_INO, b"hello").expect("lookup").ino, attr.ino);
    let data = pattern(1, 10_000);
    assert_eq!(fs.write(attr.ino, 100, &data).expect("write"), 10_000);
    let got = fs.read(attr.ino, 0, 20_000).expect("read");
    assert_eq!(got.len(), 10_100);
    assert!(got[..100].iter().all(|&b| b == 0));
    assert_eq!(&got[100..], &data[..]);
    let st = fs.getattr(attr.ino).expect("getattr");
    assert_eq!(st.size, 10_100);
    assert_eq!(st.blocks, 3 * 8);
    let mut names = Vec::new();
    fs.readdir(ROOT_INO, 0, &mut |e| {
        names.push(e.name.clone());
        true
    })
    .expect("readdir");
    assert_eq!(
        names,
        vec![b".".to_vec(), b"..".to_vec(), b"hello".to_vec()]
    );
    assert_clean(&fs);
    fs.unlink(ROOT_INO, b"hello").expect("unlink");
    assert!(matches!(
        fs.lookup(ROOT_INO, b"hello"),
        Err(Error::NotFound)
    ));
    assert_clean(&fs);
}

#[test]
fn state_survives_unmount_and_journal_replay() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let dir = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT_CREDS).expect("mkdir");
    let f = fs
        .mknod(dir.ino, b"f", libc::S_IFREG | 0o600, 0, ROOT_CREDS)
        .expect("create");
    fs.write(f.ino, 0, &pattern(2, 9000)).expect("write");
    fs.unmount().expect("unmount");
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
    let f2 = fs.lookup(dir.ino, b"f").expect("lookup after remount");
    assert_eq!(f2.ino, f.ino);
    assert_eq!(fs.read(f.ino, 0, 9000).expect("read"), pattern(2, 9000));
    // Now without unmount: only the journal carries these.
    fs.write(f.ino, 9000, &pattern(3, 5000)).expect("append");
    fs.symlink(ROOT_INO, b"link", b"d/f", ROOT_CREDS)
        .expect("symlink");
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
    assert_eq!(fs.getattr(f.ino).expect("getattr").size, 14000);
    assert_eq!(fs.read(f.ino, 9000, 5000).expect("read"), pattern(3, 5000));
    let l = fs.lookup(ROOT_INO, b"link").expect("symlink");
    assert_eq!(fs.readlink(l.ino).expect("readlink"), b"d/f");
}

#[test]
fn clone_shares_blocks_and_cow_keeps_the_other_file_unchanged() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let a = fs
        .mknod(ROOT_INO, b"a", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("a");
    let b = fs
        .mknod(ROOT_INO, b"b", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("b");
    let data = pattern(4, 5 * BS as usize + 123);
    fs.write(a.ino, 0, &data).expect("write");
    assert_eq!(
        fs.clone_range(a.ino, 0, b.ino, 0, 0).expect("clone"),
        data.len() as u64
    );
    let before = fs.usage().expect("usage");
    assert_eq!(before.saved_bytes, 6 * BS);
    assert!(fs.extents(b.ino).expect("extents").iter().all(|e| e.shared));
    fs.write(b.ino, BS + 10, b"XYZ").expect("cow write");
    let mut expect_b = data.clone();
    expect_b[BS as usize + 10..BS as usize + 13].copy_from_slice(b"XYZ");
    assert_eq!(fs.read(b.ino, 0, 1 << 20).expect("read b"), expect_b);
    assert_eq!(fs.read(a.ino, 0, 1 << 20).expect("read a"), data);
    assert_eq!(fs.usage().expect("usage").saved_bytes, 5 * BS);
    assert_clean(&fs);
    // Dedupe it back.
    assert_eq!(
        fs.dedupe_range(a.ino, 0, b.ino, 0, 2 * BS).expect("dedupe"),
        DedupeOutcome::Differs
    );
    fs.write(b.ino, BS + 10, &data[BS as usize + 10..BS as usize + 13])
        .expect("restore");
    assert_eq!(
        fs.dedupe_range(a.ino, 0, b.ino, 0, 2 * BS).expect("dedupe"),
        DedupeOutcome::Deduped { bytes: 2 * BS }
    );
    assert_eq!(fs.usage().expect("usage").saved_bytes, 6 * BS);
    let owners = fs
        .owners(
            fs.extents(a.ino).expect("ext")[0]
                .phys_offset
                .expect("mapped")
                / BS,
            1,
        )
        .expect("owners");
    assert_eq!(owners.len(), 2);
    fs.unlink(ROOT_INO, b"a").expect("unlink a");
    assert_eq!(fs.read(b.ino, 0, 1 << 20).expect("read b"), data);
    assert_clean(&fs);
    drop(fs);
    let fs = open(&sim);
    assert_eq!(fs.read(b.ino, 0, 1 << 20).expect("read b"), data);
    assert_clean(&fs);
}

#[test]
fn rename_variants_follow_posix() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let d1 = fs.mkdir(ROOT_INO, b"d1", 0o755, ROOT_CREDS).expect("d1");
    let d2 = fs.mkdir(d1.ino, b"d2", 0o755, ROOT_CREDS).expect("d2");
    let f = fs
        .mknod(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("f");
    let g = fs
        .mknod(ROOT_INO, b"g", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("g");
    assert!(matches!(
        fs.rename(ROOT_INO, b"d1", d2.ino, b"x", RenameFlags::default()),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        fs.rename(
            ROOT_INO,
            b"f",
            ROOT_INO,
            b"g",
            RenameFlags {
                noreplace: true,
                exchange: false
            }
        ),
        Err(Error::Exists)
    ));
    fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", RenameFlags::default())
        .expect("replace");
    assert_eq!(fs.lookup(ROOT_INO, b"g").expect("g").ino, f.ino);
    assert!(matches!(fs.getattr(g.ino), Err(Error::NotFound)));
    fs.rename(ROOT_INO, b"g", d2.ino, b"moved", RenameFlags::default())
        .expect("move");
    fs.rename(d1.ino, b"d2", ROOT_INO, b"d2top", RenameFlags::default())
        .expect("dir move");
    assert_eq!(fs.getattr(d1.ino).expect("d1").nlink, 2);
    assert_eq!(fs.getattr(ROOT_INO).expect("root").nlink, 4);
    fs.rename(
        ROOT_INO,
        b"d1",
        ROOT_INO,
        b"d2top",
        RenameFlags {
            noreplace: false,
            exchange: true,
        },
    )
    .expect("exchange");
    assert_eq!(fs.lookup(ROOT_INO, b"d1").expect("d1").ino, d2.ino);
    assert!(matches!(fs.rmdir(ROOT_INO, b"d1"), Err(Error::NotEmpty)));
    assert_clean(&fs);
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
}
