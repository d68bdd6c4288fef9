//! `cowdax dedupe [-r] [--min-size N] PATH…`: find blocks with identical
//! contents across (and within) files and make them share storage.
//!
//! 1. Scan: every mapped block of every file is hashed with XXH3-64 (one
//!    sequential read per file; holes and unwritten extents skipped). A
//!    partial last block is hashed over the bytes up to EOF and groups only
//!    with tails of the same length: the kernel's rules (which the daemon
//!    follows) share a partial block only where it ends both files.
//!    Memory: one 32-byte [`BlockRef`] per block.
//! 2. Group: sort by hash (O(n log n)); blocks of a group are candidates.
//!    Per group, the physical block most of them already use is the
//!    source; blocks already on it are skipped.
//! 3. Coalesce: pairs (source block → destination block) are sorted by
//!    file pair and diagonal, and consecutive blocks become one range.
//! 4. Dedupe: each range goes to the daemon's DEDUPE_RANGE ioctl, which
//!    compares the bytes under locks and shares them only if identical —
//!    the hash only proposes, it never decides. A range that differs (a
//!    hash collision or a file changed since the scan) is retried block by
//!    block.
//!
//! No step compares all pairs: the work is O(n log n) in blocks.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::df::human;
use super::ioctl_client::{parse_bytes, ClientError, CowdaxFile};
use crate::ioctl_abi::{self as abi, TokenArgs};

/// Bytes read per `pread` while hashing.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Files hashed in parallel at most.
const MAX_SCAN_THREADS: usize = 4;
/// Longest range sent in one dedupe request: bounds how long the daemon
/// holds both files' locks and how much one mismatch wastes.
const MAX_RANGE_BLOCKS: u64 = 4096;

#[derive(Args, Debug)]
#[command(after_help = "\
Blocks are compared by hash first and then byte for byte by the daemon, under
locks: only identical data is ever shared. Needs read access to every file;
a destination must be writable by you or owned by you (root: any).

Examples:
  cowdax dedupe -r /mnt/cowdax/vms
  cowdax dedupe --min-size 1M a.img b.img c.img
  cowdax dedupe -rn /mnt/cowdax      (dry run: report what would be shared)")]
pub struct DedupeArgs {
    /// Files (and with -r, directories) on one cowdax mount.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Descend into directories.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Skip files smaller than this (suffixes K, M, G, T).
    #[arg(long, value_parser = parse_bytes, default_value = "1", value_name = "N")]
    pub min_size: u64,
    /// Find duplicates and report them without changing anything.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub files: u64,
    pub bytes_scanned: u64,
    pub blocks_hashed: u64,
    /// Bytes in duplicate blocks not yet shared (what a dedupe can save).
    pub candidate_bytes: u64,
    pub bytes_deduped: u64,
    pub ranges_deduped: u64,
    pub ranges_differing: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub peak_memory_bytes: u64,
}

/// One hashed block. Sorted by (hash, tail, phys, file, block).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockRef {
    pub hash: u64,
    /// Bytes of a partial last block (0: a whole block).
    pub tail_bytes: u32,
    /// Physical block it is stored in (equal → already shared).
    pub phys_block: u64,
    /// Index into the file list.
    pub file: u32,
    pub file_block: u64,
}

/// Share `dst_file` blocks `dst_block..+len_blocks` with `src_file`'s at
/// `src_block`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupeRange {
    pub src_file: u32,
    pub src_block: u64,
    pub dst_file: u32,
    pub dst_block: u64,
    pub len_blocks: u64,
    /// Bytes of the last block when it is the partial last block of both
    /// files (0: every block whole). Nothing follows such a range.
    pub tail_bytes: u32,
}

impl DedupeRange {
    /// Bytes the range covers.
    pub fn len_bytes(&self, bs: u64) -> u64 {
        match self.tail_bytes {
            0 => self.len_blocks * bs,
            tail => (self.len_blocks - 1) * bs + u64::from(tail),
        }
    }
}

pub fn run(args: &DedupeArgs) -> i32 {
    match dedupe(args) {
        Ok(report) => {
            print!("{}", render(&report, args.dry_run));
            if report.errors > 0 {
                1
            } else {
                0
            }
        }
        Err(error) => {
            eprintln!("cowdax dedupe: {error:#}");
            1
        }
    }
}

pub fn render(report: &Report, dry_run: bool) -> String {
    let secs = report.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        report.bytes_scanned as f64 / secs / f64::from(1u32 << 30)
    } else {
        0.0
    };
    let mut out = format!(
        "scanned {} ({} bytes, {} blocks) in {} files in {:.2} s ({rate:.2} GiB/s)\n",
        human(report.bytes_scanned),
        report.bytes_scanned,
        report.blocks_hashed,
        report.files,
        secs
    );
    out.push_str(&format!(
        "duplicate blocks not yet shared: {} ({} bytes)\n",
        human(report.candidate_bytes),
        report.candidate_bytes
    ));
    if dry_run {
        out.push_str("dry run: nothing changed\n");
    } else {
        out.push_str(&format!(
            "deduped {} ({} bytes) in {} ranges; {} ranges differed; {} errors\n",
            human(report.bytes_deduped),
            report.bytes_deduped,
            report.ranges_deduped,
            report.ranges_differing,
            report.errors
        ));
    }
    out.push_str(&format!(
        "peak memory {} ({} bytes)\n",
        human(report.peak_memory_bytes),
        report.peak_memory_bytes
    ));
    out
}

/// Regular files under `paths` (directories only with `recursive`), each
/// once, at least `min_size` bytes; symlinks are not followed.
pub fn collect_files(paths: &[PathBuf], recursive: bool, min_size: u64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(path) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(error) => {
                eprintln!("cowdax dedupe: {}: {error}", path.display());
                continue;
            }
        };
        if meta.is_dir() {
            if !recursive {
                eprintln!("cowdax dedupe: {}: is a directory (use -r)", path.display());
                continue;
            }
            match std::fs::read_dir(&path) {
                Ok(entries) => {
                    let mut children: Vec<PathBuf> =
                        entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    children.sort();
                    stack.extend(children.into_iter().rev());
                }
                Err(error) => eprintln!("cowdax dedupe: {}: {error}", path.display()),
            }
        } else if meta.is_file() && meta.len() >= min_size {
            use std::os::unix::fs::MetadataExt;
            if seen.insert((meta.dev(), meta.ino())) {
                out.push(path);
            }
        }
    }
    out
}

/// Physical block of each file block, from the extent list (`None`: hole
/// or unwritten, not worth hashing).
fn phys_of_blocks(extents: &[abi::ExtentRecord], bs: u64, blocks: u64) -> Vec<Option<u64>> {
    let mut out = vec![None; usize::try_from(blocks).unwrap_or(0)];
    for e in extents {
        if e.flags & (abi::EXTENT_HOLE | abi::EXTENT_UNWRITTEN) != 0 {
            continue;
        }
        let first = e.file_offset / bs;
        for i in 0..e.length / bs {
            if let Some(slot) = out.get_mut((first + i) as usize) {
                *slot = Some(e.phys_offset / bs + i);
            }
        }
    }
    out
}

/// Hashes every mapped block of `file` (the last one up to EOF),
/// appending to `blocks`.
fn scan_file(
    file: &CowdaxFile,
    index: u32,
    blocks: &mut Vec<BlockRef>,
    progress: &ProgressBar,
) -> Result<u64, ClientError> {
    let io_error = |op, source| ClientError::Io {
        path: file.path.clone(),
        op,
        source,
    };
    // The daemon sees only what was written back.
    file.file.sync_all().map_err(|e| io_error("fsync", e))?;
    let bs = file.block_size.max(1);
    let (extents, size) = file.extents()?;
    let all_blocks = size.div_ceil(bs);
    let phys = phys_of_blocks(&extents, bs, all_blocks);
    let chunk_blocks = (READ_CHUNK_BYTES as u64 / bs).max(1);
    let mut buf = vec![0u8; (chunk_blocks * bs) as usize];
    let mut scanned = 0;
    let mut block = 0;
    while block < all_blocks {
        let n = chunk_blocks.min(all_blocks - block);
        // The bytes up to EOF: the last chunk may end in a partial block.
        let chunk_bytes = (size - block * bs).min(n * bs);
        // Skip chunks with nothing mapped (sparse files) without reading.
        let any_mapped = phys[block as usize..(block + n) as usize]
            .iter()
            .any(Option::is_some);
        if any_mapped {
            let bytes = &mut buf[..chunk_bytes as usize];
            file.file
                .read_exact_at(bytes, block * bs)
                .map_err(|e| io_error("read", e))?;
            for (i, data) in bytes.chunks(bs as usize).enumerate() {
                let file_block = block + i as u64;
                if let Some(phys_block) = phys[file_block as usize] {
                    // `data` is shorter than a block only at EOF.
                    let tail_bytes = if data.len() as u64 == bs {
                        0
                    } else {
                        data.len() as u32
                    };
                    blocks.push(BlockRef {
                        hash: xxhash_rust::xxh3::xxh3_64(data),
                        tail_bytes,
                        phys_block,
                        file: index,
                        file_block,
                    });
                }
            }
            scanned += chunk_bytes;
        }
        progress.inc(chunk_bytes);
        block += n;
    }
    Ok(scanned)
}

/// Hashes all files with a few threads (reads through FUSE wait on the
/// daemon, so two or more requests in flight keep it busy); each thread
/// takes the next file. Returns the blocks, bytes scanned and the number of
/// files that failed.
fn scan_files(files: &[PathBuf], bar: &ProgressBar) -> (Vec<BlockRef>, u64, u64) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_SCAN_THREADS)
        .min(files.len().max(1));
    let next_file = AtomicUsize::new(0);
    let per_thread: Vec<(Vec<BlockRef>, u64, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut blocks = Vec::new();
                    let (mut scanned, mut errors) = (0, 0);
                    loop {
                        let index = next_file.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(index) else {
                            break;
                        };
                        // `files.len()` fits in u32 (checked by the caller).
                        let file_index = index as u32;
                        match CowdaxFile::open(path)
                            .and_then(|f| scan_file(&f, file_index, &mut blocks, bar))
                        {
                            Ok(bytes) => scanned += bytes,
                            Err(error) => {
                                bar.suspend(|| eprintln!("cowdax dedupe: {error}"));
                                errors += 1;
                            }
                        }
                    }
                    (blocks, scanned, errors)
                })
            })
            .collect();
        workers
            .into_iter()
            // A panicked worker counts as one failed scan; its blocks are lost.
            .map(|worker| worker.join().unwrap_or_else(|_| (Vec::new(), 0, 1)))
            .collect()
    });
    let total_blocks = per_thread.iter().map(|(b, _, _)| b.len()).sum();
    let mut blocks = Vec::with_capacity(total_blocks);
    let (mut scanned, mut errors) = (0, 0);
    for (mut part, part_scanned, part_errors) in per_thread {
        blocks.append(&mut part);
        scanned += part_scanned;
        errors += part_errors;
    }
    (blocks, scanned, errors)
}

/// Groups equal hashes and proposes one range per destination block:
/// source = the physical block most members already use.
pub fn propose_pairs(blocks: &mut [BlockRef]) -> Vec<DedupeRange> {
    blocks.sort_unstable();
    let mut pairs = Vec::new();
    for group in blocks.chunk_by(|a, b| (a.hash, a.tail_bytes) == (b.hash, b.tail_bytes)) {
        if group.len() < 2 {
            continue;
        }
        // Within the group, entries are sorted by phys: find the longest run.
        let mut best = &group[..1];
        for run in group.chunk_by(|a, b| a.phys_block == b.phys_block) {
            if run.len() > best.len() {
                best = run;
            }
        }
        let src = best[0];
        for dst in group {
            if dst.phys_block == src.phys_block {
                continue;
            }
            pairs.push(DedupeRange {
                src_file: src.file,
                src_block: src.file_block,
                dst_file: dst.file,
                dst_block: dst.file_block,
                len_blocks: 1,
                tail_bytes: src.tail_bytes,
            });
        }
    }
    pairs
}

/// Joins pairs that continue each other in both files into ranges of at
/// most [`MAX_RANGE_BLOCKS`]; ranges within one file never overlap.
pub fn coalesce(mut pairs: Vec<DedupeRange>) -> Vec<DedupeRange> {
    let diagonal = |p: &DedupeRange| p.dst_block.wrapping_sub(p.src_block);
    pairs.sort_unstable_by_key(|p| (p.src_file, p.dst_file, diagonal(p), p.src_block));
    let mut out: Vec<DedupeRange> = Vec::with_capacity(pairs.len());
    for pair in pairs {
        if let Some(last) = out.last_mut() {
            let continues = last.tail_bytes == 0
                && last.src_file == pair.src_file
                && last.dst_file == pair.dst_file
                && last.src_block + last.len_blocks == pair.src_block
                && last.dst_block + last.len_blocks == pair.dst_block;
            let room = last.len_blocks < MAX_RANGE_BLOCKS
                && (last.src_file != last.dst_file
                    || last.len_blocks < last.src_block.abs_diff(last.dst_block));
            if continues && room {
                last.len_blocks += 1;
                last.tail_bytes = pair.tail_bytes;
                continue;
            }
        }
        out.push(pair);
    }
    out
}

/// Open files of the current range, reused while consecutive ranges
/// name the same files.
struct OpenPair {
    src: Option<(u32, CowdaxFile)>,
    dst: Option<(u32, CowdaxFile, TokenArgs)>,
}

fn open_src(files: &[PathBuf], index: u32) -> Result<CowdaxFile, ClientError> {
    CowdaxFile::open(&files[index as usize])
}

fn open_dst(files: &[PathBuf], index: u32) -> Result<(CowdaxFile, TokenArgs), ClientError> {
    let file = CowdaxFile::open(&files[index as usize])?;
    let token = file.token()?;
    Ok((file, token))
}

/// Sends one range; on a mismatch of a multi-block range, retries block by
/// block (a hash collision in one block must not lose the others).
fn dedupe_range(
    open: &mut OpenPair,
    files: &[PathBuf],
    range: &DedupeRange,
    bs: u64,
    report: &mut Report,
) -> Result<(), ClientError> {
    if open.src.as_ref().map(|(i, _)| *i) != Some(range.src_file) {
        open.src = Some((range.src_file, open_src(files, range.src_file)?));
    }
    if open.dst.as_ref().map(|(i, _, _)| *i) != Some(range.dst_file) {
        let (file, token) = open_dst(files, range.dst_file)?;
        open.dst = Some((range.dst_file, file, token));
    }
    let (Some((_, src)), Some((_, _, token))) = (&open.src, &open.dst) else {
        return Ok(());
    };
    let outcome = src.dedupe_into(
        token,
        range.src_block * bs,
        range.dst_block * bs,
        range.len_bytes(bs),
    )?;
    match outcome {
        Some(bytes) => {
            report.bytes_deduped += bytes;
            report.ranges_deduped += 1;
        }
        None if range.len_blocks > 1 => {
            for i in 0..range.len_blocks {
                let last = i + 1 == range.len_blocks;
                let one = DedupeRange {
                    src_block: range.src_block + i,
                    dst_block: range.dst_block + i,
                    len_blocks: 1,
                    tail_bytes: if last { range.tail_bytes } else { 0 },
                    ..*range
                };
                dedupe_range(open, files, &one, bs, report)?;
            }
        }
        None => report.ranges_differing += 1,
    }
    Ok(())
}

fn progress_bar(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

fn peak_memory_bytes() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|usage| u64::try_from(usage.max_rss()).unwrap_or(0) * 1024)
        .unwrap_or(0)
}

pub fn dedupe(args: &DedupeArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report::default();
    let candidates = collect_files(&args.paths, args.recursive, args.min_size.max(1));
    // Keep only files of one cowdax mount: the first one found.
    let mut files: Vec<PathBuf> = Vec::new();
    let mut mount: Option<(u64, u64)> = None;
    let mut total_bytes = 0u64;
    for path in candidates {
        match CowdaxFile::open(&path) {
            Ok(file) => {
                let this = (file.mount_id, file.block_size);
                if mount.is_none() {
                    mount = Some(this);
                }
                if mount != Some(this) {
                    eprintln!(
                        "cowdax dedupe: {}: on another cowdax mount, skipped",
                        path.display()
                    );
                    continue;
                }
                total_bytes += file.file.metadata().map(|m| m.len()).unwrap_or(0);
                files.push(path);
            }
            Err(error) => {
                eprintln!("cowdax dedupe: {error}");
                report.errors += 1;
            }
        }
    }
    let Some((_, bs)) = mount else {
        anyhow::bail!(
            "no regular files of at least {} bytes on a cowdax mount",
            args.min_size
        );
    };
    let file_count = u32::try_from(files.len())
        .map_err(|_| anyhow::anyhow!("too many files ({})", files.len()))?;
    report.files = u64::from(file_count);

    let bar = progress_bar(total_bytes, "hashing");
    let (mut blocks, scanned, scan_errors) = scan_files(&files, &bar);
    report.bytes_scanned = scanned;
    report.errors += scan_errors;
    bar.finish_and_clear();
    report.blocks_hashed = blocks.len() as u64;

    let pairs = propose_pairs(&mut blocks);
    drop(blocks);
    report.candidate_bytes = pairs.iter().map(|p| p.len_bytes(bs)).sum();
    let ranges = coalesce(pairs);

    if !args.dry_run {
        let bar = progress_bar(report.candidate_bytes, "deduping");
        let mut open = OpenPair {
            src: None,
            dst: None,
        };
        let mut refused_dst: HashSet<u32> = HashSet::new();
        for range in &ranges {
            if refused_dst.contains(&range.dst_file) {
                continue;
            }
            if let Err(error) = dedupe_range(&mut open, &files, range, bs, &mut report) {
                report.errors += 1;
                if matches!(error.errno(), Some(libc::EPERM | libc::EACCES)) {
                    refused_dst.insert(range.dst_file);
                    bar.suspend(|| {
                        eprintln!(
                            "cowdax dedupe: {}: {error}; not deduping into it",
                            files[range.dst_file as usize].display()
                        )
                    });
                } else {
                    bar.suspend(|| eprintln!("cowdax dedupe: {error}"));
                }
                // Reopen on the next range: the failing handle may be stale.
                open = OpenPair {
                    src: None,
                    dst: None,
                };
            }
            bar.inc(range.len_bytes(bs));
        }
        bar.finish_and_clear();
    }
    report.elapsed = started.elapsed();
    report.peak_memory_bytes = peak_memory_bytes();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(hash: u64, phys_block: u64, file: u32, file_block: u64) -> BlockRef {
        BlockRef {
            hash,
            tail_bytes: 0,
            phys_block,
            file,
            file_block,
        }
    }

    #[test]
    fn identical_files_coalesce_into_one_range_per_destination() {
        // Files 0, 1 and 2 hold the same 8 blocks at different places.
        let mut blocks = Vec::new();
        for b in 0..8u64 {
            blocks.push(block(100 + b, 1000 + b, 0, b));
            blocks.push(block(100 + b, 2000 + b, 1, b));
            blocks.push(block(100 + b, 3000 + b, 2, b));
        }
        let ranges = coalesce(propose_pairs(&mut blocks));
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        for r in &ranges {
            assert_eq!((r.src_file, r.src_block, r.len_blocks), (0, 0, 8));
            assert_eq!(r.dst_block, 0);
        }
    }

    #[test]
    fn blocks_already_shared_are_not_proposed_and_the_majority_is_the_source() {
        // Three files already share phys 50; a fourth has its own copy.
        let mut blocks = vec![
            block(7, 90, 3, 0),
            block(7, 50, 0, 0),
            block(7, 50, 1, 0),
            block(7, 50, 2, 0),
            block(8, 60, 0, 1),
        ];
        let pairs = propose_pairs(&mut blocks);
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].dst_file, pairs[0].dst_block), (3, 0));
        assert_eq!(blocks.iter().filter(|b| b.phys_block == 50).count(), 3);
        assert_eq!(pairs[0].src_file, 0);
    }

    #[test]
    fn ranges_within_one_file_never_overlap() {
        // One file whose blocks 0..4 equal its blocks 2..6 (content with
        // a period of two blocks).
        let pairs: Vec<DedupeRange> = (0..4)
            .map(|b| DedupeRange {
                src_file: 0,
                src_block: b,
                dst_file: 0,
                dst_block: b + 2,
                len_blocks: 1,
                tail_bytes: 0,
            })
            .collect();
        let ranges = coalesce(pairs);
        for r in &ranges {
            assert!(r.len_blocks <= r.src_block.abs_diff(r.dst_block), "{r:?}");
        }
        assert_eq!(ranges.iter().map(|r| r.len_blocks).sum::<u64>(), 4);
    }

    #[test]
    fn a_partial_last_block_pairs_only_with_an_equal_tail_and_ends_its_range() {
        // Files 0 and 1: two whole blocks and a 100-byte tail, identical;
        // file 2 has a 200-byte tail with a colliding hash.
        let tail = |hash, phys, file, file_block, tail_bytes| BlockRef {
            tail_bytes,
            ..block(hash, phys, file, file_block)
        };
        let mut blocks = vec![
            block(1, 10, 0, 0),
            block(2, 11, 0, 1),
            tail(3, 12, 0, 2, 100),
            block(1, 20, 1, 0),
            block(2, 21, 1, 1),
            tail(3, 22, 1, 2, 100),
            tail(3, 30, 2, 0, 200),
        ];
        let ranges = coalesce(propose_pairs(&mut blocks));
        assert_eq!(ranges.len(), 1, "{ranges:?}");
        let r = ranges[0];
        assert_eq!((r.src_block, r.dst_block, r.len_blocks), (0, 0, 3));
        assert_eq!(r.tail_bytes, 100);
        assert_eq!(r.len_bytes(4096), 2 * 4096 + 100);
        // Nothing continues a range that ends in a tail.
        let after = DedupeRange {
            src_block: 3,
            dst_block: 3,
            len_blocks: 1,
            tail_bytes: 0,
            ..r
        };
        assert_eq!(coalesce(vec![r, after]).len(), 2);
    }

    #[test]
    fn long_runs_are_split_at_the_range_limit() {
        let pairs: Vec<DedupeRange> = (0..MAX_RANGE_BLOCKS + 5)
            .map(|b| DedupeRange {
                src_file: 0,
                src_block: b,
                dst_file: 1,
                dst_block: b,
                len_blocks: 1,
                tail_bytes: 0,
            })
            .collect();
        let ranges = coalesce(pairs);
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].len_blocks, MAX_RANGE_BLOCKS);
        assert_eq!(ranges[1].src_block, MAX_RANGE_BLOCKS);
    }

    #[test]
    fn holes_and_unwritten_extents_are_not_hashed() {
        let extents = [
            abi::ExtentRecord {
                file_offset: 0,
                phys_offset: 40960,
                length: 8192,
                flags: 0,
            },
            abi::ExtentRecord {
                file_offset: 8192,
                phys_offset: 0,
                length: 4096,
                flags: abi::EXTENT_HOLE,
            },
            abi::ExtentRecord {
                file_offset: 12288,
                phys_offset: 81920,
                length: 4096,
                flags: abi::EXTENT_UNWRITTEN,
            },
        ];
        assert_eq!(
            phys_of_blocks(&extents, 4096, 4),
            vec![Some(10), Some(11), None, None]
        );
    }

    #[test]
    fn collecting_needs_r_for_directories_and_skips_small_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("big"), vec![1u8; 8192]).expect("write");
        std::fs::write(sub.join("small"), b"x").expect("write");
        let found = collect_files(&[dir.path().to_path_buf()], true, 4096);
        assert_eq!(found, vec![sub.join("big")]);
        assert!(collect_files(&[dir.path().to_path_buf()], false, 4096).is_empty());
    }
}
