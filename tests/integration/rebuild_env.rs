//! What a rebuild records and restores beyond the code and packages (issue #14, point 7): the
//! directory the command ran in, and the package indexes the environment came from.

use std::path::Path;

use crate::rebuild::{rebuild, step};
use crate::util::{Repo, Run};

/// A script that lives in `src/` and is run from there, writing relative to where it runs.
const TRAIN_IN_SRC: &str = r#"import os
os.makedirs("out", exist_ok=True)
with open("out/model.bin", "w") as f:
    here = "the root" if os.path.isdir("src") else os.path.basename(os.getcwd())
    f.write("ran in %s\n" % here)
"#;

fn project() -> Repo {
    let r = Repo::new();
    r.write("src/train.py", TRAIN_IN_SRC);
    r.write(".gitignore", "out/\nwork/\n");
    r.commit_all("initial");
    r
}

/// Write `t` as `bad.cairn.lock` and check that `rebuild --lock bad.cairn.lock --run` refuses
/// it (exit 2, saying `says`) and makes nothing. The lock's text as written, for the caller to
/// check that nothing rewrote it.
fn rebuild_refuses(r: &Repo, t: &toml::Table, says: &str) -> String {
    r.write("bad.cairn.lock", toml::to_string(t).unwrap());
    let before = r.read("bad.cairn.lock");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    r.cairn([
        "rebuild",
        "--lock",
        "bad.cairn.lock",
        "--into",
        into.to_str().unwrap(),
        "--run",
    ])
    .expect(2)
    .stderr_has(says);
    assert!(!into.exists());
    before
}

/// Lock `r` with a command that touches `marker` (removed again), edit the lock's `[run]`
/// table with `edit`, and commit it.
fn lock_touching(r: &Repo, marker: &Path, edit: impl FnOnce(&mut toml::Table)) {
    r.cairn([
        "lock",
        "--no-python",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ])
    .expect(0);
    std::fs::remove_file(marker).unwrap();
    let mut t = r.lock_toml("cairn.lock");
    edit(t["run"].as_table_mut().unwrap());
    r.write("cairn.lock", toml::to_string(&t).unwrap());
    r.commit_all("lock");
}

/// `rebuild --run --format json` into `into` runs nothing: the run step is `not-run`, its
/// first note saying `says`.
fn rebuild_does_not_run(r: &Repo, into: &Path, says: &str) {
    let report = rebuild(r, into, &["--run", "--format", "json"])
        .expect(0)
        .json();
    let run = step(&report, "run");
    assert_eq!(run["status"], "not-run", "{report}");
    assert!(run["notes"][0].as_str().unwrap().contains(says), "{report}");
}

/// `rebuild --run --format json` into `into` reproduces the run: its report.
fn rebuild_reproduces(r: &Repo, into: &Path) -> serde_json::Value {
    let report = rebuild(r, into, &["--run", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(step(&report, "run")["status"], "reproduced", "{report}");
    report
}

/// Run from a subdirectory, the lock records it relative to the repository root, and the
/// rebuild runs the command there: the relative script path and outputs resolve as they did.
#[test]
fn the_command_runs_where_it_ran() {
    let r = project();
    r.cairn_in(
        "src",
        [
            "lock",
            "--no-python",
            "--checkpoint",
            "out/model.bin",
            "--",
            "python3",
            "train.py",
        ],
    )
    .expect(0);
    let t = r.lock_toml("cairn.lock");
    assert_eq!(t["run"]["cwd"].as_str(), Some("src"));
    assert_eq!(
        t["checkpoint"][0]["path"].as_str(),
        Some("src/out/model.bin")
    );
    r.commit_all("lock");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let report = rebuild_reproduces(&r, &into);
    let cwd = into.canonicalize().unwrap().join("src");
    assert_eq!(report["command"]["cwd"], cwd.to_str().unwrap(), "{report}");
    assert_eq!(
        std::fs::read_to_string(into.join("src/out/model.bin")).unwrap(),
        "ran in src\n"
    );
}

/// A run started in a git-ignored directory that the checkout does not have: the rebuild
/// makes it (inside the worktree) and runs there.
#[test]
fn an_ignored_working_directory_is_made() {
    let r = project();
    std::fs::create_dir_all(r.join("work")).unwrap();
    r.cairn_in(
        "work",
        [
            "lock",
            "--no-python",
            "--checkpoint",
            "out/model.bin",
            "--",
            "python3",
            "../src/train.py",
        ],
    )
    .expect(0);
    assert_eq!(
        r.lock_toml("cairn.lock")["run"]["cwd"].as_str(),
        Some("work")
    );
    r.commit_all("lock");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    rebuild_reproduces(&r, &into);
    assert_eq!(
        std::fs::read_to_string(into.join("work/out/model.bin")).unwrap(),
        "ran in work\n"
    );
}

/// A lock run from the root says `cwd = "."`; one from a lock before cairn recorded it has no
/// `cwd` and still runs from the project root.
#[test]
fn root_and_older_locks() {
    let r = project();
    r.cairn([
        "lock",
        "--no-python",
        "--checkpoint",
        "out/model.bin",
        "--",
        "python3",
        "src/train.py",
    ])
    .expect(0);
    let mut t = r.lock_toml("cairn.lock");
    assert_eq!(t["run"]["cwd"].as_str(), Some("."));
    t["run"].as_table_mut().unwrap().remove("cwd");
    r.write("cairn.lock", toml::to_string(&t).unwrap());
    r.commit_all("lock");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    rebuild(&r, &into, &["--run", "--format", "json"]).expect(0);
    assert_eq!(
        std::fs::read_to_string(into.join("out/model.bin")).unwrap(),
        "ran in the root\n"
    );
}

/// The lock of a command that ran outside the repository says so and nothing else (no
/// machine path); a rebuild never runs it outside the worktree: it says why and runs nothing.
#[test]
fn a_command_that_ran_outside_the_repository_is_not_run() {
    let r = project();
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("MARKER");
    lock_touching(&r, &marker, |run| {
        run.remove("cwd");
        run.insert("cwd-outside".into(), true.into());
    });
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    rebuild_does_not_run(&r, &into, "ran outside the repository");
    assert!(!marker.exists(), "the command ran");
    rebuild(&r, &target.path().join("human"), &["--run"])
        .expect(0)
        .stdout_has("ran outside the repository");
}

/// A stranger's lock whose `cwd` is a committed link out of the repository: the rebuild does
/// not follow it, runs nothing, and leaves the place it points to alone.
#[test]
fn a_working_directory_that_leads_out_is_refused() {
    let r = project();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), r.join("escape")).unwrap();
    r.commit_all("a link out");
    let marker = outside.path().join("MARKER");
    lock_touching(&r, &marker, |run| {
        run.insert("cwd".into(), "escape".into());
    });
    let before = crate::util::snapshot(&[outside.path()]);
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    rebuild_does_not_run(&r, &into, "leads outside the rebuilt worktree");
    assert!(!marker.exists(), "the command ran");
    assert_eq!(crate::util::snapshot(&[outside.path()]), before);
}

/// `run.cwd` is a path like every other in a lock: one that climbs out, or one given with
/// `cwd-outside` too, makes the lock unreadable (exit 2), and nothing is written.
#[test]
fn bad_working_directories_are_refused() {
    let r = project();
    r.cairn(["lock", "--no-python", "--", "true"]).expect(0);
    for (cwd, outside, says) in [
        ("../elsewhere", false, "run.cwd"),
        ("/etc", false, "run.cwd"),
        ("src", true, "both `cwd` and `cwd-outside = true`"),
    ] {
        let mut t = r.lock_toml("cairn.lock");
        t["run"]
            .as_table_mut()
            .unwrap()
            .insert("cwd".into(), cwd.into());
        if outside {
            t["run"]
                .as_table_mut()
                .unwrap()
                .insert("cwd-outside".into(), true.into());
        }
        let before = rebuild_refuses(&r, &t, says);
        r.cairn(["verify", "--lock", "bad.cairn.lock"])
            .expect(2)
            .stderr_has(says);
        assert_eq!(r.read("bad.cairn.lock"), before);
    }
}

/// Make a one-file wheel of `name` 1.0 in a PEP 503 "simple" index below `root` (a local
/// index a `file://` URL can name), and return that URL.
fn local_index(root: &Path, name: &str) -> String {
    let script = r#"
import base64, hashlib, os, sys, zipfile
root, name = sys.argv[1], sys.argv[2]
mod = name.replace("-", "_")
wheel = f"{mod}-1.0-py3-none-any.whl"
project = os.path.join(root, "simple", name)
os.makedirs(project)
files = {
    f"{mod}.py": "VERSION = '1.0'\n",
    f"{mod}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
    f"{mod}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for path, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(text.encode())}")
record.append(f"{mod}-1.0.dist-info/RECORD,,")
files[f"{mod}-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
with zipfile.ZipFile(os.path.join(project, wheel), "w") as z:
    for path, text in files.items():
        z.writestr(path, text)
with open(os.path.join(project, "index.html"), "w") as f:
    f.write(f'<!DOCTYPE html><html><body><a href="{wheel}">{wheel}</a></body></html>\n')
"#;
    crate::util::run_ok(
        crate::util::command("python3")
            .args(["-c", script])
            .arg(root)
            .arg(name),
    );
    format!("file://{}/simple", root.display())
}

/// The index the environment was installed from is recorded without its credentials, shown in
/// the rebuild's plan, and used by the environment step: a package that exists only on that
/// index is installed again although this machine's pip is not configured with it.
#[test]
fn the_package_index_is_recorded_and_used() {
    let venv = crate::util::Venv::new();
    let index_dir = tempfile::tempdir().unwrap();
    let url = local_index(index_dir.path(), "cairn-test-only-here");
    // The locking machine's pip is configured with the index (and another, with credentials).
    let py = venv.python();
    crate::util::run_ok(
        crate::util::command(&py)
            .args(["-m", "pip", "install", "-q", "--no-input", "--index-url"])
            .arg(&url)
            .arg("cairn-test-only-here==1.0"),
    );
    let r = Repo::new();
    r.write(
        "train.py",
        "import cairn_test_only_here\nopen('model.bin', 'w').write(cairn_test_only_here.VERSION)\n",
    );
    r.write(".gitignore", "model.bin\n");
    r.commit_all("initial");
    let extra = "https://user:s3cret@private.example/simple";
    r.cairn_env(
        &[
            ("PIP_INDEX_URL", url.as_str()),
            ("PIP_EXTRA_INDEX_URL", extra),
        ],
        [
            "lock",
            "--python",
            py.to_str().unwrap(),
            "--checkpoint",
            "model.bin",
            "--",
            py.to_str().unwrap(),
            "train.py",
        ],
    )
    .expect(0);
    let text = r.read("cairn.lock");
    assert!(!text.contains("s3cret"), "credentials in the lock:\n{text}");
    let t = r.lock_toml("cairn.lock");
    assert_eq!(t["python"]["index-url"].as_str(), Some(url.as_str()));
    assert_eq!(
        t["python"]["extra-index-url"][0].as_str(),
        Some("https://private.example/simple")
    );
    // The unreachable extra index would stop pip: this rebuild uses the main one only.
    let mut t = t;
    t["python"]
        .as_table_mut()
        .unwrap()
        .remove("extra-index-url");
    r.write("cairn.lock", toml::to_string(&t).unwrap());
    r.commit_all("lock");

    let target = tempfile::tempdir().unwrap();
    let plan = rebuild(
        &r,
        &target.path().join("plan"),
        &["--dry-run", "--installer", "pip", "--format", "json"],
    )
    .expect(0)
    .json();
    assert_eq!(plan["index_url"], url.as_str(), "{plan}");
    rebuild(
        &r,
        &target.path().join("plan"),
        &["--dry-run", "--installer", "pip"],
    )
    .expect(0)
    .stdout_has(&format!("index {url} (recorded in the lock)"));

    let into = target.path().join("rebuilt");
    let report = rebuild(
        &r,
        &into,
        &["--run", "--installer", "pip", "--format", "json"],
    )
    .expect(0)
    .json();
    let env = step(&report, "environment");
    assert_eq!(env["status"], "reproduced", "{report}");
    let actions = env["actions"].to_string();
    assert!(actions.contains(&format!("--index-url={url}")), "{actions}");
    assert_eq!(
        std::fs::read_to_string(into.join("model.bin")).unwrap(),
        "1.0"
    );
}

/// A lock whose index is not an http(s) or file URL is refused as a whole, before anything is
/// made: it could not be handed to an installer safely.
#[test]
fn a_bad_index_url_is_refused() {
    let r = project();
    r.cairn(["lock", "--no-python", "--", "true"]).expect(0);
    for bad in ["--index-url=x", "ext::sh -c touch", "https://a b/simple"] {
        let mut t = r.lock_toml("cairn.lock");
        let mut py = toml::Table::new();
        py.insert("implementation".into(), "cpython".into());
        py.insert("version".into(), "3.11.7".into());
        py.insert("index-url".into(), bad.into());
        t.insert("python".into(), py.into());
        let before = rebuild_refuses(&r, &t, "`python.index-url`");
        assert_eq!(r.read("bad.cairn.lock"), before);
    }
}

/// A checkout that ships a `uv` (as a committed `.venv/bin` would), first on `PATH` as if the
/// victim had activated it: the rebuild's preflight and installer never run it.
#[test]
fn a_uv_from_the_repository_is_never_run() {
    let r = project();
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("MARKER");
    crate::util::write_executable(
        &r.join("tools/uv"),
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    );
    r.commit_all("a uv of the repository's own");
    let venv = crate::util::Venv::new();
    let py = venv.python();
    r.cairn(["lock", "--python", py.to_str().unwrap(), "--", "true"])
        .expect(0);
    r.commit_all("lock");
    let path = format!(
        "{}:{}",
        r.join("tools").display(),
        std::env::var("PATH").unwrap()
    );
    let target = tempfile::tempdir().unwrap();
    let mut cmd = r.cmd();
    cmd.env("PATH", &path)
        .args(["rebuild", "--dry-run", "--format", "json", "--into"])
        .arg(target.path().join("plan"));
    let plan = Run::of(&mut cmd).json();
    assert!(!marker.exists(), "the repository's uv ran: {plan}");
    let mut cmd = r.cmd();
    cmd.env("PATH", &path)
        .args(["rebuild", "--installer", "uv", "--yes", "--into"])
        .arg(target.path().join("uv"));
    let out = Run::of(&mut cmd);
    assert!(!marker.exists(), "the repository's uv ran");
    if !crate::util::on_path("uv") {
        out.expect(2)
            .stderr_has("uv is not on PATH (outside the repository)");
    }
}

/// Ctrl-C, as a terminal sends it: SIGINT to the whole process group of `child` (started with
/// a group of its own).
fn ctrl_c(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Wait until something writes a line into the FIFO `fifo` (blocking, no polling), with a
/// generous bound so that a broken test fails instead of hanging.
#[track_caller]
fn wait_for(fifo: &Path, what: &str) {
    let fifo = fifo.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(std::fs::read_to_string(fifo)));
    rx.recv_timeout(std::time::Duration::from_secs(180))
        .unwrap_or_else(|_| panic!("{what} never started"))
        .unwrap();
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

fn git_worktrees(r: &Repo) -> usize {
    r.git(&["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

/// `project()` locked, and committed, with the interpreter of `own`.
fn locked_with(own: &crate::util::Venv) -> Repo {
    let r = project();
    let py = own.python();
    r.cairn(["lock", "--python", py.to_str().unwrap(), "--", "true"])
        .expect(0);
    r.commit_all("lock");
    r
}

/// Start `cairn rebuild --into <into>`, with what `more` adds (variables, options), in a
/// process group of its own, so that `ctrl_c` reaches it and everything it started, with its
/// output captured.
fn spawn_rebuild(
    r: &Repo,
    into: &Path,
    more: impl FnOnce(&mut std::process::Command),
) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = r.cmd();
    cmd.arg("rebuild").arg("--into").arg(into);
    more(&mut cmd);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// A Python lock, and a stub interpreter (for `--python`) that answers every question with a
/// venv of the test's own and, where `at` matches its arguments, says so into the FIFO
/// `started` and then waits on a FIFO nobody writes: Ctrl-C is what ends it.
fn stalling_python(
    own: &crate::util::Venv,
    dir: &Path,
    at: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let started = dir.join("started");
    let never = dir.join("never");
    mkfifo(&started);
    mkfifo(&never);
    let stub = dir.join("python3");
    crate::util::write_executable(
        &stub,
        format!(
            "#!/bin/sh\ncase \"$*\" in {at}) echo up > '{}'; read x < '{}'; exit 1 ;; esac\nexec '{}' \"$@\"\n",
            started.display(),
            never.display(),
            own.python().display()
        ),
    );
    (stub, started)
}

/// A rebuild with pip of a project locked with a venv of the test's own, started (as
/// `spawn_rebuild` does) with the stub interpreter of `stalling_python(.., at)`.
struct Stalled {
    r: Repo,
    into: std::path::PathBuf,
    /// The FIFO the stub writes into when it starts to wait.
    started: std::path::PathBuf,
    child: std::process::Child,
    /// The venv and temporary directories, kept until the test ends.
    _keep: (crate::util::Venv, tempfile::TempDir, tempfile::TempDir),
}

fn stalled_rebuild(at: &str) -> Stalled {
    let own = crate::util::Venv::new();
    let r = locked_with(&own);
    let tools = tempfile::tempdir().unwrap();
    let (stub, started) = stalling_python(&own, tools.path(), at);
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let child = spawn_rebuild(&r, &into, |cmd| {
        cmd.args(["--installer", "pip", "--yes", "--python"])
            .arg(&stub);
    });
    Stalled {
        r,
        into,
        started,
        child,
        _keep: (own, tools, target),
    }
}

/// Ctrl-C while the environment is being made (the venv half-created): the installer stops,
/// and the rebuild removes its directory and git worktree, and says so (exit 2).
#[test]
fn ctrl_c_while_the_environment_is_made_leaves_nothing() {
    let Stalled {
        r,
        into,
        started,
        child,
        _keep,
    } = stalled_rebuild("*'-m venv'*");
    wait_for(&started, "making the venv");
    assert!(into.join(".git").exists(), "the worktree is there by now");
    ctrl_c(&child);
    let out = Run::from(child.wait_with_output().unwrap());
    out.expect(2)
        .stderr_has("error: interrupted (Ctrl-C) during the environment step")
        .stderr_has("were removed");
    assert!(!into.exists(), "the rebuild directory is left");
    assert_eq!(git_worktrees(&r), 1, "a worktree is still registered");
}

/// Ctrl-C before anything is made (the preflight asks the interpreter its version): cairn
/// ends as any program does, and there is nothing to clean.
#[test]
fn ctrl_c_in_the_preflight_makes_nothing() {
    // The first thing cairn asks an interpreter is a `-c` script (the probe).
    let Stalled {
        r,
        into,
        started,
        child,
        _keep,
    } = stalled_rebuild("*-c*");
    wait_for(&started, "the interpreter probe");
    ctrl_c(&child);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(!into.exists());
    assert_eq!(git_worktrees(&r), 1);
}

/// Ctrl-C while the rebuilt command runs: the command gets it, the run is `failed`, and the
/// directory is kept for inspection with a note saying how to remove it.
#[test]
fn ctrl_c_during_the_run_keeps_the_directory_and_says_how_to_remove_it() {
    let r = Repo::new();
    // Blocks only when the test asks (a variable cairn does not record or restore).
    r.write(
        "train.py",
        "import os\nfifo = os.environ.get('CAIRN_TEST_STARTED')\nif fifo:\n    open(fifo, 'w').write('up\\n')\n    open(os.environ['CAIRN_TEST_NEVER']).read()\nopen('model.bin', 'w').write('done')\n",
    );
    r.write(".gitignore", "model.bin\n");
    r.commit_all("initial");
    r.cairn([
        "lock",
        "--no-python",
        "--checkpoint",
        "model.bin",
        "--",
        "python3",
        "train.py",
    ])
    .expect(0);
    r.commit_all("lock");
    let fifos = tempfile::tempdir().unwrap();
    let (started, never) = (fifos.path().join("started"), fifos.path().join("never"));
    mkfifo(&started);
    mkfifo(&never);
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let child = spawn_rebuild(&r, &into, |cmd| {
        cmd.env("CAIRN_TEST_STARTED", &started)
            .env("CAIRN_TEST_NEVER", &never)
            .args(["--run", "--format", "json"]);
    });
    wait_for(&started, "the rebuilt command");
    ctrl_c(&child);
    let report = Run::from(child.wait_with_output().unwrap())
        .expect(1)
        .json();
    let run = step(&report, "run");
    assert_eq!(run["status"], "failed", "{report}");
    let notes = run["notes"].to_string();
    assert!(notes.contains("interrupted"), "{notes}");
    assert!(notes.contains("git worktree remove --force"), "{notes}");
    assert!(into.join(".git").exists(), "kept for inspection");
    assert!(!into.join("model.bin").exists());
}

/// `--python` as a path relative to where cairn runs: the venv is made from `/`, so cairn makes
/// the path absolute first (a bare name stays a `PATH` lookup).
#[test]
fn a_relative_python_path_works() {
    let r = project();
    let own = crate::util::Venv::new();
    let py = own.python();
    r.cairn(["lock", "--python", py.to_str().unwrap(), "--", "true"])
        .expect(0);
    r.commit_all("lock");
    // The same interpreter, named relative to the repository (where cairn runs).
    let depth = r.path().canonicalize().unwrap().components().count() - 1;
    let relative = format!(
        "{}{}",
        "../".repeat(depth),
        py.canonicalize()
            .unwrap()
            .strip_prefix("/")
            .unwrap()
            .display()
    );
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let report = rebuild(
        &r,
        &into,
        &[
            "--yes",
            "--installer",
            "pip",
            "--python",
            &relative,
            "--format",
            "json",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(
        step(&report, "environment")["status"],
        "reproduced",
        "{report}"
    );
}
