//! The Python package (crates/py): the wheel is built with maturin from this workspace, with the
//! `cairn` binary under test as its command, and installed with pip into a fresh venv; then the
//! command and `import cairn` are used on real repositories: checkpoints from many processes at
//! once inside a real `cairn lock -- python ...` run, the API's digests and reports against the
//! CLI's, and each bad input's exception.
//!
//! Without maturin (build.rs looks on PATH and at CAIRN_TEST_MATURIN) these tests are ignored
//! with the reason; .ci/run installs it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::{command, run_ok, Repo, Run, LOCK_ML_NO_PYTHON};

/// The venv with the wheel installed, made once per test run under the target directory.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-api");
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let wheels = base.join("wheels");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut build = command(root.join("crates/py/build-wheel"));
        build
            .arg(&wheels)
            .args(["--debug", "--binary", env!("CARGO_BIN_EXE_cairn")])
            // Its own target directory: the one `cargo test` builds into may be locked.
            .env("CARGO_TARGET_DIR", root.join("target/python-wheel"));
        if let Some(m) = option_env!("CAIRN_TEST_MATURIN").filter(|m| !m.is_empty()) {
            build.env("MATURIN", m);
        }
        run_ok(&mut build);
        let wheel = std::fs::read_dir(&wheels)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .expect("maturin wrote a wheel");
        let venv = base.join("venv");
        run_ok(command("python3").args(["-m", "venv"]).arg(&venv));
        run_ok(
            command(venv.join("bin/python"))
                .args(["-m", "pip", "install", "-q", "--no-index"])
                .arg("--disable-pip-version-check")
                .arg(&wheel),
        );
        venv
    })
}

fn python() -> PathBuf {
    venv().join("bin/python")
}

/// The cairn-ml wheel the venv was installed from (built once per test run), for the tests of
/// other modules that install it into venvs of their own (tests/integration/frameworks.rs).
pub(crate) fn wheel() -> PathBuf {
    let wheels = venv().parent().unwrap().join("wheels");
    std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("maturin wrote a wheel")
}

/// Run `script` with the venv's Python in the repository root (hermetic, plus `env`).
fn py(r: &Repo, env: &[(&str, &str)], script: &str) -> Run {
    Run::of(
        r.cmd_raw(python().to_str().unwrap())
            .envs(env.iter().copied())
            .args(["-c", script]),
    )
}

/// The exception `script` raised, as the last line of stdout: `ClassName|message|hint`.
const CATCH: &str = r#"
import sys, cairn
def catch(f):
    try:
        f()
    except cairn.CairnError as e:
        print(f"{type(e).__name__}|{e}|{e.hint}|{isinstance(e, FileNotFoundError)}")
    else:
        print("no exception")
"#;

#[test]
#[cfg_attr(
    not(cairn_maturin),
    ignore = "needs maturin (pip install maturin); .ci/run installs it"
)]
fn the_wheel_installs_the_same_command_and_the_typed_module() {
    let installed = venv().join("bin/cairn");
    let ours = std::fs::read(env!("CARGO_BIN_EXE_cairn")).unwrap();
    assert!(
        std::fs::read(&installed).unwrap() == ours,
        "the wheel's cairn is not the binary under test"
    );
    let r = Repo::ml();
    for (args, code) in [
        (&["--version"][..], 0),
        (&["verify"][..], 2),
        (&["no-such-command"][..], 2),
    ] {
        let theirs = Run::of(r.cmd_raw(installed.to_str().unwrap()).args(args));
        let direct = r.cairn(args);
        assert_eq!((theirs.code, &theirs.stdout), (code, &direct.stdout));
        assert_eq!(theirs.stderr, direct.stderr);
    }
    let out = py(
        &r,
        &[],
        "import cairn, os; d = os.path.dirname(cairn.__file__); \
         print(cairn.__version__, sorted(f for f in os.listdir(d) if not f.startswith('__')))",
    )
    .expect(0);
    assert_eq!(
        out.stdout.trim(),
        format!(
            "{} ['_cairn.abi3.so', '_cairn.pyi', '_errors.py', '_hooks.py', 'keras.py', 'lightning.py', 'py.typed', 'transformers.py']",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// `uv tool install` of the wheel (offline, into the test's own directories) gives the same
/// `cairn` command, as the README says.
#[test]
#[cfg_attr(
    not(cairn_maturin),
    ignore = "needs maturin (pip install maturin); .ci/run installs it"
)]
fn uv_tool_install_of_the_wheel_gives_the_command() {
    crate::util::require_tool("uv", "uv tool install of the wheel; .ci/run installs uv");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    run_ok(
        command("uv")
            .args(["tool", "install", "--offline", "--python", "python3"])
            .arg(wheel())
            .env("UV_TOOL_DIR", dir.path().join("tools"))
            .env("UV_TOOL_BIN_DIR", &bin)
            .env("UV_CACHE_DIR", dir.path().join("cache"))
            .env("UV_PYTHON_DOWNLOADS", "never"),
    );
    let installed = bin.join("cairn");
    let r = Repo::ml();
    for args in [&["--version"][..], &["verify"][..]] {
        let theirs = Run::of(r.cmd_raw(installed.to_str().unwrap()).args(args));
        let direct = r.cairn(args);
        assert_eq!(
            (theirs.code, &theirs.stdout, &theirs.stderr),
            (direct.code, &direct.stdout, &direct.stderr),
            "{args:?}"
        );
    }
}

/// 8 processes each record 50 checkpoints at once, inside a real `cairn lock -- python` run:
/// all 400 reach the final lock, with their steps, metrics and digests.
#[test]
#[cfg_attr(
    not(cairn_maturin),
    ignore = "needs maturin (pip install maturin); .ci/run installs it"
)]
fn eight_processes_of_fifty_checkpoints_give_400_entries() {
    let r = Repo::ml();
    r.write(
        "train_many.py",
        r#"import os, subprocess, sys
WORKER = '''
import os, sys, cairn
w = int(sys.argv[1])
assert cairn.run_id() is not None
os.makedirs(f"runs/w{w}", exist_ok=True)
for s in range(50):
    p = f"runs/w{w}/step-{s:02}.bin"
    with open(p, "wb") as f:
        f.write(f"worker {w} step {s}".encode())
    got = cairn.checkpoint(p, step=s, metrics={"loss": 1.0 / (s + 1), "worker": w})
    assert got.digest == cairn.hash(p), (got, p)
'''
procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(w)]) for w in range(8)]
assert all(p.wait() == 0 for p in procs)
os.makedirs("runs", exist_ok=True)
open("runs/final.safetensors", "wb").write(b"final")
"#,
    );
    r.commit_all("a training script that saves from 8 processes");
    let mut args: Vec<&str> = LOCK_ML_NO_PYTHON[..LOCK_ML_NO_PYTHON.len() - 2].to_vec();
    let py = python();
    args.extend([py.to_str().unwrap(), "train_many.py"]);
    r.cairn(&args).expect(0);
    let lock = r.lock_toml("cairn.lock");
    let checkpoints = lock["checkpoint"].as_array().unwrap();
    let mut paths: Vec<&str> = checkpoints
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .filter(|p| p.contains("/step-"))
        .collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 400);
    let one = checkpoints
        .iter()
        .find(|c| c["path"].as_str() == Some("runs/w3/step-07.bin"))
        .unwrap();
    assert_eq!(one["step"].as_integer(), Some(7));
    assert_eq!(one["metrics"]["loss"].as_float(), Some(0.125));
    assert_eq!(one["metrics"]["worker"].as_float(), Some(3.0));
    let digest = blake3::hash(b"worker 3 step 7").to_hex();
    assert_eq!(one["digest"].as_str(), Some(&*format!("blake3:{digest}")));
    r.cairn(["verify"]).expect(0);
}

/// Only rank 0 records unless told otherwise; $RANK and all_ranks decide.
#[test]
#[cfg_attr(
    not(cairn_maturin),
    ignore = "needs maturin (pip install maturin); .ci/run installs it"
)]
fn only_rank_zero_records_unless_all_ranks() {
    let r = Repo::ml_locked();
    r.write("runs/r.bin", "rank 1's copy");
    let before = r.read("cairn.lock");
    let out = py(
        &r,
        &[("RANK", "1")],
        "import cairn; print(cairn.rank(), cairn.checkpoint('runs/r.bin', step=1, lock='cairn.lock'))",
    )
    .expect(0);
    assert_eq!(out.stdout.trim(), "1 None");
    assert_eq!(r.read("cairn.lock"), before, "rank 1 wrote the lock");
    let out = py(
        &r,
        &[("RANK", "1")],
        "import cairn; print(cairn.checkpoint('runs/r.bin', step=1, lock='cairn.lock', all_ranks=True).path)",
    )
    .expect(0);
    assert_eq!(out.stdout.trim(), "runs/r.bin");
    assert!(r.read("cairn.lock").contains("path = \"runs/r.bin\""));
}

/// The API and the command give the same digests, verify reports, lineage and environment.
#[test]
#[cfg_attr(
    not(cairn_maturin),
    ignore = "needs maturin (pip install maturin); .ci/run installs it"
)]
fn the_api_and_the_command_agree() {
    let r = Repo::ml();
    r.write(
        "train_api.py",
        "import os, cairn\nos.makedirs('runs', exist_ok=True)\n\
         open('runs/extra.bin', 'w').write('saved during the run')\n\
         cairn.checkpoint('runs/extra.bin', step=9, metrics={'loss': 0.5})\n\
         open('runs/final.safetensors', 'w').write('final')\n",
    );
    r.commit_all("training that records a checkpoint");
    let py_path = python();
    let mut args: Vec<&str> = LOCK_ML_NO_PYTHON[..LOCK_ML_NO_PYTHON.len() - 3].to_vec();
    args.retain(|a| *a != "--no-python");
    args.extend(["--python", py_path.to_str().unwrap(), "--"]);
    args.extend([py_path.to_str().unwrap(), "train_api.py"]);
    r.cairn(&args).expect(0);
    assert!(r.read("cairn.lock").contains("path = \"runs/extra.bin\""));
    // Something to find: a changed training file and a changed checkpoint.
    r.write("data/train/a.txt", "ALPHA\n");
    r.write("runs/final.safetensors", "overwritten");

    let out = py(
        &r,
        &[],
        &format!(
            r#"import json, cairn
rep = cairn.verify(python={py:?}, no_cache=True)
print(json.dumps({{
  "hash": [cairn.hash(p) for p in ["train.py", "data/train", "runs"]],
  "verify": rep.to_dict(),
  "typed": [[f.area, f.severity, f.subject, f.path, f.change] for f in rep.findings] + [rep.ok],
  "lineage": cairn.lineage("runs/extra.bin"),
  "env": cairn.env(python={py:?}),
}}))"#,
            py = py_path.to_str().unwrap()
        ),
    )
    .expect(0);
    let api: Value = serde_json::from_str(&out.stdout).unwrap();

    let hashes = r
        .cairn(["hash", "train.py", "data/train", "runs"])
        .expect(0);
    let cli_hashes: Vec<&str> = hashes
        .stdout
        .lines()
        .map(|l| l.split("  ").next().unwrap())
        .collect();
    assert_eq!(api["hash"], serde_json::json!(cli_hashes));

    let py_arg = ["--python", py_path.to_str().unwrap()];
    let verify = r
        .cairn([&["verify", "--no-cache", "--format", "json"][..], &py_arg].concat())
        .expect(1)
        .json();
    assert_eq!(api["verify"], verify);
    assert!(verify["findings"].as_array().unwrap().len() >= 2);
    let typed: Vec<Value> = verify["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            serde_json::json!([
                f["area"],
                f["severity"],
                f["subject"],
                f["path"],
                f["change"]
            ])
        })
        .chain([Value::Bool(false)])
        .collect();
    assert_eq!(api["typed"], Value::Array(typed));

    let lineage = r
        .cairn(["lineage", "runs/extra.bin", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(api["lineage"], lineage);

    let env = r
        .cairn([&["env", "--format", "json"][..], &py_arg].concat())
        .expect(0)
        .json();
    assert_eq!(api["env"], env);
}

/// Each bad input raises the documented exception with cairn's message and hint, and changes
/// nothing.
#[test]
#[cfg_attr(
    not(cairn_maturin),
    ignore = "needs maturin (pip install maturin); .ci/run installs it"
)]
fn bad_input_raises_the_documented_exception() {
    let r = Repo::ml_locked();
    let before = r.read("cairn.lock");
    let script = format!(
        "{CATCH}\ncatch(lambda: cairn.checkpoint('runs/nope.bin', step=1, lock='cairn.lock'))\n\
         catch(lambda: cairn.hash('nope'))\n\
         catch(lambda: cairn.checkpoint('../outside.bin', lock='cairn.lock'))\n\
         catch(lambda: cairn.checkpoint('runs/final.safetensors', lock='cairn.lock', metrics={{'bad name': 1}}))"
    );
    let out = py(&r, &[], &script).expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("MissingPathError|checkpoint does not exist: ")
            && lines[0].ends_with("runs/nope.bin|None|True"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("MissingPathError|"), "{}", lines[1]);
    assert!(lines[1].ends_with("|True"), "{}", lines[1]);
    assert!(
        lines[2].starts_with("CairnError|a checkpoint must be inside the project"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("CairnError|metric bad name=1"),
        "{}",
        lines[3]
    );
    assert_eq!(r.read("cairn.lock"), before);

    // A lock from a newer cairn: LockTooNewError, the pip upgrade hint, the lock untouched.
    let newer = before.replacen("version = 1", "version = 2", 1);
    r.write("cairn.lock", &newer);
    r.write("runs/new.bin", "new");
    let script = format!(
        "{CATCH}\ncatch(lambda: cairn.checkpoint('runs/new.bin', lock='cairn.lock'))\ncatch(lambda: cairn.verify())"
    );
    let out = py(&r, &[], &script).expect(0);
    for line in out.stdout.lines() {
        assert!(
            line.starts_with("LockTooNewError|")
                && line.contains("was written by a newer cairn (lockfile version 2)")
                && line.contains("|upgrade cairn (pip install -U cairn-ml"),
            "{line}"
        );
    }
    assert_eq!(out.stdout.lines().count(), 2);
    assert_eq!(r.read("cairn.lock"), newer);

    // In a repository without a lock, outside any run: NoRunError; no lock is made.
    let bare = Repo::ml();
    bare.write("runs/a.bin", "a");
    let out = py(
        &bare,
        &[],
        &format!("{CATCH}\ncatch(lambda: cairn.checkpoint('runs/a.bin'))"),
    )
    .expect(0);
    assert!(
        out.stdout.starts_with("NoRunError|not inside a locked run")
            && out
                .stdout
                .contains("|run the training under `cairn lock -- python train.py`"),
        "{}",
        out.stdout
    );
    assert!(!bare.join("cairn.lock").exists());

    // Not in a repository at all: NotARepositoryError.
    let plain = Repo::plain();
    plain.write("a.bin", "a");
    let out = py(
        &plain,
        &[],
        &format!("{CATCH}\ncatch(lambda: cairn.checkpoint('a.bin'))"),
    )
    .expect(0);
    assert!(
        out.stdout.starts_with(
            "NotARepositoryError|not inside a locked run, and not in a git repository"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(
        run_ok(command("ls").arg(plain.path())).trim(),
        "a.bin",
        "something was written"
    );
}
