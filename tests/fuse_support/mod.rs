//! Shared helpers of the FUSE integration tests: format an image, mount it
//! with the real `cowdax` binary, unmount, and check the image afterwards.
//!
//! A mount that fails makes the test fail (never skip): these tests need
//! root and /dev/fuse, which CI has.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cowdax::fs::{Creds, Fs, OpenOptions};
use cowdax::media::{Media, MmapMedia, OpenMode};
use cowdax::store::{Access, FormatOptions, Store};

pub const COWDAX: &str = env!("CARGO_BIN_EXE_cowdax");

/// How long mounting or unmounting may take before the test fails.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

pub fn cowdax() -> Command {
    Command::new(COWDAX)
}

/// Creates a sparse image file of `size_bytes` and formats it.
pub fn make_image(path: &Path, size_bytes: u64) {
    let file = File::create(path).expect("create image file");
    file.set_len(size_bytes).expect("size image file");
    drop(file);
    let media: Arc<dyn Media> =
        Arc::new(MmapMedia::open(path, OpenMode::ReadWrite).expect("open image for mkfs"));
    Fs::mkfs(
        media,
        &FormatOptions {
            label: "fuse-test".into(),
            ..FormatOptions::default()
        },
        Creds { uid: 0, gid: 0 },
    )
    .expect("mkfs");
}

/// The fstype of the mount on `mountpoint`, if any.
pub fn fstype_at(mountpoint: &Path) -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cowdax::fuse::daemon::mounted_fstype(&mountinfo, mountpoint)
}

/// The options column of /proc/mounts for `mountpoint`.
pub fn mount_line(mountpoint: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let wanted = mountpoint.to_string_lossy().into_owned();
    mounts
        .lines()
        .rev()
        .find(|line| line.split(' ').nth(1) == Some(wanted.as_str()))
        .map(str::to_string)
}

/// Waits until `cond` holds or the timeout passes.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when nobody holds the image's lock (the daemon has exited).
pub fn image_unlocked(image: &Path) -> bool {
    let Ok(file) = File::open(image) else {
        return false;
    };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok()
}

/// Opens the image read-only and checks it: marked clean, and the core's
/// scrub finds no violated invariant.
pub fn assert_image_clean(image: &Path) {
    let media: Arc<dyn Media> =
        Arc::new(MmapMedia::open(image, OpenMode::ReadOnly).expect("open image for check"));
    let (_store, recovered) = Store::open(media.clone(), Access::ReadOnly).expect("store opens");
    assert!(recovered.was_clean, "image was not marked clean at unmount");
    let fs = Fs::open(media, OpenOptions { read_only: true }).expect("fs opens read-only");
    let report = fs.scrub().expect("scrub runs");
    assert!(
        report.errors.is_empty(),
        "scrub found: {:#?}",
        report.errors
    );
}

pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `umount MNT`, retrying for up to 5 s while it reports the mount busy
/// (exit 32). Test threads run in parallel and spawn processes: between fork
/// and exec a child holds copies of every fd of the test process, including
/// a file another thread has just closed on this mount, so an immediate
/// umount can transiently see EBUSY. A mount that stays busy still fails.
pub fn umount_retrying_while_busy(mnt: &Path) {
    let start = Instant::now();
    loop {
        let output = Command::new("umount")
            .arg(mnt)
            .output()
            .expect("run umount");
        if output.status.success() {
            return;
        }
        let busy = output.status.code() == Some(32)
            && String::from_utf8_lossy(&output.stderr).contains("busy");
        assert!(
            busy && start.elapsed() < Duration::from_secs(5),
            "umount {} failed: {}\n{}",
            mnt.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A formatted image and a mount point in a private temporary directory.
pub struct TestFs {
    pub dir: tempfile::TempDir,
    pub image: PathBuf,
    pub mnt: PathBuf,
    daemon: Option<Child>,
    /// What the foreground daemon wrote to stderr so far (shown when it
    /// exits with an error).
    daemon_log: Arc<std::sync::Mutex<Vec<u8>>>,
    detached: bool,
}

impl TestFs {
    /// A fresh image of `size_bytes` (formatted) and an empty mount point;
    /// the directory is world-traversable so that user `tests` can reach it.
    pub fn new(size_bytes: u64) -> TestFs {
        let dir = tempfile::Builder::new()
            .prefix("cowdax-fuse-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod tempdir");
        let image = dir.path().join("image.cowdax");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        make_image(&image, size_bytes);
        TestFs {
            dir,
            image,
            mnt,
            daemon: None,
            daemon_log: Arc::default(),
            detached: false,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    pub fn is_mounted(&self) -> bool {
        fstype_at(&self.mnt).as_deref() == Some("fuse.cowdax")
    }

    /// Mounts in the foreground (`-f`) as a child process and waits until
    /// the mount is live. Panics with the daemon's stderr if it exits.
    pub fn mount(&mut self, options: &str) {
        assert!(self.daemon.is_none(), "already mounted");
        let mut command = cowdax();
        command
            .arg("mount")
            .arg("-f")
            .arg(&self.image)
            .arg(&self.mnt);
        if !options.is_empty() {
            command.arg("-o").arg(options);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cowdax");
        let start = Instant::now();
        while !self.is_mounted() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("cowdax exited before mounting ({status}): {stderr}");
            }
            assert!(start.elapsed() < MOUNT_TIMEOUT, "mount timed out");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drain stderr in the background so the daemon never blocks on it,
        // keeping it for the failure message of wait_daemon_exit_ok.
        if let Some(mut pipe) = child.stderr.take() {
            let log = Arc::new(std::sync::Mutex::new(Vec::new()));
            self.daemon_log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    log.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
        }
        self.daemon = Some(child);
        self.detached = false;
    }

    /// Mounts the way mount.fuse3 does: `cowdax SRC MNT -o …` returns once
    /// the mount is live, the daemon detached.
    pub fn mount_detached(&mut self, options: &str) {
        let mut command = cowdax();
        command.arg(&self.image).arg(&self.mnt);
        if !options.is_empty() {
            command.arg("-o").arg(options);
        }
        run_ok(&mut command);
        assert!(
            self.is_mounted(),
            "cowdax returned 0 but nothing is mounted"
        );
        self.detached = true;
    }

    /// The foreground daemon's pid.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("foreground daemon").id()
    }

    /// `umount MNT`; waits for the daemon to exit 0.
    pub fn unmount(&mut self) {
        umount_retrying_while_busy(&self.mnt);
        self.wait_daemon_exit_ok();
    }

    /// Waits for the daemon to finish after the mount went away.
    pub fn wait_daemon_exit_ok(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().expect("wait daemon") {
                    if !status.success() {
                        // Give the drain thread a moment to take the last lines.
                        std::thread::sleep(Duration::from_millis(100));
                        let log = self.daemon_log.lock().unwrap();
                        panic!(
                            "daemon exited with {status}; its stderr:\n{}",
                            String::from_utf8_lossy(&log)
                        );
                    }
                    break;
                }
                assert!(start.elapsed() < MOUNT_TIMEOUT, "daemon did not exit");
                std::thread::sleep(Duration::from_millis(20));
            }
        } else if self.detached {
            let image = self.image.clone();
            wait_for("the detached daemon to exit", MOUNT_TIMEOUT, || {
                image_unlocked(&image)
            });
            self.detached = false;
        }
        assert!(!self.is_mounted(), "still mounted after the daemon exited");
    }

    /// SIGKILLs the foreground daemon and removes the dead mount.
    pub fn kill_daemon(&mut self) {
        let mut child = self.daemon.take().expect("foreground daemon");
        child.kill().expect("SIGKILL daemon");
        let _ = child.wait();
        // The connection is gone; the mount stays until removed.
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        wait_for("the dead mount to go away", MOUNT_TIMEOUT, || {
            !self.is_mounted()
        });
    }

    /// Unmounts (if mounted) and checks the image.
    pub fn finish(mut self) {
        if self.is_mounted() || self.daemon.is_some() {
            self.unmount();
        }
        assert_image_clean(&self.image);
    }
}

impl Drop for TestFs {
    fn drop(&mut self) {
        // Only reached with a mount still up when a test failed: do not
        // leave a mount behind in /tmp.
        if self.is_mounted() {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// uid and gid of the unprivileged test user `tests` (CI creates it).
pub fn tests_user() -> (u32, u32) {
    let user = nix::unistd::User::from_name("tests")
        .expect("look up user tests")
        .expect("user `tests` must exist (CI creates it: useradd tests)");
    (user.uid.as_raw(), user.gid.as_raw())
}

/// Runs `script` with sh as user `tests`; returns (exit success, stderr).
pub fn run_as_tests(script: &str) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let (uid, gid) = tests_user();
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .output()
        .expect("run as tests");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl TestFs {
    /// For tests that never mounted: the image is still clean.
    pub fn finish_unmounted_check(self) {
        assert!(!self.is_mounted());
        assert_image_clean(&self.image);
    }
}
