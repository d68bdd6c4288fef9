//! The system-wide shim: `cowdax shim enable` puts libcowdax_preload.so in
//! /etc/ld.so.preload, so that `cp --reflink=always` run by `su` (setuid:
//! glibc drops LD_PRELOAD for it and its children) still reflinks on a
//! cowdax mount; after `cowdax shim disable` the same command fails with
//! "Operation not supported".
//!
//! The machine's real /etc/ld.so.preload is never edited: every step that
//! needs one runs in a private mount namespace (`unshare --mount`) with a
//! copy of /etc bind-mounted over /etc, so `cowdax shim` and `su` see the
//! copy and other processes on the machine see nothing. As a second line of
//! defence the real file's bytes are saved first and a guard restores them
//! on drop (a failed assertion unwinds through it) should they differ.
//!
//! The only test of this file: nothing else runs while it does.

#[path = "reflink_support/mod.rs"]
mod reflink;
#[path = "fuse_support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use reflink::*;
use support::{TestFs, COWDAX};

const MIB: u64 = 1 << 20;
const REAL_PRELOAD: &str = "/etc/ld.so.preload";

/// Restores /etc/ld.so.preload to the bytes it had (or its absence) when
/// dropped, if it changed.
struct PreloadGuard {
    saved: Option<Vec<u8>>,
}

impl PreloadGuard {
    fn save() -> PreloadGuard {
        let saved = match std::fs::read(REAL_PRELOAD) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("read {REAL_PRELOAD}: {e}"),
        };
        PreloadGuard { saved }
    }

    fn current() -> Option<Vec<u8>> {
        std::fs::read(REAL_PRELOAD).ok()
    }
}

impl Drop for PreloadGuard {
    fn drop(&mut self) {
        if Self::current() == self.saved {
            return;
        }
        match &self.saved {
            Some(bytes) => {
                let _ = std::fs::write(REAL_PRELOAD, bytes);
            }
            None => {
                let _ = std::fs::remove_file(REAL_PRELOAD);
            }
        }
    }
}

/// Runs `script` with sh in a private mount namespace where `etc_copy` is
/// /etc. Returns (exit success, stdout, stderr).
fn in_namespace(etc_copy: &Path, script: &str) -> (bool, String, String) {
    let full = format!(
        "set -u\nmount --bind '{}' /etc || exit 99\n{script}",
        etc_copy.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg(full)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run unshare");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_of_etc(dir: &Path) -> PathBuf {
    let copy = dir.join("etc");
    let status = Command::new("cp")
        .args(["-a", "/etc"])
        .arg(&copy)
        .status()
        .expect("cp -a /etc");
    assert!(status.success(), "copying /etc failed");
    // Whatever the machine has, the copy starts without a preload list.
    let _ = std::fs::remove_file(copy.join("ld.so.preload"));
    copy
}

#[test]
fn su_cp_reflink_always_works_with_the_systemwide_shim_and_fails_after_disable() {
    let guard = PreloadGuard::save();
    let lib = preload_lib();
    let lib = lib.to_str().expect("utf-8 library path");

    let mut t = TestFs::new(128 * MIB);
    t.mount("allow_other");
    std::fs::set_permissions(&t.mnt, std::fs::Permissions::from_mode(0o777)).expect("chmod mnt");
    let a = t.path("A");
    write_pattern_file(&a, 4 * MIB, 61);
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).expect("chmod A");
    let etc = copy_of_etc(t.dir.path());
    let (a_str, mnt) = (path_str(&a), path_str(&t.mnt));
    let su_cp =
        |dst: &str| format!("su nobody -s /bin/sh -c 'cp --reflink=always {a_str} {mnt}/{dst}'");

    // A setuid-root copy of cp, run by user `tests`: glibc's secure mode
    // drops LD_PRELOAD for it, as for su and sudo run by a user. The
    // same cp without the setuid bit reflinks through LD_PRELOAD.
    let cp_suid = t.dir.path().join("cp-suid");
    std::fs::copy("/bin/cp", &cp_suid).expect("copy cp");
    std::fs::set_permissions(&cp_suid, std::fs::Permissions::from_mode(0o4755))
        .expect("chmod 4755 cp-suid");
    let cp_suid = path_str(&cp_suid).to_string();
    let stat_suid = t.dir.path().join("stat-suid");
    std::fs::copy("/usr/bin/stat", &stat_suid).expect("copy stat");
    std::fs::set_permissions(&stat_suid, std::fs::Permissions::from_mode(0o4755))
        .expect("chmod 4755 stat-suid");
    let stat_suid = path_str(&stat_suid).to_string();
    let as_tests_cp = |cp: &str, dst: &str| {
        format!("su tests -s /bin/sh -c '{cp} --reflink=always {a_str} {mnt}/{dst}'")
    };
    let (ok, out, err) = in_namespace(
        &etc,
        &format!(
            "LD_PRELOAD={lib} {} || exit 98
LD_PRELOAD={lib} {}",
            as_tests_cp("cp", "plain-env"),
            as_tests_cp(&cp_suid, "suid-env")
        ),
    );
    assert!(!ok, "the setuid cp reflinked without the system-wide shim");
    assert!(
        err.contains("Operation not supported"),
        "stdout: {out}\nstderr: {err}"
    );
    assert_eq!(shared_bytes(&t.path("plain-env")), 4 * MIB);

    // Enabled: su's cp reflinks.
    let before = usage(&t.mnt);
    let (ok, out, err) = in_namespace(
        &etc,
        &format!(
            "{COWDAX} shim enable --library {lib} || exit 98\n\
             {COWDAX} shim status || exit 97\n{} || exit 96\n{} || exit 95\n\
             su tests -s /bin/sh -c 'COWDAX_PRELOAD_FSTYPE=xfs stat -f -c fstype=%t {mnt}'\n\
             su tests -s /bin/sh -c 'COWDAX_PRELOAD_FSTYPE=xfs {stat_suid} -f -c suid-fstype=%t {mnt}'",
            su_cp("B"),
            as_tests_cp(&cp_suid, "D")
        ),
    );
    assert!(ok, "stdout: {out}\nstderr: {err}");
    assert!(out.contains(&format!("enabled: {lib}")), "{out}");
    // COWDAX_PRELOAD_FSTYPE=xfs (the duperemove aid) works for a plain
    // program but a setuid one does not take it from its caller.
    assert!(out.contains("fstype=58465342"), "{out}");
    assert!(out.contains("suid-fstype=65735546"), "{out}");
    let b = t.path("B");
    assert!(same_contents(&a, &b));
    assert_eq!(shared_bytes(&b), 4 * MIB, "B does not share A's extents");
    assert_eq!(
        shared_bytes(&t.path("D")),
        4 * MIB,
        "the setuid cp did not reflink"
    );
    // plain-env, B and D: all on A's blocks.
    assert_eq!(usage(&t.mnt).physical_bytes, before.physical_bytes);
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&b).expect("stat B"));
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("look up nobody")
        .expect("user nobody");
    assert_eq!(owner, nobody.uid.as_raw(), "B was not created by nobody");
    let listed = std::fs::read_to_string(etc.join("ld.so.preload")).expect("preload in copy");
    assert_eq!(listed, format!("{lib}\n"));

    // Disabled: the same command fails as without the shim, and the list,
    // empty now, is gone.
    let (ok, out, err) = in_namespace(
        &etc,
        &format!(
            "{COWDAX} shim disable || exit 98\n\
             {COWDAX} shim status; [ $? -eq 3 ] || exit 97\n{}",
            su_cp("C")
        ),
    );
    assert!(!ok, "cp --reflink=always worked after disable: {out}");
    assert!(
        err.contains("Operation not supported"),
        "stdout: {out}\nstderr: {err}"
    );
    assert!(out.contains("disabled"), "{out}");
    assert!(!etc.join("ld.so.preload").exists());

    assert_eq!(
        PreloadGuard::current(),
        guard.saved,
        "the real {REAL_PRELOAD} changed"
    );
    t.finish();
    drop(guard);
}
