//! Helpers shared by the command-line tests (tests/cli_*.rs).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Size of the images the tests format: small, but well above the minimum.
pub const IMAGE_SIZE: &str = "32M";

pub fn cowdax_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cowdax"))
}

/// Runs `cowdax ARGS…` and returns its output (never panics on failure).
pub fn cowdax(args: &[&str]) -> Output {
    run_program(&cowdax_binary(), args)
}

pub fn run_program(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The exit code, with stdout/stderr in the panic message if there is none.
pub fn exit_code(output: &Output) -> i32 {
    output.status.code().unwrap_or_else(|| {
        panic!(
            "killed by a signal: {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            stdout(output),
            stderr(output)
        )
    })
}

/// Asserts the exit code, showing both streams when it differs.
pub fn assert_exit(output: &Output, expected: i32) {
    assert_eq!(
        exit_code(output),
        expected,
        "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// Creates and formats `dir/name` with `--size IMAGE_SIZE`.
pub fn formatted_image(dir: &Path, name: &str) -> PathBuf {
    let image = dir.join(name);
    let output = cowdax(&["mkfs", "--size", IMAGE_SIZE, path_str(&image)]);
    assert_exit(&output, 0);
    image
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

pub fn read_image(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Writes `bytes` at `offset` into an existing file.
pub fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    file.write_all_at(bytes, offset)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A zero-filled (sparse) file of `size_bytes`.
pub fn blank_file(path: &Path, size_bytes: u64) {
    let file = fs::File::create(path).expect("create blank file");
    file.set_len(size_bytes).expect("size blank file");
}

/// Ends a test that wrote an image: `cowdax fsck -n` must find it clean.
pub fn assert_fsck_clean(image: &Path) {
    let output = cowdax(&["fsck", "-n", path_str(image)]);
    assert_exit(&output, 0);
}

/// A tmpfs mounted with `source` as its mount source, as a FUSE mount of a
/// cowdax image shows it in /proc/self/mountinfo. Unmounted on drop.
pub struct SourceMount {
    pub mount_point: PathBuf,
}

impl SourceMount {
    /// Needs CAP_SYS_ADMIN (the tests run as root, as in CI).
    pub fn new(source: &Path, mount_point: &Path) -> SourceMount {
        fs::create_dir_all(mount_point).expect("create mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", path_str(source), path_str(mount_point)])
            .status()
            .expect("run mount(8)");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs the tests as root): {status}"
        );
        SourceMount {
            mount_point: mount_point.to_path_buf(),
        }
    }
}

impl Drop for SourceMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
    }
}

/// A loop device attached to an image file (`losetup`; root, as in CI).
/// Detached on drop.
pub struct LoopDevice {
    pub device: PathBuf,
}

impl LoopDevice {
    pub fn attach(image: &Path) -> LoopDevice {
        let output = Command::new("losetup")
            .args(["--find", "--show", path_str(image)])
            .output()
            .expect("run losetup (util-linux; .ci/run installs it)");
        assert!(
            output.status.success(),
            "losetup failed (needs root and a free loop device): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let device = String::from_utf8_lossy(&output.stdout).trim().to_string();
        LoopDevice {
            device: PathBuf::from(device),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}
