//! access(2), and the atime a read moves (`note_read`), by the rules of
//! src/fs/access.rs.

use crate::fs::access::{may_access, AtimeRule, MAY_WRITE};
use crate::fs::codec::Record;
use crate::fs::locks::{rlock, wlock};
use crate::fs::txn::{guard, Edits, Guards, LiveAccess};
use crate::fs::{Error, Fs, Ino, Result, Timestamp};

impl Fs {
    /// access(2) of `ino` (see [`may_access`]); asking to write on a
    /// read-only filesystem is `ReadOnly`, whoever asks.
    pub fn access(&self, ino: Ino, uid: u32, gid: u32, wanted: u32) -> Result<()> {
        let attr = self.getattr(ino)?;
        if wanted & MAY_WRITE != 0 && self.read_only {
            return Err(Error::ReadOnly);
        }
        may_access(&attr, uid, gid, wanted)
    }
    /// A read of `ino` at `now`: moves atime to `now` if `rule` says so,
    /// leaving ctime alone, in one transaction decided under the inode's
    /// lock. Returns whether atime moved (a cached copy is then stale).
    pub fn note_read(&self, ino: Ino, rule: AtimeRule, now: Timestamp) -> Result<bool> {
        if rule == AtimeRule::Never {
            return Ok(false);
        }
        {
            // Most reads under relatime change nothing: decide without
            // the journal first.
            self.check_live()?;
            let arc = self.inode(ino)?;
            let inode = rlock(&arc);
            if inode.deleted {
                return Err(Error::NotFound);
            }
            if !rule.due(&inode.to_attr(ino), now) {
                return Ok(false);
            }
        }
        self.mutating(|| {
            let arc = self.inode(ino)?;
            let mut guards: Guards<'_> = vec![(ino, wlock(&arc))];
            let inode = guard(&guards, ino)?;
            if inode.deleted {
                return Err(Error::NotFound);
            }
            if !rule.due(&inode.to_attr(ino), now) {
                return Ok(false);
            }
            let mut edits = Edits::default();
            edits.attrs(&guards, ino)?.atime = now;
            let mut records: Vec<Record> = Vec::new();
            edits.emit(&mut records);
            let mut live = LiveAccess::new(&mut guards);
            self.commit(&records, &mut live, false)?;
            Ok(true)
        })
    }
}
