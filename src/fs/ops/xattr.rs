//! Extended attributes: get, set, list, remove; `setxattr_as` adds the
//! POSIX ACL rules (src/fs/acl.rs) for `system.posix_acl_*`.

use crate::fs::acl::parse_checked;
use crate::fs::acl::{ACCESS_XATTR, DEFAULT_XATTR};
use crate::fs::codec::Record;
use crate::fs::inode::Inode;
use crate::fs::limits::{XATTR_NAME_MAX, XATTR_VALUE_MAX};
use crate::fs::locks::{rlock, wlock};
use crate::fs::privs::{self, Caller, Change};
use crate::fs::txn::{guard, Edits, Guards, LiveAccess};
use crate::fs::{Attr, Error, FileKind, Fs, Ino, Result, Timestamp, XattrSetMode};

impl Fs {
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        self.check_live()?;
        check_xattr_name(name)?;
        let arc = self.inode(ino)?;
        let inode = rlock(&arc);
        if inode.deleted {
            return Err(Error::NotFound);
        }
        inode.xattrs().get(name).cloned().ok_or(Error::NoAttr)
    }
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], mode: XattrSetMode) -> Result<()> {
        check_xattr_name(name)?;
        if value.len() > XATTR_VALUE_MAX {
            return Err(Error::TooBig);
        }
        self.mutating(|| {
            let arc = self.inode(ino)?;
            let mut guards: Guards<'_> = vec![(ino, wlock(&arc))];
            let inode = guard(&guards, ino)?;
            if inode.deleted {
                return Err(Error::NotFound);
            }
            check_xattr_kind(inode, name)?;
            let exists = inode.xattrs().contains_key(name);
            match mode {
                XattrSetMode::Create if exists => return Err(Error::Exists),
                XattrSetMode::Replace if !exists => return Err(Error::NoAttr),
                _ => {}
            }
            let mut edits = Edits::default();
            edits.attrs(&guards, ino)?.ctime = Timestamp::now();
            let mut records = vec![Record::SetXattr {
                ino,
                name: name.to_vec(),
                value: value.to_vec(),
            }];
            edits.emit(&mut records);
            let mut access = LiveAccess::new(&mut guards);
            self.commit(&records, &mut access, true)?;
            Ok(())
        })
    }
    /// setxattr by `caller`, with the POSIX ACL rules: a default ACL must
    /// be valid; an access ACL must be valid, is stored only if the mode
    /// bits cannot express it, and sets the mode's permission bits (setgid
    /// drops unless `caller` is in the file's group or holds CAP_FSETID:
    /// `posix_acl_update_mode`), all in one transaction. Other names are
    /// plain [`Fs::setxattr`].
    pub fn setxattr_as(
        &self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrSetMode,
        caller: &dyn Caller,
    ) -> Result<()> {
        if name == ACCESS_XATTR {
            self.set_access_acl(ino, value, mode, caller).map(|_| ())
        } else {
            if name == DEFAULT_XATTR {
                parse_checked(value)?;
            }
            self.setxattr(ino, name, value, mode)
        }
    }
    /// Sets the access ACL `value` of `ino` and the mode it implies, in one
    /// transaction (none when neither changes). An ACL equal to the mode
    /// bits replaces a stored one by none; `mode` (create/replace) applies
    /// to a stored ACL only.
    fn set_access_acl(
        &self,
        ino: Ino,
        value: &[u8],
        mode: XattrSetMode,
        caller: &dyn Caller,
    ) -> Result<Attr> {
        let access = parse_checked(value)?;
        if value.len() > XATTR_VALUE_MAX {
            return Err(Error::TooBig);
        }
        self.mutating(|| {
            let arc = self.inode(ino)?;
            let mut guards: Guards<'_> = vec![(ino, wlock(&arc))];
            let inode = guard(&guards, ino)?;
            if inode.deleted {
                return Err(Error::NotFound);
            }
            let exists = inode.xattrs().contains_key(ACCESS_XATTR);
            let mut records = Vec::new();
            if access.is_equivalent_to_mode() {
                if exists {
                    records.push(Record::RemoveXattr {
                        ino,
                        name: ACCESS_XATTR.to_vec(),
                    });
                }
            } else {
                match mode {
                    XattrSetMode::Create if exists => return Err(Error::Exists),
                    XattrSetMode::Replace if !exists => return Err(Error::NoAttr),
                    _ => {}
                }
                records.push(Record::SetXattr {
                    ino,
                    name: ACCESS_XATTR.to_vec(),
                    value: value.to_vec(),
                });
            }
            let old = inode.attrs.perm;
            let perm = (old & 0o7000) | (access.permission_bits() & 0o777);
            let (kind, gid) = (inode.attrs.kind, inode.attrs.gid);
            let perm = privs::perm_after(Change::AccessAcl, kind, perm, gid, caller);
            if records.is_empty() && perm == old {
                return Ok(inode.to_attr(ino));
            }
            let mut edits = Edits::default();
            let a = edits.attrs(&guards, ino)?;
            a.perm = perm;
            a.ctime = Timestamp::now();
            edits.emit(&mut records);
            let grows = records.iter().any(|r| matches!(r, Record::SetXattr { .. }));
            let mut live = LiveAccess::new(&mut guards);
            self.commit(&records, &mut live, grows)?;
            drop(live);
            Ok(guard(&guards, ino)?.to_attr(ino))
        })
    }
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        self.check_live()?;
        let arc = self.inode(ino)?;
        let inode = rlock(&arc);
        if inode.deleted {
            return Err(Error::NotFound);
        }
        Ok(inode.xattrs().keys().cloned().collect())
    }
    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<()> {
        check_xattr_name(name)?;
        self.mutating(|| {
            let arc = self.inode(ino)?;
            let mut guards: Guards<'_> = vec![(ino, wlock(&arc))];
            let inode = guard(&guards, ino)?;
            if inode.deleted {
                return Err(Error::NotFound);
            }
            if !inode.xattrs().contains_key(name) {
                return Err(Error::NoAttr);
            }
            let mut edits = Edits::default();
            edits.attrs(&guards, ino)?.ctime = Timestamp::now();
            let mut records = vec![Record::RemoveXattr {
                ino,
                name: name.to_vec(),
            }];
            edits.emit(&mut records);
            let mut access = LiveAccess::new(&mut guards);
            self.commit(&records, &mut access, false)?;
            Ok(())
        })
    }
}

/// Supported namespaces; name length as Linux (ERANGE when too long).
fn check_xattr_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Error::Range);
    }
    let supported = [b"user.".as_slice(), b"trusted.", b"security."]
        .iter()
        .any(|p| name.len() > p.len() && name.starts_with(p))
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default";
    if !supported {
        return Err(Error::NotSupported);
    }
    Ok(())
}

/// `user.` xattrs only on regular files and directories (as Linux).
fn check_xattr_kind(inode: &Inode, name: &[u8]) -> Result<()> {
    if name.starts_with(b"user.")
        && !matches!(inode.attrs.kind, FileKind::Regular | FileKind::Directory)
    {
        return Err(Error::Perm);
    }
    if name == b"system.posix_acl_default" && inode.attrs.kind != FileKind::Directory {
        return Err(Error::Access);
    }
    Ok(())
}
