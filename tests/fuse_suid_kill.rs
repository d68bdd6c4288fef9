//! setuid, setgid and file capabilities after a change to a file, as the
//! kernel's VFS drops them on local filesystems (xfstests generic/355,
//! generic/375, generic/683-685, generic/688 and the reflink ones), on a
//! real mount with allow_other and callers that are not root:
//!
//! * a data change (write, O_DIRECT write, truncate, fallocate in every
//!   mode, copy_file_range and clone into the file) by a caller without
//!   CAP_FSETID drops setuid, and setgid when the file is group-executable
//!   or the caller is not in the file's group; root keeps both;
//! * chown drops setuid always and setgid by the same group rule;
//! * setting an access ACL drops setgid for a caller outside the group;
//! * any data change removes `security.capability`, root's too.
//!
//! The mode is read with a statx that asks for STATX_MODE only, as
//! `stat -c %A` does: the kernel then answers from its cache unless the
//! daemon dropped it, so a stale cached mode fails the test too.
//!
//! Callers switch credentials per thread (Linux credentials are per
//! thread; rustix's `set_thread_*` calls change only the calling thread's)
//! or run a child process as user `tests`. Every test ends with a clean
//! fsck of its image.

mod fuse_support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cowdax::fuse::acl::{self, Acl, AclEntry};
use fuse_support::*;

const IMAGE_BYTES: u64 = 128 << 20;
const KIB64: u64 = 64 << 10;

/// Who: root (`None`) or `uid:gid`.
type User = Option<(u32, u32)>;

/// A change of `dst` (from `src`, where it copies) made by a user.
type ChangeBy = dyn Fn(User, &Path, &Path);

fn mounted() -> TestFs {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("allow_other");
    std::fs::set_permissions(&t.mnt, std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// The mode bits as `stat -c %a` sees them: a statx for STATX_MODE only.
fn mode_of(path: &Path) -> u32 {
    let st = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::MODE,
    )
    .expect("statx");
    u32::from(st.stx_mode) & 0o7777
}

/// Every case of a test runs; the mismatches are reported together.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    fn mode(&mut self, path: &Path, want: u32, case: &str) {
        let got = mode_of(path);
        if got != want {
            self.0.push(format!("{case}: mode {got:o}, want {want:o}"));
        }
    }

    fn check(&mut self, ok: bool, case: &str) {
        if !ok {
            self.0.push(case.to_string());
        }
    }

    fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} case(s):\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    assert_eq!(mode_of(path), mode);
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// A 192 KiB file of `uid:gid` and `mode`, written by root.
fn file(t: &TestFs, name: &str, (uid, gid): (u32, u32), mode: u32) -> PathBuf {
    let path = t.path(name);
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, vec![0x58u8; 192 << 10]).unwrap();
    chown(&path, uid, gid);
    chmod(&path, mode);
    path
}

/// Runs `program args` as `uid:gid` with no supplementary groups (std
/// drops them when root switches users); panics on failure.
fn run_as(uid: u32, gid: u32, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} as {uid}:{gid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn xfs_io_as(user: User, flags: &[&str], command: &str, path: &Path) {
    let mut args: Vec<&str> = flags.to_vec();
    let path = path.to_str().unwrap();
    args.extend(["-c", command, path]);
    match user {
        Some((uid, gid)) => run_as(uid, gid, "xfs_io", &args),
        None => run_as(0, 0, "xfs_io", &args),
    }
}

/// Runs `f` on a thread whose credentials are `uid:gid` and the
/// supplementary `groups` (so it lacks CAP_FSETID when `uid` is not 0).
fn on_thread_as<T: Send + 'static>(
    (uid, gid): (u32, u32),
    groups: &[u32],
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let groups = groups.to_vec();
    std::thread::spawn(move || {
        use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
        use rustix::thread::{Gid, Uid};
        let groups: Vec<Gid> = groups.into_iter().map(Gid::from_raw).collect();
        set_thread_groups(&groups).expect("setgroups");
        let gid = Gid::from_raw(gid);
        set_thread_res_gid(gid, gid, gid).expect("setresgid");
        let uid = Uid::from_raw(uid);
        set_thread_res_uid(uid, uid, uid).expect("setresuid");
        f()
    })
    .join()
    .expect("credential thread")
}

/// generic/355: an O_DIRECT write by the owner (in the file's group)
/// drops setuid, and setgid when group-executable; the kernel's cached
/// mode must show it at once. A buffered write too.
#[test]
fn o_direct_write_by_the_owner_clears_setuid_and_setgid_at_once() {
    let t = mounted();
    let tests = tests_user();
    let mut bad = Mismatches::default();
    for (flags, what) in [(&["-d"][..], "O_DIRECT"), (&[][..], "buffered")] {
        for (before, after) in [
            (0o6644, 0o2644),
            (0o6744, 0o2744),
            (0o6654, 0o654),
            (0o6754, 0o754),
        ] {
            let path = file(&t, "direct", tests, before);
            xfs_io_as(Some(tests), flags, "pwrite 0 4k", &path);
            bad.mode(
                &path,
                after,
                &format!("{what} write by the owner into {before:o}"),
            );
        }
    }
    bad.assert_none();
    t.finish();
}

/// The modes of generic/683 (fallocate), 684 (punch hole), 685 (zero
/// range), and truncate: before → after for a caller outside the file's
/// group (the 6.2+ setgid rule: setgid goes even without group execute).
const OUTSIDE_THE_GROUP: [(u32, u32); 8] = [
    (0o6666, 0o666),
    (0o6676, 0o676),
    (0o6766, 0o766),
    (0o6777, 0o777),
    (0o2666, 0o666),
    (0o2676, 0o676),
    (0o2766, 0o766),
    (0o2777, 0o777),
];

const DATA_COMMANDS: [&str; 4] = [
    "falloc 64k 64k",
    "fpunch 64k 64k",
    "fzero 64k 64k",
    "truncate 100k",
];

#[test]
fn fallocate_punch_zero_and_truncate_by_an_unprivileged_user_clear_setuid_and_setgid() {
    let t = mounted();
    let tests = tests_user();
    let mut bad = Mismatches::default();
    for command in DATA_COMMANDS {
        // Root's file: `tests` is outside its group.
        for (before, after) in OUTSIDE_THE_GROUP {
            let path = file(&t, "f", (0, 0), before);
            xfs_io_as(Some(tests), &[], command, &path);
            bad.mode(&path, after, &format!("{command} by tests on {before:o}"));
        }
        // In the file's group: a setgid without group execute stays.
        let path = file(&t, "f", (0, tests.1), 0o6666);
        xfs_io_as(Some(tests), &[], command, &path);
        bad.mode(&path, 0o2666, &format!("{command} by a group member"));
        // Root (CAP_FSETID) keeps both.
        for before in [0o6666, 0o6777] {
            let path = file(&t, "f", (0, 0), before);
            xfs_io_as(None, &[], command, &path);
            bad.mode(&path, before, &format!("{command} by root on {before:o}"));
        }
    }
    bad.assert_none();
    t.finish();
}

fn clone_range_as(user: User, src: &Path, dst: &Path) {
    let (uid, gid) = user.unwrap_or((0, 0));
    run_as(
        uid,
        gid,
        COWDAX,
        &[
            "clone",
            "--src-offset",
            "0",
            "--dst-offset",
            "0",
            "--length",
            "64K",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
    );
}

fn copy_range_as(user: User, src: &Path, dst: &Path) {
    let command = format!("copy_range -s 0 -d 0 -l 65536 {}", src.to_str().unwrap());
    xfs_io_as(user, &[], &command, dst);
}

/// generic/673-style: cloning or copying into a file is a data change of
/// the destination.
#[test]
fn clone_and_copy_file_range_into_a_file_clear_setuid_and_setgid() {
    let t = mounted();
    let tests = tests_user();
    let src = file(&t, "src", (0, 0), 0o644);
    std::fs::write(&src, vec![0x57u8; KIB64 as usize]).unwrap();
    let mut bad = Mismatches::default();
    for (what, into) in [
        ("clone", &clone_range_as as &ChangeBy),
        ("copy_file_range", &copy_range_as),
    ] {
        for (before, after) in OUTSIDE_THE_GROUP {
            let dst = file(&t, "dst", (0, 0), before);
            into(Some(tests), &src, &dst);
            bad.mode(&dst, after, &format!("{what} by tests into {before:o}"));
            assert_eq!(std::fs::read(&dst).unwrap()[..16], [0x57u8; 16]);
        }
        let dst = file(&t, "dst", (0, tests.1), 0o6666);
        into(Some(tests), &src, &dst);
        bad.mode(&dst, 0o2666, &format!("{what} by a group member"));
        let dst = file(&t, "dst", (0, 0), 0o6666);
        into(None, &src, &dst);
        bad.mode(&dst, 0o6666, &format!("{what} by root"));
    }
    bad.assert_none();
    t.finish();
}

/// chgrp by the owner, to its own group, from a group it is not in: the
/// old group's setgid goes even without group execute (chown_common →
/// setattr_should_drop_sgid); setuid always goes.
#[test]
fn chown_by_the_owner_outside_the_group_clears_setgid() {
    let t = mounted();
    let (uid, gid) = tests_user();
    let mut bad = Mismatches::default();
    for (before, after) in [(0o2745, 0o745), (0o6745, 0o745), (0o2775, 0o775)] {
        let path = file(&t, "chgrp", (uid, 0), before);
        let target = path.clone();
        on_thread_as((uid, gid), &[], move || {
            std::os::unix::fs::chown(&target, None, Some(gid)).expect("chgrp as owner")
        });
        bad.mode(&path, after, &format!("chgrp from outside on {before:o}"));
    }
    // From inside the old group: a setgid without group execute stays.
    let path = file(&t, "chgrp", (uid, gid), 0o6745);
    let target = path.clone();
    on_thread_as((uid, gid), &[], move || {
        std::os::unix::fs::chown(&target, None, Some(gid)).expect("chgrp as owner")
    });
    bad.mode(&path, 0o2745, "chgrp from inside on 6745");
    bad.assert_none();
    t.finish();
}

/// What `setfacl -m u::rwx,g::rwx,o::rwx` writes.
fn set_rwx_acl(path: &Path) -> rustix::io::Result<()> {
    let acl = Acl {
        entries: [
            (acl::TAG_USER_OBJ, 7),
            (acl::TAG_GROUP_OBJ, 7),
            (acl::TAG_OTHER, 7),
        ]
        .iter()
        .map(|&(tag, perm)| AclEntry { tag, perm, id: 0 })
        .collect(),
    };
    rustix::fs::setxattr(
        path,
        std::str::from_utf8(acl::ACCESS_XATTR).unwrap(),
        &acl.to_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
}

/// generic/375: the owner sets an access ACL; setgid stays when the owner
/// is in the file's group and goes when not (regular files and
/// directories alike).
#[test]
fn access_acl_set_by_an_owner_outside_the_group_clears_setgid() {
    let t = mounted();
    let (uid, gid) = tests_user();
    let mut bad = Mismatches::default();
    for dir in [false, true] {
        let path = t.path(if dir { "acl-dir" } else { "acl-file" });
        if dir {
            std::fs::create_dir(&path).unwrap();
        } else {
            std::fs::write(&path, b"").unwrap();
        }
        // The file's group is root's: `tests` is outside it.
        chown(&path, uid, 0);
        for (caller_gid, after) in [(0, 0o2777), (gid, 0o777)] {
            chmod(&path, 0o2755);
            let target = path.clone();
            on_thread_as((uid, caller_gid), &[], move || set_rwx_acl(&target))
                .expect("setfacl as owner");
            let case = format!("ACL set by the owner with gid {caller_gid} (directory: {dir})");
            bad.mode(&path, after, &case);
        }
    }
    bad.assert_none();
    t.finish();
}

/// Membership through a supplementary group counts like the primary gid
/// (the daemon reads the caller's groups from /proc): a setgid bit without
/// group execute stays after fallocate and an ACL set by such a member.
#[test]
fn a_supplementary_group_member_keeps_a_non_executable_setgid() {
    let t = mounted();
    let tests = tests_user();
    let mut bad = Mismatches::default();
    // Root's file, group root; the caller is `tests` with root as a
    // supplementary group.
    let path = file(&t, "falloc", (0, 0), 0o6666);
    let target = path.clone();
    on_thread_as(tests, &[0], move || {
        let file = std::fs::OpenOptions::new().write(true).open(&target)?;
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), KIB64, KIB64)?;
        Ok::<(), std::io::Error>(())
    })
    .expect("fallocate as a supplementary member");
    bad.mode(&path, 0o2666, "fallocate by a supplementary member");
    let path = file(&t, "acl", (tests.0, 0), 0o2755);
    let target = path.clone();
    on_thread_as(tests, &[0], move || set_rwx_acl(&target)).expect("setfacl as owner");
    bad.mode(&path, 0o2777, "ACL set by a supplementary member");
    // The same caller without the supplementary group loses the bit.
    let path = file(&t, "falloc", (0, 0), 0o2666);
    let target = path.clone();
    on_thread_as(tests, &[], move || {
        let file = std::fs::OpenOptions::new().write(true).open(&target)?;
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), KIB64, KIB64)?;
        Ok::<(), std::io::Error>(())
    })
    .expect("fallocate outside the group");
    bad.mode(&path, 0o666, "fallocate from outside the group");
    bad.assert_none();
    t.finish();
}

/// A valid VFS_CAP_REVISION_2 `security.capability` value granting
/// CAP_NET_RAW (bit 13), as setcap writes it.
fn cap_net_raw() -> Vec<u8> {
    let mut value = Vec::new();
    value.extend_from_slice(&0x0200_0000u32.to_le_bytes());
    value.extend_from_slice(&(1u32 << 13).to_le_bytes());
    value.extend_from_slice(&[0u8; 12]);
    value
}

fn has_capability_xattr(path: &Path) -> bool {
    let mut buf = [0u8; 64];
    rustix::fs::getxattr(path, "security.capability", &mut buf).is_ok()
}

/// Any data change removes file capabilities, whoever makes it: a clone
/// or copy_file_range into the file, fallocate, an O_DIRECT write, by root
/// and by `tests`.
#[test]
fn clone_copy_range_fallocate_and_writes_remove_file_capabilities() {
    let t = mounted();
    let tests = tests_user();
    let src = file(&t, "src", (0, 0), 0o644);
    let direct_write =
        |user: User, _: &Path, dst: &Path| xfs_io_as(user, &["-d"], "pwrite 0 4k", dst);
    let fallocate = |user: User, _: &Path, dst: &Path| xfs_io_as(user, &[], "falloc 256k 64k", dst);
    let changes: [(&str, &ChangeBy); 4] = [
        ("clone", &clone_range_as),
        ("copy_file_range", &copy_range_as),
        ("fallocate", &fallocate),
        ("O_DIRECT write", &direct_write),
    ];
    let mut bad = Mismatches::default();
    for (what, change) in changes {
        for user in [None, Some(tests)] {
            let dst = file(&t, "capped", (0, 0), 0o666);
            rustix::fs::setxattr(
                &dst,
                "security.capability",
                &cap_net_raw(),
                rustix::fs::XattrFlags::empty(),
            )
            .expect("set security.capability");
            assert!(has_capability_xattr(&dst));
            change(user, &src, &dst);
            let case = format!("{what} by {user:?} left security.capability in place");
            bad.check(!has_capability_xattr(&dst), &case);
        }
    }
    bad.assert_none();
    t.finish();
}
