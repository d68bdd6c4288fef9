//! Permission checks as the unprivileged user `tests` (CI creates it) on a
//! mount with allow_other: the kernel enforces mode bits and POSIX ACLs
//! (default_permissions + FUSE_POSIX_ACL), and setuid/setgid are killed on
//! write and chown as on local filesystems.

mod fuse_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use cowdax::fuse::acl::{self, Acl, AclEntry};
use fuse_support::*;

fn set_acl(path: &std::path::Path, name: &[u8], entries: &[(u16, u16, u32)]) {
    let acl = Acl {
        entries: entries
            .iter()
            .map(|&(tag, perm, id)| AclEntry { tag, perm, id })
            .collect(),
    };
    let name = std::str::from_utf8(name).unwrap();
    rustix::fs::setxattr(path, name, &acl.to_bytes(), rustix::fs::XattrFlags::empty())
        .expect("set ACL xattr");
}

const IMAGE_BYTES: u64 = 128 << 20;

fn mounted() -> TestFs {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("allow_other");
    std::fs::set_permissions(&t.mnt, std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

fn quote(path: &std::path::Path) -> String {
    format!("'{}'", path.display())
}

#[test]
fn mode_bits_are_enforced_for_other_users() {
    let t = mounted();
    let (uid, gid) = tests_user();
    std::fs::write(t.path("root-644"), b"public").unwrap();
    std::fs::set_permissions(t.path("root-644"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(t.path("root-600"), b"secret").unwrap();
    std::fs::set_permissions(t.path("root-600"), std::fs::Permissions::from_mode(0o600)).unwrap();

    let (ok, _) = run_as_tests(&format!("cat {} >/dev/null", quote(&t.path("root-644"))));
    assert!(ok, "others may read a 0644 file");
    let (ok, err) = run_as_tests(&format!("cat {} >/dev/null", quote(&t.path("root-600"))));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, err) = run_as_tests(&format!("echo x >> {}", quote(&t.path("root-644"))));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, err) = run_as_tests(&format!("mkdir {}", quote(&t.path("not-mine"))));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, err) = run_as_tests(&format!("chmod 777 {}", quote(&t.path("root-644"))));
    assert!(!ok && err.contains("not permitted"), "{err}");

    // A directory the user owns: creating works and the files are theirs.
    std::fs::create_dir(t.path("home")).unwrap();
    std::os::unix::fs::chown(t.path("home"), Some(uid), Some(gid)).unwrap();
    let (ok, err) = run_as_tests(&format!(
        "umask 022 && echo mine > {} && mkdir {}",
        quote(&t.path("home/file")),
        quote(&t.path("home/dir"))
    ));
    assert!(ok, "{err}");
    let meta = std::fs::metadata(t.path("home/file")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    assert_eq!(meta.mode() & 0o777, 0o644, "umask applied");
    assert_eq!(
        std::fs::metadata(t.path("home/dir")).unwrap().mode() & 0o777,
        0o755
    );
    t.finish();
}

#[test]
fn sticky_directory_protects_other_users_files() {
    let t = mounted();
    std::fs::create_dir(t.path("tmp")).unwrap();
    std::fs::set_permissions(t.path("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(t.path("tmp/roots"), b"").unwrap();
    let (ok, err) = run_as_tests(&format!("rm -f {}", quote(&t.path("tmp/roots"))));
    assert!(
        !ok,
        "removed another user's file from a sticky directory: {err}"
    );
    let (ok, err) = run_as_tests(&format!(
        "touch {f} && rm {f}",
        f = quote(&t.path("tmp/own"))
    ));
    assert!(ok, "{err}");
    t.finish();
}

#[test]
fn write_by_non_root_clears_setuid_and_setgid() {
    let t = mounted();
    let (uid, gid) = tests_user();
    let path = t.path("suid");
    std::fs::write(&path, b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o6775)).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o6775);
    let (ok, err) = run_as_tests(&format!("echo more >> {}", quote(&path)));
    assert!(ok, "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o775);
    t.finish();
}

#[test]
fn posix_acl_grants_and_denies_access() {
    let t = mounted();
    let (uid, _) = tests_user();
    let path = t.path("acl");
    std::fs::write(&path, b"acl data").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, _) = run_as_tests(&format!("cat {} >/dev/null", quote(&path)));
    assert!(!ok, "0600 root file readable before the ACL");
    // What `setfacl -m u:UID:r` writes (built here so the test needs no
    // acl package): owner rw-, named user r--, group ---, mask r--, other ---.
    set_acl(
        &path,
        acl::ACCESS_XATTR,
        &[
            (acl::TAG_USER_OBJ, 6, 0),
            (acl::TAG_USER, 4, uid),
            (acl::TAG_GROUP_OBJ, 0, 0),
            (acl::TAG_MASK, 4, 0),
            (acl::TAG_OTHER, 0, 0),
        ],
    );
    // The group bits now show the ACL mask.
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
    let (ok, err) = run_as_tests(&format!("cat {} >/dev/null", quote(&path)));
    assert!(ok, "ACL entry did not grant read: {err}");
    // chmod rewrites the mask: the named entry loses its effect.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, _) = run_as_tests(&format!("cat {} >/dev/null", quote(&path)));
    assert!(!ok, "mask 0 must deny the named user");

    // Default ACLs are inherited by new files.
    std::fs::create_dir(t.path("inherit")).unwrap();
    // `setfacl -d -m u:UID:rw`: a default ACL on the directory.
    set_acl(
        &t.path("inherit"),
        acl::DEFAULT_XATTR,
        &[
            (acl::TAG_USER_OBJ, 7, 0),
            (acl::TAG_USER, 6, uid),
            (acl::TAG_GROUP_OBJ, 5, 0),
            (acl::TAG_MASK, 7, 0),
            (acl::TAG_OTHER, 5, 0),
        ],
    );
    std::fs::write(t.path("inherit/child"), b"x").unwrap();
    let (ok, err) = run_as_tests(&format!("echo y >> {}", quote(&t.path("inherit/child"))));
    assert!(ok, "inherited ACL did not grant write: {err}");
    t.finish();
}
