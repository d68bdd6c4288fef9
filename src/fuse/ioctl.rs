//! The daemon side of cowdax's private ioctls (ABI: [`crate::ioctl_abi`]):
//! clone, dedupe, extents, owner map, paths, usage — DESIGN.md §7.
//!
//! The kernel forwards ioctls on files of the mount as *restricted* ioctls:
//! it derives direction and size from the command number (`_IOC_SIZE`,
//! at most 16383 bytes), copies exactly that many bytes in, and copies back
//! at most `out_size` bytes of our reply. The integer result becomes
//! ioctl(2)'s return value. Commands we do not know answer `ENOTTY`, as a
//! local filesystem would.
//!
//! Security model (mirrors the kernel's FICLONE/FIDEDUPERANGE checks):
//! * a source file is named by a *token*, never by an inode number: 128
//!   random bits handed out by `GET_TOKEN` for the open file handle the
//!   ioctl came through. A token proves its holder could open the file and
//!   records how it was opened; it dies when that handle is released (every
//!   use looks the handle up in the adapter's table and checks that it is
//!   still the very same open file);
//! * clone: destination fd open for writing (not append-only), source token
//!   from a handle open for reading — else `EBADF`;
//! * dedupe: source fd open for reading; destination writable through its
//!   token's handle, or owned by the caller, or writable by the caller's
//!   mode bits, or the caller is root — else `EPERM`;
//! * fsmap and paths reveal every file's layout and names: root only
//!   (`EPERM`), like XFS's GETFSMAP;
//! * every argument is validated (sizes, magic, alignment, overflow, EOF,
//!   file types) before the core is called, so a rejected request changes
//!   nothing.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use super::handles::{HandleTable, OpenFile};
use super::idle_poll::IdlePoll;
use super::invalidator::CacheInvalidator;
use crate::fs::{self, Attr, Caller, DedupeOutcome, FileKind, Fs, Ino};
use crate::ioctl_abi::{self as abi, Token};

/// One ioctl as it reached the daemon.
#[derive(Debug)]
pub struct IoctlRequest<'a> {
    /// Caller's credentials (from the FUSE request header).
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub ino: Ino,
    /// The kernel's handle number of the fd the ioctl was issued on.
    pub fh: u64,
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

/// What the handlers may use of the daemon: the core, the open handles,
/// cache invalidation, the idle-poll counters, and the caller as the
/// core's privilege rules see it. (The adapter builds one per ioctl; this
/// module never names the adapter.)
pub struct IoctlContext<'a> {
    pub fs: &'a Arc<Fs>,
    pub handles: &'a HandleTable,
    pub invalidator: &'a Arc<CacheInvalidator>,
    pub idle_poll: &'a IdlePoll,
    pub caller: &'a dyn Caller,
}

/// Why an ioctl failed; [`IoctlError::errno`] is the one place these
/// become errno values.
#[derive(Debug, thiserror::Error)]
pub enum IoctlError {
    /// Not one of ours (`ENOTTY`, as a local filesystem answers).
    #[error("not a cowdax ioctl")]
    UnknownCommand,
    /// A malformed or out-of-range argument (`EINVAL`).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// The fd or token does not name an open file usable this way (`EBADF`).
    #[error("bad file: {0}")]
    BadFile(&'static str),
    /// Issued on, or naming, a directory (`EISDIR`).
    #[error("is a directory")]
    IsDir,
    /// The caller may not do this (`EPERM`).
    #[error("not permitted: {0}")]
    NotPermitted(&'static str),
    /// A token of another mount (`EXDEV`).
    #[error("token of another mount")]
    OtherMount,
    /// The daemon itself failed (`EIO`).
    #[error("{0}")]
    Daemon(String),
    #[error("bad argument block: {0}")]
    Abi(#[from] abi::AbiError),
    #[error(transparent)]
    Core(#[from] fs::Error),
}

impl IoctlError {
    /// The errno value for this error (logged: store and corruption errors
    /// as errors, the rest at debug level).
    pub fn errno(&self) -> i32 {
        match self {
            IoctlError::Core(
                fs::Error::Store(_) | fs::Error::Corrupt(_) | fs::Error::Internal(_),
            )
            | IoctlError::Daemon(_) => log::error!("ioctl: {self}"),
            _ => log::debug!("ioctl: {self}"),
        }
        match self {
            IoctlError::UnknownCommand => libc::ENOTTY,
            IoctlError::Invalid(_) => libc::EINVAL,
            IoctlError::BadFile(_) => libc::EBADF,
            IoctlError::IsDir => libc::EISDIR,
            IoctlError::NotPermitted(_) => libc::EPERM,
            IoctlError::OtherMount => libc::EXDEV,
            IoctlError::Daemon(_) => libc::EIO,
            IoctlError::Abi(err) => err.errno(),
            IoctlError::Core(err) => err.errno(),
        }
    }
}

type IoctlResult<T> = Result<T, IoctlError>;

/// A successful ioctl: ioctl(2)'s return value and the bytes to copy out
/// (at most `out_size`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IoctlReply {
    pub result: i32,
    pub data: Vec<u8>,
}

/// Most paths one `PATHS` request may ask for (each costs a namespace scan
/// in the core).
const PATHS_MAX: usize = 64;

/// A live token: which open file of which handle table it names.
struct TokenEntry {
    file: Weak<OpenFile>,
    fh: u64,
}

/// Tokens of this daemon. `by_handle` makes repeated `GET_TOKEN` calls on
/// one handle return the same token, so the table holds at most one entry
/// per open handle (plus released ones until the next prune).
#[derive(Default)]
struct TokenTable {
    by_token: HashMap<Token, TokenEntry>,
    by_handle: HashMap<(usize, u64), Token>,
    /// Size after the last prune: prune again when the table doubles, so
    /// pruning costs O(1) amortised per token.
    pruned_len: usize,
}

impl TokenTable {
    fn prune(&mut self) {
        self.by_token
            .retain(|_, entry| entry.file.strong_count() > 0);
        let live = &self.by_token;
        self.by_handle.retain(|_, token| live.contains_key(token));
        self.pruned_len = self.by_token.len();
    }
}

fn tokens() -> MutexGuard<'static, TokenTable> {
    static TOKENS: OnceLock<Mutex<TokenTable>> = OnceLock::new();
    // A panic while holding the lock cannot leave the maps inconsistent in
    // a way that matters: entries are validated on every use.
    TOKENS
        .get_or_init(|| Mutex::new(TokenTable::default()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Random bytes from the kernel's CSPRNG.
fn random_bytes<const N: usize>() -> IoctlResult<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|err| IoctlError::Daemon(format!("getrandom: {err}")))?;
    Ok(out)
}

/// This daemon's random mount id: tokens carry it so that a token of
/// another mount is recognised (`EXDEV`) rather than merely unknown.
fn mount_id() -> IoctlResult<u64> {
    static MOUNT_ID: OnceLock<u64> = OnceLock::new();
    if let Some(id) = MOUNT_ID.get() {
        return Ok(*id);
    }
    let id = u64::from_le_bytes(random_bytes()?);
    Ok(*MOUNT_ID.get_or_init(|| id))
}

/// Identity of a handle table (one per adapter, i.e. per mount).
fn table_key(ctx: &IoctlContext<'_>) -> usize {
    std::ptr::from_ref(ctx.handles) as usize
}

/// The open file a token names, if the token is live on this mount.
fn resolve_token(ctx: &IoctlContext<'_>, mount: u64, token: &Token) -> IoctlResult<Arc<OpenFile>> {
    if mount != mount_id()? {
        return Err(IoctlError::OtherMount);
    }
    let (weak, fh) = {
        let table = tokens();
        let entry = table
            .by_token
            .get(token)
            .ok_or(IoctlError::BadFile("unknown token"))?;
        (entry.file.clone(), entry.fh)
    };
    let file = weak
        .upgrade()
        .ok_or(IoctlError::BadFile("token of a closed file"))?;
    // Still open on *this* mount: the handle table maps fh to this very
    // open file (a released handle is gone from the table).
    match ctx.handles.get(fh) {
        Some(current) if Arc::ptr_eq(&current, &file) => Ok(file),
        _ => Err(IoctlError::BadFile("token of a closed file")),
    }
}

/// Attributes of a regular file: directories answer `EISDIR`, other
/// kinds `EINVAL` (as the kernel's remap checks do).
fn regular_attr(ctx: &IoctlContext<'_>, ino: Ino) -> IoctlResult<Attr> {
    let attr = ctx.fs.getattr(ino)?;
    match attr.kind {
        FileKind::Regular => Ok(attr),
        FileKind::Directory => Err(IoctlError::IsDir),
        _ => Err(IoctlError::Invalid("not a regular file")),
    }
}

fn block_size(ctx: &IoctlContext<'_>) -> IoctlResult<u64> {
    let st = ctx.fs.statfs()?;
    if st.block_size == 0 || !st.block_size.is_power_of_two() {
        return Err(IoctlError::Daemon(format!(
            "block size {} is not a power of two",
            st.block_size
        )));
    }
    Ok(st.block_size)
}

/// Offsets the kernel's remap checks accept: `offset + len` fits in a
/// signed 64-bit file position.
fn end_of(offset: u64, len: u64) -> IoctlResult<u64> {
    offset
        .checked_add(len)
        .filter(|&end| end <= i64::MAX as u64)
        .ok_or(IoctlError::Invalid(
            "range beyond the largest file position",
        ))
}

/// How long a remap waits for the kernel to drop the destination's cached
/// pages before answering anyway.
const INVALIDATE_WAIT: Duration = Duration::from_secs(2);

/// Drops the kernel's cached pages of `ino` in the remapped range, so the
/// caller's next read sees the new blocks.
///
/// The kernel may need a page lock held by an in-flight read of that file
/// whose request waits for a free daemon thread; with a single worker
/// thread (this one) that would never come. So the notification is sent
/// from a helper thread and waited for with a bound: normally the ioctl
/// returns after the invalidation, and at worst it returns after
/// [`INVALIDATE_WAIT`] while the invalidation completes behind it.
fn invalidate(ctx: &IoctlContext<'_>, ino: Ino, offset: u64, len: u64) {
    let log_failure = |err: std::io::Error| {
        // ENOENT: the kernel has no cached inode, so nothing is stale.
        if err.raw_os_error() != Some(libc::ENOENT) {
            log::warn!("invalidating cache of inode {ino}: {err}");
        }
    };
    let invalidator = Arc::clone(ctx.invalidator);
    let (done_tx, done_rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("cowdax-inval".into())
        .spawn(move || {
            let _ = done_tx.send(invalidator.invalidate_range(ino, offset, len));
        });
    if spawned.is_err() {
        if let Err(err) = ctx.invalidator.invalidate_range(ino, offset, len) {
            log_failure(err);
        }
        return;
    }
    match done_rx.recv_timeout(INVALIDATE_WAIT) {
        Ok(Ok(())) => {}
        Ok(Err(err)) => log_failure(err),
        Err(_) => log::warn!(
            "invalidating cache of inode {ino} takes longer than {INVALIDATE_WAIT:?}; answering"
        ),
    }
}

type Handler = fn(&IoctlContext<'_>, &IoctlRequest<'_>) -> IoctlResult<Vec<u8>>;

/// Every private command and its handler.
const COMMANDS: [(u32, Handler); 8] = [
    (abi::GET_TOKEN, get_token),
    (abi::CLONE_RANGE, clone_range),
    (abi::DEDUPE_RANGE, dedupe_range),
    (abi::GET_EXTENTS, get_extents),
    (abi::FSMAP, fsmap),
    (abi::PATHS, paths),
    (abi::USAGE, usage),
    (abi::COUNTERS, counters),
];

/// Handles one ioctl; an error's errno is returned to the caller.
pub fn dispatch(ctx: &IoctlContext<'_>, req: &IoctlRequest<'_>) -> IoctlResult<IoctlReply> {
    if abi::ioc_type(req.cmd) != abi::IOCTL_TYPE {
        log::debug!(
            "ioctl cmd={:#x} ino={}: not a cowdax ioctl",
            req.cmd,
            req.ino
        );
        return Err(IoctlError::UnknownCommand);
    }
    let size = abi::ioc_size(req.cmd);
    // The kernel copies exactly _IOC_SIZE bytes both ways for _IOWR; anything
    // else is a hand-made number with our type letter.
    if req.in_data.len() != size || req.out_size as usize != size {
        return Err(IoctlError::Invalid("not an _IOWR command of its size"));
    }
    // Match on the command's number; a known number with another size is
    // a caller built against a different ABI: EINVAL, not "unknown".
    let handler: Handler = match COMMANDS
        .iter()
        .find(|(cmd, _)| cmd & 0xff == req.cmd & 0xff)
    {
        Some((cmd, handler)) if *cmd == req.cmd => *handler,
        Some(_) => return Err(IoctlError::Invalid("command of another ABI version")),
        None => return Err(IoctlError::UnknownCommand),
    };
    let data = handler(ctx, req)?;
    debug_assert_eq!(data.len(), size);
    Ok(IoctlReply { result: 0, data })
}

fn get_token(ctx: &IoctlContext<'_>, req: &IoctlRequest<'_>) -> IoctlResult<Vec<u8>> {
    abi::TokenArgs::decode(req.in_data)?;
    let file = req
        .file
        .as_ref()
        .ok_or(IoctlError::BadFile("not an fd of this mount"))?;
    if req.is_dir || file.is_dir {
        return Err(IoctlError::IsDir);
    }
    regular_attr(ctx, file.ino)?;
    let mount_id = mount_id()?;
    let key = (table_key(ctx), req.fh);
    let mut table = tokens();
    let existing = table.by_handle.get(&key).copied().filter(|token| {
        table
            .by_token
            .get(token)
            .and_then(|entry| entry.file.upgrade())
            .is_some_and(|named| Arc::ptr_eq(&named, file))
    });
    let token = match existing {
        Some(token) => token,
        None => {
            if table.by_token.len() >= 2 * table.pruned_len.max(64) {
                table.prune();
            }
            let token: Token = loop {
                let candidate = random_bytes()?;
                if !table.by_token.contains_key(&candidate) {
                    break candidate;
                }
            };
            table.by_token.insert(
                token,
                TokenEntry {
                    file: Arc::downgrade(file),
                    fh: req.fh,
                },
            );
            table.by_handle.insert(key, token);
            token
        }
    };
    drop(table);
    let mut flags = 0;
    if file.readable() {
        flags |= abi::TOKEN_READABLE;
    }
    if file.writable() {
        flags |= abi::TOKEN_WRITABLE;
    }
    Ok(abi::TokenArgs {
        mount_id,
        token,
        ino: file.ino,
        flags,
    }
    .encode())
}

fn clone_range(ctx: &IoctlContext<'_>, req: &IoctlRequest<'_>) -> IoctlResult<Vec<u8>> {
    let mut args = abi::CloneArgs::decode(req.in_data)?;
    let dst_file = req
        .file
        .as_ref()
        .ok_or(IoctlError::BadFile("not an fd of this mount"))?;
    if req.is_dir || dst_file.is_dir {
        return Err(IoctlError::IsDir);
    }
    if !dst_file.writable() || dst_file.flags & libc::O_APPEND != 0 {
        return Err(IoctlError::BadFile(
            "clone destination not open for writing",
        ));
    }
    let src_file = resolve_token(ctx, args.src_mount_id, &args.src_token)?;
    if !src_file.readable() {
        return Err(IoctlError::BadFile("clone source not open for reading"));
    }
    let (src, dst) = (src_file.ino, dst_file.ino);
    let src_attr = regular_attr(ctx, src)?;
    let dst_attr = regular_attr(ctx, dst)?;
    let bs = block_size(ctx)?;
    if args.src_offset % bs != 0 || args.dst_offset % bs != 0 {
        return Err(IoctlError::Invalid("offsets must be block-aligned"));
    }
    if args.src_offset > src_attr.size {
        return Err(IoctlError::Invalid("source offset beyond EOF"));
    }
    let len = if args.length == 0 {
        src_attr.size - args.src_offset
    } else {
        args.length
    };
    let src_end = end_of(args.src_offset, len)?;
    end_of(args.dst_offset, len)?;
    if src_end > src_attr.size {
        return Err(IoctlError::Invalid("source range beyond EOF"));
    }
    // A partial last block may only be cloned when it ends the source and
    // does not land inside the destination (as the kernel's remap checks).
    if len % bs != 0 && (src_end != src_attr.size || args.dst_offset + len < dst_attr.size) {
        return Err(IoctlError::Invalid("a partial block must end both files"));
    }
    if src == dst && args.src_offset < args.dst_offset + len && args.dst_offset < src_end {
        return Err(IoctlError::Invalid("overlapping ranges of one file"));
    }
    let cloned = if len == 0 {
        0
    } else {
        // A data change of dst: the core drops its privileges (setuid and
        // setgid for a non-root caller, file capabilities always).
        ctx.fs
            .clone_range_as(src, args.src_offset, dst, args.dst_offset, len, ctx.caller)?
            .value
    };
    if cloned > 0 {
        // Pages and attributes (the mode too, if privileges dropped).
        invalidate(ctx, dst, args.dst_offset, cloned);
    }
    args.bytes_cloned = cloned;
    Ok(args.encode())
}

/// Longest dedupe one request performs (the kernel's limit): bounds how
/// long both files stay locked while their bytes are compared.
const MAX_DEDUPE_BYTES: u64 = 1 << 30;

fn dedupe_range(ctx: &IoctlContext<'_>, req: &IoctlRequest<'_>) -> IoctlResult<Vec<u8>> {
    let mut args = abi::DedupeArgs::decode(req.in_data)?;
    let src_file = req
        .file
        .as_ref()
        .ok_or(IoctlError::BadFile("not an fd of this mount"))?;
    if req.is_dir || src_file.is_dir {
        return Err(IoctlError::IsDir);
    }
    if !src_file.readable() {
        return Err(IoctlError::BadFile("dedupe source not open for reading"));
    }
    let dst_file = resolve_token(ctx, args.dst_mount_id, &args.dst_token)?;
    let (src, dst) = (src_file.ino, dst_file.ino);
    let src_attr = regular_attr(ctx, src)?;
    let dst_attr = regular_attr(ctx, dst)?;
    if !fs::may_dedupe_into(&dst_attr, req.uid, req.gid, dst_file.writable()) {
        return Err(IoctlError::NotPermitted(
            "dedupe into a file the caller may not write",
        ));
    }
    // The kernel's FIDEDUPERANGE rules (fs/remap_range.c): the source range
    // must lie inside the source (never shortened to its EOF), a request is
    // capped at 1 GiB, and an empty one succeeds with nothing deduped.
    let src_end = end_of(args.src_offset, args.length)?;
    end_of(args.dst_offset, args.length)?;
    if src_end > src_attr.size {
        return Err(IoctlError::Invalid("source range beyond EOF"));
    }
    let len = args.length.min(MAX_DEDUPE_BYTES);
    let bs = block_size(ctx)?;
    if len > 0 {
        // generic_remap_checks: aligned starts, both ranges inside their
        // files, no overlap within one file (counting a partial last block
        // as whole).
        if args.src_offset % bs != 0 || args.dst_offset % bs != 0 {
            return Err(IoctlError::Invalid("offsets must be block-aligned"));
        }
        if args.src_offset >= src_attr.size
            || args.dst_offset >= dst_attr.size
            || args.dst_offset + len > dst_attr.size
        {
            return Err(IoctlError::Invalid("range beyond EOF"));
        }
        let to_both_eofs =
            args.src_offset + len == src_attr.size && args.dst_offset + len == dst_attr.size;
        let covered = if to_both_eofs {
            len.next_multiple_of(bs)
        } else {
            len - len % bs
        };
        if src == dst
            && args.src_offset < args.dst_offset + covered
            && args.dst_offset < args.src_offset + covered
        {
            return Err(IoctlError::Invalid("overlapping ranges of one file"));
        }
    }
    let outcome = if len == 0 {
        DedupeOutcome::Deduped { bytes: 0 }
    } else {
        ctx.fs
            .dedupe_range(src, args.src_offset, dst, args.dst_offset, len)?
    };
    match outcome {
        DedupeOutcome::Deduped { bytes } => {
            if bytes > 0 {
                invalidate(ctx, dst, args.dst_offset, bytes);
            }
            args.status = abi::DEDUPE_SAME;
            args.bytes_deduped = bytes;
        }
        DedupeOutcome::Differs => {
            args.status = abi::DEDUPE_DIFFERS;
            args.bytes_deduped = 0;
        }
    }
    Ok(args.encode())
}

fn get_extents(ctx: &IoctlContext<'_>, req: &IoctlRequest<'_>) -> IoctlResult<Vec<u8>> {
    let args = abi::ExtentsArgs::decode(req.in_data)?;
    if req.is_dir {
        return Err(IoctlError::IsDir);
    }
    let attr = regular_attr(ctx, req.ino)?;
    let max = match args.max_extents {
        0 => abi::EXTENTS_PER_PAGE,
        n => n as usize,
    };
    let all = ctx.fs.extents(req.ino)?;
    let mut following = all
        .iter()
        .filter(|e| e.file_offset.saturating_add(e.len) > args.start_offset);
    let mut reply = abi::ExtentsArgs {
        start_offset: args.start_offset,
        max_extents: args.max_extents,
        file_size: attr.size,
        next_offset: args.start_offset,
        ..abi::ExtentsArgs::default()
    };
    for extent in following.by_ref().take(max) {
        let mut flags = 0;
        if extent.shared {
            flags |= abi::EXTENT_SHARED;
        }
        if extent.unwritten {
            flags |= abi::EXTENT_UNWRITTEN;
        }
        if extent.phys_offset.is_none() {
            flags |= abi::EXTENT_HOLE;
        }
        reply.extents.push(abi::ExtentRecord {
            file_offset: extent.file_offset,
            phys_offset: extent.phys_offset.unwrap_or(0),
            length: extent.len,
            flags,
        });
        reply.next_offset = extent.file_offset.saturating_add(extent.len);
    }
    if following.next().is_none() {
        reply.flags |= abi::PAGE_LAST;
    }
    Ok(reply.encode())
}

fn fsmap(ctx: &IoctlContext<'_>, req: &IoctlRequest<'_>) -> IoctlResult<Vec<u8>> {
    let args = abi::FsmapArgs::decode(req.in_data)?;
    if req.uid != 0 {
        return Err(IoctlError::NotPermitted("the owner map is for root"));
    }
    let bs = block_size(ctx)?;
    if args.phys_start % bs != 0 || args.phys_len % bs != 0 {
        return Err(IoctlError::Invalid("range must be block-aligned"));
    }
    args.phys_start
        .checked_add(args.phys_len)
        .ok_or(IoctlError::Invalid("range overflows"))?;
    let max = match args.max_records {
        0 => abi::FSMAP_PER_PAGE,
        n => n as usize,
    };
    let owners = ctx.fs.owners(args.phys_start / bs, args.phys_len / bs)?;
    let mut records = Vec::with_capacity(max.min(owners.len()));
    let skip = usize::try_from(args.skip).unwrap_or(usize::MAX);
    for owner in owners.iter().skip(skip).take(max) {
        let (Some(phys_offset), Some(length), Some(file_offset)) = (
            owner.phys_block.checked_mul(bs),
            owner.len_blocks.checked_mul(bs),
            owner.file_block.checked_mul(bs),
        ) else {
            return Err(IoctlError::Daemon(format!(
                "owner of block {} does not fit a byte offset",
                owner.phys_block
            )));
        };
        records.push(abi::FsmapRecord {
            phys_offset,
            length,
            ino: owner.ino,
            file_offset,
        });
    }
    Ok(abi::FsmapArgs {
        total: owners.len() as u64,
        records,
        ..args
    }
    .encode())
}

fn paths(ctx: &IoctlContext<'_>, req: &IoctlRequest<'_>) -> IoctlResult<Vec<u8>> {
    let args = abi::PathsArgs::decode(req.in_data)?;
    if req.uid != 0 {
        return Err(IoctlError::NotPermitted("paths are for root"));
    }
    let max = (args.max_paths as usize).clamp(1, PATHS_MAX);
    // Ask for one more than wanted to know whether the list was cut.
    let found = ctx.fs.paths_of(args.ino, max + 1)?;
    let mut flags = 0;
    if found.len() > max {
        flags |= abi::PATHS_TRUNCATED;
    }
    Ok(abi::PathsArgs {
        ino: args.ino,
        max_paths: args.max_paths,
        flags,
        paths: found.into_iter().take(max).collect(),
    }
    .encode())
}

fn usage(ctx: &IoctlContext<'_>, req: &IoctlRequest<'_>) -> IoctlResult<Vec<u8>> {
    abi::UsageArgs::decode(req.in_data)?;
    let usage = ctx.fs.usage()?;
    Ok(abi::UsageArgs {
        mount_id: mount_id()?,
        block_size: block_size(ctx)?,
        logical_bytes: usage.logical_bytes,
        physical_bytes: usage.physical_bytes,
        saved_bytes: usage.saved_bytes,
        metadata_bytes: usage.metadata_bytes,
        total_bytes: usage.total_bytes,
        free_bytes: usage.free_bytes,
        media_bytes: ctx.fs.media().len(),
    }
    .encode())
}

/// Media work and idle-polling counters: harmless to show anyone who can open a file on the
/// mount (like `df`), so no permission check.
fn counters(ctx: &IoctlContext<'_>, req: &IoctlRequest<'_>) -> IoctlResult<Vec<u8>> {
    abi::CountersArgs::decode(req.in_data)?;
    let counters = ctx.fs.media().counters();
    let idle_poll = ctx.idle_poll.counters();
    Ok(abi::CountersArgs {
        mount_id: mount_id()?,
        bytes_stored: counters.bytes_stored,
        bytes_persisted: counters.bytes_persisted,
        lines_flushed: counters.lines_flushed,
        fences: counters.fences,
        msyncs: counters.msyncs,
        idle_poll_engagements: idle_poll.engagements,
        idle_poll_ms: idle_poll.engaged_ms,
    }
    .encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_rejects_overflow_and_positions_beyond_i64() {
        assert_eq!(end_of(4096, 4096).ok(), Some(8192));
        assert_eq!(
            end_of(u64::MAX, 1).map_err(|e| e.errno()).err(),
            Some(libc::EINVAL)
        );
        assert_eq!(
            end_of(i64::MAX as u64, 1).map_err(|e| e.errno()).err(),
            Some(libc::EINVAL)
        );
        assert_eq!(end_of(i64::MAX as u64, 0).ok(), Some(i64::MAX as u64));
    }

    #[test]
    fn pruning_drops_tokens_of_released_files() {
        let mut table = TokenTable::default();
        let live = Arc::new(OpenFile {
            ino: 2,
            flags: libc::O_RDONLY,
            is_dir: false,
            atime_check_pending: Default::default(),
            bypasses_page_cache: false,
            coherence: None,
        });
        let released = Arc::new(OpenFile {
            ino: 3,
            flags: libc::O_RDONLY,
            is_dir: false,
            atime_check_pending: Default::default(),
            bypasses_page_cache: false,
            coherence: None,
        });
        for (token, file, fh) in [([1; 16], &live, 1), ([2; 16], &released, 2)] {
            table.by_token.insert(
                token,
                TokenEntry {
                    file: Arc::downgrade(file),
                    fh,
                },
            );
            table.by_handle.insert((0, fh), token);
        }
        drop(released);
        table.prune();
        assert!(table.by_token.contains_key(&[1; 16]));
        assert!(!table.by_token.contains_key(&[2; 16]));
        assert_eq!(table.by_handle.len(), 1);
        assert_eq!(table.pruned_len, 1);
    }
}
