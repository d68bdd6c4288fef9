//! The ioctl hook: where cowdax's private ioctls (clone, dedupe, extents,
//! owner map, usage — the reflink work) plug into the FUSE adapter.
//!
//! The kernel forwards ioctls on files of the mount as *restricted* ioctls:
//! it derives direction and size from the command number (`_IOC_SIZE`,
//! at most 16383 bytes), copies exactly that many bytes in, and copies back
//! at most `out_size` bytes of our reply. The integer result becomes
//! ioctl(2)'s return value. Commands we do not know answer `ENOTTY`, as a
//! local filesystem would.

use std::sync::Arc;

use super::adapter::CowdaxFs;
use super::handles::OpenFile;
use crate::fs::Ino;

/// One ioctl as it reached the daemon.
#[derive(Debug)]
pub struct IoctlRequest<'a> {
    /// Caller's credentials (from the FUSE request header).
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub ino: Ino,
    /// The open file the ioctl was issued on (`None` if the kernel sent a
    /// handle we did not issue, which does not happen for fds of the mount).
    pub file: Option<Arc<OpenFile>>,
    /// Issued on a directory fd (`FUSE_IOCTL_DIR`).
    pub is_dir: bool,
    pub cmd: u32,
    /// Exactly `_IOC_SIZE(cmd)` bytes for `_IOC_WRITE` commands, else empty.
    pub in_data: &'a [u8],
    /// Bytes the kernel copies back (`_IOC_SIZE(cmd)` for `_IOC_READ`).
    pub out_size: u32,
}

/// A successful ioctl: ioctl(2)'s return value and the bytes to copy out
/// (at most `out_size`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IoctlReply {
    pub result: i32,
    pub data: Vec<u8>,
}

/// Handles one ioctl; `Err(errno)` is returned to the caller. Add private
/// commands here: each arm decodes its fixed-size argument from
/// `req.in_data`, checks permissions against `req.file`, calls the core
/// through `adapter.fs()` and, after changing file contents behind the
/// kernel's back, calls `adapter.invalidator().invalidate_range(...)`.
pub fn dispatch(adapter: &CowdaxFs, req: &IoctlRequest<'_>) -> Result<IoctlReply, i32> {
    let _ = adapter;
    log::debug!(
        "ioctl cmd={:#x} ino={} in={} out={}: not a cowdax ioctl",
        req.cmd,
        req.ino,
        req.in_data.len(),
        req.out_size
    );
    Err(libc::ENOTTY)
}
