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

use super::open::open_after_unmount;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fs::{CheckReport, Fs, OpenOptions, StatFs};
use crate::media::{detect, Media, MediaError, OpenMode};
use crate::store::superblock::SUPERBLOCK_BLOCKS;
use crate::store::{inspect, Access, Inspection, Store, StoreError};

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
        error @ StoreError::NotCowdax(_) => {
            Failure::Operational(format!("{}: {error}", target.display()))
        }
        StoreError::Unsupported(reason) => Failure::Operational(format!(
            "{}: unsupported cowdax format ({reason}); use a newer cowdax",
            target.display()
        )),
        StoreError::Media(error) => Failure::Operational(format!("{}: {error}", target.display())),
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
    match detect::find_mount(target) {
        Ok(mount) => {
            if let Some(mount) = mount {
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
    match open_after_unmount(target, mode) {
        Ok(media) => Ok(Arc::new(media)),
        Err(
            error @ (MediaError::Open { .. } | MediaError::Io { .. } | MediaError::InUse { .. }),
        ) => Err(Failure::Operational(error.to_string())),
        Err(error) => Err(Failure::Operational(format!(
            "{}: {error}",
            target.display()
        ))),
    }
}

/// Problems in the on-media structures that `inspect` found: unreadable
/// media, a bad superblock copy, a bad checkpoint. (A journal that ends at a
/// torn or stale record is normal after a crash: replay stops there.)
fn structure_problems(inspection: &Inspection) -> Vec<String> {
    let mut problems = inspection.errors.clone();
    for report in &inspection.superblocks {
        if let Err(defect) = &report.result {
            let name = if report.slot == 0 { "A" } else { "B" };
            let block = SUPERBLOCK_BLOCKS.get(report.slot).copied().unwrap_or(0);
            problems.push(format!("superblock {name} (block {block}): {defect}"));
        }
    }
    if let Some(checkpoint) = &inspection.checkpoint {
        match (&checkpoint.descriptor, &checkpoint.payload) {
            (Err(why), _) => problems.push(format!(
                "checkpoint descriptor at block {}: {why}",
                checkpoint.descriptor_block
            )),
            (Ok(_), Some(Err(why))) => problems.push(format!(
                "checkpoint payload (descriptor at block {}): {why}",
                checkpoint.descriptor_block
            )),
            (Ok(_), _) => {}
        }
    }
    problems
}

/// What the metadata check found, and the numbers for the summary line.
struct MetadataCheck {
    report: CheckReport,
    statfs: StatFs,
}

/// Opens the filesystem read-only (the journal is replayed in DRAM only)
/// and checks every metadata invariant.
fn check_metadata(target: &Path, media: &Arc<dyn Media>) -> Result<MetadataCheck, Failure> {
    let fs = Fs::open(media.clone(), OpenOptions { read_only: true })
        .map_err(|error| classify_fs_error(target, error))?;
    let report = fs
        .scrub()
        .map_err(|error| classify_fs_error(target, error))?;
    let statfs = fs
        .statfs()
        .map_err(|error| classify_fs_error(target, error))?;
    Ok(MetadataCheck { report, statfs })
}

fn fsck(args: &FsckArgs) -> Result<i32, Failure> {
    let target = args.target.as_path();
    let name = target.display();
    let repair = args.yes || args.preen;
    let mode = if repair {
        OpenMode::ReadWrite
    } else {
        OpenMode::ReadOnly
    };
    let media = open_media(target, mode)?;
    let bar = progress_bar(4);

    // Phase 1: superblocks, journal, checkpoint. `inspect` reports every
    // defect; `Store::open` decides whether recovery can proceed.
    bar.set_message("superblocks, journal, checkpoint");
    let mut problems = structure_problems(&inspect(media.as_ref()));
    let (store, recovered) = Store::open(media.clone(), Access::ReadOnly)
        .map_err(|error| classify_store_error(target, error))?;
    let geometry = store.geometry();
    let pending_transactions = recovered.transactions.len();
    // A clean filesystem may still carry journal transactions (they are
    // replayed at every mount); only an unclean one needs recovery.
    let needs_replay = !recovered.was_clean;
    drop(recovered);
    drop(store);
    bar.inc(1);

    // Phase 2: every metadata invariant, on the state recovery produces.
    bar.set_message("metadata invariants");
    let mut metadata = check_metadata(target, &media)?;
    bar.inc(1);

    // Phase 3: repairs. Only when the metadata itself is sound: a fresh
    // checkpoint of damaged metadata would make the damage permanent.
    bar.set_message("repairs");
    let mut corrected: Vec<String> = Vec::new();
    let mut replayed = false;
    let metadata_sound = metadata.report.errors.is_empty();
    if needs_replay && !repair {
        println!(
            "{name}: not cleanly unmounted; {pending_transactions} journal transaction(s) will be replayed by the next mount"
        );
    }
    if repair && metadata_sound && (needs_replay || !problems.is_empty()) {
        replay_into_checkpoint(&media).map_err(|error| classify_fs_error(target, error))?;
        replayed = needs_replay;
        if replayed {
            println!(
                "{name}: not cleanly unmounted; replayed {pending_transactions} journal transaction(s) into a fresh checkpoint"
            );
        }
        let remaining = structure_problems(&inspect(media.as_ref()));
        for problem in problems.drain(..) {
            if !remaining.contains(&problem) {
                corrected.push(problem);
            }
        }
        problems = remaining;
    }
    bar.inc(1);

    // Phase 4: after a repair, check the result again from scratch.
    if replayed || !corrected.is_empty() {
        bar.set_message("verifying repairs");
        metadata = check_metadata(target, &media)?;
    }
    bar.inc(1);
    bar.finish_and_clear();

    problems.extend(metadata.report.errors.iter().cloned());
    for problem in &problems {
        println!("{name}: ERROR: {problem}");
    }
    for fix in &corrected {
        println!("{name}: FIXED: {fix}");
    }
    let statfs = &metadata.statfs;
    let report = &metadata.report;
    let used_blocks = statfs.total_blocks.saturating_sub(statfs.free_blocks);
    let counts = format!(
        "{} inodes, {} extents, {} shared blocks, {used_blocks}/{} blocks used, journal {} blocks",
        report.inodes,
        report.extents,
        report.shared_blocks,
        statfs.total_blocks,
        geometry.journal_blocks
    );
    let exit_code = if !problems.is_empty() {
        let hint = if repair {
            ""
        } else {
            " (run fsck -y to repair what can be repaired)"
        };
        println!(
            "{name}: ***** {} ERROR(S) LEFT UNCORRECTED *****{hint}\n{name}: {counts}",
            problems.len()
        );
        EXIT_UNCORRECTED
    } else if !corrected.is_empty() {
        println!("{name}: ***** FILESYSTEM WAS MODIFIED *****\n{name}: clean, {counts}");
        EXIT_CORRECTED
    } else {
        let how = if replayed {
            "clean (journal replayed)"
        } else {
            "clean"
        };
        println!("{name}: {how}, {counts}");
        EXIT_CLEAN
    };
    Ok(exit_code)
}

/// Opens read-write (replaying the journal), then unmounts: the final
/// checkpoint holds everything, and the superblock writes of open,
/// checkpoint and clean unmount alternate between the two copies, so a
/// damaged copy is rewritten from the good one.
fn replay_into_checkpoint(media: &Arc<dyn Media>) -> crate::fs::Result<()> {
    let fs = Fs::open(media.clone(), OpenOptions { read_only: false })?;
    fs.unmount()
}
