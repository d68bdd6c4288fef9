//! `cowdax dump`: read-only, human-readable print of the superblocks, the
//! journal state and the checkpoint summary (the store's inspection).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::open::open_after_unmount;
use crate::media::OpenMode;
use crate::store::inspect;

#[derive(Args, Debug)]
#[command(after_help = "\
Exit status: 0 when a valid superblock was found (damage elsewhere is printed),
1 when the target cannot be read or holds no cowdax superblock.

Example:
  cowdax dump /tmp/cowdax.img")]
pub struct DumpArgs {
    /// Image file or device holding the filesystem (opened read-only).
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,
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
    if inspection.current.is_none() {
        eprintln!(
            "cowdax dump: {}: not a cowdax filesystem (no valid superblock)",
            target.display()
        );
        return Ok(1);
    }
    Ok(0)
}
