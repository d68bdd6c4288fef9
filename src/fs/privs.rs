//! The one place that decides which privileges a change drops: setuid,
//! setgid and file capabilities (`security.capability`), as Linux 6.18's
//! VFS does for local filesystems (fs/attr.c `setattr_should_drop_sgid`,
//! `setattr_should_drop_suidgid`, fs/inode.c `file_remove_privs`,
//! fs/posix_acl.c `posix_acl_update_mode`, fs/open.c `chown_common`).
//! Every operation that applies one of these changes asks here and drops
//! the privileges in the same transaction as the change itself.

use super::codec::Record;
use super::inode::Inode;
use super::{FileKind, Ino};

/// Who asks for a change, as far as the privilege rules need to know.
pub trait Caller {
    /// Holds CAP_FSETID: keeps setuid and setgid across modifications.
    fn has_fsetid(&self) -> bool;
    /// Belongs to group `gid` (as its filesystem gid or a supplementary
    /// group). Asked only when the answer decides something.
    fn in_group(&self, gid: u32) -> bool;
}

/// A caller with CAP_FSETID in every group: what the core's own
/// bookkeeping and library users that do not care act as.
#[derive(Clone, Copy, Debug, Default)]
pub struct Privileged;

impl Caller for Privileged {
    fn has_fsetid(&self) -> bool {
        true
    }
    fn in_group(&self, _gid: u32) -> bool {
        true
    }
}

/// The kinds of change that drop privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The data changes: write, truncate, fallocate (every mode), a clone
    /// or copy_file_range into the file.
    Data,
    /// The owner or group changes.
    Chown,
    /// The access ACL is set (the mode's permission bits follow it).
    AccessAcl,
}

/// `in_group_or_capable` of the kernel: may keep a setgid bit on a file of
/// group `gid`.
fn in_group_or_capable(caller: &dyn Caller, gid: u32) -> bool {
    caller.has_fsetid() || caller.in_group(gid)
}

/// `setattr_should_drop_sgid`: a setgid bit goes when the file is
/// group-executable (whoever the caller is), or when the caller neither
/// belongs to the file's group nor holds CAP_FSETID. A setgid bit without
/// group execute that stays marks mandatory locking.
fn should_drop_sgid(perm: u32, gid: u32, caller: &dyn Caller) -> bool {
    perm & libc::S_ISGID != 0 && (perm & libc::S_IXGRP != 0 || !in_group_or_capable(caller, gid))
}

/// The permission bits (`perm`, 0o7777) an inode of `kind` and group `gid`
/// has after `change` by `caller`.
pub(crate) fn perm_after(
    change: Change,
    kind: FileKind,
    perm: u32,
    gid: u32,
    caller: &dyn Caller,
) -> u32 {
    let mut kill = 0;
    match change {
        // `file_remove_privs` → `setattr_should_drop_suidgid`: regular
        // files only, nothing for a caller with CAP_FSETID.
        Change::Data => {
            if kind == FileKind::Regular && !caller.has_fsetid() {
                kill |= libc::S_ISUID;
                if should_drop_sgid(perm, gid, caller) {
                    kill |= libc::S_ISGID;
                }
            }
        }
        // `chown_common`: setuid always goes (root's chown too), setgid as
        // `setattr_should_drop_sgid` says; directories keep both.
        Change::Chown => {
            if kind != FileKind::Directory {
                kill |= libc::S_ISUID;
                if should_drop_sgid(perm, gid, caller) {
                    kill |= libc::S_ISGID;
                }
            }
        }
        // `posix_acl_update_mode`: setgid goes unless the caller is in the
        // file's group or holds CAP_FSETID (directories too).
        Change::AccessAcl => {
            if !in_group_or_capable(caller, gid) {
                kill |= libc::S_ISGID;
            }
        }
    }
    perm & !kill
}

/// The xattr that grants file capabilities.
pub(crate) const CAPABILITY_XATTR: &[u8] = b"security.capability";

/// Queue the removal of `inode`'s file capabilities if `change` drops
/// them: any data change and any chown of a non-directory, whoever the
/// caller (the kernel's `security_inode_killpriv` is not subject to
/// CAP_FSETID).
pub(crate) fn drop_capability(change: Change, inode: &Inode, ino: Ino, records: &mut Vec<Record>) {
    let drops = match change {
        Change::Data | Change::Chown => inode.attrs.kind != FileKind::Directory,
        Change::AccessAcl => false,
    };
    let queued = records.iter().any(|r| {
        matches!(r, Record::RemoveXattr { ino: i, name } if *i == ino && name == CAPABILITY_XATTR)
    });
    if drops && !queued && inode.xattrs().contains_key(CAPABILITY_XATTR) {
        records.push(Record::RemoveXattr {
            ino,
            name: CAPABILITY_XATTR.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller without CAP_FSETID in group 10 only.
    struct User;
    impl Caller for User {
        fn has_fsetid(&self) -> bool {
            false
        }
        fn in_group(&self, gid: u32) -> bool {
            gid == 10
        }
    }

    fn data(perm: u32, gid: u32, caller: &dyn Caller) -> u32 {
        perm_after(Change::Data, FileKind::Regular, perm, gid, caller)
    }

    #[test]
    fn data_change_by_an_unprivileged_caller_outside_the_group_drops_both() {
        // xfstests generic/683 with the 6.2+ setgid rules.
        assert_eq!(data(0o6666, 0, &User), 0o666);
        assert_eq!(data(0o6676, 0, &User), 0o676);
        assert_eq!(data(0o2666, 0, &User), 0o666);
        assert_eq!(data(0o2766, 0, &User), 0o766);
    }

    #[test]
    fn data_change_by_a_group_member_keeps_a_non_executable_setgid() {
        assert_eq!(data(0o6666, 10, &User), 0o2666);
        assert_eq!(data(0o6676, 10, &User), 0o676);
    }

    #[test]
    fn data_change_with_cap_fsetid_keeps_both() {
        assert_eq!(data(0o6777, 0, &Privileged), 0o6777);
        assert_eq!(data(0o6666, 0, &Privileged), 0o6666);
    }

    #[test]
    fn data_change_leaves_non_regular_files_alone() {
        let dir = perm_after(Change::Data, FileKind::Directory, 0o2775, 0, &User);
        assert_eq!(dir, 0o2775);
    }

    #[test]
    fn chown_drops_setuid_even_with_cap_fsetid_and_keeps_directories() {
        let chown = |perm, gid, caller: &dyn Caller| {
            perm_after(Change::Chown, FileKind::Regular, perm, gid, caller)
        };
        assert_eq!(chown(0o6775, 0, &Privileged), 0o775);
        assert_eq!(chown(0o6745, 0, &Privileged), 0o2745);
        assert_eq!(chown(0o6745, 10, &User), 0o2745);
        assert_eq!(chown(0o6745, 0, &User), 0o745);
        let dir = perm_after(Change::Chown, FileKind::Directory, 0o6775, 0, &User);
        assert_eq!(dir, 0o6775);
    }

    #[test]
    fn access_acl_drops_setgid_outside_the_group_only() {
        let acl = |kind, perm, gid, caller: &dyn Caller| {
            perm_after(Change::AccessAcl, kind, perm, gid, caller)
        };
        assert_eq!(acl(FileKind::Regular, 0o6777, 0, &User), 0o4777);
        assert_eq!(acl(FileKind::Directory, 0o2777, 0, &User), 0o777);
        assert_eq!(acl(FileKind::Regular, 0o2777, 10, &User), 0o2777);
        assert_eq!(acl(FileKind::Regular, 0o2777, 0, &Privileged), 0o2777);
    }
}
