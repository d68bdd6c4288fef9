//! FIDEDUPERANGE: share `dst`'s blocks with `src`'s where their bytes are
//! equal (docs/REFLINK.md).

use crate::fs::codec::Record;
use crate::fs::locks::wlock;
use crate::fs::txn::{guard, Edits, Guards};
use crate::fs::write_plan::{blocks_for, Stored};
use crate::fs::{DedupeOutcome, Error, Fs, Ino, Result};

use super::read::read_into;
use super::{check_regular, BS};

impl Fs {
    /// FIDEDUPERANGE semantics for one destination.
    pub fn dedupe_range(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
    ) -> Result<DedupeOutcome> {
        if src_off % BS != 0 || dst_off % BS != 0 {
            return Err(Error::Invalid("dedupe offsets must be block-aligned"));
        }
        self.mutating(|| {
            let arcs = self.inodes_sorted(&[src, dst])?;
            let mut guards: Guards<'_> = arcs.iter().map(|(i, a)| (*i, wlock(a))).collect();
            let s = guard(&guards, src)?;
            let d = guard(&guards, dst)?;
            check_regular(s)?;
            check_regular(d)?;
            let src_size = s.attrs.size;
            let dst_size = d.attrs.size;
            if src_off.checked_add(len).is_none_or(|e| e > src_size)
                || dst_off.checked_add(len).is_none_or(|e| e > dst_size)
            {
                return Err(Error::Invalid("dedupe range beyond EOF"));
            }
            // A partial last block is shared only when it ends both files.
            let mut len = len;
            if len % BS != 0 && !(src_off + len == src_size && dst_off + len == dst_size) {
                len -= len % BS;
            }
            if len == 0 {
                return Ok(DedupeOutcome::Deduped { bytes: 0 });
            }
            // Compare in bounded chunks under both locks.
            const CHUNK_BYTES: u64 = 1 << 20;
            let mut pos = 0;
            let mut a = vec![0u8; CHUNK_BYTES.min(len) as usize];
            let mut b = a.clone();
            while pos < len {
                let n = CHUNK_BYTES.min(len - pos) as usize;
                read_into(&*self.media, s, src_off + pos, &mut a[..n])?;
                read_into(&*self.media, d, dst_off + pos, &mut b[..n])?;
                if a[..n] != b[..n] {
                    return Ok(DedupeOutcome::Differs);
                }
                pos += n as u64;
            }
            if src == dst && src_off == dst_off {
                return Ok(DedupeOutcome::Deduped { bytes: len });
            }
            let records = vec![Record::CloneRange {
                src,
                src_block: src_off / BS,
                dst,
                dst_block: dst_off / BS,
                len_blocks: blocks_for(len),
            }];
            // The contents did not change: no timestamp moves (the VFS
            // skips `file_modified` for a dedupe, unlike a clone).
            let edits = Edits::default();
            let stored = Stored {
                records: Vec::new(),
                allocated: Vec::new(),
            };
            self.commit_data(&mut guards, stored, records, edits, true)?;
            Ok(DedupeOutcome::Deduped { bytes: len })
        })
    }
}
