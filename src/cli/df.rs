//! `cowdax df MOUNTPOINT`: logical vs physical usage and what sharing saves
//! (the private USAGE ioctl).

use std::path::PathBuf;

use clap::Args;

use super::ioctl_client::CowdaxFile;
use crate::ioctl_abi::UsageArgs;
use crate::size::human_size;

#[derive(Args, Debug)]
#[command(after_help = "\
logical:  bytes the files map, each shared block counted in every file;
physical: data blocks in use, each shared block once;
saved:    logical - physical (what reflinks and dedupe save);
metadata: checkpoint blocks; total/free: the data pool.

Examples:
  cowdax df /mnt/cowdax
  cowdax df --json /mnt/cowdax")]
pub struct DfArgs {
    /// The mount point (or any file on the mount).
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Print one JSON object (all values in bytes).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DfArgs) -> i32 {
    report(
        "df",
        &args.mountpoint,
        args.json,
        CowdaxFile::usage,
        json,
        table,
    )
}

/// The body of a reporting command (`df`, `counters`): ask the mount with
/// `fetch`, print it as JSON or as a table, return the exit code.
pub fn report<T>(
    command: &str,
    mountpoint: &std::path::Path,
    as_json: bool,
    fetch: fn(&CowdaxFile) -> super::ioctl_client::Result<T>,
    json: fn(&T) -> String,
    table: fn(&std::path::Path, &T) -> String,
) -> i32 {
    let value = match CowdaxFile::open(mountpoint).and_then(|f| fetch(&f)) {
        Ok(value) => value,
        Err(error) => {
            eprintln!("cowdax {command}: {error}");
            return 1;
        }
    };
    if as_json {
        println!("{}", json(&value));
    } else {
        print!("{}", table(mountpoint, &value));
    }
    0
}

/// One JSON object; keys are fixed identifiers, values integers.
pub fn json(usage: &UsageArgs) -> String {
    format!(
        "{{\"block_size\":{},\"logical_bytes\":{},\"physical_bytes\":{},\"saved_bytes\":{},\"metadata_bytes\":{},\"total_bytes\":{},\"free_bytes\":{}}}",
        usage.block_size,
        usage.logical_bytes,
        usage.physical_bytes,
        usage.saved_bytes,
        usage.metadata_bytes,
        usage.total_bytes,
        usage.free_bytes
    )
}

fn table(mountpoint: &std::path::Path, usage: &UsageArgs) -> String {
    let ratio = if usage.physical_bytes == 0 {
        1.0
    } else {
        usage.logical_bytes as f64 / usage.physical_bytes as f64
    };
    let rows = [
        ("logical", usage.logical_bytes),
        ("physical", usage.physical_bytes),
        ("saved", usage.saved_bytes),
        ("metadata", usage.metadata_bytes),
        ("total", usage.total_bytes),
        ("free", usage.free_bytes),
    ];
    let mut out = format!(
        "{} (cowdax, {} B blocks)\n",
        mountpoint.display(),
        usage.block_size
    );
    for (name, bytes) in rows {
        out.push_str(&format!(
            "  {name:<9} {:>12}  {bytes:>20}\n",
            human_size(bytes)
        ));
    }
    out.push_str(&format!(
        "  sharing ratio {ratio:.2} (logical / physical)\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_field_in_bytes() {
        let usage = UsageArgs {
            block_size: 4096,
            logical_bytes: 3 << 30,
            physical_bytes: 1 << 30,
            saved_bytes: 2 << 30,
            metadata_bytes: 8192,
            total_bytes: 4 << 30,
            free_bytes: 3 << 30,
            ..UsageArgs::default()
        };
        let text = json(&usage);
        assert!(text.starts_with('{') && text.ends_with('}'));
        assert!(text.contains("\"saved_bytes\":2147483648"));
        assert!(text.contains("\"metadata_bytes\":8192"));
    }

    #[test]
    fn table_rows_show_binary_units_and_exact_bytes() {
        let usage = UsageArgs {
            block_size: 4096,
            saved_bytes: 1536,
            free_bytes: 1 << 30,
            metadata_bytes: 512,
            ..UsageArgs::default()
        };
        let text = table(std::path::Path::new("/mnt"), &usage);
        assert!(text.contains("  saved         1.50 KiB"), "{text}");
        assert!(text.contains("  free          1.00 GiB"), "{text}");
        assert!(text.contains("  metadata         512 B"), "{text}");
    }
}
