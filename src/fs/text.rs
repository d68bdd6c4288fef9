//! Text forms of journal records and checkpoint inodes (as bcachefs's
//! `to_text` and xfs_db's print), and the listings `cowdax dump --journal`
//! and `--inodes` build from them. Read-only: everything is decoded from a
//! copy of the media bytes, and undecodable input is printed as such, never
//! a panic.

use std::fmt::{self, Write as _};

use super::codec::{self, Record};
use super::inode::{Inode, EXTENT_UNWRITTEN};
use super::{FileKind, Ino, Timestamp};
use crate::media::Media;
use crate::store::{checkpoint, ring_of, Superblock};

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Regular => "regular",
        FileKind::Directory => "directory",
        FileKind::Symlink => "symlink",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "socket",
        FileKind::CharDevice => "chardev",
        FileKind::BlockDevice => "blockdev",
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = (self.secs, self.nanos);
        write!(f, "{secs}.{nanos:09}")
    }
}

/// Bytes from media (names, targets) as quoted, escaped ASCII.
struct Quoted<'a>(&'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

fn extent_flags(flags: u8) -> &'static str {
    if flags & EXTENT_UNWRITTEN != 0 {
        " unwritten"
    } else {
        ""
    }
}

/// One record on one line: its name, then its fields.
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::PutInode { ino, attrs, target } => {
                write!(
                    f,
                    "put_inode ino {ino} {} perm {:04o} nlink {} uid {} gid {} size {} gen {} mtime {} ctime {}",
                    kind_name(attrs.kind),
                    attrs.perm,
                    attrs.nlink,
                    attrs.uid,
                    attrs.gid,
                    attrs.size,
                    attrs.generation,
                    attrs.mtime,
                    attrs.ctime
                )?;
                if attrs.kind == FileKind::Directory {
                    write!(f, " parent {}", attrs.parent)?;
                }
                if !target.is_empty() {
                    write!(f, " target {}", Quoted(target))?;
                }
                Ok(())
            }
            Record::DeleteInode { ino } => write!(f, "delete_inode ino {ino}"),
            Record::PutDirent {
                dir,
                name,
                ino,
                kind,
                cookie,
            } => write!(
                f,
                "put_dirent dir {dir} {} -> ino {ino} {} cookie {cookie}",
                Quoted(name),
                kind_name(*kind)
            ),
            Record::DeleteDirent { dir, name } => {
                write!(f, "delete_dirent dir {dir} {}", Quoted(name))
            }
            Record::SetXattr { ino, name, value } => write!(
                f,
                "set_xattr ino {ino} {} {} bytes",
                Quoted(name),
                value.len()
            ),
            Record::RemoveXattr { ino, name } => {
                write!(f, "remove_xattr ino {ino} {}", Quoted(name))
            }
            Record::MapExtent {
                ino,
                file_block,
                phys_block,
                len_blocks,
                flags,
            } => write!(
                f,
                "map_extent ino {ino} file_block {file_block}+{len_blocks} -> phys_block {phys_block}{}",
                extent_flags(*flags)
            ),
            Record::UnmapRange {
                ino,
                file_block,
                len_blocks,
            } => write!(f, "unmap_range ino {ino} file_block {file_block}+{len_blocks}"),
            Record::CloneRange {
                src,
                src_block,
                dst,
                dst_block,
                len_blocks,
            } => write!(
                f,
                "clone_range ino {src} file_block {src_block}+{len_blocks} -> ino {dst} file_block {dst_block}"
            ),
            Record::TouchDir { dir, time } => write!(f, "touch_dir dir {dir} time {time}"),
        }
    }
}

/// A checkpoint inode: a header line, then one indented line per
/// timestamp set, extent, xattr, directory entry and symlink target.
pub(crate) struct InodeText<'a>(pub Ino, pub &'a Inode);

impl fmt::Display for InodeText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let InodeText(ino, inode) = *self;
        let a = &inode.attrs;
        writeln!(
            f,
            "inode {ino}: {} perm {:04o} nlink {} uid {} gid {} rdev {} size {} gen {} blocks {}",
            kind_name(a.kind),
            a.perm,
            a.nlink,
            a.uid,
            a.gid,
            a.rdev,
            a.size,
            a.generation,
            inode.alloc_blocks
        )?;
        writeln!(
            f,
            "  atime {} mtime {} ctime {} btime {}",
            a.atime, a.mtime, a.ctime, a.btime
        )?;
        if a.kind == FileKind::Directory {
            writeln!(f, "  parent {} next_cookie {}", a.parent, a.next_cookie)?;
        }
        if !inode.target().is_empty() {
            writeln!(f, "  target {}", Quoted(inode.target()))?;
        }
        for (name, value) in inode.xattrs() {
            writeln!(f, "  xattr {} {} bytes", Quoted(name), value.len())?;
        }
        for (&file_block, e) in &inode.extents {
            writeln!(
                f,
                "  extent file_block {file_block}+{} -> phys_block {}{}",
                e.len_blocks,
                e.phys_block,
                extent_flags(e.flags)
            )?;
        }
        if let Some(dir) = &inode.dir {
            for (&cookie, name) in &dir.by_cookie {
                if let Some(slot) = dir.by_name.get(name) {
                    writeln!(
                        f,
                        "  entry {} -> ino {} {} cookie {cookie}",
                        Quoted(name),
                        slot.ino,
                        kind_name(slot.kind)
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// The live journal of `sb` (from its replay point), one transaction per
/// header line and one record per indented line.
pub fn list_journal(media: &dyn Media, sb: &Superblock) -> String {
    let scan = ring_of(sb).scan(
        media,
        sb.journal_replay_offset,
        sb.journal_replay_seq,
        sb.journal_replay_epoch,
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "journal records from offset {} (seq {}): {} transactions",
        sb.journal_replay_offset,
        sb.journal_replay_seq,
        scan.records.len()
    );
    for txn in &scan.records {
        match codec::decode_txn(&txn.payload) {
            Ok(records) => {
                let _ = writeln!(
                    out,
                    "txn seq {} offset {}: {} records",
                    txn.seq,
                    txn.ring_offset,
                    records.len()
                );
                for record in &records {
                    let _ = writeln!(out, "  {record}");
                }
            }
            Err(err) => {
                let _ = writeln!(
                    out,
                    "txn seq {} offset {}: undecodable: {err}",
                    txn.seq, txn.ring_offset
                );
            }
        }
    }
    let _ = writeln!(out, "journal ends: {}", scan.stop);
    out
}

/// The inodes of `sb`'s checkpoint (not the journal after it), in inode
/// order; only inode `only` when given.
pub fn list_inodes(media: &dyn Media, sb: &Superblock, only: Option<u64>) -> String {
    let mut out = String::new();
    if sb.checkpoint_block == 0 {
        out.push_str("checkpoint inodes: no checkpoint\n");
        return out;
    }
    let payload = checkpoint::read_descriptor(media, sb)
        .and_then(|d| checkpoint::read_payload(media, &sb.uuid, &d));
    let state = match payload {
        Ok(payload) => codec::decode_checkpoint(&payload).map_err(|e| e.to_string()),
        Err(err) => Err(err),
    };
    let state = match state {
        Ok(state) => state,
        Err(err) => {
            let _ = writeln!(out, "checkpoint inodes: unreadable: {err}");
            return out;
        }
    };
    let mut inos: Vec<Ino> = state.inodes.iter().map(|(&ino, _)| ino).collect();
    inos.sort_unstable();
    let _ = writeln!(
        out,
        "checkpoint inodes (generation {}): {} inodes, next ino {}",
        sb.checkpoint_gen,
        inos.len(),
        state.next_ino
    );
    let mut shown = 0usize;
    for ino in inos.into_iter().filter(|&i| only.is_none_or(|o| o == i)) {
        if let Some(inode) = state.inodes.get(ino) {
            let inode = super::locks::rlock(inode);
            let _ = write!(out, "{}", InodeText(ino, &inode));
            shown += 1;
        }
    }
    if let (Some(wanted), 0) = (only, shown) {
        let _ = writeln!(out, "inode {wanted}: not in the checkpoint");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Error;

    #[test]
    fn records_print_their_name_and_fields_on_one_line() {
        let cases = [
            (
                Record::PutDirent {
                    dir: 1,
                    name: b"a\nb".to_vec(),
                    ino: 7,
                    kind: FileKind::Regular,
                    cookie: 3,
                },
                "put_dirent dir 1 \"a\\nb\" -> ino 7 regular cookie 3",
            ),
            (
                Record::MapExtent {
                    ino: 7,
                    file_block: 2,
                    phys_block: 300,
                    len_blocks: 16,
                    flags: EXTENT_UNWRITTEN,
                },
                "map_extent ino 7 file_block 2+16 -> phys_block 300 unwritten",
            ),
            (
                Record::CloneRange {
                    src: 7,
                    src_block: 0,
                    dst: 8,
                    dst_block: 4,
                    len_blocks: 2,
                },
                "clone_range ino 7 file_block 0+2 -> ino 8 file_block 4",
            ),
            (
                Record::TouchDir {
                    dir: 1,
                    time: Timestamp { secs: 5, nanos: 7 },
                },
                "touch_dir dir 1 time 5.000000007",
            ),
        ];
        for (record, text) in cases {
            assert_eq!(record.to_string(), text);
        }
    }

    #[test]
    fn internal_errors_are_eio_and_say_they_are_bugs() {
        let err = Error::Internal("inode 5 not locked".into());
        assert_eq!(err.errno(), libc::EIO);
        let text = err.to_string();
        assert!(text.contains("bug") && !text.contains("corrupt"), "{text}");
    }
}
