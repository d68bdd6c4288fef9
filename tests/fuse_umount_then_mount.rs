//! `umount MNT` followed at once by `mount` or `fsck` of the same image
//! (docs/FUSE.md "Unmounting"): umount returns once the kernel has
//! detached the mount, while the daemon still writes its final checkpoint
//! and holds the image; the next mount or fsck waits for it. An image that
//! is really in use is still refused.

mod fuse_support;

use std::path::Path;
use std::process::{Command, Output};

use fuse_support::*;

/// Back-to-back cycles of the first test.
const MOUNT_CYCLES: usize = 100;
/// Back-to-back cycles of the fsck test.
const FSCK_CYCLES: usize = 30;

fn run(command: &mut Command) -> Output {
    command.output().expect("run command")
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Mounts `image` on `mnt` with the real binary, alternating the two forms
/// users reach: `cowdax mount IMG MNT` and the one mount(8)'s mount.fuse3
/// helper runs for `mount -t fuse.cowdax` and fstab (`cowdax IMG MNT -o …`).
fn mount_cycle(image: &Path, mnt: &Path, cycle: usize) {
    let mut command = cowdax();
    if cycle % 2 == 0 {
        command.arg("mount").arg(image).arg(mnt);
    } else {
        command.arg(image).arg(mnt).arg("-o").arg("rw,dev,suid");
    }
    let output = run(&mut command);
    assert!(
        output.status.success(),
        "cycle {cycle}: mount right after umount failed ({}): {}",
        output.status,
        stderr_of(&output)
    );
    assert_eq!(
        fstype_at(mnt).as_deref(),
        Some("fuse.cowdax"),
        "cycle {cycle}: nothing mounted"
    );
}

fn umount(mnt: &Path) {
    umount_retrying_while_busy(mnt);
}

/// Waits for the last daemon to exit, then checks the image with the real
/// fsck and with the core's scrub.
fn finish(fs: TestFs) {
    let image = fs.image.clone();
    wait_for(
        "the last daemon to exit",
        std::time::Duration::from_secs(30),
        || image_unlocked(&image),
    );
    run_ok(cowdax().arg("fsck").arg("-n").arg(&image));
    fs.finish_unmounted_check();
}

#[test]
fn umount_then_mount_at_once_100_times_keeps_each_cycles_write() {
    let fs = TestFs::new(64 << 20);
    for cycle in 0..MOUNT_CYCLES {
        mount_cycle(&fs.image, &fs.mnt, cycle);
        if cycle > 0 {
            let previous = std::fs::read(fs.path(&format!("cycle-{}", cycle - 1)))
                .unwrap_or_else(|err| panic!("cycle {cycle}: previous cycle's file: {err}"));
            assert_eq!(
                previous,
                format!("written in cycle {}\n", cycle - 1).into_bytes(),
                "cycle {cycle}: previous cycle's data"
            );
        }
        std::fs::write(
            fs.path(&format!("cycle-{cycle}")),
            format!("written in cycle {cycle}\n"),
        )
        .expect("write this cycle's file");
        umount(&fs.mnt);
    }
    // The last cycle's write, read back by a mount made at once.
    mount_cycle(&fs.image, &fs.mnt, MOUNT_CYCLES);
    let names = std::fs::read_dir(&fs.mnt).expect("list root").count();
    assert_eq!(names, MOUNT_CYCLES, "one file per cycle");
    umount(&fs.mnt);
    finish(fs);
}

#[test]
fn umount_then_fsck_at_once_finds_the_image_clean() {
    let fs = TestFs::new(64 << 20);
    for cycle in 0..FSCK_CYCLES {
        mount_cycle(&fs.image, &fs.mnt, cycle);
        std::fs::write(fs.path(&format!("f{cycle}")), vec![cycle as u8; 8192])
            .expect("write a file");
        umount(&fs.mnt);
        let output = run(cowdax().arg("fsck").arg("-n").arg(&fs.image));
        assert!(
            output.status.success(),
            "cycle {cycle}: fsck -n right after umount failed ({}): {}",
            output.status,
            stderr_of(&output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("clean"), "cycle {cycle}: {stdout}");
    }
    finish(fs);
}

#[test]
fn an_image_still_mounted_is_refused_not_waited_for() {
    let mut fs = TestFs::new(64 << 20);
    fs.mount_detached("rw");
    let other = fs.dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir other");

    let output = run(cowdax().arg("mount").arg(&fs.image).arg(&other));
    assert!(
        !output.status.success(),
        "a second mount of a mounted image"
    );
    assert!(
        stderr_of(&output).contains(&format!("mounted on {}", fs.mnt.display())),
        "{}",
        stderr_of(&output)
    );
    assert!(
        !stderr_of(&output).contains("waiting"),
        "{}",
        stderr_of(&output)
    );
    let output = run(cowdax().arg("fsck").arg("-n").arg(&fs.image));
    assert!(!output.status.success(), "fsck of a mounted image");
    assert!(
        stderr_of(&output).contains("mounted on"),
        "{}",
        stderr_of(&output)
    );
    assert!(fs.is_mounted(), "the refusals left the mount alone");
    umount(&fs.mnt);
    finish(fs);
}

#[test]
fn a_lazily_unmounted_image_with_open_files_is_refused_until_they_close() {
    let mut fs = TestFs::new(64 << 20);
    fs.mount_detached("rw");
    std::fs::write(fs.path("held"), b"kept open").expect("write");
    let held = std::fs::File::open(fs.path("held")).expect("open");
    run_ok(Command::new("umount").arg("-l").arg(&fs.mnt));
    assert!(!fs.is_mounted());

    // The daemon still serves the open file: a mount must not take over.
    let output = run(cowdax().arg("mount").arg(&fs.image).arg(&fs.mnt));
    assert!(
        !output.status.success(),
        "mounted an image still served for a lazily unmounted mount"
    );
    assert!(
        stderr_of(&output).contains("umount -l"),
        "{}",
        stderr_of(&output)
    );
    assert!(!fs.is_mounted());

    // Once the last file closes the session ends; a mount now waits for the
    // daemon's final checkpoint and succeeds.
    drop(held);
    mount_cycle(&fs.image, &fs.mnt, 0);
    assert_eq!(
        std::fs::read(fs.path("held")).expect("read"),
        b"kept open".to_vec()
    );
    umount(&fs.mnt);
    finish(fs);
}

/// A lock holder without the in-use mark is what a daemon looks like while
/// it writes its final checkpoint; `flock(1)` plays one for 2 s, longer
/// than the 1 s after which the waiting side tells the user.
fn hold_lock_like_a_finishing_daemon(image: &Path) -> std::process::Child {
    let holder = Command::new("flock")
        .arg(image)
        .arg("sleep")
        .arg("2")
        .spawn()
        .expect("run flock(1)");
    wait_for(
        "flock(1) to take the image's lock",
        std::time::Duration::from_secs(10),
        || !image_unlocked(image),
    );
    holder
}

#[test]
fn mount_and_fsck_wait_for_a_finishing_holder_and_say_so() {
    let fs = TestFs::new(64 << 20);
    for (what, args) in [
        ("fsck -n", vec!["fsck".to_string(), "-n".into()]),
        ("mount", vec!["mount".to_string()]),
    ] {
        let mut holder = hold_lock_like_a_finishing_daemon(&fs.image);
        let mut command = cowdax();
        command.args(&args).arg(&fs.image);
        if what == "mount" {
            command.arg(&fs.mnt);
        }
        let output = run(&mut command);
        assert!(
            output.status.success(),
            "{what} while the lock was held: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains("waiting for the previous cowdax daemon (pid "),
            "{what}: {}",
            stderr_of(&output)
        );
        holder.wait().expect("flock(1) exits");
    }
    assert!(fs.is_mounted());
    umount(&fs.mnt);
    finish(fs);
}
