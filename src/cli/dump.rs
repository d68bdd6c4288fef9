//! `cowdax dump`: read-only, human-readable print of the superblocks, the
//! journal state and the checkpoint summary (the store's inspection); with
//! `--journal` / `--inodes` / `--inode N` also the journal's records and the
//! checkpoint's inodes one by one (the printers of `fs::text`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::open::open_after_unmount;
use crate::fs;
use crate::media::OpenMode;
use crate::store::inspect;

#[derive(Args, Debug)]
#[command(after_help = "\
Exit status: 0 when a valid superblock was found (damage elsewhere is printed),
1 when the target cannot be read or holds no cowdax superblock.

Examples:
  cowdax dump /tmp/cowdax.img
  cowdax dump --journal /tmp/cowdax.img
  cowdax dump --inode 1 /tmp/cowdax.img")]
pub struct DumpArgs {
    /// Image file or device holding the filesystem (opened read-only).
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,
    /// Also list the live journal's transactions, one record per line.
    #[arg(long)]
    pub journal: bool,
    /// Also list every inode of the current checkpoint (attributes,
    /// extents, xattrs, directory entries). Changes journaled after the
    /// checkpoint are in `--journal`, not here.
    #[arg(long)]
    pub inodes: bool,
    /// Also list one inode of the current checkpoint.
    #[arg(long, value_name = "INO")]
    pub inode: Option<u64>,
}

pub fn run(args: &DumpArgs) -> i32 {
    match dump(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cowdax dump: {error:#}");
            1
        }
    }
}

fn dump(args: &DumpArgs) -> anyhow::Result<i32> {
    let target = args.target.as_path();
    // Read-only mapping: dump cannot write even by mistake.
    let media = open_after_unmount(target, OpenMode::ReadOnly)
        .with_context(|| format!("cannot open {}", target.display()))?;
    let inspection = inspect(&media);
    print!("{inspection}");
    let Some(current) = inspection.current else {
        eprintln!(
            "cowdax dump: {}: not a cowdax filesystem (no valid superblock)",
            target.display()
        );
        return Ok(1);
    };
    let sb = inspection
        .superblocks
        .iter()
        .find(|report| report.slot == current)
        .and_then(|report| report.result.as_ref().ok());
    if let Some(sb) = sb {
        if args.journal {
            print!("\n{}", fs::list_journal(&media, sb));
        }
        if args.inodes || args.inode.is_some() {
            print!("\n{}", fs::list_inodes(&media, sb, args.inode));
        }
    }
    Ok(0)
}
