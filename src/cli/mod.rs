//! The `cowdax` command line (one file per subcommand).
//!
//! One binary, several names: `cowdax SUBCOMMAND …`, `mkfs.cowdax …` (=
//! `cowdax mkfs …`), `fsck.cowdax …` (= `cowdax fsck …`), and the bare
//! `cowdax SOURCE MOUNTPOINT [-o OPTIONS]` form that mount.fuse3 runs for
//! `mount -t fuse.cowdax` (= `cowdax mount …`).

pub mod clone;
pub mod counters;
pub mod dedupe;
pub mod df;
pub mod dump;
pub mod extents;
pub mod fsck;
pub mod fsmap;
pub mod generate;
pub mod ioctl_client;
pub mod mkfs;
pub mod mount;
pub mod open;
pub mod probe;
pub mod shim;
pub mod version;

use std::ffi::{OsStr, OsString};
use std::path::Path;

use clap::{CommandFactory, Parser, Subcommand};

const LONG_ABOUT: &str = "\
cowdax is a userspace DAX filesystem for persistent memory, served over FUSE:
one daemon maps a pmem namespace or an image file and serves files from it
with loads and stores, with reflink, dedupe and copy-on-write.

The same binary answers to mkfs.cowdax and fsck.cowdax, and mount(8) starts
it for `mount -t fuse.cowdax SOURCE MOUNTPOINT`.";

const EXAMPLES: &str = "\
Examples:
  cowdax mkfs --size 1G /tmp/cowdax.img             create and format an image file
  cowdax mount /tmp/cowdax.img /mnt/cowdax          mount it (returns once mounted)
  mount -t fuse.cowdax /tmp/cowdax.img /mnt/cowdax  the same through mount(8)
  umount /mnt/cowdax
  cowdax fsck -n /tmp/cowdax.img                    check it without writing
  cowdax dump /tmp/cowdax.img                       print superblocks, journal, checkpoint
  cowdax clone /mnt/cowdax/a /mnt/cowdax/b          reflink copy (plain `cp` also reflinks)
  cowdax dedupe -r /mnt/cowdax/dir                  share identical blocks
  cowdax df /mnt/cowdax                             logical vs physical usage

Run `cowdax COMMAND --help` for the options of each command.";

#[derive(Parser, Debug)]
#[command(
    name = "cowdax",
    version = version::VERSION_LINE.as_str(),
    about = "A userspace DAX filesystem for persistent memory (reflink, dedupe, copy-on-write) over FUSE",
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a cowdax filesystem on an image file or a device (also: mkfs.cowdax).
    Mkfs(mkfs::MkfsArgs),
    /// Check and repair a cowdax filesystem; exit codes as fsck(8) (also: fsck.cowdax).
    Fsck(fsck::FsckArgs),
    /// Print superblocks, journal state and checkpoint summary (read-only).
    Dump(dump::DumpArgs),
    /// Reflink SRC (or a range of it) into DST through cowdax's clone ioctl.
    Clone(clone::CloneArgs),
    /// Find identical blocks in files on a cowdax mount and share them.
    Dedupe(dedupe::DedupeArgs),
    /// List a file's extents with a shared column (like filefrag -v).
    Extents(extents::ExtentsArgs),
    /// Show every physical range with its owning files (root only).
    Fsmap(fsmap::FsmapArgs),
    /// Logical vs physical usage of a mount and what sharing saves.
    Df(df::DfArgs),
    /// The daemon's persistence work so far: bytes stored and persisted,
    /// cache lines flushed, fences, msyncs.
    Counters(counters::CountersCmd),
    /// Manage the system-wide LD_PRELOAD shim in /etc/ld.so.preload
    /// (root only; see `cowdax shim --help` for what that trusts).
    Shim(shim::ShimArgs),
    /// Mount a cowdax filesystem: `cowdax mount SOURCE MOUNTPOINT [-o OPTIONS]`
    /// (also the bare `cowdax SOURCE MOUNTPOINT …` form used by mount.fuse3);
    /// see `cowdax mount --help`.
    #[command(disable_help_flag = true)]
    Mount {
        /// SOURCE MOUNTPOINT and mount options, handled by the mount command.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Write the manual pages or shell completions (for packaging).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

/// `mkfs.cowdax …`: the mkfs subcommand as a program of its own.
#[derive(Parser, Debug)]
#[command(
    name = "mkfs.cowdax",
    version = version::VERSION_LINE.as_str(),
    about = "Create a cowdax filesystem on an image file or a device (same as `cowdax mkfs`)"
)]
struct MkfsProgram {
    #[command(flatten)]
    args: mkfs::MkfsArgs,
}

/// `fsck.cowdax …`: the fsck subcommand as a program of its own.
#[derive(Parser, Debug)]
#[command(
    name = "fsck.cowdax",
    version = version::VERSION_LINE.as_str(),
    about = "Check and repair a cowdax filesystem (same as `cowdax fsck`)"
)]
struct FsckProgram {
    #[command(flatten)]
    args: fsck::FsckArgs,
}

/// What argv[0] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProgramName {
    Cowdax,
    Mkfs,
    Fsck,
}

/// `mkfs.cowdax` and `fsck.cowdax` (any directory) select those commands;
/// every other name is `cowdax`.
fn program_name(args: &[OsString]) -> ProgramName {
    let name = args
        .first()
        .and_then(|argv0| Path::new(argv0).file_name())
        .and_then(OsStr::to_str);
    match name {
        Some("mkfs.cowdax") => ProgramName::Mkfs,
        Some("fsck.cowdax") => ProgramName::Fsck,
        _ => ProgramName::Cowdax,
    }
}

/// Parses with clap; on a parse error prints it and returns the exit code:
/// 0 for --help/--version, `usage_exit_code` otherwise.
fn parse_or_exit<P: Parser>(args: &[OsString], usage_exit_code: i32) -> Result<P, i32> {
    P::try_parse_from(args).map_err(|error| {
        let _ = error.print();
        if error.use_stderr() {
            usage_exit_code
        } else {
            0
        }
    })
}

/// Whether `name` is a subcommand (or `help`), for telling `cowdax mkfs X`
/// from `cowdax SOURCE MNT`. Asks clap, so a new subcommand cannot be
/// forgotten here.
fn is_subcommand(name: &OsStr) -> bool {
    name == "help"
        || Cli::command()
            .get_subcommands()
            .any(|sub| name == sub.get_name())
}

/// Entry point: dispatches on argv[0] (`mkfs.cowdax`, `fsck.cowdax`) and
/// subcommands. Returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    run(args)
}

/// Dispatches a full argument vector (argv[0] included).
pub fn run(args: Vec<OsString>) -> i32 {
    match program_name(&args) {
        ProgramName::Mkfs => {
            return match parse_or_exit::<MkfsProgram>(&args, 1) {
                Ok(program) => {
                    init_logging("warn");
                    mkfs::run(&program.args)
                }
                Err(code) => code,
            };
        }
        ProgramName::Fsck => {
            return match parse_or_exit::<FsckProgram>(&args, fsck::EXIT_USAGE) {
                Ok(program) => {
                    init_logging("error");
                    fsck::run(&program.args)
                }
                Err(code) => code,
            };
        }
        ProgramName::Cowdax => {}
    }
    if args.get(1).is_some_and(|first| first == "mount") {
        return mount::run(&args[2..]);
    }
    if is_bare_mount_form(&args) {
        return mount::run(&args[1..]);
    }
    let usage_exit_code = if args.get(1).is_some_and(|first| first == "fsck") {
        fsck::EXIT_USAGE
    } else {
        1
    };
    let cli = match parse_or_exit::<Cli>(&args, usage_exit_code) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // fsck and dump report every defect themselves; the layers' warnings
    // (e.g. "superblock A is not usable", once per open) would repeat them.
    let default_log_level = match cli.command {
        Command::Fsck(_) | Command::Dump(_) => "error",
        _ => "warn",
    };
    init_logging(default_log_level);
    match cli.command {
        Command::Mkfs(mkfs_args) => mkfs::run(&mkfs_args),
        Command::Fsck(fsck_args) => fsck::run(&fsck_args),
        Command::Dump(dump_args) => dump::run(&dump_args),
        Command::Clone(args) => clone::run(&args),
        Command::Dedupe(args) => dedupe::run(&args),
        Command::Extents(args) => extents::run(&args),
        Command::Fsmap(args) => fsmap::run(&args),
        Command::Df(args) => df::run(&args),
        Command::Counters(args) => counters::run(&args),
        Command::Shim(args) => shim::run(&args),
        Command::Mount { args } => mount::run(&args),
        Command::Generate(args) => generate::run(&args, &programs()),
    }
}

/// The command trees of the three program names, for the manual pages and
/// completions (`cowdax generate`).
pub fn programs() -> generate::Programs {
    generate::Programs {
        cowdax: Cli::command(),
        mkfs: MkfsProgram::command(),
        fsck: FsckProgram::command(),
    }
}

/// True for `cowdax SOURCE MOUNTPOINT [options]`: at least two positional
/// arguments, the first not naming a subcommand.
fn is_bare_mount_form(args: &[OsString]) -> bool {
    let mut positionals: Vec<&OsString> = Vec::new();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        if text == "-o" {
            // The option list that follows is a value, not a positional.
            rest.next();
        } else if text.starts_with('-') && text.len() > 1 {
            if text == "-h" || text == "--help" || text == "-V" || text == "--version" {
                return false;
            }
        } else {
            positionals.push(arg);
        }
    }
    positionals.len() >= 2
        && positionals
            .first()
            .is_some_and(|first| !is_subcommand(first))
}

/// Logs to stderr at `default_level` unless RUST_LOG says otherwise.
fn init_logging(default_level: &str) {
    let _ =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
            .format_timestamp(None)
            .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os_args(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn mkfs_and_fsck_program_names_select_their_commands() {
        assert_eq!(
            program_name(&os_args(&["/sbin/mkfs.cowdax", "-f", "img"])),
            ProgramName::Mkfs
        );
        assert_eq!(
            program_name(&os_args(&["fsck.cowdax", "-n", "img"])),
            ProgramName::Fsck
        );
        assert_eq!(
            program_name(&os_args(&["/usr/local/bin/cowdax", "dump", "img"])),
            ProgramName::Cowdax
        );
        assert_eq!(program_name(&[]), ProgramName::Cowdax);
    }

    #[test]
    fn standalone_programs_parse_their_options() {
        use clap::CommandFactory;
        let mkfs = MkfsProgram::try_parse_from(["mkfs.cowdax", "-f", "--size", "1G", "img"])
            .expect("valid mkfs.cowdax arguments");
        assert!(mkfs.args.force);
        assert_eq!(mkfs.args.size, Some(1 << 30));
        let fsck = FsckProgram::try_parse_from(["fsck.cowdax", "-a", "img"])
            .expect("valid fsck.cowdax arguments");
        assert!(fsck.args.preen);
        assert!(FsckProgram::try_parse_from(["fsck.cowdax", "-n", "-p", "img"]).is_err());
        MkfsProgram::command().debug_assert();
        FsckProgram::command().debug_assert();
    }

    #[test]
    fn two_positionals_without_a_subcommand_are_the_mount_form() {
        assert!(is_bare_mount_form(&os_args(&[
            "cowdax",
            "/tmp/img",
            "/mnt",
            "-o",
            "rw,noatime,allow_other,dev,suid"
        ])));
        assert!(is_bare_mount_form(&os_args(&[
            "cowdax", "-o", "ro", "/tmp/img", "/mnt"
        ])));
        assert!(is_bare_mount_form(&os_args(&[
            "cowdax", "-f", "/tmp/img", "/mnt"
        ])));
    }

    #[test]
    fn reflink_tool_subcommands_are_not_the_mount_form() {
        for args in [
            &["cowdax", "clone", "a", "b"][..],
            &["cowdax", "dedupe", "-r", "a", "b"],
            &["cowdax", "extents", "a", "b"],
            &["cowdax", "fsmap", "/mnt", "--range", "0:1M"],
            &["cowdax", "df", "/mnt", "/x"],
        ] {
            assert!(!is_bare_mount_form(&os_args(args)), "{args:?}");
        }
        let cli = Cli::try_parse_from(["cowdax", "clone", "--length", "4K", "a", "b"])
            .expect("clone parses");
        assert!(matches!(cli.command, Command::Clone(ref c) if c.length == Some(4096)));
    }

    #[test]
    fn subcommands_and_help_are_not_the_mount_form() {
        assert!(!is_bare_mount_form(&os_args(&["cowdax", "mkfs", "img"])));
        assert!(!is_bare_mount_form(&os_args(&[
            "cowdax", "fsck", "-n", "img"
        ])));
        assert!(!is_bare_mount_form(&os_args(&["cowdax", "dump", "a", "b"])));
        assert!(!is_bare_mount_form(&os_args(&["cowdax", "/tmp/img"])));
        assert!(!is_bare_mount_form(&os_args(&[
            "cowdax", "-o", "rw", "/tmp/img"
        ])));
        assert!(!is_bare_mount_form(&os_args(&[
            "cowdax", "--help", "a", "b"
        ])));
    }

    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn fsck_mode_flags_exclude_each_other() {
        assert!(Cli::try_parse_from(["cowdax", "fsck", "-n", "-y", "img"]).is_err());
        assert!(Cli::try_parse_from(["cowdax", "fsck", "-n", "-f", "img"]).is_ok());
        assert!(Cli::try_parse_from(["cowdax", "fsck", "-a", "img"]).is_ok());
    }

    #[test]
    fn mkfs_sizes_are_parsed_with_units() {
        let cli = Cli::try_parse_from([
            "cowdax",
            "mkfs",
            "--size",
            "64MiB",
            "--journal-size",
            "1M",
            "-L",
            "data",
            "img",
        ])
        .expect("valid");
        let Command::Mkfs(args) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.size, Some(64 << 20));
        assert_eq!(args.journal_size, Some(1 << 20));
        assert_eq!(args.label, "data");
        assert!(Cli::try_parse_from(["cowdax", "mkfs", "--size", "12X", "img"]).is_err());
    }
}
