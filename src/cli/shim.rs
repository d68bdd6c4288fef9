//! `cowdax shim enable|disable|status`: the system-wide LD_PRELOAD shim
//! through an entry in `/etc/ld.so.preload` (docs/REFLINK.md, "System-wide
//! shim").
//!
//! glibc ignores `LD_PRELOAD` in setuid programs (`su`, `sudo`) and in
//! everything they start, but loads the libraries listed in
//! `/etc/ld.so.preload` into every dynamically linked process, setuid ones
//! included. This command edits that file: it adds or removes the absolute
//! path of `libcowdax_preload.so`, preserving every other entry and comment,
//! and replaces the file atomically (temporary file, fsync, rename).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Args, Subcommand};

/// The file glibc's dynamic loader reads at every program start.
pub const LD_SO_PRELOAD: &str = "/etc/ld.so.preload";
/// The shim's file name.
pub const LIBRARY_NAME: &str = "libcowdax_preload.so";

/// Success (`enable`/`disable` done or nothing to do; `status`: enabled).
pub const EXIT_OK: i32 = 0;
/// Failure: not root, no usable library, I/O error, or a usage error.
pub const EXIT_FAILURE: i32 = 1;
/// `status` only: the shim is not in /etc/ld.so.preload.
pub const EXIT_DISABLED: i32 = 3;

const AFTER_HELP: &str = "\
Trust: an entry in /etc/ld.so.preload loads the library into every
dynamically linked program on the machine, setuid programs (su, sudo, passwd)
and root's processes included. Whoever can modify the library file or a
directory above it can then run code as root, so `enable` accepts only a
regular file owned by root in root-owned directories that nobody else can
write. The shim itself only acts on the four sharing ioctls (FICLONE,
FICLONERANGE, FIDEDUPERANGE, FS_IOC_FIEMAP) on descriptors that the
program already has open on a cowdax mount, translating them into cowdax's
private ioctls, which the daemon checks as the kernel would; everything else
goes to the real ioctl untouched.

Exit codes: 0 success (status: enabled); 1 error (not root, library missing
or not loadable, I/O error, usage); 3 status: disabled.

Examples:
  cowdax shim enable
  cowdax shim enable --library /usr/lib/x86_64-linux-gnu/libcowdax_preload.so
  cowdax shim status
  cowdax shim disable";

#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct ShimArgs {
    #[command(subcommand)]
    pub action: ShimAction,
}

#[derive(Subcommand, Debug)]
pub enum ShimAction {
    /// Add the shim to /etc/ld.so.preload (root only; idempotent).
    #[command(after_help = AFTER_HELP)]
    Enable {
        /// The library to preload (default: libcowdax_preload.so in the
        /// lib directory, or its multiarch subdirectory, of the prefix the
        /// cowdax binary is installed in).
        #[arg(long, value_name = "PATH")]
        library: Option<PathBuf>,
    },
    /// Remove the shim from /etc/ld.so.preload (root only); other entries
    /// stay. Without --library, every entry named libcowdax_preload.so goes.
    #[command(after_help = AFTER_HELP)]
    Disable {
        /// Remove only this entry.
        #[arg(long, value_name = "PATH")]
        library: Option<PathBuf>,
    },
    /// Say whether the shim is enabled, and with which path.
    #[command(after_help = AFTER_HELP)]
    Status,
}

pub fn run(args: &ShimArgs) -> i32 {
    let result = match &args.action {
        ShimAction::Enable { library } => enable(library.as_deref()),
        ShimAction::Disable { library } => disable(library.as_deref()),
        ShimAction::Status => return status(),
    };
    match result {
        Ok(message) => {
            println!("{message}");
            EXIT_OK
        }
        Err(message) => {
            eprintln!("cowdax shim: {message}");
            EXIT_FAILURE
        }
    }
}

// ------------------------------------------------------------- the file

/// The entries of an ld.so.preload text: glibc drops `#` comments to the
/// end of the line and splits the rest at blanks, tabs, newlines and colons.
pub fn entries(text: &[u8]) -> Vec<&[u8]> {
    text.split(|&b| b == b'\n')
        .flat_map(|line| {
            let code = line.split(|&b| b == b'#').next().unwrap_or(&[]);
            code.split(|&b| is_separator(b))
                .filter(|token| !token.is_empty())
        })
        .collect()
}

fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b':' | b'\r')
}

/// `text` with `entry` appended on a line of its own, unless it is already
/// an entry (then `None`: nothing to change).
pub fn with_entry(text: &[u8], entry: &[u8]) -> Option<Vec<u8>> {
    if entries(text).contains(&entry) {
        return None;
    }
    let mut out = text.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(entry);
    out.push(b'\n');
    Some(out)
}

/// `text` without the entries `remove` selects (`None` when there is none).
/// Other entries and comments stay; a line left with nothing is dropped;
/// a line that also had other entries keeps them, blank-separated.
pub fn without_entries(text: &[u8], remove: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    if !entries(text).into_iter().any(&remove) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len());
    let ends_with_newline = text.ends_with(b"\n");
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    if ends_with_newline {
        lines.pop();
    }
    for line in lines {
        let (code, comment) = match line.iter().position(|&b| b == b'#') {
            Some(at) => line.split_at(at),
            None => (line, &[][..]),
        };
        let tokens: Vec<&[u8]> = code
            .split(|&b| is_separator(b))
            .filter(|t| !t.is_empty())
            .collect();
        if !tokens.iter().any(|t| remove(t)) {
            out.extend_from_slice(line);
            out.push(b'\n');
            continue;
        }
        let kept: Vec<&[u8]> = tokens.into_iter().filter(|t| !remove(t)).collect();
        if kept.is_empty() && comment.is_empty() {
            continue;
        }
        out.extend_from_slice(&kept.join(&b' '));
        if !kept.is_empty() && !comment.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(comment);
        out.push(b'\n');
    }
    Some(out)
}

/// Whether an entry names the cowdax shim (by file name).
fn is_shim_entry(entry: &[u8]) -> bool {
    Path::new(OsStr::from_bytes(entry)).file_name() == Some(OsStr::new(LIBRARY_NAME))
}

fn read_preload() -> Result<Option<Vec<u8>>, String> {
    match std::fs::symlink_metadata(LD_SO_PRELOAD) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(format!(
                "{LD_SO_PRELOAD} is a symbolic link; edit its target by hand"
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{LD_SO_PRELOAD}: {e}")),
    }
    std::fs::read(LD_SO_PRELOAD)
        .map(Some)
        .map_err(|e| format!("read {LD_SO_PRELOAD}: {e}"))
}

/// Replaces /etc/ld.so.preload with `content` (mode 0644), or removes it
/// when `content` is `None`: temporary file in /etc, fsync, rename, fsync
/// of /etc, so a crash leaves the old or the new file, never a torn one.
fn write_preload(content: Option<&[u8]>) -> Result<(), String> {
    let path = Path::new(LD_SO_PRELOAD);
    let dir = path.parent().unwrap_or(Path::new("/"));
    match content {
        None => std::fs::remove_file(path).map_err(|e| format!("remove {LD_SO_PRELOAD}: {e}"))?,
        Some(bytes) => {
            let tmp = dir.join(format!(".ld.so.preload.cowdax-{}", std::process::id()));
            let result = (|| {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&tmp)?;
                file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
                file.write_all(bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, path)
            })();
            if let Err(e) = result {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!("write {LD_SO_PRELOAD}: {e}"));
            }
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

// ------------------------------------------------------------ the library

/// Where `enable` looks without --library: `PREFIX/lib/TRIPLET/` and
/// `PREFIX/lib/`, PREFIX being the directory above the binary's `bin/`.
pub fn default_candidates(exe: &Path) -> Vec<PathBuf> {
    let Some(prefix) = exe.parent().and_then(Path::parent) else {
        return Vec::new();
    };
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    vec![
        prefix.join("lib").join(&triplet).join(LIBRARY_NAME),
        prefix.join("lib").join(LIBRARY_NAME),
    ]
}

fn default_library() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locate the cowdax binary: {e}"))?;
    let candidates = default_candidates(&exe);
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!(
                "{LIBRARY_NAME} not found (looked for {}); give its path with --library",
                list.join(" and ")
            )
        })
}

/// An absolute path without `.`/`..` and without characters ld.so would
/// split at.
fn entry_path(library: &Path) -> Result<PathBuf, String> {
    let absolute =
        std::path::absolute(library).map_err(|e| format!("{}: {e}", library.display()))?;
    let bytes = absolute.as_os_str().as_bytes();
    if bytes
        .iter()
        .any(|&b| is_separator(b) || b == b'\n' || b == b'#')
    {
        return Err(format!(
            "{}: ld.so.preload cannot hold a path with blanks, colons or '#'",
            absolute.display()
        ));
    }
    Ok(absolute)
}

/// The library and every directory above it: owned by root, not writable
/// by group or others (directories with the sticky bit excepted) — else
/// a user could swap the code every setuid program would run.
fn check_trusted(library: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(library).map_err(|e| format!("{}: {e}", library.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", library.display()));
    }
    let mut checked: Vec<(PathBuf, std::fs::Metadata)> = vec![(library.to_path_buf(), meta)];
    let canonical =
        std::fs::canonicalize(library).map_err(|e| format!("{}: {e}", library.display()))?;
    // The directories above the path as written (where a symbolic link
    // could be swapped) and above the file it resolves to.
    for start in [library, canonical.as_path()] {
        let mut dir = start.parent();
        while let Some(d) = dir {
            let meta = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
            checked.push((d.to_path_buf(), meta));
            dir = d.parent();
        }
    }
    if canonical != library {
        let meta =
            std::fs::metadata(&canonical).map_err(|e| format!("{}: {e}", canonical.display()))?;
        checked.push((canonical.clone(), meta));
    }
    for (path, meta) in checked {
        let mode = meta.mode();
        let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
        if meta.uid() != 0 {
            return Err(format!(
                "{}: not owned by root; a library in /etc/ld.so.preload must be",
                path.display()
            ));
        }
        if mode & 0o022 != 0 && !sticky_dir {
            return Err(format!(
                "{}: writable by group or others; a library in /etc/ld.so.preload must not be",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Runs `cat /proc/self/maps` with `LD_PRELOAD=library` (or with nothing
/// preloaded but /etc/ld.so.preload, for `library == None`): it must exit 0,
/// print nothing on stderr (ld.so only warns about a library it cannot
/// load) and, when `library` is given, show the library mapped.
fn check_loadable(library: Option<&Path>) -> Result<(), String> {
    let mut command = Command::new("/bin/cat");
    command
        .arg("/proc/self/maps")
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null());
    if let Some(lib) = library {
        command.env("LD_PRELOAD", lib);
    }
    let output = command
        .output()
        .map_err(|e| format!("run /bin/cat to test the library: {e}"))?;
    let what = match library {
        Some(lib) => format!("LD_PRELOAD={} /bin/cat", lib.display()),
        None => "/bin/cat with the new /etc/ld.so.preload".to_string(),
    };
    if !output.status.success() || !output.stderr.is_empty() {
        return Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    if let Some(lib) = library {
        let canonical =
            std::fs::canonicalize(lib).map_err(|e| format!("{}: {e}", lib.display()))?;
        let maps = String::from_utf8_lossy(&output.stdout);
        let wanted = canonical.to_string_lossy();
        if !maps.lines().any(|l| l.ends_with(&*wanted)) {
            return Err(format!("{what}: the library was not loaded"));
        }
    }
    Ok(())
}

fn require_root(action: &str) -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(format!(
            "{action} edits {LD_SO_PRELOAD} and must run as root (e.g. `sudo cowdax shim {action}`)"
        ))
    }
}

// ------------------------------------------------------------- commands

fn enable(library: Option<&Path>) -> Result<String, String> {
    require_root("enable")?;
    let library = match library {
        Some(path) => path.to_path_buf(),
        None => default_library()?,
    };
    let library = entry_path(&library)?;
    check_trusted(&library)?;
    check_loadable(Some(&library))?;
    let old = read_preload()?;
    let entry = library.as_os_str().as_bytes();
    let others: Vec<String> = entries(old.as_deref().unwrap_or(&[]))
        .into_iter()
        .filter(|e| is_shim_entry(e) && *e != entry)
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    for other in &others {
        eprintln!(
            "cowdax shim: note: {LD_SO_PRELOAD} also lists {other} (left alone; \
             `cowdax shim disable --library {other}` removes it)"
        );
    }
    let Some(new) = with_entry(old.as_deref().unwrap_or(&[]), entry) else {
        return Ok(format!(
            "already enabled: {} is in {LD_SO_PRELOAD}",
            library.display()
        ));
    };
    write_preload(Some(&new))?;
    // Every program now loads the library: if one cannot start, undo.
    if let Err(e) = check_loadable(None) {
        let undo = write_preload(old.as_deref());
        return Err(format!(
            "{e}; {LD_SO_PRELOAD} {}",
            match undo {
                Ok(()) => "restored".to_string(),
                Err(u) => format!("NOT restored: {u}"),
            }
        ));
    }
    Ok(format!(
        "enabled: {} added to {LD_SO_PRELOAD}",
        library.display()
    ))
}

fn disable(library: Option<&Path>) -> Result<String, String> {
    require_root("disable")?;
    let wanted = library.map(entry_path).transpose()?;
    let Some(old) = read_preload()? else {
        return Ok(format!("not enabled: there is no {LD_SO_PRELOAD}"));
    };
    let remove = |entry: &[u8]| match &wanted {
        Some(path) => entry == path.as_os_str().as_bytes(),
        None => is_shim_entry(entry),
    };
    let removed: Vec<String> = entries(&old)
        .into_iter()
        .filter(|e| remove(e))
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    let Some(new) = without_entries(&old, remove) else {
        return Ok(format!("not enabled: no such entry in {LD_SO_PRELOAD}"));
    };
    // Nothing but blanks left: the same to ld.so as no file at all.
    let empty = new.iter().all(u8::is_ascii_whitespace);
    write_preload(if empty { None } else { Some(&new) })?;
    Ok(format!(
        "disabled: {} removed from {LD_SO_PRELOAD}{}",
        removed.join(", "),
        if empty { " (now empty: removed)" } else { "" }
    ))
}

fn status() -> i32 {
    let text = match read_preload() {
        Ok(text) => text.unwrap_or_default(),
        Err(message) => {
            eprintln!("cowdax shim: {message}");
            return EXIT_FAILURE;
        }
    };
    let shims: Vec<String> = entries(&text)
        .into_iter()
        .filter(|e| is_shim_entry(e))
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    if shims.is_empty() {
        println!("disabled: no {LIBRARY_NAME} in {LD_SO_PRELOAD}");
        return EXIT_DISABLED;
    }
    for shim in &shims {
        let state = if Path::new(shim).is_file() {
            ""
        } else {
            " (MISSING: ld.so warns at every program start)"
        };
        println!("enabled: {shim}{state}");
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_follow_glibc_comments_and_separators() {
        let text = b"# header\n/a.so /b.so:/c.so\t/d.so # tail /x.so\n\n/e.so";
        assert_eq!(
            entries(text),
            vec![&b"/a.so"[..], b"/b.so", b"/c.so", b"/d.so", b"/e.so"]
        );
    }

    #[test]
    fn enabling_appends_once_and_keeps_other_entries() {
        let lib = b"/usr/lib/libcowdax_preload.so";
        assert_eq!(
            with_entry(b"", lib).as_deref(),
            Some(&b"/usr/lib/libcowdax_preload.so\n"[..])
        );
        let new = with_entry(b"# keep\n/other.so", lib).expect("added");
        assert_eq!(new, b"# keep\n/other.so\n/usr/lib/libcowdax_preload.so\n");
        assert_eq!(with_entry(&new, lib), None);
    }

    #[test]
    fn disabling_removes_only_the_shim_entries() {
        let text = b"# keep\n/other.so\n/usr/lib/libcowdax_preload.so\n/x.so /opt/libcowdax_preload.so # c\n";
        let new = without_entries(text, is_shim_entry).expect("removed");
        assert_eq!(new, b"# keep\n/other.so\n/x.so # c\n");
        assert_eq!(without_entries(&new, is_shim_entry), None);
        let only =
            without_entries(b"/usr/lib/libcowdax_preload.so\n", is_shim_entry).expect("removed");
        assert!(only.is_empty());
        let exact = without_entries(text, |e| e == b"/opt/libcowdax_preload.so").expect("one");
        assert_eq!(
            exact,
            b"# keep\n/other.so\n/usr/lib/libcowdax_preload.so\n/x.so # c\n"
        );
    }

    #[test]
    fn default_library_is_looked_for_in_the_install_prefix() {
        let found = default_candidates(Path::new("/usr/local/bin/cowdax"));
        assert_eq!(
            found[0],
            Path::new(&format!(
                "/usr/local/lib/{}-linux-gnu/libcowdax_preload.so",
                std::env::consts::ARCH
            ))
        );
        assert_eq!(found[1], Path::new("/usr/local/lib/libcowdax_preload.so"));
    }

    #[test]
    fn entry_paths_are_absolute_and_unsplittable() {
        assert!(entry_path(Path::new("/a b/libcowdax_preload.so")).is_err());
        assert!(entry_path(Path::new("/a:b/libcowdax_preload.so")).is_err());
        assert!(entry_path(Path::new("rel.so"))
            .expect("absolute")
            .is_absolute());
    }
}
