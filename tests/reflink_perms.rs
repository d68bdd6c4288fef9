//! Who may clone and dedupe what, as the unprivileged user `tests` (CI
//! creates it) on a mount with allow_other: no clone from a file the user
//! cannot read, no dedupe into a file the user may not write (unless owned),
//! the owner map for root only. Every test unmounts and checks the image.

#[path = "reflink_support/mod.rs"]
mod reflink;
#[path = "fuse_support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use reflink::*;
use support::{run_as_tests, tests_user, TestFs, COWDAX};

const MIB: u64 = 1 << 20;

fn mounted() -> TestFs {
    let mut t = TestFs::new(128 * MIB);
    t.mount("allow_other");
    std::fs::set_permissions(&t.mnt, std::fs::Permissions::from_mode(0o755)).expect("chmod mnt");
    t
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
}

/// `cowdax ARGS` as user `tests`: (success, stderr).
fn cowdax_as_tests(args: &[&Path]) -> (bool, String) {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.display())).collect();
    run_as_tests(&format!("'{COWDAX}' {}", quoted.join(" ")))
}

#[test]
fn clone_needs_a_readable_source_and_a_writable_destination() {
    let t = mounted();
    let (uid, gid) = tests_user();
    let home = t.path("home");
    std::fs::create_dir(&home).expect("mkdir");
    chown(&home, uid, gid);
    let secret = t.path("secret");
    let public = t.path("public");
    write_pattern_file(&secret, MIB, 60);
    write_pattern_file(&public, MIB, 61);
    set_mode(&secret, 0o600);
    set_mode(&public, 0o644);

    // Unreadable source: refused, nothing created or shared.
    let (ok, err) = cowdax_as_tests(&[Path::new("clone"), &secret, &home.join("stolen")]);
    assert!(!ok, "cloned an unreadable file");
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(shared_bytes(&secret), 0);
    // Readable source into the user's own directory: allowed.
    let (ok, err) = cowdax_as_tests(&[Path::new("clone"), &public, &home.join("mine")]);
    assert!(ok, "{err}");
    assert!(same_contents(&public, &home.join("mine")));
    // Destination the user may not write: refused.
    let target = t.path("roots-file");
    write_pattern_file(&target, MIB, 62);
    set_mode(&target, 0o644);
    let target_before = read_at(&target, 0, MIB as usize);
    let (ok, err) = cowdax_as_tests(&[Path::new("clone"), &public, &target]);
    assert!(!ok, "cloned into another user's read-only file");
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(read_at(&target, 0, MIB as usize), target_before);
    t.finish();
}

#[test]
fn dedupe_into_a_file_the_user_may_not_write_is_refused() {
    let t = mounted();
    let (uid, gid) = tests_user();
    let dir = t.path("d");
    std::fs::create_dir(&dir).expect("mkdir");
    let source = dir.join("source");
    let roots = dir.join("roots");
    let owned_readonly = dir.join("owned-readonly");
    for path in [&source, &roots, &owned_readonly] {
        write_pattern_file(path, MIB, 70);
    }
    set_mode(&source, 0o644);
    set_mode(&roots, 0o644);
    chown(&owned_readonly, uid, gid);
    set_mode(&owned_readonly, 0o444);

    // `roots` is readable but neither writable nor owned by `tests`:
    // FIDEDUPERANGE rules say EPERM.
    let (ok, err) = cowdax_as_tests(&[Path::new("dedupe"), &source, &roots]);
    assert!(!ok, "deduped into another user's file");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(shared_bytes(&roots), 0);

    // A file the user owns may be a destination even when read-only.
    let (ok, err) = cowdax_as_tests(&[Path::new("dedupe"), &source, &owned_readonly]);
    assert!(ok, "{err}");
    assert_eq!(shared_bytes(&owned_readonly), MIB);
    assert!(same_contents(&source, &owned_readonly));
    t.finish();
}

#[test]
fn the_owner_map_is_for_root_only() {
    let t = mounted();
    write_pattern_file(&t.path("f"), MIB, 80);
    let (ok, err) = cowdax_as_tests(&[Path::new("fsmap"), &t.mnt]);
    assert!(!ok, "fsmap worked for an unprivileged user");
    assert!(err.contains("root only"), "{err}");
    // df and extents are for everyone.
    let (ok, err) = cowdax_as_tests(&[Path::new("df"), &t.mnt]);
    assert!(ok, "{err}");
    let (ok, err) = cowdax_as_tests(&[Path::new("extents"), &t.path("f")]);
    assert!(ok, "{err}");
    t.finish();
}
