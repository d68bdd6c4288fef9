//! The `cowdax` command line (one file per subcommand).
//!
//! Interim dispatcher (reflink branch): `mount` and the reflink tools only.
//! The CLI layer's full dispatcher (mkfs, fsck, dump, argv[0] names)
//! replaces this on merge; the reflink subcommands are then added to it.

pub mod clone;
pub mod dedupe;
pub mod df;
pub mod extents;
pub mod fsmap;
pub mod ioctl_client;
pub mod mount;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cowdax", version, about = "cowdax reflink tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Share a file's blocks with another file (a reflink copy).
    Clone(clone::CloneArgs),
    /// Find identical blocks in files and make them share storage.
    Dedupe(dedupe::DedupeArgs),
    /// List a file's extents with a shared column (like filefrag -v).
    Extents(extents::ExtentsArgs),
    /// Show the owners of physical ranges (the owner map), root only.
    Fsmap(fsmap::FsmapArgs),
    /// Logical vs physical usage and what sharing saves.
    Df(df::DfArgs),
}

/// Entry point: dispatches on argv[0] (`mkfs.cowdax`, `fsck.cowdax`) and
/// subcommands. Returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|first| first == "mount") {
        return mount::run(&args[2..]);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { 1 } else { 0 };
        }
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .try_init();
    match cli.command {
        Command::Clone(args) => clone::run(&args),
        Command::Dedupe(args) => dedupe::run(&args),
        Command::Extents(args) => extents::run(&args),
        Command::Fsmap(args) => fsmap::run(&args),
        Command::Df(args) => df::run(&args),
    }
}
