//! DRAM metadata of one inode: attributes, xattrs, symlink target, the
//! extent map (file block → physical run) and, for directories, the entries.
//!
//! Extent map invariants (checked by `scrub`):
//! * extents do not overlap, have 1..=[`MAX_EXTENT_BLOCKS`] blocks;
//! * `alloc_blocks` is the sum of their lengths;
//! * with a [`Space`] attached, every extent `(file_block → phys, len)` has
//!   exactly one owner-map entry `(phys, ino, file_block) → len`, and each of
//!   its physical blocks one reference in the refcount tree.

use std::collections::{btree_map, BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Bound, RangeBounds};

use super::limits::MAX_EXTENT_BLOCKS;
use super::space::Space;
use super::{Error, FileKind, Ino, Result, Timestamp};

/// The extent flag for blocks allocated by fallocate and never written:
/// they read as zeros.
pub(crate) const EXTENT_UNWRITTEN: u8 = 1;

/// Persistent attributes of an inode (what `PutInode` carries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InodeAttrs {
    pub kind: FileKind,
    pub perm: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub size: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub btime: Timestamp,
    pub generation: u64,
    /// Directories: the parent directory (root: itself). Others: 0.
    pub parent: Ino,
    /// Directories: the readdir cookie the next entry gets (≥ 3).
    pub next_cookie: u64,
}

impl InodeAttrs {
    /// Link count arithmetic that cannot overflow on corrupt input (the
    /// callers check LINK_MAX before adding).
    pub fn link_inc(&mut self) {
        self.nlink = self.nlink.saturating_add(1);
    }
    pub fn link_dec(&mut self) {
        self.nlink = self.nlink.saturating_sub(1);
    }
}

/// One mapped run of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    pub phys_block: u64,
    pub len_blocks: u32,
    pub flags: u8,
}

impl Extent {
    pub fn unwritten(&self) -> bool {
        self.flags & EXTENT_UNWRITTEN != 0
    }
}

/// Most extents a map keeps in its small (sorted vector) form.
const SMALL_EXTENTS_MAX: usize = 8;

/// A file's extent map, file_block → extent, ordered by file block.
///
/// Almost every file has a handful of extents, and a `BTreeMap` spends a
/// whole ~280-byte leaf node on even one of them; at 1M files that was the
/// largest single item of DRAM per inode. So the most common map, a single
/// extent, is kept inline (no allocation at all), small maps are a sorted
/// vector sized to fit (24 bytes per extent) and only maps of more than
/// [`SMALL_EXTENTS_MAX`] extents become a B-tree (back to a vector when
/// they shrink to a few), which keeps edits of heavily fragmented files
/// logarithmic.
#[derive(Clone)]
pub(crate) enum ExtentMap {
    /// Exactly one extent, inline (in the space the vector's header takes).
    One((u64, Extent)),
    /// Sorted by file block, keys unique, at most `SMALL_EXTENTS_MAX`
    /// (empty maps are an empty, unallocated vector).
    Small(Vec<(u64, Extent)>),
    Large(BTreeMap<u64, Extent>),
}

impl Default for ExtentMap {
    fn default() -> ExtentMap {
        ExtentMap::Small(Vec::new())
    }
}

impl PartialEq for ExtentMap {
    fn eq(&self, other: &ExtentMap) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtentMap {}

impl std::fmt::Debug for ExtentMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Iterator over (part of) an [`ExtentMap`], in file order.
pub(crate) enum ExtentIter<'a> {
    Small(std::slice::Iter<'a, (u64, Extent)>),
    Large(btree_map::Range<'a, u64, Extent>),
}

impl<'a> Iterator for ExtentIter<'a> {
    type Item = (&'a u64, &'a Extent);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ExtentIter::Small(it) => it.next().map(|(fb, e)| (fb, e)),
            ExtentIter::Large(it) => it.next(),
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            ExtentIter::Small(it) => it.size_hint(),
            ExtentIter::Large(it) => it.size_hint(),
        }
    }
}

impl DoubleEndedIterator for ExtentIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            ExtentIter::Small(it) => it.next_back().map(|(fb, e)| (fb, e)),
            ExtentIter::Large(it) => it.next_back(),
        }
    }
}

impl<'a> IntoIterator for &'a ExtentMap {
    type Item = (&'a u64, &'a Extent);
    type IntoIter = ExtentIter<'a>;
    fn into_iter(self) -> ExtentIter<'a> {
        self.iter()
    }
}

impl ExtentMap {
    pub fn new() -> ExtentMap {
        ExtentMap::default()
    }

    /// A map of `extents`, which must be sorted by file block with unique
    /// keys (as a checkpoint stores them). Large maps are bulk-built: full
    /// B-tree nodes instead of the half-full ones that inserting in order
    /// leaves behind (≈ 26 instead of ≈ 48 bytes per extent).
    pub fn from_sorted(mut extents: Vec<(u64, Extent)>) -> ExtentMap {
        match extents.len() {
            0 => ExtentMap::default(),
            1 => ExtentMap::One(extents[0]),
            n if n <= SMALL_EXTENTS_MAX => {
                extents.shrink_to_fit();
                ExtentMap::Small(extents)
            }
            _ => ExtentMap::Large(extents.into_iter().collect()),
        }
    }

    /// The small forms as one sorted slice (`None` for a B-tree).
    fn as_slice(&self) -> Option<&[(u64, Extent)]> {
        match self {
            ExtentMap::One(pair) => Some(std::slice::from_ref(pair)),
            ExtentMap::Small(v) => Some(v),
            ExtentMap::Large(_) => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ExtentMap::One(_) => 1,
            ExtentMap::Small(v) => v.len(),
            ExtentMap::Large(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> ExtentIter<'_> {
        self.range(..)
    }

    /// Extents whose file block lies in `range` (an empty iterator for an
    /// empty or inverted range).
    pub fn range(&self, range: impl RangeBounds<u64>) -> ExtentIter<'_> {
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        let ExtentMap::Large(m) = self else {
            let v = self.as_slice().unwrap_or_default();
            let lo = match start {
                Bound::Included(s) => v.partition_point(|(fb, _)| *fb < s),
                Bound::Excluded(s) => v.partition_point(|(fb, _)| *fb <= s),
                Bound::Unbounded => 0,
            };
            let hi = match end {
                Bound::Included(e) => v.partition_point(|(fb, _)| *fb <= e),
                Bound::Excluded(e) => v.partition_point(|(fb, _)| *fb < e),
                Bound::Unbounded => v.len(),
            };
            return ExtentIter::Small(v[lo..hi.max(lo)].iter());
        };
        let inverted = match (start, end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        };
        // BTreeMap::range panics on inverted ranges: give them an empty
        // range instead.
        if inverted {
            ExtentIter::Large(m.range(0..0))
        } else {
            ExtentIter::Large(m.range((start, end)))
        }
    }

    /// The map invariants for the extents starting in `file_block..end`
    /// and the one before them: each 1..=[`MAX_EXTENT_BLOCKS`] blocks long,
    /// no overlap with the next, no physical run past `u64::MAX`; the
    /// small forms hold what they claim (`One` is one extent, `Small` at
    /// most [`SMALL_EXTENTS_MAX`], sorted). Local so debug builds can run
    /// it after every edit; `check(0, u64::MAX)` checks the whole map.
    pub fn check(&self, file_block: u64, end: u64) -> std::result::Result<(), String> {
        if let ExtentMap::Small(v) = self {
            if v.len() > SMALL_EXTENTS_MAX {
                return Err(format!("small map holds {} extents", v.len()));
            }
        }
        let before = self.range(..file_block).next_back();
        let inside = self.range(file_block..end);
        let after = self.range(end..).next();
        let mut prev: Option<(u64, u64)> = None;
        for (&fb, e) in before.into_iter().chain(inside).chain(after) {
            let len = e.len_blocks as u64;
            if len == 0 || len > MAX_EXTENT_BLOCKS {
                return Err(format!("extent at file block {fb} is {len} blocks long"));
            }
            if fb.checked_add(len).is_none() || e.phys_block.checked_add(len).is_none() {
                return Err(format!("extent at file block {fb} wraps around"));
            }
            if let Some((pfb, pend)) = prev {
                if pend > fb || pfb >= fb {
                    return Err(format!(
                        "extent at file block {pfb} overlaps the one at {fb}"
                    ));
                }
            }
            prev = Some((fb, fb + len));
        }
        Ok(())
    }

    pub fn get(&self, file_block: &u64) -> Option<&Extent> {
        match self {
            ExtentMap::One((fb, e)) => (fb == file_block).then_some(e),
            ExtentMap::Small(v) => v
                .binary_search_by_key(file_block, |(fb, _)| *fb)
                .ok()
                .map(|i| &v[i].1),
            ExtentMap::Large(m) => m.get(file_block),
        }
    }

    /// Insert or replace the extent at `file_block`; the old one if any.
    pub fn insert(&mut self, file_block: u64, extent: Extent) -> Option<Extent> {
        match self {
            ExtentMap::One((fb, e)) if *fb == file_block => Some(std::mem::replace(e, extent)),
            ExtentMap::One(pair) => {
                let mut v = Vec::with_capacity(2);
                v.push(*pair);
                let at = usize::from(pair.0 < file_block);
                v.insert(at, (file_block, extent));
                *self = ExtentMap::Small(v);
                None
            }
            ExtentMap::Small(v) if v.is_empty() => {
                *self = ExtentMap::One((file_block, extent));
                None
            }
            ExtentMap::Small(v) => match v.binary_search_by_key(&file_block, |(fb, _)| *fb) {
                Ok(i) => Some(std::mem::replace(&mut v[i].1, extent)),
                Err(i) if v.len() < SMALL_EXTENTS_MAX => {
                    // Exact growth: small maps stay as small as they are.
                    v.reserve_exact(1);
                    v.insert(i, (file_block, extent));
                    None
                }
                Err(_) => {
                    let mut m: BTreeMap<u64, Extent> = std::mem::take(v).into_iter().collect();
                    m.insert(file_block, extent);
                    *self = ExtentMap::Large(m);
                    None
                }
            },
            ExtentMap::Large(m) => m.insert(file_block, extent),
        }
    }

    pub fn remove(&mut self, file_block: &u64) -> Option<Extent> {
        match self {
            ExtentMap::One((fb, e)) => {
                let extent = (fb == file_block).then_some(*e)?;
                *self = ExtentMap::default();
                Some(extent)
            }
            ExtentMap::Small(v) => {
                let i = v.binary_search_by_key(file_block, |(fb, _)| *fb).ok()?;
                let (_, extent) = v.remove(i);
                if v.len() == 1 {
                    // Back inline; gives the allocation back.
                    *self = ExtentMap::One(v[0]);
                }
                Some(extent)
            }
            ExtentMap::Large(m) => {
                let extent = m.remove(file_block)?;
                // Hysteresis: back to a vector well below the threshold, so
                // a map at the threshold does not flip on every edit.
                if m.len() <= SMALL_EXTENTS_MAX / 2 {
                    let v: Vec<(u64, Extent)> = std::mem::take(m).into_iter().collect();
                    *self = ExtentMap::from_sorted(v);
                }
                Some(extent)
            }
        }
    }
}

/// Hasher for maps keyed by inode number. Inode numbers are allocated by
/// the filesystem, not chosen by users, so a fast multiplicative hash is
/// safe here (directory names, which users choose, keep SipHash).
#[derive(Clone, Copy, Default)]
pub(crate) struct InoHasher(u64);

impl Hasher for InoHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// An inode as the table shares it.
pub(crate) type InodeRef = std::sync::Arc<std::sync::RwLock<Inode>>;

/// A map keyed by inode number.
pub(crate) type InoMap<V> = HashMap<Ino, V, BuildHasherDefault<InoHasher>>;

/// Shards of the inode table (`ino % INODE_SHARDS`).
pub(crate) const INODE_SHARDS: usize = 64;

/// Inodes as the mount builds them, already split the way the table shards
/// them, so the table takes the maps as they are instead of re-inserting
/// 1M inodes. Checkpoints list inodes shard by shard, so decoding fills one
/// shard (a few hundred KiB, cache-resident) at a time, where one big map
/// took a cache miss per insert.
pub(crate) struct ShardedInodes {
    pub shards: Vec<InoMap<InodeRef>>,
}

impl ShardedInodes {
    /// Room for `count` inodes in all. Inode numbers are dense, so shards
    /// fill evenly: sized once instead of rehashing ~20 times each.
    pub fn with_capacity(count: usize) -> ShardedInodes {
        let per_shard = count / INODE_SHARDS + count / (INODE_SHARDS * 8) + 16;
        ShardedInodes {
            shards: (0..INODE_SHARDS)
                .map(|_| InoMap::with_capacity_and_hasher(per_shard, Default::default()))
                .collect(),
        }
    }

    pub fn shard_mut(&mut self, ino: Ino) -> &mut InoMap<InodeRef> {
        &mut self.shards[(ino as usize) % INODE_SHARDS]
    }

    pub fn get(&self, ino: Ino) -> Option<&InodeRef> {
        self.shards[(ino as usize) % INODE_SHARDS].get(&ino)
    }

    /// Insert; the inode that had this number, if any.
    pub fn insert(&mut self, ino: Ino, inode: InodeRef) -> Option<InodeRef> {
        self.shard_mut(ino).insert(ino, inode)
    }

    pub fn remove(&mut self, ino: Ino) -> Option<InodeRef> {
        self.shard_mut(ino).remove(&ino)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// Every inode, shard by shard.
    pub fn iter(&self) -> impl Iterator<Item = (&Ino, &InodeRef)> {
        self.shards.iter().flat_map(|s| s.iter())
    }
}

/// Where a directory entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirSlot {
    pub ino: Ino,
    pub kind: FileKind,
}

/// Directory entries, indexed by name (lookup) and by cookie (readdir).
/// Invariant: both maps hold the same set of names.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dir {
    pub by_name: HashMap<DirName, DirEntrySlot>,
    pub by_cookie: BTreeMap<u64, DirName>,
}

/// An entry name, stored once and shared by both directory indexes.
pub(crate) type DirName = std::sync::Arc<[u8]>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirEntrySlot {
    pub ino: Ino,
    pub kind: FileKind,
    pub cookie: u64,
}

impl Dir {
    /// Insert a new entry; false if the name or the cookie is taken.
    pub fn insert(&mut self, name: Vec<u8>, slot: DirSlot, cookie: u64) -> bool {
        use std::collections::btree_map::Entry as CookieEntry;
        use std::collections::hash_map::Entry as NameEntry;
        if cookie < 3 {
            return false;
        }
        // One hash of the name (this is hot in creates and at mount).
        let CookieEntry::Vacant(by_cookie) = self.by_cookie.entry(cookie) else {
            return false;
        };
        let NameEntry::Vacant(by_name) = self.by_name.entry(DirName::from(name)) else {
            return false;
        };
        by_cookie.insert(by_name.key().clone());
        by_name.insert(DirEntrySlot {
            ino: slot.ino,
            kind: slot.kind,
            cookie,
        });
        true
    }

    /// A directory of `entries` (name, target, cookie) in any order, as
    /// `insert` of each would build it, or `None` where one of those
    /// inserts would fail (a name or cookie twice, a cookie below 3). The
    /// name index is sized once and the cookie index bulk-built from sorted
    /// cookies: full B-tree nodes (≈ 26 bytes per entry) instead of the
    /// half-full ones that inserting in order leaves (≈ 48).
    pub fn from_entries(entries: Vec<(&[u8], DirSlot, u64)>) -> Option<Dir> {
        let mut by_name: HashMap<DirName, DirEntrySlot> = HashMap::with_capacity(entries.len());
        let mut cookies: Vec<(u64, DirName)> = Vec::with_capacity(entries.len());
        for (name, slot, cookie) in entries {
            if cookie < 3 {
                return None;
            }
            let name = DirName::from(name);
            let entry = DirEntrySlot {
                ino: slot.ino,
                kind: slot.kind,
                cookie,
            };
            if by_name.insert(name.clone(), entry).is_some() {
                return None;
            }
            cookies.push((cookie, name));
        }
        // Checkpoints list entries in cookie order: this sort is one pass.
        cookies.sort_unstable_by_key(|&(cookie, _)| cookie);
        if cookies.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return None;
        }
        Some(Dir {
            by_name,
            by_cookie: cookies.into_iter().collect(),
        })
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<DirEntrySlot> {
        let slot = self.by_name.remove(name)?;
        self.by_cookie.remove(&slot.cookie);
        Some(slot)
    }

    pub fn get(&self, name: &[u8]) -> Option<DirEntrySlot> {
        self.by_name.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn max_cookie(&self) -> u64 {
        self.by_cookie.keys().next_back().copied().unwrap_or(2)
    }
}

/// What few inodes have: a symlink target, extended attributes. Boxed
/// behind one optional pointer so that the others (at 1M files, nearly
/// all) do not carry 48 bytes of empty vector and map headers.
#[derive(Clone, Debug, Default)]
pub(crate) struct InodeExtra {
    /// Symlink target (empty for other kinds).
    pub target: Vec<u8>,
    pub xattrs: XattrMap,
}

/// The xattrs of an inode without any.
/// An inode's extended attributes, name → value.
pub(crate) type XattrMap = BTreeMap<Vec<u8>, Vec<u8>>;

static NO_XATTRS: XattrMap = XattrMap::new();

/// One inode in DRAM.
#[derive(Clone, Debug)]
pub(crate) struct Inode {
    pub attrs: InodeAttrs,
    /// Symlink target and xattrs; `None` when both are empty (invariant
    /// kept by the setters below, so equal inodes look alike).
    extra: Option<Box<InodeExtra>>,
    /// file_block → extent.
    pub extents: ExtentMap,
    /// Sum of extent lengths (blocks allocated to this file).
    pub alloc_blocks: u64,
    pub dir: Option<Box<Dir>>,
    /// Open handles (DRAM only): an unlinked inode lives until this is 0.
    pub open_count: u32,
    /// Timestamps changed by in-place writes and not yet journaled.
    pub attrs_dirty: bool,
    /// Removed from the table; a racing operation that still holds the Arc
    /// must treat it as gone.
    pub deleted: bool,
}

impl Inode {
    pub fn new(attrs: InodeAttrs, target: Vec<u8>) -> Inode {
        let dir = (attrs.kind == FileKind::Directory).then(Box::default);
        let extra = (!target.is_empty()).then(|| {
            Box::new(InodeExtra {
                target,
                xattrs: XattrMap::new(),
            })
        });
        Inode {
            attrs,
            extra,
            extents: ExtentMap::new(),
            alloc_blocks: 0,
            dir,
            open_count: 0,
            attrs_dirty: false,
            deleted: false,
        }
    }

    /// Symlink target (empty for other kinds).
    pub fn target(&self) -> &[u8] {
        self.extra.as_ref().map_or(&[], |e| &e.target)
    }

    pub fn set_target(&mut self, target: Vec<u8>) {
        if target.is_empty() && self.extra.is_none() {
            return;
        }
        self.extra.get_or_insert_with(Box::default).target = target;
        self.drop_empty_extra();
    }

    pub fn xattrs(&self) -> &XattrMap {
        self.extra.as_ref().map_or(&NO_XATTRS, |e| &e.xattrs)
    }

    pub fn set_xattr(&mut self, name: Vec<u8>, value: Vec<u8>) {
        self.extra
            .get_or_insert_with(Box::default)
            .xattrs
            .insert(name, value);
    }

    pub fn remove_xattr(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        let value = self.extra.as_mut()?.xattrs.remove(name);
        self.drop_empty_extra();
        value
    }

    fn drop_empty_extra(&mut self) {
        if self
            .extra
            .as_ref()
            .is_some_and(|e| e.target.is_empty() && e.xattrs.is_empty())
        {
            self.extra = None;
        }
    }

    /// The extents overlapping `file_block..file_block+len_blocks`, clipped
    /// to that range, in file order: (file_block, extent).
    pub fn extents_in(&self, file_block: u64, len_blocks: u64) -> Vec<(u64, Extent)> {
        let end = file_block.saturating_add(len_blocks);
        let mut out = Vec::new();
        if len_blocks == 0 {
            return out;
        }
        if let Some((&fb, e)) = self.extents.range(..file_block).next_back() {
            let e_end = fb + e.len_blocks as u64;
            if e_end > file_block {
                let skip = file_block - fb;
                let len = e_end.min(end) - file_block;
                out.push((
                    file_block,
                    Extent {
                        phys_block: e.phys_block + skip,
                        len_blocks: len as u32,
                        flags: e.flags,
                    },
                ));
            }
        }
        for (&fb, e) in self.extents.range(file_block..end) {
            let e_end = fb + e.len_blocks as u64;
            let len = e_end.min(end) - fb;
            out.push((
                fb,
                Extent {
                    phys_block: e.phys_block,
                    len_blocks: len as u32,
                    flags: e.flags,
                },
            ));
        }
        out
    }

    /// Remove the mapping of `file_block..+len_blocks`. With `space`, the
    /// unmapped physical blocks lose one reference each and the owner map
    /// follows the extent map.
    pub fn unmap(
        &mut self,
        ino: Ino,
        file_block: u64,
        len_blocks: u64,
        mut space: Option<&mut Space>,
    ) -> Result<()> {
        if len_blocks == 0 {
            return Ok(());
        }
        let end = file_block.saturating_add(len_blocks);
        let mut starts: Vec<u64> = Vec::new();
        if let Some((&fb, e)) = self.extents.range(..file_block).next_back() {
            if fb + e.len_blocks as u64 > file_block {
                starts.push(fb);
            }
        }
        starts.extend(self.extents.range(file_block..end).map(|(&fb, _)| fb));
        for fb in starts {
            let Some(e) = self.extents.remove(&fb) else {
                continue;
            };
            let e_len = e.len_blocks as u64;
            let e_end = fb + e_len;
            let cut_start = fb.max(file_block);
            let cut_end = e_end.min(end);
            if let Some(space) = space.as_deref_mut() {
                space.owner_remove(e.phys_block, ino, fb)?;
                space.decref(e.phys_block + (cut_start - fb), cut_end - cut_start)?;
            }
            self.alloc_blocks -= cut_end - cut_start;
            if cut_start > fb {
                let left = Extent {
                    len_blocks: (cut_start - fb) as u32,
                    ..e
                };
                self.extents.insert(fb, left);
                if let Some(space) = space.as_deref_mut() {
                    space.owner_insert(left.phys_block, ino, fb, left.len_blocks);
                }
            }
            if cut_end < e_end {
                let right = Extent {
                    phys_block: e.phys_block + (cut_end - fb),
                    len_blocks: (e_end - cut_end) as u32,
                    flags: e.flags,
                };
                self.extents.insert(cut_end, right);
                if let Some(space) = space.as_deref_mut() {
                    space.owner_insert(right.phys_block, ino, cut_end, right.len_blocks);
                }
            }
        }
        debug_assert_eq!(
            self.extents.check(file_block, end),
            Ok(()),
            "inode {ino}: extent map after unmapping {file_block}+{len_blocks}"
        );
        Ok(())
    }

    /// Map `file_block..+len_blocks` to `phys_block..`, replacing what was
    /// mapped there. Long runs are split at [`MAX_EXTENT_BLOCKS`]; adjacent
    /// extents continuing each other are merged.
    pub fn map(
        &mut self,
        ino: Ino,
        file_block: u64,
        phys_block: u64,
        len_blocks: u64,
        flags: u8,
        mut space: Option<&mut Space>,
    ) -> Result<()> {
        // Take the new references before the old ones drop: when the new
        // mapping reuses blocks of the old one (unwritten → written, a
        // clone onto itself), they never pass through refcount 0.
        if let Some(space) = space.as_deref_mut() {
            space.incref(phys_block, len_blocks)?;
        }
        self.map_pinned(ino, file_block, phys_block, len_blocks, flags, space)
    }

    /// `map` for a range whose references the caller already took.
    pub fn map_pinned(
        &mut self,
        ino: Ino,
        file_block: u64,
        phys_block: u64,
        len_blocks: u64,
        flags: u8,
        mut space: Option<&mut Space>,
    ) -> Result<()> {
        self.unmap(ino, file_block, len_blocks, space.as_deref_mut())?;
        let mut done = 0u64;
        while done < len_blocks {
            let piece = (len_blocks - done).min(MAX_EXTENT_BLOCKS);
            let fb = file_block + done;
            let pb = phys_block + done;
            self.insert_merged(ino, fb, pb, piece, flags, space.as_deref_mut());
            self.alloc_blocks += piece;
            done += piece;
        }
        debug_assert_eq!(
            self.extents
                .check(file_block, file_block.saturating_add(len_blocks)),
            Ok(()),
            "inode {ino}: extent map after mapping {file_block}+{len_blocks}"
        );
        Ok(())
    }

    /// Insert an extent into a hole of the map, merging with neighbours that
    /// continue it both in the file and on the media.
    fn insert_merged(
        &mut self,
        ino: Ino,
        mut fb: u64,
        mut pb: u64,
        mut len: u64,
        flags: u8,
        mut space: Option<&mut Space>,
    ) {
        if let Some((&lfb, l)) = self.extents.range(..fb).next_back() {
            let l = *l;
            if lfb + l.len_blocks as u64 == fb
                && l.phys_block + l.len_blocks as u64 == pb
                && l.flags == flags
                && l.len_blocks as u64 + len <= MAX_EXTENT_BLOCKS
            {
                self.extents.remove(&lfb);
                if let Some(space) = space.as_deref_mut() {
                    space.owner_remove_quiet(l.phys_block, ino, lfb);
                }
                fb = lfb;
                pb = l.phys_block;
                len += l.len_blocks as u64;
            }
        }
        let end = fb + len;
        if let Some(r) = self.extents.get(&end).copied() {
            if pb + len == r.phys_block
                && r.flags == flags
                && len + r.len_blocks as u64 <= MAX_EXTENT_BLOCKS
            {
                self.extents.remove(&end);
                if let Some(space) = space.as_deref_mut() {
                    space.owner_remove_quiet(r.phys_block, ino, end);
                }
                len += r.len_blocks as u64;
            }
        }
        self.extents.insert(
            fb,
            Extent {
                phys_block: pb,
                len_blocks: len as u32,
                flags,
            },
        );
        if let Some(space) = space {
            space.owner_insert(pb, ino, fb, len as u32);
        }
    }

    /// Drop every extent (inode deletion).
    pub fn unmap_all(&mut self, ino: Ino, space: Option<&mut Space>) -> Result<()> {
        self.unmap(ino, 0, u64::MAX, space)
    }

    /// Attributes as `stat` shows them.
    pub fn to_attr(&self, ino: Ino) -> super::Attr {
        let a = &self.attrs;
        super::Attr {
            ino,
            kind: a.kind,
            perm: a.perm,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            rdev: a.rdev,
            size: a.size,
            blocks: self.alloc_blocks * (crate::store::BLOCK_SIZE / 512),
            atime: a.atime,
            mtime: a.mtime,
            ctime: a.ctime,
            btime: a.btime,
            generation: a.generation,
            blksize: crate::store::BLOCK_SIZE as u32,
        }
    }

    pub fn dir(&self) -> Result<&Dir> {
        self.dir.as_deref().ok_or(Error::NotDir)
    }

    pub fn dir_mut(&mut self) -> Result<&mut Dir> {
        self.dir.as_deref_mut().ok_or(Error::NotDir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn extent(phys_block: u64) -> Extent {
        Extent {
            phys_block,
            len_blocks: 1,
            flags: 0,
        }
    }

    proptest! {
        #[test]
        fn extent_map_behaves_like_a_btree_map_in_both_forms(
            ops in prop::collection::vec((any::<bool>(), 0u64..40, 0u64..40, 0u64..40), 0..200)
        ) {
            let mut map = ExtentMap::new();
            let mut model: BTreeMap<u64, Extent> = BTreeMap::new();
            for (insert, key, lo, hi) in ops {
                if insert {
                    prop_assert_eq!(map.insert(key, extent(lo)), model.insert(key, extent(lo)));
                } else {
                    prop_assert_eq!(map.remove(&key), model.remove(&key));
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(map.get(&lo), model.get(&lo));
                let (lo, hi) = (lo.min(hi), lo.max(hi));
                prop_assert!(map.range(lo..hi).eq(model.range(lo..hi)));
                prop_assert!(map.range(..=hi).rev().eq(model.range(..=hi).rev()));
                prop_assert!(map.range(hi..).eq(model.range(hi..)));
                prop_assert!(map.range((Bound::Excluded(lo), Bound::Included(hi)))
                    .eq(model.range((Bound::Excluded(lo), Bound::Included(hi)))));
                prop_assert!(map.iter().eq(model.iter()));
                if let ExtentMap::Small(v) = &map {
                    prop_assert!(v.len() <= SMALL_EXTENTS_MAX);
                }
            }
        }
    }

    #[test]
    fn single_extents_stay_inline_and_bulk_built_maps_equal_inserted_ones() {
        let mut map = ExtentMap::new();
        map.insert(7, extent(70));
        assert!(matches!(map, ExtentMap::One(_)));
        map.insert(3, extent(30));
        assert!(matches!(&map, ExtentMap::Small(v) if v.len() == 2));
        assert_eq!(map.remove(&7), Some(extent(70)));
        assert!(matches!(map, ExtentMap::One((3, _))));
        assert_eq!(map.remove(&4), None);
        assert_eq!(map.remove(&3), Some(extent(30)));
        assert!(map.is_empty());
        for count in [0u64, 1, 2, SMALL_EXTENTS_MAX as u64, 100] {
            let sorted: Vec<(u64, Extent)> = (0..count).map(|i| (2 * i, extent(i))).collect();
            let mut inserted = ExtentMap::new();
            for &(fb, e) in &sorted {
                inserted.insert(fb, e);
            }
            let built = ExtentMap::from_sorted(sorted);
            assert_eq!(built, inserted);
            assert_eq!(built.len() as u64, count);
            assert_eq!(matches!(built, ExtentMap::One(_)), count == 1);
            assert_eq!(
                matches!(built, ExtentMap::Large(_)),
                count > SMALL_EXTENTS_MAX as u64
            );
        }
    }

    #[test]
    fn bulk_loaded_directories_equal_inserted_ones_and_refuse_duplicates() {
        let slot = |ino| DirSlot {
            ino,
            kind: FileKind::Regular,
        };
        // Out of cookie order on purpose: the loader must not rely on it.
        let entries: Vec<(Vec<u8>, DirSlot, u64)> = (0..50u64)
            .map(|i| (format!("n{i}").into_bytes(), slot(i + 10), 3 + (i * 7) % 50))
            .collect();
        let mut inserted = Dir::default();
        for (name, s, cookie) in entries.clone() {
            assert!(inserted.insert(name, s, cookie));
        }
        fn borrowed(entries: &[(Vec<u8>, DirSlot, u64)]) -> Vec<(&[u8], DirSlot, u64)> {
            entries
                .iter()
                .map(|(n, s, c)| (n.as_slice(), *s, *c))
                .collect()
        }
        let loaded = Dir::from_entries(borrowed(&entries)).expect("valid entries");
        assert!(loaded.by_cookie.iter().eq(inserted.by_cookie.iter()));
        assert_eq!(loaded.len(), inserted.len());
        for (name, s) in &inserted.by_name {
            assert_eq!(loaded.get(name), Some(*s));
        }
        assert_eq!(loaded.max_cookie(), 52);

        let mut same_name = entries.clone();
        same_name.push((b"n3".to_vec(), slot(99), 200));
        assert!(Dir::from_entries(borrowed(&same_name)).is_none());
        let mut same_cookie = entries.clone();
        same_cookie.push((b"other".to_vec(), slot(99), 3));
        assert!(Dir::from_entries(borrowed(&same_cookie)).is_none());
        assert!(Dir::from_entries(vec![(b"low".as_slice(), slot(5), 2)]).is_none());
    }

    #[test]
    fn inverted_extent_ranges_are_empty_in_both_forms() {
        let mut map = ExtentMap::new();
        for fb in 0..(SMALL_EXTENTS_MAX as u64 * 2) {
            map.insert(fb, extent(fb));
            let (start, end) = (5, 3);
            assert_eq!(map.range(start..end).count(), 0);
            assert_eq!(
                map.range((Bound::Excluded(4), Bound::Excluded(4))).count(),
                0
            );
        }
        assert!(matches!(map, ExtentMap::Large(_)));
    }

    #[test]
    fn extent_map_check_catches_overlap_and_bad_lengths() {
        let mut map = ExtentMap::new();
        for fb in [0u64, 10, 20] {
            map.insert(
                fb,
                Extent {
                    len_blocks: 10,
                    ..extent(100 + fb)
                },
            );
        }
        assert_eq!(map.check(0, u64::MAX), Ok(()));
        // Deliberately broken: the extent at 10 now runs into the one at 20.
        map.insert(
            10,
            Extent {
                len_blocks: 11,
                ..extent(110)
            },
        );
        assert!(map
            .check(0, u64::MAX)
            .expect_err("overlap")
            .contains("overlaps"));
        assert!(map.check(10, 11).is_err(), "the local check sees it too");
        map.insert(
            10,
            Extent {
                len_blocks: 0,
                ..extent(110)
            },
        );
        assert!(map.check(5, 6).expect_err("empty").contains("blocks long"));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "extent map after")]
    fn a_map_edit_next_to_a_broken_extent_is_caught() {
        let attrs = InodeAttrs {
            kind: FileKind::Regular,
            perm: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 0,
            atime: Timestamp::default(),
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            btime: Timestamp::default(),
            generation: 1,
            parent: 0,
            next_cookie: 0,
        };
        let mut inode = Inode::new(attrs, Vec::new());
        // Deliberately broken: an empty extent (never built by the code).
        inode.extents.insert(
            30,
            Extent {
                len_blocks: 0,
                ..extent(900)
            },
        );
        let _ = inode.map(5, 29, 100, 1, 0, None);
    }
}
