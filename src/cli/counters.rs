//! `cowdax counters MOUNTPOINT`: the daemon's persistence work and idle
//! polling so far (the private COUNTERS ioctl). Benchmarks read it before and after a job and
//! divide the difference by the job's operations (tools/bench/run.sh).

use std::path::PathBuf;

use clap::Args;

use super::df::report;
use super::ioctl_client::CowdaxFile;
use crate::ioctl_abi::CountersArgs;
use crate::size::human_size;

#[derive(Args, Debug)]
#[command(after_help = "\
Counts since the daemon mapped the media:
  stored:    bytes written into the mapping (data, journal, checkpoints);
  persisted: bytes handed to persist (flushed or queued for msync);
  lines:     cache lines flushed (CLWB/CLFLUSHOPT/CLFLUSH), or that would
             have been on page-cache backings;
  fences:    ordering points (SFENCE, or an msync pass on page-cache media);
  msyncs:    msync system calls (page-cache backings only);
  idle poll: times the daemon asked the kernel to keep idle CPUs polling
             (mount option idle_poll), and for how long in all.

Examples:
  cowdax counters /mnt/cowdax
  cowdax counters --json /mnt/cowdax")]
pub struct CountersCmd {
    /// The mount point (or any file on the mount).
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Print one JSON object (the media counters and the idle-polling ones).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &CountersCmd) -> i32 {
    report(
        "counters",
        &args.mountpoint,
        args.json,
        CowdaxFile::counters,
        json,
        table,
    )
}

/// One JSON object; keys are fixed identifiers, values integers.
pub fn json(c: &CountersArgs) -> String {
    format!(
        "{{\"bytes_stored\":{},\"bytes_persisted\":{},\"lines_flushed\":{},\"fences\":{},\"msyncs\":{},\"idle_poll_engagements\":{},\"idle_poll_ms\":{}}}",
        c.bytes_stored,
        c.bytes_persisted,
        c.lines_flushed,
        c.fences,
        c.msyncs,
        c.idle_poll_engagements,
        c.idle_poll_ms
    )
}

fn table(mountpoint: &std::path::Path, c: &CountersArgs) -> String {
    let mut out = format!("{} (cowdax counters)\n", mountpoint.display());
    for (name, bytes) in [("stored", c.bytes_stored), ("persisted", c.bytes_persisted)] {
        out.push_str(&format!(
            "  {name:<9} {:>12}  {bytes:>20} B\n",
            human_size(bytes)
        ));
    }
    for (name, count) in [
        ("lines", c.lines_flushed),
        ("fences", c.fences),
        ("msyncs", c.msyncs),
    ] {
        out.push_str(&format!("  {name:<9} {count:>12}\n"));
    }
    out.push_str(&format!(
        "  idle poll {:>12}  times, {} ms in all\n",
        c.idle_poll_engagements, c.idle_poll_ms
    ));
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
            idle_poll_engagements: 6,
            idle_poll_ms: 7,
            ..CountersArgs::default()
        };
        assert_eq!(
            json(&c),
            "{\"bytes_stored\":1,\"bytes_persisted\":2,\"lines_flushed\":3,\"fences\":4,\"msyncs\":5,\"idle_poll_engagements\":6,\"idle_poll_ms\":7}"
        );
    }
}
