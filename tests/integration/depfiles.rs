//! Dependency files read with their ecosystem's rules (#17): the real and synthetic files of
//! tests/fixtures/depfiles, each against environments that meet or break it in known ways
//! (expected.toml), through the library with a fixed interpreter and end to end through
//! `cairn verify` with a real virtual environment whose packages are METADATA files written
//! here. No false finding, no missed one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn::model::lockfile::{PyPackage, Python};
use cairn::model::python::{normalize_name, CondaPackage, Source};

use crate::util::{command, run_ok, Repo};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/depfiles")
}

/// One case of an expected.toml, resolved.
struct Case {
    name: String,
    python: Option<String>,
    platform: Option<String>,
    installed: BTreeMap<String, String>,
    conda: BTreeMap<String, String>,
    findings: Vec<String>,
    notes: Vec<String>,
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(toml::Value::as_array)
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn table(v: Option<&toml::Value>) -> BTreeMap<String, String> {
    v.and_then(toml::Value::as_table)
        .map(|t| {
            t.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The file a fixture is about and its cases (`like` resolved).
fn cases(dir: &Path) -> (String, Vec<Case>) {
    let text = std::fs::read_to_string(dir.join("expected.toml")).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let file = doc["file"].as_str().unwrap().to_string();
    let mut out: Vec<Case> = Vec::new();
    for c in doc["case"].as_array().unwrap() {
        let c = c.as_table().unwrap();
        let name = c["name"].as_str().unwrap().to_string();
        let mut installed = table(c.get("installed"));
        if let Some(like) = c.get("like").and_then(toml::Value::as_str) {
            let base = out
                .iter()
                .find(|b| b.name == like)
                .unwrap_or_else(|| panic!("{}: no case {like}", dir.display()));
            installed = base.installed.clone();
        }
        let removed: Vec<String> = strings(c.get("removed"))
            .iter()
            .chain(table(c.get("changed")).keys())
            .map(|n| normalize_name(n))
            .collect();
        installed.retain(|n, _| !removed.contains(&normalize_name(n)));
        installed.extend(table(c.get("changed")));
        out.push(Case {
            name,
            python: c.get("python").map(|v| v.as_str().unwrap().to_string()),
            platform: c.get("platform").map(|v| v.as_str().unwrap().to_string()),
            installed,
            conda: table(c.get("conda")),
            findings: strings(c.get("findings")),
            notes: strings(c.get("notes")),
        });
    }
    (file, out)
}

/// Copy a fixture's files (not SOURCE or expected.toml) into `to`, each without its `.fixture`
/// suffix.
fn copy_files(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        if path.is_dir() {
            copy_files(&path, &to.join(name));
        } else if let Some(name) = name.strip_suffix(".fixture") {
            std::fs::create_dir_all(to).unwrap();
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.toml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "{dirs:?}");
    dirs
}

#[test]
fn fixtures_name_their_source() {
    for dir in fixture_dirs() {
        let source = std::fs::read_to_string(dir.join("SOURCE")).unwrap();
        let real = ["repository: ", "path: ", "commit: ", "licence: "]
            .iter()
            .all(|k| source.lines().any(|l| l.starts_with(k)));
        assert!(
            real || source.starts_with("synthetic: "),
            "{}: SOURCE must name repository, path, commit and licence, or say synthetic",
            dir.display()
        );
    }
}

/// Every case through the library: the fixture's files in a directory, an interpreter as the
/// case says (3.12.3 on linux-x86_64 unless it says otherwise).
#[test]
fn every_fixture_through_the_library() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in fixture_dirs() {
        let (file, cases) = cases(&dir);
        let project = tempfile::tempdir().unwrap();
        copy_files(&dir, project.path());
        let entries = cairn::probe::env::lockfile_entries(project.path()).unwrap();
        let sources = cairn::probe::lockfiles::find_requirement_sources(project.path()).unwrap();
        assert!(
            entries.iter().any(|e| e.path.as_str() == file)
                || sources.iter().any(|s| s.path.as_str() == file),
            "{}: {file} is not found as a dependency file",
            dir.display()
        );
        for case in cases {
            let python = Python {
                implementation: "cpython".into(),
                version: case.python.clone().unwrap_or_else(|| "3.12.3".into()),
                abi: None,
                platform: Some(
                    case.platform
                        .clone()
                        .unwrap_or_else(|| "linux-x86_64".into()),
                ),
                packages: case
                    .installed
                    .iter()
                    .map(|(n, v)| PyPackage {
                        name: normalize_name(n),
                        version: v.clone(),
                        source: Source::Registry,
                        installer: None,
                        wheel_tag: None,
                        fingerprint: None,
                    })
                    .collect(),
                conda: case
                    .conda
                    .iter()
                    .map(|(n, vb)| {
                        let (v, b) = vb.split_once(' ').unwrap();
                        CondaPackage {
                            name: n.clone(),
                            version: v.into(),
                            build: Some(b.into()),
                            channel: None,
                            sha256: None,
                        }
                    })
                    .collect(),
                index_url: None,
                extra_index_urls: Vec::new(),
            };
            let (found, notes) = cairn::compare::pins(project.path(), &entries, &python);
            let found: Vec<String> = found
                .iter()
                .filter(|d| d.subject == file)
                .map(|d| d.reason_text().unwrap())
                .collect();
            let notes: Vec<String> = notes.iter().map(ToString::to_string).collect();
            checked += 1;
            if sorted(found.clone()) != sorted(case.findings.clone())
                || sorted(notes.clone()) != sorted(case.notes.clone())
            {
                failures.push(format!(
                    "{} / {}:\n  found {found:#?}\n  notes {notes:#?}\n  expected {:#?}\n  notes {:#?}",
                    dir.file_name().unwrap().to_string_lossy(),
                    case.name,
                    case.findings,
                    case.notes
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 30, "{checked} cases");
}

/// A virtual environment without pip, whose packages are exactly `installed` (a dist-info
/// directory with a METADATA file each) and, when given, conda's records in `conda-meta/`.
fn environment(
    installed: &BTreeMap<String, String>,
    conda: &BTreeMap<String, String>,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    run_ok(
        command("python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv),
    );
    let site = crate::util::site_packages_of(&venv);
    for (name, version) in installed {
        let info = site.join(format!("{}-{version}.dist-info", name.replace('-', "_")));
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(
            info.join("METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
        )
        .unwrap();
    }
    if !conda.is_empty() {
        std::fs::create_dir_all(venv.join("conda-meta")).unwrap();
    }
    for (name, vb) in conda {
        let (version, build) = vb.split_once(' ').unwrap();
        let record = serde_json::json!({"name": name, "version": version, "build": build});
        std::fs::write(
            venv.join(format!("conda-meta/{name}-{version}-{build}.json")),
            record.to_string(),
        )
        .unwrap();
    }
    (dir, venv.join("bin/python"))
}

/// The lock-file findings and notes `cairn verify --format json` reports for `file`.
fn verify_findings(r: &Repo, python: &Path, file: &str) -> (Vec<String>, Vec<String>) {
    let py = python.to_str().unwrap();
    r.cairn(["lock", "--python", py]).expect(0);
    let out = r
        .cairn(["verify", "--python", py, "--format", "json"])
        .expect(0);
    let report = out.json();
    let findings = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["area"] == "environment" && f["subject"] == file)
        .map(|f| {
            assert_eq!(f["severity"], "warning", "{f}");
            f["detail"].as_str().unwrap().to_string()
        })
        .collect();
    let notes = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .filter(|n| n.starts_with(file))
        .collect();
    (findings, notes)
}

/// Every case that does not fix the interpreter, end to end: the fixture's files committed in
/// a repository, a real virtual environment, `cairn lock` and `cairn verify`.
#[test]
fn every_fixture_through_cairn_verify() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in fixture_dirs() {
        let (file, cases) = cases(&dir);
        for case in cases.iter().filter(|c| c.python.is_none()) {
            let r = Repo::ml();
            copy_files(&dir, r.path());
            r.commit_all("dependency files");
            let (_env, python) = environment(&case.installed, &case.conda);
            let (found, notes) = verify_findings(&r, &python, &file);
            checked += 1;
            if sorted(found.clone()) != sorted(case.findings.clone())
                || sorted(notes.clone()) != sorted(case.notes.clone())
            {
                failures.push(format!(
                    "{} / {}:\n  found {found:#?}\n  notes {notes:#?}\n  expected {:#?}",
                    dir.file_name().unwrap().to_string_lossy(),
                    case.name,
                    case.findings
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 15, "{checked} cases");
}

/// The issue's own example, as a user sees it: one warning for the range the environment
/// breaks, none for the pins written differently; `--strict` fails on it; `--format github`
/// attaches it to requirements.txt.
#[test]
fn the_issues_example_as_a_user_sees_it() {
    let r = Repo::ml();
    r.write(
        "requirements.txt",
        "six==1.16\nSix>=1.17\nregex==2024.11.06\n",
    );
    r.commit_all("requirements");
    let installed = [("six", "1.16.0"), ("regex", "2024.11.6")]
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .into();
    let (_env, python) = environment(&installed, &BTreeMap::new());
    let py = python.to_str().unwrap();
    r.cairn(["lock", "--python", py]).expect(0);
    let out = r.cairn(["verify", "--python", py]).expect(0);
    out.stdout_has(
        "lockfile requirements.txt: changed (requirements.txt wants six>=1.17, the environment has 1.16.0) [warning]",
    )
    .stdout_lacks("regex")
    .stdout_lacks("six==1.16");
    r.cairn(["verify", "--strict", "--python", py]).expect(1);
    let out = r
        .cairn(["verify", "--python", py, "--format", "github"])
        .expect(0);
    assert_eq!(
        out.stdout.lines().filter(|l| l.starts_with("::")).collect::<Vec<_>>(),
        ["::warning file=requirements.txt,title=cairn verify%3A environment changed::requirements.txt (requirements.txt wants six>=1.17, the environment has 1.16.0)"],
        "{}",
        out.stdout
    );
}

/// A line that is not a requirement is a note naming the file and line; the other lines are
/// still checked, verify does not fail on it, and nothing is written.
#[test]
fn a_bad_line_is_a_note_and_the_rest_is_checked() {
    let r = Repo::ml();
    r.write("requirements.txt", "six>=1.17\ntorch==\nA_>=1\n");
    r.commit_all("requirements");
    let installed = [("six".to_string(), "1.16.0".to_string())].into();
    let (_env, python) = environment(&installed, &BTreeMap::new());
    let py = python.to_str().unwrap();
    r.cairn(["lock", "--python", py]).expect(0);
    let before = std::fs::read(r.join("cairn.lock")).unwrap();
    let out = r.cairn(["verify", "--python", py]).expect(0);
    out.stdout_has("requirements.txt wants six>=1.17, the environment has 1.16.0")
        .stdout_has("note: requirements.txt line 2: `torch==`: ")
        .stdout_has(
            "note: requirements.txt line 3: `A_>=1`: a package name must end with a letter or digit",
        );
    assert_eq!(std::fs::read(r.join("cairn.lock")).unwrap(), before);
    assert_eq!(r.read("requirements.txt"), "six>=1.17\ntorch==\nA_>=1\n");
}

/// `-r` and `-c` read files of the project only: a path that climbs out, an absolute path and
/// a link that leads out are notes, and what they name is not read.
#[test]
fn includes_never_leave_the_project() {
    let r = Repo::ml();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "six>=99\n").unwrap();
    std::os::unix::fs::symlink(&secret, r.join("linked.txt")).unwrap();
    r.write(
        "requirements.txt",
        format!(
            "-r ../secret.txt\n-c {}\n-r linked.txt\n-r missing.txt\nsix\n",
            secret.display()
        ),
    );
    r.commit_all("requirements");
    let installed = [("six".to_string(), "1.16.0".to_string())].into();
    let (_env, python) = environment(&installed, &BTreeMap::new());
    let (found, notes) = verify_findings(&r, &python, "requirements.txt");
    assert_eq!(found, Vec::<String>::new(), "{notes:?}");
    let notes = notes.join("\n");
    assert!(
        notes.contains("line 1: `../secret.txt` is outside the project; not read"),
        "{notes}"
    );
    assert!(
        notes.contains(&format!(
            "line 2: `{}` is outside the project; not read",
            secret.display()
        )),
        "{notes}"
    );
    assert!(
        notes.contains("linked.txt leads outside the project; not read"),
        "{notes}"
    );
    assert!(notes.contains("line 4: cannot read "), "{notes}");
    assert!(!notes.contains("99"), "{notes}");
}

/// pyproject.toml and Pipfile are read for their requirements but not recorded as lock files:
/// they are code, and a lock made before they were read would show them as new lock files.
#[test]
fn pyproject_and_pipfile_are_checked_not_recorded() {
    let r = Repo::ml();
    r.write(
        "pyproject.toml",
        "[project]\nname = \"trainer\"\ndependencies = [\"six>=1.17\"]\n",
    );
    r.write("Pipfile", "[packages]\nregex = \">=2025\"\n");
    r.write("requirements.txt", "six\n");
    r.commit_all("dependency files");
    let installed = [("six", "1.16.0"), ("regex", "2024.11.6")]
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .into();
    let (_env, python) = environment(&installed, &BTreeMap::new());
    let (found, _) = verify_findings(&r, &python, "pyproject.toml");
    assert_eq!(
        found,
        ["pyproject.toml wants six>=1.17, the environment has 1.16.0"]
    );
    let (found, _) = verify_findings(&r, &python, "Pipfile");
    assert_eq!(
        found,
        ["Pipfile wants regex>=2025, the environment has 2024.11.6"]
    );
    let lock = r.lock_toml("cairn.lock");
    let recorded: Vec<&str> = lock["lockfile"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, ["requirements.txt"]);
}
