//! Test harness: real git repositories in temp directories, the real `cairn` binary, and a
//! hermetic environment (no user or system git config, fixed author and dates), after jj's
//! TestEnvironment and ripgrep's tests/util.rs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The outcome of running cairn.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Assert that stdout contains `needle`, showing it when it does not.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "no {needle:?} in stdout:\n{}",
            self.stdout
        );
        self
    }

    /// Assert that stderr contains `needle`, showing it when it does not.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "no {needle:?} in stderr:\n{}",
            self.stderr
        );
        self
    }

    /// Assert the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A temp directory holding (usually) a git repository.
pub struct Repo {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

fn hermetic(cmd: &mut Command, home: &Path) {
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_NVIDIA_SMI")
        // Trust records go to HOME (the test's own); the user's interpreter is not inherited.
        .env_remove("XDG_DATA_HOME")
        .env_remove("CAIRN_PYTHON")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
}

impl Repo {
    /// An empty directory, not a repository.
    pub fn plain() -> Repo {
        Repo {
            dir: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh repository on branch `main` with no commit.
    pub fn new() -> Repo {
        let r = Repo::plain();
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    /// A repository with `train.py`, `data/train/{a,b}.txt`, `data/val/v.txt` and a
    /// `.gitignore` for `runs/`, all committed.
    pub fn ml() -> Repo {
        let r = Repo::new();
        r.write("train.py", TRAIN_PY);
        r.write("data/train/a.txt", "alpha\n");
        r.write("data/train/b.txt", "beta\n");
        r.write("data/val/v.txt", "val\n");
        r.write(".gitignore", "runs/\n");
        r.commit_all("initial");
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The hermetic HOME used for git and cairn.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let p = self.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap()
    }

    /// Run git in the repository; panics on failure; returns stdout.
    #[track_caller]
    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), self.home.path(), args)
    }

    pub fn commit_all(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// The `cairn` command, in the repository root, hermetic.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.current_dir(self.path());
        hermetic(&mut cmd, self.home.path());
        cmd
    }

    /// Any program, in the repository root, with the same hermetic environment.
    pub fn cmd_raw(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.path());
        hermetic(&mut cmd, self.home.path());
        cmd
    }

    /// Run cairn with these arguments in the repository root.
    pub fn cairn<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::from(self.cmd().args(args).output().expect("cairn runs"))
    }

    /// Run cairn in a subdirectory.
    pub fn cairn_in<I, S>(&self, dir: &str, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::from(
            self.cmd()
                .current_dir(self.join(dir))
                .args(args)
                .output()
                .expect("cairn runs"),
        )
    }

    /// The standard lock of the `ml` repository: both datasets and the checkpoint the training
    /// script writes.
    pub fn lock_ml(&self) -> Run {
        self.cairn([
            "lock",
            "--data",
            "data/train",
            "--data",
            "data/val",
            "--checkpoint",
            "runs/final.safetensors",
            "--",
            "python3",
            "train.py",
        ])
    }

    /// The lockfile parsed as TOML.
    pub fn lock_toml(&self, rel: &str) -> toml::Table {
        self.read(rel).parse().unwrap()
    }
}

/// Lock the `ml` repository's training run without recording Python: the training set and the
/// checkpoint the script writes.
pub const LOCK_ML_NO_PYTHON: &[&str] = &[
    "lock",
    "--no-python",
    "--data",
    "data/train",
    "--checkpoint",
    "runs/final.safetensors",
    "--",
    "python3",
    "train.py",
];

/// A deterministic stand-in for a training script: writes a checkpoint and a metrics file.
pub const TRAIN_PY: &str = r#"import os, sys
os.makedirs("runs", exist_ok=True)
with open("runs/final.safetensors", "wb") as f:
    f.write(bytes(range(256)) * 64)
with open("runs/metrics.json", "w") as f:
    f.write('{"loss": 0.25}\n')
code = int(os.environ.get("TRAIN_EXIT", "0"))
sys.exit(code)
"#;

/// Is `b3sum` on PATH? The tests that compare against it need it (.ci/run installs it).
pub fn b3sum_available() -> bool {
    Command::new("b3sum")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Run git in `dir` with the hermetic environment; panics on failure; returns stdout.
#[track_caller]
pub fn git_in(dir: &Path, home: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.args(args).current_dir(dir);
    hermetic(&mut cmd, home);
    let out = cmd.output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a shell command line in `dir`; panics on failure; returns stdout.
#[track_caller]
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `cairn` command run as an unprivileged user: root reads every file whatever its mode, so
/// permission tests run cairn as `nobody` through setpriv when the tests run as root.
pub fn cairn_unprivileged(dir: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_cairn"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
    };
    cmd.current_dir(dir).env("HOME", dir).env("NO_COLOR", "1");
    cmd
}

/// A virtual environment made with `python3 -m venv` in a temp directory.
pub struct Venv {
    pub dir: tempfile::TempDir,
}

impl Venv {
    pub fn new() -> Venv {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir.path().join("venv"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Venv { dir }
    }

    pub fn python(&self) -> PathBuf {
        self.dir.path().join("venv/bin/python")
    }

    pub fn site_packages(&self) -> PathBuf {
        let lib = self.dir.path().join("venv/lib");
        let py = std::fs::read_dir(&lib)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("python")
            })
            .unwrap();
        py.join("site-packages")
    }

    #[track_caller]
    pub fn pip(&self, args: &[&str]) -> String {
        let out = Command::new(self.python())
            .args([
                "-m",
                "pip",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
            ])
            .args(args)
            .env("PIP_NO_INPUT", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A stand-in `nvidia-smi` (for `CAIRN_NVIDIA_SMI`) that replays the real H100 output in
/// tests/fixtures/nvidia-smi: CI has no GPU.
pub fn replay_nvidia_smi(dir: &Path) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nvidia-smi");
    let script = dir.join("nvidia-smi");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n  *--query-gpu*) cat '{csv}' ;;\n  *-q*) cat '{q}' ;;\n  *) exit 9 ;;\nesac\n",
            csv = fixtures.join("h100-query-gpu.csv").display(),
            q = fixtures.join("h100-q.txt").display()
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm).unwrap();
    script
}
