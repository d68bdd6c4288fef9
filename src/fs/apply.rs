//! Applying journal records to DRAM metadata. The live operations and
//! journal replay run this same code, so a replayed state is the state the
//! operations built (up to the DRAM-only fields: open counts, dirty flags).

use super::codec::Record;
use super::inode::{DirSlot, InoMap, Inode, ShardedInodes};
use super::limits::DIRENT_SIZE_BYTES;
use super::locks::rlock;
use super::space::Space;
use super::{Error, FileKind, Ino, Result};

/// Access to the inodes a transaction touches.
pub(crate) trait InodeAccess {
    fn get_mut(&mut self, ino: Ino) -> Option<&mut Inode>;
    /// Add a new inode (not present before).
    fn create(&mut self, ino: Ino, inode: Inode);
    /// Remove an inode; returns it.
    fn delete(&mut self, ino: Ino) -> Option<Inode>;
}

impl InodeAccess for InoMap<Inode> {
    fn get_mut(&mut self, ino: Ino) -> Option<&mut Inode> {
        InoMap::get_mut(self, &ino)
    }
    fn create(&mut self, ino: Ino, inode: Inode) {
        self.insert(ino, inode);
    }
    fn delete(&mut self, ino: Ino) -> Option<Inode> {
        self.remove(&ino)
    }
}

/// The table being built at mount (journal replay): every Arc has one
/// owner, the map, so `Arc::get_mut` succeeds; an inode shared anyway
/// would read as missing (get_mut) or be copied out (delete).
impl InodeAccess for ShardedInodes {
    fn get_mut(&mut self, ino: Ino) -> Option<&mut Inode> {
        let lock = std::sync::Arc::get_mut(self.shard_mut(ino).get_mut(&ino)?)?;
        Some(lock.get_mut().unwrap_or_else(|e| e.into_inner()))
    }
    fn create(&mut self, ino: Ino, inode: Inode) {
        self.insert(ino, std::sync::Arc::new(std::sync::RwLock::new(inode)));
    }
    fn delete(&mut self, ino: Ino) -> Option<Inode> {
        let shared = self.remove(ino)?;
        Some(match std::sync::Arc::try_unwrap(shared) {
            Ok(lock) => lock.into_inner().unwrap_or_else(|e| e.into_inner()),
            Err(shared) => rlock(&shared).clone(),
        })
    }
}

fn missing(ino: Ino) -> Error {
    Error::Corrupt(format!("journal record refers to missing inode {ino}"))
}

/// Apply one record. `space` is `None` during replay (space is derived
/// afterwards) and `Some` for live operations.
pub(crate) fn apply(
    rec: &Record,
    inodes: &mut dyn InodeAccess,
    mut space: Option<&mut Space>,
) -> Result<()> {
    match rec {
        Record::PutInode { ino, attrs, target } => match inodes.get_mut(*ino) {
            Some(inode) => {
                if inode.attrs.kind != attrs.kind {
                    return Err(Error::Corrupt(format!("inode {ino} changes its kind")));
                }
                inode.attrs = attrs.clone();
                inode.set_target(target.clone());
                inode.attrs_dirty = false;
            }
            None => inodes.create(*ino, Inode::new(attrs.clone(), target.clone())),
        },
        Record::DeleteInode { ino } => {
            let mut inode = inodes.delete(*ino).ok_or_else(|| missing(*ino))?;
            inode.unmap_all(*ino, space)?;
            // Invariant: `alloc_blocks` is the sum of the extent lengths.
            debug_assert!(
                inode.extents.is_empty() && inode.alloc_blocks == 0,
                "inode {ino}: {} blocks still accounted after unmapping all",
                inode.alloc_blocks
            );
            inode.deleted = true;
        }
        Record::PutDirent {
            dir,
            name,
            ino,
            kind,
            cookie,
        } => {
            let d = inodes
                .get_mut(*dir)
                .ok_or_else(|| missing(*dir))?
                .dir_mut()?;
            // Replace semantics: a rename over an existing name.
            d.remove(name);
            if !d.insert(
                name.clone(),
                DirSlot {
                    ino: *ino,
                    kind: *kind,
                },
                *cookie,
            ) {
                return Err(Error::Corrupt(format!(
                    "directory {dir}: cookie {cookie} is already used"
                )));
            }
        }
        Record::DeleteDirent { dir, name } => {
            let d = inodes
                .get_mut(*dir)
                .ok_or_else(|| missing(*dir))?
                .dir_mut()?;
            if d.remove(name).is_none() {
                return Err(Error::Corrupt(format!(
                    "directory {dir}: removing a missing entry"
                )));
            }
        }
        Record::SetXattr { ino, name, value } => {
            let inode = inodes.get_mut(*ino).ok_or_else(|| missing(*ino))?;
            inode.set_xattr(name.clone(), value.clone());
        }
        Record::RemoveXattr { ino, name } => {
            let inode = inodes.get_mut(*ino).ok_or_else(|| missing(*ino))?;
            inode.remove_xattr(name);
        }
        Record::MapExtent {
            ino,
            file_block,
            phys_block,
            len_blocks,
            flags,
        } => {
            let inode = inodes.get_mut(*ino).ok_or_else(|| missing(*ino))?;
            check_regular(inode, *ino)?;
            inode.map(*ino, *file_block, *phys_block, *len_blocks, *flags, space)?;
        }
        Record::UnmapRange {
            ino,
            file_block,
            len_blocks,
        } => {
            let inode = inodes.get_mut(*ino).ok_or_else(|| missing(*ino))?;
            inode.unmap(*ino, *file_block, *len_blocks, space)?;
        }
        Record::CloneRange {
            src,
            src_block,
            dst,
            dst_block,
            len_blocks,
        } => {
            // Snapshot the source mapping first: same-file overlapping
            // clones read the source as it was before this record.
            let snapshot = inodes
                .get_mut(*src)
                .ok_or_else(|| missing(*src))?
                .extents_in(*src_block, *len_blocks);
            let inode = inodes.get_mut(*dst).ok_or_else(|| missing(*dst))?;
            check_regular(inode, *dst)?;
            // Pin the source blocks before the destination's old mapping
            // drops (a same-file clone may unmap the very blocks it shares).
            if let Some(space) = space.as_deref_mut() {
                for (_, e) in &snapshot {
                    space.incref(e.phys_block, e.len_blocks as u64)?;
                }
            }
            inode.unmap(*dst, *dst_block, *len_blocks, space.as_deref_mut())?;
            for (fb, e) in snapshot {
                inode.map_pinned(
                    *dst,
                    fb - src_block + dst_block,
                    e.phys_block,
                    e.len_blocks as u64,
                    e.flags,
                    space.as_deref_mut(),
                )?;
            }
        }
        Record::TouchDir { dir, time } => {
            let inode = inodes.get_mut(*dir).ok_or_else(|| missing(*dir))?;
            let d = inode.dir()?;
            let (entries, max_cookie) = (d.len() as u64, d.max_cookie());
            let a = &mut inode.attrs;
            a.size = entries * DIRENT_SIZE_BYTES;
            a.next_cookie = a.next_cookie.max(max_cookie.saturating_add(1));
            a.mtime = *time;
            a.ctime = *time;
        }
    }
    Ok(())
}

fn check_regular(inode: &Inode, ino: Ino) -> Result<()> {
    if inode.attrs.kind != FileKind::Regular {
        return Err(Error::Corrupt(format!(
            "extent record for non-regular inode {ino}"
        )));
    }
    Ok(())
}
