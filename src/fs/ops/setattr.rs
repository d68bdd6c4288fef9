//! setattr: chmod, chown, truncate and the timestamps, one transaction
//! each, with the privilege rules (src/fs/privs.rs) and the access ACL
//! following a chmod (src/fs/acl.rs).

use crate::fs::acl;
use crate::fs::codec::Record;
use crate::fs::limits::MAX_FILE_BYTES;
use crate::fs::locks::wlock;
use crate::fs::privs::{Caller, Change, Privileged};
use crate::fs::txn::{guard, Edits, Guards};
use crate::fs::write_plan::{blocks_for, drop_privileges, eof_zero_piece, Fill, Piece, Stored};
use crate::fs::{Attr, Error, FileKind, Fs, Ino, Result, SetAttr, TimeOrNow, Timestamp};

impl Fs {
    /// Size changes truncate/extend (shared blocks: decrement refcounts).
    /// Acts as a privileged caller (see [`Fs::setattr_as`]).
    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr> {
        self.setattr_as(ino, set, &Privileged)
    }
    /// `setattr` by `caller`: a size change (truncate, even to the same
    /// size) is a data change and a uid/gid change a chown; each drops
    /// privileges in the same transaction (src/fs/privs.rs).
    pub fn setattr_as(&self, ino: Ino, set: &SetAttr, caller: &dyn Caller) -> Result<Attr> {
        if let Some(size) = set.size {
            if size > MAX_FILE_BYTES {
                return Err(Error::FileTooBig);
            }
        }
        self.mutating(|| {
            let arc = self.inode(ino)?;
            let mut guards: Guards<'_> = vec![(ino, wlock(&arc))];
            let inode = guard(&guards, ino)?;
            if inode.deleted {
                return Err(Error::NotFound);
            }
            let now = Timestamp::now();
            let mut edits = Edits::default();
            let mut records = Vec::new();
            let mut stored = Stored {
                records: Vec::new(),
                allocated: Vec::new(),
            };
            let mut shrinks = false;
            if let Some(size) = set.size {
                match inode.attrs.kind {
                    FileKind::Regular => {}
                    FileKind::Directory => return Err(Error::IsDir),
                    _ => return Err(Error::Invalid("size of a non-regular file")),
                }
                let old = inode.attrs.size;
                // Truncating to the current size still drops what lies past
                // EOF (a `fallocate -k` preallocation), as XFS and ext4 do;
                // growing keeps it (and zeroes the old EOF block's tail).
                let past_eof = size == old
                    && inode
                        .extents
                        .range(..)
                        .next_back()
                        .is_some_and(|(fb, e)| fb + e.len_blocks as u64 > blocks_for(size));
                if size < old || past_eof {
                    records.push(Record::UnmapRange {
                        ino,
                        file_block: blocks_for(size),
                        len_blocks: u64::MAX - blocks_for(size),
                    });
                    shrinks = true;
                } else if let Some((zoff, zlen)) = eof_zero_piece(old, size) {
                    stored = self.write_data(
                        ino,
                        inode,
                        &[Piece {
                            off: zoff,
                            fill: Fill::Zeros(zlen),
                        }],
                    )?;
                }
                let a = edits.attrs(&guards, ino)?;
                if size != old {
                    a.mtime = now;
                }
                a.size = size;
            }
            if let Some(perm) = set.perm {
                edits.attrs(&guards, ino)?.perm = perm & 0o7777;
                // An access ACL follows the new bits, in this transaction.
                records.extend(acl::chmod_record(inode, ino, perm));
            }
            if set.size.is_some() {
                drop_privileges(Change::Data, &guards, ino, caller, &mut edits, &mut records)?;
            }
            if set.uid.is_some() || set.gid.is_some() {
                drop_privileges(
                    Change::Chown,
                    &guards,
                    ino,
                    caller,
                    &mut edits,
                    &mut records,
                )?;
            }
            let a = edits.attrs(&guards, ino)?;
            if let Some(uid) = set.uid {
                a.uid = uid;
            }
            if let Some(gid) = set.gid {
                a.gid = gid;
            }
            if let Some(t) = set.atime {
                a.atime = resolve_time(t, now);
            }
            if let Some(t) = set.mtime {
                a.mtime = resolve_time(t, now);
            }
            a.ctime = set.ctime.unwrap_or(now);
            let grows = !stored.records.is_empty() && !shrinks;
            self.commit_data(&mut guards, stored, records, edits, grows)?;
            Ok(guard(&guards, ino)?.to_attr(ino))
        })
    }
}

fn resolve_time(t: TimeOrNow, now: Timestamp) -> Timestamp {
    match t {
        TimeOrNow::Now => now,
        TimeOrNow::At(ts) => ts,
    }
}
