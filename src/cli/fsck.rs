//! `cowdax fsck` / `fsck.cowdax`: check (and with `-y`/`-p` repair) a cowdax
//! filesystem. Exit codes follow fsck(8).
//!
//! Phases: (1) superblocks, journal and checkpoint, through the store's
//! validation on open; (2) every metadata invariant of DESIGN.md §5, through
//! `Fs::open` (which replays the journal in DRAM) and `Fs::scrub`;
//! (3) with `-y`/`-p`, repairs: the journal is replayed into a fresh
//! checkpoint and the filesystem marked clean, which also rewrites the
//! superblock copies. With `-n` the target is opened read-only and nothing
//! is ever written.

use std::fs;
use std::io::{self, IsTerminal};
use std::path::Path;
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::probe;
use crate::fs::{Fs, OpenOptions};
use crate::media::{Media, MediaError, MmapMedia, OpenMode};
use crate::store::{Access, Store, StoreError};

/// fsck(8) exit codes.
pub const EXIT_CLEAN: i32 = 0;
pub const EXIT_CORRECTED: i32 = 1;
pub const EXIT_UNCORRECTED: i32 = 4;
pub const EXIT_OPERATIONAL: i32 = 8;
pub const EXIT_USAGE: i32 = 16;

#[derive(Args, Debug)]
#[command(after_help = "\
Exit codes (as fsck(8)): 0 clean, 1 errors corrected, 4 errors left uncorrected,
8 operational error (missing target, not cowdax, mounted or in use), 16 usage error.

Examples:
  cowdax fsck -n /tmp/cowdax.img     check only; never writes
  cowdax fsck -y /dev/pmem0          check and repair what can be repaired safely
  fsck.cowdax -p /dev/pmem0          the same, as fsck(8) calls it at boot")]
pub struct FsckArgs {
    /// Check only: open read-only, answer "no" to every repair, never write.
    #[arg(short = 'n', conflicts_with_all = ["yes", "preen"])]
    pub no_changes: bool,
    /// Repair everything that can be repaired safely, without asking.
    #[arg(short = 'y', conflicts_with = "preen")]
    pub yes: bool,
    /// Preen: repair automatically what is safe (same as -y for cowdax).
    #[arg(short = 'p', short_alias = 'a')]
    pub preen: bool,
    /// Check even if the filesystem looks clean (cowdax always checks fully).
    #[arg(short = 'f')]
    pub force: bool,
    /// Image file or device holding the filesystem.
    #[arg(value_name = "TARGET")]
    pub target: std::path::PathBuf,
}

/// Outcome of a failed step: an operational error (exit 8) or a damaged
/// filesystem (exit 4).
enum Failure {
    Operational(String),
    Damaged(String),
}

/// Runs fsck; returns the fsck(8) exit code.
pub fn run(args: &FsckArgs) -> i32 {
    let target = args.target.as_path();
    match fsck(args) {
        Ok(outcome) => outcome,
        Err(Failure::Operational(message)) => {
            eprintln!("fsck.cowdax: {message}");
            EXIT_OPERATIONAL
        }
        Err(Failure::Damaged(message)) => {
            eprintln!("fsck.cowdax: {}: {message}", target.display());
            println!(
                "{}: ***** UNCORRECTED ERRORS: the filesystem cannot be checked further *****",
                target.display()
            );
            EXIT_UNCORRECTED
        }
    }
}

fn progress_bar(steps: u64) -> ProgressBar {
    if io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    }
}

/// Classifies a store error met while opening: a foreign or unreadable
/// target is operational, a damaged cowdax filesystem is an error found.
fn classify_store_error(target: &Path, error: StoreError) -> Failure {
    match error {
        StoreError::NotCowdax(detail) => Failure::Operational(format!(
            "{}: not a cowdax filesystem{detail}; check the device name, or run `cowdax mkfs` to create one",
            target.display()
        )),
        StoreError::Unsupported(reason) => Failure::Operational(format!(
            "{}: unsupported cowdax format ({reason}); use a newer cowdax",
            target.display()
        )),
        StoreError::Media(error) => {
            Failure::Operational(format!("{}: {error}", target.display()))
        }
        other => Failure::Damaged(other.to_string()),
    }
}

fn classify_fs_error(target: &Path, error: crate::fs::Error) -> Failure {
    match error {
        crate::fs::Error::Store(store_error) => classify_store_error(target, store_error),
        other => Failure::Damaged(other.to_string()),
    }
}

fn open_media(target: &Path, mode: OpenMode) -> Result<Arc<dyn Media>, Failure> {
    match fs::metadata(target) {
        Ok(metadata) if metadata.is_dir() => {
            return Err(Failure::Operational(format!(
                "{} is a directory; give the image file or device that holds the filesystem",
                target.display()
            )));
        }
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(Failure::Operational(format!(
                "{}: no such file or device; check the path",
                target.display()
            )));
        }
        Err(error) => {
            return Err(Failure::Operational(format!(
                "{}: {error}",
                target.display()
            )));
        }
    }
    match probe::mounts_using(target) {
        Ok(uses) => {
            if let Some(mount) = uses.first() {
                return Err(Failure::Operational(format!(
                    "{} is mounted on {}; unmount it first (umount {})",
                    target.display(),
                    mount.mount_point.display(),
                    mount.mount_point.display()
                )));
            }
        }
        Err(error) => {
            return Err(Failure::Operational(format!(
                "cannot tell whether {} is mounted: {error}",
                target.display()
            )));
        }
    }
    match MmapMedia::open(target, mode) {
        Ok(media) => Ok(Arc::new(media)),
        Err(error @ MediaError::Open { .. }) | Err(error @ MediaError::Io { .. }) => {
            Err(Failure::Operational(error.to_string()))
        }
        Err(error) => Err(Failure::Operational(format!(
            "{}: {error}",
            target.display()
        ))),
    }
}

fn fsck(args: &FsckArgs) -> Result<i32, Failure> {
    let target = args.target.as_path();
    let repair = args.yes || args.preen;
    let mode = if repair {
        OpenMode::ReadWrite
    } else {
        OpenMode::ReadOnly
    };
    let media = open_media(target, mode)?;
    let bar = progress_bar(3);

    // Phase 1: superblocks, journal, checkpoint.
    bar.set_message("superblocks, journal, checkpoint");
    let (store, recovered) = Store::open(media.clone(), Access::ReadOnly)
        .map_err(|error| classify_store_error(target, error))?;
    let geometry = store.geometry();
    let pending_transactions = recovered.transactions.len();
    let was_clean = recovered.was_clean;
    drop(recovered);
    drop(store);
    bar.inc(1);

    // Phase 2: every metadata invariant, on the state recovery would produce.
    bar.set_message("metadata invariants");
    let fs = Fs::open(media.clone(), OpenOptions { read_only: true })
        .map_err(|error| classify_fs_error(target, error))?;
    let report = fs
        .scrub()
        .map_err(|error| classify_fs_error(target, error))?;
    let statfs = fs
        .statfs()
        .map_err(|error| classify_fs_error(target, error))?;
    drop(fs);
    bar.inc(1);

    let problems: &[String] = &report.errors;
    let metadata_damaged = !problems.is_empty();
    let needs_replay = !was_clean || pending_transactions > 0;

    // Phase 3: repairs.
    bar.set_message("repairs");
    // Fixes of errors (exit 1). A journal replay alone is normal recovery
    // after a crash, not an error: it is reported but keeps exit 0.
    let mut corrected: Vec<String> = Vec::new();
    let mut replayed = false;
    if needs_replay {
        let note = format!(
            "not cleanly unmounted; {pending_transactions} journal transaction(s) to replay"
        );
        if repair && !metadata_damaged {
            replay_into_checkpoint(&media).map_err(|error| classify_fs_error(target, error))?;
            replayed = true;
            println!(
                "{}: {note}: replayed into a fresh checkpoint",
                target.display()
            );
        } else {
            println!("{}: {note} (the next mount replays them)", target.display());
        }
    }
    bar.inc(1);
    bar.finish_and_clear();

    for problem in problems {
        println!("{}: ERROR: {problem}", target.display());
    }
    for fix in &corrected {
        println!("{}: FIXED: {fix}", target.display());
    }
    let used_blocks = statfs.total_blocks.saturating_sub(statfs.free_blocks);
    let used_inodes = statfs.total_inodes.saturating_sub(statfs.free_inodes);
    let counts = format!(
        "{} inodes ({used_inodes} of {} in use), {} extents, {} shared blocks, {used_blocks}/{} blocks, journal {} blocks",
        report.inodes,
        statfs.total_inodes,
        report.extents,
        report.shared_blocks,
        statfs.total_blocks,
        geometry.journal_blocks
    );
    let exit_code = if !problems.is_empty() {
        println!(
            "{}: ***** {} ERROR(S) LEFT UNCORRECTED ***** {counts}",
            target.display(),
            report.errors.len()
        );
        EXIT_UNCORRECTED
    } else if !corrected.is_empty() {
        println!(
            "{}: ***** FILESYSTEM WAS MODIFIED ***** {counts}",
            target.display()
        );
        EXIT_CORRECTED
    } else {
        let how = if replayed {
            "clean (journal replayed)"
        } else {
            "clean"
        };
        println!("{}: {how}, {counts}", target.display());
        EXIT_CLEAN
    };
    Ok(exit_code)
}

/// Opens read-write (replaying the journal), then unmounts: the final
/// checkpoint holds everything and the superblocks are rewritten clean.
fn replay_into_checkpoint(media: &Arc<dyn Media>) -> crate::fs::Result<()> {
    let fs = Fs::open(media.clone(), OpenOptions { read_only: false })?;
    fs.unmount()
}
