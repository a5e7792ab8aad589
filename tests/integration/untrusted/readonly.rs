//! Read-only commands (`verify`, `diff`, `lineage`, `audit`, `export`, `hash`) on hostile repositories.
//!
//! Each test builds the attacker's repository (`origin`), commits it, and the victim clones it with
//! plain `git clone` into a directory of their own and runs cairn there. The payloads only ever
//! create a marker file; each test asserts that the marker did not appear, that nothing outside the
//! clone changed, what the user is told, and the exit status. Every interpreter handed to cairn is a
//! virtual environment the test made in its own temporary directory. Rules: spec/security.md.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{clone_repo, snapshot, write_executable, Repo, Run, Venv};

/// The victim's side: a home directory with files worth stealing, a place outside the clone,
/// and the clone itself at `clone/`.
struct Victim {
    /// Holds `clone/`, `outside/` and the marker; its `home()` is the victim's HOME.
    repo: Repo,
    marker: PathBuf,
}

impl Victim {
    /// The victim before the clone: a home with a key and a `.bashrc`, an empty `outside/`.
    fn new() -> Victim {
        let repo = Repo::plain();
        let marker = repo.join("MARKER");
        std::fs::create_dir_all(repo.join("outside")).unwrap();
        std::fs::create_dir_all(repo.home().join(".ssh")).unwrap();
        std::fs::write(repo.home().join(".ssh/id_ed25519"), "PRIVATE KEY\n").unwrap();
        std::fs::write(repo.home().join(".bashrc"), "# victim's bashrc\n").unwrap();
        Victim { repo, marker }
    }

    /// Clone `origin` into `clone/` with plain `git clone`.
    fn clone_from(&self, origin: &Repo) {
        clone_repo(origin, self.repo.path(), self.repo.home(), "clone");
    }

    fn clone(&self) -> PathBuf {
        self.repo.join("clone")
    }

    /// cairn in the clone, with the hermetic environment, `PATH` holding only `path` (so no
    /// interpreter outside the test's directories is ever found), killed after a minute.
    fn cairn<I, S>(&self, path: &str, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.repo.cmd();
        cmd.current_dir(self.clone())
            .env("PATH", path)
            .env_remove("VIRTUAL_ENV")
            .env_remove("CONDA_PREFIX")
            .env_remove("CAIRN_PYTHON")
            .env_remove("XDG_DATA_HOME")
            .env_remove("PYTHONPATH")
            .args(args);
        bounded(cmd)
    }

    /// Every file outside the clone (the victim's home and `outside/`), with its bytes. The
    /// user's probe cache (spec/security.md §5) is left out: cairn may store what the victim's
    /// own interpreter and host answered there, but nothing of the clone, which is checked here.
    fn outside(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let probe_cache = self.repo.home().join(".cache/cairn");
        let clone = self.clone().display().to_string();
        let mut all = snapshot(&[self.repo.home(), &self.repo.join("outside")]);
        all.retain(|path, bytes| {
            if path.starts_with(&probe_cache) {
                let text = String::from_utf8_lossy(bytes);
                assert!(
                    !text.contains(&clone),
                    "the clone got into {}",
                    path.display()
                );
                return false;
            }
            // `~/.cache` itself, made for the probe cache.
            !probe_cache.starts_with(path)
        });
        all
    }

    /// No payload ran and nothing outside the clone differs from `before` (an
    /// [`Victim::outside`] taken before cairn ran).
    #[track_caller]
    fn assert_untouched(&self, before: &BTreeMap<PathBuf, Vec<u8>>) {
        self.assert_no_marker();
        assert_eq!(*before, self.outside(), "a file outside the clone changed");
    }

    #[track_caller]
    fn assert_no_marker(&self) {
        assert!(
            !self.marker.exists(),
            "the repository's payload ran: {} exists",
            self.marker.display()
        );
    }
}

/// Run a command, killing it after 60 s (a FIFO or `/dev/zero` must not hang the suite).
fn bounded(mut cmd: Command) -> Run {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => Run::from(out.unwrap()),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("cairn did not finish within 60 s");
        }
    }
}

/// A shell script that creates `marker`: the only thing any payload does.
fn payload(marker: &Path) -> String {
    format!("#!/bin/sh\ntouch '{}'\n", marker.display())
}

/// The attacker's repository: the `ml` project's training set locked with the Python of `venv`
/// (so verify probes an interpreter), or without Python, committed with its `.cairn/`.
fn locked_origin(venv: Option<&Venv>) -> Repo {
    let origin = Repo::ml();
    let mut args = vec!["lock".to_string(), "--data".into(), "data/train".into()];
    match venv {
        Some(v) => args.extend(["--python".into(), v.python().display().to_string()]),
        None => args.push("--no-python".into()),
    }
    origin.cairn(&args).expect(0);
    origin.commit_all("lock the run");
    origin
}

/// `PATH` for the victim: the test's venv only.
fn venv_path(venv: &Venv) -> String {
    venv.python().parent().unwrap().display().to_string()
}

/// Row 1: a `sysconfig.py` (and `site.py`, `sitecustomize.py`, `usercustomize.py`) at the root is
/// never imported by the interpreter probe of verify or diff, and programs committed to the
/// repository are not found through a `.` in the victim's PATH.
#[test]
fn row1_modules_at_the_root_are_not_imported_by_the_probe() {
    let venv = Venv::new();
    let v = Victim::new();
    let origin = locked_origin(Some(&venv));
    let code = format!(
        "open({:?}, 'w').close()\nfrom os import *\n",
        v.marker.display().to_string()
    );
    for module in [
        "sysconfig.py",
        "site.py",
        "sitecustomize.py",
        "usercustomize.py",
        "os.py",
    ] {
        origin.write(module, &code);
    }
    for program in ["python3", "python", "nvidia-smi", "getconf", "git"] {
        write_executable(&origin.join(program), payload(&v.marker));
    }
    origin.commit_all("helpful modules");
    v.clone_from(&origin);
    let before = v.outside();
    // PATH: the clone first (as `.`), then the victim's own venv.
    let path = format!(".::{}", venv_path(&venv));
    let out = v.cairn(&path, ["verify", "--verbose"]);
    v.assert_no_marker();
    // The code differs (the modules were committed after the lock), the environment is the same.
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    out.stdout_has("  added        sysconfig.py\n");
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("python: ")),
        "the probe did not find the venv: {}",
        out.stdout
    );
    let out = v.cairn(&path, ["diff", "cairn.lock"]);
    v.assert_no_marker();
    assert!(out.code == 0 || out.code == 1, "{}", out.stderr);
    let out = v.cairn(
        &path,
        ["verify", "--python", &venv.python().display().to_string()],
    );
    v.assert_no_marker();
    out.expect(1);
    // A victim whose own PYTHONPATH holds `.` (or is empty, which means the same): `.` is the
    // probe's empty directory, never the checkout.
    for pythonpath in [".", ""] {
        let mut cmd = v.repo.cmd();
        cmd.current_dir(v.clone())
            .env("PATH", venv_path(&venv))
            .env("PYTHONPATH", pythonpath)
            .env_remove("VIRTUAL_ENV")
            .args(["verify"]);
        let out = bounded(cmd);
        v.assert_no_marker();
        assert_eq!(out.code, 1, "{}", out.stderr);
    }
    assert_eq!(before, v.outside(), "something outside the clone changed");
}

/// Row 2: a committed cairn.toml's `python` is never run, whether it names a file in the
/// repository or one outside; the warning names it and says what to do.
#[test]
fn row2_cairn_toml_cannot_choose_the_interpreter() {
    let venv = Venv::new();
    let v = Victim::new();
    let marker = v.marker.clone();
    let origin = locked_origin(Some(&venv));
    write_executable(&origin.join("tools/python"), payload(&marker));
    origin.write("cairn.toml", "python = \"tools/python\"\n");
    origin.commit_all("pick an interpreter");
    v.clone_from(&origin);
    let before = v.outside();
    let out = v.cairn(&venv_path(&venv), ["verify"]);
    v.assert_no_marker();
    out.stderr_has("cairn.toml is not trusted on this machine; ignored: python = \"tools/python\" (it chooses a program to run)")
        .stderr_has("hint: if you wrote it or checked it, run `cairn trust`; or give these settings yourself: --python PATH, --data NAME=PATH");
    // The rest is compared as usual: the committed cairn.toml and tools/ are new code.
    assert_eq!(out.code, 1, "{}", out.stderr);
    for cmd in [
        &["env"][..],
        &["diff", "cairn.lock"],
        &["audit"],
        &["lineage"],
    ] {
        v.cairn(&venv_path(&venv), cmd);
        v.assert_no_marker();
    }

    // An interpreter outside the repository (here, a stub the victim would never run).
    let outside = v.repo.join("outside/python");
    write_executable(&outside, payload(&marker));
    std::fs::write(
        v.clone().join("cairn.toml"),
        format!("python = {:?}\n", outside.display().to_string()),
    )
    .unwrap();
    let out = v.cairn(&venv_path(&venv), ["verify"]);
    v.assert_no_marker();
    out.stderr_has("ignored: python = ");
    let mut after = v.outside();
    after.remove(&outside);
    let mut before = before;
    before.remove(&outside);
    assert_eq!(before, after);
}

/// Row 11: `[data] x = "/home/victim/.ssh"` in a committed cairn.toml is not read; the external
/// dataset stays unchecked (exit 1) and no name from the directory is printed.
#[test]
fn row11_cairn_toml_cannot_point_a_dataset_outside() {
    let origin = Repo::ml();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("x.bin"), "shared").unwrap();
    origin
        .cairn([
            "lock",
            "--no-python",
            "--data",
            &format!("secrets={}", shared.path().display()),
        ])
        .expect(0);
    // The attacker guesses the victim's home (here, the test's).
    let v = Victim::new();
    let ssh = v.repo.home().join(".ssh");
    origin.write(
        "cairn.toml",
        format!(
            "[data]\nsecrets = {:?}\nup = \"../outside\"\n",
            ssh.display().to_string()
        ),
    );
    origin.commit_all("say where the data is");
    v.clone_from(&origin);
    let before = v.outside();
    for args in [&["verify"][..], &["verify", "--format", "json"]] {
        let out = v.cairn("/nonexistent", args).expect(1);
        assert!(
            !out.stdout.contains("id_ed25519") && !out.stderr.contains("id_ed25519"),
            "a file name from ~/.ssh was printed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        out.stderr_has(&format!(
            "ignored: data.secrets = {:?} (it is outside the repository), data.up = \"../outside\" (it is outside the repository)",
            ssh.display().to_string()
        ));
    }
    v.cairn("/nonexistent", ["verify"])
        .stdout_has("data secrets: not checked (");
    v.assert_untouched(&before);
    // The user's own --data is honoured.
    let arg = format!("secrets={}", shared.path().display());
    v.cairn("/nonexistent", ["verify", "--data", &arg])
        .expect(0);
}

/// After `cairn trust` the configured python and external data are used; any edit of cairn.toml
/// revokes the trust; `--revoke` and `--list` do what they say. The record is in the user's
/// data directory, not in the repository.
#[test]
fn trust_lets_cairn_toml_choose_until_it_changes() {
    let venv = Venv::new();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("x.bin"), "shared").unwrap();
    let r = Repo::ml();
    r.cairn([
        "lock",
        "--no-python",
        "--data",
        &format!("ext={}", shared.path().display()),
    ])
    .expect(0);
    // Where this user's lock found the external data is remembered on this machine (spec/lockfile.md
    // §12); forget it, as for a lock made by somebody else, to see the unlocated case.
    std::fs::remove_dir_all(r.home().join(".local/share/cairn/data")).unwrap();
    r.write(
        "cairn.toml",
        format!(
            "python = {:?}\n[data]\next = {:?}\n",
            venv.python().display().to_string(),
            shared.path().display().to_string()
        ),
    );
    let env = |r: &Repo| {
        let mut cmd = r.cmd();
        cmd.env("PATH", "/nonexistent")
            .env_remove("VIRTUAL_ENV")
            .env_remove("CONDA_PREFIX")
            .env_remove("CAIRN_PYTHON")
            .env_remove("XDG_DATA_HOME")
            .arg("env");
        bounded(cmd)
    };
    // Untrusted: neither setting is used.
    let out = env(&r).expect(0);
    out.stderr_has("is not trusted on this machine; ignored: python = ")
        .stderr_has("data.ext = ")
        .stderr_has("no Python interpreter found");
    out.stdout_lacks("[python]");
    r.cairn(["verify"])
        .expect(1)
        .stdout_has("data ext: not checked (");

    // Trusted: both are used, without a warning.
    let out = r.cairn(["trust"]).expect(0);
    out.stderr_has("trusted ")
        .stderr_has("on this machine; any edit revokes it")
        .stderr_has("now used: python = ")
        .stderr_has("now used: data.ext = ");
    let out = env(&r).expect(0);
    out.stdout_has("[python]");
    out.stderr_lacks("not trusted");
    r.cairn(["verify"]).expect(0);
    let records: Vec<_> = std::fs::read_dir(r.home().join(".local/share/cairn/trust"))
        .unwrap()
        .collect();
    assert_eq!(records.len(), 1);
    assert!(!r.join(".cairn/trust").exists());
    let listed = r.cairn(["trust", "--list"]).expect(0);
    let root = r.path().canonicalize().unwrap();
    assert_eq!(listed.stdout, format!("trusted  {}\n", root.display()));

    // Any edit revokes it.
    let text = r.read("cairn.toml");
    r.write("cairn.toml", format!("{text}# a comment\n"));
    env(&r)
        .expect(0)
        .stderr_has("is not trusted on this machine");
    r.cairn(["verify"]).expect(1);
    r.cairn(["trust", "--list"])
        .expect(0)
        .stdout_has(&format!("changed  {}", root.display()));

    // Trusted again, then revoked.
    r.cairn(["trust"]).expect(0);
    r.cairn(["verify"]).expect(0);
    r.cairn(["trust", "--revoke"])
        .expect(0)
        .stderr_has("is no longer trusted on this machine");
    r.cairn(["verify"]).expect(1);
    r.cairn(["trust", "--revoke"])
        .expect(0)
        .stderr_has("was not trusted; nothing to revoke");
}

/// `cairn trust` without a cairn.toml is a refusal (exit 2), and writes no record.
#[test]
fn trust_without_a_cairn_toml_is_refused() {
    let r = Repo::ml();
    let out = r.cairn(["trust"]).expect(2);
    out.stderr_has("error: there is no cairn.toml in ")
        .stderr_has("nothing to trust")
        .stderr_has("hint: `cairn init` writes one");
    assert!(!r.home().join(".local/share/cairn").exists());
}

/// Row 12: a committed `.cairn/cache` that is a symlink to a directory outside gets nothing
/// written through it, by any read-only command; a committed `.cairn` that is a symlink, too.
#[test]
fn row12_cache_links_are_never_written_through() {
    let v = Victim::new();
    let outside = v.repo.join("outside");
    let origin = locked_origin(None);
    // The link names the victim's directory (an attacker would name ~/.config or similar).
    std::fs::remove_dir_all(origin.join(".cairn/cache")).unwrap();
    std::os::unix::fs::symlink(&outside, origin.join(".cairn/cache")).unwrap();
    origin.git(&["add", "-f", ".cairn/cache"]);
    origin.git(&["commit", "-q", "-m", "a cache link"]);
    v.clone_from(&origin);
    assert!(std::fs::symlink_metadata(v.clone().join(".cairn/cache"))
        .unwrap()
        .file_type()
        .is_symlink());
    let before = v.outside();
    let out = v.cairn("/nonexistent", ["verify", "--no-cache"]);
    out.stderr_has("the stat cache in ")
        .stderr_has("is not used: cache is a symbolic link or not a directory")
        .stderr_has("hint: remove the link");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for args in [
        &["verify"][..],
        &["diff", "cairn.lock", "--no-python"],
        &["lineage"],
        &["audit"],
        &["export"],
    ] {
        let out = v.cairn("/nonexistent", args);
        // export refuses a lock without checkpoints (2); the others find nothing or a difference.
        assert!((0..=2).contains(&out.code), "{args:?}: {}", out.stderr);
        out.stderr_has("is not used: cache is a symbolic link");
    }
    assert_eq!(
        before,
        v.outside(),
        "a file was written through .cairn/cache"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    v.assert_no_marker();

    // `.cairn` itself a link: the manifests behind it are not read either.
    std::fs::remove_dir_all(v.clone().join(".cairn")).ok();
    std::fs::remove_file(v.clone().join(".cairn")).ok();
    std::os::unix::fs::symlink(&outside, v.clone().join(".cairn")).unwrap();
    let out = v.cairn("/nonexistent", ["verify"]);
    assert!(out.code == 0 || out.code == 1, "{}", out.stderr);
    out.stderr_has("is not used: .cairn is a symbolic link or not a directory");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

/// Row 13: `cairn.lock -> /dev/zero` (or any link), a lock that is a FIFO, and a manifest or
/// sidecar that is a link to `/dev/zero`: refused or treated as missing at once, no memory
/// growth, no hang. A refusal is exit 2 with the path and the reason.
#[test]
fn row13_devices_fifos_and_links_are_not_read() {
    let v = Victim::new();
    let origin = locked_origin(None);
    // The real lock under another name; cairn.lock a link to /dev/zero, another to ~/.bashrc.
    std::fs::rename(origin.join("cairn.lock"), origin.join("real.cairn.lock")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", origin.join("cairn.lock")).unwrap();
    std::os::unix::fs::symlink(
        v.repo.home().join(".bashrc"),
        origin.join("home.cairn.lock"),
    )
    .unwrap();
    origin.commit_all("links");
    v.clone_from(&origin);
    let before = v.outside();
    for args in [
        &["verify"][..],
        &["diff", "cairn.lock", "--no-python"],
        &["export"],
    ] {
        let out = v.cairn("/nonexistent", args).expect(2);
        out.stderr_has("error: cannot read lockfile ")
            .stderr_has(
                "cairn.lock: it is a symbolic link; cairn reads this file only as a regular file",
            )
            .stderr_has("hint: the lockfile was left untouched");
    }
    v.cairn("/nonexistent", ["verify", "--lock", "home.cairn.lock"])
        .expect(2)
        .stderr_has("symbolic link");
    // lineage reads every lock; the bad ones are reported, never followed.
    let out = v.cairn("/nonexistent", ["lineage"]);
    out.stdout_lacks("victim's bashrc");

    // A FIFO (an archive or a second checkout could leave one; git cannot store it).
    std::fs::remove_file(v.clone().join("cairn.lock")).unwrap();
    let status = Command::new("mkfifo")
        .arg(v.clone().join("cairn.lock"))
        .status()
        .unwrap();
    assert!(status.success());
    v.cairn("/nonexistent", ["verify"])
        .expect(2)
        .stderr_has("FIFO");

    // The real lock, with its manifest replaced by a link to /dev/zero and the data changed:
    // the manifest is treated as missing.
    std::fs::remove_file(v.clone().join("cairn.lock")).unwrap();
    std::fs::copy(
        v.clone().join("real.cairn.lock"),
        v.clone().join("cairn.lock"),
    )
    .unwrap();
    let manifests = v.clone().join(".cairn/manifests");
    for e in std::fs::read_dir(&manifests).unwrap() {
        let p = e.unwrap().path();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    }
    std::fs::write(v.clone().join("data/train/a.txt"), "changed\n").unwrap();
    let out = v.cairn("/nonexistent", ["verify"]).expect(1);
    out.stdout_has("no manifest at");
    v.assert_untouched(&before);
}

/// A lock and a cairn.toml larger than their limits are refused by size, on the open file.
#[test]
fn oversized_config_is_refused_with_its_limit() {
    let r = Repo::ml();
    r.write("cairn.toml", vec![b'#'; (1 << 20) + 1]);
    r.cairn(["verify"])
        .expect(2)
        .stderr_has("cannot read ")
        .stderr_has("larger than 1 MiB");
}

/// Dependency lock files (poetry.lock, uv.lock, requirements.txt) that are links out of the
/// repository, or FIFOs, are not read as the project's lock files: `verify` neither hashes them
/// nor reports them as the environment's, and does not hang.
#[test]
fn dependency_lock_files_linked_outside_are_not_read() {
    let v = Victim::new();
    let origin = locked_origin(None);
    std::os::unix::fs::symlink(v.repo.home().join(".bashrc"), origin.join("poetry.lock")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", origin.join("uv.lock")).unwrap();
    origin.commit_all("lock files");
    v.clone_from(&origin);
    let status = Command::new("mkfifo")
        .arg(v.clone().join("requirements.txt"))
        .status()
        .unwrap();
    assert!(status.success());
    let before = v.outside();
    let out = v.cairn("/nonexistent", ["verify"]).expect(1);
    // The links are new files of the code (git sees them), never lock files of the environment.
    out.stdout_has("  added        poetry.lock\n");
    assert!(
        !out.stdout.contains("lockfile poetry.lock")
            && !out.stdout.contains("lockfile uv.lock")
            && !out.stdout.contains("lockfile requirements.txt"),
        "{}",
        out.stdout
    );
    v.assert_untouched(&before);
}

/// A committed symlink *inside* a locked dataset that leads out of the repository (to the
/// victim's `~/.ssh`) is not followed by verify, diff, lineage or audit: no name from the
/// victim's directory is printed. A checkpoint that is such a link is not exported.
#[test]
fn links_inside_a_dataset_are_not_followed_out_of_the_repository() {
    let v = Victim::new();
    let origin = Repo::ml();
    // The attacker locks a dataset whose `keys` link points at their own directory...
    let theirs = tempfile::tempdir().unwrap();
    std::fs::write(theirs.path().join("known_hosts"), "host\n").unwrap();
    std::os::unix::fs::symlink(theirs.path(), origin.join("data/train/keys")).unwrap();
    origin.cairn(crate::util::LOCK_TRAIN_DATA).expect(0);
    // ... and commits the link re-pointed at the victim's ~/.ssh.
    std::fs::remove_file(origin.join("data/train/keys")).unwrap();
    std::os::unix::fs::symlink(v.repo.home().join(".ssh"), origin.join("data/train/keys")).unwrap();
    origin.commit_all("lock");
    v.clone_from(&origin);
    let before = v.outside();
    for args in [
        &["verify"][..],
        &["verify", "--format", "json"],
        &["diff", "cairn.lock", "--no-python"],
        &["lineage", "--format", "json"],
        &["audit", "--format", "json"],
    ] {
        let out = v.cairn("/nonexistent", args);
        assert!((0..=2).contains(&out.code), "{args:?}: {}", out.stderr);
        assert!(
            !out.stdout.contains("id_ed25519") && !out.stderr.contains("id_ed25519"),
            "{args:?} read the victim's ~/.ssh:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    // What verify says: the locked file is not there (the link was not followed).
    let out = v.cairn("/nonexistent", ["verify"]).expect(1);
    out.stdout_has("data train: ")
        .stdout_has(" keys/known_hosts\n");
    v.assert_untouched(&before);
}

/// A locked checkpoint that is a committed link to a file of the victim is not read by audit
/// or export: audit says why, export refuses (exit 2); no digest of the victim's file appears.
#[test]
fn a_checkpoint_linked_out_of_the_repository_is_not_read() {
    let v = Victim::new();
    let origin = Repo::ml();
    origin.write("runs/model.bin", "weights");
    origin
        .cairn(["lock", "--no-python", "--checkpoint", "runs/model.bin"])
        .expect(0);
    std::fs::remove_file(origin.join("runs/model.bin")).unwrap();
    let bashrc = v.repo.home().join(".bashrc");
    std::os::unix::fs::symlink(&bashrc, origin.join("runs/model.bin")).unwrap();
    origin.git(&["add", "-f", "runs/model.bin"]);
    origin.commit_all("lock");
    v.clone_from(&origin);
    let before = v.outside();
    let secret = blake3::hash(&std::fs::read(&bashrc).unwrap())
        .to_hex()
        .to_string();
    let out = v.cairn("/nonexistent", ["audit"]).expect(1);
    out.stdout_has(
        "runs/model.bin: it is a symbolic link leading outside the repository; not read",
    );
    let export = v.cairn("/nonexistent", ["export"]).expect(2);
    export.stderr_has(
        "error: checkpoint runs/model.bin leads outside the repository (a symbolic link); it was not read",
    );
    let verify = v.cairn("/nonexistent", ["verify"]).expect(1);
    verify.stdout_has("checkpoint runs/model.bin: not checked (");
    for o in [&out, &export, &verify] {
        assert!(!o.stdout.contains(&secret[..12]) && !o.stderr.contains(&secret[..12]));
    }
    v.assert_untouched(&before);
}

/// `cairn init` trusts the cairn.toml it writes: its guessed `python` is used at once, without a
/// warning, until the file is edited.
#[test]
fn init_trusts_the_file_it_writes() {
    let r = Repo::ml();
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(r.join(".venv"))
        .status()
        .unwrap();
    assert!(status.success());
    r.cairn(["init"]).expect(0);
    assert!(r
        .read("cairn.toml")
        .contains("python = \".venv/bin/python\""));
    let env = |r: &Repo| {
        let mut cmd = r.cmd();
        cmd.env("PATH", "/nonexistent")
            .env_remove("VIRTUAL_ENV")
            .env_remove("CONDA_PREFIX")
            .arg("env");
        bounded(cmd)
    };
    let out = env(&r).expect(0);
    out.stdout_has("[python]");
    out.stderr_lacks("not trusted");
    let text = r.read("cairn.toml");
    r.write("cairn.toml", text.replace("# Paths are", "# Paths  are"));
    let out = env(&r).expect(0);
    out.stderr_has("ignored: python = \".venv/bin/python\" (it chooses a program to run)");
    out.stdout_lacks("[python]");
}
