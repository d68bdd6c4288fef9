//! The operations of [`Fs`](super::Fs), one file per operation (or per
//! family of operations), each an `impl Fs` block over the layers below:
//! the write planner (src/fs/write_plan.rs), transactions (src/fs/txn.rs),
//! `Fs` and its commit (src/fs/filesystem.rs), the rules (privs, acl,
//! access), records (codec), structures (inode, space) and limits.
//! Nothing below imports from here.

use super::inode::Inode;
use super::{Error, FileKind, Result};
use crate::store::BLOCK_SIZE;

mod access;
mod dedupe;
mod fallocate;
mod fsync;
mod namespace;
mod open;
mod read;
mod reflink;
mod scrub;
mod seek;
mod setattr;
mod statfs;
mod write;
mod xattr;

const BS: u64 = BLOCK_SIZE;

fn check_regular(inode: &Inode) -> Result<()> {
    if inode.deleted {
        return Err(Error::NotFound);
    }
    match inode.attrs.kind {
        FileKind::Regular => Ok(()),
        FileKind::Directory => Err(Error::IsDir),
        _ => Err(Error::Invalid("not a regular file")),
    }
}
