//! `cowdax dump`: read-only, human-readable print of the superblocks, the
//! journal state and the checkpoint summary.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug)]
#[command(after_help = "\
Example:
  cowdax dump /tmp/cowdax.img")]
pub struct DumpArgs {
    /// Image file or device holding the filesystem (opened read-only).
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,
}

pub fn run(args: &DumpArgs) -> i32 {
    let _ = args;
    eprintln!("cowdax dump: waiting for the store's inspect module");
    8
}
