//! Helpers of the reflink integration tests: the cowdax tools, the
//! LD_PRELOAD shim, file contents and usage numbers on a real mount.
//! Used together with `fuse_support` (mount, unmount, clean check).

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use cowdax::cli::ioctl_client::CowdaxFile;
use cowdax::ioctl_abi::{self as abi, ExtentRecord, UsageArgs};

use crate::support::{cowdax, COWDAX};

pub const BLOCK: u64 = 4096;

/// Deterministic pseudo-random bytes (xorshift), distinct per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `len` pattern bytes to `path` in 1 MiB pieces and fsyncs.
pub fn write_pattern_file(path: &Path, len: u64, seed: u64) {
    let mut file = std::fs::File::create(path).expect("create file");
    let chunk = 1 << 20;
    let mut done = 0u64;
    let mut piece = 0u64;
    while done < len {
        let n = (len - done).min(chunk);
        file.write_all(&pattern(n as usize, seed.wrapping_add(piece)))
            .expect("write file");
        done += n;
        piece += 1;
    }
    file.sync_all().expect("fsync file");
}

/// True when both files have equal contents (compared in 1 MiB pieces).
pub fn same_contents(a: &Path, b: &Path) -> bool {
    let fa = std::fs::File::open(a).expect("open a");
    let fb = std::fs::File::open(b).expect("open b");
    let (la, lb) = (
        fa.metadata().expect("stat a").len(),
        fb.metadata().expect("stat b").len(),
    );
    if la != lb {
        return false;
    }
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < la {
        let n = (la - pos).min(1 << 20) as usize;
        fa.read_exact_at(&mut ba[..n], pos).expect("read a");
        fb.read_exact_at(&mut bb[..n], pos).expect("read b");
        if ba[..n] != bb[..n] {
            return false;
        }
        pos += n as u64;
    }
    true
}

pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let file = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).expect("read");
    buf
}

pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for write");
    file.write_all_at(data, offset).expect("write");
    file.sync_all().expect("fsync");
}

/// Usage of the mount through the private ioctl.
pub fn usage(mnt: &Path) -> UsageArgs {
    CowdaxFile::open(mnt)
        .and_then(|f| f.usage())
        .expect("usage ioctl")
}

/// Extents (holes excluded) through the private ioctl.
pub fn mapped_extents(path: &Path) -> Vec<ExtentRecord> {
    let (extents, _) = CowdaxFile::open(path)
        .and_then(|f| f.extents())
        .expect("extents ioctl");
    extents
        .into_iter()
        .filter(|e| e.flags & abi::EXTENT_HOLE == 0)
        .collect()
}

/// Bytes of `path` in shared extents.
pub fn shared_bytes(path: &Path) -> u64 {
    mapped_extents(path)
        .iter()
        .filter(|e| e.flags & abi::EXTENT_SHARED != 0)
        .map(|e| e.length)
        .sum()
}

/// Runs `cowdax ARGS…` and returns its output (not checked).
pub fn tool(args: &[&str]) -> Output {
    cowdax().args(args).output().expect("run cowdax")
}

/// Runs `cowdax ARGS…`, asserting success; returns stdout.
pub fn tool_ok(args: &[&str]) -> String {
    let output = tool(args);
    assert!(
        output.status.success(),
        "cowdax {args:?} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The LD_PRELOAD shim, built on first use next to the cowdax binary
/// (`cargo test` of the main package does not build workspace cdylibs).
pub fn preload_lib() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target_dir = Path::new(COWDAX).parent().expect("binary dir");
            let lib = target_dir.join("libcowdax_preload.so");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .args(["build", "-p", "cowdax-preload", "--manifest-path"])
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
            // Same profile as this test binary: target/<profile>/cowdax.
            if target_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build -p cowdax-preload");
            assert!(status.success(), "building the preload shim failed");
            assert!(lib.exists(), "{} missing after build", lib.display());
            lib
        })
        .clone()
}

/// A command with the shim preloaded.
pub fn with_shim(program: &str) -> Command {
    let mut command = Command::new(program);
    command.env("LD_PRELOAD", preload_lib());
    command
}

/// Runs `command`, asserting success; returns stdout.
pub fn run_checked(command: &mut Command) -> String {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}
