//! `cowdax mount …` and the bare `cowdax SOURCE MOUNTPOINT -o …` form that
//! mount.fuse3 uses (`mount -t fuse.cowdax SRC MNT` and fstab).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use crate::fuse::daemon::{self, MountRequest, EXIT_USAGE};
use crate::fuse::options::MountOptions;

const OPTIONS_HELP: &str = "\
Mount options (-o, comma-separated, may repeat):
  rw, ro                         read-write (default) or read-only
  allow_other, allow_root        let other users (or root) use the mount;
                                 permission checks stay on
  default_permissions            kernel checks mode bits and POSIX ACLs (default)
  no_default_permissions         no kernel permission checks (not with
                                 allow_other/allow_root)
  dev/nodev, suid/nosuid, exec/noexec, sync/async, dirsync
  atime, strictatime, relatime (default), noatime, nodiratime, diratime
                                 (strictatime: reads bypass the page cache,
                                 so every read reaches the daemon)
  fsname=NAME                    source shown by mount/df (default: SOURCE)
  subtype=cowdax                 accepted; the type is always fuse.cowdax
  auto_unmount                   unmount if the daemon dies (needs allow_other/allow_root)
  remount                        change the flags of a live mount
                                 (mount -o remount,ro MOUNTPOINT)
  threads=N                      worker threads (default: one per CPU)
  cache=auto|page|direct         which opens use the kernel page cache:
                                 auto (default) caches read-only opens and
                                 sends writes straight to the media; page
                                 caches every open; direct none, like DAX.
                                 mmap works in every mode
  direct_io, nodirect_io         the same as cache=direct, cache=page
                                 (also no_direct_io)
  writeback_cache, nowriteback_cache (also no_writeback_cache)
                                 kernel write-back caching (default: off;
                                 implies cache=page)
  max_write=SIZE                 largest write request, up to 1M (default 1M)
  max_readahead=SIZE             the kernel's read-ahead window, 0 to 16M
                                 (default 1M: one request per MiB read;
                                 raising it past the kernel's 128K needs root)
  idle_poll=on|off               while requests arrive fast (8000/s or more),
                                 ask the kernel to keep every CPU of the
                                 machine polling instead of idling, so each
                                 round trip's wake-ups are quick; at most 5 s
                                 at a time, then off for 15 s (default: off,
                                 a machine-wide power policy; needs root;
                                 costs power while it lasts)
  attr_timeout=SECS, entry_timeout=SECS
                                 kernel cache lifetimes (default 60)
SIZE as for mkfs --size: bytes, or with a binary unit K, M, G (any case,
  K = KB = KiB), e.g. max_write=1MiB, max_readahead=512K.
Ignored (used by mount(8) and fstab): defaults, auto, noauto, user, nouser,
  users, nofail, _netdev, owner, group, loop, discard, nodiscard, user_xattr,
  nonempty, comment=…, user=…, helper=…, x-…; and what the kernel shows
  for every FUSE mount and mount(8) passes back on remount: user_id=…,
  group_id=…, rootmode=…, max_read=…, blksize=…
Anything else is refused.

Exit status: 0 once the mount is live; 1 for a usage or option error;
32 when mounting failed.";

#[derive(Parser, Debug)]
#[command(
    name = "cowdax mount",
    about = "Mount a cowdax filesystem (returns once the mount is live)",
    after_help = OPTIONS_HELP
)]
struct MountArgs {
    /// Image file or device holding a cowdax filesystem.
    source: PathBuf,
    /// Directory to mount it on.
    mountpoint: PathBuf,
    /// Mount options, comma-separated (see below).
    #[arg(short = 'o', value_name = "OPTIONS", action = clap::ArgAction::Append)]
    options: Vec<String>,
    /// Stay in the foreground and log to stderr.
    #[arg(short = 'f', long = "foreground")]
    foreground: bool,
    /// Debug logging (implies -f).
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Internal: the detached daemon process started by the mount command.
    #[arg(long = "daemon-child", hide = true)]
    daemon_child: bool,
    /// Internal: debug logging in the detached daemon.
    #[arg(long = "debug-log", hide = true)]
    debug_log: bool,
}

/// The mount command's parser, for its manual page and completions.
pub(crate) fn command() -> clap::Command {
    MountArgs::command()
}

/// Runs the mount command with the arguments after the program name (and
/// after `mount` if it was given). Returns the exit code.
pub fn run(args: &[OsString]) -> i32 {
    let argv = std::iter::once(OsString::from("cowdax mount")).chain(args.iter().cloned());
    let parsed = match MountArgs::try_parse_from(argv) {
        Ok(parsed) => parsed,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let options = match MountOptions::parse(&parsed.options) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("cowdax: {err}");
            return EXIT_USAGE;
        }
    };
    let request = MountRequest {
        source: parsed.source,
        mountpoint: parsed.mountpoint,
        options,
        option_args: parsed.options,
        foreground: parsed.foreground || parsed.debug,
        debug: parsed.debug || parsed.debug_log,
    };
    daemon::run(request, parsed.daemon_child)
}
