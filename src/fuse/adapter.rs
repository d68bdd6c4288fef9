//! The FUSE adapter: translates fuser requests into calls of the
//! filesystem core ([`crate::fs::Fs`]) and core errors into errno values
//! (only through [`crate::fs::Error::errno`]).
//!
//! Cache policy (see docs/FUSE.md): by default (`cache=auto`) read-only
//! opens of regular files are served through the kernel page cache and
//! opens for writing bypass it (`FOPEN_DIRECT_IO`); `mmap` — shared or
//! private, read or write — always goes through the page cache
//! (`DIRECT_IO_ALLOW_MMAP`) and the kernel keeps it coherent with direct
//! reads and writes; `keep_cache` is safe because every change of file
//! contents passes through this kernel, except remaps by the private
//! ioctls, which invalidate the destination range explicitly ([`CacheInvalidator`]).
//! Under `strictatime` every open bypasses the page cache for read/write
//! (a read served from cached pages never reaches the daemon, which keeps
//! atime); mmap still uses it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, WriteFlags,
};

use super::coherence::Invalidations;
use super::handles::{HandleTable, OpenFile};
use super::idle_poll::IdlePoll;
use super::invalidator::CacheInvalidator;
use super::ioctl::{self, IoctlContext, IoctlRequest};
use super::options::{AtimePolicy, CacheMode, MountOptions};
use crate::fs::{
    self, AtimeRule, Attr, Creds, FallocMode, FileKind, Fs, Ino, Modified, RenameFlags, SetAttr,
    TimeOrNow, Timestamp, Whence, XattrSetMode,
};

/// Largest byte count one legacy `FUSE_COPY_FILE_RANGE` reply can report
/// (a u32), rounded down to whole blocks so a clone stays block-aligned.
const COPY_RANGE_MAX_BYTES: u64 = (u32::MAX as u64) & !0xfff;

/// Entries gathered per readdirplus request before fetching attributes.
/// The kernel asks with one page (4 KiB) and an entry with attributes takes
/// at least 160 bytes, so 25 fit; 128 covers 16 KiB pages. More would only
/// be listed and thrown away on every request of a large directory.
const READDIRPLUS_BATCH: usize = 128;

/// Settings of the adapter derived from the mount options.
#[derive(Clone, Debug)]
pub struct AdapterConfig {
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
    pub writeback_cache: bool,
    pub cache: CacheMode,
    pub max_write_bytes: u32,
    pub max_readahead_bytes: u32,
    pub atime: AtimePolicy,
    /// `nodiratime`: listing a directory leaves its atime alone.
    pub no_dir_atime: bool,
    /// strictatime: reads bypass the page cache (`FOPEN_DIRECT_IO`), since a
    /// read served from cached pages never reaches the daemon and so could
    /// not update atime. Cleared in init if the kernel cannot mmap
    /// direct_io files.
    pub strict_atime_reads: bool,
    pub read_only: bool,
}

impl AdapterConfig {
    pub fn from_options(opts: &MountOptions) -> AdapterConfig {
        AdapterConfig {
            attr_ttl: opts.attr_timeout,
            entry_ttl: opts.entry_timeout,
            writeback_cache: opts.writeback_cache,
            cache: opts.cache,
            max_write_bytes: opts.max_write_bytes,
            max_readahead_bytes: opts.max_readahead_bytes,
            atime: if opts.read_only {
                AtimePolicy::Never
            } else {
                opts.atime
            },
            no_dir_atime: opts.no_dir_atime,
            strict_atime_reads: !opts.read_only && opts.atime == AtimePolicy::Always,
            read_only: opts.read_only,
        }
    }
}

/// The FUSE filesystem: one per mount.
pub struct CowdaxFs {
    fs: Arc<Fs>,
    config: AdapterConfig,
    handles: HandleTable,
    invalidator: Arc<CacheInvalidator>,
    /// For the counters ioctl; requests are counted where fuser hands
    /// them over (idle_poll::Counting wraps this filesystem).
    idle_poll: IdlePoll,
    /// Answers direct writes once the page cache is coherent with them.
    invalidations: Invalidations,
}

fn errno_of(err: &fs::Error) -> Errno {
    match err {
        fs::Error::Store(_) | fs::Error::Corrupt(_) | fs::Error::Internal(_) => {
            log::error!("{err}")
        }
        _ => log::debug!("{err}"),
    }
    Errno::from_i32(err.errno())
}

fn reply_written(reply: ReplyWrite, result: fs::Result<u32>) {
    match result {
        Ok(written) => reply.written(written),
        Err(err) => reply.error(errno_of(&err)),
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Regular => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

fn to_file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.blocks,
        atime: attr.atime.into(),
        mtime: attr.mtime.into(),
        ctime: attr.ctime.into(),
        crtime: attr.btime.into(),
        kind: file_type(attr.kind),
        perm: (attr.perm & 0o7777) as u16,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: attr.rdev,
        blksize: attr.blksize,
        flags: 0,
    }
}

/// The generation the kernel keeps for an inode (`i_generation`) and puts
/// into its file handles beside the inode number. The core's generation is
/// unique per created inode and persisted, so a handle of a deleted inode
/// can never match a later one. The kernel's root inode has generation 0
/// (it warns about any other), so the root reports 0.
fn entry_generation(attr: &Attr) -> Generation {
    if attr.ino == fs::ROOT_INO {
        Generation(0)
    } else {
        Generation(attr.generation)
    }
}

fn to_time_or_now(t: fuser::TimeOrNow) -> TimeOrNow {
    match t {
        fuser::TimeOrNow::Now => TimeOrNow::Now,
        fuser::TimeOrNow::SpecificTime(t) => TimeOrNow::At(Timestamp::from(t)),
    }
}

impl CowdaxFs {
    pub fn new(
        fs: Arc<Fs>,
        config: AdapterConfig,
        invalidator: Arc<CacheInvalidator>,
        idle_poll: IdlePoll,
        invalidations: Invalidations,
    ) -> CowdaxFs {
        CowdaxFs {
            fs,
            config,
            handles: HandleTable::new(),
            invalidator,
            idle_poll,
            invalidations,
        }
    }

    fn reply_entry(&self, reply: ReplyEntry, attr: &Attr) {
        reply.entry_with_ttls(
            &self.config.attr_ttl,
            &self.config.entry_ttl,
            &to_file_attr(attr),
            entry_generation(attr),
        );
    }

    /// The caller's identity as the core's create rules see it.
    fn creds_of(req: &Request) -> Creds {
        Creds {
            uid: req.uid(),
            gid: req.gid(),
        }
    }

    /// Access-time maintenance for a read of `ino` (file data, or a
    /// directory listing) through handle `fh`. Runs before the reply: when
    /// read(2) or getdents(2) returns, the new atime is stored and the
    /// kernel's copy dropped, so the caller's next stat sees it (the kernel
    /// also drops its cached atime when a read completes; the explicit
    /// invalidation bumps the attribute version too, so a GETATTR answered
    /// just before the update cannot re-cache the old value).
    /// The core decides whether atime moves (`Fs::note_read`); the
    /// adapter only skips asking under relatime when nothing was written
    /// through the handle since its last check (a cheap shortcut: the
    /// kernel's own relatime check is per read too).
    fn touch_atime(&self, ino: Ino, file: Option<&OpenFile>, is_dir: bool) {
        if is_dir && self.config.no_dir_atime {
            return;
        }
        let rule = match self.config.atime {
            AtimePolicy::Never => return,
            AtimePolicy::Always => AtimeRule::Always,
            AtimePolicy::Relative => {
                let pending = file
                    .is_some_and(|file| file.atime_check_pending.swap(false, Ordering::Relaxed));
                if !pending {
                    return;
                }
                AtimeRule::Relative
            }
        };
        match self.fs.note_read(ino, rule, Timestamp::now()) {
            Ok(true) => self.invalidate_cached_attributes(ino),
            Ok(false) => {}
            Err(err) => log::debug!("inode {ino}: atime update failed: {err}"),
        }
    }

    /// The daemon changed `ino`'s attributes on its own: drop the kernel's
    /// copy, which would otherwise live for attr_timeout.
    fn invalidate_cached_attributes(&self, ino: Ino) {
        if let Err(err) = self.invalidator.invalidate_attributes(ino) {
            // ENOENT: the kernel has no inode for it, so nothing cached.
            if err.raw_os_error() != Some(libc::ENOENT) {
                log::warn!("inode {ino}: invalidating cached attributes failed: {err}");
            }
        }
    }

    /// After a data change that the kernel does not follow with fresh
    /// attributes (write, fallocate, copy_file_range, clone): when the core
    /// dropped setuid/setgid with it, drop the kernel's cached mode before
    /// the reply, or a `stat` asking only for the mode (STATX_MODE, as
    /// `stat -c %A` does) would see the old bits for attr_timeout.
    pub(crate) fn after_data_change<T>(&self, ino: Ino, modified: Modified<T>) -> T {
        if modified.mode_changed {
            self.invalidate_cached_attributes(ino);
        }
        modified.value
    }

    /// release and releasedir: forget the handle, then let the core drop
    /// the open reference (an unlinked inode may go with it).
    fn release_handle(&self, ino: Ino, fh: u64, reply: ReplyEmpty) {
        let ino = self.handles.remove(fh).map_or(ino, |file| file.ino);
        reply_empty(reply, self.fs.release_inode(ino));
    }

    /// Registers a handle for an open (or create) of a regular file and
    /// chooses how the kernel caches it.
    fn open_file(&self, ino: Ino, open_flags: i32) -> (u64, FopenFlags) {
        // strictatime: every read must reach the daemon to move atime.
        let bypasses_page_cache =
            self.config.cache.bypasses_page_cache(open_flags) || self.config.strict_atime_reads;
        let fh = self
            .handles
            .insert_file(ino, open_flags, bypasses_page_cache);
        (fh, self.fopen_flags(bypasses_page_cache))
    }

    fn fopen_flags(&self, bypasses_page_cache: bool) -> FopenFlags {
        // keep_cache: see the module docs. NOFLUSH saves a round trip per
        // close; our writes are synchronous, so flush has nothing to report
        // (with writeback cache the kernel sends FLUSH regardless).
        let mut flags = FopenFlags::FOPEN_KEEP_CACHE;
        if !self.config.writeback_cache {
            flags |= FopenFlags::FOPEN_NOFLUSH;
        }
        if bypasses_page_cache {
            // Reads and writes through this open skip the page cache; mmap
            // keeps using it (DIRECT_IO_ALLOW_MMAP). The kernel writes back
            // and drops cached pages before each direct write, and the
            // daemon drops them again after it (super::coherence), so
            // page-cached opens and mappings of the same file stay coherent
            // (tests/fuse_cache_modes.rs, tests/fuse_mmap_pwrite.rs).
            flags |= FopenFlags::FOPEN_DIRECT_IO;
        }
        flags
    }
}

/// The caller of one request as the core's privilege rules see it
/// (src/fs/privs.rs). A FUSE request carries the caller's fsuid, fsgid and
/// thread id; root stands for CAP_FSETID (a root process that dropped the
/// capability keeps setuid/setgid where a local filesystem would clear
/// them, docs/FUSE.md) unless the kernel says otherwise (a write's
/// FUSE_WRITE_KILL_SUIDGID). Supplementary groups are read from
/// /proc/TID/status, once, and only when a rule needs them.
pub(crate) struct RequestCaller {
    gid: u32,
    pid: u32,
    fsetid: bool,
    groups: OnceLock<Vec<u32>>,
}

impl RequestCaller {
    fn new(uid: u32, gid: u32, pid: u32) -> RequestCaller {
        RequestCaller {
            gid,
            pid,
            fsetid: uid == 0,
            groups: OnceLock::new(),
        }
    }

    fn of(req: &Request) -> RequestCaller {
        RequestCaller::new(req.uid(), req.gid(), req.pid())
    }

    /// The kernel told whether the caller holds CAP_FSETID.
    fn with_fsetid(mut self, fsetid: bool) -> RequestCaller {
        self.fsetid = fsetid;
        self
    }
}

impl fs::Caller for RequestCaller {
    fn has_fsetid(&self) -> bool {
        self.fsetid
    }

    fn in_group(&self, gid: u32) -> bool {
        gid == self.gid
            || self
                .groups
                .get_or_init(|| supplementary_groups(self.pid))
                .contains(&gid)
    }
}

/// The `Groups:` line of /proc/PID/status; none when the process is gone
/// (or invisible from our pid namespace: the kernel then sends pid 0), so
/// the caller counts as outside the group and loses a setgid bit.
fn supplementary_groups(pid: u32) -> Vec<u32> {
    if pid == 0 {
        return Vec::new();
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn name_bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

impl Filesystem for CowdaxFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut wanted = InitFlags::FUSE_POSIX_ACL
            | InitFlags::FUSE_DONT_MASK
            | InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_MAX_PAGES
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_ASYNC_DIO
            | InitFlags::FUSE_HAS_IOCTL_DIR
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2
            // File handles (name_to_handle_at, NFS) that survive the kernel
            // forgetting the inode: see `lookup` of "." and "..".
            | InitFlags::FUSE_EXPORT_SUPPORT;
        if self.config.writeback_cache {
            wanted |= InitFlags::FUSE_WRITEBACK_CACHE;
        }
        if self.config.cache != CacheMode::Page || self.config.strict_atime_reads {
            wanted |= InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP;
        }
        for flag in wanted.iter() {
            if let Err(unsupported) = config.add_capabilities(flag) {
                log::info!("kernel does not offer {unsupported:?}");
                if unsupported.contains(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP) {
                    // Without it mmap of a direct_io file fails (ENODEV):
                    // keep the page cache rather than break mmap.
                    log::warn!(
                        "cache={} needs Linux 6.6 or later (mmap of direct_io files); using cache=page",
                        self.config.cache.name()
                    );
                    self.config.cache = CacheMode::Page;
                    if self.config.strict_atime_reads {
                        log::warn!(
                            "strictatime: reads served from the page cache will not update atime \
                             (bypassing it needs Linux 6.6 or later)"
                        );
                        self.config.strict_atime_reads = false;
                    }
                }
            }
        }
        if let Err(nearest) = config.set_max_write(self.config.max_write_bytes) {
            log::warn!(
                "max_write {} not accepted, using {nearest}",
                self.config.max_write_bytes
            );
            let _ = config.set_max_write(nearest);
        }
        // The kernel offers its current read-ahead window and only lets INIT
        // lower it; the daemon raises the window itself through sysfs
        // (daemon::apply_read_ahead), before or after this reply.
        if let Err(nearest) = config.set_max_readahead(self.config.max_readahead_bytes) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        log::info!(
            "FUSE session initialised: max_write {} bytes, cache={}, writeback cache {}",
            self.config.max_write_bytes,
            self.config.cache.name(),
            if self.config.writeback_cache {
                "on"
            } else {
                "off"
            }
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // Path walks never send "." or ".." (the VFS resolves them); the
        // kernel does when it decodes a file handle whose inode it has
        // forgotten: "." of the handle's inode, a file or a directory, and
        // ".." of a directory to reconnect it (fs/fuse/inode.c
        // fuse_get_dentry, fuse_get_parent). An inode without links is gone
        // for a handle (ENOENT, which the kernel turns into ESTALE), as on
        // ext4; one still open is in the kernel's cache and never asked for.
        let result = if name.as_bytes() == b"." {
            self.fs.getattr(parent.0).and_then(|attr| {
                if attr.nlink == 0 {
                    Err(fs::Error::NotFound)
                } else {
                    Ok(attr)
                }
            })
        } else {
            self.fs.lookup(parent.0, name_bytes(name))
        };
        match result {
            Ok(attr) => self.reply_entry(reply, &attr),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn forget(&self, _req: &Request, _ino: INodeNo, _nlookup: u64) {
        // Inode lifetime is link count + open handles (Fs::open_inode); the
        // kernel's lookup count does not keep inodes alive.
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(attr) => reply.attr(&self.config.attr_ttl, &to_file_attr(&attr)),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<fuser::TimeOrNow>,
        mtime: Option<fuser::TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Permission checks (owner, CAP_FOWNER, setgid stripping on chmod)
        // were done by the kernel (default_permissions). Killing privileges
        // on truncate and chown is ours (HANDLE_KILLPRIV_V2) and the core's
        // rules; on truncate the kernel would say "caller lacks CAP_FSETID"
        // with FATTR_KILL_SUIDGID, which fuser does not pass on, so a
        // non-root caller stands for it.
        let set = SetAttr {
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(to_time_or_now),
            mtime: mtime.map(to_time_or_now),
            ctime: ctime.map(Timestamp::from),
        };
        let caller = RequestCaller::of(req);
        // A chmod keeps an access ACL in line in the same transaction.
        match self.fs.setattr_as(ino.0, &set, &caller) {
            Ok(attr) => reply.attr(&self.config.attr_ttl, &to_file_attr(&attr)),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        if FileKind::from_mode(mode).is_none() {
            reply.error(Errno::from_i32(libc::EINVAL));
            return;
        }
        // FUSE_DONT_MASK: the core applies the umask, unless the parent's
        // default ACL replaces it.
        let creds = Self::creds_of(req);
        match self
            .fs
            .create_in(parent.0, name_bytes(name), mode, umask, rdev, creds)
        {
            Ok(attr) => self.reply_entry(reply, &attr),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = libc::S_IFDIR | (mode & 0o7777);
        let creds = Self::creds_of(req);
        match self
            .fs
            .create_in(parent.0, name_bytes(name), mode, umask, 0, creds)
        {
            Ok(attr) => self.reply_entry(reply, &attr),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.unlink(parent.0, name_bytes(name)) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.rmdir(parent.0, name_bytes(name)) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self.fs.symlink_in(
            parent.0,
            name_bytes(link_name),
            target.as_os_str().as_bytes(),
            Self::creds_of(req),
        );
        match result {
            Ok(attr) => self.reply_entry(reply, &attr),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let known = fuser::RenameFlags::RENAME_NOREPLACE | fuser::RenameFlags::RENAME_EXCHANGE;
        if !known.contains(flags) {
            // RENAME_WHITEOUT is for overlayfs upper layers; not supported.
            reply.error(Errno::from_i32(libc::EINVAL));
            return;
        }
        let core_flags = RenameFlags {
            noreplace: flags.contains(fuser::RenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(fuser::RenameFlags::RENAME_EXCHANGE),
        };
        match self.fs.rename(
            parent.0,
            name_bytes(name),
            newparent.0,
            name_bytes(newname),
            core_flags,
        ) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.fs.link(ino.0, newparent.0, name_bytes(newname)) {
            Ok(attr) => self.reply_entry(reply, &attr),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if let Err(err) = self.fs.open_inode(ino.0) {
            reply.error(errno_of(&err));
            return;
        }
        let (fh, fopen_flags) = self.open_file(ino.0, flags.0);
        reply.opened(FileHandle(fh), fopen_flags);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Any READ may fill the page cache: through a cached open, and
        // through a direct one too when it serves a mapping's page fault.
        let file = self.handles.get(fh.0);
        if let Some(state) = file.as_ref().and_then(|f| f.coherence.as_ref()) {
            state.note_page_cache_use();
        }
        // atime first (outside the core's read lock): see touch_atime.
        self.touch_atime(ino.0, file.as_deref(), false);
        // Zero-copy: the bytes are borrowed from the mapping under the
        // inode's read lock and leave in one writev (DESIGN.md §6).
        let mut reply = Some(reply);
        let result = self.fs.read_with(ino.0, offset, size, &mut |bytes| {
            if let Some(reply) = reply.take() {
                reply.data(bytes);
            }
        });
        match (result, reply) {
            (Ok(()), None) => {}
            // The core succeeded without producing bytes: nothing to read.
            (Ok(()), Some(reply)) => reply.data(&[]),
            (Err(err), Some(reply)) => reply.error(errno_of(&err)),
            (Err(err), None) => log::error!("inode {}: read failed after reply: {err}", ino.0),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // HANDLE_KILLPRIV_V2: the kernel flags writes by callers without
        // CAP_FSETID (buffered and O_DIRECT alike); the core drops what a
        // write by such a caller drops.
        let fsetid = !write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let caller = RequestCaller::of(req).with_fsetid(fsetid);
        let apply = |offset: u64, data: &[u8]| {
            self.fs
                .write_as(ino.0, offset, data, &caller)
                .map(|modified| self.after_data_change(ino.0, modified))
        };
        let file = self.handles.get(fh.0);
        if let Some(file) = &file {
            file.atime_check_pending.store(true, Ordering::Relaxed);
        }
        let Some((file, state)) = file.and_then(|f| f.coherence.clone().map(|c| (f, c))) else {
            // No handle (not expected for WRITE): nothing cached to mind.
            reply_written(reply, apply(offset, data));
            return;
        };
        let end = offset.saturating_add(data.len() as u64);
        if write_flags.contains(WriteFlags::FUSE_WRITE_CACHE) {
            // Writeback of cached pages: never over a direct write in flight
            // (its cached bytes are older than that write).
            let result = state.write_back(offset..end, |part| {
                let from = (part.start - offset) as usize;
                let to = (part.end - offset) as usize;
                apply(part.start, &data[from..to]).map(|_| ())
            });
            reply_written(reply, result.map(|()| data.len() as u32));
            return;
        }
        if !file.bypasses_page_cache && flags.0 & libc::O_DIRECT == 0 {
            // Write-through from a cached open: the kernel copied these bytes
            // into its pages (and holds them locked until this reply).
            state.note_page_cache_use();
            reply_written(reply, apply(offset, data));
            return;
        }
        let protection = state.protect(offset..end);
        match apply(offset, data) {
            Ok(written) if state.needs_invalidation(&protection) => {
                self.invalidations
                    .invalidate_then_reply(ino.0, state, protection, reply, written);
            }
            Ok(written) => reply.written(written),
            Err(err) => {
                state.release(protection);
                reply.error(errno_of(&err));
            }
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes are applied synchronously: nothing is pending at close.
        // With writeback_cache the kernel writes the dirty pages back before
        // sending FLUSH and returns a failed writeback's error (ENOSPC) from
        // close itself (docs/FUSE.md, writeback_cache): nothing to add here.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.release_handle(ino.0, fh.0, reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.fsync(ino.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if let Err(err) = self.fs.open_inode(ino.0) {
            reply.error(errno_of(&err));
            return;
        }
        let fh = self.handles.insert_dir(ino.0, flags.0);
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // Every getdents reaches the daemon (no directory cache is asked
        // for), so a listing updates atime like a read (unless nodiratime).
        self.touch_atime(ino.0, self.handles.get(fh.0).as_deref(), true);
        let result = self.fs.readdir(ino.0, offset, &mut |entry| {
            let full = reply.add(
                INodeNo(entry.ino),
                entry.next_offset,
                file_type(entry.kind),
                OsStr::from_bytes(&entry.name),
            );
            !full
        });
        match result {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        // Every getdents reaches the daemon (no directory cache is asked
        // for), so a listing updates atime like a read (unless nodiratime).
        self.touch_atime(ino.0, self.handles.get(fh.0).as_deref(), true);
        // Gather names first, then attributes: the core's readdir callback
        // runs under the directory's lock, so no other core call in it.
        let mut entries = Vec::new();
        let result = self.fs.readdir(ino.0, offset, &mut |entry| {
            entries.push(entry.clone());
            entries.len() < READDIRPLUS_BATCH
        });
        if let Err(err) = result {
            reply.error(errno_of(&err));
            return;
        }
        for entry in &entries {
            let attr = match self.fs.getattr(entry.ino) {
                Ok(attr) => attr,
                // Removed since the listing: as if listed a moment later.
                Err(fs::Error::NotFound) => continue,
                Err(err) => {
                    reply.error(errno_of(&err));
                    return;
                }
            };
            let full = reply.add(
                INodeNo(entry.ino),
                entry.next_offset,
                OsStr::from_bytes(&entry.name),
                &self.config.entry_ttl,
                &to_file_attr(&attr),
                entry_generation(&attr),
            );
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.release_handle(ino.0, fh.0, reply);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.fsync(ino.0, datasync));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(st) => {
                let block_size = u32::try_from(st.block_size).unwrap_or(4096);
                reply.statfs(
                    st.total_blocks,
                    st.free_blocks,
                    st.free_blocks,
                    st.total_inodes,
                    st.free_inodes,
                    block_size,
                    st.name_max,
                    block_size,
                )
            }
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mode = match flags {
            0 => XattrSetMode::Any,
            libc::XATTR_CREATE => XattrSetMode::Create,
            libc::XATTR_REPLACE => XattrSetMode::Replace,
            _ => {
                reply.error(Errno::from_i32(libc::EINVAL));
                return;
            }
        };
        // POSIX ACLs are validated and kept in line with the mode by the
        // core. The kernel would flag a caller outside the file's group with
        // FUSE_SETXATTR_ACL_KILL_SGID, but only with FUSE_SETXATTR_EXT,
        // whose longer request fuser 0.18 cannot parse: the core asks the
        // caller's groups itself.
        let caller = RequestCaller::of(req);
        match self
            .fs
            .setxattr_as(ino.0, name_bytes(name), value, mode, &caller)
        {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs.getxattr(ino.0, name_bytes(name)) {
            Ok(value) => reply_sized(reply, &value, size),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.listxattr(ino.0) {
            Ok(names) => {
                let mut list = Vec::new();
                for name in names {
                    list.extend_from_slice(&name);
                    list.push(0);
                }
                reply_sized(reply, &list, size)
            }
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.removexattr(ino.0, name_bytes(name)) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // With default_permissions the kernel checks and does not ask; the
        // core answers mounts without it.
        let wanted = (mask & (AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK)).bits();
        reply_empty(
            reply,
            self.fs.access(ino.0, req.uid(), req.gid(), wanted as u32),
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mode = libc::S_IFREG | (mode & 0o7777);
        let creds = Self::creds_of(req);
        let created = self
            .fs
            .create_in(parent.0, name_bytes(name), mode, umask, 0, creds);
        let attr = match created {
            Ok(attr) => attr,
            Err(err) => {
                reply.error(errno_of(&err));
                return;
            }
        };
        if let Err(err) = self.fs.open_inode(attr.ino) {
            reply.error(errno_of(&err));
            return;
        }
        let (fh, fopen_flags) = self.open_file(attr.ino, flags);
        reply.created(
            &self.config.entry_ttl,
            &to_file_attr(&attr),
            entry_generation(&attr),
            FileHandle(fh),
            fopen_flags,
        );
    }

    fn ioctl(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        let request = IoctlRequest {
            uid: req.uid(),
            gid: req.gid(),
            pid: req.pid(),
            ino: ino.0,
            fh: fh.0,
            file: self.handles.get(fh.0),
            is_dir: flags.contains(IoctlFlags::FUSE_IOCTL_DIR),
            cmd,
            in_data,
            out_size,
        };
        let caller = RequestCaller::of(req);
        let context = IoctlContext {
            fs: &self.fs,
            handles: &self.handles,
            invalidator: &self.invalidator,
            idle_poll: &self.idle_poll,
            caller: &caller,
        };
        match ioctl::dispatch(&context, &request) {
            Ok(out) => {
                let len = out.data.len().min(out_size as usize);
                reply.ioctl(out.result, &out.data[..len]);
            }
            Err(err) => reply.error(Errno::from_i32(err.errno())),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(mode) = falloc_mode(mode) else {
            reply.error(Errno::from_i32(libc::EOPNOTSUPP));
            return;
        };
        // HANDLE_KILLPRIV_V2: the kernel leaves privileges to us and says
        // nothing about CAP_FSETID here (its `file_modified` turns into an
        // empty setattr).
        let result = self
            .fs
            .fallocate_as(ino.0, offset, length, mode, &RequestCaller::of(req))
            .map(|modified| self.after_data_change(ino.0, modified));
        match result {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let whence = match whence {
            libc::SEEK_DATA => Whence::Data,
            libc::SEEK_HOLE => Whence::Hole,
            _ => {
                // SEEK_SET/CUR/END never reach the server.
                reply.error(Errno::from_i32(libc::EINVAL));
                return;
            }
        };
        let Ok(offset) = u64::try_from(offset) else {
            reply.error(Errno::from_i32(libc::ENXIO));
            return;
        };
        match self.fs.seek(ino.0, offset, whence) {
            Ok(found) => match i64::try_from(found) {
                Ok(found) => reply.offset(found),
                Err(_) => reply.error(Errno::from_i32(libc::EOVERFLOW)),
            },
            Err(err) => reply.error(errno_of(&err)),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        if !flags.is_empty() {
            reply.error(Errno::from_i32(libc::EINVAL));
            return;
        }
        // The reply carries a u32: copy at most that much per request (the
        // caller loops on short copies, as for any copy_file_range).
        let len = len.min(COPY_RANGE_MAX_BYTES);
        let caller = RequestCaller::of(req);
        let result = self
            .fs
            .copy_range_as(ino_in.0, offset_in, ino_out.0, offset_out, len, &caller)
            .map(|modified| self.after_data_change(ino_out.0, modified));
        match result {
            Ok(copied) => reply.written(u32::try_from(copied.min(len)).unwrap_or(u32::MAX)),
            // Never ENOSYS (that would switch copy_file_range off for the
            // whole mount); errno() maps "not supported" to EOPNOTSUPP, which
            // makes the kernel fall back to a byte copy for this call only.
            Err(err) => reply.error(errno_of(&err)),
        }
    }
}

fn reply_empty(reply: ReplyEmpty, result: fs::Result<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(err) => reply.error(errno_of(&err)),
    }
}

fn reply_sized(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        match u32::try_from(value.len()) {
            Ok(len) => reply.size(len),
            Err(_) => reply.error(Errno::from_i32(libc::E2BIG)),
        }
    } else if value.len() > size as usize {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}

/// The fallocate modes the kernel forwards, as the core's [`FallocMode`];
/// `None` for everything else (answered with EOPNOTSUPP).
pub fn falloc_mode(mode: i32) -> Option<FallocMode> {
    const KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
    const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
    const ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;
    match mode {
        0 => Some(FallocMode::Allocate),
        KEEP_SIZE => Some(FallocMode::KeepSize),
        // Punching a hole never changes the size: Linux requires KEEP_SIZE.
        m if m == PUNCH_HOLE | KEEP_SIZE => Some(FallocMode::PunchHole),
        ZERO_RANGE => Some(FallocMode::ZeroRange { keep_size: false }),
        m if m == ZERO_RANGE | KEEP_SIZE => Some(FallocMode::ZeroRange { keep_size: true }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: FileKind, perm: u32, uid: u32, gid: u32) -> Attr {
        Attr::for_tests(kind, perm, uid, gid)
    }

    #[test]
    fn forwarded_fallocate_modes_map_and_others_are_declined() {
        assert_eq!(falloc_mode(0), Some(FallocMode::Allocate));
        assert_eq!(
            falloc_mode(libc::FALLOC_FL_KEEP_SIZE),
            Some(FallocMode::KeepSize)
        );
        assert_eq!(
            falloc_mode(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE),
            Some(FallocMode::PunchHole)
        );
        assert_eq!(falloc_mode(libc::FALLOC_FL_PUNCH_HOLE), None);
        assert_eq!(
            falloc_mode(libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE),
            Some(FallocMode::ZeroRange { keep_size: true })
        );
        assert_eq!(falloc_mode(libc::FALLOC_FL_COLLAPSE_RANGE), None);
        assert_eq!(falloc_mode(libc::FALLOC_FL_INSERT_RANGE), None);
    }

    #[test]
    fn attributes_convert_with_kind_and_permission_bits() {
        let a = attr(FileKind::Directory, 0o2755, 5, 6);
        let fa = to_file_attr(&a);
        assert_eq!(fa.kind, FileType::Directory);
        assert_eq!(fa.perm, 0o2755);
        assert_eq!((fa.uid, fa.gid), (5, 6));
    }
}
