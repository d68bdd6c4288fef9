//! A directory listing taken while entries are renamed inside the same
//! directory returns every entry that stays in it exactly once, and no name
//! twice (issue 19): a reader lists with `std::fs::read_dir` (getdents64)
//! while a renamer moves entries around on a real mount.

mod fuse_support;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fuse_support::*;

const IMAGE_BYTES: u64 = 256 << 20;
/// As many names as the conformance run's directory held.
const FILES: usize = 15_000;
/// Listings per test; each is a full pass over the directory.
const PASSES: usize = 25;
/// The renamer must have done at least this many renames while the
/// listings ran (else the test proves nothing). A pass takes tens of ms and
/// a rename tens of µs, so this is far below what one pass sees.
const MIN_RENAMES: u64 = 200;
/// Bound on the whole test, in case the renamer starves the reader.
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// Visits the files in an order unrelated to creation order (coprime to FILES).
const STRIDE: usize = 7_919;

fn name(i: usize) -> String {
    format!("f{i:05}")
}

/// A mounted image with directory `d` holding `FILES` files f00000….
fn populated() -> (TestFs, PathBuf) {
    let mut t = TestFs::new(IMAGE_BYTES);
    t.mount("");
    let dir = t.path("d");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..FILES {
        File::create(dir.join(name(i))).unwrap();
    }
    (t, dir)
}

/// One full listing: every name with how often it was returned.
fn list(dir: &Path) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        *seen.entry(name).or_insert(0) += 1;
    }
    seen
}

fn assert_no_name_twice(pass: usize, seen: &HashMap<String, usize>) {
    let mut twice: Vec<_> = seen
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(name, _)| name)
        .collect();
    twice.sort();
    assert!(
        twice.is_empty(),
        "pass {pass}: {} names seen twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(8)]
    );
}

/// Runs `renamer` in a thread (it is told to stop through the flag, and
/// counts its renames) while this thread lists `dir` `PASSES` times, checking
/// each pass with `check`. Returns the renames done during the listings.
fn list_while_renaming(
    dir: &Path,
    renamer: impl FnOnce(&AtomicBool, &AtomicU64) + Send + 'static,
    mut check: impl FnMut(usize, &HashMap<String, usize>),
) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let renames = Arc::new(AtomicU64::new(0));
    let handle = {
        let (stop, renames) = (stop.clone(), renames.clone());
        thread::spawn(move || renamer(&stop, &renames))
    };
    // Let the renamer get going before the first pass.
    while renames.load(Ordering::Relaxed) < 10 && !handle.is_finished() {
        thread::sleep(Duration::from_millis(1));
    }
    let start_renames = renames.load(Ordering::Relaxed);
    let start = Instant::now();
    let (mut failure, mut passes) = (None, 0);
    for pass in 0..PASSES {
        if start.elapsed() > TIME_LIMIT {
            break;
        }
        let seen = list(dir);
        passes += 1;
        if let Err(panic) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(pass, &seen)))
        {
            failure = Some(panic);
            break;
        }
    }
    let done = renames.load(Ordering::Relaxed) - start_renames;
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("renamer thread");
    eprintln!("{done} renames during {passes} listings");
    if let Some(panic) = failure {
        std::panic::resume_unwind(panic);
    }
    done
}

/// a → a.tmp → a, over and over, one file after another: the directory
/// always holds `FILES` entries, one per file, under either name. Every
/// pass must return each file exactly once (never both of its names, never
/// one name twice): 15,001 names came back before the fix.
#[test]
fn listing_returns_each_entry_once_while_entries_are_renamed_in_place() {
    let (t, dir) = populated();
    let renamer_dir = dir.clone();
    let renames = list_while_renaming(
        &dir,
        move |stop, renames| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let a = renamer_dir.join(name(i));
                let tmp = renamer_dir.join(format!("{}.tmp", name(i)));
                std::fs::rename(&a, &tmp).unwrap();
                std::fs::rename(&tmp, &a).unwrap();
                renames.fetch_add(2, Ordering::Relaxed);
                i = (i + STRIDE) % FILES;
            }
        },
        |pass, seen| {
            assert_no_name_twice(pass, seen);
            let mut per_file = vec![0usize; FILES];
            for name in seen.keys() {
                let index: usize = name
                    .strip_prefix('f')
                    .and_then(|n| n.strip_suffix(".tmp").or(Some(n)))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("pass {pass}: unexpected name {name}"));
                per_file[index] += 1;
            }
            let missing = per_file.iter().filter(|&&n| n == 0).count();
            let doubled = per_file.iter().filter(|&&n| n > 1).count();
            assert_eq!(
                (seen.len(), missing, doubled),
                (FILES, 0, 0),
                "pass {pass}: {} names for {FILES} files ({missing} files missing, \
                 {doubled} under both names)",
                seen.len()
            );
        },
    );
    assert!(
        renames >= MIN_RENAMES,
        "only {renames} renames ran during the listings"
    );
    t.finish();
}

/// The editor's save: write a fresh temporary file, rename it over the
/// file. Each f-name always exists, so every pass must return it exactly
/// once. Temporary names come and go (each is new, so several may be seen
/// in one pass, but none twice).
#[test]
fn listing_returns_each_name_once_while_files_are_replaced_by_rename() {
    let (t, dir) = populated();
    let renamer_dir = dir.clone();
    let renames = list_while_renaming(
        &dir,
        move |stop, renames| {
            let (mut i, mut serial) = (0, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let tmp = renamer_dir.join(format!("t{serial}"));
                File::create(&tmp).unwrap();
                std::fs::rename(&tmp, renamer_dir.join(name(i))).unwrap();
                renames.fetch_add(1, Ordering::Relaxed);
                i = (i + STRIDE) % FILES;
                serial += 1;
            }
        },
        |pass, seen| {
            assert_no_name_twice(pass, seen);
            let files = seen.keys().filter(|n| n.starts_with('f')).count();
            assert_eq!(files, FILES, "pass {pass}: f-names returned");
        },
    );
    assert!(
        renames >= MIN_RENAMES,
        "only {renames} renames ran during the listings"
    );
    t.finish();
}
