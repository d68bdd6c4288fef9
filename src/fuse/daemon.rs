//! The mount daemon: checks before mounting, detaching, logging, serving,
//! and a clean unmount on `umount`, SIGTERM and SIGINT.
//!
//! Detaching re-executes the binary instead of calling fork(2): the crate
//! allows `unsafe` only in the media layer, and a fresh process is what a
//! fork-before-any-thread would give anyway. The parent starts
//! `cowdax mount --daemon-child …` with stdout on a pipe; the child (a new
//! session, stdin/stderr on /dev/null, logging to syslog) opens the image,
//! mounts, and writes `ready` or `error: TEXT` as one line. The parent exits
//! 0 only after `ready`, i.e. once the mount is live.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use fuser::{Config, MountOption, Session, SessionACL};
use nix::sys::signal::{SigSet, Signal};

use super::adapter::{AdapterConfig, CowdaxFs};
use super::coherence::Invalidations;
use super::idle_poll::{Counting, IdlePoll, CPU_LATENCY_DEVICE};
use super::invalidator::CacheInvalidator;
use super::options::{Access, MountOptions};
use crate::fs::{self, Fs, OpenOptions};
use crate::media::detect::{self, MountEntry};
use crate::media::{MmapMedia, OpenMode};
use crate::store::StoreError;

/// Exit code for a usage or option error (mount(8): "incorrect invocation").
pub const EXIT_USAGE: i32 = 1;
/// Exit code when mounting failed (mount(8): "mount failure").
pub const EXIT_MOUNT_FAILED: i32 = 32;

/// The readiness line the detached child sends on success.
const READY_LINE: &str = "ready";
/// Prefix of the line the detached child sends on failure.
const ERROR_PREFIX: &str = "error: ";
/// Prefix of a line for the user the detached child sends before `ready`
/// or `error: ` (waiting for the previous daemon of the image).
const NOTICE_PREFIX: &str = "notice: ";

/// How long a mount waits for the previous daemon of its image to finish
/// writing it after an unmount (docs/FUSE.md "Unmounting").
pub const PREVIOUS_DAEMON_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A fully parsed mount request.
#[derive(Clone, Debug)]
pub struct MountRequest {
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    pub options: MountOptions,
    /// The original `-o` arguments, passed on to the detached child.
    pub option_args: Vec<String>,
    pub foreground: bool,
    pub debug: bool,
}

/// A failure before the mount was live: one line for the user.
#[derive(Debug)]
pub struct MountError {
    pub message: String,
    pub exit_code: i32,
}

impl MountError {
    fn failed(message: String) -> MountError {
        MountError {
            message,
            exit_code: EXIT_MOUNT_FAILED,
        }
    }
}

/// The mount whose root is exactly `mountpoint`, from mountinfo text (the
/// last such mount: the one on top).
fn top_mount(mountinfo: &str, mountpoint: &Path) -> Option<MountEntry> {
    detect::parse_mountinfo(mountinfo)
        .into_iter()
        .rev()
        .find(|mount| mount.mount_point == mountpoint)
}

/// Filesystem type of the mount whose root is exactly `mountpoint`, from
/// mountinfo text (the last such mount: the one on top).
pub fn mounted_fstype(mountinfo: &str, mountpoint: &Path) -> Option<String> {
    top_mount(mountinfo, mountpoint).map(|mount| mount.fs_type)
}

/// Sets the kernel's read-ahead window of a new cowdax mount to `bytes`.
///
/// The kernel starts every FUSE mount's backing device at 128 KiB of
/// read-ahead and lets the INIT reply only lower it, so a buffered
/// sequential read would cost eight READ round trips per MiB. Raising
/// `/sys/class/bdi/MAJ:MIN/read_ahead_kb` (what udev rules do for block
/// devices) makes it one 1 MiB request. The mountinfo lookup sends no FUSE
/// request, so this may run before the connection is initialised; INIT
/// then keeps the window because it asks for the same size. Needs root;
/// otherwise the kernel's window stays and the mount works as before.
fn apply_read_ahead(mountpoint: &Path, bytes: u32, given: bool) {
    let report = |message: String| {
        if given {
            log::warn!("{message}");
        } else {
            log::info!("{message}");
        }
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(MountEntry {
        dev_major,
        dev_minor,
        fs_type: fstype,
        ..
    }) = top_mount(&mountinfo, mountpoint)
    else {
        report(format!(
            "max_readahead: {} not found in /proc/self/mountinfo; read-ahead left to the kernel",
            mountpoint.display()
        ));
        return;
    };
    if !fstype.starts_with("fuse") {
        report(format!(
            "max_readahead: {} is a {fstype} mount; read-ahead left to the kernel",
            mountpoint.display()
        ));
        return;
    }
    let knob = PathBuf::from(format!(
        "/sys/class/bdi/{dev_major}:{dev_minor}/read_ahead_kb"
    ));
    let kib = bytes / 1024;
    if std::fs::read_to_string(&knob).is_ok_and(|now| now.trim() == kib.to_string()) {
        return;
    }
    match std::fs::write(&knob, format!("{kib}\n")) {
        Ok(()) => log::info!("read-ahead set to {kib} KiB ({})", knob.display()),
        Err(err) => report(format!(
            "max_readahead: cannot set {} to {kib}: {err}; the kernel's read-ahead stays",
            knob.display()
        )),
    }
}

/// Checks that can fail before anything is started: source and mount point
/// exist, and the mount point does not already carry a cowdax mount.
pub fn preflight(request: &MountRequest) -> Result<(PathBuf, PathBuf), MountError> {
    let source = std::fs::canonicalize(&request.source)
        .map_err(|err| MountError::failed(format!("{}: {err}", request.source.display())))?;
    let meta = std::fs::metadata(&source)
        .map_err(|err| MountError::failed(format!("{}: {err}", source.display())))?;
    let kind = meta.file_type();
    if !(kind.is_file() || kind.is_block_device() || kind.is_char_device()) {
        return Err(MountError::failed(format!(
            "{}: not an image file or a device",
            source.display()
        )));
    }
    let mountpoint = std::fs::canonicalize(&request.mountpoint).map_err(|err| {
        MountError::failed(format!(
            "mount point {}: {err}",
            request.mountpoint.display()
        ))
    })?;
    if !mountpoint.is_dir() {
        return Err(MountError::failed(format!(
            "mount point {}: not a directory",
            mountpoint.display()
        )));
    }
    if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
        if mounted_fstype(&mountinfo, &mountpoint).as_deref() == Some("fuse.cowdax") {
            return Err(MountError::failed(format!(
                "mount point {}: a cowdax filesystem is already mounted there",
                mountpoint.display()
            )));
        }
    }
    Ok((source, mountpoint))
}

/// Runs a mount request to its end; returns the process exit code.
pub fn run(request: MountRequest, daemon_child: bool) -> i32 {
    if daemon_child {
        return run_daemon_child(request);
    }
    if request.options.remount {
        return match remount(&request) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("cowdax: {}", err.message);
                err.exit_code
            }
        };
    }
    let (source, mountpoint) = match preflight(&request) {
        Ok(paths) => paths,
        Err(err) => {
            eprintln!("cowdax: {}", err.message);
            return err.exit_code;
        }
    };
    if request.foreground {
        init_stderr_logging(request.debug);
        let mut notice = |line: &str| eprintln!("cowdax: {line}");
        return match mount(&request, &source, &mountpoint, &mut notice) {
            Ok(mounted) => {
                log::info!(
                    "{} mounted on {} (foreground)",
                    source.display(),
                    mountpoint.display()
                );
                mounted.serve()
            }
            Err(err) => {
                eprintln!("cowdax: {}", err.message);
                err.exit_code
            }
        };
    }
    spawn_detached(&request, &source, &mountpoint)
}

/// Mount flags for a remount: the mount's current flags, changed by the
/// flag options given (in order). Other options cannot change on a live
/// mount and are ignored.
pub fn remount_flags(
    current: nix::sys::statvfs::FsFlags,
    option_args: &[String],
) -> nix::mount::MsFlags {
    use nix::mount::MsFlags;
    use nix::sys::statvfs::FsFlags;
    let mut flags = MsFlags::MS_REMOUNT;
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_SYNCHRONOUS, MsFlags::MS_SYNCHRONOUS),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(fs_flag) {
            flags |= ms_flag;
        }
    }
    let atime_flags = MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME;
    for option in option_args.iter().flat_map(|arg| arg.split(',')) {
        match option.trim() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "suid" => flags &= !MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "dev" => flags &= !MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "exec" => flags &= !MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "async" => flags &= !MsFlags::MS_SYNCHRONOUS,
            "noatime" => flags = (flags & !atime_flags) | MsFlags::MS_NOATIME,
            "relatime" => flags = (flags & !atime_flags) | MsFlags::MS_RELATIME,
            "strictatime" | "atime" => flags = (flags & !atime_flags) | MsFlags::MS_STRICTATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "diratime" => flags &= !MsFlags::MS_NODIRATIME,
            _ => {}
        }
    }
    flags
}

/// `mount -o remount,…`: mount(8) hands a remount of a fuse.cowdax mount
/// to mount.fuse3, which runs us with `remount` in the options. Changes the
/// flags of the existing mount (the kernel's FUSE allows it; e.g. `ro`
/// makes the VFS refuse writes) instead of starting a second daemon.
fn remount(request: &MountRequest) -> Result<(), MountError> {
    let mountpoint = std::fs::canonicalize(&request.mountpoint).map_err(|err| {
        MountError::failed(format!(
            "mount point {}: {err}",
            request.mountpoint.display()
        ))
    })?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mounted_fstype(&mountinfo, &mountpoint).as_deref() != Some("fuse.cowdax") {
        return Err(MountError::failed(format!(
            "remount: no cowdax filesystem is mounted on {}",
            mountpoint.display()
        )));
    }
    let current = nix::sys::statvfs::statvfs(&mountpoint)
        .map_err(|err| MountError::failed(format!("{}: {err}", mountpoint.display())))?;
    let flags = remount_flags(current.flags(), &request.option_args);
    // Going read-only is refused (EBUSY) while a file is open for writing
    // or an unlinked inode is still in use; files closed just before are
    // released asynchronously by FUSE, so give them a moment.
    let mut attempts_left = REMOUNT_BUSY_RETRIES;
    loop {
        match nix::mount::mount(None::<&str>, &mountpoint, None::<&str>, flags, None::<&str>) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) if attempts_left > 0 => {
                attempts_left -= 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(err) => {
                return Err(MountError::failed(format!(
                    "remount of {}: {err}",
                    mountpoint.display()
                )))
            }
        }
    }
}

/// Retries of a remount refused with EBUSY (50 ms apart).
const REMOUNT_BUSY_RETRIES: u32 = 40;

/// Parent side of detaching: start the child, wait for its readiness line.
fn spawn_detached(request: &MountRequest, source: &Path, mountpoint: &Path) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("cowdax: cannot find my own executable to detach: {err}");
            return EXIT_MOUNT_FAILED;
        }
    };
    let mut command = Command::new(exe);
    command
        .arg("mount")
        .arg("--daemon-child")
        .arg(source)
        .arg(mountpoint);
    for option in &request.option_args {
        command.arg("-o").arg(option);
    }
    if request.debug {
        command.arg("--debug-log");
    }
    // The daemon must not keep the caller's working directory busy.
    command
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!("cowdax: cannot start the daemon: {err}");
            return EXIT_MOUNT_FAILED;
        }
    };
    let Some(stdout) = child.stdout.take() else {
        eprintln!("cowdax: cannot talk to the daemon");
        return EXIT_MOUNT_FAILED;
    };
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    let read = loop {
        line.clear();
        let read = stdout.read_line(&mut line);
        match line.trim_end().strip_prefix(NOTICE_PREFIX) {
            Some(notice) if read.is_ok() => eprintln!("cowdax: {notice}"),
            _ => break read,
        }
    };
    let line = line.trim_end();
    match read {
        Ok(_) if line == READY_LINE => 0,
        Ok(_) if line.starts_with(ERROR_PREFIX) => {
            eprintln!("cowdax: {}", &line[ERROR_PREFIX.len()..]);
            // The child exits right after reporting; its code tells which kind.
            match child.wait() {
                Ok(status) => status
                    .code()
                    .filter(|&c| c != 0)
                    .unwrap_or(EXIT_MOUNT_FAILED),
                Err(_) => EXIT_MOUNT_FAILED,
            }
        }
        _ => {
            let status = child.wait();
            eprintln!(
                "cowdax: the daemon exited before the mount was ready ({})",
                match status {
                    Ok(status) => status.to_string(),
                    Err(err) => err.to_string(),
                }
            );
            EXIT_MOUNT_FAILED
        }
    }
}

/// Child side of detaching.
fn run_daemon_child(request: MountRequest) -> i32 {
    // Own session: no controlling terminal, not killed with the caller's.
    let _ = nix::unistd::setsid();
    init_syslog_logging(request.debug);
    let mut report = std::io::stdout();
    let mut notice = |line: &str| {
        log::info!("{line}");
        let _ = writeln!(std::io::stdout(), "{NOTICE_PREFIX}{line}");
        let _ = std::io::stdout().flush();
    };
    let result = preflight(&request)
        .and_then(|(source, mountpoint)| mount(&request, &source, &mountpoint, &mut notice));
    match result {
        Ok(mounted) => {
            let _ = writeln!(report, "{READY_LINE}");
            let _ = report.flush();
            // Stop holding the parent's pipe open.
            if let Ok(devnull) = File::options().write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stdout(&devnull);
            }
            log::info!(
                "{} mounted on {}",
                mounted.source.display(),
                mounted.mountpoint.display()
            );
            mounted.serve()
        }
        Err(err) => {
            log::error!("{}", err.message);
            let _ = writeln!(report, "{ERROR_PREFIX}{}", err.message);
            let _ = report.flush();
            err.exit_code
        }
    }
}

fn init_stderr_logging(debug: bool) {
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let logger = env_logger::Builder::new()
        .filter_level(level)
        .parse_default_env()
        .target(env_logger::Target::Stderr)
        .build();
    let max_level = logger.filter();
    if log::set_boxed_logger(Box::new(WithoutSpuriousUnmountWarning(logger))).is_ok() {
        log::set_max_level(max_level);
    }
}

fn init_syslog_logging(debug: bool) {
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_DAEMON,
        hostname: None,
        process: "cowdax".into(),
        pid: std::process::id(),
    };
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    // No syslog socket (containers): the daemon runs without a log.
    if let Ok(logger) = syslog::unix(formatter) {
        let logger = WithoutSpuriousUnmountWarning(syslog::BasicLogger::new(logger));
        if log::set_boxed_logger(Box::new(logger)).is_ok() {
            log::set_max_level(level);
        }
    }
}

/// Passes every record on except fuser's warning that its own unmount
/// failed, which fuser 0.18 logs after every ordinary `umount`: its check
/// whether the kernel still has the mount reads poll's POLLERR the wrong
/// way round (fixed upstream after 0.18.0, fuser PR #703), so once the
/// user has unmounted it unmounts the mount point again and gets EINVAL.
/// The daemon checks for itself whether the mount outlived the session
/// ([`Mounted::serve`]) and says so as an error.
struct WithoutSpuriousUnmountWarning<L>(L);

impl<L: log::Log> log::Log for WithoutSpuriousUnmountWarning<L> {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !is_spurious_unmount_warning(record) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// fuser 0.18's warnings when its unmount after the session fails
/// (`fuser::session` "Failed to umount filesystem: …", `fuser::mnt`
/// "Unmount failed: …").
fn is_spurious_unmount_warning(record: &log::Record) -> bool {
    record.level() == log::Level::Warn && matches!(record.target(), "fuser::session" | "fuser::mnt")
}

/// One line for an error of opening the filesystem.
fn describe_open_error(source: &Path, err: &fs::Error) -> String {
    match err {
        fs::Error::Store(StoreError::NotCowdax(detail)) => format!(
            "{}: not a cowdax filesystem{detail} (format it with `cowdax mkfs`)",
            source.display()
        ),
        fs::Error::Store(StoreError::Media(media)) => media.to_string(),
        fs::Error::Store(store) => format!("{}: {store}", source.display()),
        other => format!("{}: {other}", source.display()),
    }
}

/// A live mount, ready to serve.
pub struct Mounted {
    fs: Arc<Fs>,
    /// The image, to tell waiting openers when serving has ended.
    media: Arc<MmapMedia>,
    session: Session<Counting<CowdaxFs>>,
    source: PathBuf,
    mountpoint: PathBuf,
    threads: usize,
}

/// Opens the image and mounts it; returns once the kernel has initialised
/// the connection (the mount is live).
/// An image still held by the daemon of a mount that has just gone away
/// is waited for (up to [`PREVIOUS_DAEMON_GRACE`]; `notice` gets a line for
/// the user if that takes a while), one in use is refused at once.
pub fn mount(
    request: &MountRequest,
    source: &Path,
    mountpoint: &Path,
    notice: &mut dyn FnMut(&str),
) -> Result<Mounted, MountError> {
    let opts = &request.options;
    let media_mode = if opts.read_only {
        OpenMode::ReadOnly
    } else {
        OpenMode::ReadWrite
    };
    let media = MmapMedia::open_waiting(source, media_mode, PREVIOUS_DAEMON_GRACE, notice)
        .map_err(|err| MountError::failed(err.to_string()))?;
    log::info!("opened {}", crate::media::Media::describe(&media));
    // Started before the image is opened, so its failure leaves nothing to
    // close.
    let invalidator = Arc::new(CacheInvalidator::new());
    let invalidations = Invalidations::start(invalidator.clone()).map_err(|err| {
        MountError::failed(format!(
            "starting the page cache invalidation thread: {err}"
        ))
    })?;
    let media = Arc::new(media);
    let fs = Fs::open(
        media.clone(),
        OpenOptions {
            read_only: opts.read_only,
        },
    )
    .map_err(|err| MountError::failed(describe_open_error(source, &err)))?;
    let fs = Arc::new(fs);

    let idle_poll = if opts.idle_poll {
        IdlePoll::start(Path::new(CPU_LATENCY_DEVICE), opts.idle_poll_given)
    } else {
        IdlePoll::off()
    };
    let adapter = CowdaxFs::new(
        fs.clone(),
        AdapterConfig::from_options(opts),
        invalidator.clone(),
        idle_poll.clone(),
        invalidations,
    );
    // From now on an opener that cannot see this mount (right after
    // `umount`, before the session ends) waits a little instead of refusing.
    // Marked before mounting: the mount is visible, and can be unmounted,
    // as soon as Session::new has mounted it, and an opener that came right
    // after such an unmount would otherwise take this daemon for an fsck.
    media.serving_mount();
    let config = session_config(opts, source);
    // Requests are counted for idle polling where fuser hands them over.
    let served = Counting::new(adapter, idle_poll);
    let session = match Session::new(served, mountpoint, &config) {
        Ok(session) => session,
        Err(err) => {
            // Nothing was served: leave the image as cleanly as we found it.
            if let Err(unmount_err) = fs.unmount() {
                log::warn!("closing the filesystem after a failed mount: {unmount_err}");
            }
            return Err(MountError::failed(format!(
                "mounting on {}: {err}",
                mountpoint.display()
            )));
        }
    };
    invalidator.set_notifier(session.notifier());
    apply_read_ahead(
        mountpoint,
        opts.max_readahead_bytes,
        opts.max_readahead_given,
    );
    Ok(Mounted {
        fs,
        media,
        session,
        source: source.to_path_buf(),
        mountpoint: mountpoint.to_path_buf(),
        threads: opts.thread_count(),
    })
}

/// fuser's session configuration for these options.
pub fn session_config(opts: &MountOptions, source: &Path) -> Config {
    let fsname = opts
        .fsname
        .clone()
        .unwrap_or_else(|| source.display().to_string());
    let mut mount_options = vec![
        MountOption::FSName(fsname),
        // fuser's direct mount(2) drops Subtype (a fusermount option);
        // the kernel itself accepts subtype= and shows fuse.cowdax.
        MountOption::CUSTOM(format!("subtype={}", opts.subtype)),
        if opts.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
        if opts.allow_devices {
            MountOption::Dev
        } else {
            MountOption::NoDev
        },
        if opts.allow_suid {
            MountOption::Suid
        } else {
            MountOption::NoSuid
        },
        if opts.allow_exec {
            MountOption::Exec
        } else {
            MountOption::NoExec
        },
    ];
    if opts.default_permissions {
        mount_options.push(MountOption::DefaultPermissions);
    }
    if opts.atime == super::options::AtimePolicy::Never {
        mount_options.push(MountOption::NoAtime);
    }
    if opts.sync {
        mount_options.push(MountOption::Sync);
    }
    if opts.dir_sync {
        mount_options.push(MountOption::DirSync);
    }
    if opts.auto_unmount {
        mount_options.push(MountOption::AutoUnmount);
    }
    let mut config = Config::default();
    config.mount_options = mount_options;
    config.acl = match opts.access {
        Access::Owner => SessionACL::Owner,
        Access::OwnerAndRoot => SessionACL::RootAndOwner,
        Access::All => SessionACL::All,
    };
    config.n_threads = Some(opts.thread_count());
    config.clone_fd = true;
    config
}

impl Mounted {
    /// Serves requests until the filesystem is unmounted (umount, or a
    /// SIGTERM/SIGINT that unmounts it), then checkpoints and marks the
    /// image clean. Returns the exit code.
    pub fn serve(mut self) -> i32 {
        // Block the termination signals in this thread before any other
        // starts, so that every worker inherits the mask and only the
        // signal thread receives them.
        let mut signals = SigSet::empty();
        signals.add(Signal::SIGTERM);
        signals.add(Signal::SIGINT);
        signals.add(Signal::SIGHUP);
        if let Err(err) = signals.thread_block() {
            log::warn!("cannot block termination signals: {err}");
        }
        let mut unmounter = self.session.unmount_callable();
        let mountpoint = self.mountpoint.clone();
        let signal_thread = std::thread::Builder::new()
            .name("cowdax-signals".into())
            .spawn(move || loop {
                let signal = match signals.wait() {
                    Ok(signal) => signal,
                    Err(err) => {
                        log::error!("waiting for signals failed: {err}");
                        return;
                    }
                };
                if signal == Signal::SIGHUP {
                    // No terminal to lose once detached; keep serving.
                    continue;
                }
                log::info!("{signal}: unmounting {}", mountpoint.display());
                if let Err(err) = unmounter.unmount() {
                    // Busy (open files, a cwd inside): detach now; the
                    // session ends when the last user lets go.
                    log::warn!("unmount failed ({err}); detaching lazily");
                    if let Err(err) =
                        nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH)
                    {
                        log::error!("lazy unmount of {} failed: {err}", mountpoint.display());
                    }
                }
                return;
            });
        if let Err(err) = signal_thread {
            log::warn!("no signal thread ({err}): SIGTERM will not unmount cleanly");
        }
        log::info!("serving with {} threads", self.threads);
        let ours = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|mountinfo| top_mount(&mountinfo, &self.mountpoint));
        let served = self.session.run();
        let mut exit_code = 0;
        if let Err(err) = served {
            log::error!("FUSE session ended with an error: {err}");
            exit_code = 1;
        }
        // fuser has tried to unmount by now; its own warnings about that
        // are filtered (WithoutSpuriousUnmountWarning), so check here.
        let still_mounted = ours.is_some_and(|ours| {
            std::fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .and_then(|mountinfo| top_mount(&mountinfo, &self.mountpoint))
                .is_some_and(|now| {
                    (now.mount_id, now.dev_major, now.dev_minor)
                        == (ours.mount_id, ours.dev_major, ours.dev_minor)
                })
        });
        if still_mounted {
            log::error!(
                "{} is still mounted although the FUSE session ended; \
                 unmount it with `umount -l {}`",
                self.mountpoint.display(),
                self.mountpoint.display()
            );
            exit_code = 1;
        }
        // From here on only the final checkpoint is written: a mount or
        // fsck of the image started now waits for it instead of failing.
        self.media.finishing();
        match self.fs.unmount() {
            Ok(()) => log::info!("{} unmounted cleanly", self.source.display()),
            Err(err) => {
                log::error!(
                    "final checkpoint of {} failed: {err}",
                    self.source.display()
                );
                exit_code = 1;
            }
        }
        exit_code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:40 / /mnt/with\\040space rw,nosuid,nodev,relatime shared:20 - fuse.cowdax /img rw,user_id=0,group_id=0
41 22 0:41 / /tmp/plain rw,relatime shared:21 - tmpfs tmpfs rw
52 40 0:52 / /mnt/with\\040space rw,nosuid,nodev,relatime shared:30 - fuse.cowdax /img2 rw,user_id=0,group_id=0
";

    #[test]
    fn mountinfo_lookup_finds_escaped_mount_points() {
        assert_eq!(
            mounted_fstype(MOUNTINFO, Path::new("/mnt/with space")).as_deref(),
            Some("fuse.cowdax")
        );
        assert_eq!(
            mounted_fstype(MOUNTINFO, Path::new("/tmp/plain")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(mounted_fstype(MOUNTINFO, Path::new("/mnt")), None);
    }

    #[test]
    fn only_fusers_unmount_warnings_are_filtered() {
        let record = |level, target| {
            let record = log::Record::builder()
                .level(level)
                .target(target)
                .args(format_args!("x"))
                .build();
            is_spurious_unmount_warning(&record)
        };
        assert!(record(log::Level::Warn, "fuser::session"));
        assert!(record(log::Level::Warn, "fuser::mnt"));
        assert!(!record(log::Level::Error, "fuser::session"));
        assert!(!record(log::Level::Warn, "fuser::request"));
        assert!(!record(log::Level::Warn, "cowdax::fuse::daemon"));
    }

    #[test]
    fn mountinfo_lookup_gives_the_top_mounts_device() {
        let top = top_mount(MOUNTINFO, Path::new("/mnt/with space")).expect("mounted");
        assert_eq!(
            (
                top.mount_id,
                top.dev_major,
                top.dev_minor,
                top.source.as_str()
            ),
            (52, 0, 52, "/img2")
        );
        assert_eq!(top_mount(MOUNTINFO, Path::new("/mnt")), None);
    }

    #[test]
    fn remount_keeps_current_flags_and_applies_given_ones() {
        use nix::mount::MsFlags;
        use nix::sys::statvfs::FsFlags;
        let current = FsFlags::ST_NOSUID | FsFlags::ST_NODEV | FsFlags::ST_RELATIME;
        let flags = remount_flags(current, &["remount,ro,allow_other".to_string()]);
        assert!(flags.contains(
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        ));
        let flags = remount_flags(current | FsFlags::ST_RDONLY, &["remount,rw,noatime".into()]);
        assert!(!flags.contains(MsFlags::MS_RDONLY));
        assert!(flags.contains(MsFlags::MS_NOATIME));
        assert!(!flags.contains(MsFlags::MS_RELATIME));
    }

    #[test]
    fn session_config_sets_fsname_subtype_and_permissions() {
        let opts = MountOptions::parse(&["allow_other,ro,noatime,threads=2"]).unwrap();
        let config = session_config(&opts, Path::new("/img"));
        assert!(config
            .mount_options
            .contains(&MountOption::FSName("/img".into())));
        assert!(config
            .mount_options
            .contains(&MountOption::CUSTOM("subtype=cowdax".into())));
        assert!(config.mount_options.contains(&MountOption::RO));
        assert!(config.mount_options.contains(&MountOption::NoAtime));
        assert!(config
            .mount_options
            .contains(&MountOption::DefaultPermissions));
        assert_eq!(config.acl, SessionACL::All);
        assert_eq!(config.n_threads, Some(2));
    }

    #[test]
    fn preflight_rejects_missing_mount_point_and_source() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("img");
        std::fs::write(&image, b"x").unwrap();
        let request = |source: PathBuf, mountpoint: PathBuf| MountRequest {
            source,
            mountpoint,
            options: MountOptions::default(),
            option_args: Vec::new(),
            foreground: true,
            debug: false,
        };
        let err = preflight(&request(image.clone(), dir.path().join("nope"))).unwrap_err();
        assert!(err.message.contains("mount point"), "{}", err.message);
        let err = preflight(&request(image.clone(), image.clone())).unwrap_err();
        assert!(err.message.contains("not a directory"), "{}", err.message);
        let err = preflight(&request(dir.path().join("missing"), dir.path().into())).unwrap_err();
        assert!(err.message.contains("missing"), "{}", err.message);
        assert!(preflight(&request(image, dir.path().into())).is_ok());
    }
}
