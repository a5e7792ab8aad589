//! `cairn rebuild` end to end: a real training script, a real venv with a package from the
//! registry, a rebuild into a new directory whose checkpoint must be bit-identical; then `cairn
//! diff` names exactly what changed between two runs. And every way a rebuild cannot start
//! fails with a message that says what to do, leaving nothing behind.

use std::path::{Path, PathBuf};

use std::process::Command;

use crate::util::{assert_same_bytes, git_in, run_ok, Repo, Run, Venv};

/// A deterministic training script: reads the training data, imports `six` (a small registry
/// package) and mixes its version in, draws weights from CAIRN_SEED, and writes a checkpoint
/// and a metrics file.
const TRAIN_SIX: &str = r#"import hashlib, json, os, random
import six
import mylib
seed = int(os.environ["CAIRN_SEED"])
rng = random.Random(seed)
h = hashlib.sha256(six.__version__.encode() + mylib.NAME.encode())
for name in sorted(os.listdir("data/train")):
    with open(os.path.join("data/train", name), "rb") as f:
        h.update(f.read())
weights = bytes(rng.randrange(256) for _ in range(4096))
os.makedirs("runs", exist_ok=True)
with open("runs/model.bin", "wb") as f:
    f.write(h.digest() + weights)
loss = sum(weights) / len(weights) / 255 + h.digest()[0] / 1e4
with open("runs/metrics.json", "w") as f:
    json.dump({"loss": round(loss, 6), "seed": seed}, f)
print("trained, loss", loss)
"#;

/// The same without any package, for the tests that need no venv. `NOISE` (not a recorded
/// variable) perturbs the checkpoint and, slightly, the loss.
const TRAIN_PLAIN: &str = r#"import hashlib, json, os, random
seed = int(os.environ.get("CAIRN_SEED", "0"))
noise = os.environ.get("NOISE", "")
rng = random.Random(seed)
h = hashlib.sha256(noise.encode())
for name in sorted(os.listdir("data/train")):
    with open(os.path.join("data/train", name), "rb") as f:
        h.update(f.read())
os.makedirs("runs", exist_ok=True)
with open("runs/model.bin", "wb") as f:
    f.write(h.digest() + bytes(rng.randrange(256) for _ in range(1024)))
loss = 0.25 + (1e-9 if noise else 0.0)
with open("runs/metrics.json", "w") as f:
    json.dump({"loss": loss, "seed": seed}, f)
"#;

/// A project whose data is not in git (as usual for datasets): `train.py`, `data/train/`.
fn project(script: &str) -> Repo {
    let r = Repo::new();
    r.write("train.py", script);
    r.write(".gitignore", "runs/\ndata/\n");
    r.write("data/train/a.txt", "alpha\n");
    r.write("data/train/b.txt", "beta\n");
    r.commit_all("initial");
    r
}

fn lock_args<'a>(python: &'a [&'a str], program: &'a str, lock: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["lock"];
    if let Some(l) = lock {
        args.extend(["--lock", l]);
    }
    args.extend(python);
    args.extend([
        "--data",
        "data/train",
        "--checkpoint",
        "runs/model.bin",
        "--output",
        "runs/metrics.json",
        "--seed",
        "7",
        "--",
        program,
        "train.py",
    ]);
    args
}

/// A plain project locked without Python, its lock and .cairn committed.
fn locked_plain() -> Repo {
    let r = project(TRAIN_PLAIN);
    r.cairn(lock_args(&["--no-python"], "python3", None))
        .expect(0);
    r.commit_all("lock");
    r
}

/// `project(TRAIN_SIX)` with the project's own package `mylib` in `pkg/`, committed and
/// installed editable (from the repository) into `venv`.
fn project_with_own_package(venv: &Venv) -> Repo {
    let r = project(TRAIN_SIX);
    r.write(
        "pkg/pyproject.toml",
        "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"mylib\"\nversion = \"0.1.0\"\n",
    );
    r.write("pkg/mylib/__init__.py", "NAME = 'mylib 0.1'\n");
    r.write(
        ".gitignore",
        "runs/\ndata/\n*.egg-info/\nbuild/\n__pycache__/\n",
    );
    r.commit_all("the project's own package");
    venv.pip(&["install", "-e", r.join("pkg").to_str().unwrap()]);
    r
}

/// The `cairn rebuild --into INTO ARGS...` command in `r`, for a test that sets more on it.
fn rebuild_cmd(r: &Repo, into: &Path, args: &[&str]) -> Command {
    let mut cmd = r.cmd();
    cmd.arg("rebuild").arg("--into").arg(into).args(args);
    cmd
}

/// Run `cairn rebuild --into INTO ARGS...` in `r`.
pub(crate) fn rebuild(r: &Repo, into: &Path, args: &[&str]) -> Run {
    Run::of(&mut rebuild_cmd(r, into, args))
}

/// The step `name` (`code`, `environment`, `run`...) of a `rebuild --format json` report.
pub(crate) fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {report}"))
}

/// The worktrees git knows for the repository (the main one included).
fn worktrees(r: &Repo) -> usize {
    r.git(&["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

/// The issue's story: lock a run, rebuild it elsewhere with --run and get the same checkpoint
/// bit for bit; then upgrade the package and change one data file, lock again, and `diff` names
/// exactly those two causes (and the checkpoint and metrics as their effects).
///
/// The project also has its own package, installed editable from the repository: the rebuild
/// installs it from the rebuilt worktree.
#[test]
fn rebuilt_run_is_bit_identical_and_diff_names_the_two_causes() {
    let venv = Venv::new();
    venv.pip(&["install", "six==1.16.0"]);
    let py = venv.python();
    let py = py.to_str().unwrap();
    // The project's own package, editable from the repository.
    let r = project_with_own_package(&venv);
    r.cairn(lock_args(&["--python", py], py, None)).expect(0);
    let model = std::fs::read(r.join("runs/model.bin")).unwrap();
    let metrics = r.read("runs/metrics.json");
    r.commit_all("lock the run");

    // Rebuild into a new directory and run.
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let out = rebuild(
        &r,
        &into,
        &["--run", "--installer", "pip", "--format", "json"],
    )
    .expect(0);
    let report = out.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["ran"], true);
    for s in ["code", "environment", "data", "run"] {
        assert_eq!(step(&report, s)["status"], "reproduced", "{s}: {report}");
    }
    assert_eq!(
        std::fs::read(into.join("runs/model.bin")).unwrap(),
        model,
        "the rebuilt checkpoint is bit-identical"
    );
    assert_eq!(
        std::fs::read_to_string(into.join("runs/metrics.json")).unwrap(),
        metrics
    );
    // It ran the rebuilt venv's interpreter, not the one it was locked with.
    let argv0 = report["command"]["argv"][0].as_str().unwrap();
    assert_eq!(
        Path::new(argv0),
        into.canonicalize().unwrap().join(".venv/bin/python")
    );
    assert_eq!(report["command"]["set_env"]["CAIRN_SEED"], "7");
    let env_actions = step(&report, "environment")["actions"].to_string();
    assert!(
        env_actions.contains("pip install --no-deps"),
        "{env_actions}"
    );
    // The editable package comes from the rebuilt worktree, not from this repository.
    let rebuilt_py = into.join(".venv/bin/python");
    let found = run_ok(
        crate::util::command(&rebuilt_py)
            .args(["-c", "import mylib; print(mylib.__file__)"])
            .current_dir(target.path()),
    );
    let found = found.trim();
    assert_eq!(
        Path::new(found),
        into.canonicalize().unwrap().join("pkg/mylib/__init__.py")
    );
    // The training output went to stderr: stdout is the report alone.
    assert!(out.stderr.contains("trained, loss"), "{}", out.stderr);
    // The rebuilt directory verifies on its own (the lock and sidecars were copied there). Its
    // dataset is a link to the original project, outside the rebuilt repository: verify reads
    // it only when told to.
    Run::of(r.cmd().current_dir(&into).args([
        "verify",
        "--python",
        rebuilt_py.to_str().unwrap(),
        "--data",
        "train=data/train",
    ]))
    .expect(0);

    // A second run: the package upgraded, one data file changed.
    venv.pip(&["install", "six==1.17.0"]);
    r.write("data/train/a.txt", "alpha, revised\n");
    r.cairn(lock_args(&["--python", py], py, Some("second.cairn.lock")))
        .expect(0);
    let out = r
        .cairn([
            "diff",
            "cairn.lock",
            "second.cairn.lock",
            "--format",
            "json",
        ])
        .expect(1);
    let d = out.json();
    assert_eq!(
        crate::util::diff_keys(&d["causes"]),
        [
            ("data".into(), "train".into(), "a.txt".into()),
            ("python".into(), "six".into(), String::new()),
        ],
        "{d}"
    );
    assert_eq!(d["causes"][1]["a"], "1.16.0");
    assert_eq!(d["causes"][1]["b"], "1.17.0");
    let effects: Vec<&str> = d["effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(effects, ["runs/model.bin", "runs/metrics.json"], "{d}");
    assert_eq!(d["code"]["same_tree"], true);
    assert_eq!(d["same"], false);
    let human = r
        .cairn(["diff", "cairn.lock", "second.cairn.lock"])
        .expect(1);
    human
        .stdout_has("causes (most likely first):\n  packages: 1 changed\n    six changed 1.16.0 -> 1.17.0, imported by train.py\n  data train: 1 of 2 files changed, 0 added, 0 removed\n    changed      a.txt\n")
        .stdout_has("  checkpoint runs/model.bin: changed blake3:");
}

/// Without --run and without a terminal, rebuild prepares and verifies, says the command, and
/// runs nothing. A dirty run's uncommitted change is part of the rebuilt code.
#[test]
fn without_run_it_prepares_verifies_and_says_the_command() {
    let r = project(TRAIN_PLAIN);
    r.write(
        "train.py",
        format!("{TRAIN_PLAIN}# an uncommitted experiment\n"),
    );
    r.write("notes.txt", "untracked, part of the code\n");
    r.cairn(lock_args(&["--no-python"], "python3", None))
        .expect(0);
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("prepared");
    let out = rebuild(&r, &into, &[]).expect(0);
    out.stdout_has("  code         reproduced")
        .stdout_has("  environment  skipped")
        .stdout_has("  data         reproduced")
        .stdout_has("  run          not run")
        .stdout_has("command (not run): cd ")
        .stdout_has("CAIRN_SEED=7 python3 train.py")
        .stdout_has("pass --run");
    assert!(r.read("train.py").contains("an uncommitted experiment"));
    assert!(std::fs::read_to_string(into.join("train.py"))
        .unwrap()
        .contains("an uncommitted experiment"));
    assert!(into.join("notes.txt").is_file());
    assert!(!into.join("runs").exists(), "nothing ran");
    // The data was found in this project and linked into the rebuilt one.
    assert!(std::fs::symlink_metadata(into.join("data/train"))
        .unwrap()
        .file_type()
        .is_symlink());

    // With --run it runs and reproduces.
    let into2 = target.path().join("ran");
    rebuild(&r, &into2, &["--run"])
        .expect(0)
        .stdout_has("reproduced: every step matches the lock");
    assert_same_bytes(&into2.join("runs/model.bin"), &r.join("runs/model.bin"));
}

/// A run that does not reproduce: exit 1, the differing checkpoint named, metrics compared by
/// value within --atol, and the directory kept for inspection.
#[test]
fn a_run_that_does_not_reproduce_is_named_and_kept() {
    let r = locked_plain();
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("noisy");
    let out =
        Run::of(rebuild_cmd(&r, &into, &["--run", "--format", "json"]).env("NOISE", "1")).expect(1);
    let report = out.json();
    assert_eq!(report["ok"], false);
    let run = step(&report, "run");
    assert_eq!(run["status"], "differs");
    let subjects: Vec<(&str, &str)> = run["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["subject"].as_str().unwrap(),
                d["path"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        subjects,
        [("runs/model.bin", ""), ("runs/metrics.json", "loss")],
        "{report}"
    );
    assert!(into.join("runs/model.bin").is_file(), "kept for inspection");

    // Within an absolute tolerance the metrics reproduce; the checkpoint still does not.
    let into2 = target.path().join("tolerant");
    let out =
        Run::of(rebuild_cmd(&r, &into2, &["--run", "--atol", "1e-6"]).env("NOISE", "1")).expect(1);
    out.stdout_has("run          runs/model.bin changed")
        .stdout_has("not reproduced: run");
    out.stdout_lacks("runs/metrics.json changed");
}

/// Data that differs from the lock: reported file by file, and the command is not run.
#[test]
fn data_that_differs_is_named_and_the_command_not_run() {
    let r = locked_plain();
    r.write("data/train/b.txt", "beta, edited\n");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("x");
    let out = rebuild(&r, &into, &["--run"]).expect(1);
    out.stdout_has("data         train: b.txt changed")
        .stdout_has("note: run: not run, because the data did not reproduce");
    assert!(!into.join("runs").exists());
}

#[test]
fn missing_interpreter_version_says_what_to_install() {
    let r = project(TRAIN_PLAIN);
    r.cairn(lock_args(&["--python", "python3"], "python3", None))
        .expect(0);
    let lock = r.lock_toml("cairn.lock");
    let version = lock["python"]["version"].as_str().unwrap().to_string();
    let text = r.read("cairn.lock").replacen(
        &format!("version = \"{version}\""),
        "version = \"3.99.1\"",
        1,
    );
    std::fs::write(r.join("cairn.lock"), &text).unwrap();
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("never");
    let out = rebuild(&r, &into, &[]).expect(2);
    out.stderr_has("error: the lock needs Python 3.99.1")
        .stderr_has("hint: install Python 3.99.1 (e.g. `uv python install 3.99.1` or `pyenv install 3.99.1`) or pass --python PATH");
    assert!(!into.exists(), "nothing was created");
    assert_eq!(worktrees(&r), 1);

    // --python of another version is refused too, unless asked for.
    let out = rebuild(&r, &into, &["--python", "python3"]).expect(2);
    out.stderr_has("but the lock needs Python cpython 3.99.1")
        .stderr_has("--allow-other-python");
    assert!(!into.exists());
}

#[test]
fn unknown_commit_says_to_fetch_it() {
    let r = locked_plain();
    let head = r.lock_toml("cairn.lock")["code"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let text = r.read("cairn.lock").replace(&head, unknown);
    std::fs::write(r.join("cairn.lock"), &text).unwrap();
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("never");
    let out = rebuild(&r, &into, &[]).expect(2);
    out.stderr_has(&format!(
        "error: the locked commit {unknown} is not in this repository, and the lock records no remote"
    ))
    .stderr_has("hint: fetch the commit into this repository");
    assert!(!into.exists());

    // With a recorded remote that does not have it: git's own answer, and what to do.
    let empty = tempfile::tempdir().unwrap();
    git_in(empty.path(), r.home(), &["init", "-q", "--bare"]);
    let remote = empty.path().to_str().unwrap();
    let text = text.replace(
        "branch = \"main\"",
        &format!("branch = \"main\"\nremote = \"{remote}\""),
    );
    std::fs::write(r.join("cairn.lock"), &text).unwrap();
    // Fetching from the lock's remote needs consent: without it, nothing is fetched or made.
    let out = rebuild(&r, &into, &[]).expect(2);
    out.stderr_has(&format!(
        "fetching it from {remote} (the lock's remote) needs consent"
    ))
    .stderr_has("pass --yes to fetch");
    assert!(!into.exists());
    let out = rebuild(&r, &into, &["--yes"]).expect(2);
    out.stderr_has(&format!("fetching it from {remote} failed"))
        .stderr_has(&format!("hint: fetch it (`git fetch {remote}`)"));
    assert!(!into.exists());
    assert_eq!(worktrees(&r), 1);
}

/// The commit is only on the remote the lock names: rebuild fetches it with git.
#[test]
fn a_commit_on_the_recorded_remote_is_fetched() {
    let origin = tempfile::tempdir().unwrap();
    let r = project(TRAIN_PLAIN);
    git_in(origin.path(), r.home(), &["init", "-q", "--bare"]);
    r.git(&["remote", "add", "origin", origin.path().to_str().unwrap()]);
    r.git(&["push", "-q", "origin", "main"]);
    r.git(&["checkout", "-q", "-b", "exp"]);
    r.write("train.py", format!("{TRAIN_PLAIN}# experiment\n"));
    r.commit_all("experiment");
    r.git(&["push", "-q", "origin", "exp"]);
    r.cairn(lock_args(&["--no-python"], "python3", None))
        .expect(0);
    let lock_text = r.read("cairn.lock");
    assert!(lock_text.contains(&format!("remote = \"{}\"", origin.path().display())));

    // Somebody else: a clone of main only, with the lock and the data.
    let other = tempfile::tempdir().unwrap();
    let clone = other.path().join("clone");
    git_in(
        other.path(),
        r.home(),
        &[
            "clone",
            "-q",
            "--no-local",
            "--single-branch",
            "-b",
            "main",
            origin.path().to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    std::fs::write(clone.join("cairn.lock"), &lock_text).unwrap();
    std::fs::create_dir_all(clone.join("data/train")).unwrap();
    for f in ["a.txt", "b.txt"] {
        std::fs::copy(
            r.join("data/train").join(f),
            clone.join("data/train").join(f),
        )
        .unwrap();
    }
    let commit = r.head();
    let into = other.path().join("rebuilt");
    let out = Run::of(rebuild_cmd(&r, &into, &["--yes", "--format", "json"]).current_dir(&clone))
        .expect(0);
    let report = out.json();
    let code = step(&report, "code");
    assert_eq!(code["status"], "reproduced");
    assert!(
        code["actions"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("fetched {}", &commit[..12])),
        "{report}"
    );
    assert!(std::fs::read_to_string(into.join("train.py"))
        .unwrap()
        .contains("# experiment"));
}

#[test]
fn missing_data_names_the_dataset_and_suggests_data() {
    let r = locked_plain();
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("train");
    std::fs::rename(r.join("data/train"), &moved).unwrap();
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("never");
    let out = rebuild(&r, &into, &[]).expect(2);
    out.stderr_has("error: dataset train is missing: looked at ")
        .stderr_has("data/train")
        .stderr_has("hint: say where it is on this machine with --data train=PATH");
    assert!(!into.exists());
    assert_eq!(worktrees(&r), 1);

    // Told where it is, the rebuild goes ahead and links it in.
    let out = rebuild(
        &r,
        &into,
        &["--data", &format!("train={}", moved.display()), "--run"],
    )
    .expect(0);
    out.stdout_has("reproduced: every step matches the lock");
    assert_eq!(
        std::fs::read_link(into.join("data/train")).unwrap(),
        moved.canonicalize().unwrap()
    );
}

#[test]
fn a_directory_that_is_not_empty_is_refused_untouched() {
    let r = locked_plain();
    let target = tempfile::tempdir().unwrap();
    std::fs::write(target.path().join("keep.txt"), "mine").unwrap();
    let out = r
        .cairn(["rebuild", "--into", target.path().to_str().unwrap()])
        .expect(2);
    out.stderr_has("already exists and is not empty")
        .stderr_has("hint: pass --into with a new or empty directory");
    let names: Vec<PathBuf> = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names, [target.path().join("keep.txt")]);
    // Inside the repository is refused too.
    r.cairn(["rebuild", "--into", "sub/rebuild"])
        .expect(2)
        .stderr_has("is inside the repository");
    assert!(!r.join("sub").exists());
}

/// A failure after the worktree was made (here: an interpreter whose venv module is broken, as
/// on a Debian without python3-venv) removes everything the rebuild made.
#[test]
fn an_error_part_way_removes_what_was_made() {
    let r = project(TRAIN_PLAIN);
    r.cairn(lock_args(&["--python", "python3"], "python3", None))
        .expect(0);
    // The stub answers every question with a venv of the test's own (never the system's
    // interpreter), and fails where the venv would be made.
    let own = Venv::new();
    let tools = tempfile::tempdir().unwrap();
    let broken = tools.path().join("python3");
    crate::util::write_executable(
        &broken,
        format!(
            "#!/bin/sh\ncase \"$*\" in *'-m venv'*) echo 'No module named venv' >&2; exit 1 ;; esac\nexec '{}' \"$@\"\n",
            own.python().display()
        ),
    );
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("half");
    // pip: the stub fails where pip's venv is made (uv makes venvs without `-m venv`).
    let out = rebuild(
        &r,
        &into,
        &[
            "--python",
            broken.to_str().unwrap(),
            "--installer",
            "pip",
            "--yes",
        ],
    )
    .expect(2);
    out.stderr_has("error: creating the venv failed")
        .stderr_has("No module named venv")
        .stderr_has("whatever had been created was removed");
    assert!(!into.exists());
    assert_eq!(worktrees(&r), 1);
}

/// A link committed in the checkout that leads out of the rebuilt directory is never written
/// through: the victim's files stay, and the dataset is reported as not put in place.
#[test]
fn a_committed_link_never_makes_rebuild_touch_outside_files() {
    let top = tempfile::tempdir().unwrap();
    let r = Repo::new();
    // The repository's data/ is a relative link to a sibling directory.
    let repo_outside = r.path().parent().unwrap().join(format!(
        "{}-outside",
        r.path().file_name().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(repo_outside.join("train")).unwrap();
    std::fs::write(repo_outside.join("train/a.txt"), "alpha\n").unwrap();
    let rel_target = format!("../{}", repo_outside.file_name().unwrap().to_string_lossy());
    std::os::unix::fs::symlink(&rel_target, r.join("data")).unwrap();
    r.write("train.py", TRAIN_PLAIN);
    r.write(".gitignore", "runs/\n");
    r.commit_all("data is a link");
    r.cairn(crate::util::LOCK_TRAIN_DATA).expect(0);
    // Next to the rebuild, the same link leads to somebody else's files.
    let victim = top.path().join(rel_target.trim_start_matches("../"));
    std::fs::create_dir_all(victim.join("train")).unwrap();
    std::fs::write(victim.join("train/precious.txt"), "do not delete\n").unwrap();
    let into = top.path().join("rebuilt");
    // A dataset behind a link out of the repository is recorded as external, so its place on
    // this machine is given explicitly.
    let data_arg = format!("train={}", repo_outside.join("train").display());
    // Being external, it is checked where --data says and not linked into the rebuilt tree, so
    // nothing is written through the committed link.
    r.cairn([
        "rebuild",
        "--into",
        into.to_str().unwrap(),
        "--data",
        &data_arg,
    ])
    .expect(0);
    let victim_entries: Vec<_> = std::fs::read_dir(victim.join("train"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(victim_entries, ["precious.txt"]);
    assert_eq!(
        std::fs::read_to_string(victim.join("train/precious.txt")).unwrap(),
        "do not delete\n"
    );
    std::fs::remove_dir_all(&repo_outside).unwrap();
}

/// A project in a subdirectory of the repository (its own cairn.toml): the command runs in
/// the same subdirectory of the rebuilt worktree.
#[test]
fn a_project_in_a_subdirectory_runs_in_that_subdirectory() {
    let r = Repo::new();
    r.write("README", "monorepo\n");
    r.write("ml/cairn.toml", "[data]\ntrain = \"data/train\"\n");
    r.write("ml/train.py", TRAIN_PLAIN);
    r.write("ml/.gitignore", "runs/\ndata/\n");
    r.write("ml/data/train/a.txt", "alpha\n");
    r.commit_all("initial");
    r.cairn_in(
        "ml",
        [
            "lock",
            "--no-python",
            "--checkpoint",
            "runs/model.bin",
            "--seed",
            "3",
            "--",
            "python3",
            "train.py",
        ],
    )
    .expect(0);
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    r.cairn_in("ml", ["rebuild", "--into", into.to_str().unwrap(), "--run"])
        .expect(0)
        .stdout_has("reproduced: every step matches the lock");
    assert_same_bytes(
        &into.join("ml/runs/model.bin"),
        &r.join("ml/runs/model.bin"),
    );
    assert!(into.join("ml/cairn.lock").is_file());
}

/// On a terminal, rebuild shows the plan and asks once, before anything of the lock's; only a
/// yes runs the command.
/// (`script` from util-linux gives the command a terminal.)
#[test]
fn on_a_terminal_it_asks_before_running() {
    crate::util::require_tool("script", "util-linux's script gives rebuild a terminal");
    let r = locked_plain();
    let target = tempfile::tempdir().unwrap();
    let ask = |answer: &str, dir: &Path| {
        let args = format!("rebuild --into {}", dir.display());
        crate::util::on_terminal(r.cmd_raw("script"), &args, answer).expect(0)
    };
    let no = target.path().join("no");
    ask("n\n", &no)
        .stdout_has("Plan: rebuild run")
        .stdout_has("CAIRN_SEED=7 python3 train.py")
        .stdout_has("Rebuild as planned and run the command? [y/N]");
    assert!(!no.join("runs").exists(), "a no does not run it");
    let yes = target.path().join("yes");
    ask("y\n", &yes).stdout_has("reproduced: every step matches the lock");
    assert!(yes.join("runs/model.bin").is_file());
}

/// The uv path: `uv venv` and `uv pip install`. .ci/run installs uv from PyPI into a venv of its
/// own and runs this with `cargo test -- --ignored rebuild_with_uv` (with uv on PATH, every
/// other rebuild test that leaves the installer to cairn uses uv too).
#[test]
#[ignore = "needs uv on PATH: .ci/run installs it and runs this with --ignored"]
fn rebuild_with_uv_when_it_is_on_path() {
    crate::util::require_tool("uv", "this test is about rebuilding with uv");
    let venv = Venv::new();
    venv.pip(&["install", "six==1.16.0"]);
    let py = venv.python();
    let py = py.to_str().unwrap();
    // The project's own package, editable from the repository.
    let r = project_with_own_package(&venv);
    r.cairn(lock_args(&["--python", py], py, None)).expect(0);
    r.commit_all("lock the run");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("uv");
    let out = rebuild(
        &r,
        &into,
        &["--run", "--installer", "uv", "--format", "json"],
    )
    .expect(0);
    let report = out.json();
    let env = step(&report, "environment");
    assert_eq!(env["status"], "reproduced", "{report}");
    // `UV venv ...`, UV being the uv found on PATH (by its absolute path: cairn never runs a uv
    // from inside the repository).
    let first: Vec<&str> = env["actions"][0]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(
        first[0].rsplit('/').next() == Some("uv") && first[1] == "venv",
        "{first:?}: {report}"
    );
    assert_same_bytes(&into.join("runs/model.bin"), &r.join("runs/model.bin"));
}

/// Without --into, the rebuild goes next to the repository, named after it and the run; a
/// second rebuild of the same run refuses to overwrite it.
#[test]
fn the_default_directory_is_next_to_the_repository() {
    let r = locked_plain();
    let id = r.lock_toml("cairn.lock")["run"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = r.path().canonicalize().unwrap();
    let expected = repo.parent().unwrap().join(format!(
        "{}-rebuild-{}",
        repo.file_name().unwrap().to_string_lossy(),
        &id[..8]
    ));
    struct Gone(PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(expected.clone());
    r.cairn(["rebuild"])
        .expect(0)
        .stdout_has(&format!("in {}", expected.display()));
    assert!(expected.join("train.py").is_file());
    r.cairn(["rebuild"])
        .expect(2)
        .stderr_has("already exists and is not empty")
        .stderr_has("pass --into");
    assert!(
        expected.join("train.py").is_file(),
        "the first rebuild is untouched"
    );
}

/// Consent in three degrees on one lock with a Python environment: none (the code and data are
/// checked, the venv is not made, nothing runs), `--yes` (the venv is made and compared, the
/// command does not run), and `--dry-run` (the plan on stdout, nothing made).
#[test]
fn yes_builds_the_environment_and_only_run_runs_the_command() {
    let venv = Venv::new();
    let py = venv.python();
    let py = py.to_str().unwrap();
    let r = project(TRAIN_PLAIN);
    r.cairn(lock_args(&["--python", py], py, None)).expect(0);
    r.commit_all("lock");
    let target = tempfile::tempdir().unwrap();

    let dry = rebuild(
        &r,
        &target.path().join("dry"),
        &["--python", py, "--dry-run"],
    )
    .expect(0);
    dry.stdout_has("Plan: rebuild run")
        .stdout_has("(in this repository)")
        .stdout_has("pinned packages from the package index")
        .stdout_has("CAIRN_SEED=7");
    assert!(
        !target.path().join("dry").exists(),
        "a dry run makes nothing"
    );

    let none = target.path().join("none");
    let out = rebuild(&r, &none, &["--python", py]).expect(0);
    out.stdout_has("  code         reproduced")
        .stdout_has("  environment  skipped")
        .stdout_has("  data         reproduced")
        .stdout_has("  run          not run")
        .stdout_has("needs consent (--yes, or --run)")
        .stdout_has("pass --yes to build it, --run to also run the command")
        .stderr_has("No consent");
    assert!(!none.join(".venv").exists(), "no venv without consent");
    assert!(!none.join("runs").exists());

    let yes = target.path().join("yes");
    let out = rebuild(&r, &yes, &["--python", py, "--yes"]).expect(0);
    out.stdout_has("  environment  reproduced")
        .stdout_has("  run          not run")
        .stdout_has("pass --run to run the command");
    assert!(yes.join(".venv/bin/python").exists());
    assert!(!yes.join("runs").exists(), "--yes does not run the command");
}
