//! Manual pages, shell completions and `--version`, from the outside:
//! `cowdax generate man DIR` / `cowdax generate completions DIR` write what
//! packaging installs; every option clap parses and every mount option the
//! parser accepts is in the pages; every page renders without a warning.

mod cli_common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use cli_common::*;

/// Runs `cowdax generate WHAT DIR` into a new temporary directory.
fn generate(what: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = cowdax(&["generate", what, path_str(dir.path())]);
    assert_exit(&output, 0);
    dir
}

/// A page's roff source with the escapes clap_mangen and the hand-written
/// sections use for `-`, `\` and fonts undone, so option names can be searched.
fn page_text(man_dir: &Path, name: &str) -> String {
    let path = man_dir.join("man8").join(format!("{name}.8"));
    let roff = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("page {} is missing: {e}", path.display()));
    let mut text = roff.replace("\\-", "-").replace("\\&", "");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        text = text.replace(font, "");
    }
    text.replace("\\e", "\\")
}

/// Whether `word` occurs in `text` not as part of a longer name.
fn contains_word(text: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_name) && (!after.is_some_and(is_name) || word.ends_with('='))
    })
}

#[test]
fn every_option_of_every_command_appears_in_its_man_page() {
    let dir = generate("man");
    let commands = cowdax::cli::generate::documented_commands(&cowdax::cli::programs());
    let names: BTreeSet<&str> = commands.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "cowdax",
        "cowdax-mount",
        "cowdax-clone",
        "cowdax-dedupe",
        "mkfs.cowdax",
        "fsck.cowdax",
    ] {
        assert!(
            names.contains(expected),
            "no page for {expected}: {names:?}"
        );
    }
    let mut checked = 0;
    for (name, command) in &commands {
        let mut command = command.clone();
        command.build();
        // The OPTIONS section, where each option has its description (the
        // synopsis names them all too, without saying what they do).
        let page = page_text(dir.path(), name);
        let text = page
            .split(".SH OPTIONS\n")
            .nth(1)
            .and_then(|rest| rest.split("\n.SH ").next())
            .unwrap_or_else(|| panic!("{name}.8 has no OPTIONS section"));
        for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
            let mut spellings = Vec::new();
            if let Some(long) = arg.get_long() {
                spellings.push(format!("--{long}"));
            }
            if let Some(short) = arg.get_short() {
                spellings.push(format!("-{short}"));
            }
            if arg.is_positional() {
                let value_names = arg
                    .get_value_names()
                    .expect("positionals have a value name");
                spellings.extend(value_names.iter().map(|v| format!("<{v}>")));
            }
            assert!(
                !spellings.is_empty(),
                "{name}: {:?} has no spelling",
                arg.get_id()
            );
            for spelling in spellings {
                assert!(
                    contains_word(text, &spelling),
                    "{name}.8 does not describe {spelling} under OPTIONS"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} options checked");
}

#[test]
fn every_subcommand_has_a_man_page_named_in_cowdax_8() {
    let dir = generate("man");
    let top = page_text(dir.path(), "cowdax");
    let help = stdout(&cowdax(&["--help"]));
    let mut subcommands = 0;
    // The subcommands `cowdax --help` lists (indented "  NAME  about").
    let listed = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("--help lists commands");
    for line in listed.lines() {
        // A command's line is indented by two spaces; wrapped help deeper.
        let Some(sub) = line
            .strip_prefix("  ")
            .filter(|rest| !rest.starts_with(' '))
            .and_then(|rest| rest.split_whitespace().next())
        else {
            continue;
        };
        if sub == "help" {
            continue;
        }
        let page = format!("cowdax-{sub}");
        assert!(
            dir.path().join("man8").join(format!("{page}.8")).is_file(),
            "no page {page}.8"
        );
        assert!(
            top.contains(&format!("{page}(8)")),
            "cowdax.8 does not name {page}(8)"
        );
        subcommands += 1;
    }
    assert!(
        subcommands >= 10,
        "only {subcommands} subcommands listed:\n{help}"
    );
    assert!(
        !help.contains("generate"),
        "generate is for packaging, hidden:\n{help}"
    );
    assert!(dir.path().join("man8/libcowdax_preload.8").is_file());
}

/// The option names `MountOptions::apply` matches on (its top-level match
/// arms) and the prefixes and names `is_userspace_only` ignores, read from
/// the parser's source so that a new option cannot be left out of the pages.
fn mount_options_of_the_parser() -> BTreeSet<String> {
    let source = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/fuse/options.rs"))
        .expect("read options.rs");
    let mut names = BTreeSet::new();
    let quoted = |text: &str| -> Vec<String> {
        text.split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let userspace = source
        .split("fn is_userspace_only")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("is_userspace_only in options.rs");
    names.extend(quoted(userspace));
    let apply = source
        .split("    fn apply(")
        .nth(1)
        .and_then(|rest| rest.split("\n    }\n").next())
        .expect("MountOptions::apply in options.rs");
    for line in apply.lines() {
        // The arms of `match name` are indented by exactly 12 spaces;
        // deeper arms match values (`cache=auto`), not names.
        let Some(arm) = line.strip_prefix("            \"") else {
            continue;
        };
        if let Some((pattern, _)) = format!("\"{arm}").split_once("=>") {
            names.extend(quoted(pattern));
        }
    }
    names
}

#[test]
fn every_mount_option_the_parser_accepts_appears_in_the_man_pages() {
    let options = mount_options_of_the_parser();
    for sample in [
        "rw",
        "idle_poll",
        "no_writeback_cache",
        "defaults",
        "x-",
        "user_id=",
    ] {
        assert!(
            options.contains(sample),
            "parser scan missed {sample}: {options:?}"
        );
    }
    assert!(options.len() > 50, "only {} options found", options.len());
    let dir = generate("man");
    for page in ["cowdax", "cowdax-mount"] {
        let text = page_text(dir.path(), page);
        for option in &options {
            assert!(
                contains_word(&text, option),
                "{page}.8 does not document mount option {option}"
            );
        }
        for section in ["MOUNT OPTIONS", "FSTAB"] {
            assert!(
                text.contains(&format!(".SH {section}")),
                "{page}.8 lacks {section}"
            );
        }
        assert!(
            text.contains("fuse.cowdax  defaults"),
            "{page}.8 lacks the fstab line"
        );
    }
}

#[test]
fn fsck_page_lists_the_fsck_exit_codes() {
    let dir = generate("man");
    let text = page_text(dir.path(), "fsck.cowdax");
    let exit_status = text
        .split(".SH EXIT STATUS")
        .nth(1)
        .and_then(|rest| rest.split(".SH ").next())
        .expect("fsck.cowdax.8 has an EXIT STATUS section");
    for code in [0, 1, 4, 8, 16] {
        assert!(
            exit_status.contains(&format!(".B {code}\n")),
            "exit code {code} missing:\n{exit_status}"
        );
    }
    assert_eq!(
        fs::read_to_string(dir.path().join("man8/cowdax-fsck.8")).expect("cowdax-fsck.8"),
        ".so man8/fsck.cowdax.8\n"
    );
}

#[test]
fn every_man_page_renders_without_warnings() {
    let dir = generate("man");
    let mut pages: Vec<_> = fs::read_dir(dir.path().join("man8"))
        .expect("man8")
        .map(|entry| entry.expect("entry").path())
        .collect();
    pages.sort();
    assert!(pages.len() >= 14, "pages: {pages:?}");
    for page in &pages {
        let relative = page.strip_prefix(dir.path()).expect("under dir");
        // From the man root, as man(1) runs it, so `.so man8/…` resolves.
        let groff = Command::new("groff")
            .args(["-ww", "-man", "-Tutf8"])
            .arg(relative)
            .current_dir(dir.path())
            .output()
            .expect("run groff (tools/ci-deps.sh installs groff-base)");
        assert!(
            groff.status.success(),
            "groff failed on {}",
            relative.display()
        );
        assert!(
            groff.stderr.is_empty(),
            "groff warns on {}:\n{}",
            relative.display(),
            String::from_utf8_lossy(&groff.stderr)
        );
        assert!(
            groff.stdout.len() > 200,
            "{} renders empty",
            relative.display()
        );
        let man = Command::new("man")
            .arg("-l")
            .arg(relative)
            .env("MANWIDTH", "80")
            .env("MAN_DISABLE_SECCOMP", "1")
            .current_dir(dir.path())
            .output()
            .expect("run man (tools/ci-deps.sh installs man-db)");
        assert!(
            man.status.success() && man.stderr.is_empty(),
            "man -l {}: {:?}\n{}",
            relative.display(),
            man.status,
            String::from_utf8_lossy(&man.stderr)
        );
    }
}

#[test]
fn completions_are_written_for_bash_zsh_and_fish_and_every_program_name() {
    let dir = generate("completions");
    for (relative, marker) in [
        ("bash-completion/completions/cowdax", "_cowdax()"),
        ("zsh/vendor-completions/_cowdax", "#compdef cowdax"),
        (
            "fish/vendor_completions.d/cowdax.fish",
            "complete -c cowdax",
        ),
        ("bash-completion/completions/mkfs.cowdax", "_mkfs.cowdax()"),
        ("bash-completion/completions/fsck.cowdax", "_fsck.cowdax()"),
        (
            "zsh/vendor-completions/_mkfs.cowdax",
            "#compdef mkfs.cowdax",
        ),
        (
            "zsh/vendor-completions/_fsck.cowdax",
            "#compdef fsck.cowdax",
        ),
        (
            "fish/vendor_completions.d/mkfs.cowdax.fish",
            "complete -c mkfs.cowdax",
        ),
        (
            "fish/vendor_completions.d/fsck.cowdax.fish",
            "complete -c fsck.cowdax",
        ),
    ] {
        let text = fs::read_to_string(dir.path().join(relative))
            .unwrap_or_else(|e| panic!("{relative}: {e}"));
        assert!(text.contains(marker), "{relative} lacks {marker}");
    }
    // bash completes what each parser accepts (the mount command's own
    // options included, not the pass-through argument).
    for (file, words, expected) in [
        ("cowdax", "cowdax clone --", "--src-offset"),
        ("cowdax", "cowdax mount --", "--foreground"),
        ("cowdax", "cowdax ", "dedupe"),
        ("mkfs.cowdax", "mkfs.cowdax --j", "--journal-size"),
        ("fsck.cowdax", "fsck.cowdax -", "-n"),
    ] {
        let function = format!("_{file}");
        let script = format!(
            "source '{}/bash-completion/completions/{file}'; \
             COMP_WORDS=({words}\"\"); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             {function} \"${{COMP_WORDS[0]}}\" \"${{COMP_WORDS[COMP_CWORD]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            dir.path().display()
        );
        let output = Command::new("bash")
            .args(["-c", &script])
            .output()
            .expect("run bash");
        let replies = String::from_utf8_lossy(&output.stdout);
        assert!(
            replies.lines().any(|reply| reply == expected),
            "completing `{words}` offers no {expected}: {replies}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn version_names_the_on_media_format_versions() {
    let expected = format!(
        "{} (on-media format: superblock {}, journal records {}, checkpoint {}; reads and writes these)\n",
        env!("CARGO_PKG_VERSION"),
        cowdax::store::superblock::FORMAT_VERSION,
        cowdax::fs::TXN_VERSION,
        cowdax::fs::CHECKPOINT_VERSION
    );
    let output = cowdax(&["--version"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), format!("cowdax {expected}"));
    let output = cowdax(&["fsck", "--version"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), format!("cowdax-fsck {expected}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mkfs = dir.path().join("mkfs.cowdax");
    std::os::unix::fs::symlink(cowdax_binary(), &mkfs).expect("symlink");
    let output = run_program(&mkfs, &["--version"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), format!("mkfs.cowdax {expected}"));
}

#[test]
fn every_mount_option_the_parser_accepts_appears_in_mount_help() {
    let output = cowdax(&["mount", "--help"]);
    assert_exit(&output, 0);
    let help = stdout(&output);
    for option in mount_options_of_the_parser() {
        assert!(
            contains_word(&help, &option),
            "`cowdax mount --help` does not list mount option {option}:\n{help}"
        );
    }
}
