//! One probe, one comparison: the same state gives the same differences through `cairn verify`,
//! `cairn diff LOCK` and `cairn rebuild`'s data check, each worded by its own policy.
//!
//! One project is changed in many ways at once (a data byte, an added and a removed data file,
//! a package upgrade in a real venv, dirty code, a new commit, a missing checkpoint, an external
//! dataset nobody located) and the JSON of each command is reduced to (area, subject, path,
//! change) and compared.

use std::collections::BTreeSet;

use crate::util::{Repo, Venv};

type Named = BTreeSet<(String, String, String, String)>;

fn s(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

/// verify's findings, with its `environment` area named as diff's sections are.
fn verify_named(report: &serde_json::Value) -> Named {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let area = match f["area"].as_str().unwrap() {
                "environment" if f["subject"] == "python" => "python".to_string(),
                "environment" if f["subject"].as_str().unwrap().contains('.') => {
                    "lockfile".to_string()
                }
                "environment" => "python".to_string(),
                other => other.to_string(),
            };
            (area, s(&f["subject"]), s(&f["path"]), s(&f["change"]))
        })
        .collect()
}

fn diff_named(report: &serde_json::Value) -> Named {
    ["causes", "effects"]
        .iter()
        .flat_map(|k| report[k].as_array().unwrap().iter())
        .map(|d| {
            (
                s(&d["section"]),
                s(&d["subject"]),
                s(&d["path"]),
                s(&d["change"]),
            )
        })
        .collect()
}

fn named(items: &[(&str, &str, &str, &str)]) -> Named {
    items
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect()
}

#[test]
fn verify_diff_and_rebuild_name_the_same_differences() {
    let r = Repo::ml();
    // The dataset lives in the project but not in git (as large data does), so a rebuild reads
    // it from this project, where it was changed.
    r.untrack_data();
    let outside = tempfile::tempdir().unwrap();
    let external = outside.path().join("ext");
    std::fs::create_dir_all(&external).unwrap();
    std::fs::write(external.join("x.txt"), "external\n").unwrap();
    let venv = Venv::new();
    crate::summaries::install(&venv.site_packages(), "cairnfake", "1.0", None);
    let py = venv.python();
    let py = py.to_str().unwrap();
    let ext = external.to_str().unwrap();
    let common = [
        "--data",
        "data/train",
        "--data",
        ext,
        "--checkpoint",
        "runs/final.safetensors",
    ];
    let mut with_python = vec!["lock", "--python", py];
    with_python.extend(common);
    with_python.extend(["--", "python3", "train.py"]);
    r.cairn(&with_python).expect(0);
    // The same run without Python, for the rebuild (which would install the locked packages
    // from an index: no network in tests).
    let mut without_python = vec!["lock", "--lock", "rebuild.cairn.lock", "--no-python"];
    without_python.extend(common);
    without_python.extend(["--", "python3", "train.py"]);
    r.cairn(&without_python).expect(0);
    let lock = r.lock_toml("cairn.lock");
    let names: Vec<String> = lock["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{lock:?}");
    let ext_name = names
        .iter()
        .find(|n| n.as_str() != "train")
        .unwrap()
        .clone();
    assert!(
        lock["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"].as_str() == Some(&ext_name) && d.get("path").is_none()),
        "{lock:?}"
    );
    r.commit_all("locks");
    // Where this user's lock found the external data is remembered on this machine (spec/lockfile.md
    // §12); forget it, as for a lock made by somebody else, to see the unlocated case.
    std::fs::remove_dir_all(r.home().join(".local/share/cairn/data")).unwrap();

    // Everything changes at once.
    r.write("data/train/a.txt", "alpha, relabelled\n");
    r.write("data/train/c.txt", "gamma\n");
    std::fs::remove_file(r.join("data/train/b.txt")).unwrap();
    std::fs::remove_dir_all(venv.site_packages().join("cairnfake-1.0.dist-info")).unwrap();
    crate::summaries::install(&venv.site_packages(), "cairnfake", "2.0", None);
    r.write("utils.py", "def helper():\n    return 1\n");
    r.commit_all("a new commit");
    r.write("train.py", "print('rewritten, not committed')\n");
    std::fs::remove_file(r.join("runs/final.safetensors")).unwrap();

    let want = named(&[
        ("code", "code", "train.py", "changed"),
        ("code", "code", "utils.py", "added"),
        ("data", "train", "a.txt", "changed"),
        ("data", "train", "b.txt", "removed"),
        ("data", "train", "c.txt", "added"),
        ("data", &ext_name, "", "unchecked"),
        ("python", "cairnfake", "", "changed"),
        ("checkpoint", "runs/final.safetensors", "", "missing"),
    ]);

    let verify = r
        .cairn(["verify", "--python", py, "--format", "json"])
        .expect(1)
        .json();
    assert_eq!(verify_named(&verify), want, "{verify:#}");

    let diff = r
        .cairn(["diff", "cairn.lock", "--python", py, "--format", "json"])
        .expect(1)
        .json();
    assert_eq!(diff_named(&diff), want, "{diff:#}");
    // Every kind of difference at once is still what the published schemas allow.
    crate::schemas::assert_valid("verify-report.schema.json", &verify, "verify");
    crate::schemas::assert_valid("diff-report.schema.json", &diff, "diff");

    // The human forms name the same things too: the unlocated dataset is "not checked" in
    // both, with the same advice.
    let advice = format!("--data {ext_name}=PATH");
    r.cairn(["verify", "--python", py])
        .expect(1)
        .stdout_has(&format!("data {ext_name}: not checked ("))
        .stdout_has(&advice);
    r.cairn(["diff", "cairn.lock", "--python", py])
        .expect(1)
        .stdout_has(&format!("  data {ext_name}: not checked ("))
        .stdout_has(&advice);

    // audit, a policy by rules: the dataset's files and the missing checkpoint, in the same
    // words.
    let audit = r.cairn(["audit", "--format", "json"]).expect(1).json();
    let finding = |rule: &str, subject: &str| {
        audit["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == rule && f["subject"] == subject && f["lock"] == "cairn.lock")
            .unwrap_or_else(|| panic!("no {rule} for {subject}: {audit:#}"))["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let data = finding("data-digest", "train");
    for words in ["a.txt changed", "b.txt removed", "c.txt added"] {
        assert!(data.contains(words), "{data}");
    }
    finding("checkpoint-missing", "runs/final.safetensors");

    // rebuild: the unlocated dataset stops it before anything is created (its policy for
    // "unchecked"), naming the same dataset.
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let into_arg = into.to_str().unwrap();
    let refused = r
        .cairn([
            "rebuild",
            "--lock",
            "rebuild.cairn.lock",
            "--into",
            into_arg,
        ])
        .expect(2);
    refused.stderr_has(&ext_name);
    assert!(!into.exists(), "nothing is created before preflight passes");

    // Located, the data check names exactly verify's data differences. rebuild materialises
    // the locked commit, so the new commit and the dirty code are not its differences; it
    // installs the locked packages, so the upgrade here is not either.
    let out = r.cairn([
        "rebuild",
        "--lock",
        "rebuild.cairn.lock",
        "--into",
        into_arg,
        "--data",
        &format!("{ext_name}={ext}"),
        "--format",
        "json",
    ]);
    let rebuild = out.json();
    let steps = rebuild["steps"].as_array().unwrap();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no {name} step: {rebuild:#}"))
    };
    let data: Named = step("data")["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                "data".to_string(),
                s(&d["subject"]),
                s(&d["path"]),
                s(&d["change"]),
            )
        })
        .collect();
    let verify_data: Named = want
        .iter()
        .filter(|(area, subject, ..)| area == "data" && subject == "train")
        .cloned()
        .collect();
    assert_eq!(data, verify_data, "{rebuild:#}");
    crate::schemas::assert_valid("rebuild-report.schema.json", &rebuild, "rebuild");
    assert_eq!(
        step("code")["differences"],
        serde_json::json!([]),
        "{rebuild:#}"
    );
}

/// One read policy: a dataset the lock places in the project, replaced by a link to a directory
/// elsewhere with the very same files, is read by no command unless the user says so. Had any
/// command read it, it would have matched the lock.
#[test]
fn a_link_out_of_the_repository_is_read_by_no_command() {
    let r = Repo::ml();
    r.untrack_data();
    r.cairn(crate::util::LOCK_ML_NO_PYTHON).expect(0);
    r.commit_all("lock");
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("train");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["a.txt", "b.txt"] {
        std::fs::copy(r.join("data/train").join(f), copy.join(f)).unwrap();
    }
    std::fs::remove_dir_all(r.join("data/train")).unwrap();
    std::os::unix::fs::symlink(&copy, r.join("data/train")).unwrap();

    let want = named(&[("data", "train", "", "unchecked")]);
    let verify = r.cairn(["verify", "--format", "json"]).expect(1).json();
    assert_eq!(verify_named(&verify), want, "{verify:#}");
    let diff = r
        .cairn(["diff", "cairn.lock", "--no-python", "--format", "json"])
        .expect(1)
        .json();
    assert_eq!(diff_named(&diff), want, "{diff:#}");
    for report in [&verify["findings"][0], &diff["causes"][0]] {
        assert!(
            report["detail"]
                .as_str()
                .unwrap()
                .contains("leads outside the repository"),
            "{report}"
        );
    }
    let audit = r.cairn(["audit", "--format", "json"]).expect(1).json();
    assert!(
        audit["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "data-digest"
                && f["subject"] == "train"
                && f["message"]
                    .as_str()
                    .unwrap()
                    .contains("leads outside the repository")),
        "{audit:#}"
    );
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    r.cairn(["rebuild", "--into", into.to_str().unwrap()])
        .expect(2)
        .stderr_has("train");
    assert!(!into.exists());

    // The user says where it is: then every command reads it, and it matches.
    r.cairn(["verify", "--data", "train=data/train"]).expect(0);
    r.cairn([
        "diff",
        "cairn.lock",
        "--no-python",
        "--data",
        "train=data/train",
    ])
    .expect(0);
}

/// The read policy holds for the rebuilt checkout too: a link committed at a dataset's locked
/// path, leading out of the rebuilt directory to files that would match the lock, is not read.
#[test]
fn rebuild_does_not_read_through_a_committed_link_out_of_its_directory() {
    let r = Repo::ml();
    r.cairn(crate::util::LOCK_TRAIN_DATA).expect(0);
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("train");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["a.txt", "b.txt"] {
        std::fs::copy(r.join("data/train").join(f), copy.join(f)).unwrap();
    }
    r.git(&["rm", "-q", "-r", "data/train"]);
    std::os::unix::fs::symlink(&copy, r.join("data/train")).unwrap();
    r.commit_all("the dataset is a link now");
    // The lock names the commit with the link (a hostile lock can name any commit).
    let head = r.head();
    let mut lock = r.lock_toml("cairn.lock");
    lock["code"]["commit"] = toml::Value::String(head);
    r.write("cairn.lock", toml::to_string(&lock).unwrap());
    r.commit_all("lock at the link");

    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let out = r.cairn([
        "rebuild",
        "--into",
        into.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        !out.stdout.contains("match the lock") && !out.stderr.contains("match the lock"),
        "the files behind the link were read:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    out.stderr_has("train");
}
