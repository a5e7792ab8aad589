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
    path_dirs()
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `PATH` without its relative entries.
fn absolute_path() -> std::ffi::OsString {
    std::env::join_paths(path_dirs()).unwrap_or_default()
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

/// A hardened `git` command (see [`git_cmd`]) whose transports are limited further as for a
/// location that came from a repository rather than from the user: `file` is refused too.
pub fn git_cmd_untrusted_remote(dir: &Path) -> Command {
    let mut c = git_cmd(dir);
    c.env("GIT_PROTOCOL_FROM_USER", "0");
    c
}

/// The absolute directories of `PATH`, in order (none when it is unset). An empty or relative
/// entry (`.`, `bin`) would make a program name find a file of whatever directory cairn runs in,
/// which may be a stranger's repository, so it is left out (spec/security.md §3).
pub fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|d| d.is_absolute())
                .collect()
        })
        .unwrap_or_default()
}

/// How a program run in the foreground ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Its exit code; negative: the number of the signal that killed it.
    pub code: i64,
    /// Did cairn receive Ctrl-C (SIGINT) while the program ran?
    pub interrupted: bool,
}

impl Finished {
    /// What went wrong, in words, or `None` for a run that exited 0 without a Ctrl-C.
    pub fn failure(&self) -> Option<String> {
        let code = self.code;
        if self.interrupted {
            Some(format!(
                "the command was interrupted (Ctrl-C; exit code {code})"
            ))
        } else if code < 0 {
            Some(format!("the command was killed by signal {}", -code))
        } else if code != 0 {
            Some(format!("the command exited with status {code}"))
        } else {
            None
        }
    }
}

/// The exit code of a status: the code, or minus the signal that killed the program.
pub fn exit_code(status: std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .map(i64::from)
        .unwrap_or_else(|| -i64::from(status.signal().unwrap_or(0)))
}

/// Run a user's program in the foreground (with whatever stdio `cmd` was given) and wait for it.
///
/// Ctrl-C reaches the whole foreground process group: the program handles it as it will, and
/// cairn, instead of dying with it, stays alive to record how it ended ([`Finished::interrupted`]).
/// Before and after, Ctrl-C ends cairn as usual. Runs from several threads at once compose:
/// Ctrl-C is cairn's default again only once the last of them has ended (a Ctrl-C during two
/// runs marks both). `Err` is a program that could not start.
pub fn run_foreground(cmd: &mut Command) -> std::io::Result<Finished> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let interrupted = std::sync::Arc::new(AtomicBool::new(false));
    let handler =
        signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone()).ok();
    hold_sigint(true);
    let status = cmd.status();
    hold_sigint(false);
    if let Some(id) = handler {
        signal_hook::low_level::unregister(id);
    }
    let status = status?;
    Ok(Finished {
        code: exit_code(status),
        interrupted: interrupted.load(Ordering::SeqCst),
    })
}

/// Count one more (`true`) or one fewer holder of Ctrl-C: while there is any (a
/// [`run_foreground`] waiting, an [`InterruptGuard`] alive), SIGINT does not end cairn.
fn hold_sigint(hold: bool) {
    use std::sync::atomic::Ordering;
    /// How many hold it now; the default action is off while there is any.
    static HOLDERS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
    let outside = sigint_default_outside();
    let mut holders = HOLDERS.lock().unwrap_or_else(|p| p.into_inner());
    if hold {
        *holders += 1;
    } else {
        *holders = holders.saturating_sub(1);
    }
    if let Some(o) = outside {
        o.store(*holders == 0, Ordering::SeqCst);
    }
}

/// While alive, Ctrl-C does not end cairn: it is noted ([`InterruptGuard::interrupted`]), and
/// the child programs of the foreground process group, which receive it too, end as they do. A
/// long operation that makes things (a rebuild) holds one, checks it between steps, and removes
/// what it made when it was interrupted, instead of dying half-way. Guards and
/// [`run_foreground`] compose: Ctrl-C ends cairn again once the last of them is gone.
pub struct InterruptGuard {
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handler: Option<signal_hook::SigId>,
}

impl InterruptGuard {
    /// Start holding Ctrl-C.
    pub fn new() -> InterruptGuard {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handler = signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone()).ok();
        hold_sigint(true);
        InterruptGuard { flag, handler }
    }

    /// Has Ctrl-C (SIGINT) arrived since the guard was made?
    pub fn interrupted(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Default for InterruptGuard {
    fn default() -> Self {
        InterruptGuard::new()
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        hold_sigint(false);
        if let Some(id) = self.handler.take() {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Once signal-hook handles SIGINT, removing an action never gives the signal back its default:
/// a process that only unregistered would ignore Ctrl-C from then on. So SIGINT runs the
/// default action (cairn ends) whenever this flag is set: always, except while
/// [`run_foreground`] waits. `None` when the handler could not be installed (then nothing was).
fn sigint_default_outside() -> Option<&'static std::sync::Arc<std::sync::atomic::AtomicBool>> {
    static OUTSIDE: std::sync::OnceLock<Option<std::sync::Arc<std::sync::atomic::AtomicBool>>> =
        std::sync::OnceLock::new();
    OUTSIDE
        .get_or_init(|| {
            let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
            signal_hook::flag::register_conditional_default(
                signal_hook::consts::SIGINT,
                flag.clone(),
            )
            .ok()
            .map(|_| flag)
        })
        .as_ref()
}

/// End cairn the way a Ctrl-C ends a program: killed by SIGINT, as the shell sees it (`$?` is
/// 130, and a shell loop around cairn stops), as `uv run`, `cargo run` and `time` do after the
/// program they ran was interrupted. For the command line, after it has said what it had to.
pub fn die_of_sigint() -> ! {
    let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGINT);
    // Only reached if the signal could not be delivered: the shell's code for it.
    std::process::exit(130)
}

/// The exit status cairn passes on for a wrapped program that failed (`cairn lock -- CMD`):
/// `None` when cairn should die of SIGINT ([`die_of_sigint`]: the run was interrupted, or the
/// program was killed by SIGINT), else the program's own status, `128 + N` for one killed by
/// signal N (as a shell reports it), and `fallback` when the program exited 0 but the run
/// failed anyway (a declared checkpoint was not written).
pub fn passed_on(code: i64, interrupted: bool, fallback: u8) -> Option<u8> {
    let sigint = -i64::from(signal_hook::consts::SIGINT);
    if interrupted || code == sigint {
        None
    } else if code > 0 {
        Some(u8::try_from(code).unwrap_or(u8::MAX))
    } else if code < 0 {
        Some(u8::try_from(128 - code).unwrap_or(u8::MAX))
    } else {
        Some(fallback)
    }
}

/// A stdio handle that writes to this process's stderr: for a child whose stdout must not mix
/// with the data a command prints on stdout. Falls back to inheriting stdout when stderr cannot
/// be duplicated.
pub fn to_stderr() -> Stdio {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::inherit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One foreground run at a time in this test process: a Ctrl-C that one test sends to the
    /// process must not land in another's run, nor outside any run (where it ends the process).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn sh(script: &str) -> Finished {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        run_foreground(Command::new("sh").args(["-c", script])).unwrap()
    }

    #[test]
    fn exit_codes_and_signals_are_told_apart() {
        let ok = sh("exit 0");
        assert_eq!(
            ok,
            Finished {
                code: 0,
                interrupted: false
            }
        );
        assert_eq!(ok.failure(), None);
        let failed = sh("exit 3");
        assert_eq!(failed.code, 3);
        assert_eq!(
            failed.failure().as_deref(),
            Some("the command exited with status 3")
        );
        let killed = sh("kill -TERM $$");
        assert_eq!(killed.code, -15);
        assert_eq!(
            killed.failure().as_deref(),
            Some("the command was killed by signal 15")
        );
        let missing = {
            let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
            run_foreground(&mut Command::new("/nonexistent/cairn-test-program"))
        };
        assert!(missing.is_err());
    }

    /// The program sends Ctrl-C to cairn (its parent) the way a terminal would, then exits as
    /// Python does on KeyboardInterrupt: cairn lives on and knows. It exits only once the
    /// signal has left the parent's pending set (`ShdPnd` in /proc), i.e. a thread of the
    /// parent has taken it: a signal still pending when the run ends would meet the default
    /// action again, so the test waits for that condition rather than for some time.
    #[test]
    fn ctrl_c_during_the_run_is_recorded_not_fatal() {
        let f = sh(r#"kill -INT $PPID
while m=$(sed -n 's/^ShdPnd:[[:space:]]*//p' /proc/$PPID/status) && [ $(( 0x$m & 2 )) -ne 0 ]; do :; done
exit 130"#);
        assert_eq!(
            f,
            Finished {
                code: 130,
                interrupted: true
            }
        );
        assert_eq!(
            f.failure().as_deref(),
            Some("the command was interrupted (Ctrl-C; exit code 130)")
        );
        // The next run starts clean.
        assert!(!sh("exit 0").interrupted);
    }

    #[test]
    fn the_status_passed_on_is_the_programs() {
        assert_eq!(passed_on(3, false, 1), Some(3));
        assert_eq!(passed_on(255, false, 1), Some(255));
        assert_eq!(passed_on(-15, false, 1), Some(143));
        assert_eq!(passed_on(-2, false, 1), None);
        assert_eq!(passed_on(130, true, 1), None);
        assert_eq!(passed_on(0, true, 1), None);
        assert_eq!(passed_on(0, false, 1), Some(1));
    }
}
