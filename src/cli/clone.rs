//! `cowdax clone SRC DST`: share SRC's blocks with DST (a reflink) through
//! the private CLONE_RANGE ioctl — what `cp --reflink=always` does on
//! XFS/btrfs, which the kernel does not forward to FUSE.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::ioctl_client::CowdaxFile;
use crate::size::parse_bytes_arg;

#[derive(Args, Debug)]
#[command(after_help = "\
Without offsets or length, DST is created or truncated and becomes a clone of
the whole of SRC. With any of them, that range of SRC is cloned over DST's
range (DST is created if missing, never truncated). Offsets must be multiples
of the block size; the length too, unless the range ends at SRC's end.
Both files are fsync'ed first. Needs read access to SRC and write access to DST.

Examples:
  cowdax clone /mnt/cowdax/vm.img /mnt/cowdax/vm-snap.img
  cowdax clone --src-offset 1M --dst-offset 0 --length 4M big.img part.img")]
pub struct CloneArgs {
    /// File to clone from (on a cowdax mount).
    #[arg(value_name = "SRC")]
    pub src: PathBuf,
    /// File to clone into (same cowdax mount).
    #[arg(value_name = "DST")]
    pub dst: PathBuf,
    /// Byte offset in SRC (suffixes K, M, G, T).
    #[arg(long, value_parser = parse_bytes_arg, value_name = "N")]
    pub src_offset: Option<u64>,
    /// Byte offset in DST (suffixes K, M, G, T).
    #[arg(long, value_parser = parse_bytes_arg, value_name = "N")]
    pub dst_offset: Option<u64>,
    /// Bytes to clone; 0 or absent: to SRC's end.
    #[arg(long, value_parser = parse_bytes_arg, value_name = "N")]
    pub length: Option<u64>,
}

pub fn run(args: &CloneArgs) -> i32 {
    match clone(args) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("cowdax clone: {error:#}");
            1
        }
    }
}

fn clone(args: &CloneArgs) -> anyhow::Result<()> {
    let whole_file =
        args.src_offset.is_none() && args.dst_offset.is_none() && args.length.is_none();
    let src = CowdaxFile::open(&args.src)?;
    if whole_file {
        // Truncating DST first would destroy SRC if they are one file.
        if let (Ok(s), Ok(d)) = (src.file.metadata(), std::fs::metadata(&args.dst)) {
            if (s.dev(), s.ino()) == (d.dev(), d.ino()) {
                anyhow::bail!(
                    "{} and {} are the same file",
                    args.src.display(),
                    args.dst.display()
                );
            }
        }
    }
    let dst = CowdaxFile::open_with(
        &args.dst,
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(whole_file),
    )?;
    // The kernel does not write back dirty pages before an ioctl.
    src.file
        .sync_all()
        .with_context(|| format!("fsync {}", args.src.display()))?;
    dst.file
        .sync_all()
        .with_context(|| format!("fsync {}", args.dst.display()))?;
    let token = src.token()?;
    let cloned = dst.clone_from(
        &token,
        args.src_offset.unwrap_or(0),
        args.dst_offset.unwrap_or(0),
        args.length.unwrap_or(0),
    )?;
    println!(
        "cloned {cloned} bytes from {} to {}",
        args.src.display(),
        args.dst.display()
    );
    Ok(())
}
