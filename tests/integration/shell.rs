//! Shell completions and manual pages, generated from the command-line definition.

use crate::util::Repo;

const COMMANDS: &[&str] = &[
    "lock",
    "verify",
    "hash",
    "env",
    "checkpoint",
    "lineage",
    "audit",
    "export",
    "init",
    "completions",
    "man",
];

/// What bash completes for these words, the last being the one completed: the generated script
/// sourced into a real bash and its completion function called as bash's `complete` would.
fn bash_complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let line = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _cairn cairn '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    crate::util::run_ok(crate::util::command("bash").args(["--noprofile", "--norc", "-c", &line]))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_for_every_shell() {
    let r = Repo::plain();
    let bash = r.cairn(["completions", "bash"]).expect(0).stdout;
    assert!(bash.contains("complete -F _cairn"), "{bash}");
    let script = r.join("cairn.bash");
    std::fs::write(&script, &bash).unwrap();
    let commands = bash_complete(&script, &["cairn", ""]);
    for c in COMMANDS {
        assert!(
            commands.iter().any(|w| w == c),
            "bash completes {commands:?}, not {c}"
        );
    }
    assert_eq!(
        bash_complete(&script, &["cairn", "export", "--"]),
        ["--lock", "--format", "--quiet", "--help", "--version"]
    );
    assert_eq!(
        bash_complete(&script, &["cairn", "export", "--format", ""]),
        ["in-toto"]
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = r.cairn(["completions", shell]).expect(0).stdout;
        for c in ["export", "lineage", "init"] {
            assert!(out.contains(c), "{shell} completion misses {c}");
        }
    }
    r.cairn(["completions", "tcsh"]).expect(2);
}

#[test]
fn man_pages() {
    let r = Repo::plain();
    let page = r.cairn(["man"]).expect(0).stdout;
    // After roff's string definitions (`.ie`/`.el`), the page starts with its title line.
    let first = page
        .lines()
        .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
        .unwrap();
    assert!(first.starts_with(".TH cairn 1"), "{first}");
    assert!(page.contains(".SH SUBCOMMANDS") || page.contains("SUBCOMMANDS"));
    assert!(page.contains("Exit status"));

    r.cairn(["man", "--dir", "man/man1"]).expect(0);
    for c in [
        "cairn.1",
        "cairn-export.1",
        "cairn-init.1",
        "cairn-checkpoint-add.1",
    ] {
        let text = std::fs::read_to_string(r.join("man/man1").join(c)).unwrap();
        assert!(text.contains(".TH"), "{c}");
    }
}
