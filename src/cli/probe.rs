//! What a target already holds and whether it is in use: the checks `mkfs`
//! runs before it overwrites anything, and `fsck` before it opens a target.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Bytes read from the start of a target to look for signatures: covers the
/// btrfs superblock at 64 KiB, the farthest one we know.
pub const PROBE_BYTES: u64 = 68 * 1024;

/// A foreign on-disk signature found in a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signature {
    Ext,
    Xfs,
    Btrfs,
    Swap,
    Luks,
    Gpt,
    Mbr,
}

impl Signature {
    pub fn describe(self) -> &'static str {
        match self {
            Signature::Ext => "an ext2/ext3/ext4 filesystem",
            Signature::Xfs => "an XFS filesystem",
            Signature::Btrfs => "a btrfs filesystem",
            Signature::Swap => "a Linux swap area",
            Signature::Luks => "a LUKS encrypted volume",
            Signature::Gpt => "a GPT partition table",
            Signature::Mbr => "a DOS/MBR partition table or boot sector",
        }
    }
}

fn bytes_at(head: &[u8], offset: usize, expected: &[u8]) -> bool {
    head.get(offset..offset + expected.len()) == Some(expected)
}

/// Looks for known foreign signatures in the first bytes of a target (as
/// many as it has, up to [`PROBE_BYTES`]). The most specific one wins: a
/// filesystem before the partition table or boot sector it may carry.
pub fn foreign_signature(head: &[u8]) -> Option<Signature> {
    // ext2/3/4: s_magic 0xEF53 (little-endian) at byte 56 of the superblock at 1024.
    if bytes_at(head, 1080, &[0x53, 0xEF]) {
        return Some(Signature::Ext);
    }
    if bytes_at(head, 0, b"XFSB") {
        return Some(Signature::Xfs);
    }
    // btrfs: magic at byte 64 of the superblock at 64 KiB.
    if bytes_at(head, 65536 + 64, b"_BHRfS_M") {
        return Some(Signature::Btrfs);
    }
    // Swap: the magic ends the first page (4 KiB pages on the machines we run on).
    if bytes_at(head, 4096 - 10, b"SWAPSPACE2") || bytes_at(head, 4096 - 10, b"SWAP-SPACE") {
        return Some(Signature::Swap);
    }
    if bytes_at(head, 0, b"LUKS\xba\xbe") {
        return Some(Signature::Luks);
    }
    if bytes_at(head, 512, b"EFI PART") {
        return Some(Signature::Gpt);
    }
    if bytes_at(head, 510, &[0x55, 0xAA]) {
        return Some(Signature::Mbr);
    }
    None
}

/// One mount that uses a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountUse {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// Mounts (from /proc/self/mountinfo) that use `target`: its block device
/// number, its path as the mount source (FUSE mounts of cowdax name the
/// image as their source), or a loop device backed by it.
pub fn mounts_using(target: &Path) -> io::Result<Vec<MountUse>> {
    let canonical = fs::canonicalize(target)?;
    let metadata = fs::metadata(&canonical)?;
    let block_device = metadata
        .file_type()
        .is_block_device()
        .then(|| (libc::major(metadata.rdev()), libc::minor(metadata.rdev())));
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut uses = Vec::new();
    for line in mountinfo.lines() {
        let Some(entry) = parse_mountinfo_line(line) else {
            continue;
        };
        let same_device = block_device.is_some_and(|dev| dev == entry.device);
        let same_source = Path::new(&entry.source).is_absolute()
            && fs::canonicalize(&entry.source).is_ok_and(|p| p == canonical);
        let same_loop_backing = loop_backing_file(&entry.source).is_some_and(|p| p == canonical);
        if same_device || same_source || same_loop_backing {
            uses.push(MountUse {
                mount_point: entry.mount_point,
                fs_type: entry.fs_type,
                source: entry.source,
            });
        }
    }
    Ok(uses)
}

struct MountinfoEntry {
    device: (u32, u32),
    mount_point: PathBuf,
    fs_type: String,
    source: String,
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw` (proc(5)).
fn parse_mountinfo_line(line: &str) -> Option<MountinfoEntry> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let _mount_id = fields.next()?;
    let _parent_id = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let _root = fields.next()?;
    let mount_point = unescape_mountinfo(fields.next()?);
    let mut tail = after.split(' ');
    let fs_type = unescape_mountinfo(tail.next()?);
    let source = unescape_mountinfo(tail.next()?);
    Some(MountinfoEntry {
        device: (major.parse().ok()?, minor.parse().ok()?),
        mount_point: PathBuf::from(mount_point),
        fs_type,
        source,
    })
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(value) = octal.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file behind `/dev/loopN`, if `source` is an attached loop device.
fn loop_backing_file(source: &str) -> Option<PathBuf> {
    let name = source.strip_prefix("/dev/")?;
    if !name.starts_with("loop") {
        return None;
    }
    let backing = fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    fs::canonicalize(backing.trim_end()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(offset: usize, bytes: &[u8]) -> Vec<u8> {
        let mut head = vec![0u8; PROBE_BYTES as usize];
        head[offset..offset + bytes.len()].copy_from_slice(bytes);
        head
    }

    #[test]
    fn zeroed_region_has_no_signature() {
        assert_eq!(foreign_signature(&vec![0u8; PROBE_BYTES as usize]), None);
        assert_eq!(foreign_signature(&[]), None);
    }

    #[test]
    fn known_signatures_are_recognised_at_their_offsets() {
        let cases: [(usize, &[u8], Signature); 7] = [
            (1080, &[0x53, 0xEF], Signature::Ext),
            (0, b"XFSB", Signature::Xfs),
            (65600, b"_BHRfS_M", Signature::Btrfs),
            (4086, b"SWAPSPACE2", Signature::Swap),
            (0, b"LUKS\xba\xbe", Signature::Luks),
            (512, b"EFI PART", Signature::Gpt),
            (510, &[0x55, 0xAA], Signature::Mbr),
        ];
        for (offset, magic, expected) in cases {
            assert_eq!(
                foreign_signature(&image_with(offset, magic)),
                Some(expected),
                "{expected:?}"
            );
        }
    }

    #[test]
    fn short_regions_are_probed_without_panicking() {
        let mut head = vec![0u8; 1082];
        head[1080] = 0x53;
        head[1081] = 0xEF;
        assert_eq!(foreign_signature(&head), Some(Signature::Ext));
        assert_eq!(foreign_signature(&head[..1081]), None);
    }

    #[test]
    fn mountinfo_lines_parse_with_escapes_and_optional_fields() {
        let entry = parse_mountinfo_line(
            "36 35 98:0 / /mnt/my\\040disk rw,noatime master:1 - fuse.cowdax /tmp/a\\040b.img rw",
        )
        .expect("valid line");
        assert_eq!(entry.device, (98, 0));
        assert_eq!(entry.mount_point, PathBuf::from("/mnt/my disk"));
        assert_eq!(entry.fs_type, "fuse.cowdax");
        assert_eq!(entry.source, "/tmp/a b.img");
        assert!(parse_mountinfo_line("garbage").is_none());
    }

    #[test]
    fn an_unmounted_file_has_no_mount_uses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("img");
        fs::write(&image, b"x").expect("write");
        assert!(mounts_using(&image).expect("probe").is_empty());
    }
}
