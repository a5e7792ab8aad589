//! Environment capture against real virtual environments built by the test, with packages from
//! the registry: what cairn records must be what `pip freeze --all` lists, and verify must say
//! exactly which package drifted.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::{git_in, run_ok, Repo, Run, Venv};

/// `pip freeze --all` of a venv as normalised name -> version (None where pip prints no
/// version: VCS and local-directory lines).
fn freeze(venv: &Venv) -> BTreeMap<String, Option<String>> {
    let text = run_ok(crate::util::command(venv.python()).args([
        "-m",
        "pip",
        "--disable-pip-version-check",
        "freeze",
        "--all",
    ]));
    let mut map = BTreeMap::new();
    let mut editable_comment: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# Editable install with no version control (") {
            let inner = rest.trim_end_matches(')');
            if let Some((n, v)) = inner.split_once("==") {
                editable_comment = Some((n.to_string(), v.to_string()));
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(e) = line.strip_prefix("-e ") {
            if let Some((n, v)) = editable_comment.take() {
                map.insert(norm(&n), Some(v));
            } else if let Some(egg) = e.split("#egg=").nth(1) {
                map.insert(norm(egg), None);
            }
            continue;
        }
        if let Some((n, v)) = line.split_once("==") {
            map.insert(norm(n), Some(v.to_string()));
        } else if let Some((n, _)) = line.split_once(" @ ") {
            map.insert(norm(n), None);
        }
    }
    map
}

fn norm(name: &str) -> String {
    cairn::probe::python::normalize_name(name)
}

/// A local package, buildable without the network (setuptools from the venv).
fn local_package(dir: &Path, name: &str, version: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(
        dir.join("pyproject.toml"),
        format!(
            "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"{name}\"\nversion = \"{version}\"\n\n[tool.setuptools]\npackages = [\"{name}\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join(name).join("__init__.py"), "VALUE = 1\n").unwrap();
}

/// `cairn lock --python PY` in `r`, which must succeed.
#[track_caller]
fn lock_with(r: &Repo, py: &Path) -> Run {
    r.cairn(["lock", "--python", py.to_str().unwrap()])
        .expect(0)
}

fn packages(lock: &toml::Table) -> BTreeMap<String, toml::Table> {
    lock["python"]["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let t = p.as_table().unwrap().clone();
            (t["name"].as_str().unwrap().to_string(), t)
        })
        .collect()
}

/// The whole story in one venv (building it is the slow part): a registry install, extras, an
/// editable local package, a package from a local git repository, a `.pth` path entry. The
/// recorded set equals `pip freeze --all`; then one upgrade is reported as exactly that.
#[test]
fn environment_matches_pip_freeze_and_drift_is_named() {
    let venv = Venv::new();
    let work = tempfile::tempdir().unwrap();
    venv.pip(&["install", "wheel", "six==1.16.0", "requests[socks]==2.32.3"]);

    // Editable local package (setuptools is in the venv; no build isolation, no network).
    let editable = work.path().join("editable-pkg");
    local_package(&editable, "mylocal", "0.3.0");
    venv.pip(&[
        "install",
        "--no-build-isolation",
        "-e",
        editable.to_str().unwrap(),
    ]);

    // A package from a local git repository.
    let gitpkg = work.path().join("gitpkg");
    local_package(&gitpkg, "fromgit", "1.2.0");
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    git_in(&gitpkg, &home, &["init", "-q", "-b", "main"]);
    git_in(&gitpkg, &home, &["add", "-A"]);
    git_in(&gitpkg, &home, &["commit", "-q", "-m", "pkg"]);
    let commit = git_in(&gitpkg, &home, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    venv.pip(&[
        "install",
        "--no-build-isolation",
        &format!("git+file://{}", gitpkg.display()),
    ]);

    // A .pth path line pointing at a directory with a distribution in it.
    let extra = work.path().join("extra-site");
    std::fs::create_dir_all(extra.join("viapth-0.9.dist-info")).unwrap();
    std::fs::write(
        extra.join("viapth-0.9.dist-info/METADATA"),
        "Metadata-Version: 2.1\nName: viapth\nVersion: 0.9\n",
    )
    .unwrap();
    std::fs::write(
        venv.site_packages().join("zz-extra.pth"),
        format!("{}\n", extra.display()),
    )
    .unwrap();

    // Lock in a project, with this interpreter.
    let r = Repo::ml();
    r.write(
        "requirements.txt",
        "six==1.16.0\nrequests[socks]==2.32.3 ; python_version >= '3.8'\n",
    );
    r.commit_all("requirements");
    let py = venv.python();
    let out = lock_with(&r, &py);
    out.stderr_lacks("warning");
    let lock = r.lock_toml("cairn.lock");
    let recorded = packages(&lock);

    let freeze = freeze(&venv);
    assert_eq!(
        recorded.keys().collect::<Vec<_>>(),
        freeze.keys().collect::<Vec<_>>(),
        "recorded names differ from pip freeze --all"
    );
    for (name, version) in &freeze {
        if let Some(v) = version {
            assert_eq!(
                recorded[name]["version"].as_str(),
                Some(v.as_str()),
                "{name}"
            );
        }
    }
    for want in [
        "six", "requests", "pysocks", "mylocal", "fromgit", "viapth", "pip",
    ] {
        assert!(
            recorded.contains_key(want),
            "{want} not recorded: {:?}",
            recorded.keys()
        );
    }
    assert_eq!(recorded["six"]["source"].as_str(), Some("registry"));
    assert_eq!(recorded["six"]["installer"].as_str(), Some("pip"));
    assert!(recorded["six"]["wheel-tag"]
        .as_str()
        .unwrap()
        .contains("py3-none-any"));
    assert!(recorded["six"]["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("blake3:"));
    assert_eq!(recorded["mylocal"]["source"].as_str(), Some("directory"));
    assert_eq!(recorded["mylocal"]["editable"].as_bool(), Some(true));
    assert_eq!(recorded["fromgit"]["source"].as_str(), Some("vcs"));
    assert_eq!(
        recorded["fromgit"]["commit"].as_str(),
        Some(commit.as_str())
    );
    assert!(recorded["fromgit"]["url"]
        .as_str()
        .unwrap()
        .starts_with("git+file://"));
    let python = lock["python"].as_table().unwrap();
    assert_eq!(python["implementation"].as_str(), Some("cpython"));
    assert_eq!(
        lock["lockfile"][0]["path"].as_str(),
        Some("requirements.txt")
    );
    assert_eq!(lock["lockfile"][0]["kind"].as_str(), Some("requirements"));

    // `cairn env` shows the same packages without locking.
    let env_out = r
        .cairn(["env", "--python", py.to_str().unwrap(), "--format", "json"])
        .expect(0);
    let env = env_out.json();
    assert_eq!(
        env["python"]["package"].as_array().unwrap().len(),
        recorded.len()
    );

    // Nothing changed: verify passes without drift.
    let out = r
        .cairn(["verify", "--python", py.to_str().unwrap()])
        .expect(0);
    out.stdout_lacks("environment");

    // Upgrade one package: exactly that one is reported, as a warning; --strict fails.
    venv.pip(&["install", "six==1.17.0"]);
    let out = r
        .cairn([
            "verify",
            "--python",
            py.to_str().unwrap(),
            "--format",
            "json",
        ])
        .expect(0);
    let report = out.json();
    let env_findings: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["area"] == "environment")
        .collect();
    let subjects: Vec<&str> = env_findings
        .iter()
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["six", "requirements.txt"], "{report}");
    assert_eq!(env_findings[0]["detail"], "1.16.0 -> 1.17.0");
    assert_eq!(env_findings[0]["severity"], "warning");
    assert!(
        env_findings[1]["detail"]
            .as_str()
            .unwrap()
            .contains("requirements.txt wants six==1.16.0, the environment has 1.17.0"),
        "{report}"
    );
    let out = r
        .cairn(["verify", "--strict", "--python", py.to_str().unwrap()])
        .expect(1);
    out.stdout_has("packages: 1 changed\n  six changed (1.16.0 -> 1.17.0)\n");
}

#[test]
fn broken_metadata_is_a_warning_naming_it() {
    let venv = Venv::new();
    let site = venv.site_packages();
    std::fs::create_dir_all(site.join("nometa-1.0.dist-info")).unwrap();
    std::fs::create_dir_all(site.join("garbage-2.0.dist-info")).unwrap();
    std::fs::write(
        site.join("garbage-2.0.dist-info/METADATA"),
        b"\x00\xff\xfe not headers at all",
    )
    .unwrap();
    let r = Repo::ml();
    let py = venv.python();
    let out = lock_with(&r, &py);
    out.stderr_has("nometa-1.0.dist-info");
    out.stderr_has("garbage-2.0.dist-info");
    let lock = r.lock_toml("cairn.lock");
    let recorded = packages(&lock);
    assert!(recorded.contains_key("pip"));
    assert!(!recorded.contains_key("nometa") && !recorded.contains_key("garbage"));
}

#[test]
fn seed_and_determinism_variables_are_recorded_and_passed_on() {
    let r = Repo::ml();
    r.write("cairn.toml", "env = [\"MY_*\"]\noutputs = [\"seed.txt\"]\n");
    r.cairn_env(
        &[
            ("PYTHONHASHSEED", "0"),
            ("NCCL_ALGO", "Ring"),
            ("MY_FLAG", "on"),
            ("UNRELATED_SECRET", "do-not-record"),
        ],
        [
            "lock",
            "--no-python",
            "--seed",
            "1234",
            "--",
            "sh",
            "-c",
            "echo $CAIRN_SEED > seed.txt",
        ],
    )
    .expect(0);
    assert_eq!(r.read("seed.txt"), "1234\n");
    let text = r.read("cairn.lock");
    assert!(!text.contains("do-not-record"), "{text}");
    let lock: toml::Table = text.parse().unwrap();
    assert_eq!(lock["run"]["seed"].as_integer(), Some(1234));
    let env = lock["run"]["env"].as_table().unwrap();
    let keys: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(keys, ["MY_FLAG", "NCCL_ALGO", "PYTHONHASHSEED"]);
    assert!(lock.get("python").is_none());
}

/// PyTorch cannot be installed here, so its files are laid out as a real torch 2.11 + CUDA 13
/// install has them (version.py and the nvidia headers, as read on an H100 machine).
#[test]
fn torch_build_is_read_from_files_and_host_drift_is_information() {
    let venv = Venv::new();
    let site = venv.site_packages();
    std::fs::create_dir_all(site.join("torch")).unwrap();
    std::fs::write(
        site.join("torch/version.py"),
        "from typing import Optional\n\n__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'rocm', 'xpu']\n__version__ = '2.11.0+cu130'\ndebug = False\ncuda: Optional[str] = '13.0'\ngit_version = '70d99e998b4955e0049d13a98d77ae1b14db1f45'\nhip: Optional[str] = None\nrocm: Optional[str] = None\nxpu: Optional[str] = None\n",
    )
    .unwrap();
    for (dir, file, text) in [
        (
            "nvidia/cudnn/include",
            "cudnn_version.h",
            "#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 19\n#define CUDNN_PATCHLEVEL 0\n",
        ),
        (
            "nvidia/nccl/include",
            "nccl.h",
            "#define NCCL_MAJOR 2\n#define NCCL_MINOR 28\n#define NCCL_PATCH 9\n",
        ),
    ] {
        std::fs::create_dir_all(site.join(dir)).unwrap();
        std::fs::write(site.join(dir).join(file), text).unwrap();
    }
    let r = Repo::ml();
    let py = venv.python();
    lock_with(&r, &py);
    let lock = r.lock_toml("cairn.lock");
    let torch = lock["host"]["torch"].as_table().unwrap();
    assert_eq!(torch["version"].as_str(), Some("2.11.0+cu130"));
    assert_eq!(torch["cuda"].as_str(), Some("13.0"));
    assert_eq!(torch["cudnn"].as_str(), Some("9.19.0"));
    assert_eq!(torch["nccl"].as_str(), Some("2.28.9"));

    // Another cuDNN on this "machine": information, not a failure; --strict fails.
    std::fs::write(
        site.join("nvidia/cudnn/include/cudnn_version.h"),
        "#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 20\n#define CUDNN_PATCHLEVEL 1\n",
    )
    .unwrap();
    let out = r
        .cairn(["verify", "--python", py.to_str().unwrap()])
        .expect(0);
    out.stdout_has("host cudnn: changed (9.19.0 -> 9.20.1) [info]\n");
    r.cairn(["verify", "--strict", "--python", py.to_str().unwrap()])
        .expect(1);
}

#[test]
fn conda_prefix_packages_are_recorded() {
    let venv = Venv::new();
    let meta = venv.dir.path().join("venv/conda-meta");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("numpy-1.26.4-py311h64a7726_0.json"),
        r#"{"name": "numpy", "version": "1.26.4", "build": "py311h64a7726_0", "channel": "https://conda.anaconda.org/conda-forge/linux-64", "sha256": "3f4365e11b28e244c95ba8579942b0802761ba7bb31c026f50d1a9ea9c728149", "files": []}"#,
    )
    .unwrap();
    std::fs::write(meta.join("broken.json"), "{not json").unwrap();
    let r = Repo::ml();
    let py = venv.python();
    let out = lock_with(&r, &py);
    out.stderr_has("broken.json");
    let lock = r.lock_toml("cairn.lock");
    let conda = &lock["python"]["conda"][0];
    assert_eq!(conda["name"].as_str(), Some("numpy"));
    assert_eq!(conda["build"].as_str(), Some("py311h64a7726_0"));
    assert_eq!(
        conda["sha256"].as_str(),
        Some("3f4365e11b28e244c95ba8579942b0802761ba7bb31c026f50d1a9ea9c728149")
    );
}

#[test]
fn named_interpreter_that_does_not_run_is_an_error() {
    let r = Repo::ml();
    let out = r
        .cairn(["lock", "--python", "/nonexistent/python"])
        .expect(2);
    out.stderr_has("/nonexistent/python");
    assert!(!r.join("cairn.lock").exists());
}

/// An editable package inside the repository is code: committing it (and the lock) moves the
/// commit its source records, which is not environment drift.
#[test]
fn in_repository_editable_package_is_not_drift_after_a_commit() {
    let venv = Venv::new();
    venv.pip(&["install", "wheel"]);
    let r = Repo::ml();
    local_package(&r.join("pkg"), "inrepo", "0.1.0");
    r.write(".gitignore", "runs/\n*.egg-info/\nbuild/\n");
    r.commit_all("package");
    venv.pip(&[
        "install",
        "--no-build-isolation",
        "-e",
        r.join("pkg").to_str().unwrap(),
    ]);
    let py = venv.python();
    lock_with(&r, &py);
    let lock = r.lock_toml("cairn.lock");
    let pkgs = packages(&lock);
    assert_eq!(pkgs["inrepo"]["editable"].as_bool(), Some(true));
    r.commit_all("lock");
    let out = r
        .cairn(["verify", "--python", py.to_str().unwrap()])
        .expect(0);
    out.stdout_lacks("environment");
}

/// Several packages installed from one repository (a monorepo's libraries) record that
/// repository's state, captured once for all of them, and each scan sees the state anew.
#[test]
fn packages_from_one_repository_share_its_state() {
    let venv = Venv::new();
    venv.pip(&["install", "wheel"]);
    let mono = Repo::new();
    for name in ["liba", "libb"] {
        local_package(&mono.join(&format!("libs/{name}")), name, "1.0");
    }
    mono.write(".gitignore", "*.egg-info/\n__pycache__/\nbuild/\n");
    mono.write("README.md", "monorepo\n");
    mono.commit_all("two libraries");
    for name in ["liba", "libb"] {
        let dir = mono.join(&format!("libs/{name}"));
        venv.pip(&[
            "install",
            "--no-build-isolation",
            "-e",
            dir.to_str().unwrap(),
        ]);
    }
    mono.write("README.md", "monorepo, edited\n");
    let py = venv.python();
    let env_of = || {
        let out = mono
            .cairn(["env", "--python", py.to_str().unwrap()])
            .expect(0);
        let lock: toml::Table = out.stdout.parse().unwrap();
        packages(&lock)
    };
    let pkgs = env_of();
    let (a, b) = (&pkgs["liba"], &pkgs["libb"]);
    assert_eq!(a["commit"].as_str(), Some(mono.head().as_str()), "{a:?}");
    assert_eq!(b["commit"], a["commit"]);
    assert!(
        a["change"].as_str().unwrap().starts_with("blake3:"),
        "{a:?}"
    );
    assert_eq!(b["change"], a["change"], "one state for one repository");
    // Committed: the next scan captures again, and both are clean at the new commit.
    mono.commit_all("edit");
    let pkgs = env_of();
    for name in ["liba", "libb"] {
        let p = &pkgs[name];
        assert_eq!(p["commit"].as_str(), Some(mono.head().as_str()), "{p:?}");
        assert!(p.get("change").is_none(), "{p:?}");
    }
}
