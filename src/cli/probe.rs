//! What a target already holds: the foreign signatures `mkfs` refuses to
//! overwrite without `-f`. (Whether a target is mounted is
//! `crate::media::detect::find_mount`.)

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
}
