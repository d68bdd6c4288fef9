//! Opening a target for the offline commands (mkfs, fsck, dump).
//!
//! `umount` returns as soon as the kernel has detached a cowdax mount, while
//! the daemon is still writing its final checkpoint and holds the image's
//! lock for a moment longer. A command run right after `umount` (as scripts
//! do) waits a bounded time for that lock instead of failing at once.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::media::{detect, MediaError, MmapMedia, OpenMode, Result};

/// How long to wait for a daemon that is finishing an unmount.
pub const UNMOUNT_GRACE: Duration = Duration::from_secs(15);
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// `MmapMedia::open`, waiting up to [`UNMOUNT_GRACE`] while the image is
/// locked by a cowdax process but no longer mounted. A mounted target is
/// the caller's to refuse before calling this.
pub fn open_after_unmount(path: &Path, mode: OpenMode) -> Result<MmapMedia> {
    let start = Instant::now();
    let mut told_user = false;
    loop {
        match MmapMedia::open(path, mode) {
            Err(MediaError::InUse { .. })
                if start.elapsed() < UNMOUNT_GRACE
                    && detect::find_mount(path).is_ok_and(|mount| mount.is_none()) =>
            {
                if !told_user {
                    eprintln!(
                        "{}: in use by a cowdax process that is not mounted (finishing an unmount?); waiting up to {} s",
                        path.display(),
                        UNMOUNT_GRACE.as_secs()
                    );
                    told_user = true;
                }
                thread::sleep(RETRY_INTERVAL);
            }
            other => return other,
        }
    }
}
