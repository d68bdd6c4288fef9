//! Mount options: what `-o` accepts, what it means, and what is refused.
//!
//! mount.fuse3 passes the options of `mount -o …` and of fstab through
//! unchanged (`rw,noatime,allow_other,dev,suid` …). Every option is either
//! applied, ignored on purpose (userspace-only options that mount(8) and
//! fstab use for themselves), or rejected with one clear message: a typo must
//! not silently mount with other semantics than asked for.

use std::time::Duration;

use crate::size::parse_bytes;

/// Largest request the kernel can send with the default
/// `fs.fuse.max_pages_limit` (256 pages): one MiB.
pub const MAX_WRITE_LIMIT_BYTES: u32 = 1 << 20;

/// Default read-ahead: one request's worth, so a sequential read asks for
/// 1 MiB per round trip instead of the kernel's default 128 KiB.
pub const DEFAULT_READAHEAD_BYTES: u32 = 1 << 20;

/// Largest `max_readahead=` accepted. The kernel still splits read-ahead
/// into requests of at most 1 MiB; a larger window only reads further ahead.
pub const MAX_READAHEAD_LIMIT_BYTES: u32 = 16 << 20;

/// Default attribute and entry cache lifetime in the kernel. Long, because
/// the kernel's caches stay coherent without expiry: every change to names
/// and attributes either passes through the kernel (which updates or drops
/// its copy) or is made by the daemon itself, which then invalidates the
/// kernel's copy (privilege killing after fallocate/copy, clone and
/// dedupe, atime updates after reads). The lifetime only bounds the damage of a missed
/// invalidation. With 1 s every path walk more than a second after the
/// last one costs a LOOKUP round trip per component (docs/FUSE.md).
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// How the daemon maintains access times (the kernel leaves atime of FUSE
/// inodes entirely to the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtimePolicy {
    /// Never update atime on reads (`noatime`).
    Never,
    /// Update atime when it is not newer than mtime/ctime or older than a day
    /// (`relatime`, the kernel's default).
    Relative,
    /// Update atime on every read (`strictatime`, `atime`). Every open then
    /// bypasses the page cache for read/write whatever `cache=` says, since
    /// reads served from it never reach the daemon (docs/FUSE.md).
    Always,
}

/// Which opens of regular files go through the kernel page cache
/// (`cache=`; docs/FUSE.md "Caching and coherence").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// `cache=auto` (default): read-only opens use the page cache, so data
    /// that is read again costs no round trip; opens for writing bypass it
    /// (`FOPEN_DIRECT_IO`), so a write is one copy from the caller to the
    /// media instead of a copy into the page cache and a second one out.
    Auto,
    /// `cache=page` (`nodirect_io`): every open uses the page cache.
    Page,
    /// `cache=direct` (`direct_io`): no open uses the page cache for
    /// read/write, like a DAX filesystem. mmap works through it in every mode.
    Direct,
}

impl CacheMode {
    /// Whether an open with these `open(2)` flags bypasses the page cache.
    pub fn bypasses_page_cache(self, open_flags: i32) -> bool {
        match self {
            CacheMode::Page => false,
            CacheMode::Direct => true,
            CacheMode::Auto => open_flags & libc::O_ACCMODE != libc::O_RDONLY,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CacheMode::Auto => "auto",
            CacheMode::Page => "page",
            CacheMode::Direct => "direct",
        }
    }
}

/// Who may use the mount besides the user that mounted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only the mounting user (FUSE's default).
    Owner,
    /// The mounting user and root (`allow_root`).
    OwnerAndRoot,
    /// Everybody (`allow_other`).
    All,
}

/// The parsed meaning of every `-o` option given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOptions {
    pub read_only: bool,
    pub access: Access,
    /// Let the kernel check permissions from the mode bits and POSIX ACLs.
    pub default_permissions: bool,
    pub allow_devices: bool,
    pub allow_suid: bool,
    pub allow_exec: bool,
    pub atime: AtimePolicy,
    /// `nodiratime`: reading a directory never updates its atime.
    pub no_dir_atime: bool,
    pub sync: bool,
    pub dir_sync: bool,
    /// Overrides the default `fsname=SOURCE`.
    pub fsname: Option<String>,
    /// Always `cowdax`; `subtype=` may only repeat it.
    pub subtype: String,
    pub auto_unmount: bool,
    /// `remount`: change the flags of an existing cowdax mount (what
    /// `mount -o remount,ro MNT` asks through mount.fuse3) instead of
    /// mounting.
    pub remount: bool,
    /// Worker threads (`threads=N`); `None` = one per CPU.
    pub threads: Option<usize>,
    pub writeback_cache: bool,
    /// `cache=`, `direct_io`, `nodirect_io`: which opens use the page cache.
    pub cache: CacheMode,
    /// Whether `cache` was chosen by an option (else `writeback_cache`
    /// switches the default to `Page`).
    pub cache_given: bool,
    pub max_write_bytes: u32,
    /// `max_readahead=`: the kernel's read-ahead window on this mount.
    pub max_readahead_bytes: u32,
    /// Whether `max_readahead=` was given (failing to apply it is then a
    /// warning, not a note).
    pub max_readahead_given: bool,
    /// `idle_poll=`: keep idle CPUs polling while requests arrive fast
    /// (docs/FUSE.md "Idle polling"). Off unless asked for: it sets a
    /// machine-wide power and latency policy.
    pub idle_poll: bool,
    /// Whether `idle_poll=` was given (failing to apply it is then a
    /// warning, not a note).
    pub idle_poll_given: bool,
    pub attr_timeout: Duration,
    pub entry_timeout: Duration,
}

impl Default for MountOptions {
    fn default() -> MountOptions {
        MountOptions {
            read_only: false,
            access: Access::Owner,
            // The kernel's checks (mode bits, ACLs, sticky directories) are the
            // ones users expect; the core trusts the caller.
            default_permissions: true,
            // FUSE mounts default to nodev,nosuid unless asked otherwise.
            allow_devices: false,
            allow_suid: false,
            allow_exec: true,
            atime: AtimePolicy::Relative,
            no_dir_atime: false,
            sync: false,
            dir_sync: false,
            fsname: None,
            subtype: "cowdax".to_string(),
            auto_unmount: false,
            remount: false,
            threads: None,
            writeback_cache: false,
            cache: CacheMode::Auto,
            cache_given: false,
            max_write_bytes: MAX_WRITE_LIMIT_BYTES,
            max_readahead_bytes: DEFAULT_READAHEAD_BYTES,
            max_readahead_given: false,
            idle_poll: false,
            idle_poll_given: false,
            attr_timeout: DEFAULT_TTL,
            entry_timeout: DEFAULT_TTL,
        }
    }
}

/// An option that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionError(pub String);

/// Options that mount(8), fstab and helpers use for themselves; they carry
/// no meaning for the filesystem and are accepted without effect.
fn is_userspace_only(name: &str) -> bool {
    matches!(
        name,
        "defaults"
            | "nofail"
            | "_netdev"
            | "auto"
            | "noauto"
            | "user"
            | "nouser"
            | "users"
            | "owner"
            | "group"
            | "loop"
            | "nodiscard"
            | "discard"
            | "user_xattr"
            | "nonempty"
    ) || name.starts_with("x-")
        // Shown by /proc/mounts for every FUSE mount and passed back by
        // mount(8) on `remount`; the daemon sets them itself.
        || name.starts_with("user_id=")
        || name.starts_with("group_id=")
        || name.starts_with("rootmode=")
        || name.starts_with("max_read=")
        || name.starts_with("blksize=")
        || name.starts_with("comment=")
        || name.starts_with("user=")
        || name.starts_with("helper=")
}

fn parse_seconds(name: &str, value: &str) -> Result<Duration, OptionError> {
    let seconds: f64 = value
        .parse()
        .map_err(|_| OptionError(format!("option {name}={value}: not a number of seconds")))?;
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(OptionError(format!(
            "option {name}={value}: must be between 0 and 86400 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl MountOptions {
    /// Parses the values of every `-o` argument (each comma-separated), in
    /// order; later options override earlier ones, as with mount(8).
    pub fn parse<S: AsRef<str>>(option_args: &[S]) -> Result<MountOptions, OptionError> {
        let mut opts = MountOptions::default();
        let mut default_permissions_off = false;
        for arg in option_args {
            for option in arg.as_ref().split(',') {
                let option = option.trim();
                if option.is_empty() {
                    continue;
                }
                opts.apply(option, &mut default_permissions_off)?;
            }
        }
        // allow_other without kernel permission checks would let every user
        // read every file: always check when others may enter.
        if opts.access != Access::Owner && default_permissions_off {
            return Err(OptionError(
                "option no_default_permissions cannot be combined with allow_other/allow_root"
                    .to_string(),
            ));
        }
        if opts.writeback_cache {
            // Write-back caching needs writes to go through the page cache.
            if opts.cache_given && opts.cache != CacheMode::Page {
                return Err(OptionError(format!(
                    "options cache={} and writeback_cache exclude each other (writes would bypass the cache)",
                    opts.cache.name()
                )));
            }
            opts.cache = CacheMode::Page;
        }
        if opts.auto_unmount && opts.access == Access::Owner {
            return Err(OptionError(
                "option auto_unmount needs allow_other or allow_root".to_string(),
            ));
        }
        Ok(opts)
    }

    fn apply(
        &mut self,
        option: &str,
        default_permissions_off: &mut bool,
    ) -> Result<(), OptionError> {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        let need_value = || {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| OptionError(format!("option {name} needs a value ({name}=…)")))
        };
        let no_value = || -> Result<(), OptionError> {
            match value {
                None => Ok(()),
                Some(_) => Err(OptionError(format!("option {name} takes no value"))),
            }
        };
        match name {
            "rw" => {
                no_value()?;
                self.read_only = false
            }
            "ro" => {
                no_value()?;
                self.read_only = true
            }
            "dev" => {
                no_value()?;
                self.allow_devices = true
            }
            "nodev" => {
                no_value()?;
                self.allow_devices = false
            }
            "suid" => {
                no_value()?;
                self.allow_suid = true
            }
            "nosuid" => {
                no_value()?;
                self.allow_suid = false
            }
            "exec" => {
                no_value()?;
                self.allow_exec = true
            }
            "noexec" => {
                no_value()?;
                self.allow_exec = false
            }
            "atime" | "strictatime" => {
                no_value()?;
                self.atime = AtimePolicy::Always
            }
            "noatime" => {
                no_value()?;
                self.atime = AtimePolicy::Never
            }
            "relatime" => {
                no_value()?;
                self.atime = AtimePolicy::Relative
            }
            "nodiratime" => {
                no_value()?;
                self.no_dir_atime = true
            }
            "diratime" => {
                no_value()?;
                self.no_dir_atime = false
            }
            "sync" => {
                no_value()?;
                self.sync = true
            }
            "async" => {
                no_value()?;
                self.sync = false
            }
            "dirsync" => {
                no_value()?;
                self.dir_sync = true
            }
            "allow_other" => {
                no_value()?;
                self.access = Access::All
            }
            "allow_root" => {
                no_value()?;
                if self.access != Access::All {
                    self.access = Access::OwnerAndRoot
                }
            }
            "default_permissions" => {
                no_value()?;
                self.default_permissions = true;
                *default_permissions_off = false;
            }
            "no_default_permissions" => {
                no_value()?;
                self.default_permissions = false;
                *default_permissions_off = true;
            }
            "auto_unmount" => {
                no_value()?;
                self.auto_unmount = true
            }
            "remount" => {
                no_value()?;
                self.remount = true
            }
            "fsname" => self.fsname = Some(need_value()?.to_string()),
            "subtype" => {
                let subtype = need_value()?;
                if subtype != "cowdax" {
                    return Err(OptionError(format!(
                        "option subtype={subtype}: this filesystem's subtype is cowdax"
                    )));
                }
            }
            "threads" => {
                let value = need_value()?;
                let threads: usize = value.parse().map_err(|_| {
                    OptionError(format!("option threads={value}: not a positive number"))
                })?;
                if !(1..=256).contains(&threads) {
                    return Err(OptionError(format!(
                        "option threads={value}: must be between 1 and 256"
                    )));
                }
                self.threads = Some(threads);
            }
            "writeback_cache" => {
                no_value()?;
                self.writeback_cache = true
            }
            "cache" => {
                let value = need_value()?;
                self.cache = match value {
                    "auto" => CacheMode::Auto,
                    "page" => CacheMode::Page,
                    "direct" => CacheMode::Direct,
                    _ => {
                        return Err(OptionError(format!(
                            "option cache={value}: must be auto, page or direct"
                        )))
                    }
                };
                self.cache_given = true;
            }
            "direct_io" => {
                no_value()?;
                self.cache = CacheMode::Direct;
                self.cache_given = true;
            }
            "nodirect_io" | "no_direct_io" => {
                no_value()?;
                self.cache = CacheMode::Page;
                self.cache_given = true;
            }
            "nowriteback_cache" | "no_writeback_cache" => {
                no_value()?;
                self.writeback_cache = false
            }
            "max_write" => {
                let value = need_value()?;
                let bytes = parse_bytes(value)
                    .map_err(|err| OptionError(format!("option max_write={value}: {err}")))?;
                if !(4096..=u64::from(MAX_WRITE_LIMIT_BYTES)).contains(&bytes) {
                    return Err(OptionError(format!(
                        "option max_write={value}: must be between 4096 and {MAX_WRITE_LIMIT_BYTES} bytes"
                    )));
                }
                self.max_write_bytes = bytes as u32;
            }
            "max_readahead" => {
                let value = need_value()?;
                let bytes = parse_bytes(value)
                    .map_err(|err| OptionError(format!("option max_readahead={value}: {err}")))?;
                if bytes > u64::from(MAX_READAHEAD_LIMIT_BYTES) {
                    return Err(OptionError(format!(
                        "option max_readahead={value}: must be at most {MAX_READAHEAD_LIMIT_BYTES} bytes"
                    )));
                }
                self.max_readahead_bytes = bytes as u32;
                self.max_readahead_given = true;
            }
            "idle_poll" => {
                let value = need_value()?;
                self.idle_poll = match value {
                    "on" => true,
                    "off" => false,
                    _ => {
                        return Err(OptionError(format!(
                            "option idle_poll={value}: must be on or off"
                        )))
                    }
                };
                self.idle_poll_given = true;
            }
            "attr_timeout" => self.attr_timeout = parse_seconds(name, need_value()?)?,
            "entry_timeout" => self.entry_timeout = parse_seconds(name, need_value()?)?,
            _ if is_userspace_only(option) || is_userspace_only(name) => {}
            _ => {
                return Err(OptionError(format!(
                    "unknown mount option '{option}' (see `cowdax mount --help`)"
                )))
            }
        }
        Ok(())
    }

    /// Number of worker threads to run.
    pub fn thread_count(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_fuse3_default_options_are_accepted() {
        let opts = MountOptions::parse(&["rw,noatime,allow_other,dev,suid"]).unwrap();
        assert!(!opts.read_only);
        assert_eq!(opts.atime, AtimePolicy::Never);
        assert_eq!(opts.access, Access::All);
        assert!(opts.allow_devices && opts.allow_suid);
        assert!(opts.default_permissions);
    }

    #[test]
    fn fstab_userspace_options_are_ignored() {
        let opts = MountOptions::parse(&[
            "defaults,nofail,_netdev,x-systemd.automount,noauto,user,users,comment=foo,owner,group",
        ])
        .unwrap();
        assert_eq!(opts, MountOptions::default());
    }

    #[test]
    fn unknown_option_is_rejected_with_its_name() {
        let err = MountOptions::parse(&["rw,bogus_option"]).unwrap_err();
        assert!(err.0.contains("bogus_option"), "{}", err.0);
    }

    #[test]
    fn flag_with_value_is_rejected() {
        assert!(MountOptions::parse(&["ro=1"]).is_err());
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let opts = MountOptions::parse(&["ro", "rw,noatime,relatime"]).unwrap();
        assert!(!opts.read_only);
        assert_eq!(opts.atime, AtimePolicy::Relative);
    }

    #[test]
    fn max_write_accepts_suffixes_and_enforces_one_mebibyte() {
        let opts = MountOptions::parse(&["max_write=512K"]).unwrap();
        assert_eq!(opts.max_write_bytes, 512 * 1024);
        let opts = MountOptions::parse(&["max_write=1048576"]).unwrap();
        assert_eq!(opts.max_write_bytes, 1 << 20);
        assert!(MountOptions::parse(&["max_write=2M"]).is_err());
        assert!(MountOptions::parse(&["max_write=100"]).is_err());
        assert!(MountOptions::parse(&["max_write=lots"]).is_err());
    }

    #[test]
    fn idle_poll_defaults_to_off_and_takes_on_or_off() {
        let opts = MountOptions::parse(&["rw"]).unwrap();
        assert!(!opts.idle_poll);
        assert!(!opts.idle_poll_given);
        assert!(!MountOptions::default().idle_poll);
        let opts = MountOptions::parse(&["idle_poll=on"]).unwrap();
        assert!(opts.idle_poll);
        assert!(opts.idle_poll_given);
        let opts = MountOptions::parse(&["idle_poll=on,idle_poll=off"]).unwrap();
        assert!(!opts.idle_poll);
        assert!(opts.idle_poll_given);
        let opts = MountOptions::parse(&["idle_poll=off,idle_poll=on"]).unwrap();
        assert!(opts.idle_poll);
        let err = MountOptions::parse(&["idle_poll=yes"]).unwrap_err();
        assert!(err.0.contains("must be on or off"), "{err}");
        assert!(MountOptions::parse(&["idle_poll"]).is_err());
    }

    #[test]
    fn max_readahead_defaults_to_one_mebibyte_and_accepts_zero_to_sixteen() {
        let opts = MountOptions::default();
        assert_eq!(opts.max_readahead_bytes, 1 << 20);
        assert!(!opts.max_readahead_given);
        let opts = MountOptions::parse(&["max_readahead=0"]).unwrap();
        assert_eq!(opts.max_readahead_bytes, 0);
        assert!(opts.max_readahead_given);
        let opts = MountOptions::parse(&["max_readahead=16M"]).unwrap();
        assert_eq!(opts.max_readahead_bytes, 16 << 20);
        let err = MountOptions::parse(&["max_readahead=17M"]).unwrap_err();
        assert!(err.0.contains("at most 16777216"), "{err}");
        assert!(MountOptions::parse(&["max_readahead"]).is_err());
        assert!(MountOptions::parse(&["max_readahead=fast"]).is_err());
    }

    #[test]
    fn threads_and_timeouts_are_parsed() {
        let opts = MountOptions::parse(&["threads=3,attr_timeout=0.5,entry_timeout=0"]).unwrap();
        assert_eq!(opts.thread_count(), 3);
        assert_eq!(opts.attr_timeout, Duration::from_millis(500));
        assert_eq!(opts.entry_timeout, Duration::ZERO);
        assert!(MountOptions::parse(&["threads=0"]).is_err());
        assert!(MountOptions::parse(&["attr_timeout=-1"]).is_err());
        assert!(MountOptions::parse(&["attr_timeout"]).is_err());
    }

    #[test]
    fn cache_modes_are_parsed_and_direct_ones_exclude_writeback_cache() {
        let cache = |opts: &str| MountOptions::parse(&[opts]).map(|o| o.cache);
        assert_eq!(cache("rw"), Ok(CacheMode::Auto));
        assert_eq!(cache("cache=auto"), Ok(CacheMode::Auto));
        assert_eq!(cache("cache=page"), Ok(CacheMode::Page));
        assert_eq!(cache("cache=direct"), Ok(CacheMode::Direct));
        assert_eq!(cache("direct_io"), Ok(CacheMode::Direct));
        assert_eq!(cache("direct_io,nodirect_io"), Ok(CacheMode::Page));
        assert_eq!(cache("cache=direct,cache=auto"), Ok(CacheMode::Auto));
        assert!(cache("cache").is_err());
        assert!(cache("cache=never").is_err());
        assert!(cache("direct_io=1").is_err());
        // writeback_cache needs cached writes: the default gives way, an
        // explicit direct mode is refused.
        assert_eq!(cache("writeback_cache"), Ok(CacheMode::Page));
        assert_eq!(cache("cache=page,writeback_cache"), Ok(CacheMode::Page));
        for direct in ["direct_io", "cache=direct", "cache=auto"] {
            let err = MountOptions::parse(&[direct, "writeback_cache"]).unwrap_err();
            assert!(err.to_string().contains("exclude"), "{direct}: {err}");
        }
    }

    #[test]
    fn cache_modes_choose_by_access_mode() {
        use libc::{O_APPEND, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
        for flags in [O_RDONLY, O_WRONLY, O_RDWR, O_WRONLY | O_APPEND | O_TRUNC] {
            assert!(!CacheMode::Page.bypasses_page_cache(flags));
            assert!(CacheMode::Direct.bypasses_page_cache(flags));
            assert_eq!(
                CacheMode::Auto.bypasses_page_cache(flags),
                flags != O_RDONLY
            );
        }
    }

    #[test]
    fn writeback_cache_can_be_switched_on_and_off() {
        assert!(
            MountOptions::parse(&["writeback_cache"])
                .unwrap()
                .writeback_cache
        );
        assert!(
            !MountOptions::parse(&["writeback_cache,nowriteback_cache"])
                .unwrap()
                .writeback_cache
        );
    }

    #[test]
    fn subtype_other_than_cowdax_is_rejected() {
        assert!(MountOptions::parse(&["subtype=cowdax"]).is_ok());
        assert!(MountOptions::parse(&["subtype=ext4"]).is_err());
    }

    #[test]
    fn fsname_is_kept() {
        let opts = MountOptions::parse(&["fsname=/dev/pmem0"]).unwrap();
        assert_eq!(opts.fsname.as_deref(), Some("/dev/pmem0"));
    }

    #[test]
    fn allow_other_without_permission_checks_is_refused() {
        assert!(MountOptions::parse(&["allow_other,no_default_permissions"]).is_err());
        let opts = MountOptions::parse(&["no_default_permissions"]).unwrap();
        assert!(!opts.default_permissions);
    }

    #[test]
    fn options_shown_in_proc_mounts_are_accepted_back() {
        let opts = MountOptions::parse(&[
            "remount,ro,nosuid,nodev,relatime,user_id=0,group_id=0,default_permissions,allow_other",
        ])
        .unwrap();
        assert!(opts.remount && opts.read_only);
    }

    #[test]
    fn remount_is_recognised() {
        assert!(MountOptions::parse(&["remount,ro"]).unwrap().remount);
        assert!(!MountOptions::parse(&["ro"]).unwrap().remount);
    }

    #[test]
    fn auto_unmount_needs_allow_other_or_allow_root() {
        assert!(MountOptions::parse(&["auto_unmount"]).is_err());
        assert!(MountOptions::parse(&["auto_unmount,allow_root"]).is_ok());
    }
}
