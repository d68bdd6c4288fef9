//! Namespace operations: lookup, getattr, create (mknod, mkdir, symlink),
//! readlink, link, unlink, rmdir, rename, readdir.

use crate::fs::acl::{self, Inherited};
use crate::fs::codec::{self, Record};
use crate::fs::inode::{Inode, InodeAttrs};
use crate::fs::limits::{DIRENT_SIZE_BYTES, LINK_MAX, SYMLINK_MAX};
use crate::fs::locks::{mlock, rlock, wlock};
use crate::fs::txn::{guard, Edits, Guards, LiveAccess};
use crate::fs::{
    Attr, Creds, DirEntry, Error, FileKind, Fs, Ino, RenameFlags, Result, Timestamp, NAME_MAX,
    ROOT_INO,
};

/// Bound on retries when a name is replaced between resolving and locking.
const RESOLVE_RETRIES: usize = 64;

/// Validate a name for creating an entry.
pub(crate) fn check_new_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name == b"." || name == b".." {
        return Err(Error::Exists);
    }
    if !codec::valid_name(name) {
        return Err(Error::Invalid("invalid file name"));
    }
    Ok(())
}

/// Validate a name for looking up or removing an entry.
fn check_lookup_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name.is_empty() {
        return Err(Error::NotFound);
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(Error::Invalid("invalid file name"));
    }
    Ok(())
}

/// What kind of inode `create_node` makes.
struct NewNode<'t> {
    kind: FileKind,
    perm: u32,
    rdev: u32,
    target: &'t [u8],
}

/// Who decides a new inode's owner, group and permission bits.
#[derive(Clone, Copy)]
enum Origin {
    /// Exactly as given (the library calls `mknod`, `mkdir`, `symlink`).
    Given(Creds),
    /// The POSIX rules ([`acl::inherit`]): the caller's identity and umask,
    /// the parent's setgid bit and default ACL.
    Caller { caller: Creds, umask: u32 },
}

/// POSIX rule for taking `target`'s directory entry away, by unlink/rmdir
/// (`want_dir`: rmdir) or by a rename onto it (`want_dir`: the source is a
/// directory): kinds must match, and a directory must be empty.
fn check_replaceable(target: &Inode, want_dir: bool) -> Result<()> {
    let is_dir = target.attrs.kind == FileKind::Directory;
    if want_dir && !is_dir {
        return Err(Error::NotDir);
    }
    if !want_dir && is_dir {
        return Err(Error::IsDir);
    }
    if is_dir && target.dir()?.len() > 0 {
        return Err(Error::NotEmpty);
    }
    Ok(())
}

fn live_dir(inode: &Inode) -> Result<&crate::fs::inode::Dir> {
    if inode.deleted {
        return Err(Error::NotFound);
    }
    let dir = inode.dir()?;
    if inode.attrs.nlink == 0 {
        // A removed directory accepts no new entries.
        return Err(Error::NotFound);
    }
    Ok(dir)
}

impl Fs {
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.check_live()?;
        check_lookup_name(name)?;
        let child = {
            let parc = self.inode(parent)?;
            let p = rlock(&parc);
            if p.deleted {
                return Err(Error::NotFound);
            }
            let dir = p.dir()?;
            if name == b"." {
                parent
            } else if name == b".." {
                p.attrs.parent
            } else {
                dir.get(name).ok_or(Error::NotFound)?.ino
            }
        };
        self.getattr(child)
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.check_live()?;
        let arc = self.inode(ino)?;
        let inode = rlock(&arc);
        if inode.deleted {
            return Err(Error::NotFound);
        }
        Ok(inode.to_attr(ino))
    }

    /// Create a non-directory or directory entry with a fresh inode.
    fn create_node(
        &self,
        parent: Ino,
        name: &[u8],
        node: NewNode<'_>,
        origin: Origin,
    ) -> Result<Attr> {
        let NewNode {
            kind,
            perm,
            rdev,
            target,
        } = node;
        self.mutating(|| {
            check_new_name(name)?;
            let parc = self.inode(parent)?;
            let mut guards: Guards<'_> = vec![(parent, wlock(&parc))];
            let p = guard(&guards, parent)?;
            let dir = live_dir(p)?;
            if dir.get(name).is_some() {
                return Err(Error::Exists);
            }
            if kind == FileKind::Directory && p.attrs.nlink >= LINK_MAX {
                return Err(Error::TooManyLinks);
            }
            let entries = dir.len() as u64;
            // Decided under the parent's lock, from the parent as it is.
            let Inherited {
                creds,
                perm,
                xattrs,
            } = match origin {
                Origin::Given(creds) => Inherited {
                    creds,
                    perm,
                    xattrs: Vec::new(),
                },
                Origin::Caller { caller, umask } => acl::inherit(p, kind, perm, umask, caller),
            };
            let (ino, generation) = self.alloc_ino();
            let now = Timestamp::now();
            let is_dir = kind == FileKind::Directory;
            let attrs = InodeAttrs {
                kind,
                perm: perm & 0o7777,
                nlink: if is_dir { 2 } else { 1 },
                uid: creds.uid,
                gid: creds.gid,
                rdev,
                size: if kind == FileKind::Symlink {
                    target.len() as u64
                } else {
                    0
                },
                atime: now,
                mtime: now,
                ctime: now,
                btime: now,
                generation,
                parent: if is_dir { parent } else { 0 },
                next_cookie: 3,
            };
            let cookie = p.attrs.next_cookie;
            if cookie == u64::MAX {
                return Err(Error::Corrupt(format!(
                    "directory {parent}: cookies exhausted"
                )));
            }
            let mut records = vec![
                Record::PutInode {
                    ino,
                    attrs,
                    target: target.to_vec(),
                },
                Record::PutDirent {
                    dir: parent,
                    name: name.to_vec(),
                    ino,
                    kind,
                    cookie,
                },
            ];
            // Inherited ACLs: in the create's transaction, so the inode
            // never exists without them.
            for (name, value) in xattrs {
                records.push(Record::SetXattr {
                    ino,
                    name: name.to_vec(),
                    value,
                });
            }
            if is_dir {
                let mut edits = Edits::default();
                let pa = edits.attrs(&guards, parent)?;
                pa.next_cookie = pa.next_cookie.saturating_add(1);
                pa.mtime = now;
                pa.ctime = now;
                pa.size = (entries + 1) * DIRENT_SIZE_BYTES;
                pa.link_inc();
                edits.emit(&mut records);
            } else {
                // Only derivable fields and times change: the compact record.
                records.push(Record::TouchDir {
                    dir: parent,
                    time: now,
                });
            }
            let mut access = LiveAccess::new(&mut guards);
            self.commit(&records, &mut access, true)?;
            let created = std::mem::take(&mut access.created);
            let attr = created
                .iter()
                .find(|(i, _)| *i == ino)
                .map(|(_, inode)| inode.to_attr(ino))
                .ok_or_else(|| Error::Internal("created inode vanished".into()))?;
            drop(access);
            // Publish while the parent is still locked: nobody can find the
            // entry before the inode is in the table.
            self.publish(created, &[]);
            drop(guards);
            Ok(attr)
        })
    }

    /// Regular files, FIFOs, sockets, device nodes (`mode` includes S_IFMT),
    /// owned by `creds` with exactly the bits of `mode`.
    pub fn mknod(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        rdev: u32,
        creds: Creds,
    ) -> Result<Attr> {
        self.mknod_from(parent, name, mode, rdev, Origin::Given(creds))
    }

    fn mknod_from(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        rdev: u32,
        origin: Origin,
    ) -> Result<Attr> {
        // A zero file type means a regular file, as for mknod(2).
        let kind = if mode & libc::S_IFMT == 0 {
            FileKind::Regular
        } else {
            FileKind::from_mode(mode).ok_or(Error::Invalid("unknown file type"))?
        };
        if matches!(kind, FileKind::Directory | FileKind::Symlink) {
            return Err(Error::Invalid("mknod cannot make directories or symlinks"));
        }
        self.create_node(
            parent,
            name,
            NewNode {
                kind,
                perm: mode,
                rdev,
                target: &[],
            },
            origin,
        )
    }

    /// A directory owned by `creds` with exactly the bits `perm`.
    pub fn mkdir(&self, parent: Ino, name: &[u8], perm: u32, creds: Creds) -> Result<Attr> {
        self.mkdir_from(parent, name, perm, Origin::Given(creds))
    }

    fn mkdir_from(&self, parent: Ino, name: &[u8], perm: u32, origin: Origin) -> Result<Attr> {
        self.create_node(
            parent,
            name,
            NewNode {
                kind: FileKind::Directory,
                perm,
                rdev: 0,
                target: &[],
            },
            origin,
        )
    }

    /// A symlink owned by `creds`.
    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8], creds: Creds) -> Result<Attr> {
        self.symlink_from(parent, name, target, Origin::Given(creds))
    }

    fn symlink_from(
        &self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        origin: Origin,
    ) -> Result<Attr> {
        if target.is_empty() {
            return Err(Error::NotFound);
        }
        if target.len() > SYMLINK_MAX {
            return Err(Error::NameTooLong);
        }
        self.create_node(
            parent,
            name,
            NewNode {
                kind: FileKind::Symlink,
                perm: 0o777,
                rdev: 0,
                target,
            },
            origin,
        )
    }

    /// mknod, mkdir or create by `caller` (its fsuid and fsgid): `mode`
    /// holds the file type (none: a regular file; `S_IFDIR`: a directory)
    /// and the requested permission bits. The parent decides the rest
    /// (src/fs/acl.rs [`acl::inherit`]): a setgid parent gives its group
    /// (and a new directory its setgid bit); a default ACL replaces the
    /// umask and is inherited as the new inode's ACLs. One transaction:
    /// the inode never exists without its inherited ACLs.
    pub fn create_in(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
        caller: Creds,
    ) -> Result<Attr> {
        let origin = Origin::Caller { caller, umask };
        if mode & libc::S_IFMT == libc::S_IFDIR {
            self.mkdir_from(parent, name, mode & 0o7777, origin)
        } else {
            self.mknod_from(parent, name, mode, rdev, origin)
        }
    }

    /// symlink by `caller`: a setgid parent gives its group.
    pub fn symlink_in(
        &self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        caller: Creds,
    ) -> Result<Attr> {
        self.symlink_from(parent, name, target, Origin::Caller { caller, umask: 0 })
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.check_live()?;
        let arc = self.inode(ino)?;
        let inode = rlock(&arc);
        if inode.deleted {
            return Err(Error::NotFound);
        }
        if inode.attrs.kind != FileKind::Symlink {
            return Err(Error::Invalid("not a symlink"));
        }
        Ok(inode.target().to_vec())
    }

    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        self.mutating(|| {
            check_new_name(new_name)?;
            let arcs = self.inodes_sorted(&[ino, new_parent])?;
            let mut guards: Guards<'_> = arcs.iter().map(|(i, a)| (*i, wlock(a))).collect();
            let target = guard(&guards, ino)?;
            if target.deleted {
                return Err(Error::NotFound);
            }
            if target.attrs.kind == FileKind::Directory {
                return Err(Error::Perm);
            }
            if target.attrs.nlink == 0 {
                return Err(Error::NotFound);
            }
            if target.attrs.nlink >= LINK_MAX {
                return Err(Error::TooManyLinks);
            }
            let kind = target.attrs.kind;
            let p = guard(&guards, new_parent)?;
            let dir = live_dir(p)?;
            if dir.get(new_name).is_some() {
                return Err(Error::Exists);
            }
            let entries = dir.len() as u64;
            let now = Timestamp::now();
            let mut edits = Edits::default();
            let pa = edits.attrs(&guards, new_parent)?;
            let cookie = pa.next_cookie;
            pa.next_cookie = pa.next_cookie.saturating_add(1);
            pa.mtime = now;
            pa.ctime = now;
            pa.size = (entries + 1) * DIRENT_SIZE_BYTES;
            let ta = edits.attrs(&guards, ino)?;
            ta.link_inc();
            ta.ctime = now;
            let mut records = vec![Record::PutDirent {
                dir: new_parent,
                name: new_name.to_vec(),
                ino,
                kind,
                cookie,
            }];
            edits.emit(&mut records);
            let mut access = LiveAccess::new(&mut guards);
            self.commit(&records, &mut access, true)?;
            drop(access);
            Ok(guard(&guards, ino)?.to_attr(ino))
        })
    }

    /// The inode `name` in `parent` names now (unlocked snapshot).
    fn resolve(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        let parc = self.inode(parent)?;
        let p = rlock(&parc);
        if p.deleted {
            return Err(Error::NotFound);
        }
        Ok(p.dir()?.get(name).ok_or(Error::NotFound)?.ino)
    }

    /// Remove one link of `child` (its entry is being removed): decrement
    /// nlink (directories: to 0), delete it when unreferenced.
    fn drop_link(
        &self,
        guards: &Guards<'_>,
        edits: &mut Edits,
        child: Ino,
        now: Timestamp,
    ) -> Result<()> {
        let open = guard(guards, child)?.open_count;
        let ca = edits.attrs(guards, child)?;
        if ca.kind == FileKind::Directory {
            ca.nlink = 0;
        } else {
            ca.nlink = ca.nlink.saturating_sub(1);
        }
        ca.ctime = now;
        if ca.nlink == 0 && open == 0 {
            edits.delete(child);
        }
        Ok(())
    }

    fn remove_entry(&self, parent: Ino, name: &[u8], want_dir: bool) -> Result<()> {
        self.mutating(|| {
            check_lookup_name(name)?;
            if name == b"." || name == b".." {
                return Err(if want_dir {
                    Error::Invalid("cannot remove . or ..")
                } else {
                    Error::IsDir
                });
            }
            for _ in 0..RESOLVE_RETRIES {
                let child = self.resolve(parent, name)?;
                let arcs = self.inodes_sorted(&[parent, child])?;
                let mut guards: Guards<'_> = arcs.iter().map(|(i, a)| (*i, wlock(a))).collect();
                {
                    let p = guard(&guards, parent)?;
                    if p.deleted {
                        return Err(Error::NotFound);
                    }
                    if p.dir()?.get(name).map(|s| s.ino) != Some(child) {
                        continue;
                    }
                }
                return self.remove_locked(&mut guards, parent, name, child, want_dir);
            }
            Err(Error::Busy)
        })
    }

    fn remove_locked(
        &self,
        guards: &mut Guards<'_>,
        parent: Ino,
        name: &[u8],
        child: Ino,
        want_dir: bool,
    ) -> Result<()> {
        let c = guard(guards, child)?;
        check_replaceable(c, want_dir)?;
        let is_dir = c.attrs.kind == FileKind::Directory;
        let entries = guard(guards, parent)?.dir()?.len() as u64;
        let now = Timestamp::now();
        let mut edits = Edits::default();
        let mut records = vec![Record::DeleteDirent {
            dir: parent,
            name: name.to_vec(),
        }];
        if is_dir {
            let pa = edits.attrs(guards, parent)?;
            pa.mtime = now;
            pa.ctime = now;
            pa.size = entries.saturating_sub(1) * DIRENT_SIZE_BYTES;
            pa.nlink = pa.nlink.saturating_sub(1);
        } else {
            records.push(Record::TouchDir {
                dir: parent,
                time: now,
            });
        }
        self.drop_link(guards, &mut edits, child, now)?;
        edits.emit(&mut records);
        let mut access = LiveAccess::new(guards);
        self.commit(&records, &mut access, false)?;
        let deleted = std::mem::take(&mut access.deleted);
        drop(access);
        self.publish(Vec::new(), &deleted);
        Ok(())
    }

    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.remove_entry(parent, name, false)
    }

    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.remove_entry(parent, name, true)
    }

    /// Is `dir` equal to `ancestor` or inside it? Caller holds the rename
    /// lock, so directory parents do not change meanwhile.
    fn is_within(&self, dir: Ino, ancestor: Ino) -> Result<bool> {
        let mut cur = dir;
        // Bounded: a chain longer than the inode count is a loop (corrupt).
        let limit = self.table.len() + 1;
        for _ in 0..limit {
            if cur == ancestor {
                return Ok(true);
            }
            if cur == ROOT_INO {
                return Ok(false);
            }
            let arc = self.inode(cur)?;
            cur = rlock(&arc).attrs.parent;
        }
        Err(Error::Corrupt("directory parent chain loops".into()))
    }

    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        if flags.noreplace && flags.exchange {
            return Err(Error::Invalid("RENAME_NOREPLACE with RENAME_EXCHANGE"));
        }
        self.mutating(|| self.rename_once(parent, name, new_parent, new_name, flags))
    }

    fn rename_once(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        check_lookup_name(name)?;
        check_lookup_name(new_name)?;
        if name == b"." || name == b".." || new_name == b"." || new_name == b".." {
            return Err(Error::Busy);
        }
        check_new_name(new_name)?;
        // Directory moves between parents are serialized (loop check).
        let _rename_guard = (parent != new_parent).then(|| mlock(&self.rename_lock));
        for _ in 0..RESOLVE_RETRIES {
            let resolve = |dir: Ino, n: &[u8]| -> Result<Option<(Ino, FileKind)>> {
                let arc = self.inode(dir)?;
                let d = rlock(&arc);
                if d.deleted {
                    return Err(Error::NotFound);
                }
                Ok(d.dir()?.get(n).map(|s| (s.ino, s.kind)))
            };
            let (src, src_kind) = resolve(parent, name)?.ok_or(Error::NotFound)?;
            let dst = resolve(new_parent, new_name)?;
            if flags.exchange && dst.is_none() {
                return Err(Error::NotFound);
            }
            if let Some((dst_ino, _)) = dst {
                if dst_ino == src {
                    // Two links to one inode: POSIX says do nothing.
                    return Ok(());
                }
                if flags.noreplace {
                    return Err(Error::Exists);
                }
            }
            // Loop checks (stable: we hold the rename lock when parents differ).
            if parent != new_parent {
                if src_kind == FileKind::Directory && self.is_within(new_parent, src)? {
                    return Err(Error::Invalid("cannot move a directory into itself"));
                }
                if flags.exchange {
                    if let Some((dst_ino, FileKind::Directory)) = dst {
                        if self.is_within(parent, dst_ino)? {
                            return Err(Error::Invalid("cannot move a directory into itself"));
                        }
                    }
                }
            }
            let mut inos = vec![parent, new_parent, src];
            if let Some((d, _)) = dst {
                inos.push(d);
            }
            let arcs = self.inodes_sorted(&inos)?;
            let mut guards: Guards<'_> = arcs.iter().map(|(i, a)| (*i, wlock(a))).collect();
            // Re-validate under the locks; retry if something moved.
            let cur_src = {
                let p = guard(&guards, parent)?;
                if p.deleted {
                    return Err(Error::NotFound);
                }
                p.dir()?.get(name)
            };
            let cur_dst = {
                let p = guard(&guards, new_parent)?;
                live_dir(p)?;
                p.dir()?.get(new_name)
            };
            if cur_src.map(|s| s.ino) != Some(src) || cur_dst.map(|s| s.ino) != dst.map(|d| d.0) {
                continue;
            }
            let Some(src_slot) = cur_src else { continue };
            let now = Timestamp::now();
            let mut edits = Edits::default();
            let mut records = Vec::new();
            let src_is_dir = src_kind == FileKind::Directory;
            if flags.exchange {
                let Some(dst_slot) = cur_dst else { continue };
                let dst_is_dir = dst_slot.kind == FileKind::Directory;
                records.push(Record::PutDirent {
                    dir: parent,
                    name: name.to_vec(),
                    ino: dst_slot.ino,
                    kind: dst_slot.kind,
                    cookie: src_slot.cookie,
                });
                records.push(Record::PutDirent {
                    dir: new_parent,
                    name: new_name.to_vec(),
                    ino: src,
                    kind: src_kind,
                    cookie: dst_slot.cookie,
                });
                if parent != new_parent {
                    if src_is_dir {
                        edits.attrs(&guards, src)?.parent = new_parent;
                        edits.attrs(&guards, parent)?.link_dec();
                        edits.attrs(&guards, new_parent)?.link_inc();
                    }
                    if dst_is_dir {
                        edits.attrs(&guards, dst_slot.ino)?.parent = parent;
                        edits.attrs(&guards, new_parent)?.link_dec();
                        edits.attrs(&guards, parent)?.link_inc();
                    }
                }
                edits.attrs(&guards, dst_slot.ino)?.ctime = now;
            } else {
                let mut new_parent_entries = guard(&guards, new_parent)?.dir()?.len() as u64;
                if let Some(dst_slot) = cur_dst {
                    let d = guard(&guards, dst_slot.ino)?;
                    check_replaceable(d, src_is_dir)?;
                    let dst_is_dir = d.attrs.kind == FileKind::Directory;
                    records.push(Record::DeleteDirent {
                        dir: new_parent,
                        name: new_name.to_vec(),
                    });
                    if dst_is_dir {
                        edits.attrs(&guards, new_parent)?.link_dec();
                    }
                    new_parent_entries -= 1;
                    self.drop_link(&guards, &mut edits, dst_slot.ino, now)?;
                } else if src_is_dir
                    && parent != new_parent
                    && guard(&guards, new_parent)?.attrs.nlink >= LINK_MAX
                {
                    return Err(Error::TooManyLinks);
                }
                records.push(Record::DeleteDirent {
                    dir: parent,
                    name: name.to_vec(),
                });
                // The moved entry keeps a readdir position the directory
                // already had, so a listing in progress never meets it
                // again behind its offset: the replaced name's cookie
                // (that name stays where it was, as on ext4 and tmpfs),
                // else within one directory its own. Only a move into
                // another directory adds an entry there, at a new cookie.
                let cookie = match cur_dst {
                    Some(dst_slot) => dst_slot.cookie,
                    None if parent == new_parent => src_slot.cookie,
                    None => {
                        let npa = edits.attrs(&guards, new_parent)?;
                        let cookie = npa.next_cookie;
                        npa.next_cookie = npa.next_cookie.saturating_add(1);
                        cookie
                    }
                };
                records.push(Record::PutDirent {
                    dir: new_parent,
                    name: new_name.to_vec(),
                    ino: src,
                    kind: src_kind,
                    cookie,
                });
                if parent == new_parent {
                    edits.attrs(&guards, parent)?.size = new_parent_entries * DIRENT_SIZE_BYTES;
                } else {
                    edits.attrs(&guards, new_parent)?.size =
                        (new_parent_entries + 1) * DIRENT_SIZE_BYTES;
                    let old_entries = guard(&guards, parent)?.dir()?.len() as u64;
                    edits.attrs(&guards, parent)?.size =
                        old_entries.saturating_sub(1) * DIRENT_SIZE_BYTES;
                    if src_is_dir {
                        edits.attrs(&guards, src)?.parent = new_parent;
                        edits.attrs(&guards, parent)?.link_dec();
                        edits.attrs(&guards, new_parent)?.link_inc();
                    }
                }
            }
            for dir in [parent, new_parent] {
                let a = edits.attrs(&guards, dir)?;
                a.mtime = now;
                a.ctime = now;
            }
            edits.attrs(&guards, src)?.ctime = now;
            edits.emit(&mut records);
            let mut access = LiveAccess::new(&mut guards);
            self.commit(&records, &mut access, true)?;
            let deleted = std::mem::take(&mut access.deleted);
            drop(access);
            drop(guards);
            self.publish(Vec::new(), &deleted);
            return Ok(());
        }
        Err(Error::Busy)
    }

    /// Calls `f` for entries after `offset` (0 = start, includes "." and "..")
    /// until `f` returns false.
    pub fn readdir(
        &self,
        ino: Ino,
        offset: u64,
        f: &mut dyn FnMut(&DirEntry) -> bool,
    ) -> Result<()> {
        self.check_live()?;
        let arc = self.inode(ino)?;
        let inode = rlock(&arc);
        if inode.deleted {
            return Err(Error::NotFound);
        }
        let dir = inode.dir()?;
        if offset < 1
            && !f(&DirEntry {
                ino,
                kind: FileKind::Directory,
                name: b".".to_vec(),
                next_offset: 1,
            })
        {
            return Ok(());
        }
        if offset < 2
            && !f(&DirEntry {
                ino: inode.attrs.parent,
                kind: FileKind::Directory,
                name: b"..".to_vec(),
                next_offset: 2,
            })
        {
            return Ok(());
        }
        let from = offset.saturating_add(1).max(3);
        for (&cookie, name) in dir.by_cookie.range(from..) {
            let Some(slot) = dir.by_name.get(name) else {
                continue;
            };
            let entry = DirEntry {
                ino: slot.ino,
                kind: slot.kind,
                name: name.to_vec(),
                next_offset: cookie,
            };
            if !f(&entry) {
                break;
            }
        }
        Ok(())
    }
}
