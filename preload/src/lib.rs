//! `libcowdax_preload.so`: an LD_PRELOAD shim that makes the standard
//! reflink ioctls work on cowdax mounts.
//!
//! **This crate is unsafe FFI by nature**: it defines C symbols that
//! interpose on glibc (`ioctl`, `statfs`, `fstatfs` and their `64`
//! aliases), makes raw system calls and reads and writes the caller's
//! ioctl argument structures through raw pointers. Every unsafe block is
//! small and carries a `// SAFETY:` comment. It is a crate of its own so
//! that the main `cowdax` crate keeps `unsafe` confined to its media layer;
//! it does not depend on the main crate and shares only the private ioctl
//! ABI, the workspace crate `cowdax-ioctl-abi` (`ioctl-abi/`).
//!
//! The Linux kernel never forwards FICLONE, FICLONERANGE, FIDEDUPERANGE or
//! FS_IOC_FIEMAP to a FUSE server (they end in the VFS with EOPNOTSUPP).
//! For a file descriptor on a cowdax mount, this shim translates them into
//! cowdax's private, restricted ioctls (docs/REFLINK.md):
//! * FICLONE / FICLONERANGE → `GET_TOKEN` on the source, `CLONE_RANGE` on
//!   the destination;
//! * FIDEDUPERANGE → per destination: `GET_TOKEN` on it, `DEDUPE_RANGE` on
//!   the source; per-destination status and byte count filled in as the
//!   kernel would;
//! * FS_IOC_FIEMAP → pages of `GET_EXTENTS`, reported as `fiemap_extent`s
//!   with FIEMAP_EXTENT_SHARED / UNWRITTEN / LAST.
//!
//! Before a clone or dedupe, both files are `fdatasync`ed: the kernel does
//! not write back dirty pages before an ioctl, and the daemon remaps what
//! it has.
//!
//! Every other ioctl, and these four on anything that is not a cowdax
//! mount, go to the real `ioctl` (`dlsym(RTLD_NEXT)`) untouched.
//!
//! A descriptor is on a cowdax mount when `fstatfs` says FUSE and the
//! private `USAGE` ioctl answers; the answer is cached per `st_dev`. A
//! clone source and every dedupe destination must be on the same mount
//! (`EXDEV` otherwise, as the kernel), so a token goes back only to the
//! daemon that issued it.
//!
//! The library may be in `/etc/ld.so.preload` (`cowdax shim enable`), i.e.
//! in every process, setuid ones included; so it never aborts its host (a
//! panic is caught and becomes EIO; `panic = "abort"` builds are refused),
//! reads and writes the caller's argument structures with
//! `process_vm_readv/writev` (a bad pointer is EFAULT, not SIGSEGV),
//! resolves the real `ioctl` at load time (the untranslated path takes no
//! lock and allocates nothing), and ignores `COWDAX_PRELOAD_FSTYPE` in
//! secure-execution mode (docs/REFLINK.md, "The system-wide shim").
//!
//! statfs: Debian's duperemove 0.11 refuses to dedupe (`-d`) unless statfs
//! reports btrfs or XFS. Only when the program is `duperemove` or
//! `COWDAX_PRELOAD_FSTYPE=xfs` is set, and only for paths and descriptors
//! on cowdax mounts, `statfs`/`fstatfs` report `f_type` = XFS_SUPER_MAGIC;
//! every other field, program and filesystem is left alone.
//!
//! ABI note: glibc declares `int ioctl(int, unsigned long, ...)`. The
//! interposer is defined with one fixed pointer-sized third argument; on
//! the System V x86-64 and AArch64 Linux calling conventions a variadic
//! argument is passed exactly like a fixed one, so this is what every
//! caller passes.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use libc::{c_char, c_int, c_ulong, c_void};

use cowdax_ioctl_abi as abi;

// The shim can be loaded into every process (/etc/ld.so.preload), setuid
// ones included: a panic must never abort its host. Every entry point
// catches unwinding panics, which needs the unwind strategy.
#[cfg(panic = "abort")]
compile_error!("libcowdax_preload.so must be built with panic = \"unwind\": a panic would abort the host process");

// statfs64 is interposed with `struct statfs`, and FICLONE's fd travels in
// a pointer-sized register: both hold on 64-bit Linux only.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("libcowdax_preload.so supports 64-bit Linux only");

/// `_IOW(0x94, 9, int)`.
const FICLONE: c_ulong = abi::iow(0x94, 9, 4) as c_ulong;
/// `_IOW(0x94, 13, struct file_clone_range)` (32 bytes).
const FICLONERANGE: c_ulong = abi::iow(0x94, 13, FILE_CLONE_RANGE_BYTES) as c_ulong;
/// `_IOWR(0x94, 54, struct file_dedupe_range)` (24 bytes + info array).
const FIDEDUPERANGE: c_ulong = abi::iowr(0x94, 54, DEDUPE_HEADER_BYTES) as c_ulong;
/// `_IOWR('f', 11, struct fiemap)` (32 bytes + extent array).
const FS_IOC_FIEMAP: c_ulong = abi::iowr(b'f', 11, FIEMAP_HEADER_BYTES) as c_ulong;

const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;

const FILE_CLONE_RANGE_BYTES: usize = 32;
const DEDUPE_HEADER_BYTES: usize = 24;
const DEDUPE_INFO_BYTES: usize = 32;
/// The kernel refuses FIDEDUPERANGE arguments larger than a page (ENOMEM).
const DEDUPE_ARG_MAX_BYTES: usize = 4096;
const FILE_DEDUPE_RANGE_SAME: i32 = 0;
const FILE_DEDUPE_RANGE_DIFFERS: i32 = 1;

const FIEMAP_HEADER_BYTES: usize = 32;
const FIEMAP_EXTENT_BYTES: usize = 56;
const FIEMAP_FLAG_SYNC: u32 = 0x1;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
const FIEMAP_EXTENT_SHARED: u32 = 0x2000;

type Errno = i32;

/// `f_type` as i64 (its C type, `__fsword_t`, differs between targets).
#[allow(clippy::unnecessary_cast)]
fn fs_magic(f_type: libc::__fsword_t) -> i64 {
    f_type as i64
}

fn last_errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn set_errno(errno: Errno) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for
    // the thread's lifetime.
    unsafe { *libc::__errno_location() = errno };
}

// ------------------------------------------------------------ raw syscalls
// The shim's own calls use raw system calls, never the (interposed) libc
// symbols, so they cannot recurse into this library.

/// `ioctl(fd, cmd, block)` for a private command: the block must be exactly
/// `_IOC_SIZE(cmd)` bytes.
fn private_ioctl(fd: c_int, cmd: u32, block: &mut [u8]) -> Result<(), Errno> {
    if block.len() != abi::ioc_size(cmd) {
        return Err(libc::EINVAL);
    }
    // SAFETY: `block` is an exclusively borrowed buffer of exactly
    // `_IOC_SIZE(cmd)` bytes, and the kernel copies at most that many bytes
    // from and to it for a restricted FUSE ioctl.
    let ret = unsafe { libc::syscall(libc::SYS_ioctl, fd, cmd as c_ulong, block.as_mut_ptr()) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

fn raw_fstatfs(fd: c_int) -> Result<libc::statfs, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the kernel writes one `struct statfs` to the pointer, which
    // points to a buffer of that size.
    let ret = unsafe { libc::syscall(libc::SYS_fstatfs, fd, st.as_mut_ptr()) };
    if ret < 0 {
        return Err(last_errno());
    }
    // SAFETY: zero-initialised plain C struct, filled in by the kernel.
    Ok(unsafe { st.assume_init() })
}

fn raw_fstat_dev(fd: c_int) -> Result<u64, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: the kernel writes one `struct stat` to a buffer of that size.
    let ret = unsafe { libc::syscall(libc::SYS_fstat, fd, st.as_mut_ptr()) };
    if ret < 0 {
        return Err(last_errno());
    }
    // SAFETY: zero-initialised plain C struct, filled in by the kernel.
    Ok(unsafe { st.assume_init() }.st_dev)
}

fn raw_fdatasync(fd: c_int) -> Result<(), Errno> {
    // SAFETY: fdatasync takes an integer only.
    let ret = unsafe { libc::syscall(libc::SYS_fdatasync, fd) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// Opens `path` for a probe (`O_RDONLY`, works for directories too).
fn raw_open_for_probe(path: *const c_char) -> Option<c_int> {
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    // SAFETY: `path` is the NUL-terminated path the caller passed to
    // statfs, which the kernel has just accepted.
    let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, 0) };
    c_int::try_from(fd).ok().filter(|&fd| fd >= 0)
}

fn raw_close(fd: c_int) {
    // SAFETY: closes a descriptor this library opened.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

// ------------------------------------------------------- cowdax detection

/// Per `st_dev`: is it a cowdax mount? Only definitive answers are cached.
fn mount_cache() -> &'static Mutex<HashMap<u64, bool>> {
    static CACHE: OnceLock<Mutex<HashMap<u64, bool>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// True when `fd` is on a cowdax mount.
fn is_cowdax(fd: c_int) -> bool {
    cowdax_dev(fd).is_some()
}

/// The device number of `fd`'s filesystem when it is a cowdax mount: FUSE
/// by statfs, and the private USAGE ioctl answers with a valid block.
fn cowdax_dev(fd: c_int) -> Option<u64> {
    let st = raw_fstatfs(fd).ok()?;
    if fs_magic(st.f_type) != FUSE_SUPER_MAGIC {
        return None;
    }
    let dev = raw_fstat_dev(fd).ok()?;
    if let Some(&known) = mount_cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&dev)
    {
        return known.then_some(dev);
    }
    let mut block = abi::request_header(abi::UsageArgs::SIZE);
    let answer = match private_ioctl(fd, abi::USAGE, &mut block) {
        Ok(()) => Some(abi::UsageArgs::decode(&block).is_ok()),
        Err(libc::ENOTTY | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Some(false),
        Err(_) => None,
    };
    if let Some(answer) = answer {
        mount_cache()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dev, answer);
    }
    answer.unwrap_or(false).then_some(dev)
}

/// The kernel takes a descriptor from an ioctl argument as an `unsigned
/// int` (fdget): the low 32 bits count, whatever the upper ones hold.
fn fd_from_arg(value: u64) -> c_int {
    value as u32 as c_int
}

/// A second descriptor of a sharing request (clone source, dedupe
/// destination) must be on the very mount of the first, as the kernel
/// requires (EXDEV otherwise): so a token the shim asks one daemon for is
/// only ever handed back to that daemon, never to another FUSE server.
fn same_mount(dev: u64, other_fd: c_int) -> Result<(), Errno> {
    match cowdax_dev(other_fd) {
        Some(other) if other == dev => Ok(()),
        Some(_) => Err(libc::EXDEV),
        None => {
            // EBADF for a bad descriptor, EXDEV for one on another filesystem.
            raw_fstatfs(other_fd)?;
            Err(libc::EXDEV)
        }
    }
}

// -------------------------------------------------------- private requests

fn token_of(fd: c_int) -> Result<abi::TokenArgs, Errno> {
    let mut block = abi::request_header(abi::TokenArgs::SIZE);
    private_ioctl(fd, abi::GET_TOKEN, &mut block)?;
    abi::TokenArgs::decode(&block).map_err(|e| e.errno())
}

fn clone_range(
    dst_fd: c_int,
    dst_dev: u64,
    src_fd: c_int,
    src_offset: u64,
    length: u64,
    dst_offset: u64,
) -> Result<c_int, Errno> {
    same_mount(dst_dev, src_fd)?;
    raw_fdatasync(src_fd)?;
    raw_fdatasync(dst_fd)?;
    let token = token_of(src_fd)?;
    let mut block = abi::CloneArgs {
        src_mount_id: token.mount_id,
        src_token: token.token,
        src_offset,
        dst_offset,
        length,
        bytes_cloned: 0,
    }
    .encode();
    private_ioctl(dst_fd, abi::CLONE_RANGE, &mut block)?;
    Ok(0)
}

fn ficlone(dst_fd: c_int, dev: u64, arg: *mut c_void) -> Result<c_int, Errno> {
    // FICLONE passes the source descriptor as the integer argument.
    clone_range(dst_fd, dev, fd_from_arg(arg as usize as u64), 0, 0, 0)
}

/// The caller's address `ptr + offset`, or EFAULT (null, or wrapping).
fn user_address(ptr: *const c_void, offset: usize) -> Result<usize, Errno> {
    if ptr.is_null() {
        return Err(libc::EFAULT);
    }
    (ptr as usize).checked_add(offset).ok_or(libc::EFAULT)
}

/// Copies between this process's memory at `remote` (the caller's ioctl
/// argument, not trusted) and `local` with process_vm_readv/writev on the
/// process itself: a bad pointer is EFAULT, as the kernel reports it, never
/// a SIGSEGV in the host. (The kernel allows these calls on one's own
/// process whatever the credentials.) `None` when the calls are not
/// available (ENOSYS, or EPERM under a seccomp filter).
fn vm_copy(write: bool, local: *mut u8, remote: usize, len: usize) -> Option<Result<(), Errno>> {
    let local_iov = libc::iovec {
        iov_base: local.cast(),
        iov_len: len,
    };
    let remote_iov = libc::iovec {
        iov_base: remote as *mut c_void,
        iov_len: len,
    };
    let nr = if write {
        libc::SYS_process_vm_writev
    } else {
        libc::SYS_process_vm_readv
    };
    // SAFETY: both iovecs describe `len` bytes: `local` is a buffer of this
    // library's of that size; the kernel checks `remote` itself and fails
    // with EFAULT for an address the process has not mapped so.
    let ret = unsafe {
        libc::syscall(
            nr,
            libc::getpid(),
            &local_iov as *const libc::iovec,
            1 as c_ulong,
            &remote_iov as *const libc::iovec,
            1 as c_ulong,
            0 as c_ulong,
        )
    };
    if ret < 0 {
        return match last_errno() {
            libc::ENOSYS | libc::EPERM => None,
            _ => Some(Err(libc::EFAULT)),
        };
    }
    Some(if ret as usize == len {
        Ok(())
    } else {
        Err(libc::EFAULT)
    })
}

fn read_bytes<const N: usize>(ptr: *const c_void, offset: usize) -> Result<[u8; N], Errno> {
    let address = user_address(ptr, offset)?;
    let mut out = [0u8; N];
    if let Some(result) = vm_copy(false, out.as_mut_ptr(), address, N) {
        return result.map(|()| out);
    }
    // SAFETY: fallback without process_vm_readv: the caller of ioctl passed
    // `ptr` as the argument of a command whose structure is at least
    // `offset + N` bytes long (checked by the callers against the
    // structure's declared counts), as the contract of ioctl(2) requires;
    // the copy is byte-wise, so alignment does not matter.
    unsafe {
        std::ptr::copy_nonoverlapping(address as *const u8, out.as_mut_ptr(), N);
    }
    Ok(out)
}

fn write_bytes(ptr: *mut c_void, offset: usize, bytes: &[u8]) -> Result<(), Errno> {
    let address = user_address(ptr, offset)?;
    if let Some(result) = vm_copy(true, bytes.as_ptr().cast_mut(), address, bytes.len()) {
        return result;
    }
    // SAFETY: as in `read_bytes`: the caller's structure covers
    // `offset..offset + bytes.len()`; byte-wise copy.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), address as *mut u8, bytes.len());
    }
    Ok(())
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_ne_bytes(b)
}

fn ficlonerange(dst_fd: c_int, dev: u64, arg: *mut c_void) -> Result<c_int, Errno> {
    let fcr: [u8; FILE_CLONE_RANGE_BYTES] = read_bytes(arg, 0)?;
    let src_fd = fd_from_arg(u64_at(&fcr, 0));
    let src_offset = u64_at(&fcr, 8);
    let length = u64_at(&fcr, 16);
    let dst_offset = u64_at(&fcr, 24);
    clone_range(dst_fd, dev, src_fd, src_offset, length, dst_offset)
}

/// One destination of FIDEDUPERANGE: (status, bytes deduped).
fn dedupe_one(
    src_fd: c_int,
    src_dev: u64,
    dst_fd: c_int,
    src_offset: u64,
    dst_offset: u64,
    length: u64,
) -> Result<(i32, u64), Errno> {
    same_mount(src_dev, dst_fd)?;
    raw_fdatasync(dst_fd)?;
    let token = token_of(dst_fd)?;
    let mut block = abi::DedupeArgs {
        dst_mount_id: token.mount_id,
        dst_token: token.token,
        src_offset,
        dst_offset,
        length,
        status: 0,
        bytes_deduped: 0,
    }
    .encode();
    private_ioctl(src_fd, abi::DEDUPE_RANGE, &mut block)?;
    let reply = abi::DedupeArgs::decode(&block).map_err(|e| e.errno())?;
    match reply.status {
        abi::DEDUPE_SAME => Ok((FILE_DEDUPE_RANGE_SAME, reply.bytes_deduped)),
        abi::DEDUPE_DIFFERS => Ok((FILE_DEDUPE_RANGE_DIFFERS, 0)),
        _ => Err(libc::EIO),
    }
}

fn fideduperange(src_fd: c_int, dev: u64, arg: *mut c_void) -> Result<c_int, Errno> {
    let header: [u8; DEDUPE_HEADER_BYTES] = read_bytes(arg, 0)?;
    let src_offset = u64_at(&header, 0);
    let length = u64_at(&header, 8);
    let dest_count = u16::from_ne_bytes([header[16], header[17]]) as usize;
    let reserved1 = u16::from_ne_bytes([header[18], header[19]]);
    let reserved2 = u32::from_ne_bytes([header[20], header[21], header[22], header[23]]);
    if reserved1 != 0 || reserved2 != 0 {
        return Err(libc::EINVAL);
    }
    if DEDUPE_HEADER_BYTES + dest_count * DEDUPE_INFO_BYTES > DEDUPE_ARG_MAX_BYTES {
        return Err(libc::ENOMEM);
    }
    raw_fdatasync(src_fd)?;
    for index in 0..dest_count {
        let at = DEDUPE_HEADER_BYTES + index * DEDUPE_INFO_BYTES;
        let info: [u8; DEDUPE_INFO_BYTES] = read_bytes(arg, at)?;
        let dst_fd = fd_from_arg(u64_at(&info, 0));
        let dst_offset = u64_at(&info, 8);
        let reserved = u32::from_ne_bytes([info[28], info[29], info[30], info[31]]);
        let outcome = if reserved != 0 {
            Err(libc::EINVAL)
        } else {
            dedupe_one(src_fd, dev, dst_fd, src_offset, dst_offset, length)
        };
        let (status, bytes) = match outcome {
            Ok(result) => result,
            Err(errno) => (-errno, 0),
        };
        write_bytes(arg, at + 16, &bytes.to_ne_bytes())?;
        write_bytes(arg, at + 24, &status.to_ne_bytes())?;
    }
    Ok(0)
}

fn fiemap_extent_bytes(extent: &abi::ExtentRecord, last: bool) -> [u8; FIEMAP_EXTENT_BYTES] {
    let mut flags = 0;
    if extent.flags & abi::EXTENT_SHARED != 0 {
        flags |= FIEMAP_EXTENT_SHARED;
    }
    if extent.flags & abi::EXTENT_UNWRITTEN != 0 {
        flags |= FIEMAP_EXTENT_UNWRITTEN;
    }
    if last {
        flags |= FIEMAP_EXTENT_LAST;
    }
    let mut out = [0u8; FIEMAP_EXTENT_BYTES];
    out[0..8].copy_from_slice(&extent.file_offset.to_ne_bytes());
    out[8..16].copy_from_slice(&extent.phys_offset.to_ne_bytes());
    out[16..24].copy_from_slice(&extent.length.to_ne_bytes());
    out[40..44].copy_from_slice(&flags.to_ne_bytes());
    out
}

fn fiemap(fd: c_int, _dev: u64, arg: *mut c_void) -> Result<c_int, Errno> {
    let header: [u8; FIEMAP_HEADER_BYTES] = read_bytes(arg, 0)?;
    let start = u64_at(&header, 0);
    let length = u64_at(&header, 8);
    let flags = u32::from_ne_bytes([header[16], header[17], header[18], header[19]]);
    let capacity = u32::from_ne_bytes([header[24], header[25], header[26], header[27]]) as usize;
    let unsupported = flags & !FIEMAP_FLAG_SYNC;
    if unsupported != 0 {
        // As fiemap_prep(): report the flags we cannot honour.
        write_bytes(arg, 16, &unsupported.to_ne_bytes())?;
        return Err(libc::EBADR);
    }
    if length == 0 {
        return Err(libc::EINVAL);
    }
    if flags & FIEMAP_FLAG_SYNC != 0 {
        raw_fdatasync(fd)?;
    }
    let end = start.saturating_add(length);
    let mut mapped = 0usize;
    // The previous extent is written once the next one is known, so the
    // last extent of the range can carry FIEMAP_EXTENT_LAST.
    let mut pending: Option<abi::ExtentRecord> = None;
    let mut array_full = false;
    let emit =
        |extent: &abi::ExtentRecord, last: bool, mapped: &mut usize| -> Result<bool, Errno> {
            if capacity == 0 {
                *mapped += 1;
                return Ok(true);
            }
            if *mapped >= capacity {
                return Ok(false);
            }
            let at = FIEMAP_HEADER_BYTES + *mapped * FIEMAP_EXTENT_BYTES;
            write_bytes(arg, at, &fiemap_extent_bytes(extent, last))?;
            *mapped += 1;
            Ok(true)
        };
    let mut pos = start;
    'pages: loop {
        let mut block = abi::ExtentsArgs {
            start_offset: pos,
            ..abi::ExtentsArgs::default()
        }
        .encode();
        private_ioctl(fd, abi::GET_EXTENTS, &mut block)?;
        let page = abi::ExtentsArgs::decode(&block).map_err(|e| e.errno())?;
        for extent in &page.extents {
            if extent.flags & abi::EXTENT_HOLE != 0 || extent.length == 0 {
                continue;
            }
            if extent.file_offset >= end {
                break 'pages;
            }
            if let Some(prev) = pending.replace(*extent) {
                if !emit(&prev, false, &mut mapped)? {
                    array_full = true;
                    break 'pages;
                }
            }
        }
        if page.flags & abi::PAGE_LAST != 0 || page.next_offset <= pos || page.next_offset >= end {
            break;
        }
        pos = page.next_offset;
    }
    if !array_full {
        if let Some(prev) = pending {
            if !emit(&prev, true, &mut mapped)? {
                mapped = capacity;
            }
        }
    }
    write_bytes(arg, 20, &(mapped as u32).to_ne_bytes())?;
    Ok(0)
}

// ---------------------------------------------------------------- ioctl

type RealIoctl = unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int;

/// The next `ioctl` in the lookup order: 0 = not looked up yet, 1 = none.
static REAL_IOCTL: AtomicUsize = AtomicUsize::new(0);

/// Looks the real `ioctl` up when the library is loaded (an ELF
/// constructor), so that the hot path is one atomic load and a call: no
/// lock, no allocation, no dlsym in a signal handler.
#[used]
#[link_section = ".init_array"]
static RESOLVE_AT_LOAD: extern "C" fn() = resolve_at_load;

extern "C" fn resolve_at_load() {
    let _ = real_ioctl();
}

fn real_ioctl() -> Option<RealIoctl> {
    let mut addr = REAL_IOCTL.load(Ordering::Acquire);
    if addr == 0 {
        // Only before the constructor ran (another library's constructor
        // calling ioctl first); a race just looks it up twice.
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated symbol name.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, c"ioctl".as_ptr()) as usize };
        addr = if found == 0 { 1 } else { found };
        REAL_IOCTL.store(addr, Ordering::Release);
    }
    if addr == 1 {
        return None;
    }
    // SAFETY: the next definition of `ioctl` in the lookup order is glibc's
    // `int ioctl(int, unsigned long, ...)`, which is this type.
    Some(unsafe { std::mem::transmute::<usize, RealIoctl>(addr) })
}

fn pass_through(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    match real_ioctl() {
        // SAFETY: forwards the caller's own arguments unchanged to glibc's
        // ioctl; their validity is the caller's contract with ioctl(2).
        Some(real) => unsafe { real(fd, request, arg) },
        None => {
            // SAFETY: as above, directly as the system call.
            let ret = unsafe { libc::syscall(libc::SYS_ioctl, fd, request, arg) };
            c_int::try_from(ret).unwrap_or(-1)
        }
    }
}

/// The interposed `ioctl(2)`.
///
/// # Safety
/// The contract of ioctl(2): `arg` is what `request` expects.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    // The kernel's command is an unsigned int: a caller that passed a
    // negative int constant arrives sign-extended, so compare 32 bits.
    type Handler = fn(c_int, u64, *mut c_void) -> Result<c_int, Errno>;
    let handler: Handler = match request & 0xffff_ffff {
        FICLONE => ficlone,
        FICLONERANGE => ficlonerange,
        FIDEDUPERANGE => fideduperange,
        FS_IOC_FIEMAP => fiemap,
        _ => return pass_through(fd, request, arg),
    };
    // A panic (there should be none) becomes EIO rather than aborting the
    // host: unwinding out of an extern "C" function aborts.
    let translated = catch_unwind(AssertUnwindSafe(|| {
        cowdax_dev(fd).map(|dev| handler(fd, dev, arg))
    }))
    .unwrap_or(Some(Err(libc::EIO)));
    match translated {
        None => pass_through(fd, request, arg),
        Some(Ok(result)) => result,
        Some(Err(errno)) => {
            set_errno(errno);
            -1
        }
    }
}

// --------------------------------------------------------------- statfs

/// Whether statfs should report XFS for cowdax mounts in this process.
fn fake_fstype() -> bool {
    static FAKE: OnceLock<bool> = OnceLock::new();
    *FAKE.get_or_init(|| {
        // SAFETY: getauxval reads the process's auxiliary vector.
        let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
        // A setuid program does not take the variable from its caller.
        if !secure && std::env::var_os("COWDAX_PRELOAD_FSTYPE").is_some_and(|v| v == "xfs") {
            return true;
        }
        std::fs::read("/proc/self/comm")
            .map(|comm| comm.strip_suffix(b"\n").unwrap_or(&comm) == b"duperemove")
            .unwrap_or(false)
    })
}

/// Whether a statfs answer is FUSE's (checked first, so that programs
/// that never look at a FUSE filesystem never pay for `fake_fstype`).
fn reports_fuse(buf: *mut libc::statfs) -> bool {
    // SAFETY: `buf` points to the statfs the kernel has just filled in
    // (the system call succeeded, so it is writable memory of that size).
    !buf.is_null() && fs_magic(unsafe { (*buf).f_type }) == FUSE_SUPER_MAGIC
}

/// Runs a statfs fix-up: never lets a panic out, keeps the caller's errno.
fn fix_up(fix: impl FnOnce()) {
    let errno = last_errno();
    let _ = catch_unwind(AssertUnwindSafe(fix));
    set_errno(errno);
}

fn fix_fstype_fd(fd: c_int, buf: *mut libc::statfs) {
    if !reports_fuse(buf) || !fake_fstype() {
        return;
    }
    if is_cowdax(fd) {
        // SAFETY: as above.
        unsafe { (*buf).f_type = XFS_SUPER_MAGIC as _ };
    }
}

fn fix_fstype_path(path: *const c_char, buf: *mut libc::statfs) {
    if !reports_fuse(buf) || !fake_fstype() {
        return;
    }
    if let Some(fd) = raw_open_for_probe(path) {
        fix_fstype_fd(fd, buf);
        raw_close(fd);
    }
}

fn statfs_impl(path: *const c_char, buf: *mut libc::statfs) -> c_int {
    if path.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: the caller's path and buffer, as for statfs(2).
    let ret = unsafe { libc::syscall(libc::SYS_statfs, path, buf) };
    if ret < 0 {
        return -1;
    }
    fix_up(|| fix_fstype_path(path, buf));
    0
}

fn fstatfs_impl(fd: c_int, buf: *mut libc::statfs) -> c_int {
    // SAFETY: the caller's buffer, as for fstatfs(2).
    let ret = unsafe { libc::syscall(libc::SYS_fstatfs, fd, buf) };
    if ret < 0 {
        return -1;
    }
    fix_up(|| fix_fstype_fd(fd, buf));
    0
}

/// The interposed `statfs(2)`.
///
/// # Safety
/// The contract of statfs(2).
#[no_mangle]
pub unsafe extern "C" fn statfs(path: *const c_char, buf: *mut libc::statfs) -> c_int {
    statfs_impl(path, buf)
}

/// The interposed `statfs64` (the same structure as `statfs` on 64-bit
/// Linux).
///
/// # Safety
/// The contract of statfs(2).
#[no_mangle]
pub unsafe extern "C" fn statfs64(path: *const c_char, buf: *mut libc::statfs) -> c_int {
    statfs_impl(path, buf)
}

/// The interposed `fstatfs(2)`.
///
/// # Safety
/// The contract of fstatfs(2).
#[no_mangle]
pub unsafe extern "C" fn fstatfs(fd: c_int, buf: *mut libc::statfs) -> c_int {
    fstatfs_impl(fd, buf)
}

/// The interposed `fstatfs64`.
///
/// # Safety
/// The contract of fstatfs(2).
#[no_mangle]
pub unsafe extern "C" fn fstatfs64(fd: c_int, buf: *mut libc::statfs) -> c_int {
    fstatfs_impl(fd, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_command_numbers_match_the_uapi_values() {
        // The values <linux/fs.h> and <linux/fiemap.h> give on x86-64, arm
        // and riscv, and what libc carries.
        assert_eq!(FICLONE, 0x4004_9409);
        assert_eq!(FICLONERANGE, 0x4020_940d);
        assert_eq!(FIDEDUPERANGE, 0xc018_9436);
        assert_eq!(FS_IOC_FIEMAP, 0xc020_660b);
        assert_eq!(FICLONE, libc::FICLONE as c_ulong);
        assert_eq!(FICLONERANGE, libc::FICLONERANGE as c_ulong);
    }

    #[test]
    fn fiemap_extent_carries_flags_at_the_uapi_offsets() {
        let record = abi::ExtentRecord {
            file_offset: 4096,
            phys_offset: 1 << 20,
            length: 8192,
            flags: abi::EXTENT_SHARED | abi::EXTENT_UNWRITTEN,
        };
        let bytes = fiemap_extent_bytes(&record, true);
        assert_eq!(u64_at(&bytes, 0), 4096);
        assert_eq!(u64_at(&bytes, 8), 1 << 20);
        assert_eq!(u64_at(&bytes, 16), 8192);
        let flags = u32::from_ne_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]);
        assert_eq!(
            flags,
            FIEMAP_EXTENT_SHARED | FIEMAP_EXTENT_UNWRITTEN | FIEMAP_EXTENT_LAST
        );
    }

    #[test]
    fn descriptors_in_arguments_are_their_low_32_bits() {
        assert_eq!(fd_from_arg(7), 7);
        assert_eq!(fd_from_arg((0xdead << 32) | 7), 7);
        assert_eq!(fd_from_arg(u64::MAX), -1);
    }

    #[test]
    fn bad_argument_memory_is_efault() {
        assert_eq!(read_bytes::<8>(std::ptr::null(), 0), Err(libc::EFAULT));
        assert_eq!(read_bytes::<8>(8 as *const c_void, 0), Err(libc::EFAULT));
        assert_eq!(
            read_bytes::<8>(usize::MAX as *const c_void, 2),
            Err(libc::EFAULT)
        );
        assert_eq!(
            write_bytes(16 as *mut c_void, 0, &[1, 2]),
            Err(libc::EFAULT)
        );
        let mut buf = [0u8; 16];
        let ptr = buf.as_mut_ptr().cast::<c_void>();
        write_bytes(ptr, 4, &[9, 8, 7, 6, 5, 4, 3, 2]).expect("write own buffer");
        assert_eq!(read_bytes::<8>(ptr, 4), Ok([9, 8, 7, 6, 5, 4, 3, 2]));
    }

    #[test]
    fn descriptors_off_cowdax_are_not_translated() {
        let file = std::fs::File::open("/proc/self/status").expect("open a procfs file");
        assert!(!is_cowdax(std::os::fd::AsRawFd::as_raw_fd(&file)));
        assert!(!is_cowdax(-1));
    }
}
