//! Every FUSE operation of the adapter, driven through real syscalls on a
//! mounted image.

mod fuse_support;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{FallocateFlags, RenameFlags};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{AccessFlags, Whence};

use fuse_support::*;

const IMAGE_BYTES: u64 = 256 << 20;

fn mounted() -> TestFs {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("allow_other");
    t
}

#[test]
fn create_write_read_truncate_and_stat() {
    let t = mounted();
    let path = t.path("file");
    let mut file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    file.write_all(b"hello, cowdax").unwrap();
    file.seek(SeekFrom::Start(7)).unwrap();
    let mut tail = String::new();
    file.read_to_string(&mut tail).unwrap();
    assert_eq!(tail, "cowdax");
    let meta = file.metadata().unwrap();
    assert_eq!(meta.len(), 13);
    assert!(meta.file_type().is_file());
    assert_eq!(meta.uid(), 0);
    file.set_len(5).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    file.set_len(10).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"hello\0\0\0\0\0");
    // O_TRUNC on open.
    drop(File::create(&path).unwrap());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    // O_APPEND.
    std::fs::write(&path, b"ab").unwrap();
    let mut append = OpenOptions::new().append(true).open(&path).unwrap();
    append.write_all(b"cd").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"abcd");
    drop((file, append));
    t.finish();
}

#[test]
fn directories_links_symlinks_and_renames() {
    let t = mounted();
    std::fs::create_dir(t.path("a")).unwrap();
    std::fs::create_dir(t.path("a/b")).unwrap();
    std::fs::write(t.path("a/b/f"), b"1").unwrap();
    assert_eq!(
        std::fs::create_dir(t.path("a")).unwrap_err().raw_os_error(),
        Some(libc::EEXIST)
    );
    assert_eq!(
        std::fs::remove_dir(t.path("a/b"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    std::os::unix::fs::symlink("b/f", t.path("a/sym")).unwrap();
    assert_eq!(
        std::fs::read_link(t.path("a/sym")).unwrap(),
        Path::new("b/f")
    );
    assert_eq!(std::fs::read(t.path("a/sym")).unwrap(), b"1");
    std::fs::hard_link(t.path("a/b/f"), t.path("a/hard")).unwrap();
    assert_eq!(std::fs::metadata(t.path("a/hard")).unwrap().nlink(), 2);

    let mut names: Vec<String> = std::fs::read_dir(t.path("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "hard", "sym"]);

    std::fs::rename(t.path("a/hard"), t.path("moved")).unwrap();
    assert!(!t.path("a/hard").exists());
    std::fs::write(t.path("other"), b"2").unwrap();
    // RENAME_NOREPLACE refuses an existing target; RENAME_EXCHANGE swaps.
    let cwd = nix::fcntl::AT_FDCWD;
    let err = nix::fcntl::renameat2(
        cwd,
        &t.path("moved"),
        cwd,
        &t.path("other"),
        RenameFlags::RENAME_NOREPLACE,
    )
    .unwrap_err();
    assert_eq!(err, nix::errno::Errno::EEXIST);
    nix::fcntl::renameat2(
        cwd,
        &t.path("moved"),
        cwd,
        &t.path("other"),
        RenameFlags::RENAME_EXCHANGE,
    )
    .unwrap();
    assert_eq!(std::fs::read(t.path("moved")).unwrap(), b"2");
    assert_eq!(std::fs::read(t.path("other")).unwrap(), b"1");

    std::fs::remove_file(t.path("a/sym")).unwrap();
    std::fs::remove_file(t.path("a/b/f")).unwrap();
    std::fs::remove_dir(t.path("a/b")).unwrap();
    assert_eq!(
        std::fs::metadata(t.path("a/b")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    t.finish();
}

#[test]
fn special_files_are_created_with_their_type() {
    let t = mounted();
    nix::unistd::mkfifo(&t.path("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    assert!(std::fs::metadata(t.path("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    nix::sys::stat::mknod(
        &t.path("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let meta = std::fs::metadata(t.path("null")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), nix::sys::stat::makedev(1, 3));
    t.finish();
}

#[test]
fn chmod_chown_and_utimens_with_now_and_omit() {
    let t = mounted();
    let path = t.path("f");
    std::fs::write(&path, b"x").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4751)).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o4751);
    let before = std::fs::metadata(&path).unwrap();
    std::os::unix::fs::chown(&path, Some(1234), Some(5678)).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    // chown clears setuid on a regular file, as the kernel expects.
    assert_eq!(meta.mode() & 0o7777, 0o751);
    assert!(meta.ctime() >= before.ctime());

    let cwd = nix::fcntl::AT_FDCWD;
    let fixed = TimeSpec::new(1_000_000_000, 123_456_789);
    nix::sys::stat::utimensat(cwd, &path, &fixed, &fixed, UtimensatFlags::FollowSymlink).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.atime(), meta.atime_nsec()),
        (1_000_000_000, 123_456_789)
    );
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_000_000_000, 123_456_789)
    );
    // UTIME_OMIT keeps atime, UTIME_NOW sets mtime to now.
    nix::sys::stat::utimensat(
        cwd,
        &path,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::UTIME_NOW,
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.atime(), 1_000_000_000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (meta.mtime() - now).abs() < 60,
        "mtime {} now {now}",
        meta.mtime()
    );
    t.finish();
}

#[test]
fn relatime_update_after_a_read_is_visible_at_once() {
    // The daemon updates atime before it replies to the read, so when
    // read(2) returns a stat shows the new atime: the kernel's cached
    // attributes (60 s by default) are dropped, not served, and no wait is
    // needed. It used to update after the reply, which raced with both the
    // caller's stat and the RELEASE of the caller's close (the update was
    // skipped once the handle was gone: the flake "timed out waiting for
    // atime to move"). Several rounds, since a race may need a few.
    let t = mounted();
    let path = t.path("read-me");
    std::fs::write(&path, b"contents").unwrap();
    let cwd = nix::fcntl::AT_FDCWD;
    for round in 0..20 {
        let old = TimeSpec::new(1_000_000_000, 0);
        nix::sys::stat::utimensat(
            cwd,
            &path,
            &old,
            &TimeSpec::UTIME_OMIT,
            UtimensatFlags::FollowSymlink,
        )
        .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().atime(), 1_000_000_000);
        // O_DIRECT: the read reaches the daemon whatever pages the kernel
        // has cached (POSIX_FADV_DONTNEED does not promise to drop them),
        // and reads served from cached pages never reach a FUSE daemon.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .unwrap();
        let mut contents = vec![0u8; 4096];
        let n = std::os::unix::fs::FileExt::read_at(&file, &mut contents, 0).unwrap();
        assert_eq!(&contents[..n], b"contents");
        // Close at once: RELEASE follows the read's reply immediately.
        drop(file);
        let atime = std::fs::metadata(&path).unwrap().atime();
        assert!(atime > 1_000_000_000, "round {round}: atime still {atime}");
    }
    t.finish();
}

#[test]
fn unlinked_open_file_stays_readable_until_closed() {
    let t = mounted();
    let path = t.path("doomed");
    std::fs::write(&path, b"still here").unwrap();
    let mut file = File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(!path.exists());
    let mut content = String::new();
    file.read_to_string(&mut content).unwrap();
    assert_eq!(content, "still here");
    assert_eq!(file.metadata().unwrap().nlink(), 0);
    drop(file);
    t.finish();
}

#[test]
fn xattrs_with_size_probing_erange_and_flags() {
    let t = mounted();
    let path = t.path("x");
    std::fs::write(&path, b"").unwrap();
    rustix::fs::setxattr(&path, "user.color", b"blue", rustix::fs::XattrFlags::CREATE).unwrap();
    assert_eq!(
        rustix::fs::setxattr(&path, "user.color", b"red", rustix::fs::XattrFlags::CREATE)
            .unwrap_err(),
        rustix::io::Errno::EXIST
    );
    assert_eq!(
        rustix::fs::setxattr(&path, "user.none", b"x", rustix::fs::XattrFlags::REPLACE)
            .unwrap_err(),
        rustix::io::Errno::NODATA
    );
    // Size 0 asks for the length.
    assert_eq!(rustix::fs::getxattr_query(&path, "user.color").unwrap(), 4);
    let mut small = [0u8; 2];
    assert_eq!(
        rustix::fs::getxattr(&path, "user.color", &mut small[..]).unwrap_err(),
        rustix::io::Errno::RANGE
    );
    let mut buf = [0u8; 16];
    let len = rustix::fs::getxattr(&path, "user.color", &mut buf[..]).unwrap();
    assert_eq!(&buf[..len], b"blue");

    rustix::fs::setxattr(
        &path,
        "user.shape",
        b"round",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let mut list = [0u8; 64];
    let len = rustix::fs::listxattr(&path, &mut list[..]).unwrap();
    let mut names: Vec<&[u8]> = list[..len]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    assert_eq!(names, [&b"user.color"[..], b"user.shape"]);
    assert_eq!(rustix::fs::listxattr_query(&path).unwrap(), len);
    let mut tiny = [0u8; 3];
    assert_eq!(
        rustix::fs::listxattr(&path, &mut tiny[..]).unwrap_err(),
        rustix::io::Errno::RANGE
    );

    rustix::fs::removexattr(&path, "user.color").unwrap();
    assert_eq!(
        rustix::fs::getxattr(&path, "user.color", &mut buf[..]).unwrap_err(),
        rustix::io::Errno::NODATA
    );
    t.finish();
}

#[test]
fn statfs_reports_block_size_and_free_space() {
    let t = mounted();
    let st = nix::sys::statvfs::statvfs(&t.mnt).unwrap();
    assert_eq!(st.block_size(), 4096);
    assert!(st.blocks() > 0 && st.blocks() * 4096 <= IMAGE_BYTES);
    assert!(st.blocks_free() > 0 && st.blocks_free() <= st.blocks());
    assert_eq!(st.name_max(), 255);
    let free_before = st.blocks_free();
    std::fs::write(t.path("fill"), vec![1u8; 4 << 20]).unwrap();
    let st = nix::sys::statvfs::statvfs(&t.mnt).unwrap();
    assert!(
        st.blocks_free() + 1024 <= free_before,
        "4 MiB of data did not use space"
    );
    t.finish();
}

#[test]
fn access_answers_existence_and_permissions() {
    let t = mounted();
    let path = t.path("a");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    nix::unistd::access(&path, AccessFlags::F_OK).unwrap();
    nix::unistd::access(&path, AccessFlags::R_OK | AccessFlags::W_OK).unwrap();
    // Root may execute only what has some execute bit.
    assert_eq!(
        nix::unistd::access(&path, AccessFlags::X_OK).unwrap_err(),
        nix::errno::Errno::EACCES
    );
    assert_eq!(
        nix::unistd::access(&t.path("missing"), AccessFlags::F_OK).unwrap_err(),
        nix::errno::Errno::ENOENT
    );
    t.finish();
}

#[test]
fn fallocate_modes_and_seek_data_hole() {
    let t = mounted();
    let path = t.path("sparse");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // Default mode extends the size.
    nix::fcntl::fallocate(&file, FallocateFlags::empty(), 0, 1 << 20).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 1 << 20);
    // KEEP_SIZE allocates beyond EOF without changing the size.
    nix::fcntl::fallocate(&file, FallocateFlags::FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 1 << 20);
    (&file).write_all(&[7u8; 8192]).unwrap();
    // Punch a hole in the middle: reads as zeros, SEEK_HOLE finds it.
    nix::fcntl::fallocate(
        &file,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        256 << 10,
        256 << 10,
    )
    .unwrap();
    let mut buf = vec![1u8; 4096];
    nix::sys::uio::pread(&file, &mut buf, 300 << 10).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    let hole = nix::unistd::lseek(&file, 0, Whence::SeekHole).unwrap();
    assert!(hole <= 256 << 10, "first hole at {hole}");
    let data = nix::unistd::lseek(&file, 256 << 10, Whence::SeekData).unwrap();
    assert!(data >= 256 << 10, "data at {data}");
    assert_eq!(
        nix::unistd::lseek(&file, 2 << 20, Whence::SeekData).unwrap_err(),
        nix::errno::Errno::ENXIO
    );
    // ZERO_RANGE zeroes written data.
    nix::fcntl::fallocate(&file, FallocateFlags::FALLOC_FL_ZERO_RANGE, 0, 4096).unwrap();
    let mut head = vec![1u8; 4096];
    nix::sys::uio::pread(&file, &mut head, 0).unwrap();
    assert!(head.iter().all(|&b| b == 0));
    // Modes the kernel does not forward, or we do not support: EOPNOTSUPP.
    assert_eq!(
        nix::fcntl::fallocate(&file, FallocateFlags::FALLOC_FL_COLLAPSE_RANGE, 0, 4096)
            .unwrap_err(),
        nix::errno::Errno::EOPNOTSUPP
    );
    drop(file);
    t.finish();
}

#[test]
fn copy_file_range_copies_aligned_and_unaligned_ranges() {
    let t = mounted();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(t.path("src"), &data).unwrap();
    let src = File::open(t.path("src")).unwrap();
    let dst = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(t.path("dst"))
        .unwrap();
    let mut off_in: u64 = 0;
    let mut off_out: u64 = 0;
    let mut left = data.len();
    while left > 0 {
        let n =
            rustix::fs::copy_file_range(&src, Some(&mut off_in), &dst, Some(&mut off_out), left)
                .unwrap();
        assert!(n > 0);
        left -= n;
    }
    assert_eq!(std::fs::read(t.path("dst")).unwrap(), data);
    // An unaligned range in the middle.
    let mut off_in: u64 = 12_345;
    let mut off_out: u64 = 777;
    let n = rustix::fs::copy_file_range(&src, Some(&mut off_in), &dst, Some(&mut off_out), 50_000)
        .unwrap();
    assert_eq!(n, 50_000);
    let copied = std::fs::read(t.path("dst")).unwrap();
    assert_eq!(&copied[777..50_777], &data[12_345..62_345]);
    assert_eq!(&copied[..777], &data[..777]);
    drop((src, dst));
    t.finish();
}

#[test]
fn unknown_ioctl_answers_enotty() {
    let t = mounted();
    std::fs::write(t.path("f"), b"x").unwrap();
    let file = File::open(t.path("f")).unwrap();
    // FS_IOC_GETFLAGS reaches the server; we have no such flags.
    assert_eq!(
        rustix::fs::ioctl_getflags(&file).unwrap_err(),
        rustix::io::Errno::NOTTY
    );
    drop(file);
    t.finish();
}

#[test]
fn fsync_fdatasync_and_directory_fsync_succeed() {
    let t = mounted();
    std::fs::create_dir(t.path("d")).unwrap();
    let mut file = File::create(t.path("d/f")).unwrap();
    file.write_all(b"durable").unwrap();
    file.sync_data().unwrap();
    file.sync_all().unwrap();
    File::open(t.path("d")).unwrap().sync_all().unwrap();
    drop(file);
    t.finish();
}

#[test]
fn setgid_directory_passes_its_group_on() {
    let t = mounted();
    std::fs::create_dir(t.path("shared")).unwrap();
    std::os::unix::fs::chown(t.path("shared"), None, Some(4242)).unwrap();
    std::fs::set_permissions(t.path("shared"), std::fs::Permissions::from_mode(0o2775)).unwrap();
    std::fs::write(t.path("shared/file"), b"").unwrap();
    std::fs::create_dir(t.path("shared/sub")).unwrap();
    assert_eq!(
        std::fs::metadata(t.path("shared/file")).unwrap().gid(),
        4242
    );
    let sub = std::fs::metadata(t.path("shared/sub")).unwrap();
    assert_eq!(sub.gid(), 4242);
    assert_ne!(
        sub.mode() & libc::S_ISGID,
        0,
        "subdirectory inherits setgid"
    );
    t.finish();
}

#[test]
fn readdir_of_many_entries_with_plus_and_offsets() {
    let t = mounted();
    std::fs::create_dir(t.path("d")).unwrap();
    for i in 0..300 {
        std::fs::write(t.path(&format!("d/entry-with-a-longish-name-{i:04}")), b"").unwrap();
    }
    let listed: std::collections::BTreeSet<String> = std::fs::read_dir(t.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed.len(), 300);
    // stat through the directory listing (readdirplus-filled attributes).
    for entry in std::fs::read_dir(t.path("d")).unwrap() {
        let entry = entry.unwrap();
        assert!(entry.metadata().unwrap().is_file());
    }
    t.finish();
}
