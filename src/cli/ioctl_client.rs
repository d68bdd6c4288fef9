//! The tools' side of cowdax's private ioctls ([`crate::ioctl_abi`]): open
//! a file, make sure it is on a cowdax mount, and issue the requests.
//!
//! The one raw `ioctl(2)` lives in the `cowdax-ioctl-call` crate
//! (`preload/ioctl-call`), because this crate allows `unsafe` only in its
//! media layer.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::ioctl_abi::{self as abi, AbiError};

/// `statfs.f_type` of FUSE filesystems.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
/// `statfs.f_type` of XFS: what the LD_PRELOAD shim reports for cowdax
/// mounts to duperemove, so a tool run under the shim still recognises them.
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;

/// Errors of the private-ioctl client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{path}: not on a cowdax mount ({reason})")]
    NotCowdax { path: PathBuf, reason: String },
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {op}: malformed reply from the daemon: {source}")]
    Abi {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: AbiError,
    },
}

impl ClientError {
    /// The errno behind the error, if it came from the kernel or daemon.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ClientError::Io { source, .. } => source.raw_os_error(),
            ClientError::NotCowdax { .. } | ClientError::Abi { .. } => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// An open file (or directory) known to be on a cowdax mount.
#[derive(Debug)]
pub struct CowdaxFile {
    pub file: File,
    pub path: PathBuf,
    /// The mount's id (tokens of one mount are useless on another).
    pub mount_id: u64,
    pub block_size: u64,
}

/// Issues one private command on `file` with `block` (exactly the
/// command's size) and returns the block the daemon sent back.
fn call(
    file: &File,
    path: &Path,
    op: &'static str,
    cmd: u32,
    mut block: Vec<u8>,
) -> Result<Vec<u8>> {
    cowdax_ioctl_call::ioctl_with_block(file.as_fd(), cmd, &mut block).map_err(|source| {
        ClientError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    })?;
    Ok(block)
}

fn abi_error<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(AbiError) -> ClientError + 'a {
    move |source| ClientError::Abi {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl CowdaxFile {
    /// Opens `path` read-only (files and directories) and checks the mount.
    pub fn open(path: &Path) -> Result<CowdaxFile> {
        Self::open_with(path, std::fs::OpenOptions::new().read(true))
    }

    /// Opens `path` with `options` and checks that it is on a cowdax mount.
    pub fn open_with(path: &Path, options: &std::fs::OpenOptions) -> Result<CowdaxFile> {
        let file = options.open(path).map_err(|source| ClientError::Io {
            path: path.to_path_buf(),
            op: "open",
            source,
        })?;
        Self::from_file(file, path)
    }

    /// Checks that `file` is on a cowdax mount: statfs says FUSE and the
    /// private USAGE ioctl answers.
    pub fn from_file(file: File, path: &Path) -> Result<CowdaxFile> {
        let not_cowdax = |reason: String| ClientError::NotCowdax {
            path: path.to_path_buf(),
            reason,
        };
        let st = nix::sys::statfs::fstatfs(&file).map_err(|errno| ClientError::Io {
            path: path.to_path_buf(),
            op: "statfs",
            source: io::Error::from(errno),
        })?;
        let f_type = fs_type_of(&st);
        if f_type != FUSE_SUPER_MAGIC && f_type != XFS_SUPER_MAGIC {
            return Err(not_cowdax(format!("filesystem type {f_type:#x}, not FUSE")));
        }
        let mut cowdax = CowdaxFile {
            file,
            path: path.to_path_buf(),
            mount_id: 0,
            block_size: 0,
        };
        match cowdax.usage() {
            Ok(usage) => {
                cowdax.mount_id = usage.mount_id;
                cowdax.block_size = usage.block_size;
                Ok(cowdax)
            }
            Err(ClientError::Io { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENOTTY | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                ) =>
            {
                Err(not_cowdax(
                    "a filesystem that does not answer cowdax's ioctls".into(),
                ))
            }
            Err(other) => Err(other),
        }
    }

    pub fn usage(&self) -> Result<abi::UsageArgs> {
        self.reply_only(
            "usage",
            abi::USAGE,
            abi::UsageArgs::SIZE,
            abi::UsageArgs::decode,
        )
    }

    pub fn counters(&self) -> Result<abi::CountersArgs> {
        self.reply_only(
            "counters",
            abi::COUNTERS,
            abi::CountersArgs::SIZE,
            abi::CountersArgs::decode,
        )
    }

    /// A command whose request is an empty block of `size` bytes.
    fn reply_only<T>(
        &self,
        op: &'static str,
        cmd: u32,
        size: usize,
        decode: fn(&[u8]) -> std::result::Result<T, AbiError>,
    ) -> Result<T> {
        let block = call(&self.file, &self.path, op, cmd, abi::request_header(size))?;
        decode(&block).map_err(abi_error(&self.path, op))
    }

    /// A token naming this open file (for clone sources and dedupe
    /// destinations).
    pub fn token(&self) -> Result<abi::TokenArgs> {
        let block = call(
            &self.file,
            &self.path,
            "get token",
            abi::GET_TOKEN,
            abi::request_header(abi::TokenArgs::SIZE),
        )?;
        abi::TokenArgs::decode(&block).map_err(abi_error(&self.path, "get token"))
    }

    /// Clones `length` bytes (0 = to the source's EOF) of the file named by
    /// `src` into this file; returns bytes cloned.
    pub fn clone_from(
        &self,
        src: &abi::TokenArgs,
        src_offset: u64,
        dst_offset: u64,
        length: u64,
    ) -> Result<u64> {
        let args = abi::CloneArgs {
            src_mount_id: src.mount_id,
            src_token: src.token,
            src_offset,
            dst_offset,
            length,
            bytes_cloned: 0,
        };
        let block = call(
            &self.file,
            &self.path,
            "clone",
            abi::CLONE_RANGE,
            args.encode(),
        )?;
        let reply = abi::CloneArgs::decode(&block).map_err(abi_error(&self.path, "clone"))?;
        Ok(reply.bytes_cloned)
    }

    /// Dedupes `length` bytes of this file (the source) against the file
    /// named by `dst`: `Some(bytes)` when identical and shared, `None` when
    /// the contents differ.
    pub fn dedupe_into(
        &self,
        dst: &abi::TokenArgs,
        src_offset: u64,
        dst_offset: u64,
        length: u64,
    ) -> Result<Option<u64>> {
        let args = abi::DedupeArgs {
            dst_mount_id: dst.mount_id,
            dst_token: dst.token,
            src_offset,
            dst_offset,
            length,
            status: 0,
            bytes_deduped: 0,
        };
        let block = call(
            &self.file,
            &self.path,
            "dedupe",
            abi::DEDUPE_RANGE,
            args.encode(),
        )?;
        let reply = abi::DedupeArgs::decode(&block).map_err(abi_error(&self.path, "dedupe"))?;
        Ok(match reply.status {
            abi::DEDUPE_SAME => Some(reply.bytes_deduped),
            _ => None,
        })
    }

    /// One page of extents ending after `start_offset`.
    pub fn extents_page(&self, start_offset: u64) -> Result<abi::ExtentsArgs> {
        let args = abi::ExtentsArgs {
            start_offset,
            ..abi::ExtentsArgs::default()
        };
        let block = call(
            &self.file,
            &self.path,
            "extents",
            abi::GET_EXTENTS,
            args.encode(),
        )?;
        abi::ExtentsArgs::decode(&block).map_err(abi_error(&self.path, "extents"))
    }

    /// All extents of the file, holes included, in file order; and the
    /// file's size.
    pub fn extents(&self) -> Result<(Vec<abi::ExtentRecord>, u64)> {
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let page = self.extents_page(start)?;
            out.extend_from_slice(&page.extents);
            if page.flags & abi::PAGE_LAST != 0 || page.next_offset <= start {
                return Ok((out, page.file_size));
            }
            start = page.next_offset;
        }
    }

    /// Owner records of the physical byte range `start..start+len` (both
    /// block-aligned), sorted by (phys, ino, file offset), clipped to it.
    pub fn fsmap_window(&self, start: u64, len: u64) -> Result<Vec<abi::FsmapRecord>> {
        let mut out = Vec::new();
        loop {
            let args = abi::FsmapArgs {
                phys_start: start,
                phys_len: len,
                skip: out.len() as u64,
                ..abi::FsmapArgs::default()
            };
            let block = call(&self.file, &self.path, "fsmap", abi::FSMAP, args.encode())?;
            let page = abi::FsmapArgs::decode(&block).map_err(abi_error(&self.path, "fsmap"))?;
            let got = page.records.len();
            out.extend_from_slice(&page.records);
            if got == 0 || out.len() as u64 >= page.total {
                return Ok(out);
            }
        }
    }

    /// Paths (relative to the mount root) of inode `ino`, at most `max`;
    /// the flag says whether more exist.
    pub fn paths(&self, ino: u64, max: u32) -> Result<(Vec<Vec<u8>>, bool)> {
        let args = abi::PathsArgs {
            ino,
            max_paths: max,
            ..abi::PathsArgs::default()
        };
        let block = call(&self.file, &self.path, "paths", abi::PATHS, args.encode())?;
        let reply = abi::PathsArgs::decode(&block).map_err(abi_error(&self.path, "paths"))?;
        Ok((reply.paths, reply.flags & abi::PATHS_TRUNCATED != 0))
    }
}

/// `f_type` as i64 whatever its C type on this target.
#[allow(clippy::unnecessary_cast)]
fn fs_type_of(st: &nix::sys::statfs::Statfs) -> i64 {
    st.filesystem_type().0 as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_off_cowdax_is_refused_with_a_clear_reason() {
        let err = CowdaxFile::open(Path::new("/proc/self/status")).unwrap_err();
        assert!(matches!(err, ClientError::NotCowdax { .. }), "{err}");
        assert!(err.to_string().contains("not on a cowdax mount"));
    }
}
