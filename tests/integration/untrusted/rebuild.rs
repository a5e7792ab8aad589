//! `cairn rebuild` on hostile repositories: nothing of the lock runs before consent, and with
//! consent nothing runs that the plan did not show, nothing is written outside the rebuild
//! directory and no interpreter outside it gets a package installed or removed.
//!
//! Each test is one attacker repository (a row of issue #11, or a variant), cloned by the
//! victim with plain `git clone`. The payloads only ever `touch` a marker file next to the
//! clone; the victim's "home" holds a `.bashrc` whose bytes must not change.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{
    clone_repo, git_in, names_in, on_terminal, run_ok, write_executable, Repo, Run, Venv,
};

/// The victim's side: a clone of the attacker's repository, a home with a `.bashrc`, the marker
/// path the payloads would touch, and a place to rebuild into.
struct Victim {
    top: tempfile::TempDir,
    /// How many rebuilds were started: each goes to its own directory.
    rebuilds: std::cell::Cell<usize>,
    clone: PathBuf,
    home: PathBuf,
    marker: PathBuf,
}

/// How [`Victim::hostile_bare_clone`] names its hooks directory in the config.
enum Hooks {
    /// `core.hooksPath` relative to the repository.
    Relative,
    /// `core.hooksPath` as an absolute path, and `core.sshCommand` set as well.
    AbsoluteAndSsh,
}

const BASHRC: &str = "# the victim's own shell settings\nexport EDITOR=vi\n";

impl Victim {
    /// Paths the attacker's payloads name must be known before the repository is made: make the
    /// victim's directories first, clone later with [`Victim::clone_from`].
    fn new() -> Victim {
        let top = tempfile::tempdir().unwrap();
        let home = top.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join(".bashrc"), BASHRC).unwrap();
        Victim {
            clone: top.path().join("clone"),
            marker: top.path().join("MARKER"),
            home,
            top,
            rebuilds: std::cell::Cell::new(0),
        }
    }

    fn bashrc(&self) -> PathBuf {
        self.home.join(".bashrc")
    }

    /// A shell payload that only touches the marker.
    fn payload(&self) -> String {
        format!("touch '{}'", self.marker.display())
    }

    /// `git clone` of the attacker's repository, as anybody would.
    fn clone_from(&self, evil: &Repo) {
        clone_repo(evil, self.top.path(), &self.home, "clone");
    }

    /// The attacker commits `lock` as the repository's `cairn.lock`; then the victim clones it.
    fn clone_locked(&self, evil: &Repo, lock: &str) {
        evil.write("cairn.lock", lock);
        evil.commit_all("lock");
        self.clone_from(evil);
    }

    /// The attacker's bare clone of `src` at `bare`, whose config names the payload as every
    /// program git could run from a repository's config: fsmonitor, an upload-pack hook, a
    /// hooks directory (`hooks-evil` in `bare`) of payload hooks and, with
    /// [`Hooks::AbsoluteAndSsh`], the ssh command.
    fn hostile_bare_clone(&self, evil: &Repo, src: &Path, bare: &Path, hooks: Hooks) {
        git_in(
            bare.parent().unwrap(),
            evil.home(),
            &[
                "clone",
                "-q",
                "--bare",
                src.to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        let payload = self.payload();
        let (hooks_path, ssh) = match hooks {
            Hooks::Relative => ("hooks-evil".to_string(), String::new()),
            Hooks::AbsoluteAndSsh => (
                bare.join("hooks-evil").display().to_string(),
                format!("\tsshCommand = \"{payload}\"\n"),
            ),
        };
        let mut config = std::fs::read_to_string(bare.join("config")).unwrap();
        config.push_str(&format!(
            "[core]\n\tfsmonitor = \"{payload}\"\n\thooksPath = {hooks_path}\n{ssh}[uploadpack]\n\tpackObjectsHook = \"{payload}; git pack-objects\"\n"
        ));
        std::fs::write(bare.join("config"), config).unwrap();
        for hook in [
            "pre-upload-pack",
            "post-checkout",
            "reference-transaction",
            "fsmonitor-watchman",
        ] {
            script(&bare.join("hooks-evil").join(hook), &payload);
        }
    }

    /// The directory of the latest rebuild.
    fn target(&self) -> PathBuf {
        self.top
            .path()
            .join(format!("rebuilt-{}", self.rebuilds.get()))
    }

    /// `cairn rebuild --into DIR ARGS...` in the clone, with the victim's home, into a new
    /// directory.
    fn rebuild(&self, evil: &Repo, args: &[&str]) -> Run {
        self.rebuilds.set(self.rebuilds.get() + 1);
        let mut cmd = evil.cmd();
        cmd.current_dir(&self.clone)
            .env("HOME", &self.home)
            .arg("rebuild")
            .arg("--into")
            .arg(self.target())
            .args(args);
        Run::of(&mut cmd)
    }

    /// Nothing of the attacker's ran and nothing outside the clone and the rebuild changed.
    #[track_caller]
    fn assert_untouched(&self, out: &Run) {
        assert!(
            !self.marker.exists(),
            "the payload ran\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout,
            out.stderr
        );
        assert_eq!(std::fs::read_to_string(self.bashrc()).unwrap(), BASHRC);
        let mut top = names_in(self.top.path());
        top.retain(|n| !n.starts_with("rebuilt-"));
        assert_eq!(
            top,
            ["clone", "home"],
            "something appeared next to the clone"
        );
        assert_eq!(
            names_in(&self.home),
            [".bashrc"],
            "something appeared in the victim's home"
        );
    }
}

/// The attacker's repository: a harmless `train.py`, committed, and a real lock of it (made by
/// `cairn lock`, so every other field is well-formed), not yet committed.
fn attacker() -> (Repo, String) {
    let r = Repo::new();
    r.write("train.py", "print('training')\n");
    r.write(".gitignore", "runs/\n");
    r.commit_all("initial");
    r.cairn(["lock", "--no-python"]).expect(0);
    let lock = r.read("cairn.lock");
    (r, lock)
}

/// Put `line` (TOML) at the top of the lock's `[table]`.
fn with_line(lock: &str, table: &str, line: &str) -> String {
    let header = format!("[{table}]\n");
    assert!(lock.contains(&header), "no [{table}] in\n{lock}");
    lock.replacen(&header, &format!("{header}{line}\n"), 1)
}

/// `lock` with its `code.commit` replaced by `commit`.
fn with_commit(lock: &str, commit: &str) -> String {
    let old = lock
        .lines()
        .find_map(|l| l.strip_prefix("commit = \""))
        .expect("the lock names a commit")
        .trim_end_matches('"');
    lock.replace(old, commit)
}

/// `lock` naming a commit that neither the clone nor anybody has, so a rebuild must fetch it.
fn with_missing_commit(lock: &str) -> String {
    with_commit(lock, "0123456789abcdef0123456789abcdef01234567")
}

/// A `[python]` table for the interpreter at `python` (its real version), with `packages`
/// (`[[python.package]]` tables) after it.
fn with_python(lock: &str, version: &str, packages: &str) -> String {
    format!("{lock}\n[python]\nimplementation = \"cpython\"\nversion = \"{version}\"\n{packages}")
}

fn python_version(python: &Path) -> String {
    run_ok(Command::new(python).args(["-I", "-c", "import sys; print(sys.version.split()[0])"]))
        .trim()
        .to_string()
}

/// An executable shell script.
fn script(path: &Path, body: &str) {
    write_executable(path, format!("#!/bin/sh\n{body}\n"));
}

/// Row 3: `code.remote = "--upload-pack=<cmd> #"` and a commit the clone lacks. git would take
/// the remote as an option; the lock is refused before git is started, with or without --yes.
#[test]
fn row3_a_remote_that_is_an_option_is_refused() {
    let v = Victim::new();
    let (evil, lock) = attacker();
    let remote = format!("--upload-pack={} #", v.payload());
    let lock = with_line(
        &with_missing_commit(&lock),
        "code",
        &format!("remote = {remote:?}"),
    );
    v.clone_locked(&evil, &lock);
    for args in [&[][..], &["--yes"][..], &["--run"][..]] {
        let out = v.rebuild(&evil, args).expect(2);
        out.stderr_has("invalid lockfile")
            .stderr_has("`code.remote` starts with `-`");
        v.assert_untouched(&out);
        assert!(!v.target().exists());
    }
}

/// Row 3, variants: git's `ext::` transport (runs a command) and a relative path (a repository
/// inside the clone) as the remote.
#[test]
fn row3_transport_helpers_and_relative_remotes_are_refused() {
    let v = Victim::new();
    let (evil, lock) = attacker();
    let base = with_missing_commit(&lock);
    for (remote, says) in [
        (
            format!("ext::sh -c {}", v.payload().replace(' ', "% ")),
            "transport helper",
        ),
        ("../evil.git".to_string(), "relative path"),
        ("fd::3".to_string(), "transport helper"),
    ] {
        let lock = with_line(&base, "code", &format!("remote = {remote:?}"));
        evil.write("cairn.lock", &lock);
        evil.commit_all(&format!("lock {says}"));
    }
    v.clone_from(&evil);
    // The clone's lock is the last one; the others are checked through --lock files.
    for (i, remote) in [
        format!("ext::sh -c {}", v.payload().replace(' ', "% ")),
        "../evil.git".to_string(),
        "fd::3".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let lock = with_line(&base, "code", &format!("remote = {remote:?}"));
        let name = format!("variant-{i}.cairn.lock");
        std::fs::write(v.clone.join(&name), lock).unwrap();
        let out = v.rebuild(&evil, &["--yes", "--lock", &name]).expect(2);
        out.stderr_has("`code.remote`");
        v.assert_untouched(&out);
    }
}

/// Row 4: `python.version = "../../../../proc/self/cwd/tools"` made the interpreter finder run
/// the repository's `tools/bin/python`. The version is refused when the lock is read.
#[test]
fn row4_a_python_version_that_is_a_path_is_refused() {
    let v = Victim::new();
    let (evil, lock) = attacker();
    script(&evil.join("tools/bin/python"), &v.payload());
    evil.commit_all("tools");
    for (i, version) in [
        "../../../../proc/self/cwd/tools",
        "3.11/../../tools",
        "3.11.7/x",
    ]
    .iter()
    .enumerate()
    {
        let lock = with_python(&lock, version, "");
        let name = if i == 0 {
            "cairn.lock".to_string()
        } else {
            format!("variant-{i}.cairn.lock")
        };
        evil.write(&name, lock);
    }
    evil.commit_all("lock");
    v.clone_from(&evil);
    for name in ["cairn.lock", "variant-1.cairn.lock", "variant-2.cairn.lock"] {
        let out = v.rebuild(&evil, &["--yes", "--lock", name]).expect(2);
        out.stderr_has("`python.version` is not a PEP 440 release");
        v.assert_untouched(&out);
        assert!(!v.target().exists());
    }
}

/// Row 5: a submodule whose URL is a bare repository committed in the tree, with a config that
/// names programs (fsmonitor, hooks, upload-pack hook). Without consent submodules are not
/// touched; with it, git refuses the `file` transport for a URL that came from the repository.
#[test]
fn row5_a_submodule_in_an_embedded_bare_repository_runs_nothing() {
    let v = Victim::new();
    let evil = Repo::new();
    evil.write("train.py", "print('training')\n");
    // The embedded repository, with one commit, made from a scratch repository.
    let scratch = tempfile::tempdir().unwrap();
    git_in(scratch.path(), evil.home(), &["init", "-q", "-b", "main"]);
    std::fs::write(scratch.path().join("lib.py"), "X = 1\n").unwrap();
    git_in(scratch.path(), evil.home(), &["add", "-A"]);
    git_in(scratch.path(), evil.home(), &["commit", "-q", "-m", "lib"]);
    let sub_commit = git_in(scratch.path(), evil.home(), &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    v.hostile_bare_clone(
        &evil,
        scratch.path(),
        &evil.join("evil.git"),
        Hooks::Relative,
    );
    evil.write(
        ".gitmodules",
        "[submodule \"sub\"]\n\tpath = sub\n\turl = ./evil.git\n",
    );
    evil.git(&["add", "-A"]);
    evil.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{sub_commit},sub"),
    ]);
    evil.git(&["commit", "-q", "-m", "submodule"]);
    let head = evil.head();
    let tree = evil.git(&["rev-parse", "HEAD^{tree}"]).trim().to_string();
    evil.cairn(["lock", "--no-python"]).expect(0);
    let mut lock = evil.read("cairn.lock");
    if !lock.contains("[[code.submodule]]") {
        lock = lock.replacen(
            "[host]",
            &format!("[[code.submodule]]\npath = \"sub\"\ncommit = \"{sub_commit}\"\nurl = \"./evil.git\"\n\n[host]"),
            1,
        );
    }
    assert!(lock.contains(&head) && lock.contains(&tree), "{lock}");
    v.clone_locked(&evil, &lock);

    let out = v.rebuild(&evil, &[]);
    assert!(matches!(out.code, 0 | 1), "{}{}", out.stdout, out.stderr);
    out.stdout_has("submodule sub not checked out")
        .stderr_has("fetch   submodule sub");
    v.assert_untouched(&out);

    let out = v.rebuild(&evil, &["--yes"]);
    assert!(matches!(out.code, 0 | 1), "{}{}", out.stdout, out.stderr);
    out.stdout_has("submodule sub could not be checked out");
    v.assert_untouched(&out);
}

/// Row 6: `cairn.lock` (and a manifest) in the locked commit are links to the victim's files;
/// copying the lock and manifests into the rebuild replaces the links and never writes
/// through them.
#[test]
fn row6_links_in_the_locked_commit_are_replaced_not_written_through() {
    let v = Victim::new();
    let evil = Repo::new();
    evil.write("train.py", "print('training')\n");
    evil.write("data/train/a.txt", "alpha\n");
    evil.write(".gitignore", "runs/\n");
    evil.commit_all("initial");
    evil.cairn(crate::util::LOCK_TRAIN_DATA).expect(0);
    let lock = evil.read("cairn.lock");
    let manifests: Vec<PathBuf> = std::fs::read_dir(evil.join(".cairn/manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(manifests.len(), 1);
    let manifest_rel = manifests[0]
        .strip_prefix(evil.path())
        .unwrap()
        .to_path_buf();
    let manifest_bytes = std::fs::read(&manifests[0]).unwrap();
    // The locked commit: the lock and the manifest are links into the victim's home.
    let victim_other = v.home.join(".bashrc");
    std::fs::remove_dir_all(evil.join(".cairn")).unwrap();
    std::fs::remove_file(evil.join("cairn.lock")).unwrap();
    std::os::unix::fs::symlink(&victim_other, evil.join("cairn.lock")).unwrap();
    std::fs::create_dir_all(evil.path().join(manifest_rel.parent().unwrap())).unwrap();
    std::os::unix::fs::symlink(&victim_other, evil.path().join(&manifest_rel)).unwrap();
    evil.commit_all("links");
    let locked = evil.head();
    // HEAD: the real lock (naming the commit with the links) and the real manifest.
    std::fs::remove_file(evil.join("cairn.lock")).unwrap();
    std::fs::remove_file(evil.path().join(&manifest_rel)).unwrap();
    evil.write(manifest_rel.to_str().unwrap(), &manifest_bytes);
    v.clone_locked(&evil, &with_commit(&lock, &locked));

    let out = v.rebuild(&evil, &[]);
    assert!(matches!(out.code, 0 | 1), "{}{}", out.stdout, out.stderr);
    v.assert_untouched(&out);
    for rel in [Path::new("cairn.lock"), manifest_rel.as_path()] {
        let placed = v.target().join(rel);
        let meta = std::fs::symlink_metadata(&placed).unwrap();
        assert!(
            meta.file_type().is_file(),
            "{} is not a regular file",
            placed.display()
        );
    }
    assert_eq!(
        std::fs::read(v.target().join(&manifest_rel)).unwrap(),
        manifest_bytes
    );
}

/// A venv standing in for the machine's own Python, with the names in its site-packages when
/// the test began: no rebuild may install into it or uninstall from it.
struct StandIn {
    venv: Venv,
    before: Vec<String>,
}

impl StandIn {
    fn new() -> StandIn {
        let venv = Venv::new();
        let before = names_in(&venv.site_packages());
        StandIn { venv, before }
    }

    fn python(&self) -> PathBuf {
        self.venv.python()
    }

    /// Its real version, for a lock that asks for it.
    fn version(&self) -> String {
        python_version(&self.python())
    }

    /// pip did not run against it: its site-packages holds what it held.
    #[track_caller]
    fn assert_unchanged(&self) {
        assert_eq!(
            names_in(&self.venv.site_packages()),
            self.before,
            "pip ran against the stand-in system Python"
        );
    }
}

/// Row 7: a committed `.venv/bin/python` (a stub that touches the marker, then execs a "system"
/// Python: a venv the test made, standing in for the machine's). It is never run, not even when
/// it is first on PATH, and the rebuild refuses the commit; the stand-in's packages are unchanged.
#[test]
fn row7_a_committed_venv_is_never_run() {
    let system = StandIn::new();
    let v = Victim::new();
    let (evil, lock) = attacker();
    script(
        &evil.join(".venv/bin/python"),
        &format!(
            "{}\nexec '{}' \"$@\"",
            v.payload(),
            system.python().display()
        ),
    );
    std::os::unix::fs::symlink("python", evil.join(".venv/bin/python3")).unwrap();
    evil.commit_all("venv");
    let head = evil.head();
    let version = system.version();
    let lock = with_python(&with_commit(&lock, &head), &version, "");
    v.clone_locked(&evil, &lock);

    // The committed interpreter first on PATH (as if the victim had activated it) and as
    // --python: never run.
    let path = format!(
        "{}:{}:{}",
        v.clone.join(".venv/bin").display(),
        system.python().parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let mut cmd = evil.cmd();
    cmd.current_dir(&v.clone)
        .env("HOME", &v.home)
        .env("PATH", &path)
        .args(["rebuild", "--yes", "--into"])
        .arg(v.target());
    let out = Run::of(&mut cmd).expect(2);
    out.stderr_has("holds a virtual environment at .venv");
    v.assert_untouched(&out);
    assert!(!v.target().exists());
    let out = v
        .rebuild(
            &evil,
            &[
                "--yes",
                "--python",
                v.clone.join(".venv/bin/python").to_str().unwrap(),
            ],
        )
        .expect(2);
    out.stderr_has("is inside the repository");
    v.assert_untouched(&out);
    system.assert_unchanged();
}

/// Row 7, the other half: the user's own base interpreter is a stub that hands everything to
/// another Python (a venv the test made, standing in for the system one), and "makes" the venv
/// by linking that Python in. Nothing is installed into or uninstalled from it: rebuild checks
/// that the new venv's interpreter really is the venv before any pip.
#[test]
fn row7_a_base_interpreter_that_is_another_python_gets_no_pip() {
    let system = StandIn::new();
    let v = Victim::new();
    let (evil, lock) = attacker();
    let version = system.version();
    // No packages: the rebuild would uninstall everything the new venv has (pip, setuptools).
    v.clone_locked(&evil, &with_python(&lock, &version, ""));
    let tools = tempfile::tempdir().unwrap();
    let stub = tools.path().join("python3");
    let standin = system.python();
    script(
        &stub,
        &format!(
            "case \"$*\" in *'-m venv'*) for last; do :; done; mkdir -p \"$last/bin\"; ln -s '{py}' \"$last/bin/python\"; exit 0 ;; esac\nexec '{py}' \"$@\"",
            py = standin.display()
        ),
    );
    let out = v
        .rebuild(
            &evil,
            &[
                "--yes",
                "--installer",
                "pip",
                "--python",
                stub.to_str().unwrap(),
            ],
        )
        .expect(2);
    out.stderr_has("checking the new venv failed")
        .stderr_has("nothing was installed");
    v.assert_untouched(&out);
    system.assert_unchanged();
}

/// Row 8: a `directory` package with an in-tree PEP 517 backend that touches the marker when
/// imported. Without consent the environment is not built (the plan names the package and
/// says its backend runs); the data and code are still checked.
#[test]
fn row8_a_build_backend_never_runs_before_consent() {
    let v = Victim::new();
    let (evil, lock) = attacker();
    evil.write(
        "evilpkg/pyproject.toml",
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
    );
    evil.write(
        "evilpkg/backend.py",
        format!("import os\nos.system({:?})\n", v.payload()),
    );
    evil.commit_all("package");
    let head = evil.head();
    let version = python_version(Path::new("python3"));
    let package = format!(
        "\n[[python.package]]\nname = \"evilpkg\"\nversion = \"1.0\"\nsource = \"directory\"\nurl = \"file://{}/evilpkg\"\n",
        v.clone.display()
    );
    let lock = with_python(&with_commit(&lock, &head), &version, &package);
    v.clone_locked(&evil, &lock);
    let out = v.rebuild(&evil, &[]);
    assert!(matches!(out.code, 0 | 1), "{}{}", out.stdout, out.stderr);
    out.stderr_has("evilpkg 1.0 from")
        .stderr_has("(directory; its build backend runs)")
        .stdout_has("  environment  skipped")
        .stdout_has("needs consent");
    v.assert_untouched(&out);
    assert!(!v.target().join(".venv").exists());
    // --dry-run: the plan, on stdout, and nothing made.
    let out = v.rebuild(&evil, &["--dry-run"]).expect(0);
    out.stdout_has("evilpkg 1.0 from");
    assert!(!v.target().exists());
    v.assert_untouched(&out);
}

/// Row 8, variants: a package URL that is an option for pip (`--log=FILE`), a name that is
/// one, and an archive `file:` URL outside the repository (shown as such, not installed
/// without consent).
#[test]
fn row8_package_fields_that_would_be_options_are_refused() {
    let v = Victim::new();
    let (evil, lock) = attacker();
    let log = v.top.path().join("pip-log");
    let version = python_version(Path::new("python3"));
    let bad_url = format!(
        "\n[[python.package]]\nname = \"x\"\nversion = \"1.0\"\nsource = \"archive\"\nurl = \"--log={}\"\n",
        log.display()
    );
    let bad_name = "\n[[python.package]]\nname = \"--index-url=http://evil\"\nversion = \"1.0\"\nsource = \"registry\"\n";
    let bad_version =
        "\n[[python.package]]\nname = \"six\"\nversion = \"1.0 --pre\"\nsource = \"registry\"\n";
    evil.write("url.cairn.lock", with_python(&lock, &version, &bad_url));
    evil.write("name.cairn.lock", with_python(&lock, &version, bad_name));
    evil.write(
        "version.cairn.lock",
        with_python(&lock, &version, bad_version),
    );
    let outside = v.top.path().join("elsewhere.tar.gz");
    let archive = format!(
        "\n[[python.package]]\nname = \"far\"\nversion = \"1.0\"\nsource = \"archive\"\nurl = \"file://{}\"\n",
        outside.display()
    );
    v.clone_locked(&evil, &with_python(&lock, &version, &archive));
    for (file, says) in [
        ("url.cairn.lock", "`python.package[0].url` starts with `-`"),
        (
            "name.cairn.lock",
            "`python.package[0].name` is not a normalised package name",
        ),
        (
            "version.cairn.lock",
            "`python.package[0].version` is not a package version",
        ),
    ] {
        let out = v.rebuild(&evil, &["--run", "--lock", file]).expect(2);
        out.stderr_has(says);
        assert!(!log.exists());
        v.assert_untouched(&out);
    }
    let out = v.rebuild(&evil, &[]);
    assert!(matches!(out.code, 0 | 1), "{}{}", out.stdout, out.stderr);
    out.stderr_has(&format!(
        "far 1.0 from file://{} (archive; OUTSIDE the repository, on this machine)",
        outside.display()
    ));
    v.assert_untouched(&out);
}

/// Row 9's lock: `lock` whose `run.command` runs the payload, hidden behind terminal escapes
/// that, printed raw, erase the line and show `python train.py` instead.
fn escaped_command(v: &Victim, lock: &str) -> String {
    let command = format!(
        "command = [\"sh\", \"-c\", \"{}\\u001b[2K\\rpython train.py\"]",
        v.payload()
    );
    with_line(lock, "run", &command)
}

/// Row 9: `run.command` with terminal escapes that, printed raw, hid the real command behind
/// `python train.py`. Every control character is shown escaped, in the plan and the report,
/// and without consent the command does not run.
#[test]
fn row9_escapes_in_the_command_are_shown_and_nothing_runs() {
    let v = Victim::new();
    let (evil, lock) = attacker();
    v.clone_locked(&evil, &escaped_command(&v, &lock));
    for args in [&[][..], &["--yes"][..], &["--dry-run"][..]] {
        let out = v.rebuild(&evil, args);
        assert!(matches!(out.code, 0 | 1), "{}{}", out.stdout, out.stderr);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(!all.contains('\x1b'), "a raw escape was printed:\n{all}");
        assert!(
            !all.contains('\r'),
            "a raw carriage return was printed:\n{all}"
        );
        assert!(all.contains("\\e[2K\\rpython train.py"), "{all}");
        v.assert_untouched(&out);
    }
}

/// Locks whose paths or names hold control characters are refused as invalid, naming the
/// field, with the value escaped.
#[test]
fn control_characters_in_paths_and_names_are_refused() {
    let v = Victim::new();
    let (evil, lock) = attacker();
    let checkpoint = "\n[[checkpoint]]\npath = \"runs/\\u001b]0;pwned\\u0007x\"\nkind = \"file\"\ndigest = \"blake3:897c9a03db5e79d4c6b494d1af60c08e564cdaf9ba34830d14166223d8d8f780\"\nbytes = 1\n";
    v.clone_locked(&evil, &format!("{lock}{checkpoint}"));
    let out = v.rebuild(&evil, &["--run"]).expect(2);
    out.stderr_has("invalid lockfile")
        .stderr_has("`checkpoint[0].path`: path contains a control character");
    assert!(!out.stderr.contains('\x1b') && !out.stderr.contains('\x07'));
    v.assert_untouched(&out);
}

/// Row 9 at the prompt itself: on a terminal (util-linux `script` provides one), the plan and
/// the question show the escapes, and a "no" runs nothing. Where `script` is missing this test
/// fails rather than pass without checking: install util-linux.
#[test]
fn row9_the_prompt_shows_the_escapes_and_no_runs_nothing() {
    let v = Victim::new();
    let (evil, lock) = attacker();
    v.clone_locked(&evil, &escaped_command(&v, &lock));
    let into = v.top.path().join("rebuilt-prompt");
    let mut script = evil.cmd_raw("script");
    script.current_dir(&v.clone).env("HOME", &v.home);
    let args = format!("rebuild --into {}", into.display());
    let run = on_terminal(script, &args, "n\n").expect(0);
    run.stdout_has("Rebuild as planned and run the command? [y/N]")
        .stdout_has("\\e[2K\\rpython train.py");
    assert!(
        !run.stdout.contains('\x1b'),
        "a raw escape reached the terminal:\n{}",
        run.stdout
    );
    v.assert_untouched(&run);
    assert!(!into.join(".venv").exists());
}

/// Row 3, after consent: the lock's remote is a well-formed local path, a repository whose own
/// config names programs (fsmonitor, hooks, an upload-pack hook, an ssh command). `--yes` fetches
/// the commit from it, and none of them runs: git's own rules (upload-pack hooks only from the
/// user's config) and cairn's command-line settings (hooks off, no fsmonitor).
#[test]
fn row3_a_remote_with_a_hostile_config_runs_nothing_after_consent() {
    let v = Victim::new();
    let (evil, lock) = attacker();
    // The locked commit exists only on the remote.
    evil.write("train.py", "print('experiment')\n");
    evil.commit_all("experiment");
    let locked = evil.head();
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = remote_dir.path().join("evil.git");
    v.hostile_bare_clone(&evil, evil.path(), &remote, Hooks::AbsoluteAndSsh);
    // The published history stops before the experiment; the lock names it.
    evil.git(&["reset", "-q", "--hard", "HEAD~1"]);
    evil.git(&["reflog", "expire", "--expire=now", "--all"]);
    evil.git(&["gc", "-q", "--prune=now"]);
    let lock = with_commit(&lock, &locked);
    let lock = with_line(
        &lock,
        "code",
        &format!("remote = {:?}", remote.display().to_string()),
    );
    v.clone_locked(&evil, &lock);

    let out = v.rebuild(&evil, &[]).expect(2);
    out.stderr_has("needs consent").stderr_has(&format!(
        "fetch   commit {} from {}",
        locked,
        remote.display()
    ));
    v.assert_untouched(&out);
    let out = v.rebuild(&evil, &["--yes"]);
    assert!(matches!(out.code, 0 | 1), "{}{}", out.stdout, out.stderr);
    out.stderr_has(&format!("fetched {}", &locked[..12]));
    assert_eq!(
        std::fs::read_to_string(v.target().join("train.py")).unwrap(),
        "print('experiment')\n"
    );
    v.assert_untouched(&out);
}
