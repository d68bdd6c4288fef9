//! The command line against a live cowdax mount: both mount forms reach
//! the daemon through the dispatcher, and mkfs/fsck refuse the mounted image.

mod cli_common;
mod fuse_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use cli_common::*;

/// A cowdax FUSE mount made through the command line; unmounted on drop
/// (when the test did not unmount it itself).
struct CowdaxMount {
    mount_point: PathBuf,
    mounted: bool,
}

impl CowdaxMount {
    fn new(args: &[&str], mount_point: &Path) -> CowdaxMount {
        fs::create_dir_all(mount_point).expect("create mount point");
        let output = cowdax(args);
        assert_exit(&output, 0);
        let mount = CowdaxMount {
            mount_point: mount_point.to_path_buf(),
            mounted: true,
        };
        assert_eq!(
            fs_type_at(mount_point).as_deref(),
            Some("fuse.cowdax"),
            "cowdax returned 0 but nothing is mounted"
        );
        mount
    }

    fn unmount(mut self) {
        fuse_support::umount_retrying_while_busy(&self.mount_point);
        self.mounted = false;
    }
}

impl Drop for CowdaxMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .status();
        }
    }
}

/// The filesystem type mounted exactly at `mount_point`, from mountinfo.
fn fs_type_at(mount_point: &Path) -> Option<String> {
    let canonical = fs::canonicalize(mount_point).ok()?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    cowdax::fuse::daemon::mounted_fstype(&mountinfo, &canonical)
}

#[test]
fn mkfs_and_fsck_refuse_an_image_mounted_by_cowdax() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "live.img");
    let mount_point = dir.path().join("mnt");
    // The form mount.fuse3 runs for `mount -t fuse.cowdax`.
    let mount = CowdaxMount::new(
        &[path_str(&image), path_str(&mount_point), "-o", "rw,noatime"],
        &mount_point,
    );
    fs::write(mount_point.join("file"), b"data").expect("write through the mount");
    let mkfs = cowdax(&["mkfs", "-f", path_str(&image)]);
    assert_exit(&mkfs, 1);
    assert!(stderr(&mkfs).contains("mounted"), "{}", stderr(&mkfs));
    for mode in ["-n", "-y"] {
        let fsck = cowdax(&["fsck", mode, path_str(&image)]);
        assert_exit(&fsck, 8);
        assert!(stderr(&fsck).contains("mounted"), "{}", stderr(&fsck));
    }
    mount.unmount();
    assert_fsck_clean(&image);
}

#[test]
fn mount_subcommand_mounts_and_the_data_survives_a_remount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = formatted_image(dir.path(), "remount.img");
    let mount_point = dir.path().join("mnt");
    let first = CowdaxMount::new(
        &["mount", path_str(&image), path_str(&mount_point)],
        &mount_point,
    );
    fs::write(mount_point.join("kept"), b"across mounts").expect("write");
    first.unmount();
    assert_fsck_clean(&image);
    let second = CowdaxMount::new(
        &["mount", path_str(&image), path_str(&mount_point)],
        &mount_point,
    );
    assert_eq!(
        fs::read(mount_point.join("kept")).expect("read after remount"),
        b"across mounts"
    );
    second.unmount();
    assert_fsck_clean(&image);
}
