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

#[test]
fn unlinked_open_file_lives_until_release_and_orphans_are_reclaimed_at_mount() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let f = fs
        .mknod(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("f");
    fs.write(f.ino, 0, &pattern(5, 3 * BS as usize))
        .expect("write");
    fs.open_inode(f.ino).expect("open");
    fs.unlink(ROOT_INO, b"f").expect("unlink");
    assert_eq!(fs.getattr(f.ino).expect("still there").nlink, 0);
    assert_eq!(fs.read(f.ino, 0, 100).expect("read"), pattern(5, 100));
    fs.write(f.ino, 0, b"still writable").expect("write");
    assert_clean(&fs);
    let used = fs.usage().expect("usage").physical_bytes;
    fs.release_inode(f.ino).expect("release");
    assert!(matches!(fs.getattr(f.ino), Err(Error::NotFound)));
    assert_eq!(fs.usage().expect("usage").physical_bytes, used - 3 * BS);
    assert_clean(&fs);
    // Crash with an unlinked file still open: the next mount reclaims it.
    let g = fs
        .mknod(ROOT_INO, b"g", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("g");
    fs.write(g.ino, 0, &pattern(6, 2 * BS as usize))
        .expect("write");
    fs.open_inode(g.ino).expect("open");
    fs.unlink(ROOT_INO, b"g").expect("unlink");
    drop(fs);
    let fs = open(&sim);
    assert!(matches!(fs.getattr(g.ino), Err(Error::NotFound)));
    assert_eq!(fs.usage().expect("usage").physical_bytes, 0);
    assert_clean(&fs);
}

#[test]
fn xattr_namespaces_modes_and_limits_follow_linux() {
    let sim = formatted(256, None);
    let fs = open(&sim);
    let f = fs
        .mknod(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("f");
    use cowdax::fs::XattrSetMode::{Any, Create, Replace};
    assert!(matches!(
        fs.setxattr(f.ino, b"user.a", b"1", Replace),
        Err(Error::NoAttr)
    ));
    fs.setxattr(f.ino, b"user.a", b"1", Create).expect("create");
    assert!(matches!(
        fs.setxattr(f.ino, b"user.a", b"2", Create),
        Err(Error::Exists)
    ));
    fs.setxattr(f.ino, b"user.a", b"2", Replace)
        .expect("replace");
    fs.setxattr(f.ino, b"trusted.t", b"", Any).expect("trusted");
    fs.setxattr(f.ino, b"security.selinux", b"ctx", Any)
        .expect("security");
    fs.setxattr(f.ino, b"system.posix_acl_access", b"acl", Any)
        .expect("acl");
    assert!(matches!(
        fs.setxattr(f.ino, b"os2.x", b"", Any),
        Err(Error::NotSupported)
    ));
    assert!(matches!(
        fs.setxattr(f.ino, b"user.big", &vec![0; 65537], Any),
        Err(Error::TooBig)
    ));
    fs.setxattr(f.ino, b"user.max", &vec![7; 65536], Any)
        .expect("64 KiB value");
    let long = [b"user.".as_slice(), &[b'x'; 251]].concat();
    assert!(matches!(
        fs.setxattr(f.ino, &long, b"", Any),
        Err(Error::Range)
    ));
    assert_eq!(fs.getxattr(f.ino, b"user.a").expect("get"), b"2");
    assert_eq!(fs.listxattr(f.ino).expect("list").len(), 5);
    fs.removexattr(f.ino, b"user.a").expect("remove");
    assert!(matches!(fs.getxattr(f.ino, b"user.a"), Err(Error::NoAttr)));
    let s = fs
        .symlink(ROOT_INO, b"s", b"f", ROOT_CREDS)
        .expect("symlink");
    assert!(matches!(
        fs.setxattr(s.ino, b"user.a", b"1", Any),
        Err(Error::Perm)
    ));
    drop(fs);
    let fs = open(&sim);
    assert_eq!(fs.getxattr(f.ino, b"user.max").expect("get").len(), 65536);
    assert_clean(&fs);
}

#[test]
fn write_truncate_and_chown_drop_privileges_as_the_vfs_does() {
    use cowdax::fs::{Caller, Privileged, SetAttr, XattrSetMode::Any};
    /// Lacks CAP_FSETID, belongs to the file's group.
    struct Member;
    impl Caller for Member {
        fn has_fsetid(&self) -> bool {
            false
        }
        fn in_group(&self, _gid: u32) -> bool {
            true
        }
    }
    let sim = formatted(256, None);
    let fs = open(&sim);
    let f = fs
        .mknod(ROOT_INO, b"f", libc::S_IFREG | 0o6775, 0, ROOT_CREDS)
        .expect("f");
    let cap = b"security.capability";
    let perm = |fs: &cowdax::fs::Fs| fs.getattr(f.ino).expect("getattr").perm;
    // A write drops file capabilities always, setuid/setgid when the
    // caller lacks CAP_FSETID.
    fs.setxattr(f.ino, cap, b"caps", Any).expect("set caps");
    let written = fs.write_as(f.ino, 0, b"x", &Privileged).expect("write");
    assert!(!written.mode_changed);
    assert!(matches!(fs.getxattr(f.ino, cap), Err(Error::NoAttr)));
    assert_eq!(perm(&fs), 0o6775);
    let written = fs
        .write_as(f.ino, 0, b"y", &Member)
        .expect("write killing suid");
    assert!(written.mode_changed);
    assert_eq!(perm(&fs), 0o775);
    // Truncate: the same rule; a setgid bit without group execute stays.
    let set_perm = |p: u32| SetAttr {
        perm: Some(p),
        ..SetAttr::default()
    };
    fs.setattr(f.ino, &set_perm(0o6745)).expect("chmod");
    fs.setxattr(f.ino, cap, b"caps", Any).expect("set caps");
    let truncate = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    fs.setattr_as(f.ino, &truncate, &Member).expect("truncate");
    assert_eq!(perm(&fs), 0o2745);
    assert!(matches!(fs.getxattr(f.ino, cap), Err(Error::NoAttr)));
    // Chown: always, even for root.
    fs.setattr(f.ino, &set_perm(0o6775)).expect("chmod");
    fs.setxattr(f.ino, cap, b"caps", Any).expect("set caps");
    let chown = SetAttr {
        uid: Some(1000),
        ..SetAttr::default()
    };
    fs.setattr(f.ino, &chown).expect("chown");
    assert_eq!(perm(&fs), 0o775);
    assert!(matches!(fs.getxattr(f.ino, cap), Err(Error::NoAttr)));
    // Directories keep setgid on chown.
    let d = fs.mkdir(ROOT_INO, b"d", 0o2775, ROOT_CREDS).expect("d");
    fs.setattr(d.ino, &chown).expect("chown dir");
    assert_eq!(fs.getattr(d.ino).expect("getattr").perm, 0o2775);
    drop(fs);
    let fs = open(&sim);
    assert_eq!(perm(&fs), 0o775);
    assert_clean(&fs);
}

#[test]
fn names_links_and_seek_behave_as_posix() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    assert!(matches!(
        fs.mknod(ROOT_INO, &[b'n'; 256], libc::S_IFREG | 0o644, 0, ROOT_CREDS),
        Err(Error::NameTooLong)
    ));
    fs.mknod(ROOT_INO, &[b'n'; 255], libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("255 bytes");
    assert!(fs
        .mknod(ROOT_INO, b"a/b", libc::S_IFREG, 0, ROOT_CREDS)
        .is_err());
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT_CREDS).expect("mkdir");
    assert!(matches!(fs.link(d.ino, ROOT_INO, b"dl"), Err(Error::Perm)));
    let f = fs
        .mknod(d.ino, b"f", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("f");
    fs.link(f.ino, ROOT_INO, b"hard").expect("link");
    assert_eq!(fs.getattr(f.ino).expect("attr").nlink, 2);
    let mut paths = fs.paths_of(f.ino, 10).expect("paths");
    paths.sort();
    assert_eq!(paths, vec![b"/d/f".to_vec(), b"/hard".to_vec()]);
    assert!(matches!(fs.unlink(ROOT_INO, b"d"), Err(Error::IsDir)));
    assert!(matches!(fs.rmdir(ROOT_INO, b"hard"), Err(Error::NotDir)));
    // Sparse file: data at block 2 and an unwritten block at 5.
    fs.write(f.ino, 2 * BS, b"data").expect("write");
    fs.fallocate(f.ino, 5 * BS, BS, cowdax::fs::FallocMode::Allocate)
        .expect("fallocate");
    use cowdax::fs::Whence::{Data, Hole};
    assert_eq!(fs.seek(f.ino, 0, Data).expect("seek"), 2 * BS);
    assert_eq!(fs.seek(f.ino, 2 * BS + 1, Hole).expect("seek"), 3 * BS);
    assert_eq!(fs.seek(f.ino, 3 * BS, Data).expect("seek"), 5 * BS);
    assert_eq!(fs.seek(f.ino, 5 * BS, Hole).expect("seek"), 6 * BS);
    assert!(matches!(fs.seek(f.ino, 6 * BS, Data), Err(Error::NoData)));
    assert_eq!(
        fs.read(f.ino, 5 * BS, 10).expect("unwritten reads zeros"),
        vec![0; 10]
    );
    let st = fs.statfs().expect("statfs");
    assert!(st.free_blocks > 0 && st.free_blocks < st.total_blocks);
    assert_clean(&fs);
}

#[test]
fn special_files_keep_kind_rdev_and_refuse_data_operations() {
    let sim = formatted(256, None);
    let fs = open(&sim);
    let kinds = [
        (b"fifo".as_slice(), libc::S_IFIFO, FileKind::Fifo, 0),
        (b"sock", libc::S_IFSOCK, FileKind::Socket, 0),
        (b"chr", libc::S_IFCHR, FileKind::CharDevice, 0x0501),
        (b"blk", libc::S_IFBLK, FileKind::BlockDevice, 0x0802),
    ];
    for (name, mode, kind, rdev) in kinds {
        let a = fs
            .mknod(ROOT_INO, name, mode | 0o640, rdev, ROOT_CREDS)
            .expect("mknod");
        assert_eq!((a.kind, a.rdev, a.perm), (kind, rdev, 0o640));
        assert!(matches!(fs.write(a.ino, 0, b"x"), Err(Error::Invalid(_))));
    }
    assert!(matches!(
        fs.mknod(ROOT_INO, b"d", libc::S_IFDIR | 0o755, 0, ROOT_CREDS),
        Err(Error::Invalid(_))
    ));
    let d = fs
        .mkdir(ROOT_INO, b"dir", 0o700, ROOT_CREDS)
        .expect("mkdir");
    assert!(matches!(fs.read(d.ino, 0, 10), Err(Error::IsDir)));
    drop(fs);
    let fs = open(&sim);
    let chr = fs.lookup(ROOT_INO, b"chr").expect("chr");
    assert_eq!((chr.kind, chr.rdev), (FileKind::CharDevice, 0x0501));
    assert_clean(&fs);
}

#[test]
fn read_only_scrub_accepts_orphans_that_the_next_mount_reclaims() {
    let sim = formatted(512, None);
    let fs = open(&sim);
    let f = fs
        .mknod(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("f");
    fs.write(f.ino, 0, b"data").expect("write");
    fs.open_inode(f.ino).expect("open");
    fs.unlink(ROOT_INO, b"f").expect("unlink");
    drop(fs); // crash with the file open
    let ro = cowdax::fs::Fs::open(
        std::sync::Arc::new(sim.clone()),
        cowdax::fs::OpenOptions { read_only: true },
    )
    .expect("read-only open");
    assert_clean(&ro);
    assert_eq!(ro.getattr(f.ino).expect("orphan still there").nlink, 0);
    drop(ro);
    let fs = open(&sim);
    assert!(matches!(fs.getattr(f.ino), Err(Error::NotFound)));
    assert_clean(&fs);
}
