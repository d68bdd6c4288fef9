//! `cowdax mkfs` / `mkfs.cowdax`: format an image file or a device.
//!
//! Refuses, unless `-f` is given, to overwrite a target that already holds a
//! cowdax filesystem or another known signature; always refuses a target
//! that is mounted or in use, and one too small for a filesystem. Every
//! refusal says what to do instead.

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use super::open::open_after_unmount;
use super::probe::{self, PROBE_BYTES};
use crate::fs::{Creds, Fs};
use crate::media::{detect, Media, MmapMedia, OpenMode};
use crate::size::{human_size, parse_size_arg};
use crate::store::{
    min_region_bytes, random_uuid_v4, Access, FormatOptions, Store, StoreError, BLOCK_SIZE,
};

/// Longest label the superblock holds, in bytes of UTF-8.
pub const LABEL_MAX_BYTES: usize = 63;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  cowdax mkfs --size 1G /tmp/cowdax.img     create a 1 GiB image file and format it
  cowdax mkfs -L data /dev/pmem0            format a pmem namespace (block mode)
  cowdax mkfs -f /dev/dax0.0                format a devdax device, overwriting it
  mkfs.cowdax --size 512M --journal-size 8M img

Sizes take K, M, G, T suffixes (binary: 1K = 1024), optionally followed by B or iB.")]
pub struct MkfsArgs {
    /// Create TARGET as an image file of SIZE bytes (with -f, resize an
    /// existing file to SIZE).
    #[arg(short, long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub size: Option<u64>,
    /// Volume label (at most 63 bytes).
    #[arg(short = 'L', long, value_name = "LABEL", default_value = "")]
    pub label: String,
    /// Size of the metadata journal (default: scaled to the filesystem size).
    #[arg(short = 'J', long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub journal_size: Option<u64>,
    /// Overwrite an existing filesystem or other signature on TARGET.
    #[arg(short, long)]
    pub force: bool,
    /// Image file or device to format (regular file, /dev/pmemN, /dev/daxX.Y,
    /// loop device).
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,
}

/// Runs `mkfs`; exit code 0 on success, 1 on any failure or refusal.
pub fn run(args: &MkfsArgs) -> i32 {
    match mkfs(args) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("mkfs.cowdax: {error:#}");
            1
        }
    }
}

fn mkfs(args: &MkfsArgs) -> anyhow::Result<()> {
    let target = args.target.as_path();
    check_label(&args.label)?;
    let uuid = random_uuid_v4().context("cannot read random bytes for the UUID")?;
    let opts = FormatOptions {
        label: args.label.clone(),
        journal_bytes: args.journal_size,
        uuid: Some(uuid),
    };
    let min_bytes = min_region_bytes(&opts);
    if let Some(size_bytes) = args.size.filter(|&size| size < min_bytes) {
        bail!(
            "{} is too small for a cowdax filesystem: at least {} ({min_bytes} bytes) is needed{}; give a larger --size",
            human_size(size_bytes),
            human_size(min_bytes),
            if args.journal_size.is_some() { " with this journal size" } else { "" }
        );
    }
    let (media, created) = prepare_target(args)?;
    let result = format_target(args, &opts, media);
    if result.is_err() && created {
        // The file only existed for this mkfs: leave nothing half-made behind.
        let _ = fs::remove_file(target);
    }
    let summary = result?;
    print_summary(target, &args.label, &summary);
    Ok(())
}

fn check_label(label: &str) -> anyhow::Result<()> {
    if label.len() > LABEL_MAX_BYTES {
        bail!(
            "label is {} bytes long; the limit is {LABEL_MAX_BYTES} bytes: choose a shorter --label",
            label.len()
        );
    }
    if label.contains('\0') {
        bail!("label contains a NUL byte: choose a label without it");
    }
    Ok(())
}

/// Checks the target, creates or resizes the image file, and opens it
/// read-write. Returns the media and whether this call created the file
/// (then a failed format removes it again).
fn prepare_target(args: &MkfsArgs) -> anyhow::Result<(Arc<dyn Media>, bool)> {
    let target = args.target.as_path();
    let metadata = match fs::metadata(target) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let Some(size_bytes) = args.size else {
                bail!(
                    "{}: no such file or device; to create an image file give its size, e.g. `cowdax mkfs --size 1G {}`",
                    target.display(),
                    target.display()
                );
            };
            // Reserves the space (posix_fallocate) so stores never hit a full
            // filesystem through the mapping.
            let media = MmapMedia::create(target, size_bytes).with_context(|| {
                format!(
                    "cannot create an image of {} at {}",
                    human_size(size_bytes),
                    target.display()
                )
            })?;
            return Ok((Arc::new(media), true));
        }
        Err(error) => return Err(error).with_context(|| format!("{}", target.display())),
    };
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        bail!(
            "{} is a directory; give an image file or a device",
            target.display()
        );
    }
    if !(file_type.is_file() || file_type.is_block_device() || file_type.is_char_device()) {
        bail!(
            "{} is neither a regular file nor a device; give an image file or a device",
            target.display()
        );
    }
    refuse_if_mounted(target)?;
    if !args.force {
        refuse_if_signature(target, metadata.len(), file_type.is_file())?;
    }
    match args.size {
        Some(_) if !file_type.is_file() => bail!(
            "{} is a device; --size only applies to image files: leave it out to use the whole device",
            target.display()
        ),
        Some(size_bytes) if args.force => {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(target)
                .with_context(|| format!("cannot open {}", target.display()))?;
            file.set_len(size_bytes)
                .with_context(|| format!("cannot resize {}", target.display()))?;
        }
        Some(_) => bail!(
            "{} already exists; use -f to overwrite it and set its size, or leave out --size to format it as it is",
            target.display()
        ),
        None if file_type.is_file() && metadata.len() == 0 => bail!(
            "{} is empty; give it a size with `--size SIZE -f`",
            target.display()
        ),
        None => {}
    }
    if file_type.is_file() {
        reserve_space(target)?;
    }
    let media = open_after_unmount(target, OpenMode::ReadWrite)
        .with_context(|| format!("cannot open {}", target.display()))?;
    Ok((Arc::new(media), false))
}

/// Allocates every block of an existing image file (as `MmapMedia::create`
/// does for new ones): a store into a hole of a mapped file on a full
/// filesystem would kill the daemon with SIGBUS.
fn reserve_space(target: &Path) -> anyhow::Result<()> {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(target)
        .with_context(|| format!("cannot open {}", target.display()))?;
    let len_bytes = file
        .metadata()
        .with_context(|| format!("cannot stat {}", target.display()))?
        .len();
    let len = libc::off_t::try_from(len_bytes)
        .with_context(|| format!("{} is too large", target.display()))?;
    match nix::fcntl::posix_fallocate(&file, 0, len) {
        Ok(()) => Ok(()),
        // Filesystems without fallocate (some FUSE or network ones): the
        // media layer warns about the sparse image when it maps it.
        Err(nix::errno::Errno::EOPNOTSUPP) | Err(nix::errno::Errno::EINVAL) => Ok(()),
        Err(errno) => Err(anyhow::anyhow!(
            "cannot reserve {} for {}: {errno}; free some space or use a smaller --size",
            human_size(len_bytes),
            target.display()
        )),
    }
}

fn refuse_if_mounted(target: &Path) -> anyhow::Result<()> {
    let mount = detect::find_mount(target)
        .with_context(|| format!("cannot tell whether {} is mounted", target.display()))?;
    if let Some(mount) = mount {
        bail!(
            "{} is mounted on {} ({}); unmount it first: umount {}",
            target.display(),
            mount.mount_point.display(),
            mount.fs_type,
            mount.mount_point.display()
        );
    }
    Ok(())
}

/// Refuses a target holding cowdax or a known foreign signature.
fn refuse_if_signature(target: &Path, len_bytes: u64, is_file: bool) -> anyhow::Result<()> {
    let found = if is_file && len_bytes == 0 {
        None
    } else {
        existing_content(target)?
    };
    if let Some(what) = found {
        bail!(
            "{} contains {what}; use -f to overwrite it (everything on it will be lost)",
            target.display()
        );
    }
    Ok(())
}

/// Describes what the target holds, if anything we recognise.
fn existing_content(target: &Path) -> anyhow::Result<Option<String>> {
    let media: Arc<dyn Media> = Arc::new(
        open_after_unmount(target, OpenMode::ReadOnly)
            .with_context(|| format!("cannot open {}", target.display()))?,
    );
    match Store::open(media.clone(), Access::ReadOnly) {
        Ok(_) => return Ok(Some("a cowdax filesystem".to_string())),
        Err(StoreError::Corrupt(_)) => {
            return Ok(Some("a damaged cowdax filesystem".to_string()));
        }
        Err(StoreError::Unsupported(reason)) => {
            return Ok(Some(format!(
                "a cowdax filesystem of an unsupported format ({reason})"
            )));
        }
        Err(_) => {}
    }
    let head_len = media.len().min(PROBE_BYTES);
    let mut head = vec![0u8; usize::try_from(head_len).context("probe length")?];
    media
        .read(0, &mut head)
        .with_context(|| format!("cannot read {}", target.display()))?;
    Ok(probe::foreign_signature(&head).map(|signature| signature.describe().to_string()))
}

struct Summary {
    size_bytes: u64,
    total_blocks: u64,
    journal_bytes: u64,
    uuid: [u8; 16],
    media: String,
}

fn format_target(
    args: &MkfsArgs,
    opts: &FormatOptions,
    media: Arc<dyn Media>,
) -> anyhow::Result<Summary> {
    let target = args.target.as_path();
    let creds = Creds {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
    };
    match Fs::mkfs(media.clone(), opts, creds) {
        Ok(()) => {}
        Err(crate::fs::Error::Store(StoreError::TooSmall(reason))) => bail!(
            "{} is too small for a cowdax filesystem ({}): {reason}; {}",
            target.display(),
            human_size(media.len()),
            if args.size.is_some() {
                "give a larger --size"
            } else {
                "use a larger file or device, or a smaller --journal-size"
            }
        ),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot format {}", target.display()))
        }
    }
    // Read the result back: the summary shows what is on the media, and a
    // fresh filesystem that does not open is a failure of mkfs.
    let (store, _) = Store::open(media.clone(), Access::ReadOnly)
        .with_context(|| format!("{} does not open after formatting", target.display()))?;
    let geometry = store.geometry();
    Ok(Summary {
        size_bytes: media.len(),
        total_blocks: geometry.total_blocks,
        journal_bytes: geometry.journal_blocks * geometry.block_size,
        uuid: opts.uuid.unwrap_or_default(),
        media: media.describe(),
    })
}

fn print_summary(target: &Path, label: &str, summary: &Summary) {
    println!("Formatted {} as cowdax", target.display());
    println!(
        "  size:     {} ({} bytes, {} blocks of {} bytes)",
        human_size(summary.size_bytes),
        summary.size_bytes,
        summary.total_blocks,
        BLOCK_SIZE
    );
    println!("  journal:  {}", human_size(summary.journal_bytes));
    println!("  UUID:     {}", format_uuid(&summary.uuid));
    println!(
        "  label:    {}",
        if label.is_empty() { "(none)" } else { label }
    );
    println!("  media:    {}", summary.media);
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let hex: Vec<String> = uuid.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        hex[0..4].concat(),
        hex[4..6].concat(),
        hex[6..8].concat(),
        hex[8..10].concat(),
        hex[10..16].concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_printed_in_canonical_groups() {
        let uuid = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x80, 0x11, 0x22, 0x33, 0x44, 0x55,
            0x66, 0x77,
        ];
        assert_eq!(format_uuid(&uuid), "12345678-9abc-4def-8011-223344556677");
    }

    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let first = random_uuid_v4().expect("getrandom");
        let second = random_uuid_v4().expect("getrandom");
        assert_ne!(first, second);
        assert_eq!(first[6] >> 4, 4);
        assert_eq!(first[8] >> 6, 0b10);
    }

    #[test]
    fn labels_longer_than_the_superblock_field_are_refused() {
        assert!(check_label(&"x".repeat(LABEL_MAX_BYTES)).is_ok());
        assert!(check_label(&"x".repeat(LABEL_MAX_BYTES + 1)).is_err());
        assert!(check_label("a\0b").is_err());
    }
}
