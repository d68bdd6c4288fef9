//! `cowdax extents FILE`: the file's extents like `filefrag -v`, with a
//! column saying which are shared (the private GET_EXTENTS ioctl).

use std::path::PathBuf;

use clap::Args;

use super::ioctl_client::CowdaxFile;
use crate::ioctl_abi::{self as abi, ExtentRecord};

#[derive(Args, Debug)]
#[command(after_help = "\
Columns are in blocks of the filesystem's block size, as filefrag -v prints
them; `shared` marks extents whose blocks another file (or another place of
this file) also maps. Holes are listed only with --holes.

Example:
  cowdax extents /mnt/cowdax/vm.img")]
pub struct ExtentsArgs {
    /// A regular file on a cowdax mount.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Also list holes.
    #[arg(long)]
    pub holes: bool,
}

pub fn run(args: &ExtentsArgs) -> i32 {
    let result = CowdaxFile::open(&args.file).and_then(|file| {
        let block_size = file.usage()?.block_size;
        let (extents, size) = file.extents()?;
        Ok((block_size, extents, size))
    });
    match result {
        Ok((block_size, extents, size)) => {
            print!(
                "{}",
                render(&args.file, block_size, size, &extents, args.holes)
            );
            0
        }
        Err(error) => {
            eprintln!("cowdax extents: {error}");
            1
        }
    }
}

fn flag_names(extent: &ExtentRecord, last: bool) -> String {
    let mut names = Vec::new();
    if extent.flags & abi::EXTENT_HOLE != 0 {
        names.push("hole");
    }
    if extent.flags & abi::EXTENT_UNWRITTEN != 0 {
        names.push("unwritten");
    }
    if last {
        names.push("last");
    }
    names.join(",")
}

/// The filefrag-style listing.
pub fn render(
    path: &std::path::Path,
    block_size: u64,
    size: u64,
    extents: &[ExtentRecord],
    holes: bool,
) -> String {
    let bs = block_size.max(1);
    let mut out = format!(
        "File size of {} is {size} ({} blocks of {bs} bytes)\n",
        path.display(),
        size.div_ceil(bs)
    );
    out.push_str(" ext:     logical_offset:        physical_offset: length: shared: flags:\n");
    let mapped: Vec<&ExtentRecord> = extents
        .iter()
        .filter(|e| e.flags & abi::EXTENT_HOLE == 0)
        .collect();
    let last_mapped = mapped.last().map(|e| e.file_offset);
    let mut index = 0;
    for extent in extents {
        let is_hole = extent.flags & abi::EXTENT_HOLE != 0;
        if is_hole && !holes {
            continue;
        }
        let first = extent.file_offset / bs;
        let blocks = extent.length.div_ceil(bs);
        let last_block = first + blocks.saturating_sub(1);
        let physical = if is_hole {
            format!("{:>23}", "-")
        } else {
            let p = extent.phys_offset / bs;
            format!("{p:>10}..{:>10}:", p + blocks.saturating_sub(1))
        };
        let shared = if extent.flags & abi::EXTENT_SHARED != 0 {
            "yes"
        } else {
            "no"
        };
        let last = !is_hole && Some(extent.file_offset) == last_mapped;
        out.push_str(&format!(
            "{index:>4}: {first:>10}..{last_block:>10}: {physical} {blocks:>6}: {shared:>7}: {}\n",
            flag_names(extent, last)
        ));
        index += 1;
    }
    let shared_count = mapped
        .iter()
        .filter(|e| e.flags & abi::EXTENT_SHARED != 0)
        .count();
    out.push_str(&format!(
        "{}: {} extents found, {shared_count} shared\n",
        path.display(),
        mapped.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_marks_shared_and_last_and_hides_holes() {
        let extents = [
            ExtentRecord {
                file_offset: 0,
                phys_offset: 40960,
                length: 8192,
                flags: abi::EXTENT_SHARED,
            },
            ExtentRecord {
                file_offset: 8192,
                phys_offset: 0,
                length: 4096,
                flags: abi::EXTENT_HOLE,
            },
            ExtentRecord {
                file_offset: 12288,
                phys_offset: 81920,
                length: 4096,
                flags: 0,
            },
        ];
        let text = render(std::path::Path::new("f"), 4096, 16384, &extents, false);
        assert!(text.contains("2 extents found, 1 shared"), "{text}");
        assert!(!text.contains("hole"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].contains("10..        11:") && lines[2].contains("yes"));
        assert!(lines[3].contains("last") && lines[3].contains(" no:"));
        let with_holes = render(std::path::Path::new("f"), 4096, 16384, &extents, true);
        assert!(with_holes.contains("hole"));
    }
}
