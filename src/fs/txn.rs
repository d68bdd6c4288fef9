//! One operation's transaction, before it is committed: the inodes it has
//! write-locked ([`Guards`], [`guard`]), the attribute edits it will emit
//! as records ([`Edits`]), and the view `apply` edits through
//! ([`LiveAccess`]: the locked inodes plus those the operation creates and
//! deletes). Below `Fs` (filesystem.rs commits through `LiveAccess`) and above
//! the records and the inode structures.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLockWriteGuard;

use super::apply::InodeAccess;
use super::codec::Record;
use super::inode::{Inode, InodeAttrs};
use super::{Error, Ino, Result};

pub(crate) type Guards<'a> = Vec<(Ino, RwLockWriteGuard<'a, Inode>)>;

/// The locked inode `ino`. Callers only ask for inodes they locked; a miss
/// is an internal error, reported as one rather than a panic.
pub(crate) fn guard<'g, 'a>(
    guards: &'g [(Ino, RwLockWriteGuard<'a, Inode>)],
    ino: Ino,
) -> Result<&'g Inode> {
    guards
        .iter()
        .find(|(i, _)| *i == ino)
        .map(|(_, g)| &**g)
        .ok_or_else(|| Error::Internal(format!("inode {ino} not locked")))
}

/// Attribute edits of one operation, emitted as PutInode/DeleteInode
/// records after the entry records.
#[derive(Default)]
pub(crate) struct Edits {
    attrs: BTreeMap<Ino, (InodeAttrs, Vec<u8>)>,
    delete: BTreeSet<Ino>,
}

impl Edits {
    pub fn attrs<'e>(
        &'e mut self,
        guards: &[(Ino, RwLockWriteGuard<'_, Inode>)],
        ino: Ino,
    ) -> Result<&'e mut InodeAttrs> {
        use std::collections::btree_map::Entry;
        let slot = match self.attrs.entry(ino) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let g = guard(guards, ino)?;
                v.insert((g.attrs.clone(), g.target().to_vec()))
            }
        };
        Ok(&mut slot.0)
    }
    /// The attributes as edited so far, if `ino` has an edit.
    pub fn edited(&self, ino: Ino) -> Option<&InodeAttrs> {
        self.attrs.get(&ino).map(|(attrs, _)| attrs)
    }
    pub fn delete(&mut self, ino: Ino) {
        self.delete.insert(ino);
    }
    pub fn emit(self, records: &mut Vec<Record>) {
        for (ino, (attrs, target)) in self.attrs {
            if !self.delete.contains(&ino) {
                records.push(Record::PutInode { ino, attrs, target });
            }
        }
        for ino in self.delete {
            records.push(Record::DeleteInode { ino });
        }
    }
}

/// Inodes locked by one operation, plus those it creates and deletes.
pub(crate) struct LiveAccess<'g, 'a> {
    pub guards: &'g mut [(Ino, RwLockWriteGuard<'a, Inode>)],
    pub created: Vec<(Ino, Inode)>,
    pub deleted: Vec<Ino>,
}

impl<'g, 'a> LiveAccess<'g, 'a> {
    pub fn new(guards: &'g mut [(Ino, RwLockWriteGuard<'a, Inode>)]) -> Self {
        LiveAccess {
            guards,
            created: Vec::new(),
            deleted: Vec::new(),
        }
    }
}

impl InodeAccess for LiveAccess<'_, '_> {
    fn get_mut(&mut self, ino: Ino) -> Option<&mut Inode> {
        if let Some(pos) = self
            .guards
            .iter()
            .position(|(i, g)| *i == ino && !g.deleted)
        {
            return Some(&mut *self.guards[pos].1);
        }
        self.created
            .iter_mut()
            .find(|(i, _)| *i == ino)
            .map(|(_, inode)| inode)
    }
    fn create(&mut self, ino: Ino, inode: Inode) {
        self.created.push((ino, inode));
    }
    fn delete(&mut self, ino: Ino) -> Option<Inode> {
        let pos = self
            .guards
            .iter()
            .position(|(i, g)| *i == ino && !g.deleted)?;
        let guard = &mut self.guards[pos].1;
        let mut tomb = Inode::new(guard.attrs.clone(), Vec::new());
        tomb.deleted = true;
        self.deleted.push(ino);
        Some(std::mem::replace(&mut **guard, tomb))
    }
}
