//! Opening a target for the offline commands (mkfs, fsck, dump).
//!
//! `umount` returns as soon as the kernel has detached a cowdax mount, while
//! the daemon is still writing its final checkpoint and holds the image's
//! lock for a moment longer. A command run right after `umount` (as scripts
//! do) waits a bounded time for that daemon instead of failing at once
//! (docs/FUSE.md "Unmounting").

use std::path::Path;
use std::time::Duration;

use crate::media::{MmapMedia, OpenMode, Result};

/// How long to wait for a daemon that is finishing an unmount.
pub const UNMOUNT_GRACE: Duration = Duration::from_secs(30);

/// `MmapMedia::open`, waiting up to [`UNMOUNT_GRACE`] while the image is
/// held by a cowdax daemon that no longer serves it; telling the user on
/// stderr when the wait is noticeable. A mounted target is the caller's to
/// refuse before calling this (with the mount point in its message).
pub fn open_after_unmount(path: &Path, mode: OpenMode) -> Result<MmapMedia> {
    MmapMedia::open_waiting(path, mode, UNMOUNT_GRACE, &mut |line| {
        eprintln!("cowdax: {line}")
    })
}
