//! `MmapMedia`: the real mapping of an image file, block device, devdax
//! device or file on a DAX filesystem (DESIGN.md §3, docs/MEDIA.md).
//!
//! # Soundness of access to the mapping
//! The mapping is `MAP_SHARED`, so in principle another process could change
//! it under us. None does: [`MmapMedia::open`] takes `flock(LOCK_EX)` on the
//! opened file for read-write (`LOCK_SH` for read-only) and fails with
//! [`MediaError::InUse`] when another cowdax process holds it, so while this
//! value lives the only writer of the region is this process, through this
//! value. Every access is bounds-checked against the mapping length, which
//! never changes. Reads and writes are plain `memcpy`s into and out of caller
//! buffers (no Rust reference into the mapping escapes a call), aligned 8-byte
//! accesses are `AtomicU64` operations, and [`Media::with_slice`] lends a
//! shared slice only under the read protocol of the `media` module docs.
//! Callers serialize stores and reads of overlapping byte ranges with their
//! own locks (the filesystem core does, per inode and for its metadata
//! areas); racing them is a caller bug that can tear the bytes read.
//!
//! # Persistence
//! `persist`/`fence` use the [`FlushMethod`] chosen at open: CPU cache-line
//! flushes + SFENCE on DAX kinds (a fence covers the flushes of its own
//! thread), or an ordered list of dirty page ranges that `fence` msyncs in
//! persist order on page-cache kinds. docs/MEDIA.md has the details.
//!
//! Not defended against: something outside cowdax truncating an image file
//! or writing a device while it is mapped (as with any mmap'ing program, a
//! truncation makes later accesses raise SIGBUS).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::claim::{self, Holder};
use super::detect;
use super::flush::{self, FlushMethod};
use super::{check_range, Counters, Media, MediaError, MediaKind, Result, CACHE_LINE_BYTES};

/// Read-only mappings never write (fsck -n, dump); read-write ones may.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    ReadOnly,
    ReadWrite,
}

/// Dirty ranges remembered by `persist` on msync'ed mappings before `fence`
/// syncs them in order. Past this many, `persist` syncs the list itself
/// (still in order), which bounds the list and the work of one fence.
const MAX_PENDING_SYNC_RANGES: usize = 64;

/// How long [`MmapMedia::open_waiting`] waits before telling the user.
pub const WAIT_NOTICE_AFTER: Duration = Duration::from_secs(1);
/// How long [`MmapMedia::open_waiting`] waits for a mount daemon that still
/// marks the image in use although its mount cannot be seen: the kernel
/// detaches the mount before the daemon's session ends, so right after
/// `umount` this is the normal state for some milliseconds.
pub const DETACHED_GRACE: Duration = Duration::from_secs(5);
/// How often [`MmapMedia::open_waiting`] looks again.
const WAIT_RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// The mapping itself. Unmapped on drop.
enum Mapping {
    /// Mapped by memmap2 (page-cache kinds and devdax), unmapped by it.
    Memmap(memmap2::MmapRaw),
    /// Mapped with `MAP_SHARED_VALIDATE | MAP_SYNC`, which memmap2 0.9 cannot
    /// express; unmapped by [`SyncMapping`]'s `Drop`.
    Sync(SyncMapping),
}

impl Mapping {
    fn base(&self) -> *mut u8 {
        match self {
            Mapping::Memmap(raw) => raw.as_mut_ptr(),
            Mapping::Sync(sync) => sync.addr.as_ptr(),
        }
    }
}

/// A `MAP_SYNC` mapping made with `libc::mmap`.
struct SyncMapping {
    addr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; the pointer
// is not tied to the creating thread, and all access through MmapMedia is
// bounds-checked copy-in/copy-out or atomic, so sharing it between threads is
// as sound as sharing memmap2's `MmapRaw` (which is Send + Sync).
unsafe impl Send for SyncMapping {}
// SAFETY: see `Send` above.
unsafe impl Sync for SyncMapping {}

impl SyncMapping {
    /// Maps `len` bytes of `file` from offset 0 with MAP_SYNC. `Ok(None)` when
    /// the kernel refuses MAP_SYNC for this file (EOPNOTSUPP: not DAX; EINVAL:
    /// kernel without MAP_SHARED_VALIDATE).
    fn try_map(file: &File, len: usize, mode: OpenMode) -> std::io::Result<Option<SyncMapping>> {
        let prot = match mode {
            OpenMode::ReadOnly => libc::PROT_READ,
            OpenMode::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        };
        // SAFETY: a fresh mapping at a kernel-chosen address (null hint)
        // cannot alias any existing Rust object; the fd is open for the call.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => Ok(None),
                _ => Err(err),
            };
        }
        match NonNull::new(addr.cast::<u8>()) {
            Some(addr) => Ok(Some(SyncMapping { addr, len })),
            // mmap never returns null for a null hint without MAP_FIXED.
            None => Err(std::io::Error::other("mmap returned a null mapping")),
        }
    }
}

impl Drop for SyncMapping {
    fn drop(&mut self) {
        // SAFETY: addr/len are exactly what mmap returned, and no pointer into
        // the mapping outlives MmapMedia (accesses are within method calls).
        let result = unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
        if result != 0 {
            log::error!("munmap failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// A page-aligned byte range waiting for `msync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SyncRange {
    start: usize,
    end: usize,
}

#[derive(Default)]
struct MediaCounters {
    bytes_stored: AtomicU64,
    bytes_persisted: AtomicU64,
    lines_flushed: AtomicU64,
    fences: AtomicU64,
    msyncs: AtomicU64,
}

impl MediaCounters {
    fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}

/// A mapped region. Field order is drop order: unmap before unlocking.
pub struct MmapMedia {
    mapping: Mapping,
    len: u64,
    kind: MediaKind,
    mode: OpenMode,
    flush: FlushMethod,
    flush_forced: bool,
    page_size_bytes: usize,
    /// devdax alignment of the mapping, else the page size.
    map_align_bytes: u64,
    path: PathBuf,
    /// Page ranges persisted since the last fence, in persist order.
    pending_sync: Mutex<Vec<SyncRange>>,
    /// Held for the whole of a sync pass, so that a `fence` that finds the
    /// list empty because a concurrent pass took it still returns only after
    /// that pass has synced. Lock order: `sync_order`, then `pending_sync`.
    sync_order: Mutex<()>,
    counters: MediaCounters,
    /// The flock (and the in-use mark on the same open, [`claim`]); released
    /// on drop, after the mapping is gone.
    lock: Flock<File>,
}

/// Where `path` is mounted, as this process or the holder of its lock
/// (another mount namespace, perhaps) sees the mounts.
fn visible_mount(path: &Path, holder_pid: Option<u32>) -> Option<PathBuf> {
    if let Ok(Some(entry)) = detect::find_mount(path) {
        return Some(entry.mount_point);
    }
    let pid = holder_pid.filter(|&pid| pid != 0)?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let entries = detect::parse_mountinfo(&text);
    detect::find_mount_in(path, &entries, Path::new(detect::SYSFS_ROOT))
        .ok()
        .flatten()
        .map(|entry| entry.mount_point)
}

fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected data (a list of ranges) stays valid if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MmapMedia {
    /// Open and map `path`, detecting its kind (devdax, DAX file, block
    /// device, regular file) and logging it. The flush method is chosen
    /// automatically unless `COWDAX_FORCE_FLUSH` forces one.
    pub fn open(path: &Path, mode: OpenMode) -> Result<MmapMedia> {
        MmapMedia::open_with(path, mode, FlushMethod::forced_by_env()?)
    }

    /// [`MmapMedia::open`] with an explicit flush method (`None`: automatic;
    /// the environment is not consulted).
    pub fn open_with(
        path: &Path,
        mode: OpenMode,
        force_flush: Option<FlushMethod>,
    ) -> Result<MmapMedia> {
        let metadata = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
        let mut options = OpenOptions::new();
        options.read(true).write(mode == OpenMode::ReadWrite);
        if metadata.file_type().is_block_device() && mode == OpenMode::ReadWrite {
            // O_EXCL on a block device claims it: the kernel refuses (EBUSY)
            // while it is mounted or claimed by another exclusive opener.
            options.custom_flags(libc::O_EXCL);
        }
        let file = options.open(path).map_err(|source| {
            if source.raw_os_error() == Some(libc::EBUSY) {
                MediaError::InUse {
                    path: path.display().to_string(),
                    msg: "the block device is busy: mounted, or opened exclusively by another \
                          program (another cowdax?)"
                        .into(),
                }
            } else {
                io_error(path, source)
            }
        })?;
        MmapMedia::from_file(file, path, mode, force_flush)
    }

    /// [`MmapMedia::open`], but when the image is held by a cowdax process
    /// that has stopped serving it, wait up to `grace` for it to let go: a
    /// daemon whose mount has just been unmounted ends its FUSE session and
    /// writes its final checkpoint after `umount` has returned. `notice`
    /// gets one line for the user if the wait lasts past
    /// [`WAIT_NOTICE_AFTER`]. A holder that is still in use is refused: at
    /// once when the image is mounted (as the caller or the holder sees the
    /// mounts) or held by a running fsck or mkfs; after
    /// [`DETACHED_GRACE`] when its mount cannot be seen (the moment between
    /// the kernel detaching a mount and its daemon noticing, or a mount
    /// lazily unmounted with files still open). See [`claim`] and
    /// docs/FUSE.md "Unmounting".
    pub fn open_waiting(
        path: &Path,
        mode: OpenMode,
        grace: Duration,
        notice: &mut dyn FnMut(&str),
    ) -> Result<MmapMedia> {
        let start = Instant::now();
        let mut noticed = false;
        let mut nobody_seen = 0;
        loop {
            let err = match MmapMedia::open(path, mode) {
                Err(err @ MediaError::InUse { .. }) => err,
                other => return other,
            };
            let in_use = |msg: String| MediaError::InUse {
                path: path.display().to_string(),
                msg,
            };
            let holder_pid = claim::flock_holder_pid(path);
            let who = holder_pid
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            let waited = start.elapsed();
            match claim::holder(path) {
                Ok(Holder::InUse) => {
                    return Err(in_use(format!(
                        "in use by another cowdax process{who} (a running fsck or mkfs, or a mount starting)"
                    )));
                }
                Ok(Holder::Serving) => {
                    if let Some(mount_point) = visible_mount(path, holder_pid) {
                        return Err(in_use(format!(
                            "in use by another cowdax process{who}: mounted on {}",
                            mount_point.display()
                        )));
                    }
                    if waited >= DETACHED_GRACE.min(grace) {
                        return Err(in_use(format!(
                            "in use by another cowdax process{who} that still serves a mount \
                             of it no longer attached anywhere visible (unmounted with \
                             `umount -l` while files are open? it ends when they are closed)"
                        )));
                    }
                    nobody_seen = 0;
                }
                Ok(Holder::Finishing) if waited < grace => nobody_seen = 0,
                Ok(Holder::Finishing) => {
                    return Err(in_use(format!(
                        "still held after {} s by a cowdax process{who} that no longer \
                         serves it (its final checkpoint is taking long, or it hangs)",
                        grace.as_secs()
                    )))
                }
                // The holder let go between our open and our look; open again.
                // Twice in a row means something else refuses the open.
                Ok(Holder::Nobody) if nobody_seen < 2 => nobody_seen += 1,
                Ok(Holder::Nobody) | Err(_) => return Err(err),
            }
            if !noticed && waited >= WAIT_NOTICE_AFTER {
                notice(&format!(
                    "waiting for the previous cowdax daemon{who} to finish writing {} \
                     (up to {} s)",
                    path.display(),
                    grace.as_secs()
                ));
                noticed = true;
            }
            std::thread::sleep(WAIT_RETRY_INTERVAL);
        }
    }

    /// Tells openers waiting in [`MmapMedia::open_waiting`] that this
    /// process is a mount daemon (its in-use mark says so from now on):
    /// while the mark is held and its mount cannot be seen, they wait a
    /// little for the session end instead of refusing at once.
    pub fn serving_mount(&self) {
        let file: &File = &self.lock;
        if let Err(err) = claim::mark_serving(file) {
            log::warn!(
                "{}: cannot mark the image as served ({err}); a mount or fsck started \
                 right after the unmount may be refused",
                self.path.display()
            );
        }
    }

    /// Tells openers waiting in [`MmapMedia::open_waiting`] that this
    /// process no longer serves the image and only finishes (final
    /// checkpoint, then exit): drops the in-use mark, keeps the lock.
    pub fn finishing(&self) {
        let file: &File = &self.lock;
        if let Err(err) = claim::drop_in_use_mark(file) {
            log::warn!(
                "{}: cannot drop the in-use mark ({err}); a mount or fsck started now \
                 is refused until this process exits",
                self.path.display()
            );
        }
    }

    /// Create a new image file of `size_bytes` (refusing an existing path:
    /// the caller decides about overwriting) and open it read-write. The
    /// space is reserved with `posix_fallocate` where the filesystem supports
    /// it, so a store can never hit a full filesystem (SIGBUS on a mapping).
    pub fn create(path: &Path, size_bytes: u64) -> Result<MmapMedia> {
        MmapMedia::create_with(path, size_bytes, FlushMethod::forced_by_env()?)
    }

    /// [`MmapMedia::create`] with an explicit flush method (`None`: automatic).
    pub fn create_with(
        path: &Path,
        size_bytes: u64,
        force_flush: Option<FlushMethod>,
    ) -> Result<MmapMedia> {
        let size_off = libc::off_t::try_from(size_bytes)
            .ok()
            .filter(|&size| size > 0)
            .ok_or_else(|| MediaError::Open {
                path: path.display().to_string(),
                msg: format!("cannot create an image of {size_bytes} bytes"),
            })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    MediaError::Open {
                        path: path.display().to_string(),
                        msg: "already exists; refusing to create an image over it".into(),
                    }
                } else {
                    io_error(path, source)
                }
            })?;
        let result = MmapMedia::size_new_file(&file, path, size_bytes, size_off)
            .and_then(|()| MmapMedia::from_file(file, path, OpenMode::ReadWrite, force_flush));
        if result.is_err() {
            // We created it, so a half-made image is ours to remove.
            if let Err(err) = std::fs::remove_file(path) {
                log::warn!(
                    "{}: could not remove the failed image: {err}",
                    path.display()
                );
            }
        }
        result
    }

    fn size_new_file(
        file: &File,
        path: &Path,
        size_bytes: u64,
        size_off: libc::off_t,
    ) -> Result<()> {
        file.set_len(size_bytes)
            .map_err(|source| io_error(path, source))?;
        match nix::fcntl::posix_fallocate(file, 0, size_off) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EOPNOTSUPP) | Err(nix::errno::Errno::EINVAL) => {
                log::warn!(
                    "{}: the filesystem cannot preallocate; the image is sparse and a full \
                     filesystem would make the daemon crash with SIGBUS",
                    path.display()
                );
                Ok(())
            }
            Err(errno) => Err(MediaError::Io {
                path: path.display().to_string(),
                error: std::io::Error::from(errno),
            }),
        }
    }

    fn from_file(
        file: File,
        path: &Path,
        mode: OpenMode,
        force_flush: Option<FlushMethod>,
    ) -> Result<MmapMedia> {
        let open_err = |msg: String| MediaError::Open {
            path: path.display().to_string(),
            msg,
        };
        if let Some(method) = force_flush {
            if !method.is_supported() {
                return Err(MediaError::Config(format!(
                    "flush method {method} is not supported by this CPU"
                )));
            }
        }
        let lock_kind = match mode {
            OpenMode::ReadOnly => FlockArg::LockSharedNonblock,
            OpenMode::ReadWrite => FlockArg::LockExclusiveNonblock,
        };
        let lock = Flock::lock(file, lock_kind).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                MediaError::InUse {
                    path: path.display().to_string(),
                    msg: "in use by another cowdax process".into(),
                }
            } else {
                io_error(path, std::io::Error::from(errno))
            }
        })?;
        let file: &File = &lock;
        if let Err(err) = claim::take_in_use_mark(file) {
            // Only the waiting of other openers depends on it (they then
            // take this holder for one finishing and wait, bounded).
            log::warn!("{}: cannot take the in-use mark: {err}", path.display());
        }
        let metadata = file.metadata().map_err(|source| io_error(path, source))?;
        let file_type = metadata.file_type();
        let page_size_bytes = page_size_bytes();

        let (len, kind, mapping, map_align_bytes) = if file_type.is_file() {
            let len = metadata.len();
            let len_usize = usable_len(len).map_err(open_err)?;
            if mode == OpenMode::ReadWrite && metadata.blocks().saturating_mul(512) < len {
                log::warn!(
                    "{}: the image is sparse; a store into a hole on a full filesystem \
                     makes the daemon crash with SIGBUS (create images with mkfs --size)",
                    path.display()
                );
            }
            match SyncMapping::try_map(file, len_usize, mode)
                .map_err(|source| io_error(path, source))?
            {
                Some(sync) => (
                    len,
                    MediaKind::DaxFile,
                    Mapping::Sync(sync),
                    page_size_bytes as u64,
                ),
                None => {
                    let on_dax_mount = detect::mount_of_file(&metadata)
                        .filter(detect::MountEntry::has_dax_option)
                        .map(|entry| entry.mount_point);
                    match on_dax_mount {
                        Some(mount_point) => log::warn!(
                            "{}: MAP_SYNC refused although {} is mounted with dax; mapping \
                             through the page cache and persisting with msync",
                            path.display(),
                            mount_point.display()
                        ),
                        None => log::info!(
                            "{}: MAP_SYNC refused (not a DAX filesystem); mapping through the \
                             page cache and persisting with msync",
                            path.display()
                        ),
                    }
                    let raw = map_with_memmap2(file, len_usize, mode)
                        .map_err(|source| io_error(path, source))?;
                    (
                        len,
                        MediaKind::File,
                        Mapping::Memmap(raw),
                        page_size_bytes as u64,
                    )
                }
            }
        } else if file_type.is_block_device() {
            let len =
                detect::block_device_size_bytes(file).map_err(|source| io_error(path, source))?;
            let len_usize = usable_len(len).map_err(open_err)?;
            let raw =
                map_with_memmap2(file, len_usize, mode).map_err(|source| io_error(path, source))?;
            (
                len,
                MediaKind::BlockDevice,
                Mapping::Memmap(raw),
                page_size_bytes as u64,
            )
        } else if file_type.is_char_device() {
            let rdev = metadata.rdev();
            let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
            let sysfs = Path::new(detect::SYSFS_ROOT);
            if !detect::is_devdax(sysfs, major, minor) {
                return Err(open_err(format!(
                    "character device {major}:{minor} is not a devdax device (sysfs {} has no dax \
                     subsystem link for it)",
                    sysfs.display()
                )));
            }
            let name = std::fs::canonicalize(path)
                .ok()
                .and_then(|canonical| {
                    canonical
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            let geometry = detect::devdax_geometry(sysfs, major, minor, &name)?;
            if !geometry.align_from_sysfs {
                log::warn!(
                    "{}: sysfs has no devdax alignment; assuming {} bytes",
                    path.display(),
                    geometry.align_bytes
                );
            }
            let len_usize = usable_len(geometry.size_bytes).map_err(open_err)?;
            // Offset 0 and a length that is a multiple of the alignment: the
            // kernel then picks an aligned address (devdax refuses others).
            let raw =
                map_with_memmap2(file, len_usize, mode).map_err(|source| io_error(path, source))?;
            (
                geometry.size_bytes,
                MediaKind::DevDax,
                Mapping::Memmap(raw),
                geometry.align_bytes,
            )
        } else {
            return Err(open_err(
                "not a regular file, block device or devdax character device".into(),
            ));
        };

        let flush = match force_flush {
            Some(FlushMethod::Msync) if kind == MediaKind::DevDax => {
                // msync on devdax reaches vfs_fsync_range, which fails with
                // EINVAL for a character device.
                return Err(MediaError::Config(
                    "msync cannot persist a devdax device; force a CPU flush instead".into(),
                ));
            }
            Some(method) => method,
            None => default_flush(kind).ok_or_else(|| {
                open_err("devdax needs CPU cache flushes, which this architecture lacks".into())
            })?,
        };
        if force_flush.is_some() && flush.is_cpu_flush() && !kind.is_byte_persistent() {
            log::warn!(
                "{}: {} forced on a page-cache mapping: stores are NOT made durable \
                 (testing and benchmarking only)",
                path.display(),
                flush
            );
        }

        let media = MmapMedia {
            mapping,
            len,
            kind,
            mode,
            flush,
            flush_forced: force_flush.is_some(),
            page_size_bytes,
            map_align_bytes,
            path: path.to_path_buf(),
            pending_sync: Mutex::new(Vec::new()),
            sync_order: Mutex::new(()),
            counters: MediaCounters::default(),
            lock,
        };
        log::info!("opened {}", media.describe());
        Ok(media)
    }

    /// The path this media was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether mutating calls are allowed.
    pub fn mode(&self) -> OpenMode {
        self.mode
    }

    /// How `persist` and `fence` work on this mapping.
    pub fn flush_method(&self) -> FlushMethod {
        self.flush
    }

    /// Alignment of the mapping: the devdax alignment, else the page size.
    pub fn map_align_bytes(&self) -> u64 {
        self.map_align_bytes
    }

    /// The page ranges `persist` has recorded for the next `fence`, in the
    /// order they will be synced, as `(offset, length)` (msync method only;
    /// empty otherwise). For tests and diagnostics.
    pub fn pending_sync_ranges(&self) -> Vec<(u64, u64)> {
        lock_ignoring_poison(&self.pending_sync)
            .iter()
            .map(|range| (range.start as u64, (range.end - range.start) as u64))
            .collect()
    }

    fn check_writable(&self, operation: &'static str) -> Result<()> {
        match self.mode {
            OpenMode::ReadWrite => Ok(()),
            OpenMode::ReadOnly => Err(MediaError::ReadOnly { operation }),
        }
    }

    /// Pointer to byte `off` of the mapping. Callers have bounds-checked
    /// `off` (and their length) against `self.len`.
    fn ptr_at(&self, off: u64) -> *mut u8 {
        // `off <= len`, and `len` fits in usize (checked at open), so this
        // stays inside the mapping or one past its end.
        self.mapping.base().wrapping_add(off as usize)
    }

    /// Non-temporal stores pay off only where lines are flushed by the CPU.
    #[cfg(target_arch = "x86_64")]
    fn use_non_temporal(&self, len: usize) -> bool {
        self.flush.is_cpu_flush() && len >= flush::NON_TEMPORAL_THRESHOLD_BYTES
    }

    fn record_stored(&self, len: u64) {
        MediaCounters::add(&self.counters.bytes_stored, len);
    }

    /// Remember `off..off+len` (bounds-checked) for the next fence, rounded
    /// out to pages, merging with the newest entry when they touch. Merging
    /// with an older entry would sync these bytes before ranges persisted
    /// earlier, breaking the persist order, so it is never done.
    fn record_pending_sync(&self, off: u64, len: u64) -> Result<()> {
        let page = self.page_size_bytes;
        let start = off as usize / page * page;
        let end = ((off + len) as usize)
            .next_multiple_of(page)
            .min(self.len as usize);
        let range = SyncRange { start, end };
        let full = {
            let mut pending = lock_ignoring_poison(&self.pending_sync);
            match pending.last_mut() {
                Some(last) if range.start <= last.end && range.end >= last.start => {
                    last.start = last.start.min(range.start);
                    last.end = last.end.max(range.end);
                }
                _ => pending.push(range),
            }
            pending.len() >= MAX_PENDING_SYNC_RANGES
        };
        if full {
            self.sync_pending()?;
        }
        Ok(())
    }

    /// Sync every pending range, oldest first. On failure the ranges not yet
    /// synced go back to the front of the list so a later fence retries them.
    fn sync_pending(&self) -> Result<()> {
        let _order = lock_ignoring_poison(&self.sync_order);
        let ranges = std::mem::take(&mut *lock_ignoring_poison(&self.pending_sync));
        for (index, range) in ranges.iter().enumerate() {
            if let Err(err) = self.msync(*range) {
                let mut pending = lock_ignoring_poison(&self.pending_sync);
                let newer = std::mem::take(&mut *pending);
                pending.extend_from_slice(&ranges[index..]);
                pending.extend(newer);
                return Err(MediaError::Sync(err));
            }
        }
        Ok(())
    }

    fn msync(&self, range: SyncRange) -> std::io::Result<()> {
        if range.end <= range.start {
            return Ok(());
        }
        // SAFETY: start is page-aligned and start..end lies inside the
        // mapping (both derived from a bounds-checked range and clamped to
        // its length); msync only writes back pages, it changes no memory.
        let result = unsafe {
            libc::msync(
                self.mapping.base().add(range.start).cast(),
                range.end - range.start,
                libc::MS_SYNC,
            )
        };
        MediaCounters::add(&self.counters.msyncs, 1);
        if result == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> MediaError {
    MediaError::Io {
        path: path.display().to_string(),
        error: source,
    }
}

/// The mapping length as usize, refusing empty regions and sizes this
/// address space cannot map.
fn usable_len(len: u64) -> std::result::Result<usize, String> {
    if len == 0 {
        return Err("is empty (size 0)".into());
    }
    usize::try_from(len)
        .ok()
        .filter(|&len| len <= isize::MAX as usize)
        .ok_or_else(|| format!("size {len} does not fit in the address space"))
}

fn page_size_bytes() -> usize {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(size)) if size > 0 => size as usize,
        // POSIX requires PAGE_SIZE; 4 KiB is the smallest page on Linux.
        _ => 4096,
    }
}

fn map_with_memmap2(file: &File, len: usize, mode: OpenMode) -> std::io::Result<memmap2::MmapRaw> {
    let mut options = memmap2::MmapOptions::new();
    options.len(len);
    match mode {
        OpenMode::ReadOnly => options.map_raw_read_only(file),
        OpenMode::ReadWrite => options.map_raw(file),
    }
}

/// CPU flushes where the mapping is the media, msync where it is page cache.
fn default_flush(kind: MediaKind) -> Option<FlushMethod> {
    match kind {
        MediaKind::DevDax => FlushMethod::best_cpu_flush(),
        MediaKind::DaxFile => FlushMethod::best_cpu_flush().or(Some(FlushMethod::Msync)),
        MediaKind::BlockDevice | MediaKind::File | MediaKind::Simulated => Some(FlushMethod::Msync),
    }
}

impl Media for MmapMedia {
    fn len(&self) -> u64 {
        self.len
    }

    fn kind(&self) -> MediaKind {
        self.kind
    }

    fn describe(&self) -> String {
        let mode = match self.mode {
            OpenMode::ReadOnly => "read-only",
            OpenMode::ReadWrite => "read-write",
        };
        let forced = if self.flush_forced {
            format!(" (forced by {})", flush::FORCE_FLUSH_ENV)
        } else {
            String::new()
        };
        let align = if self.kind == MediaKind::DevDax {
            format!(", aligned to {} bytes", self.map_align_bytes)
        } else {
            String::new()
        };
        format!(
            "{}: {}, {} bytes{align}, {mode}, persist with {}{forced}",
            self.path.display(),
            self.kind,
            self.len,
            self.flush
        )
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        check_range(off, buf.len() as u64, self.len)?;
        // SAFETY: the source range is inside the mapping (checked above) and
        // cannot overlap `buf`, which is ordinary memory borrowed mutably.
        // See the module docs for why nothing else writes the range.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr_at(off), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&self, off: u64, data: &[u8]) -> Result<()> {
        self.check_writable("write")?;
        check_range(off, data.len() as u64, self.len)?;
        let dst = self.ptr_at(off);
        #[cfg(target_arch = "x86_64")]
        if self.use_non_temporal(data.len()) {
            // SAFETY: dst..dst+len is inside the writable mapping; `data` is
            // ordinary memory, so the ranges are disjoint.
            unsafe { flush::copy_nontemporal(dst, data.as_ptr(), data.len()) };
            self.record_stored(data.len() as u64);
            return Ok(());
        }
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        self.record_stored(data.len() as u64);
        Ok(())
    }

    fn write_zeroes(&self, off: u64, len: u64) -> Result<()> {
        self.check_writable("write_zeroes")?;
        check_range(off, len, self.len)?;
        let dst = self.ptr_at(off);
        #[cfg(target_arch = "x86_64")]
        if self.use_non_temporal(len as usize) {
            // SAFETY: dst..dst+len is inside the writable mapping.
            unsafe { flush::zero_nontemporal(dst, len as usize) };
            self.record_stored(len);
            return Ok(());
        }
        // SAFETY: as above.
        unsafe { std::ptr::write_bytes(dst, 0, len as usize) };
        self.record_stored(len);
        Ok(())
    }

    fn copy_within(&self, src: u64, dst: u64, len: u64) -> Result<()> {
        self.check_writable("copy_within")?;
        check_range(src, len, self.len)?;
        check_range(dst, len, self.len)?;
        let (src_ptr, dst_ptr) = (self.ptr_at(src), self.ptr_at(dst));
        #[cfg(target_arch = "x86_64")]
        if self.use_non_temporal(len as usize) && (src + len <= dst || dst + len <= src) {
            // SAFETY: both ranges are inside the writable mapping and disjoint
            // (checked just above); overlapping moves take the memmove path.
            unsafe { flush::copy_nontemporal(dst_ptr, src_ptr, len as usize) };
            self.record_stored(len);
            return Ok(());
        }
        // SAFETY: both ranges are inside the writable mapping; `copy` is
        // memmove, correct for overlapping ranges.
        unsafe { std::ptr::copy(src_ptr, dst_ptr, len as usize) };
        self.record_stored(len);
        Ok(())
    }

    fn store_u64(&self, off: u64, value: u64) -> Result<()> {
        self.check_writable("store_u64")?;
        if off % 8 != 0 {
            return Err(MediaError::Misaligned(off));
        }
        check_range(off, 8, self.len)?;
        // SAFETY: off is 8-byte aligned and the mapping base is page-aligned,
        // so the pointer is aligned for AtomicU64; the 8 bytes are inside the
        // mapping, which outlives this call; callers do not mix non-atomic
        // access to these bytes with concurrent atomic ones (module docs).
        let atomic = unsafe { AtomicU64::from_ptr(self.ptr_at(off).cast::<u64>()) };
        atomic.store(value.to_le(), Ordering::Release);
        self.record_stored(8);
        Ok(())
    }

    fn load_u64(&self, off: u64) -> Result<u64> {
        if off % 8 != 0 {
            return Err(MediaError::Misaligned(off));
        }
        check_range(off, 8, self.len)?;
        // SAFETY: as in `store_u64`; a load through a read-only mapping is
        // fine (AtomicU64::load does not write).
        let atomic = unsafe { AtomicU64::from_ptr(self.ptr_at(off).cast::<u64>()) };
        Ok(u64::from_le(atomic.load(Ordering::Acquire)))
    }

    fn persist(&self, off: u64, len: u64) -> Result<()> {
        self.check_writable("persist")?;
        check_range(off, len, self.len)?;
        if len == 0 {
            return Ok(());
        }
        MediaCounters::add(&self.counters.bytes_persisted, len);
        #[cfg(target_arch = "x86_64")]
        if self.flush.is_cpu_flush() {
            // SAFETY: the flush method was checked to be supported at open;
            // the mapping base is page-aligned, so every line overlapping the
            // bounds-checked range lies inside the mapping.
            let lines = unsafe { flush::flush_lines(self.flush, self.ptr_at(off), len as usize) };
            MediaCounters::add(&self.counters.lines_flushed, lines);
            // SFENCE orders only the flushes of the thread that issues it. A
            // range persisted here may be made durable by a `fence()` on
            // another thread (an fsync of data written by another request),
            // so complete our own flushes now: after this, any later fence
            // on any thread finds them done. Costs one SFENCE per persist.
            flush::store_fence();
            return Ok(());
        }
        // Count the lines a CPU flush would have written back, so counters
        // from page-cache images say what the same work costs on pmem.
        let first_line = off / CACHE_LINE_BYTES;
        let end_line = (off + len).div_ceil(CACHE_LINE_BYTES);
        MediaCounters::add(&self.counters.lines_flushed, end_line - first_line);
        self.record_pending_sync(off, len)
    }

    fn fence(&self) -> Result<()> {
        MediaCounters::add(&self.counters.fences, 1);
        #[cfg(target_arch = "x86_64")]
        if self.flush.is_cpu_flush() {
            flush::store_fence();
            return Ok(());
        }
        self.sync_pending()
    }

    fn with_slice(&self, off: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        check_range(off, len, self.len)?;
        // SAFETY: the range is inside the mapping, which outlives the call;
        // the slice does not escape `f` (its lifetime ends with the call); the
        // read protocol (module docs of `media`) guarantees no store to the
        // range happens while `f` runs, so the shared borrow is not aliased
        // by a write.
        let slice =
            unsafe { std::slice::from_raw_parts(self.ptr_at(off).cast_const(), len as usize) };
        f(slice);
        Ok(())
    }

    fn counters(&self) -> Counters {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counters {
            bytes_stored: load(&self.counters.bytes_stored),
            bytes_persisted: load(&self.counters.bytes_persisted),
            lines_flushed: load(&self.counters.lines_flushed),
            fences: load(&self.counters.fences),
            msyncs: load(&self.counters.msyncs),
        }
    }
}

impl std::fmt::Debug for MmapMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}
