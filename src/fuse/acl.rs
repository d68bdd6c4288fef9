//! POSIX ACLs as the kernel hands them to a FUSE server with
//! `FUSE_POSIX_ACL`: the kernel enforces them, the server stores the
//! `system.posix_acl_*` xattrs and keeps them consistent with the mode bits
//! (the kernel leaves that to the server: "Fuse userspace is responsible for
//! updating access permissions in the inode", fs/fuse/acl.c).
//!
//! Xattr format (`posix_acl_xattr`): a little-endian u32 version (2), then
//! 8-byte entries `{ tag: u16, perm: u16, id: u32 }`.

pub const ACCESS_XATTR: &[u8] = b"system.posix_acl_access";
pub const DEFAULT_XATTR: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const HEADER_BYTES: usize = 4;
const ENTRY_BYTES: usize = 8;
/// More entries than any real ACL; bounds the work on hostile input.
const MAX_ENTRIES: usize = 4096;

pub const TAG_USER_OBJ: u16 = 0x01;
pub const TAG_USER: u16 = 0x02;
pub const TAG_GROUP_OBJ: u16 = 0x04;
pub const TAG_GROUP: u16 = 0x08;
pub const TAG_MASK: u16 = 0x10;
pub const TAG_OTHER: u16 = 0x20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclEntry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

/// A parsed, validated ACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub entries: Vec<AclEntry>,
}

/// The xattr value is not a valid ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidAcl;

impl Acl {
    /// Parses and validates: version, whole entries, known tags, perms
    /// within rwx, exactly one USER_OBJ/GROUP_OBJ/OTHER, a MASK when named
    /// entries exist.
    pub fn parse(value: &[u8]) -> Result<Acl, InvalidAcl> {
        let header = value.get(..HEADER_BYTES).ok_or(InvalidAcl)?;
        let version = u32::from_le_bytes(header.try_into().map_err(|_| InvalidAcl)?);
        let body = &value[HEADER_BYTES..];
        if version != VERSION || body.len() % ENTRY_BYTES != 0 {
            return Err(InvalidAcl);
        }
        if body.len() / ENTRY_BYTES > MAX_ENTRIES {
            return Err(InvalidAcl);
        }
        let mut entries = Vec::with_capacity(body.len() / ENTRY_BYTES);
        let (mut user_obj, mut group_obj, mut other, mut mask, mut named) = (0, 0, 0, 0, 0);
        for raw in body.chunks_exact(ENTRY_BYTES) {
            let entry = AclEntry {
                tag: u16::from_le_bytes([raw[0], raw[1]]),
                perm: u16::from_le_bytes([raw[2], raw[3]]),
                id: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
            };
            if entry.perm & !0o7 != 0 {
                return Err(InvalidAcl);
            }
            match entry.tag {
                TAG_USER_OBJ => user_obj += 1,
                TAG_GROUP_OBJ => group_obj += 1,
                TAG_OTHER => other += 1,
                TAG_MASK => mask += 1,
                TAG_USER | TAG_GROUP => named += 1,
                _ => return Err(InvalidAcl),
            }
            entries.push(entry);
        }
        if user_obj != 1 || group_obj != 1 || other != 1 || mask > 1 || (named > 0 && mask == 0) {
            return Err(InvalidAcl);
        }
        Ok(Acl { entries })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.entries.len() * ENTRY_BYTES);
        out.extend_from_slice(&VERSION.to_le_bytes());
        for entry in &self.entries {
            out.extend_from_slice(&entry.tag.to_le_bytes());
            out.extend_from_slice(&entry.perm.to_le_bytes());
            out.extend_from_slice(&entry.id.to_le_bytes());
        }
        out
    }

    fn perm_of(&self, tag: u16) -> Option<u16> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| e.perm)
    }

    /// True when the mode bits express this ACL exactly (only the three
    /// base entries): such an ACL is not stored, as on local filesystems.
    pub fn is_equivalent_to_mode(&self) -> bool {
        self.entries.len() == 3
    }

    /// The rwxrwxrwx permission bits this access ACL implies: owner from
    /// USER_OBJ, group from MASK if present (else GROUP_OBJ), other.
    pub fn permission_bits(&self) -> u32 {
        let owner = u32::from(self.perm_of(TAG_USER_OBJ).unwrap_or(0));
        let group = u32::from(
            self.perm_of(TAG_MASK)
                .or_else(|| self.perm_of(TAG_GROUP_OBJ))
                .unwrap_or(0),
        );
        let other = u32::from(self.perm_of(TAG_OTHER).unwrap_or(0));
        (owner << 6) | (group << 3) | other
    }

    /// Updates the entries that mirror the mode bits after a chmod
    /// (`posix_acl_chmod`): USER_OBJ, MASK (or GROUP_OBJ), OTHER.
    pub fn apply_mode(&mut self, perm: u32) {
        let has_mask = self.perm_of(TAG_MASK).is_some();
        for entry in &mut self.entries {
            match entry.tag {
                TAG_USER_OBJ => entry.perm = ((perm >> 6) & 0o7) as u16,
                TAG_MASK => entry.perm = ((perm >> 3) & 0o7) as u16,
                TAG_GROUP_OBJ if !has_mask => entry.perm = ((perm >> 3) & 0o7) as u16,
                TAG_OTHER => entry.perm = (perm & 0o7) as u16,
                _ => {}
            }
        }
    }

    /// Inheritance at create time (`posix_acl_create_masq`): the new inode's
    /// access ACL is the parent's default ACL with its mode-mirroring
    /// entries limited by the requested mode. Returns the ACL and the
    /// resulting permission bits (which replace the umask).
    pub fn create_masq(&self, requested_perm: u32) -> (Acl, u32) {
        let mut acl = self.clone();
        let has_mask = acl.perm_of(TAG_MASK).is_some();
        for entry in &mut acl.entries {
            match entry.tag {
                TAG_USER_OBJ => entry.perm &= ((requested_perm >> 6) & 0o7) as u16,
                TAG_MASK => entry.perm &= ((requested_perm >> 3) & 0o7) as u16,
                TAG_GROUP_OBJ if !has_mask => entry.perm &= ((requested_perm >> 3) & 0o7) as u16,
                TAG_OTHER => entry.perm &= (requested_perm & 0o7) as u16,
                _ => {}
            }
        }
        let bits = acl.permission_bits();
        (acl, bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Acl {
        Acl {
            entries: entries
                .iter()
                .map(|&(tag, perm, id)| AclEntry { tag, perm, id })
                .collect(),
        }
    }

    #[test]
    fn round_trip_and_permission_bits_use_the_mask() {
        let a = acl(&[
            (TAG_USER_OBJ, 7, 0),
            (TAG_USER, 5, 1000),
            (TAG_GROUP_OBJ, 7, 0),
            (TAG_MASK, 5, 0),
            (TAG_OTHER, 0, 0),
        ]);
        let parsed = Acl::parse(&a.to_bytes()).unwrap();
        assert_eq!(parsed, a);
        assert_eq!(parsed.permission_bits(), 0o750);
        assert!(!parsed.is_equivalent_to_mode());
    }

    #[test]
    fn malformed_acls_are_rejected() {
        assert_eq!(Acl::parse(&[]), Err(InvalidAcl));
        assert_eq!(Acl::parse(&[2, 0, 0, 0, 1]), Err(InvalidAcl));
        // Named user without a mask.
        let bad = acl(&[
            (TAG_USER_OBJ, 7, 0),
            (TAG_USER, 5, 1000),
            (TAG_GROUP_OBJ, 7, 0),
            (TAG_OTHER, 0, 0),
        ]);
        assert_eq!(Acl::parse(&bad.to_bytes()), Err(InvalidAcl));
        // Wrong version.
        let mut bytes = acl(&[
            (TAG_USER_OBJ, 7, 0),
            (TAG_GROUP_OBJ, 7, 0),
            (TAG_OTHER, 0, 0),
        ])
        .to_bytes();
        bytes[0] = 1;
        assert_eq!(Acl::parse(&bytes), Err(InvalidAcl));
    }

    #[test]
    fn chmod_updates_mask_not_group_obj() {
        let mut a = acl(&[
            (TAG_USER_OBJ, 7, 0),
            (TAG_USER, 7, 1000),
            (TAG_GROUP_OBJ, 7, 0),
            (TAG_MASK, 7, 0),
            (TAG_OTHER, 7, 0),
        ]);
        a.apply_mode(0o640);
        assert_eq!(a.permission_bits(), 0o640);
        assert_eq!(a.perm_of(TAG_GROUP_OBJ), Some(7));
    }

    #[test]
    fn inheritance_masks_by_requested_mode() {
        let default = acl(&[
            (TAG_USER_OBJ, 7, 0),
            (TAG_GROUP_OBJ, 5, 0),
            (TAG_GROUP, 7, 100),
            (TAG_MASK, 7, 0),
            (TAG_OTHER, 5, 0),
        ]);
        let (access, bits) = default.create_masq(0o666);
        assert_eq!(bits, 0o664);
        assert_eq!(access.perm_of(TAG_GROUP), Some(7));
    }
}
