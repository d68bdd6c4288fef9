//! The `cowdax` command line (one file per subcommand).

pub mod clone;
pub mod dedupe;
pub mod df;
pub mod extents;
pub mod fsmap;
pub mod ioctl_client;
pub mod mount;

/// Entry point: dispatches on argv[0] (`mkfs.cowdax`, `fsck.cowdax`) and
/// subcommands. Returns the process exit code.
pub fn main() -> i32 {
    eprintln!("cowdax: command line not built yet");
    8
}
