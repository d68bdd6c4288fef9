//! Encoding of journal records and of the checkpoint payload (docs/CORE.md).
//!
//! Everything is little-endian with explicit widths. Decoding treats its
//! input as untrusted: every length is checked against the remaining bytes
//! and against the format's limits, and every enum tag is validated; a bad
//! payload yields [`Error::Corrupt`], never a panic.

use std::sync::{Arc, RwLock};

use super::inode::{
    Dir, DirSlot, Extent, ExtentMap, Inode, InodeAttrs, ShardedInodes, EXTENT_UNWRITTEN,
};
use super::limits::{
    MAX_EXTENT_BLOCKS, MAX_FILE_BYTES, SYMLINK_MAX, XATTR_NAME_MAX, XATTR_VALUE_MAX,
};
use super::{Error, FileKind, Ino, Result, Timestamp, NAME_MAX};
use crate::store::BLOCK_SIZE;

/// Checkpoint payload magic and version.
const CHECKPOINT_MAGIC: &[u8; 8] = b"CDXCKPT\0";
pub const CHECKPOINT_VERSION: u32 = 1;
/// Transaction payload magic byte + version (one byte each).
const TXN_MAGIC: u8 = 0xC7;
pub const TXN_VERSION: u8 = 1;

/// One logical metadata change. A transaction is a list of records applied
/// in order (by the live operation and, identically, by replay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// Create the inode, or replace the attributes (and symlink target) of
    /// an existing one; extents, xattrs and entries are kept.
    PutInode {
        ino: Ino,
        attrs: InodeAttrs,
        target: Vec<u8>,
    },
    /// Remove the inode with all its extents (refcounts drop), xattrs and
    /// entries.
    DeleteInode {
        ino: Ino,
    },
    PutDirent {
        dir: Ino,
        name: Vec<u8>,
        ino: Ino,
        kind: FileKind,
        cookie: u64,
    },
    DeleteDirent {
        dir: Ino,
        name: Vec<u8>,
    },
    SetXattr {
        ino: Ino,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    RemoveXattr {
        ino: Ino,
        name: Vec<u8>,
    },
    /// Map `file_block..+len_blocks` to `phys_block..`, replacing whatever
    /// was mapped there.
    MapExtent {
        ino: Ino,
        file_block: u64,
        phys_block: u64,
        len_blocks: u64,
        flags: u8,
    },
    /// Unmap `file_block..+len_blocks` (holes stay holes).
    UnmapRange {
        ino: Ino,
        file_block: u64,
        len_blocks: u64,
    },
    /// Share the source's mapping of `src_block..+len_blocks` (as it is
    /// before this record: a snapshot) at `dst_block`, replacing what the
    /// destination mapped there; holes in the source unmap the destination.
    CloneRange {
        src: Ino,
        src_block: u64,
        dst: Ino,
        dst_block: u64,
        len_blocks: u64,
    },
    /// A directory's entries changed: set mtime = ctime = `time` and
    /// re-derive size (entries × 32) and next_cookie (past every cookie).
    /// The compact form of the parent update of file creates and unlinks.
    TouchDir {
        dir: Ino,
        time: Timestamp,
    },
}

const TAG_PUT_INODE: u8 = 1;
const TAG_DELETE_INODE: u8 = 2;
const TAG_PUT_DIRENT: u8 = 3;
const TAG_DELETE_DIRENT: u8 = 4;
const TAG_SET_XATTR: u8 = 5;
const TAG_REMOVE_XATTR: u8 = 6;
const TAG_MAP_EXTENT: u8 = 7;
const TAG_UNMAP_RANGE: u8 = 8;
const TAG_CLONE_RANGE: u8 = 9;
const TAG_TOUCH_DIR: u8 = 10;

/// Append-only little-endian writer.
#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes_u16(&mut self, b: &[u8]) {
        // Callers bound every such field to ≤ 65535 bytes (names, targets).
        self.u16(b.len() as u16);
        self.buf.extend_from_slice(b);
    }
    fn bytes_u32(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }
    fn time(&mut self, t: Timestamp) {
        self.i64(t.secs);
        self.u32(t.nanos);
    }
    fn attrs(&mut self, a: &InodeAttrs) {
        // Assembled in a fixed array and appended once (hot in checkpoints).
        let mut b = [0u8; ATTRS_BYTES];
        b[0] = kind_tag(a.kind);
        let mut pos = 1;
        let mut put = |bytes: &[u8]| {
            b[pos..pos + bytes.len()].copy_from_slice(bytes);
            pos += bytes.len();
        };
        for v in [a.perm, a.nlink, a.uid, a.gid, a.rdev] {
            put(&v.to_le_bytes());
        }
        put(&a.size.to_le_bytes());
        for t in [a.atime, a.mtime, a.ctime, a.btime] {
            put(&t.secs.to_le_bytes());
            put(&t.nanos.to_le_bytes());
        }
        for v in [a.generation, a.parent, a.next_cookie] {
            put(&v.to_le_bytes());
        }
        self.buf.extend_from_slice(&b);
    }
}

/// Encoded size of `InodeAttrs`: kind, 5 × u32, size, 4 timestamps, 3 × u64.
const ATTRS_BYTES: usize = 1 + 5 * 4 + 8 + 4 * 12 + 3 * 8;

/// Bounds-checked little-endian reader over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(what.to_string())
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(corrupt("truncated metadata record"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn bytes_u16(&mut self, max: usize) -> Result<Vec<u8>> {
        let n = self.u16()? as usize;
        if n > max {
            return Err(corrupt("field longer than its limit"));
        }
        Ok(self.take(n)?.to_vec())
    }
    fn bytes_u32(&mut self, max: usize) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(corrupt("field longer than its limit"));
        }
        Ok(self.take(n)?.to_vec())
    }
    fn name(&mut self) -> Result<Vec<u8>> {
        Ok(self.name_slice()?.to_vec())
    }
    /// A directory entry name, borrowed from the input (no copy where the
    /// caller stores it in a form of its own).
    fn name_slice(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        if n > NAME_MAX {
            return Err(corrupt("field longer than its limit"));
        }
        let name = self.take(n)?;
        if !valid_name(name) {
            return Err(corrupt("invalid directory entry name"));
        }
        Ok(name)
    }
    fn time(&mut self) -> Result<Timestamp> {
        let secs = self.i64()?;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(corrupt("timestamp nanoseconds out of range"));
        }
        Ok(Timestamp { secs, nanos })
    }
    fn kind(&mut self) -> Result<FileKind> {
        kind_from_tag(self.u8()?).ok_or_else(|| corrupt("unknown file kind"))
    }
    fn attrs(&mut self) -> Result<InodeAttrs> {
        let kind = self.kind()?;
        let perm = self.u32()?;
        if perm & !0o7777 != 0 {
            return Err(corrupt("permission bits out of range"));
        }
        let nlink = self.u32()?;
        let uid = self.u32()?;
        let gid = self.u32()?;
        let rdev = self.u32()?;
        let size = self.u64()?;
        if size > MAX_FILE_BYTES {
            return Err(corrupt("inode size out of range"));
        }
        Ok(InodeAttrs {
            kind,
            perm,
            nlink,
            uid,
            gid,
            rdev,
            size,
            atime: self.time()?,
            mtime: self.time()?,
            ctime: self.time()?,
            btime: self.time()?,
            generation: self.u64()?,
            parent: self.u64()?,
            next_cookie: self.u64()?,
        })
    }
    fn extent_fields(&mut self) -> Result<(u64, u64, u64, u8)> {
        let file_block = self.u64()?;
        let phys_block = self.u64()?;
        let len_blocks = self.u64()?;
        let flags = self.u8()?;
        if len_blocks == 0
            || file_block
                .checked_add(len_blocks)
                .is_none_or(|end| end > MAX_FILE_BYTES / BLOCK_SIZE)
        {
            return Err(corrupt("extent length out of range"));
        }
        if phys_block.checked_add(len_blocks).is_none() {
            return Err(corrupt("extent physical range overflows"));
        }
        if flags & !EXTENT_UNWRITTEN != 0 {
            return Err(corrupt("unknown extent flags"));
        }
        Ok((file_block, phys_block, len_blocks, flags))
    }
}

/// A valid directory entry name: 1..=255 bytes, no '/' or NUL, not "." or "..".
pub(crate) fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

fn kind_tag(kind: FileKind) -> u8 {
    match kind {
        FileKind::Regular => 1,
        FileKind::Directory => 2,
        FileKind::Symlink => 3,
        FileKind::Fifo => 4,
        FileKind::Socket => 5,
        FileKind::CharDevice => 6,
        FileKind::BlockDevice => 7,
    }
}

fn kind_from_tag(tag: u8) -> Option<FileKind> {
    Some(match tag {
        1 => FileKind::Regular,
        2 => FileKind::Directory,
        3 => FileKind::Symlink,
        4 => FileKind::Fifo,
        5 => FileKind::Socket,
        6 => FileKind::CharDevice,
        7 => FileKind::BlockDevice,
        _ => return None,
    })
}

/// Encode one transaction (a list of records).
pub(crate) fn encode_txn(records: &[Record]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(TXN_MAGIC);
    w.u8(TXN_VERSION);
    w.u32(records.len() as u32);
    for rec in records {
        encode_record(&mut w, rec);
    }
    w.buf
}

fn encode_record(w: &mut Writer, rec: &Record) {
    match rec {
        Record::PutInode { ino, attrs, target } => {
            w.u8(TAG_PUT_INODE);
            w.u64(*ino);
            w.attrs(attrs);
            w.bytes_u16(target);
        }
        Record::DeleteInode { ino } => {
            w.u8(TAG_DELETE_INODE);
            w.u64(*ino);
        }
        Record::PutDirent {
            dir,
            name,
            ino,
            kind,
            cookie,
        } => {
            w.u8(TAG_PUT_DIRENT);
            w.u64(*dir);
            w.bytes_u16(name);
            w.u64(*ino);
            w.u8(kind_tag(*kind));
            w.u64(*cookie);
        }
        Record::DeleteDirent { dir, name } => {
            w.u8(TAG_DELETE_DIRENT);
            w.u64(*dir);
            w.bytes_u16(name);
        }
        Record::SetXattr { ino, name, value } => {
            w.u8(TAG_SET_XATTR);
            w.u64(*ino);
            w.bytes_u16(name);
            w.bytes_u32(value);
        }
        Record::RemoveXattr { ino, name } => {
            w.u8(TAG_REMOVE_XATTR);
            w.u64(*ino);
            w.bytes_u16(name);
        }
        Record::MapExtent {
            ino,
            file_block,
            phys_block,
            len_blocks,
            flags,
        } => {
            w.u8(TAG_MAP_EXTENT);
            w.u64(*ino);
            w.u64(*file_block);
            w.u64(*phys_block);
            w.u64(*len_blocks);
            w.u8(*flags);
        }
        Record::UnmapRange {
            ino,
            file_block,
            len_blocks,
        } => {
            w.u8(TAG_UNMAP_RANGE);
            w.u64(*ino);
            w.u64(*file_block);
            w.u64(*len_blocks);
        }
        Record::CloneRange {
            src,
            src_block,
            dst,
            dst_block,
            len_blocks,
        } => {
            w.u8(TAG_CLONE_RANGE);
            w.u64(*src);
            w.u64(*src_block);
            w.u64(*dst);
            w.u64(*dst_block);
            w.u64(*len_blocks);
        }
        Record::TouchDir { dir, time } => {
            w.u8(TAG_TOUCH_DIR);
            w.u64(*dir);
            w.time(*time);
        }
    }
}

/// Decode one transaction payload.
pub(crate) fn decode_txn(payload: &[u8]) -> Result<Vec<Record>> {
    let mut r = Reader::new(payload);
    if r.u8()? != TXN_MAGIC {
        return Err(corrupt("journal transaction has a bad magic"));
    }
    if r.u8()? != TXN_VERSION {
        return Err(corrupt("journal transaction has an unknown version"));
    }
    let count = r.u32()? as usize;
    // Each record is at least 9 bytes: bound the allocation by the input.
    if count > r.remaining() / 9 {
        return Err(corrupt("journal transaction record count out of range"));
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(decode_record(&mut r)?);
    }
    if r.remaining() != 0 {
        return Err(corrupt("trailing bytes after journal records"));
    }
    Ok(records)
}

fn decode_record(r: &mut Reader<'_>) -> Result<Record> {
    let tag = r.u8()?;
    Ok(match tag {
        TAG_PUT_INODE => {
            let ino = r.u64()?;
            let attrs = r.attrs()?;
            let target = r.bytes_u16(SYMLINK_MAX)?;
            Record::PutInode { ino, attrs, target }
        }
        TAG_DELETE_INODE => Record::DeleteInode { ino: r.u64()? },
        TAG_PUT_DIRENT => Record::PutDirent {
            dir: r.u64()?,
            name: r.name()?,
            ino: r.u64()?,
            kind: r.kind()?,
            cookie: r.u64()?,
        },
        TAG_DELETE_DIRENT => Record::DeleteDirent {
            dir: r.u64()?,
            name: r.name()?,
        },
        TAG_SET_XATTR => Record::SetXattr {
            ino: r.u64()?,
            name: r.bytes_u16(XATTR_NAME_MAX)?,
            value: r.bytes_u32(XATTR_VALUE_MAX)?,
        },
        TAG_REMOVE_XATTR => Record::RemoveXattr {
            ino: r.u64()?,
            name: r.bytes_u16(XATTR_NAME_MAX)?,
        },
        TAG_MAP_EXTENT => {
            let ino = r.u64()?;
            let (file_block, phys_block, len_blocks, flags) = r.extent_fields()?;
            Record::MapExtent {
                ino,
                file_block,
                phys_block,
                len_blocks,
                flags,
            }
        }
        TAG_UNMAP_RANGE => {
            let ino = r.u64()?;
            let file_block = r.u64()?;
            let len_blocks = r.u64()?;
            if file_block.checked_add(len_blocks).is_none() {
                return Err(corrupt("unmap range overflows"));
            }
            Record::UnmapRange {
                ino,
                file_block,
                len_blocks,
            }
        }
        TAG_CLONE_RANGE => {
            let src = r.u64()?;
            let src_block = r.u64()?;
            let dst = r.u64()?;
            let dst_block = r.u64()?;
            let len_blocks = r.u64()?;
            let in_range = |start: u64| {
                start
                    .checked_add(len_blocks)
                    .is_some_and(|end| end <= MAX_FILE_BYTES / BLOCK_SIZE)
            };
            if !in_range(src_block) || !in_range(dst_block) {
                return Err(corrupt("clone range overflows"));
            }
            Record::CloneRange {
                src,
                src_block,
                dst,
                dst_block,
                len_blocks,
            }
        }
        TAG_TOUCH_DIR => Record::TouchDir {
            dir: r.u64()?,
            time: r.time()?,
        },
        _ => return Err(corrupt("unknown journal record tag")),
    })
}

/// The whole persistent metadata, as a checkpoint carries it.
pub(crate) struct CheckpointState {
    pub next_ino: u64,
    pub next_generation: u64,
    pub inodes: ShardedInodes,
}

/// Serialize the checkpoint header and then each inode via `each`.
pub(crate) fn encode_checkpoint_header(
    w: &mut Writer,
    next_ino: u64,
    next_generation: u64,
    inode_count: u64,
) {
    w.buf.extend_from_slice(CHECKPOINT_MAGIC);
    w.u32(CHECKPOINT_VERSION);
    w.u64(next_ino);
    w.u64(next_generation);
    w.u64(inode_count);
}

pub(crate) fn encode_checkpoint_inode(w: &mut Writer, ino: Ino, inode: &Inode) {
    w.u64(ino);
    w.attrs(&inode.attrs);
    w.bytes_u16(inode.target());
    w.u32(inode.xattrs().len() as u32);
    for (name, value) in inode.xattrs() {
        w.bytes_u16(name);
        w.bytes_u32(value);
    }
    w.u64(inode.extents.len() as u64);
    for (&file_block, e) in &inode.extents {
        w.u64(file_block);
        w.u64(e.phys_block);
        w.u64(e.len_blocks as u64);
        w.u8(e.flags);
    }
    match &inode.dir {
        Some(dir) => {
            w.u64(dir.by_cookie.len() as u64);
            for (&cookie, name) in &dir.by_cookie {
                // by_cookie and by_name are kept in step (Dir invariant).
                if let Some(slot) = dir.by_name.get(name) {
                    w.bytes_u16(name);
                    w.u64(slot.ino);
                    w.u8(kind_tag(slot.kind));
                    w.u64(cookie);
                }
            }
        }
        None => w.u64(0),
    }
}

pub(crate) fn decode_checkpoint(payload: &[u8]) -> Result<CheckpointState> {
    let mut r = Reader::new(payload);
    if r.take(8)? != CHECKPOINT_MAGIC {
        return Err(corrupt("checkpoint has a bad magic"));
    }
    let version = r.u32()?;
    if version != CHECKPOINT_VERSION {
        return Err(Error::Corrupt(format!(
            "checkpoint version {version} is not supported"
        )));
    }
    let next_ino = r.u64()?;
    let next_generation = r.u64()?;
    let count = r.u64()?;
    // An inode takes at least 100 bytes: bound the allocation by the input.
    if count > (r.remaining() / 100) as u64 {
        return Err(corrupt("checkpoint inode count out of range"));
    }
    let mut inodes = ShardedInodes::with_capacity(count as usize);
    for _ in 0..count {
        let ino = r.u64()?;
        let attrs = r.attrs()?;
        let target = r.bytes_u16(SYMLINK_MAX)?;
        let mut inode = Inode::new(attrs, target);
        let xattr_count = r.u32()?;
        for _ in 0..xattr_count {
            let name = r.bytes_u16(XATTR_NAME_MAX)?;
            let value = r.bytes_u32(XATTR_VALUE_MAX)?;
            inode.set_xattr(name, value);
        }
        let extent_count = r.u64()?;
        if extent_count > (r.remaining() / 25) as u64 {
            return Err(corrupt("checkpoint extent count out of range"));
        }
        // Collected in file order (each extent starts at or after the end
        // of the previous one: checked), then built in one go.
        let mut extents = Vec::with_capacity(extent_count as usize);
        let mut prev_end = 0u64;
        for _ in 0..extent_count {
            let (file_block, phys_block, len_blocks, flags) = r.extent_fields()?;
            if len_blocks > MAX_EXTENT_BLOCKS || file_block < prev_end {
                return Err(corrupt("checkpoint extents overlap or are too long"));
            }
            prev_end = file_block + len_blocks;
            extents.push((
                file_block,
                Extent {
                    phys_block,
                    len_blocks: len_blocks as u32,
                    flags,
                },
            ));
            inode.alloc_blocks += len_blocks;
        }
        inode.extents = ExtentMap::from_sorted(extents);
        let dirent_count = r.u64()?;
        if dirent_count > 0 && inode.attrs.kind != FileKind::Directory {
            return Err(corrupt("directory entries in a non-directory"));
        }
        if dirent_count > (r.remaining() / 20) as u64 {
            return Err(corrupt("checkpoint entry count out of range"));
        }
        if let Some(dir) = inode.dir.as_mut() {
            // Bounded by the input size (checked above).
            let mut entries = Vec::with_capacity(dirent_count as usize);
            for _ in 0..dirent_count {
                let name = r.name_slice()?;
                let child = r.u64()?;
                let kind = r.kind()?;
                let cookie = r.u64()?;
                entries.push((name, DirSlot { ino: child, kind }, cookie));
            }
            **dir = Dir::from_entries(entries)
                .ok_or_else(|| corrupt("duplicate directory entry name or cookie"))?;
        }
        if inodes.insert(ino, Arc::new(RwLock::new(inode))).is_some() {
            return Err(Error::Corrupt(format!("inode {ino} appears twice")));
        }
    }
    if r.remaining() != 0 {
        return Err(corrupt("trailing bytes after checkpoint"));
    }
    Ok(CheckpointState {
        next_ino,
        next_generation,
        inodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_attrs(kind: FileKind) -> InodeAttrs {
        InodeAttrs {
            kind,
            perm: 0o644,
            nlink: 1,
            uid: 1000,
            gid: 100,
            rdev: 0,
            size: 12345,
            atime: Timestamp { secs: -5, nanos: 7 },
            mtime: Timestamp { secs: 9, nanos: 0 },
            ctime: Timestamp { secs: 1, nanos: 2 },
            btime: Timestamp { secs: 3, nanos: 4 },
            generation: 77,
            parent: 1,
            next_cookie: 3,
        }
    }

    #[test]
    fn every_record_kind_round_trips() {
        let records = vec![
            Record::PutInode {
                ino: 5,
                attrs: sample_attrs(FileKind::Symlink),
                target: b"/a/b".to_vec(),
            },
            Record::DeleteInode { ino: 9 },
            Record::PutDirent {
                dir: 1,
                name: b"x".to_vec(),
                ino: 5,
                kind: FileKind::Regular,
                cookie: 3,
            },
            Record::DeleteDirent {
                dir: 1,
                name: b"y".to_vec(),
            },
            Record::SetXattr {
                ino: 5,
                name: b"user.a".to_vec(),
                value: vec![1, 2, 3],
            },
            Record::RemoveXattr {
                ino: 5,
                name: b"user.a".to_vec(),
            },
            Record::MapExtent {
                ino: 5,
                file_block: 10,
                phys_block: 100,
                len_blocks: 4,
                flags: EXTENT_UNWRITTEN,
            },
            Record::UnmapRange {
                ino: 5,
                file_block: 0,
                len_blocks: u64::MAX,
            },
            Record::CloneRange {
                src: 5,
                src_block: 0,
                dst: 6,
                dst_block: 8,
                len_blocks: 3,
            },
            Record::TouchDir {
                dir: 1,
                time: Timestamp { secs: 5, nanos: 6 },
            },
        ];
        let bytes = encode_txn(&records);
        assert_eq!(decode_txn(&bytes).expect("decodes"), records);
    }

    #[test]
    fn every_truncation_of_a_transaction_is_rejected_without_panic() {
        let records = vec![
            Record::PutDirent {
                dir: 1,
                name: b"name".to_vec(),
                ino: 5,
                kind: FileKind::Regular,
                cookie: 3,
            },
            Record::MapExtent {
                ino: 5,
                file_block: 1,
                phys_block: 2,
                len_blocks: 3,
                flags: 0,
            },
        ];
        let bytes = encode_txn(&records);
        for cut in 0..bytes.len() {
            assert!(decode_txn(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn invalid_names_and_tags_are_corrupt() {
        let mut bytes = encode_txn(&[Record::DeleteDirent {
            dir: 1,
            name: b"ok".to_vec(),
        }]);
        let name_at = bytes.len() - 2;
        bytes[name_at] = b'/';
        assert!(matches!(decode_txn(&bytes), Err(Error::Corrupt(_))));
        let mut bytes = encode_txn(&[Record::DeleteInode { ino: 1 }]);
        bytes[6] = 200;
        assert!(matches!(decode_txn(&bytes), Err(Error::Corrupt(_))));
    }

    #[test]
    fn checkpoint_round_trips_inodes_extents_entries_and_xattrs() {
        let mut dir = Inode::new(sample_attrs(FileKind::Directory), Vec::new());
        if let Some(d) = dir.dir.as_mut() {
            assert!(d.insert(
                b"f".to_vec(),
                DirSlot {
                    ino: 2,
                    kind: FileKind::Regular
                },
                3
            ));
        }
        let mut file = Inode::new(sample_attrs(FileKind::Regular), Vec::new());
        file.set_xattr(b"user.k".to_vec(), b"v".to_vec());
        file.extents.insert(
            4,
            Extent {
                phys_block: 40,
                len_blocks: 2,
                flags: 0,
            },
        );
        file.alloc_blocks = 2;
        let mut w = Writer::default();
        encode_checkpoint_header(&mut w, 3, 9, 2);
        encode_checkpoint_inode(&mut w, 1, &dir);
        encode_checkpoint_inode(&mut w, 2, &file);
        let state = decode_checkpoint(&w.buf).expect("decodes");
        assert_eq!(state.next_ino, 3);
        assert_eq!(state.inodes.len(), 2);
        let f = state
            .inodes
            .get(2)
            .expect("inode 2")
            .read()
            .expect("unpoisoned");
        assert_eq!(f.extents, file.extents);
        assert_eq!(f.xattrs(), file.xattrs());
        let d = state
            .inodes
            .get(1)
            .expect("inode 1")
            .read()
            .expect("unpoisoned");
        assert_eq!(d.dir.as_ref().map(|d| d.by_cookie.len()), Some(1));
        for cut in 0..w.buf.len() {
            assert!(decode_checkpoint(&w.buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_txn(&bytes);
            let _ = decode_checkpoint(&bytes);
            let mut with_magic = vec![TXN_MAGIC, TXN_VERSION];
            with_magic.extend_from_slice(&bytes);
            let _ = decode_txn(&with_magic);
            let mut ckpt = CHECKPOINT_MAGIC.to_vec();
            ckpt.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
            ckpt.extend_from_slice(&bytes);
            let _ = decode_checkpoint(&ckpt);
        }
    }
}
