//! POSIX ACLs as the kernel hands them to a FUSE server with
//! `FUSE_POSIX_ACL`: the kernel enforces them, the server stores the
//! `system.posix_acl_*` xattrs and keeps them consistent with the mode bits
//! (the kernel leaves that to the server: "Fuse userspace is responsible for
//! updating access permissions in the inode", fs/fuse/acl.c).
//!
//! Xattr format (`posix_acl_xattr`): a little-endian u32 version (2), then
//! 8-byte entries `{ tag: u16, perm: u16, id: u32 }`.
//!
//! The rules that tie ACLs to the mode live here and are applied by the
//! core, each in the transaction of the operation that needs it:
//! inheritance of the parent's default ACL at create time
//! ([`Fs::create_in`](super::Fs::create_in)), the access ACL following a
//! chmod ([`Fs::setattr_as`](super::Fs::setattr_as)), and the mode
//! following a set access ACL ([`Fs::setxattr_as`](super::Fs::setxattr_as)).

use super::codec::Record;
use super::inode::Inode;
use super::{Creds, Error, FileKind, Ino};

type FsResult<T> = super::Result<T>;

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

/// What a new inode gets from its parent and its creator: the owner and
/// group (a setgid directory passes its group on, and its setgid bit to
/// new directories: `inode_init_owner`), the permission bits (the parent's
/// default ACL replaces the umask: `posix_acl_create`) and the inherited
/// ACL xattrs (an access ACL unless the mode says it all; a directory also
/// inherits the default ACL).
pub(crate) struct Inherited {
    pub creds: Creds,
    pub perm: u32,
    pub xattrs: Vec<(&'static [u8], Vec<u8>)>,
}

/// The parent's default ACL, if it has a valid one (an invalid one, which
/// only an old image could hold, is ignored: the umask applies).
fn default_acl(parent: &Inode) -> Option<Acl> {
    Acl::parse(parent.xattrs().get(DEFAULT_XATTR)?).ok()
}

/// [`Inherited`] for an inode of `kind` with `requested` permission bits
/// (0o7777) and `umask`, created by `caller` in `parent`. Symlinks always
/// get 0o777 and no ACL.
pub(crate) fn inherit(
    parent: &Inode,
    kind: FileKind,
    requested: u32,
    umask: u32,
    caller: Creds,
) -> Inherited {
    let parent_setgid = parent.attrs.perm & libc::S_ISGID != 0;
    let creds = Creds {
        uid: caller.uid,
        gid: if parent_setgid {
            parent.attrs.gid
        } else {
            caller.gid
        },
    };
    if kind == FileKind::Symlink {
        return Inherited {
            creds,
            perm: 0o777,
            xattrs: Vec::new(),
        };
    }
    let requested = requested & 0o7777;
    let inherited = default_acl(parent);
    let mut xattrs = Vec::new();
    let mut perm = match &inherited {
        Some(default) => {
            let (access, bits) = default.create_masq(requested & 0o777);
            if !access.is_equivalent_to_mode() {
                xattrs.push((ACCESS_XATTR, access.to_bytes()));
            }
            if kind == FileKind::Directory {
                xattrs.push((DEFAULT_XATTR, default.to_bytes()));
            }
            (requested & 0o7000) | bits
        }
        None => requested & !umask & 0o7777,
    };
    if kind == FileKind::Directory && parent_setgid {
        perm |= libc::S_ISGID;
    }
    Inherited {
        creds,
        perm,
        xattrs,
    }
}

/// After a chmod to `perm`: the record that keeps `inode`'s access ACL in
/// line with the new mode bits (`posix_acl_chmod`), if it has a valid one.
pub(crate) fn chmod_record(inode: &Inode, ino: Ino, perm: u32) -> Option<Record> {
    let mut access = Acl::parse(inode.xattrs().get(ACCESS_XATTR)?).ok()?;
    access.apply_mode(perm);
    Some(Record::SetXattr {
        ino,
        name: ACCESS_XATTR.to_vec(),
        value: access.to_bytes(),
    })
}

pub(super) fn parse_checked(value: &[u8]) -> FsResult<Acl> {
    Acl::parse(value).map_err(|_| Error::Invalid("malformed POSIX ACL"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Timestamp;

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

    fn dir(perm: u32, gid: u32, default: Option<&Acl>) -> Inode {
        let now = Timestamp::default();
        let mut inode = Inode::new(
            super::super::inode::InodeAttrs {
                kind: FileKind::Directory,
                perm,
                nlink: 2,
                uid: 0,
                gid,
                rdev: 0,
                size: 0,
                atime: now,
                mtime: now,
                ctime: now,
                btime: now,
                generation: 1,
                parent: 1,
                next_cookie: 3,
            },
            Vec::new(),
        );
        if let Some(default) = default {
            inode.set_xattr(DEFAULT_XATTR.to_vec(), default.to_bytes());
        }
        inode
    }

    const CALLER: Creds = Creds { uid: 5, gid: 6 };

    #[test]
    fn without_a_default_acl_the_umask_applies_and_nothing_is_inherited() {
        let parent = dir(0o755, 9, None);
        let new = inherit(&parent, FileKind::Regular, 0o666, 0o022, CALLER);
        assert_eq!((new.perm, new.creds.uid, new.creds.gid), (0o644, 5, 6));
        assert!(new.xattrs.is_empty());
    }

    #[test]
    fn a_setgid_parent_gives_its_group_and_new_directories_its_setgid_bit() {
        let parent = dir(0o2775, 9, None);
        let file = inherit(&parent, FileKind::Regular, 0o666, 0o002, CALLER);
        assert_eq!((file.perm, file.creds.gid), (0o664, 9));
        let sub = inherit(&parent, FileKind::Directory, 0o777, 0o002, CALLER);
        assert_eq!((sub.perm, sub.creds.gid), (0o2775, 9));
        let link = inherit(&parent, FileKind::Symlink, 0o777, 0o077, CALLER);
        assert_eq!((link.perm, link.creds.gid), (0o777, 9));
    }

    #[test]
    fn a_default_acl_replaces_the_umask_and_is_inherited() {
        let default = acl(&[
            (TAG_USER_OBJ, 7, 0),
            (TAG_USER, 6, 1000),
            (TAG_GROUP_OBJ, 0, 0),
            (TAG_MASK, 6, 0),
            (TAG_OTHER, 0, 0),
        ]);
        let parent = dir(0o755, 9, Some(&default));
        let file = inherit(&parent, FileKind::Regular, 0o644, 0o077, CALLER);
        assert_eq!(file.perm, 0o640);
        let (access, _) = default.create_masq(0o644);
        assert_eq!(file.xattrs, vec![(ACCESS_XATTR, access.to_bytes())]);
        let sub = inherit(&parent, FileKind::Directory, 0o755, 0o077, CALLER);
        assert_eq!(sub.xattrs.len(), 2);
        assert_eq!(sub.xattrs[1], (DEFAULT_XATTR, default.to_bytes()));
        // Symlinks take no ACL.
        let link = inherit(&parent, FileKind::Symlink, 0o777, 0, CALLER);
        assert!(link.xattrs.is_empty());
        // A default ACL the mode bits express: bits from it, nothing stored.
        let plain = acl(&[
            (TAG_USER_OBJ, 7, 0),
            (TAG_GROUP_OBJ, 5, 0),
            (TAG_OTHER, 0, 0),
        ]);
        let parent = dir(0o755, 9, Some(&plain));
        let file = inherit(&parent, FileKind::Regular, 0o666, 0o022, CALLER);
        assert_eq!(file.perm, 0o640);
        assert!(file.xattrs.is_empty());
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
