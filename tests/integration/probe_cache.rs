//! The user's probe cache (crates/cairn/src/probe/cache.rs): a warm verify starts no process,
//! and the cache never gives a stale answer. Every change that could move the interpreter's
//! answer shows up in the very next verify: a package installed, upgraded and removed, a `.pth`
//! line added, `pyvenv.cfg` edited, the pyenv version switched. And an answer planted in the
//! repository is never read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::{command, Repo, Venv};

/// A local package as a wheel, made without the network or a build backend: a wheel is a zip
/// of the package and its `.dist-info`, written here by the venv's own `zipfile`.
fn wheel(venv: &Venv, work: &Path, name: &str, version: &str) -> PathBuf {
    let dist = work.join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let path = dist.join(format!("{name}-{version}-py3-none-any.whl"));
    let script = r#"
import base64, hashlib, sys, zipfile
path, name, version = sys.argv[1:]
info = f"{name}-{version}.dist-info"
files = {
    f"{name}/__init__.py": "VALUE = 1\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(path, "w") as z:
    for f, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{f},sha256={digest},{len(data)}")
        z.writestr(f, data)
    record.append(f"{info}/RECORD,,")
    z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
"#;
    let out = command(venv.python())
        .args(["-c", script])
        .arg(&path)
        .args([name, version])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// A distribution that is only its metadata, in `dir`.
fn fake_distribution(dir: &Path, name: &str, version: &str) {
    let meta = dir.join(format!("{name}-{version}.dist-info"));
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("METADATA"),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
    )
    .unwrap();
}

/// The environment findings of `verify --format json` in `r`: subject -> detail.
fn env_findings(r: &Repo, extra: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["verify", "--format", "json"];
    args.extend_from_slice(extra);
    let out = r.cairn(&args);
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["area"] == "environment")
        .map(|f| {
            (
                f["subject"].as_str().unwrap().to_string(),
                f["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The interpreter answers in the user's cache of `r`'s hermetic HOME (the package scans are
/// kept beside them, in `packages/`).
fn cached_answers(r: &Repo) -> Vec<PathBuf> {
    let dir = r.home().join(".cache/cairn/python");
    match std::fs::read_dir(&dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Verify twice on an unchanged environment: the second one at the latest finds the answer
/// stored (the first may see a change too recent to trust, and then does not store it).
#[track_caller]
fn warm(r: &Repo, extra: &[&str]) {
    for _ in 0..2 {
        assert_eq!(env_findings(r, extra), BTreeMap::new());
    }
    assert_eq!(cached_answers(r).len(), 1, "{:?}", cached_answers(r));
}

/// A project locked with a venv of its own, verified until the interpreter's answer is in the
/// user's cache: the venv, the project and that one cache entry.
fn one_cached_answer() -> (Venv, Repo, PathBuf) {
    let venv = Venv::new();
    let r = Repo::new();
    r.write("train.py", "print('hi')\n");
    r.commit_all("initial");
    let py = venv.python();
    r.cairn(["lock", "--python", py.to_str().unwrap()])
        .expect(0);
    warm(&r, &["--python", py.to_str().unwrap()]);
    let entry = cached_answers(&r).pop().unwrap();
    (venv, r, entry)
}

/// Point the venv at a base interpreter the test owns: a tree whose standard library links to
/// the real one but whose site-packages is the test's, so that turning on
/// `include-system-site-packages` has something to show.
fn own_base(venv: &Venv, work: &Path) -> PathBuf {
    let out = command(venv.python())
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .unwrap();
    let stdlib = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let base = work.join("base");
    let lib = base.join("lib").join(stdlib.file_name().unwrap());
    std::fs::create_dir_all(lib.join("site-packages")).unwrap();
    std::fs::create_dir_all(base.join("bin")).unwrap();
    for e in std::fs::read_dir(&stdlib).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "site-packages" {
            std::os::unix::fs::symlink(e.path(), lib.join(e.file_name())).unwrap();
        }
    }
    let cfg = venv.dir.path().join("venv/pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("home") {
                format!("home = {}\n", base.join("bin").display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&cfg, text).unwrap();
    lib.join("site-packages")
}

#[test]
fn every_change_of_the_environment_shows_up_in_the_next_verify() {
    let venv = Venv::new();
    let work = tempfile::tempdir().unwrap();
    let base_site = own_base(&venv, work.path());
    fake_distribution(&base_site, "from-base", "1.0");
    let v1 = wheel(&venv, work.path(), "cachepkg", "1.0");
    let v2 = wheel(&venv, work.path(), "cachepkg", "2.0");
    let site = venv.site_packages();
    std::fs::write(site.join("zz-extra.pth"), "").unwrap();
    let extra = work.path().join("extra-site");
    fake_distribution(&extra, "via-pth", "0.9");

    // A package installed from a local directory (as `pip install -e` records it), whose
    // repository moves without its metadata changing.
    let local = work.path().join("localsrc");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("lib.py"), "X = 1\n").unwrap();
    let git_home = work.path().join("git-home");
    std::fs::create_dir_all(&git_home).unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "local"],
    ] {
        crate::util::git_in(&local, &git_home, args);
    }
    fake_distribution(&site, "localpkg", "0.1");
    std::fs::write(
        site.join("localpkg-0.1.dist-info/direct_url.json"),
        format!(
            "{{\"url\": \"file://{}\", \"dir_info\": {{\"editable\": true}}}}",
            local.display()
        ),
    )
    .unwrap();

    let r = Repo::new();
    r.write("train.py", "print('hi')\n");
    r.commit_all("initial");
    let py = venv.python();
    let py = py.to_str().unwrap();
    let python = ["--python", py];
    r.cairn(["lock", "--python", py]).expect(0);
    warm(&r, &python);

    // The local package's source changes; nothing in site-packages does.
    std::fs::write(local.join("lib.py"), "X = 2\n").unwrap();
    let f = env_findings(&r, &python);
    assert!(f.contains_key("localpkg"), "source change not seen: {f:?}");
    std::fs::write(local.join("lib.py"), "X = 1\n").unwrap();
    warm(&r, &python);

    venv.pip(&["install", "--no-deps", v1.to_str().unwrap()]);
    let f = env_findings(&r, &python);
    assert!(f.contains_key("cachepkg"), "install not seen: {f:?}");
    r.cairn(["lock", "--python", py]).expect(0);
    warm(&r, &python);

    // A metadata file edited in place: its directory does not change.
    let metadata = site.join("cachepkg-1.0.dist-info/METADATA");
    let original = std::fs::read_to_string(&metadata).unwrap();
    std::fs::write(
        &metadata,
        original.replace("Version: 1.0", "Version: 1.0.post1"),
    )
    .unwrap();
    let f = env_findings(&r, &python);
    assert_eq!(
        f.get("cachepkg").map(String::as_str),
        Some("1.0 -> 1.0.post1"),
        "metadata edit not seen: {f:?}"
    );
    std::fs::write(&metadata, original).unwrap();
    warm(&r, &python);

    venv.pip(&["install", "--no-deps", v2.to_str().unwrap()]);
    let f = env_findings(&r, &python);
    assert_eq!(f.get("cachepkg").map(String::as_str), Some("1.0 -> 2.0"));
    r.cairn(["lock", "--python", py]).expect(0);
    warm(&r, &python);

    venv.pip(&["uninstall", "-y", "cachepkg"]);
    let f = env_findings(&r, &python);
    assert!(f.contains_key("cachepkg"), "removal not seen: {f:?}");
    r.cairn(["lock", "--python", py]).expect(0);
    warm(&r, &python);

    // A line added to a .pth file that already existed: only that file changes.
    std::fs::write(site.join("zz-extra.pth"), format!("{}\n", extra.display())).unwrap();
    let f = env_findings(&r, &python);
    assert!(f.contains_key("via-pth"), ".pth line not seen: {f:?}");
    r.cairn(["lock", "--python", py]).expect(0);
    warm(&r, &python);

    // pyvenv.cfg edited: the base's site-packages joins sys.path.
    let cfg = venv.dir.path().join("venv/pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "include-system-site-packages = false",
        "include-system-site-packages = true",
    );
    std::fs::write(&cfg, text).unwrap();
    let f = env_findings(&r, &python);
    assert!(
        f.contains_key("from-base"),
        "pyvenv.cfg edit not seen: {f:?}"
    );
}

/// A pyenv-style installation of the test's own: `shims/python3` runs `libexec/pyenv exec`,
/// which picks the version from `PYENV_VERSION`, a `.python-version` up the tree, or the
/// global `version` file, as pyenv does, and counts its runs in `runs`. Each version is a venv
/// the test made (pyenv-virtualenv links `versions/NAME` to the environment in the same way).
struct FakePyenv {
    root: PathBuf,
}

impl FakePyenv {
    fn new(dir: &Path, versions: &[(&str, &Venv)]) -> FakePyenv {
        let root = dir.join("pyenv");
        for d in ["shims", "libexec", "versions"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (name, venv) in versions {
            std::os::unix::fs::symlink(
                venv.dir.path().join("venv"),
                root.join("versions").join(name),
            )
            .unwrap();
        }
        let pyenv = root.join("libexec/pyenv");
        std::fs::write(&pyenv, include_str!("../fixtures/fake-pyenv.sh")).unwrap();
        let shim = root.join("shims/python3");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nset -e\nprogram=\"${{0##*/}}\"\nexport PYENV_ROOT=\"{root}\"\nexec \"{root}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
                root = root.display()
            ),
        )
        .unwrap();
        for f in [&pyenv, &shim] {
            let mut perm = std::fs::metadata(f).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(f, perm).unwrap();
        }
        FakePyenv { root }
    }

    fn set_global(&self, version: &str) {
        std::fs::write(self.root.join("version"), format!("{version}\n")).unwrap();
    }

    /// How many times the shim ran `pyenv exec`.
    fn runs(&self) -> usize {
        std::fs::read_to_string(self.root.join("runs"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// `PATH` with the shims first.
    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.root.join("shims").display(),
            std::env::var("PATH").unwrap()
        )
    }
}

/// A fake pyenv in a temporary directory with two versions, `a` and `b` (venvs with the
/// distributions `only-in-a` and `only-in-b`), `a` the global one.
fn pyenv_a_and_b() -> (tempfile::TempDir, Venv, Venv, FakePyenv) {
    let (a, b) = (Venv::new(), Venv::new());
    fake_distribution(&a.site_packages(), "only-in-a", "1.0");
    fake_distribution(&b.site_packages(), "only-in-b", "1.0");
    let work = tempfile::tempdir().unwrap();
    let pyenv = FakePyenv::new(work.path(), &[("a", &a), ("b", &b)]);
    pyenv.set_global("a");
    (work, a, b, pyenv)
}

#[test]
fn switching_the_pyenv_version_shows_up_in_the_next_verify() {
    let (work, _a, _b, pyenv) = pyenv_a_and_b();

    let r = Repo::new();
    r.write("train.py", "print('hi')\n");
    r.commit_all("initial");
    let path = pyenv.path();
    // The shim runs in the probe's new directory under the temporary directory, so the
    // `.python-version` files pyenv finds up the tree are those above it.
    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let run = |args: &[&str], pyenv_version: Option<&str>| {
        let mut cmd = r.cmd();
        cmd.env("PATH", &path).env("TMPDIR", &tmp).args(args);
        if let Some(v) = pyenv_version {
            cmd.env("PYENV_VERSION", v);
        }
        crate::util::Run::from(cmd.output().unwrap())
    };
    let findings = |pyenv_version: Option<&str>| -> BTreeMap<String, String> {
        let out = run(&["verify", "--format", "json"], pyenv_version);
        let report: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["area"] == "environment")
            .map(|f| (f["subject"].as_str().unwrap().to_string(), String::new()))
            .collect()
    };
    run(&["lock"], None).expect(0);
    let lock = r.read("cairn.lock");
    assert!(lock.contains("only-in-a"), "{lock}");
    for _ in 0..2 {
        assert_eq!(findings(None), BTreeMap::new());
    }
    assert_eq!(cached_answers(&r).len(), 1);

    // The global version file.
    pyenv.set_global("b");
    let f = findings(None);
    assert!(
        f.contains_key("only-in-a") && f.contains_key("only-in-b"),
        "global switch not seen: {f:?}"
    );
    pyenv.set_global("a");
    assert_eq!(findings(None), BTreeMap::new());

    // PYENV_VERSION.
    let f = findings(Some("b"));
    assert!(f.contains_key("only-in-b"), "PYENV_VERSION not seen: {f:?}");
    assert_eq!(findings(None), BTreeMap::new());

    // The project's `.python-version`, as pyenv reads it where the user types `python`.
    r.write(".python-version", "b\n");
    let f = findings(None);
    assert!(
        f.contains_key("only-in-b"),
        ".python-version not seen: {f:?}"
    );
    std::fs::remove_file(r.join(".python-version")).unwrap();
    assert_eq!(findings(None), BTreeMap::new());
    // One under the temporary directory, where the probe runs, is not pyenv's choice for the
    // project (it was while the shim ran there).
    std::fs::write(tmp.join(".python-version"), "b\n").unwrap();
    assert_eq!(findings(None), BTreeMap::new());
    // One answer per set of pyenv's inputs (global a, global b, PYENV_VERSION=b,
    // .python-version b); going back to global a found the first one again.
    assert_eq!(cached_answers(&r).len(), 4);
    // And the shim itself never ran: cairn chose the version as pyenv would.
    assert_eq!(pyenv.runs(), 0);
}

/// The environment findings and the notes of `verify --format json`, and the stderr of
/// `lock`, with Python from `pyenv`'s shim and `extra` variables.
fn pyenv_run(
    r: &Repo,
    pyenv: &FakePyenv,
    extra: &[(&str, &str)],
    args: &[&str],
) -> crate::util::Run {
    let mut cmd = r.cmd();
    cmd.env("PATH", pyenv.path())
        .envs(extra.iter().copied())
        .args(args);
    crate::util::Run::from(cmd.output().unwrap())
}

#[test]
fn a_pyenv_version_that_is_no_installed_version_is_refused() {
    let (work, _a, _b, pyenv) = pyenv_a_and_b();
    // What a name would reach if it were taken as a path: a program that leaves a mark.
    let marker = work.path().join("MARKER");
    let evil = work.path().join("evil/bin");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::write(
        evil.join("python3"),
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    let mut perm = std::fs::metadata(evil.join("python3"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(evil.join("python3"), perm).unwrap();
    let evil_abs = work.path().join("evil").display().to_string();

    let r = Repo::new();
    r.write("train.py", "print('hi')\n");
    r.write(".gitignore", ".python-version\n");
    r.commit_all("initial");
    pyenv_run(&r, &pyenv, &[], &["lock"]).expect(0);
    assert!(r.read("cairn.lock").contains("only-in-a"));
    assert_eq!(pyenv.runs(), 0);

    let names = [
        ("../../evil", "is not a version name"),
        ("a/../../../evil", "is not a version name"),
        (evil_abs.as_str(), "is not a version name"),
        ("..", "is not a version name"),
        ("a\u{1b}[2J", "is not a version name"),
        ("9.9.9", "is not installed"),
        ("3", "is not installed"),
    ];
    // From the repository's file; and from the user's variable, which the shim then follows
    // (this one leads to `a` again).
    let cases = names.iter().map(|&(name, why)| (name, why, true)).chain([(
        "./a",
        "is not a version name",
        false,
    )]);
    for (name, why, from_file) in cases {
        let extra = if from_file {
            r.write(
                ".python-version",
                format!("# chosen by the project\n{name}\n"),
            );
            vec![]
        } else {
            vec![("PYENV_VERSION", name)]
        };
        let before = pyenv.runs();
        let out = pyenv_run(&r, &pyenv, &extra, &["verify", "--format", "json"]).expect(0);
        let notes = out.json()["notes"].to_string();
        assert!(notes.contains(why), "{name:?}: {notes}");
        assert!(notes.contains("runs the pyenv shim"), "{name:?}: {notes}");
        assert!(!notes.contains('\u{1b}'), "{name:?}: {notes}");
        // The shim ran instead, in a directory of its own: the global version, the lock's.
        assert_eq!(pyenv.runs(), before + 1, "{name:?}");
        let out = pyenv_run(&r, &pyenv, &extra, &["lock"]).expect(0);
        out.stderr_has(why);
        let lock = r.read("cairn.lock");
        assert!(
            lock.contains("only-in-a") && !lock.contains("only-in-b"),
            "{name:?}: {lock}"
        );
        if from_file {
            std::fs::remove_file(r.join(".python-version")).unwrap();
        }
    }
    assert!(!marker.exists(), "a version name reached a program");

    // A `.python-version` that is a link is not read (the shim runs); a FIFO is not a file, as
    // for pyenv, and is passed over without being opened: the global version chooses.
    std::os::unix::fs::symlink(work.path().join("elsewhere"), r.join(".python-version")).unwrap();
    std::fs::write(work.path().join("elsewhere"), "b\n").unwrap();
    let before = pyenv.runs();
    let out = pyenv_run(&r, &pyenv, &[], &["verify", "--format", "json"]).expect(0);
    let notes = out.json()["notes"].to_string();
    assert!(
        notes.contains("cannot read the pyenv version file"),
        "{notes}"
    );
    assert_eq!(pyenv.runs(), before + 1);
    std::fs::remove_file(r.join(".python-version")).unwrap();
    let out = command("mkfifo")
        .arg(r.join(".python-version"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = pyenv_run(&r, &pyenv, &[], &["verify", "--format", "json"]).expect(0);
    assert_eq!(out.json()["notes"], serde_json::json!([]));
    assert_eq!(pyenv.runs(), before + 1);
    std::fs::remove_file(r.join(".python-version")).unwrap();

    // An installed name, `python-` spelled, and a list whose first name lacks the program: chosen
    // without the shim.
    std::fs::create_dir_all(pyenv.root.join("versions/c/bin")).unwrap();
    let runs = pyenv.runs();
    for version in ["b", "python-b", "c:b"] {
        let out = pyenv_run(
            &r,
            &pyenv,
            &[("PYENV_VERSION", version)],
            &["verify", "--format", "json"],
        );
        assert!(
            out.stdout.contains("only-in-b"),
            "{version}: {}",
            out.stdout
        );
        assert_eq!(out.json()["notes"], serde_json::json!([]), "{version}");
    }
    assert_eq!(pyenv.runs(), runs);
}

#[test]
fn pyenv_system_is_the_next_python_on_path() {
    let (a, sys) = (Venv::new(), Venv::new());
    fake_distribution(&a.site_packages(), "only-in-a", "1.0");
    fake_distribution(&sys.site_packages(), "only-in-system", "1.0");
    let work = tempfile::tempdir().unwrap();
    let pyenv = FakePyenv::new(work.path(), &[("a", &a)]);
    pyenv.set_global("system");
    let r = Repo::new();
    r.write("train.py", "print('hi')\n");
    r.commit_all("initial");
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        pyenv.root.join("shims").display(),
        sys.dir.path().join("venv/bin").display()
    );
    let mut cmd = r.cmd();
    cmd.env("PATH", &path).arg("lock");
    crate::util::Run::from(cmd.output().unwrap()).expect(0);
    assert!(r.read("cairn.lock").contains("only-in-system"));
    assert_eq!(pyenv.runs(), 0);
}

#[test]
fn an_answer_planted_in_the_repository_is_never_read() {
    let (venv, r, entry) = one_cached_answer();
    let py = venv.python();
    let python = ["--python", py.to_str().unwrap()];
    let name = entry.file_name().unwrap();
    let real = std::fs::read_to_string(&entry).unwrap();
    let version = serde_json::from_str::<serde_json::Value>(&real).unwrap()["value"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = real.replace(&format!("\"{version}\""), "\"9.9.9\"");
    assert_ne!(forged, real);

    // The same entry, forged, wherever a repository could put it.
    for dir in [
        ".cairn",
        ".cairn/python",
        ".cairn/cache",
        ".cairn/cache/python",
        ".cairn/cache/cairn/python",
        ".cache/cairn/python",
    ] {
        r.write(&format!("{dir}/{}", name.to_string_lossy()), &forged);
    }
    r.commit_all("plant");
    assert_eq!(env_findings(&r, &python), BTreeMap::new());
    std::fs::remove_file(&entry).unwrap();
    assert_eq!(env_findings(&r, &python), BTreeMap::new());
    assert_eq!(
        std::fs::read_to_string(cached_answers(&r).pop().unwrap()).unwrap(),
        real,
        "the answer stored again is the interpreter's"
    );

    // The user's own cache is what is read: a forged entry there is believed (the user's
    // cache is the user's), which shows the planted ones above were not.
    std::fs::write(&entry, &forged).unwrap();
    let f = env_findings(&r, &python);
    assert!(f.contains_key("python"), "{f:?}");
}

#[test]
fn host_probes_run_once_on_an_unchanged_machine() {
    let work = tempfile::tempdir().unwrap();
    let replay = crate::util::replay_nvidia_smi(work.path());
    let counter = work.path().join("runs");
    let smi = work.path().join("counting-nvidia-smi");
    std::fs::write(
        &smi,
        format!(
            "#!/bin/sh\necho run >> '{}'\nexec '{}' \"$@\"\n",
            counter.display(),
            replay.display()
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&smi).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&smi, perm).unwrap();
    let runs = || {
        std::fs::read_to_string(&counter)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };

    let r = Repo::new();
    r.write("train.py", "print('hi')\n");
    r.commit_all("initial");
    let cairn = |args: &[&str]| {
        crate::util::Run::from(
            r.cmd()
                .env("CAIRN_NVIDIA_SMI", &smi)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    cairn(&["lock", "--no-python"]).expect(0);
    assert!(r.read("cairn.lock").contains("H100"));
    let after_lock = runs();
    assert_eq!(after_lock, 2, "lock asks nvidia-smi two questions");
    cairn(&["verify"]).expect(0);
    cairn(&["verify"]).expect(0);
    assert_eq!(runs(), after_lock, "a warm verify runs no nvidia-smi");

    // Another program (a new driver's nvidia-smi) is asked again.
    std::fs::write(
        &smi,
        format!(
            "#!/bin/sh\n# new\necho run >> '{}'\nexec '{}' \"$@\"\n",
            counter.display(),
            replay.display()
        ),
    )
    .unwrap();
    cairn(&["verify"]).expect(0);
    assert_eq!(runs(), after_lock + 2);
}

#[test]
fn a_damaged_answer_is_asked_again() {
    let (venv, r, entry) = one_cached_answer();
    let py = venv.python();
    let python = ["--python", py.to_str().unwrap()];
    let good = std::fs::read(&entry).unwrap();
    let replace = |how: &dyn Fn(&Path)| {
        std::fs::remove_file(&entry).unwrap();
        how(&entry);
    };
    type Damage<'a> = (&'a str, &'a dyn Fn(&Path));
    let damages: [Damage<'_>; 4] = [
        ("truncated", &|p| {
            std::fs::write(p, &good[..good.len() / 2]).unwrap()
        }),
        ("not JSON", &|p| {
            std::fs::write(p, "\u{0}\u{1}garbage").unwrap()
        }),
        ("a symlink to /dev/zero", &|p| {
            std::os::unix::fs::symlink("/dev/zero", p).unwrap()
        }),
        ("a FIFO", &|p| {
            let out = command("mkfifo").arg(p).output().unwrap();
            assert!(out.status.success());
        }),
    ];
    for (what, damage) in damages {
        replace(damage);
        // Answered by the interpreter: the same environment, and verify neither hangs nor fails.
        assert_eq!(env_findings(&r, &python), BTreeMap::new(), "{what}");
    }
    // Each miss stores the interpreter's answer again, over the damaged entry (renamed over it,
    // never written through it): the same bytes as before.
    warm(&r, &python);
    assert_eq!(std::fs::read(&entry).unwrap(), good);
}
