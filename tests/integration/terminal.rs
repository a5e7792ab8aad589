//! cairn in a person's terminal (issue #18): the wrapped command's exit status passes through,
//! Ctrl-C ends cairn by SIGINT, surprising writes are refused, warnings come before the command,
//! lock paths work like git's, file modes follow the umask, and progress bars leave no trace.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;

use crate::util::{Repo, LOCK_ML_NO_PYTHON};

/// `cairn lock --no-python --replace-run -- sh -c SCRIPT`.
fn replace_run_sh(script: &str) -> [&str; 7] {
    [
        "lock",
        "--no-python",
        "--replace-run",
        "--",
        "sh",
        "-c",
        script,
    ]
}

#[test]
fn the_commands_exit_status_passes_through() {
    let r = Repo::ml();
    r.cairn(LOCK_ML_NO_PYTHON).expect(0);
    let good = r.read("cairn.lock");
    let out = r
        .cairn([
            "lock",
            "--no-python",
            "--",
            "sh",
            "-c",
            "echo training; exit 3",
        ])
        .expect(3);
    out.stderr_has("the command exited with status 3");
    out.stderr_has(".cairn/failed/");
    assert_eq!(r.read("cairn.lock"), good, "the good lock was rewritten");
    // Killed by a signal other than SIGINT: 128 + N, as a shell says it.
    r.cairn(["lock", "--no-python", "--", "sh", "-c", "kill -TERM $$"])
        .expect(143);
    assert_eq!(r.read("cairn.lock"), good);
    // The command succeeded but its declared checkpoint is missing: cairn's own 1.
    r.cairn([
        "lock",
        "--no-python",
        "--checkpoint",
        "runs/never.pt",
        "--",
        "true",
    ])
    .expect(1)
    .stderr_has("runs/never.pt was not produced");
    assert_eq!(r.read("cairn.lock"), good);
}

/// Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group (here a group of
/// its own), once the command has said through a FIFO that it is running. The command exits as
/// Python does on KeyboardInterrupt; cairn records the run aside and then dies of SIGINT, so a
/// shell loop around it stops.
#[test]
fn ctrl_c_ends_cairn_by_sigint_and_keeps_the_good_lock() {
    let r = Repo::ml();
    r.cairn(LOCK_ML_NO_PYTHON).expect(0);
    let good = r.read("cairn.lock");
    let fifo = r.home().join("started");
    crate::util::sh(r.home(), "mkfifo started");
    let child = r
        .cmd()
        .args([
            "lock",
            "--no-python",
            "--",
            "sh",
            "-c",
            r#"sleep 60 & p=$!
trap 'kill $p; exit 130' INT
echo running > "$STARTED"
wait $p"#,
        ])
        .env("STARTED", &fifo)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Blocks until the command writes: by then cairn waits for it with its handler installed.
    let said = std::fs::read_to_string(&fifo).unwrap();
    assert_eq!(said.trim(), "running");
    let pgid = format!("-{}", child.id());
    crate::util::run_ok(crate::util::command("kill").args(["-INT", "--", &pgid]));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(2),
        "cairn did not end by SIGINT ({:?}):\n{stderr}",
        out.status
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stderr.contains(".cairn/failed/"), "{stderr}");
    assert_eq!(r.read("cairn.lock"), good, "the good lock was rewritten");
}

#[test]
fn a_command_without_dashes_is_shown_with_them() {
    let r = Repo::ml();
    let out = r
        .cairn([
            "lock",
            "--data",
            "data/train",
            "python",
            "train.py",
            "--lr",
            "3",
        ])
        .expect(2);
    out.stderr_has("unexpected argument 'python'");
    out.stderr_has("hint: the training command goes after `--`: cairn lock --data data/train -- python train.py --lr 3");
    assert!(!r.join("cairn.lock").exists());
    // An option's value that looks like the command is not taken for it.
    r.cairn(["lock", "--python", "python", "python", "train.py"])
        .expect(2)
        .stderr_has("cairn lock --python python -- python train.py");
    // Other commands and other mistakes get no such hint.
    r.cairn(["verify", "extra"])
        .expect(2)
        .stderr_lacks("after `--`");
    r.cairn(["lock", "--bogus"])
        .expect(2)
        .stderr_lacks("goes after `--`");
}

#[test]
fn checkpoint_add_outside_a_run_is_refused_unless_amend() {
    let r = Repo::ml();
    r.cairn(LOCK_ML_NO_PYTHON).expect(0);
    r.commit_all("the run");
    let committed = r.read("cairn.lock");
    r.write("runs/later.bin", "weights");
    let out = r.cairn(["checkpoint", "add", "runs/later.bin"]).expect(2);
    out.stderr_has("error: no run is in progress here");
    out.stderr_has("would rewrite the finished lock");
    out.stderr_has("cairn.lock");
    out.stderr_has("hint: run the training under `cairn lock -- COMMAND`");
    out.stderr_has("--amend");
    assert_eq!(
        r.read("cairn.lock"),
        committed,
        "the committed lock was rewritten"
    );
    // Asked for, it is done.
    r.cairn(["checkpoint", "add", "--amend", "runs/later.bin"])
        .expect(0)
        .stderr_has("recorded checkpoint runs/later.bin");
    assert!(r.read("cairn.lock").contains("runs/later.bin"));
    // Inside a run no flag is needed: the add goes to the run's in-progress lock.
    let bin = env!("CARGO_BIN_EXE_cairn");
    r.cairn(replace_run_sh(&format!(
        "echo w > runs/during.bin && {bin} checkpoint add runs/during.bin"
    )))
    .expect(0);
    assert!(r.read("cairn.lock").contains("runs/during.bin"));
}

#[test]
fn lock_without_a_command_does_not_silently_replace_a_run() {
    let r = Repo::ml();
    r.write("train.py", format!("{}# tuned\n", crate::util::TRAIN_PY));
    r.cairn(LOCK_ML_NO_PYTHON).expect(0);
    let run = r.read("cairn.lock");
    let out = r.cairn(["lock", "--no-python"]).expect(2);
    out.stderr_has("records a run; locking without a command would replace its record");
    out.stderr_has("the command `python3 train.py`");
    out.stderr_has("its exit code 0");
    out.stderr_has("its times (");
    out.stderr_has("the uncommitted change it ran with");
    out.stderr_has("1 checkpoint");
    out.stderr_has("hint: to record a new run, give its command: cairn lock -- python3 train.py");
    out.stderr_has("--replace-run");
    assert_eq!(r.read("cairn.lock"), run, "the run's record was replaced");
    // A lock elsewhere is not in the way, and asked for, the record is replaced.
    r.cairn(["lock", "--no-python", "--lock", "state.cairn.lock"])
        .expect(0);
    r.cairn(["lock", "--no-python", "--replace-run"]).expect(0);
    assert!(!r.read("cairn.lock").contains("python3"));
    // A lock without a run is replaced as before.
    r.cairn(["lock", "--no-python", "--data", "data/val"])
        .expect(0);
}

/// `--lock` resolves as git resolves paths: `..` from a subdirectory and absolute paths inside
/// the repository are fine, a lock outside it may have any name, and paths are printed relative
/// to the current directory.
#[test]
fn lock_paths_work_like_gits() {
    let r = Repo::ml();
    r.write("src/model/net.py", "# a module\n");
    r.commit_all("src");
    let out = r
        .cairn_in(
            "src/model",
            ["lock", "--no-python", "--lock", "../../cairn.lock"],
        )
        .expect(0);
    out.stderr_has("locked ../../cairn.lock:");
    assert!(r.join("cairn.lock").is_file());
    r.cairn_in("src/model", ["verify", "--lock", "../../cairn.lock"])
        .expect(0);
    // Absolute, inside the repository.
    let abs = r.join("runs.cairn.lock");
    let abs = abs.to_str().unwrap();
    r.cairn_in("src", ["lock", "--no-python", "--lock", abs])
        .expect(0)
        .stderr_has("locked ../runs.cairn.lock:");
    r.cairn(["verify", "--lock", abs]).expect(0);
    // Outside the repository, whatever its name: a lock someone sent.
    let downloads = tempfile::tempdir().unwrap();
    let sent = downloads.path().join("run-42.lock");
    std::fs::copy(r.join("cairn.lock"), &sent).unwrap();
    r.cairn_in("src", ["verify", "--lock", sent.to_str().unwrap()])
        .expect(0);
    let mine = downloads.path().join("mine.toml");
    r.cairn(["lock", "--no-python", "--lock", mine.to_str().unwrap()])
        .expect(0)
        .stderr_has(&format!("locked {}:", mine.display()));
    r.cairn(["verify", "--lock", mine.to_str().unwrap()])
        .expect(0);
    // Printed relative to where cairn runs: the change sidecar and the failed record too.
    r.write("train.py", "# changed\n");
    let out = r.cairn_in("src", replace_run_sh("exit 4")).expect(4);
    out.stderr_has("recorded in ../.cairn/changes/");
    out.stderr_has(
        "; ../cairn.lock was left as it was, and this run's record is in ../.cairn/failed/",
    );
}

/// What a terminal shows once `raw` has been written to it: the few controls cairn's output
/// uses (`\r`, `\n`, cursor up and down, erase in line, erase below), colours dropped.
fn screen(raw: &str) -> Vec<String> {
    let mut lines: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                row += 1;
                col = 0;
                if lines.len() <= row {
                    lines.push(Vec::new());
                }
            }
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut params = String::new();
                let mut end = ' ';
                for p in chars.by_ref() {
                    if p.is_ascii_alphabetic() {
                        end = p;
                        break;
                    }
                    params.push(p);
                }
                let n: usize = params.trim_start_matches('?').parse().unwrap_or(0);
                match end {
                    'A' => row = row.saturating_sub(n.max(1)),
                    'B' => {
                        row += n.max(1);
                        while lines.len() <= row {
                            lines.push(Vec::new());
                        }
                    }
                    'K' if n == 2 => lines[row].clear(),
                    'K' => lines[row].truncate(col),
                    'J' => lines.truncate(row + 1),
                    _ => {}
                }
            }
            c if c.is_control() => {}
            c => {
                let line = &mut lines[row];
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    lines
        .into_iter()
        .map(|l| l.into_iter().collect::<String>().trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_screen_emulation_applies_what_bars_use() {
    assert_eq!(screen("a\r\x1b[2Kb\nc"), ["b", "c"]);
    assert_eq!(
        screen("bar 1/2\x1b[1A\r\x1b[2K\x1b[1B\r\x1b[2K\x1b[1Adone\n"),
        ["done"]
    );
    assert_eq!(screen("abc\r\x1b[Kx"), ["x"]);
}

/// A lock on a terminal: the hashing bar is drawn (it is made to appear at once), cleared
/// before the command starts and never drawn while it runs; the warnings that matter come
/// before the command; afterwards the screen holds no bar line. A second lock, where every
/// digest comes from the stat cache, draws no bar at all.
#[test]
fn progress_bars_leave_nothing_on_the_terminal() {
    crate::util::require_tool("script", "a terminal for cairn (util-linux)");
    let r = Repo::ml();
    for i in 0..40u8 {
        r.write(&format!("big/f{i:02}.bin"), vec![i; 100_000]);
    }
    r.write(".gitignore", "runs/\nbig/\n");
    r.commit_all("big data, ignored");
    r.write("train.py", format!("{}# tuned\n", crate::util::TRAIN_PY));
    crate::util::settle(r.path());
    let args = "lock --no-python --data big --checkpoint 'runs/*.pt' -- sh -c 'echo TRAINING-START; echo TRAINING-END'";
    let on_terminal = || {
        let mut script = r.cmd_raw("script");
        script.env("CAIRN_PROGRESS_DELAY_MS", "0");
        crate::util::on_terminal(script, args, "").expect(0)
    };
    let raw = on_terminal().stdout;
    assert!(raw.contains("hashing ["), "no bar was drawn:\n{raw:?}");
    let (before, rest) = raw.split_once("TRAINING-START").expect("the command ran");
    let (during, _) = rest.split_once("TRAINING-END").expect("the command ran");
    assert!(!during.contains("hashing"), "a bar drew during the command");
    assert!(
        before.contains("uncommitted changes in 1 file (train.py)"),
        "{before:?}"
    );
    assert!(
        before.contains("checkpoint runs/*.pt: runs/ does not exist yet"),
        "{before:?}"
    );
    let shown = screen(&raw);
    assert!(
        !shown.iter().any(|l| l.contains("hashing")),
        "a bar is left on the screen:\n{shown:#?}"
    );
    let start = shown.iter().position(|l| l == "TRAINING-START").unwrap();
    assert!(
        shown[..start]
            .iter()
            .all(|l| l.starts_with("warning:") || l.starts_with("note:")),
        "{shown:#?}"
    );
    assert!(
        shown.last().unwrap().starts_with("locked cairn.lock: code"),
        "{shown:#?}"
    );
    // Every digest from the cache: nothing to read, no bar.
    let raw = on_terminal().stdout;
    assert!(!raw.contains("hashing"), "a bar for cache hits:\n{raw:?}");
}

/// Files cairn writes get the mode the user's umask says (0644 under 022, 0600 under 077), as
/// any other program's would: the lock, cairn.toml, the change sidecar, manifests, .gitignore.
#[test]
fn written_files_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    for (umask, file_mode, dir_mode) in [("022", 0o644, 0o755), ("077", 0o600, 0o700)] {
        let r = Repo::ml();
        r.write("train.py", format!("{}# tuned\n", crate::util::TRAIN_PY));
        let bin = env!("CARGO_BIN_EXE_cairn");
        let script = format!(
            "umask {umask} && {bin} init && {bin} lock --no-python --data data/train -- python3 train.py && {bin} checkpoint add --amend runs/metrics.json"
        );
        crate::util::run_ok(r.cmd_raw("sh").arg("-c").arg(&script));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let mut files = vec![
            r.join("cairn.lock"),
            r.join("cairn.toml"),
            r.join(".cairn/.gitignore"),
        ];
        for dir in [".cairn/changes", ".cairn/manifests"] {
            let names = crate::util::names_in(&r.join(dir));
            assert!(!names.is_empty(), "nothing in {dir}");
            files.extend(names.iter().map(|n| r.join(dir).join(n)));
        }
        for f in &files {
            assert_eq!(
                mode(f),
                file_mode,
                "umask {umask}: {} is {:o}",
                f.display(),
                mode(f)
            );
        }
        for d in [".cairn", ".cairn/changes", ".cairn/manifests"] {
            assert_eq!(mode(&r.join(d)), dir_mode, "umask {umask}: {d}");
        }
    }
}

/// The README's two steps: `cairn rebuild` answered N prepares a worktree; `cairn rebuild --run`
/// goes on from it (recognised by the marker cairn wrote in the worktree's git directory, with
/// the lock's digest), where before it refused the directory it had just made. A worktree that
/// cairn did not prepare for this lock, or one where the command already ran, is refused with
/// the exact command that removes it.
#[test]
fn rebuild_run_goes_on_from_the_directory_rebuild_prepared() {
    crate::util::require_tool("script", "util-linux's script gives rebuild a terminal");
    let r = Repo::ml();
    r.cairn(LOCK_ML_NO_PYTHON).expect(0);
    r.commit_all("the run");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let at = into.to_str().unwrap();
    let asked =
        crate::util::on_terminal(r.cmd_raw("script"), &format!("rebuild --into {at}"), "n\n")
            .expect(0);
    asked.stdout_has("[y/N]").stdout_has("pass --run");
    assert!(into.join("train.py").is_file());
    assert!(!into.join("runs").exists(), "nothing ran");
    // Again without consent: refused, nothing changed, and told how to go on.
    r.cairn(["rebuild", "--into", at])
        .expect(2)
        .stderr_has(
            "already exists and is not empty: an earlier `cairn rebuild` of this lock prepared it",
        )
        .stderr_has("hint: `cairn rebuild --run` (or --yes) goes on from it");
    r.cairn(["rebuild", "--into", at, "--run"])
        .expect(0)
        .stdout_has("reproduced: every step matches the lock");
    assert!(into.join("runs/final.safetensors").is_file());
    // Where the command ran, the results are kept: refused, with the command that removes it.
    let repo = r.path().canonicalize().unwrap();
    let remove = format!(
        "git -C {} worktree remove --force {}",
        repo.display(),
        into.display()
    );
    r.cairn(["rebuild", "--into", at, "--run"])
        .expect(2)
        .stderr_has("the locked command already ran in it")
        .stderr_has(&remove);
    assert!(into.join("runs/final.safetensors").is_file(), "kept");
    // A worktree of the repository that cairn did not make: refused; the hint's command works.
    let mine = target.path().join("mine");
    r.git(&["worktree", "add", "-q", "--detach", mine.to_str().unwrap()]);
    let remove_mine = format!(
        "git -C {} worktree remove --force {}",
        repo.display(),
        mine.display()
    );
    r.cairn(["rebuild", "--into", mine.to_str().unwrap(), "--run"])
        .expect(2)
        .stderr_has("a git worktree of this repository that `cairn rebuild` did not prepare")
        .stderr_has(&remove_mine);
    assert!(mine.join("train.py").is_file(), "untouched");
    crate::util::sh(r.path(), &remove_mine);
    assert!(!mine.exists());
    // The prepared worktree of another lock (a new run) is not this lock's.
    crate::util::sh(r.path(), &remove);
    crate::util::on_terminal(r.cmd_raw("script"), &format!("rebuild --into {at}"), "n\n").expect(0);
    r.cairn([
        "lock",
        "--no-python",
        "--seed",
        "8",
        "--",
        "python3",
        "train.py",
    ])
    .expect(0);
    r.commit_all("another run");
    r.cairn(["rebuild", "--into", at, "--run"])
        .expect(2)
        .stderr_has("prepared it for another lock");
}
