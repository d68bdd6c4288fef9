//! `cowdax generate man DIR` and `cowdax generate completions DIR`: the
//! manual pages and shell completions that packaging (tools/install.sh,
//! the Debian package) installs.
//!
//! What clap knows (names, synopses, options, their help, the subcommand
//! list, the `after_help` notes and examples) is generated with
//! clap_mangen and clap_complete from the same `Command` tree that parses
//! the command line, so a page cannot miss an option. What clap does not
//! know (the `-o` mount options, fstab, fsck's exit codes, the
//! libcowdax_preload page) is hand-written roff in `man/*.roff`, compiled
//! into the binary with `include_str!`: roff is reviewed as roff there, and
//! an installed `cowdax` generates its pages without a source tree.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Command, Subcommand};
use clap_complete::Shell;

/// The command trees of the three programs (`cowdax`, `mkfs.cowdax`,
/// `fsck.cowdax`), handed in by the dispatcher that defines them
/// (`cli::programs()`), so that this module does not import it back.
pub struct Programs {
    pub cowdax: Command,
    pub mkfs: Command,
    pub fsck: Command,
}

/// Hand-written sections (roff), appended after the generated ones.
/// The `-o` options and the fstab form: in cowdax(8) and cowdax-mount(8).
const MOUNT_OPTIONS_ROFF: &str = include_str!("../../man/mount-options.roff");
/// Exit status and examples of `cowdax mount`.
const MOUNT_ROFF: &str = include_str!("../../man/mount-exit-status.roff");
const FSCK_ROFF: &str = include_str!("../../man/fsck-exit-status.roff");
const COWDAX_ROFF: &str = include_str!("../../man/cowdax.roff");
/// The whole libcowdax_preload(8) page (no clap command behind it).
const PRELOAD_PAGE: &str = include_str!("../../man/libcowdax_preload.8");

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: GenerateCmd,
}

#[derive(Subcommand, Debug)]
enum GenerateCmd {
    /// Write every manual page to DIR/man8/NAME.8.
    Man {
        /// Output directory (man8/ is created in it).
        dir: PathBuf,
    },
    /// Write bash, zsh and fish completions under DIR
    /// (bash-completion/completions/cowdax, zsh/vendor-completions/_cowdax,
    /// fish/vendor_completions.d/cowdax.fish).
    Completions {
        /// Output directory.
        dir: PathBuf,
    },
}

pub fn run(args: &GenerateArgs, programs: &Programs) -> i32 {
    let result = match &args.what {
        GenerateCmd::Man { dir } => write_man_pages(programs, dir),
        GenerateCmd::Completions { dir } => write_completions(programs, dir),
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("cowdax generate: {err:#}");
            1
        }
    }
}

/// One manual page: its file name (`NAME.8`) and its roff text.
pub struct Page {
    pub file_name: String,
    pub text: String,
}

/// A page generated from a clap command.
struct Spec {
    /// Page name (file NAME.8).
    name: String,
    /// How the command is run (the synopsis).
    bin_name: String,
    cmd: Command,
    notes: Notes,
    /// Hand-written roff sections appended to the generated ones.
    hand_written: &'static [&'static str],
}

/// The pages generated from clap commands, and the `cowdax-NAME` pages
/// that only point to another page (name, target).
fn specs(programs: &Programs) -> (Vec<Spec>, Vec<(String, &'static str)>) {
    // Without clap's `help` subcommand: it would be listed as a page
    // cowdax-help(8) that does not exist; `--help` is documented.
    let mut cli = programs.cowdax.clone().disable_help_subcommand(true);
    cli.build();
    let mut specs = Vec::new();
    let mut redirects = Vec::new();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("cowdax-{}", sub.get_name());
        let bin_name = format!("cowdax {}", sub.get_name());
        match sub.get_name() {
            // Documented under their own program names; the cowdax-NAME
            // page (which the subcommand list names) points there.
            "mkfs" => redirects.push((name, "mkfs.cowdax")),
            "fsck" => redirects.push((name, "fsck.cowdax")),
            // The real parser of `cowdax mount` is its own command (the
            // subcommand only passes its arguments through).
            "mount" => specs.push(Spec {
                name,
                bin_name,
                cmd: super::mount::command(),
                notes: Notes::Skip,
                hand_written: &[MOUNT_OPTIONS_ROFF, MOUNT_ROFF],
            }),
            _ => push_with_subcommands(&mut specs, name, bin_name, sub.clone()),
        }
    }
    specs.insert(
        0,
        Spec {
            name: "cowdax".to_string(),
            bin_name: "cowdax".to_string(),
            cmd: cli,
            notes: Notes::Include,
            hand_written: &[MOUNT_OPTIONS_ROFF, COWDAX_ROFF],
        },
    );
    specs.push(Spec {
        name: "mkfs.cowdax".to_string(),
        bin_name: "mkfs.cowdax".to_string(),
        cmd: programs.mkfs.clone(),
        notes: Notes::Include,
        hand_written: &[],
    });
    specs.push(Spec {
        name: "fsck.cowdax".to_string(),
        bin_name: "fsck.cowdax".to_string(),
        cmd: programs.fsck.clone(),
        notes: Notes::Skip,
        hand_written: &[FSCK_ROFF],
    });
    (specs, redirects)
}

/// The page of `cmd` and, if it has subcommands of its own (`cowdax X Y`),
/// one page for each of them (`cowdax-X-Y`), as its SUBCOMMANDS section
/// names them.
fn push_with_subcommands(specs: &mut Vec<Spec>, name: String, bin_name: String, cmd: Command) {
    let cmd = cmd.disable_help_subcommand(true);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        push_with_subcommands(
            specs,
            format!("{name}-{}", sub.get_name()),
            format!("{bin_name} {}", sub.get_name()),
            sub.clone(),
        );
    }
    specs.push(Spec {
        name,
        bin_name,
        cmd,
        notes: Notes::Include,
        hand_written: &[],
    });
}

/// Each page generated from a clap command: its name (file NAME.8) and
/// the command whose options it documents. Tests check the pages against
/// these.
pub fn documented_commands(programs: &Programs) -> Vec<(String, Command)> {
    specs(programs)
        .0
        .into_iter()
        .map(|spec| (spec.name, spec.cmd))
        .collect()
}

/// Every page `cowdax generate man` writes.
pub fn man_pages(programs: &Programs) -> Vec<Page> {
    let (specs, redirects) = specs(programs);
    // cowdax(8) refers to every other page (a new subcommand's too).
    let mut see_also: Vec<String> = specs
        .iter()
        .map(|spec| spec.name.clone())
        .filter(|name| name != "cowdax")
        .chain(["libcowdax_preload".to_string()])
        .map(|name| format!(".BR {} (8),\n", name.replace('-', "\\-")))
        .collect();
    see_also.sort();
    let mut pages: Vec<Page> = specs
        .into_iter()
        .map(|spec| {
            page(
                spec.cmd,
                &spec.name,
                &spec.bin_name,
                spec.notes,
                spec.hand_written,
            )
        })
        .collect();
    if let Some(cowdax) = pages.iter_mut().find(|page| page.file_name == "cowdax.8") {
        cowdax.text.push_str(".SH SEE ALSO\n");
        cowdax.text.push_str(&see_also.concat());
        cowdax
            .text
            .push_str(".BR mount.fuse3 (8),\n.BR fstab (5)\n");
    }
    pages.extend(
        redirects
            .iter()
            .map(|(name, target)| redirect(name, target)),
    );
    pages.push(Page {
        file_name: "libcowdax_preload.8".to_string(),
        text: PRELOAD_PAGE.to_string(),
    });
    pages
}

/// Whether the command's `after_help` (notes, examples) goes into the page.
/// Skipped where a hand-written section says the same in full.
#[derive(PartialEq)]
enum Notes {
    Include,
    Skip,
}

fn page(cmd: Command, name: &str, bin_name: &str, notes: Notes, hand_written: &[&str]) -> Page {
    let cmd = cmd
        .display_name(name.to_string())
        .bin_name(bin_name.to_string());
    let man = clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section("8")
        .source(format!("cowdax {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    let mut out: Vec<u8> = Vec::new();
    man.render_title(&mut out).expect("writing to a Vec");
    man.render_name_section(&mut out).expect("writing to a Vec");
    man.render_synopsis_section(&mut out)
        .expect("writing to a Vec");
    man.render_description_section(&mut out)
        .expect("writing to a Vec");
    if cmd.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(&mut out)
            .expect("writing to a Vec");
    }
    if cmd.get_subcommands().any(|sub| !sub.is_hide_set()) {
        man.render_subcommands_section(&mut out)
            .expect("writing to a Vec");
    }
    let mut text = String::from_utf8(out).expect("clap_mangen writes UTF-8");
    if notes == Notes::Include {
        if let Some(after) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
            text.push_str(&notes_section(&after.to_string()));
        }
    }
    for section in hand_written {
        text.push_str(section);
    }
    if name != "cowdax" {
        text.push_str(".SH SEE ALSO\n.BR cowdax (8)\n");
    }
    Page {
        file_name: format!("{name}.8"),
        text: escape_non_ascii(&text),
    }
}

/// The `after_help` text as a NOTES section, preformatted: its lines are
/// laid out for a terminal (aligned example columns), which filling would
/// destroy.
fn notes_section(after_help: &str) -> String {
    let mut roff = String::from(".SH NOTES\n.nf\n");
    for line in after_help.lines() {
        roff.push_str(&escape_line(line));
        roff.push('\n');
    }
    roff.push_str(".fi\n");
    roff
}

/// One line of text safe for roff: backslashes escaped, a leading `.` or
/// `'` (a request) neutralised.
fn escape_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Non-ASCII characters (clap's help uses `…`) as groff's `\[uXXXX]`
/// escapes: troff reads its input as Latin-1 unless preconv ran first,
/// so raw UTF-8 renders wrongly under plain `groff -man`.
fn escape_non_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out
}

/// A page that is the page `target` (man(1) follows `.so`).
fn redirect(name: &str, target: &str) -> Page {
    Page {
        file_name: format!("{name}.8"),
        text: format!(".so man8/{target}.8\n"),
    }
}

fn write_man_pages(programs: &Programs, dir: &Path) -> anyhow::Result<()> {
    let man8 = dir.join("man8");
    std::fs::create_dir_all(&man8).with_context(|| format!("creating {}", man8.display()))?;
    for page in man_pages(programs) {
        let path = man8.join(&page.file_name);
        std::fs::write(&path, page.text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Where each shell's completion files go under DIR (the layout of
/// /usr/share: bash-completion's, Debian zsh's vendor directory, fish's),
/// as a function of the program name. Shells load completions lazily by
/// the name of the command being completed, so mkfs.cowdax and
/// fsck.cowdax get files of their own next to cowdax's.
const COMPLETION_DIRS: [(Shell, &str, &str, &str); 3] = [
    (Shell::Bash, "bash-completion/completions", "", ""),
    (Shell::Zsh, "zsh/vendor-completions", "_", ""),
    (Shell::Fish, "fish/vendor_completions.d", "", ".fish"),
];

/// The program names completed, each with its command tree.
pub fn completion_commands(programs: &Programs) -> Vec<(&'static str, Command)> {
    // `cowdax mount` passes its arguments to its own parser; complete
    // that parser's options rather than the pass-through argument.
    let cowdax = programs.cowdax.clone().mut_subcommand("mount", |sub| {
        let mount = super::mount::command().name("mount");
        match sub.get_about() {
            Some(about) => mount.about(about.clone()),
            None => mount,
        }
    });
    vec![
        ("cowdax", cowdax),
        ("mkfs.cowdax", programs.mkfs.clone()),
        ("fsck.cowdax", programs.fsck.clone()),
    ]
}

/// The completion script of `program` for `shell`.
pub fn completion_script(shell: Shell, program: &str, mut cmd: Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, program, &mut out);
    out
}

/// The files `cowdax generate completions DIR` writes, relative to DIR.
pub fn completion_files(programs: &Programs) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for (shell, dir, prefix, suffix) in COMPLETION_DIRS {
        for (program, cmd) in completion_commands(programs) {
            let path = Path::new(dir).join(format!("{prefix}{program}{suffix}"));
            files.push((path, completion_script(shell, program, cmd)));
        }
    }
    files
}

fn write_completions(programs: &Programs, dir: &Path) -> anyhow::Result<()> {
    for (relative, script) in completion_files(programs) {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_lines_cannot_become_roff_requests() {
        let roff = notes_section(".TH evil\n'br\na \\fB b\nplain");
        assert_eq!(
            roff,
            ".SH NOTES\n.nf\n\\&.TH evil\n\\&'br\na \\efB b\nplain\n.fi\n"
        );
    }

    #[test]
    fn non_ascii_becomes_groff_escapes() {
        assert_eq!(escape_non_ascii("a … b"), "a \\[u2026] b");
    }

    #[test]
    fn nested_subcommands_get_pages_of_their_own() {
        let nested = Command::new("cowdax").subcommand(
            Command::new("shim")
                .about("system-wide shim")
                .subcommand(Command::new("enable").arg(clap::Arg::new("x").long("xx"))),
        );
        let programs = Programs {
            cowdax: nested,
            mkfs: Command::new("mkfs.cowdax"),
            fsck: Command::new("fsck.cowdax"),
        };
        let pages = man_pages(&programs);
        let page = |name: &str| {
            pages
                .iter()
                .find(|p| p.file_name == name)
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert!(page("cowdax-shim.8")
            .text
            .contains("cowdax\\-shim\\-enable(8)"));
        assert!(page("cowdax-shim-enable.8").text.contains("\\-\\-xx"));
        assert!(!pages.iter().any(|p| p.file_name.contains("help")));
    }

    #[test]
    fn every_page_has_a_unique_file_name_and_a_title() {
        let pages = man_pages(&crate::cli::programs());
        let mut names: Vec<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), pages.len());
        for page in &pages {
            assert!(
                page.text.contains("\n.TH ")
                    || page.text.starts_with(".TH ")
                    || page.text.starts_with(".so man8/"),
                "{}",
                page.file_name
            );
        }
    }
}
