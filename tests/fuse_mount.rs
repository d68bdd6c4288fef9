//! Mounting and unmounting the way users do it: the detached
//! `cowdax SRC MNT -o …` form, foreground, errors before mounting, signals,
//! SIGKILL recovery and persistence across remounts.

mod fuse_support;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fuse_support::*;

const IMAGE_BYTES: u64 = 256 << 20;

fn stderr_of(command: &mut Command) -> (Option<i32>, String) {
    let output = command.output().expect("run cowdax");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn detached_mount_returns_once_live_and_umount_leaves_a_clean_image() {
    let mut t = TestFs::new(IMAGE_BYTES);
    // What mount.fuse3 runs for `mount -t fuse.cowdax` with fstab defaults.
    t.mount_detached("rw,noatime,allow_other,dev,suid,defaults,nofail,x-systemd.device-timeout=5");
    let line = mount_line(&t.mnt).expect("listed in /proc/mounts");
    assert!(line.contains(" fuse.cowdax "), "{line}");
    assert!(
        line.starts_with(&t.image.display().to_string()),
        "fsname is the source: {line}"
    );
    std::fs::write(t.path("hello"), b"world").unwrap();
    assert_eq!(std::fs::read(t.path("hello")).unwrap(), b"world");
    t.unmount();
    t.finish();
}

#[test]
fn data_survives_unmount_and_remount() {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("");
    std::fs::create_dir(t.path("dir")).unwrap();
    std::fs::write(t.path("dir/file"), vec![0x5a; 100_000]).unwrap();
    std::os::unix::fs::symlink("dir/file", t.path("link")).unwrap();
    std::fs::hard_link(t.path("dir/file"), t.path("hard")).unwrap();
    t.unmount();
    assert_image_clean(&t.image);

    t.mount("");
    assert_eq!(
        std::fs::read(t.path("dir/file")).unwrap(),
        vec![0x5a; 100_000]
    );
    assert_eq!(
        std::fs::read_link(t.path("link")).unwrap(),
        std::path::Path::new("dir/file")
    );
    assert_eq!(std::fs::metadata(t.path("hard")).unwrap().nlink(), 2);
    t.finish();
}

#[test]
fn unknown_option_is_refused_with_one_line_and_nonzero_exit() {
    let t = TestFs::new(IMAGE_BYTES);
    let (code, stderr) = stderr_of(
        cowdax()
            .arg(&t.image)
            .arg(&t.mnt)
            .args(["-o", "rw,frobnicate"]),
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("frobnicate"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!t.is_mounted());
    t.finish();
}

#[test]
fn unformatted_source_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("zeros.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (code, stderr) = stderr_of(cowdax().arg(&image).arg(&mnt));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("not a cowdax filesystem"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(fstype_at(&mnt).is_none());
}

#[test]
fn missing_mount_point_is_refused() {
    let t = TestFs::new(IMAGE_BYTES);
    let (code, stderr) = stderr_of(cowdax().arg(&t.image).arg(t.dir.path().join("absent")));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("mount point"), "{stderr}");
    t.finish_unmounted_check();
}

#[test]
fn image_in_use_and_mount_point_in_use_are_refused() {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("");
    // The same image on a second mount point: the daemon's lock refuses it.
    let other = t.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (code, stderr) = stderr_of(cowdax().arg(&t.image).arg(&other));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(fstype_at(&other).is_none());

    // Another image on the same mount point.
    let second = t.dir.path().join("second.img");
    make_image(&second, 64 << 20);
    let (code, stderr) = stderr_of(cowdax().arg(&second).arg(&t.mnt));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("already mounted"), "{stderr}");
    t.finish();
}

#[test]
fn sigterm_and_sigint_unmount_cleanly() {
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let mut t = TestFs::new(IMAGE_BYTES);
        t.mount("");
        std::fs::write(t.path("before-signal"), b"kept").unwrap();
        let pid = nix::unistd::Pid::from_raw(t.daemon_pid() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        t.wait_daemon_exit_ok();
        assert_image_clean(&t.image);
        t.mount("");
        assert_eq!(std::fs::read(t.path("before-signal")).unwrap(), b"kept");
        t.finish();
    }
}

#[test]
fn sigkill_during_writes_recovers_on_next_mount() {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("");
    let synced = t.path("synced");
    let mut file = std::fs::File::create(&synced).unwrap();
    file.write_all(&vec![0xa5; 1 << 20]).unwrap();
    file.sync_all().unwrap();
    drop(file);

    // A writer keeps going while the daemon is killed under it.
    let busy_path = t.path("busy");
    let writer = std::thread::spawn(move || {
        let mut written = 0u64;
        if let Ok(mut file) = std::fs::File::create(&busy_path) {
            while file.write_all(&[0x3c; 65536]).is_ok() {
                written += 65536;
            }
        }
        written
    });
    std::thread::sleep(Duration::from_millis(300));
    t.kill_daemon();
    let _ = writer.join();

    // Recovery through the journal; everything fsync'd is there.
    t.mount("");
    assert_eq!(std::fs::read(&synced).unwrap(), vec![0xa5; 1 << 20]);
    let busy = std::fs::read(t.path("busy")).unwrap_or_default();
    assert!(
        busy.iter().all(|&b| b == 0x3c),
        "a recovered file holds bytes nobody wrote"
    );
    t.finish();
}

#[test]
fn read_only_mount_refuses_writes() {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("");
    std::fs::write(t.path("f"), b"data").unwrap();
    t.unmount();
    t.mount("ro");
    assert_eq!(std::fs::read(t.path("f")).unwrap(), b"data");
    let err = std::fs::write(t.path("g"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    t.finish();
}

/// `cowdax mount -f` of `t`'s image with stderr piped (for the test to
/// read once the daemon has exited); returns once the mount is live.
fn mount_foreground_keeping_stderr(t: &TestFs) -> std::process::Child {
    let child = cowdax()
        .args(["mount", "-f"])
        .arg(&t.image)
        .arg(&t.mnt)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start cowdax");
    wait_for("the mount", Duration::from_secs(10), || t.is_mounted());
    child
}

/// An ordinary `umount` ends the daemon with exit 0 and no warning: fuser
/// 0.18 unmounts the mount point again after the session and warns when
/// that fails (it always does: its "still mounted?" check is inverted);
/// the daemon filters those two warnings and checks for itself.
#[test]
fn umount_ends_the_foreground_daemon_without_warnings() {
    let t = TestFs::new(IMAGE_BYTES);
    let child = mount_foreground_keeping_stderr(&t);
    std::fs::write(t.path("f"), b"data").unwrap();
    umount_retrying_while_busy(&t.mnt);
    // The daemon writes little to stderr, so the pipe cannot fill up
    // before it exits.
    let output = child.wait_with_output().expect("wait for cowdax");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(stderr.contains("unmounted cleanly"), "{stderr}");
    assert!(!stderr.contains("Failed to umount"), "{stderr}");
    assert!(!stderr.contains("Unmount failed"), "{stderr}");
    assert!(!stderr.contains("still mounted"), "{stderr}");
    t.finish();
}

/// When the FUSE session ends while the mount stays (the connection was
/// aborted through /sys/fs/fuse/connections and a process has its working
/// directory inside, so fuser's unmount fails with EBUSY), the daemon says
/// so as an error and exits 1 instead of leaving silently.
#[test]
fn a_mount_that_outlives_its_session_is_reported() {
    let t = TestFs::new(IMAGE_BYTES);
    let child = mount_foreground_keeping_stderr(&t);
    let minor = nix::sys::stat::minor(std::fs::metadata(&t.mnt).unwrap().dev());
    let mut holder = Command::new("sleep")
        .arg("30")
        .current_dir(&t.mnt)
        .spawn()
        .expect("start a process inside the mount");
    // fusectl is usually mounted by systemd; mount it for this test if not.
    let connections = Path::new("/sys/fs/fuse/connections");
    let mounted_fusectl = fstype_at(connections).is_none();
    if mounted_fusectl {
        run_ok(
            Command::new("mount")
                .args(["-t", "fusectl", "fusectl"])
                .arg(connections),
        );
    }
    let aborted = std::fs::write(connections.join(format!("{minor}/abort")), b"1");
    if mounted_fusectl {
        let _ = Command::new("umount").arg(connections).status();
    }
    if let Err(err) = aborted {
        // Leave nothing behind: the holder would keep the mount busy and
        // TestFs's drop detaches it, which ends the daemon.
        let _ = holder.kill();
        let _ = holder.wait();
        panic!("abort the FUSE connection: {err}");
    }
    let output = child.wait_with_output().expect("wait for cowdax");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = Command::new("umount").arg("-l").arg(&t.mnt).status();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("still mounted"), "{stderr}");
    assert!(stderr.contains("umount -l"), "{stderr}");
    wait_for("the dead mount to go away", Duration::from_secs(10), || {
        !t.is_mounted()
    });
    t.finish();
}

#[test]
fn foreground_mount_honours_threads_and_max_write_options() {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("threads=1,max_write=262144,attr_timeout=0,entry_timeout=0,writeback_cache");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(t.path("big"), &data).unwrap();
    assert_eq!(std::fs::read(t.path("big")).unwrap(), data);
    t.finish();
}

/// `mount -t fuse.cowdax`, an fstab line with `mount MNT`, and
/// `mount -o remount,ro`, through mount(8) and mount.fuse3 as a user would.
/// mount.fuse3 runs `cowdax` from the shell's default PATH, so the script
/// runs in a private mount namespace where /usr/local/bin holds the binary
/// under test and /etc/fstab is a test file; nothing outside changes.
#[test]
fn mount_t_fuse_cowdax_fstab_and_remount_work_through_mount8() {
    let t = TestFs::new(IMAGE_BYTES);
    let bin = t.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(COWDAX, bin.join("cowdax")).unwrap();
    let fstab = t.dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{} {} fuse.cowdax defaults,allow_other,nofail 0 0\n",
            t.image.display(),
            t.mnt.display()
        ),
    )
    .unwrap();
    let script = format!(
        r#"set -e
mount --bind '{bin}' /usr/local/bin
mount --bind '{fstab}' /etc/fstab
mount -t fuse.cowdax '{image}' '{mnt}' -o allow_other,noatime
grep -q ' {mnt} fuse.cowdax ' /proc/mounts
echo via-mount-t > '{mnt}/a'
umount '{mnt}'
for i in $(seq 100); do flock -n '{image}' true && break; sleep 0.1; done
mount '{mnt}'
grep -q ' {mnt} fuse.cowdax ' /proc/mounts
test "$(cat '{mnt}/a')" = via-mount-t
mount -o remount,ro '{mnt}'
grep ' {mnt} fuse.cowdax ' /proc/mounts | grep -q ' ro,'
if touch '{mnt}/b' 2>/dev/null; then echo 'write on a read-only remount succeeded'; exit 1; fi
mount -o remount,rw '{mnt}'
echo rw-again > '{mnt}/b'
umount '{mnt}'
"#,
        bin = bin.display(),
        fstab = fstab.display(),
        image = t.image.display(),
        mnt = t.mnt.display(),
    );
    run_ok(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
            .arg(&script),
    );
    wait_for("the daemon to exit", Duration::from_secs(30), || {
        image_unlocked(&t.image)
    });
    assert_image_clean(&t.image);
    let mut t = t;
    t.mount("");
    assert_eq!(std::fs::read(t.path("b")).unwrap(), b"rw-again\n");
    t.finish();
}

#[test]
fn sigterm_on_a_busy_mount_detaches_and_exits_after_the_last_close() {
    use std::io::Read;
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("");
    std::fs::write(t.path("held"), b"open across SIGTERM").unwrap();
    let mut held = std::fs::File::open(t.path("held")).unwrap();
    let pid = nix::unistd::Pid::from_raw(t.daemon_pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    // The busy mount is detached from the tree at once...
    wait_for("the mount to be detached", Duration::from_secs(30), || {
        !t.is_mounted()
    });
    // ...while the open file keeps working until it is closed.
    let mut content = String::new();
    held.read_to_string(&mut content).unwrap();
    assert_eq!(content, "open across SIGTERM");
    drop(held);
    t.wait_daemon_exit_ok();
    t.finish();
}

/// The kernel's read-ahead window of the mount's backing device, in KiB.
fn read_ahead_kib(mountpoint: &std::path::Path) -> u64 {
    let dev = std::fs::metadata(mountpoint).unwrap().dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    std::fs::read_to_string(&knob)
        .unwrap_or_else(|err| panic!("{knob}: {err}"))
        .trim()
        .parse()
        .unwrap()
}

/// Every FUSE mount starts with 128 KiB of read-ahead, which INIT may only
/// lower; the daemon raises it to `max_readahead` (1 MiB by default) so a
/// sequential read is one READ per MiB, and INIT does not lower it again.
#[test]
fn read_ahead_window_follows_max_readahead() {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("");
    // A request: the connection is initialised and the daemon is serving.
    std::fs::write(t.path("f"), b"data").unwrap();
    assert_eq!(read_ahead_kib(&t.mnt), 1024);
    t.unmount();
    t.mount_detached("max_readahead=256K");
    assert_eq!(std::fs::read(t.path("f")).unwrap(), b"data");
    assert_eq!(read_ahead_kib(&t.mnt), 256);
    t.finish();
}

/// `cowdax counters --json` of a mount: (idle-poll engagements, ms held).
fn idle_poll_counters(mountpoint: &std::path::Path) -> (u64, u64) {
    let output = run_ok(cowdax().arg("counters").arg("--json").arg(mountpoint));
    let json = String::from_utf8(output.stdout).unwrap();
    let field = |name: &str| -> u64 {
        let key = format!("\"{name}\":");
        let at = json
            .find(&key)
            .unwrap_or_else(|| panic!("{name} in {json}"))
            + key.len();
        json[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    (field("idle_poll_engagements"), field("idle_poll_ms"))
}

/// The kernel's current CPU latency limit in µs (0: idle CPUs only poll).
fn cpu_latency_limit_us() -> i32 {
    let bytes = std::fs::read("/dev/cpu_dma_latency").expect("read /dev/cpu_dma_latency");
    i32::from_ne_bytes(bytes[..4].try_into().unwrap())
}

/// Runs `statfs` (one round trip each: the kernel caches no statfs) on the
/// mount for `duration`, calling `probe` in between; returns whether a
/// probe returned true.
fn statfs_burst(
    mountpoint: &std::path::Path,
    duration: Duration,
    mut probe: impl FnMut() -> bool,
) -> bool {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                nix::sys::statvfs::statvfs(mountpoint).unwrap();
            }
        });
        let deadline = std::time::Instant::now() + duration;
        let mut seen = false;
        while std::time::Instant::now() < deadline {
            seen |= probe();
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        seen
    })
}

/// With `idle_poll=on`, while requests come fast the daemon holds a PM QoS
/// request of 0 µs (idle CPUs poll), and gives it up when they stop;
/// `idle_poll=off` never takes it. (Needs root, as CI runs the tests.)
#[test]
fn idle_poll_holds_a_cpu_latency_request_while_requests_come_fast() {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("idle_poll=on");
    assert_eq!(idle_poll_counters(&t.mnt), (0, 0));
    let mut engaged_seen = false;
    let limit_zero_seen = statfs_burst(&t.mnt, Duration::from_secs(2), || {
        engaged_seen |= idle_poll_counters(&t.mnt).0 >= 1;
        engaged_seen && cpu_latency_limit_us() == 0
    });
    assert!(
        engaged_seen,
        "a burst of statfs did not engage idle polling"
    );
    assert!(
        limit_zero_seen,
        "engaged, but the kernel's CPU latency limit never read 0"
    );
    // Quiet: the request is given up, so the time held stops growing.
    let mut last = idle_poll_counters(&t.mnt).1;
    wait_for(
        "idle polling to be released",
        Duration::from_secs(10),
        || {
            std::thread::sleep(Duration::from_millis(100));
            let now = idle_poll_counters(&t.mnt).1;
            std::mem::replace(&mut last, now) == now
        },
    );
    t.unmount();

    t.mount("idle_poll=off");
    statfs_burst(&t.mnt, Duration::from_secs(1), || false);
    assert_eq!(idle_poll_counters(&t.mnt), (0, 0));
    t.finish();
}

/// Idle polling is a machine-wide policy, so a mount without options never
/// takes the CPU latency request: the burst that engages it with
/// `idle_poll=on` (checked first, so the burst is known to be fast enough
/// here) leaves the default mount's counters at zero.
#[test]
fn idle_poll_is_off_unless_the_mount_asks_for_it() {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("idle_poll=on");
    let engaged = statfs_burst(&t.mnt, Duration::from_secs(2), || {
        idle_poll_counters(&t.mnt).0 >= 1
    });
    assert!(engaged, "a burst of statfs did not engage idle_poll=on");
    t.unmount();

    t.mount("");
    statfs_burst(&t.mnt, Duration::from_secs(2), || false);
    assert_eq!(idle_poll_counters(&t.mnt), (0, 0));
    t.finish();
}

/// FORGET and BATCH_FORGET are not counted towards idle polling: the
/// kernel sends them by the thousand when it drops inodes from its cache
/// (here: drop_caches after looking up 10,000 files), and no one waits for
/// their reply. A statfs burst right after shows polling could have
/// engaged then (not in a cool-down).
#[test]
fn idle_poll_does_not_count_the_kernels_forgets() {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("idle_poll=on");
    let dir = t.path("many");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..10_000 {
        std::fs::File::create(dir.join(i.to_string())).unwrap();
    }
    // The creates may have engaged polling: wait until it is released
    // (the time held stops growing).
    let mut last = idle_poll_counters(&t.mnt).1;
    wait_for(
        "idle polling to be released",
        Duration::from_secs(10),
        || {
            std::thread::sleep(Duration::from_millis(100));
            let now = idle_poll_counters(&t.mnt).1;
            std::mem::replace(&mut last, now) == now
        },
    );
    let before = idle_poll_counters(&t.mnt).0;
    // Every unused dentry and inode goes: the kernel forgets them all.
    std::fs::write("/proc/sys/vm/drop_caches", "2").expect("write drop_caches (root)");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        idle_poll_counters(&t.mnt).0,
        before,
        "the kernel's forgets engaged idle polling"
    );
    // Control: requests that count engage it now.
    let engaged = statfs_burst(&t.mnt, Duration::from_secs(2), || {
        idle_poll_counters(&t.mnt).0 > before
    });
    assert!(engaged, "a statfs burst after the forgets did not engage");
    t.finish();
}
