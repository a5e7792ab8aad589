//! Every child process cairn starts: finding the program, running it, and describing how it ended.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Quote a word for a POSIX shell when it needs quoting.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Run a program to completion, capturing its output. `Err` is a program that could not start.
pub fn run_capture(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    cmd.stdin(Stdio::null()).output()
}

/// The command as a shell would read it, each word quoted where it needs to be.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines of a program's output, for a message.
pub fn tail(out: &std::process::Output, lines: usize) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How a program ended, in words: `exited with status N` or `was killed by a signal`.
pub fn status_text(status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(c) => format!("exited with status {c}"),
        None => "was killed by a signal".into(),
    }
}

/// Configuration given to every `git` cairn runs, on its command line, where it overrides
/// whatever a repository's own config says (spec/security.md, "Git"):
///
/// * no hooks and no file-system monitor: both run programs a repository's config can name;
/// * `safe.bareRepository=explicit`: a bare repository committed inside a checkout is never
///   found by walking up from a directory (its config could name programs);
/// * transports: https, ssh and git always; `file` and plain `http` only when the user gave
///   the location (`user`: not for submodules, whose URLs come from the repository); the rest,
///   `ext::` (which runs a command) first of all, never.
pub const GIT_HARDENING: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "safe.bareRepository=explicit",
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=user",
    "protocol.ssh.allow=always",
    "protocol.git.allow=always",
    "protocol.file.allow=user",
    "submodule.recurse=false",
];

/// A `git` command run in `dir`, hardened with [`GIT_HARDENING`]. Callers put
/// `--end-of-options` (or `--`) before every argument that comes from a lock or a repository.
///
/// `git` is looked up in the absolute directories of `PATH` only ([`on_path`]): a `git` committed
/// to the checkout is never run, even with `.` on `PATH`.
pub fn git_cmd(dir: &Path) -> Command {
    let mut c = match on_path("git") {
        Some(git) => Command::new(git),
        None => {
            // Not found: let the start fail with git's name, searching no relative directory.
            let mut c = Command::new("git");
            c.env("PATH", absolute_path());
            c
        }
    };
    c.current_dir(dir);
    for setting in GIT_HARDENING {
        c.args(["-c", setting]);
    }
    c
}

/// The first file named `program` in a directory of `PATH`. Relative entries (an empty one or
/// `.`, meaning the current directory, which is often a stranger's checkout) are skipped, so a
/// program committed to a repository is never found this way (spec/security.md).
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `PATH` without its relative entries.
fn absolute_path() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::env::split_paths(&path).filter(|d| d.is_absolute()))
        .unwrap_or_default()
}

/// Give [`GIT_HARDENING`] to every `git` a program started by `cmd` runs (pip and uv clone VCS
/// packages with it), through git's `GIT_CONFIG_COUNT` variables, which count as command-line
/// configuration.
pub fn harden_git_env(cmd: &mut Command) {
    cmd.env("GIT_CONFIG_COUNT", GIT_HARDENING.len().to_string());
    for (i, setting) in GIT_HARDENING.iter().enumerate() {
        let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key);
        cmd.env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
}

/// The directories of `PATH` that are absolute: an empty or relative entry (`.`, `bin`) would
/// make a program name find a file of whatever directory cairn runs in, which may be a stranger's
/// repository.
pub fn absolute_path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|d| d.is_absolute())
                .collect()
        })
        .unwrap_or_default()
}

/// A hardened `git` command (see [`git_cmd`]) whose transports are limited further as for a
/// location that came from a repository rather than from the user: `file` is refused too.
pub fn git_cmd_untrusted_remote(dir: &Path) -> Command {
    let mut c = git_cmd(dir);
    c.env("GIT_PROTOCOL_FROM_USER", "0");
    c
}
