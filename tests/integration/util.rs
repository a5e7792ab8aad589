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
    /// Run `cmd` to its end and keep its exit code and output, whatever they are.
    pub fn of(cmd: &mut Command) -> Run {
        Run::from(cmd.output().expect("the command starts"))
    }

    /// Assert that `stream` (`text`) contains `needle` or, with `want` false, does not; show it
    /// when it is otherwise.
    #[track_caller]
    fn check(&self, stream: &str, text: &str, needle: &str, want: bool) -> &Run {
        let what = if want { "no" } else { "unwanted" };
        assert!(
            text.contains(needle) == want,
            "{what} {needle:?} in {stream}:\n{text}"
        );
        self
    }

    /// Assert that stdout contains `needle`, showing it when it does not.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Run {
        self.check("stdout", &self.stdout, needle, true)
    }

    /// Assert that stderr contains `needle`, showing it when it does not.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        self.check("stderr", &self.stderr, needle, true)
    }

    /// stdout parsed as JSON, showing it when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// Assert that stdout does not contain `needle`, showing it when it does.
    #[track_caller]
    pub fn stdout_lacks(&self, needle: &str) -> &Run {
        self.check("stdout", &self.stdout, needle, false)
    }

    /// Assert that stderr does not contain `needle`, showing it when it does.
    #[track_caller]
    pub fn stderr_lacks(&self, needle: &str) -> &Run {
        self.check("stderr", &self.stderr, needle, false)
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

/// The exit code and output of a finished child.
impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
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
    "RAYON_*",
    "TOKENIZERS_*",
    "NUMEXPR_*",
    "VECLIB_*",
    "BLIS_*",
    "GOTO_*",
    "KMP_*",
    "GOMP_*",
    "NPY_*",
    "ATEN_*",
    "ONEDNN_*",
    "DNNL_*",
    "XLA_*",
    "JAX_*",
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

    /// [`Repo::ml`] locked with [`Repo::lock_ml`] (the lock is not committed).
    pub fn ml_locked() -> Repo {
        let r = Repo::ml();
        r.lock_ml().expect(0);
        r
    }

    /// Take `data/` out of git, as large datasets are: untracked, ignored, and committed so.
    pub fn untrack_data(&self) {
        self.git(&["rm", "-q", "-r", "--cached", "data"]);
        self.write(".gitignore", "runs/\ndata/\n");
        self.commit_all("data is not code");
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
        Run::of(self.cmd().args(args))
    }

    /// Run cairn with these arguments in the repository root, with the variables `env` set
    /// on top of the hermetic environment.
    pub fn cairn_env<I, S>(&self, env: &[(&str, &str)], args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd();
        cmd.envs(env.iter().copied()).args(args);
        Run::of(&mut cmd)
    }

    /// Run cairn in a subdirectory.
    pub fn cairn_in<I, S>(&self, dir: &str, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::of(self.cmd().current_dir(self.join(dir)).args(args))
    }

    /// The standard lock of the `ml` repository: both datasets and the checkpoint the training
    /// script writes.
    pub fn lock_ml(&self) -> Run {
        self.cairn(lock_ml_args(&[]))
    }

    /// The `name` of each `[[data]]` entry of the lock `rel`, in the lock's order.
    pub fn data_names(&self, rel: &str) -> Vec<String> {
        let lock = self.lock_toml(rel);
        let data = lock["data"].as_array().expect("the lock has [[data]]");
        data.iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
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

/// The arguments of [`Repo::lock_ml`] (Python recorded, both datasets, the checkpoint), with
/// more options: `extra` goes right after `lock`.
pub fn lock_ml_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["lock"];
    args.extend(extra);
    args.extend([
        "--data",
        "data/train",
        "--data",
        "data/val",
        "--checkpoint",
        "runs/final.safetensors",
        "--",
        "python3",
        "train.py",
    ]);
    args
}

/// [`LOCK_ML_NO_PYTHON`] with more options: `extra` goes right after `lock`.
pub fn lock_ml_no_python<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![LOCK_ML_NO_PYTHON[0]];
    args.extend(extra);
    args.extend(&LOCK_ML_NO_PYTHON[1..]);
    args
}

/// (section, subject, path) of each entry of a list of `cairn diff --format json` (`causes`,
/// `effects`); the path is empty where the entry has none.
#[track_caller]
pub fn diff_keys(list: &serde_json::Value) -> Vec<(String, String, String)> {
    let entries = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"));
    entries
        .iter()
        .map(|c| {
            (
                c["section"].as_str().unwrap().to_string(),
                c["subject"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Lock the `ml` repository's training set alone, without Python or a command.
pub const LOCK_TRAIN_DATA: &[&str] = &["lock", "--no-python", "--data", "data/train"];

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
    cairn::content::cache::settle(dir).unwrap();
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
    run_ok(&mut cmd)
}

/// Run `cmd`; panics, showing the command and its stderr, unless it exits 0; returns stdout.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> String {
    let line: Vec<_> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{line:?} does not start: {e}"));
    assert!(
        out.status.success(),
        "{line:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `git clone` of `src` into `parent/name`, as anybody who received the repository would, with
/// `home` as HOME; returns the clone's path.
pub fn clone_repo(src: &Repo, parent: &Path, home: &Path, name: &str) -> PathBuf {
    git_in(
        parent,
        home,
        &["clone", "-q", src.path().to_str().unwrap(), name],
    );
    parent.join(name)
}

/// Write `contents` to `path` (making its directory) as an executable file, mode 0755.
pub fn write_executable(path: &Path, contents: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
    set_mode(path, 0o755);
}

/// Set the permission bits of `path` to `mode` (a file's executable bit, an unreadable
/// directory).
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// The names of the entries of `dir`, sorted: what a test compares to say nothing appeared.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every entry below `dirs`, recursively, with the bytes of each file (empty for anything
/// else): take one before and one after, and compare, to show nothing there changed.
pub fn snapshot(dirs: &[&Path]) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            }
            let bytes = if t.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            out.insert(e.path(), bytes);
        }
    }
    out
}

/// Assert that the files `a` and `b` hold the same bytes (a rebuilt checkpoint and the
/// original, say).
#[track_caller]
pub fn assert_same_bytes(a: &Path, b: &Path) {
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        read(a) == read(b),
        "{} and {} differ",
        a.display(),
        b.display()
    );
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
    run_ok(command("sh").arg("-c").arg(script).current_dir(dir))
}

/// Run `cairn ARGS` (`args`, one shell line) on a terminal that util-linux `script` gives it,
/// typing `input`. `script` is the `script` command with the directory and environment the run
/// needs (a [`Repo::cmd_raw`]). The stdout of the result is everything the terminal showed:
/// cairn's stdout and stderr, and the echo of the input.
pub fn on_terminal(mut script: Command, args: &str, input: &str) -> Run {
    use std::io::Write;
    use std::process::Stdio;
    let line = format!("{} {args}", env!("CARGO_BIN_EXE_cairn"));
    let mut child = script
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    Run::from(child.wait_with_output().unwrap())
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
        run_ok(
            command("python3")
                .args(["-m", "venv"])
                .arg(dir.path().join("venv")),
        );
        Venv { dir }
    }

    pub fn python(&self) -> PathBuf {
        self.dir.path().join("venv/bin/python")
    }

    pub fn site_packages(&self) -> PathBuf {
        site_packages_of(&self.dir.path().join("venv"))
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
    write_executable(
        &script,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n  *--query-gpu*) cat '{csv}' ;;\n  *-q*) cat '{q}' ;;\n  *) exit 9 ;;\nesac\n",
            csv = fixtures.join("h100-query-gpu.csv").display(),
            q = fixtures.join("h100-q.txt").display()
        ),
    );
    script
}

/// The `site-packages` directory of the virtual environment at `venv` (`lib/pythonX.Y/...`).
pub fn site_packages_of(venv: &Path) -> PathBuf {
    let py = std::fs::read_dir(venv.join("lib"))
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

/// The arguments of `cairn checkpoint add --amend PATH MORE...` (recording a checkpoint into
/// a finished lock).
pub fn amend_checkpoint<'a>(path: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["checkpoint", "add", "--amend", path];
    args.extend_from_slice(more);
    args
}
