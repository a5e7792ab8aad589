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
    pub fn from(out: Output) -> Run {
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

/// Variables that change what cairn, git, Python or pip do, and so must not leak from the
/// machine running the tests into them: the caller's virtual or conda environment, Python's
/// start-up settings, package-manager settings, accelerator and framework settings (some of
/// which cairn records), Hugging Face's cache, git's repository and config overrides, and
/// cairn's own variables. A test that needs one sets it on the command after this.
/// A trailing `*` matches a prefix.
const LEAKY_ENV: &[&str] = &[
    "VIRTUAL_ENV",
    "VIRTUAL_ENV_PROMPT",
    "CONDA_*",
    "PYTHON*",
    "PYENV_*",
    "PIP_*",
    "UV_*",
    "NCCL_*",
    "CUDA_*",
    "CUBLAS_*",
    "CUDNN_*",
    "NVIDIA_*",
    "TORCH_*",
    "TF_*",
    "OMP_*",
    "MKL_*",
    "OPENBLAS_*",
    "HF_*",
    "HUGGINGFACE_*",
    "CAIRN_*",
    "GIT_*",
    "XDG_*",
    "NO_COLOR",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
];

/// Is `name` one of [`LEAKY_ENV`]?
fn leaky(name: &str) -> bool {
    LEAKY_ENV.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *p,
    })
}

/// Remove every [`LEAKY_ENV`] variable this process has from `cmd`'s environment, keeping
/// those named in `keep`.
/// An activated virtual or conda environment also put its `bin` first on `PATH`: that goes too,
/// so that `python3` is the machine's, never the caller's environment's.
fn scrub(cmd: &mut Command, keep: &[&str]) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if leaky(&name) && !keep.contains(&name.as_ref()) {
            cmd.env_remove(name.as_ref());
        }
    }
    let activated: Vec<PathBuf> = ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(|v| std::env::var_os(v).filter(|p| !p.is_empty()))
        .map(|p| PathBuf::from(p).join("bin"))
        .collect();
    if let (false, Some(path)) = (activated.is_empty(), std::env::var_os("PATH")) {
        let kept = std::env::split_paths(&path).filter(|d| !activated.contains(d));
        cmd.env("PATH", std::env::join_paths(kept).unwrap());
    }
}

/// The hermetic environment: nothing of [`LEAKY_ENV`], git without user or system config and
/// with fixed identities and dates, `HOME` a directory of the test's own, no colour.
fn hermetic(cmd: &mut Command, home: &Path) {
    scrub(cmd, &[]);
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("NO_COLOR", "1");
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

/// Is `program` a file in a directory of `PATH`?
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Fail the test, saying what to install, when `program` is not on `PATH`: a test that needs a
/// tool fails without it rather than passing without testing anything (.ci/run checks for
/// every tool the suite needs).
#[track_caller]
pub fn require_tool(program: &str, why: &str) {
    assert!(
        on_path(program),
        "this test needs `{program}` on PATH ({why}); .ci/run lists what the suite needs"
    );
}

/// Wait until every file below `dir` is outside cairn's racy window, so that the next cairn
/// run trusts their stat (and caches them). The window is measured from the files' own
/// timestamps with the rule of `cairn::content::cache::trustworthy`: ctime cannot be set back,
/// so this waits for the condition instead of sleeping a guessed time, and holds on a loaded
/// machine and on file systems with whole-second timestamps alike.
pub fn settle(dir: &Path) {
    use cairn::content::cache::{now_ns, racy_window, trustworthy, StatKey};
    let mut keys = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                if e.file_name() != ".git" {
                    stack.push(e.path());
                }
            } else if meta.is_file() {
                keys.push(StatKey::of(&meta));
            }
        }
    }
    for key in keys {
        while !trustworthy(&key, now_ns()) {
            let left = key.mtime_ns.max(key.ctime_ns) + racy_window(&key) - now_ns();
            std::thread::sleep(std::time::Duration::from_nanos(left.max(1_000_000) as u64));
        }
    }
}

/// Give the file at `path` an mtime `secs` seconds from now (negative: in the past). A file whose mtime
/// is in the future stays racy, so cairn reads it every time; a file given a new mtime is
/// changed in stat whatever the file system's timestamp granularity.
pub fn set_mtime(path: &Path, secs: i64) {
    let now = std::time::SystemTime::now();
    let at = if secs >= 0 {
        now + std::time::Duration::from_secs(secs as u64)
    } else {
        now - std::time::Duration::from_secs(secs.unsigned_abs())
    };
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
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

/// Any program, outside a [`Repo`], without the caller's [`LEAKY_ENV`] variables and without
/// user or system git config.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    scrub(&mut cmd, &[]);
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    cmd
}

/// Run a shell command line in `dir`; panics on failure; returns stdout.
#[track_caller]
pub fn sh(dir: &Path, script: &str) -> String {
    let out = command("sh")
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
    scrub(&mut cmd, &[]);
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("XDG_CACHE_HOME", dir.join(".cache"))
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("NO_COLOR", "1");
    cmd
}

/// The `PIP_*` settings that say where packages come from on this machine: kept for
/// [`Venv::pip`], which installs the packages a test needs.
const PIP_SOURCES: &[&str] = &[
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES",
];

/// A virtual environment made with `python3 -m venv` in a temp directory.
pub struct Venv {
    pub dir: tempfile::TempDir,
}

impl Venv {
    pub fn new() -> Venv {
        let dir = tempfile::tempdir().unwrap();
        let out = command("python3")
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

    /// Run pip in the venv. Only where packages come from (index, local wheels, certificates,
    /// time-out) is taken from the machine's `PIP_*` settings; installing from an index needs
    /// the network or a local mirror, and fails, never skips, without one.
    #[track_caller]
    pub fn pip(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(self.python());
        cmd.args([
            "-m",
            "pip",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
        ])
        .args(args);
        scrub(&mut cmd, PIP_SOURCES);
        let out = cmd.env("PIP_NO_INPUT", "1").output().unwrap();
        assert!(
            out.status.success(),
            "pip {args:?} (needs the network, or PIP_FIND_LINKS/PIP_INDEX_URL naming a mirror): {}",
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
