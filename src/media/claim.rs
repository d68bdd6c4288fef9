//! Who holds an image, and whether the holder still uses it
//! (docs/FUSE.md "Unmounting").
//!
//! Every opener takes two locks on the opened file, both released by the
//! kernel when the last descriptor of that open closes (so also when the
//! process dies):
//!
//! * the `flock` ([`super::MmapMedia`]: exclusive for read-write, shared for
//!   read-only): the image is *held*; nobody else may write it;
//! * the *in-use mark*: an open-file-description read lock on one byte far
//!   beyond any image's end ([`IN_USE_MARK_OFFSET`]; the next byte for a
//!   daemon once it has mounted, [`super::MmapMedia::serving_mount`]). A
//!   holder keeps it for as long as it serves or checks the image. A mount
//!   daemon drops it when its FUSE session has ended, before writing its
//!   final checkpoint ([`super::MmapMedia::finishing`]): from then on it
//!   only finishes and exits.
//!
//! An opener that finds the image held therefore knows from the mark whether
//! the holder is still in use — refuse — or finishing — wait for it
//! ([`super::MmapMedia::open_waiting`]). The kernel detaches a mount before
//! its daemon's session ends, so a daemon's mark held while its mount is
//! nowhere to be seen is the moment right after `umount`: worth a short
//! wait, not a refusal.
//! `flock` and OFD locks are independent on Linux, and nobody but cowdax
//! locks that byte (QEMU's image locks, for instance, sit at bytes 100–300).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, Flock, FlockArg};

/// Byte offset of the in-use mark: 2^62, beyond any image or device, so it
/// never overlaps a range another program locks for the image's contents.
pub const IN_USE_MARK_OFFSET: i64 = 1 << 62;

/// The in-use mark of a mount daemon, one byte after [`IN_USE_MARK_OFFSET`]:
/// "in use, serving a mount" rather than "in use" (fsck, mkfs, a daemon
/// that has not mounted yet).
const SERVING_MARK_OFFSET: i64 = IN_USE_MARK_OFFSET + 1;

fn mark_lock(lock_type: libc::c_int, start: i64, len: i64) -> libc::flock {
    libc::flock {
        l_type: lock_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: len,
        // OFD locks require 0 here.
        l_pid: 0,
    }
}

fn set_lock(file: &File, lock: &libc::flock) -> std::io::Result<()> {
    fcntl(file, FcntlArg::F_OFD_SETLK(lock))
        .map(drop)
        .map_err(std::io::Error::from)
}

/// Takes the in-use mark on `file` (an open of the image). A read lock, so
/// that several read-only holders (a read-only mount, `fsck -n`) can hold
/// it together; an exclusive flock already keeps others out of read-write.
pub(super) fn take_in_use_mark(file: &File) -> std::io::Result<()> {
    set_lock(file, &mark_lock(libc::F_RDLCK, IN_USE_MARK_OFFSET, 1))
}

/// Turns the in-use mark of `file` into the one of a mount daemon (the
/// serving mark is taken before the plain one goes, so that the image is
/// never seen unmarked).
pub(super) fn mark_serving(file: &File) -> std::io::Result<()> {
    set_lock(file, &mark_lock(libc::F_RDLCK, SERVING_MARK_OFFSET, 1))?;
    set_lock(file, &mark_lock(libc::F_UNLCK, IN_USE_MARK_OFFSET, 1))
}

/// Drops either in-use mark of `file`: its holder is finishing.
pub(super) fn drop_in_use_mark(file: &File) -> std::io::Result<()> {
    set_lock(file, &mark_lock(libc::F_UNLCK, IN_USE_MARK_OFFSET, 2))
}

/// Whether some open of `path` holds the mark in `start..start + len`.
/// The query runs on an open of our own, and any holder's read lock
/// conflicts with the write lock it asks about.
fn mark_held(file: &File, start: i64, len: i64) -> std::io::Result<bool> {
    let mut query = mark_lock(libc::F_WRLCK, start, len);
    fcntl(file, FcntlArg::F_OFD_GETLK(&mut query)).map_err(std::io::Error::from)?;
    Ok(query.l_type != libc::F_UNLCK as libc::c_short)
}

/// What holds an image that an open found in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Nothing holds it now (the holder has just let go, or the open was
    /// refused by something else, such as a kernel claim on a block device).
    Nobody,
    /// A cowdax process that checks or writes it: fsck, mkfs, dump, or a
    /// daemon that has not started mounting yet.
    InUse,
    /// A mount daemon that still serves it (or has only just stopped).
    Serving,
    /// A cowdax process that has stopped serving it and is finishing (a
    /// daemon writing its final checkpoint after its mount went away).
    Finishing,
}

/// Who holds `path`, judged from an open of our own: the in-use marks
/// first, then the flock. A holder's marks only ever move plain → serving →
/// none, and a daemon takes its serving mark before it drops the plain one,
/// so the serving mark is asked about first: a daemon that drops its marks
/// between the two questions is then seen serving (and, at the next look,
/// finishing), never taken for an fsck. A mark found free and a flock found
/// held mean finishing (or a new holder between taking its flock and its
/// mark, which the next look tells).
pub fn holder(path: &Path) -> std::io::Result<Holder> {
    let file = File::open(path)?;
    if mark_held(&file, SERVING_MARK_OFFSET, 1)? {
        return Ok(Holder::Serving);
    }
    if mark_held(&file, IN_USE_MARK_OFFSET, 1)? {
        return Ok(Holder::InUse);
    }
    // The probe's own lock is dropped at once (with `file`).
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_probe) => Ok(Holder::Nobody),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(Holder::Finishing),
        Err((_, errno)) => Err(std::io::Error::from(errno)),
    }
}

/// The pid of a process holding a `flock` on `path`, from `/proc/locks`
/// (for messages only: the kernel records the pid that took the lock).
pub fn flock_holder_pid(path: &Path) -> Option<u32> {
    let metadata = std::fs::metadata(path).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    flock_holder_in(&locks, metadata.dev(), metadata.ino())
}

/// [`flock_holder_pid`] on given `/proc/locks` text, for the file with
/// device `dev` and inode `ino`.
fn flock_holder_in(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    // "1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF"; device in hex.
    let wanted = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Blocked waiters are listed as "1: -> FLOCK …"; skip them.
        if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&wanted.as_str()) {
            return None;
        }
        fields.get(4)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_is_in_use_while_marked_finishing_while_only_locked() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("img");
        std::fs::write(&image, b"x").unwrap();
        let first = Flock::lock(File::open(&image).unwrap(), FlockArg::LockSharedNonblock).unwrap();
        assert_eq!(holder(&image).unwrap(), Holder::Finishing);
        take_in_use_mark(&first).unwrap();
        assert_eq!(holder(&image).unwrap(), Holder::InUse);
        // A second read-only holder may take it too.
        let second = File::open(&image).unwrap();
        take_in_use_mark(&second).unwrap();
        assert_eq!(holder(&image).unwrap(), Holder::InUse);
        mark_serving(&first).unwrap();
        assert_eq!(holder(&image).unwrap(), Holder::Serving);
        drop_in_use_mark(&first).unwrap();
        assert_eq!(holder(&image).unwrap(), Holder::InUse);
        drop(second);
        assert_eq!(holder(&image).unwrap(), Holder::Finishing);
        drop(first);
        assert_eq!(holder(&image).unwrap(), Holder::Nobody);
    }

    #[test]
    fn proc_locks_flock_line_gives_the_holders_pid() {
        let dev = nix::sys::stat::makedev(0, 0x2d);
        let locks = "\
1: POSIX  ADVISORY  WRITE 99 00:2d:5678 0 EOF
2: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF
2: -> FLOCK  ADVISORY  WRITE 4321 00:2d:5678 0 EOF
3: FLOCK  ADVISORY  READ 777 00:2d:9 0 EOF
";
        assert_eq!(flock_holder_in(locks, dev, 5678), Some(1234));
        assert_eq!(flock_holder_in(locks, dev, 9), Some(777));
        assert_eq!(flock_holder_in(locks, dev, 10), None);
    }
}
