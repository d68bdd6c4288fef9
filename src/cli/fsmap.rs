//! `cowdax fsmap MOUNTPOINT [--range START:LEN]`: the owner map made
//! visible — every physical range in use with each file (path and offset)
//! that maps it, like `xfs_io -c fsmap`. A block shared by reflinks or
//! dedupe appears once per owner. Root only, as the owner map reveals every
//! file's layout.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::Args;

use super::ioctl_client::{ClientError, CowdaxFile};
use crate::ioctl_abi::FsmapRecord;
use crate::media::detect;
use crate::size::parse_bytes_arg;

/// Physical bytes asked for per query: bounds the daemon's work per page.
const WINDOW_BYTES: u64 = 64 << 20;
/// Paths printed per inode.
const PATHS_PER_INODE: u32 = 4;

#[derive(Args, Debug)]
#[command(after_help = "\
Columns: physical byte range, its length, the owning inode, the byte offset in
that file, and the file's path(s). Ranges shared by several files are listed
once per owner.

Examples:
  cowdax fsmap /mnt/cowdax
  cowdax fsmap /mnt/cowdax --range 1G:64M")]
pub struct FsmapArgs {
    /// The mount point (or any file on the mount).
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Physical byte range START:LEN (suffixes K, M, G, T); default: all.
    #[arg(long, value_parser = parse_range, value_name = "START:LEN")]
    pub range: Option<(u64, u64)>,
}

/// Parses `START:LEN`.
pub fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (start, len) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not START:LEN"))?;
    Ok((parse_bytes_arg(start)?, parse_bytes_arg(len)?))
}

pub fn run(args: &FsmapArgs) -> i32 {
    match fsmap(args) {
        Ok(()) => 0,
        Err(error) => {
            if error.errno() == Some(libc::EPERM) {
                eprintln!("cowdax fsmap: {error} (the owner map is readable by root only)");
            } else {
                eprintln!("cowdax fsmap: {error}");
            }
            1
        }
    }
}

/// Joins pieces the window boundaries split: same inode, contiguous in
/// both physical and file offsets. `records` is in query order.
pub fn merge_split_pieces(records: &mut Vec<FsmapRecord>, next: &[FsmapRecord], boundary: u64) {
    // Pieces of the previous windows that end exactly at the boundary.
    let mut open: HashMap<(u64, u64), usize> = HashMap::new();
    for (index, rec) in records.iter().enumerate().rev() {
        if rec.phys_offset + rec.length == boundary {
            open.insert((rec.ino, rec.file_offset + rec.length), index);
        } else if rec.phys_offset + rec.length < boundary {
            // Sorted by start: earlier records cannot reach the boundary
            // unless they are long; keep scanning only the recent tail.
            if boundary - (rec.phys_offset + rec.length) > WINDOW_BYTES {
                break;
            }
        }
    }
    for rec in next {
        if rec.phys_offset == boundary {
            if let Some(&index) = open.get(&(rec.ino, rec.file_offset)) {
                records[index].length += rec.length;
                continue;
            }
        }
        records.push(*rec);
    }
}

fn fsmap(args: &FsmapArgs) -> Result<(), ClientError> {
    let mount = CowdaxFile::open(&args.mountpoint)?;
    let usage = mount.usage()?;
    let bs = usage.block_size.max(1);
    let (start, len) = args.range.unwrap_or((0, usage.media_bytes));
    let start = start / bs * bs;
    let end = start
        .saturating_add(len)
        .min(usage.media_bytes)
        .div_ceil(bs)
        .saturating_mul(bs);
    let mut records: Vec<FsmapRecord> = Vec::new();
    let mut window = start;
    while window < end {
        let window_len = WINDOW_BYTES.min(end - window);
        let page = mount.fsmap_window(window, window_len)?;
        merge_split_pieces(&mut records, &page, window);
        window += window_len;
    }
    let mut paths: HashMap<u64, String> = HashMap::new();
    let root = mount_root(&args.mountpoint);
    let shared = shared_flags(&records);
    println!(
        "{:>29} {:>12} {:>10} {:>14} {:>6}  PATH",
        "PHYSICAL RANGE (bytes)", "LENGTH", "INODE", "FILE OFFSET", "SHARED"
    );
    for (rec, shared) in records.iter().zip(&shared) {
        let path_text =
            paths
                .entry(rec.ino)
                .or_insert_with(|| match mount.paths(rec.ino, PATHS_PER_INODE) {
                    Ok((found, more)) => render_paths(&root, &found, more),
                    Err(error) => format!("(no path: {error})"),
                });
        println!(
            "{:>14}..{:<13} {:>12} {:>10} {:>14} {:>6}  {}",
            rec.phys_offset,
            rec.phys_offset + rec.length,
            rec.length,
            rec.ino,
            rec.file_offset,
            if *shared { "yes" } else { "no" },
            path_text
        );
    }
    let owners: std::collections::HashSet<u64> = records.iter().map(|r| r.ino).collect();
    println!(
        "{} owner records, {} files, {} physical bytes in {}..{}",
        records.len(),
        owners.len(),
        physical_bytes(&records),
        start,
        end
    );
    Ok(())
}

/// MOUNTPOINT's canonical path when it is the root of a mount, so that
/// owners print as absolute paths; `None` otherwise (paths then print
/// relative to the mount root, starting with `/`).
fn mount_root(mountpoint: &Path) -> Option<PathBuf> {
    let canonical = std::fs::canonicalize(mountpoint).ok()?;
    detect::read_mountinfo()
        .ok()?
        .into_iter()
        .any(|mount| mount.mount_point == canonical)
        .then_some(canonical)
}

fn render_paths(root: &Option<PathBuf>, found: &[Vec<u8>], more: bool) -> String {
    let mut parts: Vec<String> = found
        .iter()
        .map(|p| {
            let rel = Path::new(OsStr::from_bytes(p));
            match root {
                Some(root) => root
                    .join(rel.strip_prefix("/").unwrap_or(rel))
                    .display()
                    .to_string(),
                None => rel.display().to_string(),
            }
        })
        .collect();
    if parts.is_empty() {
        parts.push("(unlinked)".into());
    }
    if more {
        parts.push("…".into());
    }
    parts.join(", ")
}

/// For each record: does another record overlap its physical range (a
/// block with several owners)? One sort and two sweeps, O(n log n).
pub fn shared_flags(records: &[FsmapRecord]) -> Vec<bool> {
    let mut order: Vec<(u64, u64, usize)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.phys_offset, r.phys_offset + r.length, i))
        .collect();
    order.sort_unstable();
    let mut shared = vec![false; records.len()];
    // Overlap with an earlier-starting record.
    let mut max_end = 0;
    for (k, &(start, end, i)) in order.iter().enumerate() {
        if k > 0 && max_end > start {
            shared[i] = true;
        }
        max_end = max_end.max(end);
    }
    // Overlap with a later-starting record.
    let mut min_start = u64::MAX;
    for &(start, end, i) in order.iter().rev() {
        if min_start < end {
            shared[i] = true;
        }
        min_start = min_start.min(start);
    }
    shared
}

/// Bytes covered by at least one record (shared ranges counted once).
pub fn physical_bytes(records: &[FsmapRecord]) -> u64 {
    let mut ranges: Vec<(u64, u64)> = records
        .iter()
        .map(|r| (r.phys_offset, r.phys_offset + r.length))
        .collect();
    ranges.sort_unstable();
    let mut total = 0;
    let mut covered_to = 0;
    for (start, end) in ranges {
        let start = start.max(covered_to);
        if end > start {
            total += end - start;
            covered_to = end;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(phys_offset: u64, length: u64, ino: u64, file_offset: u64) -> FsmapRecord {
        FsmapRecord {
            phys_offset,
            length,
            ino,
            file_offset,
        }
    }

    #[test]
    fn pieces_split_by_a_window_boundary_are_joined() {
        let w = WINDOW_BYTES;
        let mut records = vec![rec(w - 8192, 8192, 5, 0), rec(w - 8192, 8192, 6, 4096)];
        let next = [
            rec(w, 4096, 5, 8192),
            rec(w, 4096, 7, 0),
            rec(w, 4096, 6, 0),
        ];
        merge_split_pieces(&mut records, &next, w);
        assert_eq!(records.len(), 4);
        assert_eq!(records[0], rec(w - 8192, 12288, 5, 0));
        // ino 6 continues at a different file offset: not the same piece.
        assert_eq!(records[1], rec(w - 8192, 8192, 6, 4096));
        assert!(records.contains(&rec(w, 4096, 6, 0)));
    }

    #[test]
    fn shared_ranges_count_once_in_physical_bytes() {
        let records = [
            rec(0, 8192, 5, 0),
            rec(0, 8192, 6, 0),
            rec(4096, 8192, 7, 0),
        ];
        assert_eq!(physical_bytes(&records), 12288);
    }

    #[test]
    fn records_overlapping_another_are_marked_shared() {
        let records = [
            rec(0, 8192, 5, 0),
            rec(8192, 4096, 5, 8192),
            rec(4096, 4096, 6, 0),
            rec(65536, 4096, 7, 0),
        ];
        assert_eq!(shared_flags(&records), vec![true, false, true, false]);
    }

    #[test]
    fn ranges_parse_as_start_colon_length() {
        assert_eq!(parse_range("1G:64M"), Ok((1 << 30, 64 << 20)));
        assert!(parse_range("1G").is_err());
    }
}
