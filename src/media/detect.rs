//! What a path is: file type, size of block devices, devdax geometry from
//! sysfs, and whether it is mounted (from `/proc/self/mountinfo`).
//!
//! Everything here is a safe function; the one ioctl (BLKGETSIZE64) is
//! wrapped with its `// SAFETY:` argument.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{MediaError, Result};

/// Where the kernel publishes device attributes.
pub const SYSFS_ROOT: &str = "/sys";
/// Major number of loop block devices on Linux.
const LOOP_MAJOR: u64 = 7;
/// Alignment assumed for a devdax device whose sysfs has no `align`
/// attribute (kernels before 5.10): the default devdax alignment.
pub const DEVDAX_DEFAULT_ALIGN_BYTES: u64 = 2 << 20;

nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);

/// Size of the block device open in `file`, in bytes (BLKGETSIZE64).
pub fn block_device_size_bytes(file: &File) -> io::Result<u64> {
    let mut size_bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes exactly one u64 through the pointer, which
    // points to a live local; the fd stays open for the call.
    unsafe { blkgetsize64(file.as_raw_fd(), &mut size_bytes) }.map_err(io::Error::from)?;
    Ok(size_bytes)
}

/// Size and mapping alignment of a devdax device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevDaxGeometry {
    /// Usable size: the device size rounded down to `align_bytes`.
    pub size_bytes: u64,
    /// Alignment of mapping offsets and lengths (2 MiB or 1 GiB typically).
    pub align_bytes: u64,
    /// False when sysfs had no `align` and the default was assumed.
    pub align_from_sysfs: bool,
}

/// Reads the first attribute that exists among `candidates` as a number
/// (decimal, or hex with `0x`).
fn read_sysfs_number(candidates: &[PathBuf]) -> Result<Option<(u64, PathBuf)>> {
    for path in candidates {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(MediaError::Io {
                    path: path.display().to_string(),
                    error: source,
                })
            }
        };
        let text = text.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse::<u64>(),
        };
        return match parsed {
            Ok(value) => Ok(Some((value, path.clone()))),
            Err(_) => Err(MediaError::Open {
                path: path.display().to_string(),
                msg: format!("unexpected sysfs value {text:?}"),
            }),
        };
    }
    Ok(None)
}

/// True when the character device `major:minor` is a devdax device: its
/// sysfs node belongs to the `dax` subsystem (bus or, before 5.1, class).
pub fn is_devdax(sysfs_root: &Path, major: u64, minor: u64) -> bool {
    let node = sysfs_root.join(format!("dev/char/{major}:{minor}"));
    std::fs::read_link(node.join("subsystem"))
        .ok()
        .and_then(|target| target.file_name().map(|name| name == "dax"))
        .unwrap_or(false)
}

/// Size and alignment of the devdax device `major:minor` named `name`
/// (`dax0.0`), read from sysfs under `sysfs_root`:
/// `dev/char/MAJ:MIN/{size,align}` (dax bus, Linux ≥ 5.1), then
/// `dev/char/MAJ:MIN/device/{size,align}` (dax class), then
/// `bus/dax/devices/NAME/{size,align}`. Validates what it reads.
pub fn devdax_geometry(
    sysfs_root: &Path,
    major: u64,
    minor: u64,
    name: &str,
) -> Result<DevDaxGeometry> {
    let node = sysfs_root.join(format!("dev/char/{major}:{minor}"));
    let bus = sysfs_root.join("bus/dax/devices").join(name);
    let candidates = |attr: &str| {
        vec![
            node.join(attr),
            node.join("device").join(attr),
            node.join("device/dax_region").join(attr),
            bus.join(attr),
        ]
    };
    let device = format!("devdax {name} ({major}:{minor})");
    let (raw_size_bytes, size_path) =
        read_sysfs_number(&candidates("size"))?.ok_or_else(|| MediaError::Open {
            path: device.clone(),
            msg: format!(
                "no size attribute in sysfs (looked under {} and {})",
                node.display(),
                bus.display()
            ),
        })?;
    let (align_bytes, align_from_sysfs) = match read_sysfs_number(&candidates("align"))? {
        Some((align_bytes, _)) => (align_bytes, true),
        None => (DEVDAX_DEFAULT_ALIGN_BYTES, false),
    };
    if !align_bytes.is_power_of_two() || align_bytes < 4096 {
        return Err(MediaError::Open {
            path: device,
            msg: format!("alignment {align_bytes} is not a power of two of at least 4096"),
        });
    }
    let size_bytes = raw_size_bytes / align_bytes * align_bytes;
    if size_bytes == 0 {
        return Err(MediaError::Open {
            path: device,
            msg: format!(
                "size {raw_size_bytes} (from {}) is smaller than its alignment {align_bytes}",
                size_path.display()
            ),
        });
    }
    Ok(DevDaxGeometry {
        size_bytes,
        align_bytes,
        align_from_sysfs,
    })
}

/// One line of `/proc/self/mountinfo` (proc(5)), with escapes decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's ID (unique among the current mounts).
    pub mount_id: u64,
    /// Device number of the mounted filesystem (`st_dev` of its files).
    pub dev_major: u64,
    pub dev_minor: u64,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,noatime`).
    pub mount_options: String,
    /// Filesystem type (`ext4`, `fuse.cowdax`).
    pub fs_type: String,
    /// Mount source (`/dev/pmem0`, an image path for cowdax, `tmpfs`).
    pub source: String,
    /// Per-superblock options (`rw,dax=always`).
    pub super_options: String,
}

impl MountEntry {
    /// True when the filesystem is mounted with a DAX option (`dax`,
    /// `dax=always`, `dax=inode`; not `dax=never`).
    pub fn has_dax_option(&self) -> bool {
        self.mount_options
            .split(',')
            .chain(self.super_options.split(','))
            .any(|opt| opt == "dax" || opt == "dax=always" || opt == "dax=inode")
    }
}

/// Decodes the octal escapes (`\040` space, `\011` tab, `\012` newline,
/// `\134` backslash) the kernel writes in mountinfo paths.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        });
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                // Three octal digits can exceed a byte (\777); keep those verbatim.
                match u8::try_from(value) {
                    Ok(byte) => out.push(byte),
                    Err(_) => out.extend_from_slice(&bytes[index..index + 4]),
                }
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text. Lines that do not have the documented shape are
/// skipped: the kernel writes this file, but a mount check must not fail
/// because of one odd line.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let mut fields = line.split(' ');
    let mount_id = fields.next()?;
    let _parent_id = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let _root = fields.next()?;
    let mount_point = fields.next()?;
    let mount_options = fields.next()?;
    // Optional fields end at a lone "-".
    fields.by_ref().find(|field| *field == "-")?;
    let fs_type = fields.next()?;
    let source = fields.next()?;
    let super_options = fields.next().unwrap_or("");
    Some(MountEntry {
        mount_id: mount_id.parse().ok()?,
        dev_major: major.parse().ok()?,
        dev_minor: minor.parse().ok()?,
        mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
        mount_options: mount_options.to_string(),
        fs_type: unescape_mountinfo(fs_type),
        source: unescape_mountinfo(source),
        super_options: super_options.to_string(),
    })
}

/// The mounts of this process's mount namespace, from `/proc/self/mountinfo`.
pub fn read_mountinfo() -> Result<Vec<MountEntry>> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(path).map_err(|source| MediaError::Io {
        path: path.to_string(),
        error: source,
    })?;
    Ok(parse_mountinfo(&text))
}

/// The backing file of loop device `7:minor`, from sysfs.
fn loop_backing_file(sysfs_root: &Path, minor: u64) -> Option<PathBuf> {
    let attr = sysfs_root.join(format!("dev/block/{LOOP_MAJOR}:{minor}/loop/backing_file"));
    let text = std::fs::read_to_string(attr).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

/// True when mount `source` names `target` (already canonical). Compares the
/// strings first. Sources under `/dev/` (devtmpfs, never a hung mount) are
/// canonicalized, which resolves `/dev/mapper/x` and `/dev/disk/by-*` links;
/// other sources only when their file name matches, so that unrelated paths
/// (perhaps on a hung network or FUSE mount) are never stat'ed.
fn source_names(source: &str, target: &Path) -> bool {
    let source_path = Path::new(source);
    if source_path == target {
        return true;
    }
    let worth_resolving = source.starts_with("/dev/")
        || (source.starts_with('/')
            && source_path.file_name().is_some()
            && source_path.file_name() == target.file_name());
    worth_resolving && std::fs::canonicalize(source_path).is_ok_and(|canonical| canonical == target)
}

/// The mount that uses `path`, if any: for a block device, a mount of that
/// device number or source; for an image file, a mount whose source is the
/// image (a cowdax daemon sets its FUSE `fsname` to the canonical image path)
/// or a loop device backed by it; for a character device, a mount naming it.
pub fn find_mount(path: &Path) -> Result<Option<MountEntry>> {
    find_mount_in(path, &read_mountinfo()?, Path::new(SYSFS_ROOT))
}

/// [`find_mount`] against given mount entries and sysfs root (for tests).
pub fn find_mount_in(
    path: &Path,
    entries: &[MountEntry],
    sysfs_root: &Path,
) -> Result<Option<MountEntry>> {
    let io_err = |source| MediaError::Io {
        path: path.display().to_string(),
        error: source,
    };
    let canonical = std::fs::canonicalize(path).map_err(io_err)?;
    let metadata = std::fs::metadata(&canonical).map_err(io_err)?;
    let file_type = metadata.file_type();
    let found = entries.iter().find(|entry| {
        if file_type.is_block_device() {
            let rdev = metadata.rdev();
            let same_device = (entry.dev_major, entry.dev_minor)
                == (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
            same_device || source_names(&entry.source, &canonical)
        } else if file_type.is_file() {
            source_names(&entry.source, &canonical)
                || (entry.dev_major == LOOP_MAJOR
                    && loop_backing_file(sysfs_root, entry.dev_minor)
                        .is_some_and(|backing| backing == canonical))
        } else {
            source_names(&entry.source, &canonical)
        }
    });
    Ok(found.cloned())
}

/// True when `path` (device or image file) is in use by a mounted
/// filesystem; see [`find_mount`]. mkfs refuses such targets.
pub fn is_mounted(path: &Path) -> Result<bool> {
    Ok(find_mount(path)?.is_some())
}

/// The mount holding the filesystem of the file `metadata` describes (same
/// `st_dev`); used to tell whether a refused MAP_SYNC is surprising.
pub fn mount_of_file(metadata: &std::fs::Metadata) -> Option<MountEntry> {
    let dev = metadata.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    read_mountinfo()
        .ok()?
        .into_iter()
        .find(|entry| (entry.dev_major, entry.dev_minor) == (major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:23 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw,size=100k
40 22 259:0 / /mnt/pm\\040em rw,relatime shared:20 master:3 - xfs /dev/pmem0 rw,attr2,dax=always
41 22 7:3 / /mnt/loop rw - ext2 /dev/loop3 rw
42 22 0:50 / /mnt/cow rw,nosuid,nodev - fuse.cowdax /images/a\\040b.img rw,user_id=0
garbage line
43 22 0:51 / /mnt/broken rw shared:9
";

    #[test]
    fn mountinfo_is_parsed_with_escapes_optional_fields_and_bad_lines_skipped() {
        let entries = parse_mountinfo(SAMPLE);
        assert_eq!(entries.len(), 5);
        let pmem = &entries[2];
        assert_eq!((pmem.dev_major, pmem.dev_minor), (259, 0));
        assert_eq!(pmem.mount_point, PathBuf::from("/mnt/pm em"));
        assert_eq!(pmem.fs_type, "xfs");
        assert_eq!(pmem.source, "/dev/pmem0");
        assert!(pmem.has_dax_option());
        assert!(!entries[0].has_dax_option());
        assert_eq!(entries[4].source, "/images/a b.img");
        assert_eq!(entries[4].fs_type, "fuse.cowdax");
    }

    #[test]
    fn unescape_keeps_text_that_is_not_an_octal_escape() {
        assert_eq!(unescape_mountinfo(r"a\134b\040c"), r"a\b c");
        assert_eq!(unescape_mountinfo(r"end\04"), r"end\04");
        assert_eq!(unescape_mountinfo(r"x\999"), r"x\999");
        assert_eq!(unescape_mountinfo(r"x\777"), r"x\777");
        // A sign is not an octal digit (u8::from_str_radix would take it).
        assert_eq!(unescape_mountinfo(r"x\+17"), r"x\+17");
        assert_eq!(unescape_mountinfo(r"tab\011nl\012"), "tab\tnl\n");
    }

    #[test]
    fn dax_option_is_recognised_but_dax_never_is_not() {
        let mut entry = parse_mountinfo(SAMPLE).remove(0);
        entry.super_options = "rw,dax=never".into();
        assert!(!entry.has_dax_option());
        entry.mount_options = "rw,dax".into();
        assert!(entry.has_dax_option());
    }

    #[test]
    fn image_file_is_found_mounted_by_source_and_by_loop_backing_file() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a b.img");
        std::fs::write(&image, b"x").unwrap();
        let canonical = std::fs::canonicalize(&image).unwrap();
        let sysfs = dir.path().join("sys");

        let mut text = SAMPLE.replace(
            "/images/a\\040b.img",
            &canonical.display().to_string().replace(' ', "\\040"),
        );
        let entries = parse_mountinfo(&text);
        let found = find_mount_in(&image, &entries, &sysfs).unwrap();
        assert_eq!(
            found.map(|entry| entry.mount_point),
            Some(PathBuf::from("/mnt/cow"))
        );

        // Not mounted through FUSE, but through loop device 7:3.
        text = SAMPLE.to_string();
        let entries = parse_mountinfo(&text);
        assert_eq!(find_mount_in(&image, &entries, &sysfs).unwrap(), None);
        let loop_dir = sysfs.join("dev/block/7:3/loop");
        std::fs::create_dir_all(&loop_dir).unwrap();
        std::fs::write(
            loop_dir.join("backing_file"),
            format!("{}\n", canonical.display()),
        )
        .unwrap();
        let found = find_mount_in(&image, &entries, &sysfs).unwrap();
        assert_eq!(
            found.map(|entry| entry.mount_point),
            Some(PathBuf::from("/mnt/loop"))
        );
    }

    #[test]
    fn missing_path_is_an_error_not_unmounted() {
        let entries = parse_mountinfo(SAMPLE);
        let result = find_mount_in(
            Path::new("/nonexistent/cowdax.img"),
            &entries,
            Path::new("/sys"),
        );
        assert!(matches!(result, Err(MediaError::Io { .. })));
    }

    fn fake_devdax(root: &Path, layout: &str, size: &str, align: Option<&str>) {
        let dir = match layout {
            "bus" => root.join("dev/char/251:0"),
            "class" => root.join("dev/char/251:0/device"),
            _ => root.join("bus/dax/devices/dax0.0"),
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("size"), size).unwrap();
        if let Some(align) = align {
            std::fs::write(dir.join("align"), align).unwrap();
        }
    }

    #[test]
    fn devdax_geometry_is_read_from_each_sysfs_layout_and_rounded_to_alignment() {
        for layout in ["bus", "class", "bus-devices"] {
            let root = tempfile::tempdir().unwrap();
            // 1 GiB + 1 MiB with 2 MiB alignment: the odd MiB is not usable.
            fake_devdax(root.path(), layout, "1074790400\n", Some("2097152\n"));
            let geometry = devdax_geometry(root.path(), 251, 0, "dax0.0").unwrap();
            assert_eq!(
                geometry,
                DevDaxGeometry {
                    size_bytes: 1 << 30,
                    align_bytes: 2 << 20,
                    align_from_sysfs: true
                },
                "{layout}"
            );
        }
    }

    #[test]
    fn devdax_without_align_attribute_assumes_two_mib() {
        let root = tempfile::tempdir().unwrap();
        fake_devdax(root.path(), "bus", "0x40000000", None);
        let geometry = devdax_geometry(root.path(), 251, 0, "dax0.0").unwrap();
        assert_eq!(geometry.size_bytes, 1 << 30);
        assert_eq!(geometry.align_bytes, DEVDAX_DEFAULT_ALIGN_BYTES);
        assert!(!geometry.align_from_sysfs);
    }

    #[test]
    fn devdax_with_bad_sysfs_values_is_an_error() {
        for (size, align) in [
            ("4096", Some("2097152")), // smaller than its alignment
            ("1073741824", Some("3000000")),
            ("lots", Some("4096")),
        ] {
            let root = tempfile::tempdir().unwrap();
            fake_devdax(root.path(), "bus", size, align);
            assert!(
                matches!(
                    devdax_geometry(root.path(), 251, 0, "dax0.0"),
                    Err(MediaError::Open { .. })
                ),
                "{size} {align:?}"
            );
        }
        let empty = tempfile::tempdir().unwrap();
        assert!(devdax_geometry(empty.path(), 251, 0, "dax0.0").is_err());
    }

    #[test]
    fn devdax_is_recognised_by_its_sysfs_subsystem() {
        let root = tempfile::tempdir().unwrap();
        let node = root.path().join("dev/char/251:0");
        std::fs::create_dir_all(&node).unwrap();
        assert!(!is_devdax(root.path(), 251, 0));
        std::os::unix::fs::symlink("../../bus/dax", node.join("subsystem")).unwrap();
        assert!(is_devdax(root.path(), 251, 0));
        assert!(
            !is_devdax(Path::new(SYSFS_ROOT), 1, 3),
            "/dev/null is not devdax"
        );
    }
}
