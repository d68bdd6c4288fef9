//! The read-side rules: access(2) and when a read moves atime.

use super::{Attr, Error, FileKind, Result, Timestamp};

/// Access bits of access(2) (`R_OK`, `W_OK`, `X_OK`).
pub const MAY_READ: u32 = libc::R_OK as u32;
pub const MAY_WRITE: u32 = libc::W_OK as u32;
pub const MAY_EXEC: u32 = libc::X_OK as u32;

/// relatime: atime older than this is refreshed even if newer than mtime.
const RELATIME_MAX_AGE_SECS: i64 = 24 * 60 * 60;

/// When a read (of file data, or a directory listing) moves atime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtimeRule {
    /// `noatime`: never.
    Never,
    /// `relatime`: when atime is not newer than mtime or ctime, or is at
    /// least a day old (the kernel's `relatime_need_update`).
    Relative,
    /// `strictatime`: on every read.
    Always,
}

impl AtimeRule {
    /// Whether a read at `now` of a file with attributes `attr` moves atime.
    pub fn due(self, attr: &Attr, now: Timestamp) -> bool {
        match self {
            AtimeRule::Never => false,
            AtimeRule::Always => true,
            AtimeRule::Relative => {
                attr.atime <= attr.mtime
                    || attr.atime <= attr.ctime
                    || now.secs.saturating_sub(attr.atime.secs) >= RELATIME_MAX_AGE_SECS
            }
        }
    }
}

/// access(2) from the mode bits of `attr` for a caller with fsuid `uid`
/// and fsgid `gid` asking for `wanted` (`MAY_*` bits): root may read and
/// write anything and execute what has any execute bit (or is a
/// directory).
pub fn may_access(attr: &Attr, uid: u32, gid: u32, wanted: u32) -> Result<()> {
    let wanted = wanted & (MAY_READ | MAY_WRITE | MAY_EXEC);
    if wanted == 0 {
        return Ok(());
    }
    if uid == 0 {
        let needs_exec = wanted & MAY_EXEC != 0;
        let any_exec = attr.perm & 0o111 != 0 || attr.kind == FileKind::Directory;
        return if needs_exec && !any_exec {
            Err(Error::Access)
        } else {
            Ok(())
        };
    }
    let granted = if uid == attr.uid {
        (attr.perm >> 6) & 0o7
    } else if gid == attr.gid {
        (attr.perm >> 3) & 0o7
    } else {
        attr.perm & 0o7
    };
    if granted & wanted == wanted {
        Ok(())
    } else {
        Err(Error::Access)
    }
}

/// FIDEDUPERANGE's `allow_file_dedupe`: a caller may dedupe into a file
/// it opened for writing, owns, or may write by its mode bits; root may
/// dedupe into any.
pub fn may_dedupe_into(attr: &Attr, uid: u32, gid: u32, opened_for_write: bool) -> bool {
    uid == 0 || opened_for_write || uid == attr.uid || may_access(attr, uid, gid, MAY_WRITE).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: FileKind, perm: u32, uid: u32, gid: u32) -> Attr {
        Attr::for_tests(kind, perm, uid, gid)
    }

    #[test]
    fn relatime_is_due_when_atime_is_not_newer_than_mtime_or_ctime_or_a_day_old() {
        let at = |secs| Timestamp { secs, nanos: 0 };
        let now = at(1_000_000);
        let due = |a: &Attr| AtimeRule::Relative.due(a, now);
        let mut a = attr(FileKind::Regular, 0o644, 0, 0);
        (a.mtime, a.ctime) = (at(900_000), at(900_000));
        a.atime = at(900_000);
        assert!(due(&a), "atime == mtime");
        a.atime = at(950_000);
        assert!(!due(&a), "newer than both, less than a day");
        assert!(AtimeRule::Always.due(&a, now));
        assert!(!AtimeRule::Never.due(&a, now));
        a.ctime = at(960_000);
        assert!(due(&a), "older than ctime");
        a.ctime = at(900_000);
        a.atime = at(1_000_000 - 24 * 60 * 60);
        assert!(a.atime > a.mtime);
        assert!(due(&a), "a day old");
        a.atime = at(1_000_000 - 24 * 60 * 60 + 1);
        assert!(!due(&a), "a second short of a day");
    }

    #[test]
    fn access_follows_owner_group_other_bits() {
        let file = attr(FileKind::Regular, 0o640, 1000, 100);
        assert!(may_access(&file, 1000, 1, MAY_WRITE).is_ok());
        assert!(may_access(&file, 2000, 100, MAY_READ).is_ok());
        assert!(matches!(
            may_access(&file, 2000, 100, MAY_WRITE),
            Err(Error::Access)
        ));
        assert!(matches!(
            may_access(&file, 2000, 200, MAY_READ),
            Err(Error::Access)
        ));
        assert!(may_access(&file, 2000, 200, 0).is_ok());
    }

    #[test]
    fn root_needs_some_execute_bit_to_execute() {
        let file = attr(FileKind::Regular, 0o600, 1000, 100);
        assert!(may_access(&file, 0, 0, MAY_READ | MAY_WRITE).is_ok());
        assert!(matches!(
            may_access(&file, 0, 0, MAY_EXEC),
            Err(Error::Access)
        ));
        let dir = attr(FileKind::Directory, 0o600, 1000, 100);
        assert!(may_access(&dir, 0, 0, MAY_EXEC).is_ok());
    }
}
