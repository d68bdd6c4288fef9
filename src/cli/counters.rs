//! `cowdax counters MOUNTPOINT`: the daemon's persistence work so far (the
//! private COUNTERS ioctl). Benchmarks read it before and after a job and
//! divide the difference by the job's operations (tools/bench/run.sh).

use std::path::PathBuf;

use clap::Args;

use super::df::human;
use super::ioctl_client::CowdaxFile;
use crate::ioctl_abi::CountersArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Counts since the daemon mapped the media:
  stored:    bytes written into the mapping (data, journal, checkpoints);
  persisted: bytes handed to persist (flushed or queued for msync);
  lines:     cache lines flushed (CLWB/CLFLUSHOPT/CLFLUSH), or that would
             have been on page-cache backings;
  fences:    ordering points (SFENCE, or an msync pass on page-cache media);
  msyncs:    msync system calls (page-cache backings only).

Examples:
  cowdax counters /mnt/cowdax
  cowdax counters --json /mnt/cowdax")]
pub struct CountersCmd {
    /// The mount point (or any file on the mount).
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Print one JSON object (the fields of media::Counters).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &CountersCmd) -> i32 {
    let counters = match CowdaxFile::open(&args.mountpoint).and_then(|f| f.counters()) {
        Ok(counters) => counters,
        Err(error) => {
            eprintln!("cowdax counters: {error}");
            return 1;
        }
    };
    if args.json {
        println!("{}", json(&counters));
    } else {
        print!("{}", table(&args.mountpoint, &counters));
    }
    0
}

/// One JSON object; keys are fixed identifiers, values integers.
pub fn json(c: &CountersArgs) -> String {
    format!(
        "{{\"bytes_stored\":{},\"bytes_persisted\":{},\"lines_flushed\":{},\"fences\":{},\"msyncs\":{}}}",
        c.bytes_stored, c.bytes_persisted, c.lines_flushed, c.fences, c.msyncs
    )
}

fn table(mountpoint: &std::path::Path, c: &CountersArgs) -> String {
    let mut out = format!("{} (cowdax media counters)\n", mountpoint.display());
    for (name, bytes) in [("stored", c.bytes_stored), ("persisted", c.bytes_persisted)] {
        out.push_str(&format!(
            "  {name:<9} {:>12}  {bytes:>20} B\n",
            human(bytes)
        ));
    }
    for (name, count) in [
        ("lines", c.lines_flushed),
        ("fences", c.fences),
        ("msyncs", c.msyncs),
    ] {
        out.push_str(&format!("  {name:<9} {count:>12}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_every_media_counter() {
        let c = CountersArgs {
            bytes_stored: 1,
            bytes_persisted: 2,
            lines_flushed: 3,
            fences: 4,
            msyncs: 5,
            ..CountersArgs::default()
        };
        assert_eq!(
            json(&c),
            "{\"bytes_stored\":1,\"bytes_persisted\":2,\"lines_flushed\":3,\"fences\":4,\"msyncs\":5}"
        );
    }
}
