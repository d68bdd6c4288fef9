//! Unmodified tools on a cowdax mount through the LD_PRELOAD shim
//! (libcowdax_preload.so): `cp --reflink=always`, `xfs_io -c reflink /
//! dedupe / fiemap`, `filefrag -v` and Debian's `duperemove -dr`.
//! Needs coreutils, xfsprogs, e2fsprogs and duperemove (CI installs them).
//! Every test unmounts and checks the image.

#[path = "reflink_support/mod.rs"]
mod reflink;
#[path = "fuse_support/mod.rs"]
mod support;

use reflink::*;
use support::TestFs;

const MIB: u64 = 1 << 20;

#[test]
fn cp_reflink_always_works_through_the_shim_and_fails_without_it() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let src = t.path("src");
    write_pattern_file(&src, 8 * MIB, 20);
    let without = std::process::Command::new("cp")
        .arg("--reflink=always")
        .arg(&src)
        .arg(t.path("no-shim"))
        .output()
        .expect("run cp");
    assert!(!without.status.success(), "the kernel forwarded FICLONE?");
    let before = usage(&t.mnt);
    run_checked(
        with_shim("cp")
            .arg("--reflink=always")
            .arg(&src)
            .arg(t.path("copy")),
    );
    assert!(same_contents(&src, &t.path("copy")));
    assert_eq!(usage(&t.mnt).physical_bytes, before.physical_bytes);
    assert_eq!(shared_bytes(&t.path("copy")), 8 * MIB);
    // A source on another filesystem: EXDEV, as between two XFS mounts.
    let outside = t.dir.path().join("outside");
    std::fs::write(&outside, b"not on cowdax").expect("write outside");
    let out = with_shim("cp")
        .arg("--reflink=always")
        .arg(&outside)
        .arg(t.path("from-outside"))
        .output()
        .expect("run cp");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid cross-device link"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.finish();
}

#[test]
fn xfs_io_reflink_dedupe_and_fiemap_work_through_the_shim() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let a = t.path("a");
    let b = t.path("b");
    let c = t.path("c");
    write_pattern_file(&a, 4 * MIB, 30);
    write_pattern_file(&b, 2 * MIB, 31);
    write_pattern_file(&c, 4 * MIB, 30);

    // reflink 1 MiB of a at offset 0 over b at 1 MiB.
    let out = run_checked(with_shim("xfs_io").args([
        "-c",
        &format!("reflink {} 0 1m 1m", path_str(&a)),
        path_str(&b),
    ]));
    assert!(out.contains("linked 1048576/1048576 bytes"), "{out}");
    assert_eq!(read_at(&b, MIB, MIB as usize), read_at(&a, 0, MIB as usize));

    // dedupe c's first 2 MiB against a's (identical contents).
    let before = usage(&t.mnt);
    let out = run_checked(with_shim("xfs_io").args([
        "-c",
        &format!("dedupe {} 0 0 2m", path_str(&a)),
        path_str(&c),
    ]));
    assert!(out.contains("deduped 2097152/2097152 bytes"), "{out}");
    assert_eq!(
        before.physical_bytes - usage(&t.mnt).physical_bytes,
        2 * MIB
    );

    // fiemap lists c's extents: the deduped first 2 MiB (4096 sectors)
    // shared (0x2000), the rest not, the last one flagged LAST (0x1).
    let out = run_checked(with_shim("xfs_io").args(["-c", "fiemap -v", path_str(&c)]));
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("]:")).collect();
    assert!(rows.len() >= 2, "{out}");
    assert!(
        rows[0].contains("[0..4095]:") && rows[0].ends_with("0x2000"),
        "{out}"
    );
    assert!(rows[rows.len() - 1].ends_with("0x1"), "{out}");
    t.finish();
}

#[test]
fn filefrag_lists_shared_extents_through_the_shim() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let a = t.path("a");
    write_pattern_file(&a, 4 * MIB, 40);
    tool_ok(&["clone", path_str(&a), path_str(&t.path("b"))]);
    let out = run_checked(with_shim("filefrag").args(["-v", path_str(&a)]));
    assert!(out.contains("shared"), "{out}");
    assert!(out.contains("last"), "{out}");
    assert!(
        out.contains("extent found") || out.contains("extents found"),
        "{out}"
    );
    // Without the shim, FIEMAP is unsupported on FUSE.
    let plain = std::process::Command::new("filefrag")
        .args(["-v", path_str(&a)])
        .output()
        .expect("run filefrag");
    let text = String::from_utf8_lossy(&plain.stdout).into_owned()
        + &String::from_utf8_lossy(&plain.stderr);
    assert!(!text.contains("shared"), "{text}");
    t.finish();
}

#[test]
fn duperemove_dedupes_a_cowdax_directory_through_the_shim() {
    let mut t = TestFs::new(256 * MIB);
    t.mount("");
    let dir = t.path("data");
    std::fs::create_dir(&dir).expect("mkdir");
    for name in ["one", "two", "three"] {
        write_pattern_file(&dir.join(name), 4 * MIB, 50);
    }
    write_pattern_file(&dir.join("other"), 4 * MIB, 51);
    let before = usage(&t.mnt);
    let hashfile = t.dir.path().join("dupe.hash");
    let out = run_checked(with_shim("duperemove").args([
        "-dr",
        "--hashfile",
        path_str(&hashfile),
        path_str(&dir),
    ]));
    let saved = before.physical_bytes - usage(&t.mnt).physical_bytes;
    assert_eq!(saved, 8 * MIB, "duperemove output:\n{out}");
    for name in ["two", "three"] {
        assert!(same_contents(&dir.join("one"), &dir.join(name)));
    }
    assert_eq!(shared_bytes(&dir.join("other")), 0);
    t.finish();
}

/// Calls the four standard ioctls with arguments a careless or hostile
/// caller might pass, from Python (ctypes), with the shim preloaded.
const BAD_ARGUMENTS_SCRIPT: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
src = os.open(sys.argv[1], os.O_RDONLY)
dst = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT, 0o644)
def call(name, fd, cmd, arg):
    ret = libc.ioctl(fd, cmd, arg)
    print(name, ret, ctypes.get_errno() if ret < 0 else 0, flush=True)
call("ficlonerange-bad-pointer", dst, 0x4020940d, 1)
call("fideduperange-bad-pointer", src, 0xc0189436, 8)
page = libc.mmap(None, 4096, 3, 0x22, -1, 0)
header = (0).to_bytes(8, "little") + (2**64 - 1).to_bytes(8, "little") + bytes(8) + (4).to_bytes(4, "little") + bytes(4)
ctypes.memmove(page, header, len(header))
libc.mprotect(page, 4096, 1)
call("fiemap-read-only-array", src, 0xc020660b, page)
call("ficlone-high-bits", dst, 0x40049409, (0xdead << 32) | src)
"#;

#[test]
fn shim_answers_bad_ioctl_arguments_with_errno_as_the_kernel_does() {
    let mut t = TestFs::new(64 * MIB);
    t.mount("");
    let a = t.path("a");
    write_pattern_file(&a, MIB, 70);
    let out = with_shim("python3")
        .args([
            "-c",
            BAD_ARGUMENTS_SCRIPT,
            path_str(&a),
            path_str(&t.path("b")),
        ])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // EFAULT (14) for memory the caller cannot read or write, not SIGSEGV.
    assert!(
        stdout.contains("ficlonerange-bad-pointer -1 14"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fideduperange-bad-pointer -1 14"),
        "{stdout}"
    );
    assert!(stdout.contains("fiemap-read-only-array -1 14"), "{stdout}");
    // The kernel reads FICLONE's descriptor as an unsigned int: upper bits
    // of the argument do not matter.
    assert!(stdout.contains("ficlone-high-bits 0 0"), "{stdout}");
    assert!(same_contents(&a, &t.path("b")));
    assert_eq!(shared_bytes(&t.path("b")), MIB);
    t.finish();
}
