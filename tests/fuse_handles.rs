//! Persistent file handles: name_to_handle_at / open_by_handle_at on files
//! and directories of a mount, after the kernel has dropped the inodes from
//! its caches and after a remount; ESTALE once the inode is deleted.

mod fuse_support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use fuse_support::*;

/// The two syscalls through ctypes (Rust would need `unsafe` for them).
/// `encode PATH…` prints one handle per line (TYPE:HEX); `open MNT HANDLE`
/// opens it and prints "file INO CONTENTS" or "dir INO PATH NAMES", or
/// "errno NAME". CAP_DAC_READ_SEARCH is needed: the tests run as root.
const HANDLES_PY: &str = r#"
import ctypes, errno, os, stat, sys
libc = ctypes.CDLL(None, use_errno=True)
MAX = 128
class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX)]
AT_FDCWD = -100
if sys.argv[1] == "encode":
    for path in sys.argv[2:]:
        fh = FileHandle(handle_bytes=MAX)
        mount_id = ctypes.c_int()
        if libc.name_to_handle_at(AT_FDCWD, path.encode(), ctypes.byref(fh),
                                  ctypes.byref(mount_id), 0) != 0:
            e = ctypes.get_errno()
            sys.exit("name_to_handle_at %s: %s" % (path, os.strerror(e)))
        print("%d:%s" % (fh.handle_type, bytes(fh.f_handle[:fh.handle_bytes]).hex()))
else:
    mnt, handle = sys.argv[2], sys.argv[3]
    kind, data = handle.split(":")
    data = bytes.fromhex(data)
    fh = FileHandle(handle_bytes=len(data), handle_type=int(kind))
    ctypes.memmove(fh.f_handle, data, len(data))
    mount_fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    fd = libc.open_by_handle_at(mount_fd, ctypes.byref(fh), os.O_RDONLY)
    e = ctypes.get_errno()
    os.close(mount_fd)
    if fd < 0:
        print("errno", errno.errorcode.get(e, str(e)))
        sys.exit(0)
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        names = ",".join(sorted(os.listdir(fd)))
        print("dir", st.st_ino, os.readlink("/proc/self/fd/%d" % fd), names)
    else:
        print("file", st.st_ino, os.read(fd, 100).decode())
    os.close(fd)
"#;

fn python(args: &[&str]) -> String {
    let output = run_ok(Command::new("python3").arg("-c").arg(HANDLES_PY).args(args));
    String::from_utf8(output.stdout).unwrap()
}

fn encode(paths: &[&Path]) -> Vec<String> {
    let mut args = vec!["encode"];
    let strs: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(strs.iter().map(String::as_str));
    python(&args).lines().map(str::to_owned).collect()
}

fn open_handle(t: &TestFs, handle: &str) -> String {
    let mnt = t.mnt.display().to_string();
    python(&["open", &mnt, handle]).trim().to_owned()
}

/// Drops clean dentries and inodes (2) or those and the page cache (3), so
/// the kernel forgets the inodes nobody holds.
fn drop_caches(what: &str) {
    std::fs::write("/proc/sys/vm/drop_caches", what).expect("write drop_caches (root)");
}

#[test]
fn file_handles_survive_cache_drops_and_remounts_and_go_stale_on_delete() {
    let mut t = TestFs::new(128 << 20);
    t.mount("allow_other");
    let dir = t.path("d");
    let sub = dir.join("sub");
    let file = dir.join("f");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(&file, b"persistent").unwrap();
    let inos: Vec<u64> = [&file, &dir, &sub]
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().ino())
        .collect();
    let handles = encode(&[&file, &dir, &sub]);
    assert_eq!(handles.len(), 3);
    let expect_file = format!("file {} persistent", inos[0]);
    // A directory comes back connected: its path (found through lookups
    // of "..") and its entries.
    let expect_dir = format!("dir {} {} f,sub", inos[1], dir.display());
    let expect_sub = format!("dir {} {} ", inos[2], sub.display());
    let check = |t: &TestFs, when: &str| {
        assert_eq!(open_handle(t, &handles[0]), expect_file, "file, {when}");
        assert_eq!(open_handle(t, &handles[1]), expect_dir, "dir, {when}");
        assert_eq!(
            open_handle(t, &handles[2]),
            expect_sub.trim(),
            "subdir, {when}"
        );
    };
    check(&t, "inodes cached");
    drop_caches("2");
    check(&t, "after drop_caches 2");
    drop_caches("3");
    check(&t, "after drop_caches 3");
    t.unmount();
    t.mount("allow_other");
    check(&t, "after a remount");

    // Deleted: the handle is stale, in this mount and the next.
    std::fs::remove_file(&file).unwrap();
    drop_caches("2");
    assert_eq!(open_handle(&t, &handles[0]), "errno ESTALE");
    std::fs::remove_dir(&sub).unwrap();
    assert_eq!(open_handle(&t, &handles[2]), "errno ESTALE");
    // A new file may take the name, never the handle.
    std::fs::write(&file, b"newcomer").unwrap();
    t.unmount();
    t.mount("allow_other");
    assert_eq!(open_handle(&t, &handles[0]), "errno ESTALE");
    assert_eq!(open_handle(&t, &handles[2]), "errno ESTALE");
    assert_eq!(
        open_handle(&t, &handles[1]),
        format!("dir {} {} f", inos[1], dir.display())
    );
    t.finish();
}
