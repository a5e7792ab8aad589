//! The JSON Schemas in spec/ against real output: every example lock in spec/examples, a lock
//! cairn has just written, and what `verify`, `audit`, `lineage`, `env` and `export` print for a
//! real repository. And the other way round: output broken on purpose must be refused, so a
//! schema that accepts anything would fail here.
//!
//! The schemas are loaded offline from spec/ into one registry, keyed by their `$id`, so the
//! cross-references between them (the export schema builds on the SLSA and in-toto ones, env on
//! the lock's) resolve without a network.

use std::path::{Path, PathBuf};

use jsonschema::{Registry, Validator};
use serde_json::{json, Value};

use crate::util::Repo;

fn spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("spec")
}

/// Every `*.schema.json` in spec/ and spec/schemas/, parsed.
fn schema_files() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for dir in [spec(), spec().join("schemas")] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".schema.json"))
            .collect();
        names.sort();
        for p in names {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.push((p, v));
        }
    }
    out
}

/// A validator for spec/`name`, with every other schema of spec/ available to `$ref`.
pub fn validator(name: &str) -> Validator {
    let files = schema_files();
    let mut registry = Registry::new();
    for (p, v) in &files {
        let id = v["$id"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no $id", p.display()))
            .to_string();
        registry = registry.add(id, v.clone()).unwrap();
    }
    let registry = registry.prepare().unwrap();
    let (_, schema) = files
        .iter()
        .find(|(p, _)| p.ends_with(name))
        .unwrap_or_else(|| panic!("no schema {name}"));
    jsonschema::options()
        .offline()
        .with_registry(&registry)
        .build(schema)
        .unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
}

/// Assert that `instance` is valid against spec/`name`, listing every error when it is not.
#[track_caller]
pub fn assert_valid(name: &str, instance: &Value, what: &str) {
    let v = validator(name);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("  at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match {name}:\n{}",
        errors.join("\n")
    );
}

/// A TOML document as the JSON the lock schema describes.
fn toml_to_json(text: &str) -> Value {
    let table: toml::Table = text.parse().unwrap();
    serde_json::to_value(table).unwrap()
}

#[test]
fn every_schema_is_a_valid_2020_12_schema() {
    let files = schema_files();
    assert!(files.len() >= 8, "{files:?}");
    for (p, v) in &files {
        assert_eq!(
            v["$schema"],
            "https://json-schema.org/draft/2020-12/schema",
            "{}",
            p.display()
        );
        jsonschema::meta::validate(v).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

#[test]
fn lock_schema_accepts_the_spec_examples_and_refuses_the_bad_ones() {
    let examples = spec().join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "lock") {
            let doc = toml_to_json(&std::fs::read_to_string(&p).unwrap());
            assert_valid("cairn-lock.schema.json", &doc, &p.display().to_string());
            n += 1;
        }
    }
    assert!(n >= 7, "only {n} example locks");
    let v = validator("cairn-lock.schema.json");
    for bad in [
        "newer-version",
        "escaping-path",
        "absolute-path",
        "missing-version",
        "dirty-without-change",
    ] {
        let p = examples.join("bad").join(format!("{bad}.lock"));
        let doc = toml_to_json(&std::fs::read_to_string(&p).unwrap());
        assert!(!v.is_valid(&doc), "the lock schema accepts bad/{bad}.lock");
    }
}

/// A repository with a locked run on uncommitted code, a directory and a file checkpoint, and
/// an output: enough to make every table and every report non-trivial.
fn locked_repo() -> Repo {
    let r = Repo::ml();
    r.write(
        "train.py",
        format!(
            "{}\nos.makedirs('runs/final.dir', exist_ok=True)\nopen('runs/final.dir/w.bin', 'wb').write(b'w' * 10)\n",
            crate::util::TRAIN_PY.replace("sys.exit(code)", "")
        ),
    );
    r.cairn(crate::util::lock_ml_args(&[
        "--checkpoint",
        "runs/final.dir",
        "--output",
        "runs/metrics.json",
        "--seed",
        "7",
    ]))
    .expect(0);
    r
}

#[test]
fn real_output_matches_every_schema() {
    let r = locked_repo();
    let lock = toml_to_json(&r.read("cairn.lock"));
    assert!(lock["code"]["dirty"] == true && lock["python"]["package"].is_array());
    assert_valid("cairn-lock.schema.json", &lock, "a fresh cairn.lock");

    let ok = r.cairn(["verify", "--format", "json"]).expect(0);
    assert_valid("verify-report.schema.json", &ok.json(), "verify (ok)");
    r.write("data/train/a.txt", "changed\n");
    r.write("data/train/new.txt", "new\n");
    let diff = r.cairn(["verify", "--format", "json"]).expect(1);
    let report = diff.json();
    assert_eq!(report["ok"], false);
    assert_valid("verify-report.schema.json", &report, "verify (differences)");
    r.git(&["checkout", "data/train/a.txt"]);
    std::fs::remove_file(r.join("data/train/new.txt")).unwrap();

    let env = r.cairn(["env", "--format", "json"]).expect(0);
    assert_valid("env.schema.json", &env.json(), "cairn env");

    // Locked on uncommitted code: audit finds an error, so its report has findings.
    let audit = r.cairn(["audit", "--format", "json"]).expect(1);
    let audit = audit.json();
    assert!(!audit["findings"].as_array().unwrap().is_empty());
    assert_valid("audit-report.schema.json", &audit, "cairn audit");

    let lineage = r.cairn(["lineage", "--format", "json"]).expect(0);
    let lineage = lineage.json();
    assert!(lineage["edges"].as_array().unwrap().len() >= 2);
    assert_valid("lineage.schema.json", &lineage, "cairn lineage");

    let export = r.cairn(["export", "--format", "in-toto"]).expect(0).json();
    assert_valid(
        "schemas/in-toto-statement-v1.schema.json",
        &export,
        "cairn export (in-toto Statement v1)",
    );
    assert_valid(
        "schemas/slsa-provenance-v1.schema.json",
        &export,
        "cairn export (SLSA Provenance v1)",
    );
    assert_valid("export.schema.json", &export, "cairn export");

    // Broken on purpose: each must be refused by the published-format schemas.
    let statement = validator("schemas/slsa-provenance-v1.schema.json");
    let mut broken = Vec::new();
    let mut e = export.clone();
    e["_type"] = json!("https://in-toto.io/Statement/v0.1");
    broken.push(("an old statement type", e));
    let mut e = export.clone();
    e["subject"][0].as_object_mut().unwrap().remove("digest");
    broken.push(("a subject without digest", e));
    let mut e = export.clone();
    e["subject"][0]["digest"]["sha256"] = json!("ABC");
    broken.push(("an upper-case sha256", e));
    let mut e = export.clone();
    e["predicate"]["buildDefinition"]["resolvedDependencies"][0] = json!({"name": "x"});
    broken.push(("a dependency without uri, digest or content", e));
    let mut e = export.clone();
    e["predicate"]["runDetails"]["metadata"]["startedOn"] = json!("2026-11-26 20:00:00");
    broken.push(("a timestamp that is not RFC 3339", e));
    let mut e = export.clone();
    e["predicate"]["buildDefinition"]
        .as_object_mut()
        .unwrap()
        .remove("buildType");
    broken.push(("no buildType", e));
    for (what, doc) in broken {
        assert!(!statement.is_valid(&doc), "accepted {what}");
    }
    let mut l = lock.clone();
    l["code"].as_object_mut().unwrap().remove("change");
    assert!(!validator("cairn-lock.schema.json").is_valid(&l));
}

#[test]
fn diff_and_rebuild_reports_match_their_schemas() {
    let r = Repo::ml();
    let lock = |name: &str, seed: &str| {
        let args = crate::util::lock_ml_no_python(&["--lock", name, "--seed", seed]);
        r.cairn(args).expect(0);
    };
    lock("a.cairn.lock", "1");
    r.commit_all("first run");
    r.write("data/train/a.txt", "changed\n");
    r.write("train.py", format!("{}# v2\n", crate::util::TRAIN_PY));
    r.commit_all("second version");
    lock("b.cairn.lock", "2");
    let two = r
        .cairn(["diff", "a.cairn.lock", "b.cairn.lock", "--format", "json"])
        .expect(1)
        .json();
    assert!(two["causes"].as_array().unwrap().len() >= 3, "{two}");
    assert_valid("diff-report.schema.json", &two, "cairn diff of two locks");
    let same = r
        .cairn(["diff", "b.cairn.lock", "b.cairn.lock", "--format", "json"])
        .expect(0)
        .json();
    assert_valid(
        "diff-report.schema.json",
        &same,
        "cairn diff of a lock with itself",
    );
    let current = r.cairn(["diff", "a.cairn.lock", "--format", "json"]);
    assert_valid(
        "diff-report.schema.json",
        &current.json(),
        "cairn diff against the current state",
    );

    let into = tempfile::tempdir().unwrap();
    let target = into.path().join("rebuilt");
    let out = r
        .cairn([
            "rebuild",
            "--lock",
            "b.cairn.lock",
            "--into",
            target.to_str().unwrap(),
            "--format",
            "json",
        ])
        .expect(0);
    let report = out.json();
    assert_eq!(report["ran"], false);
    assert_valid(
        "rebuild-report.schema.json",
        &report,
        "cairn rebuild (prepared)",
    );
    let mut broken = report.clone();
    broken["steps"][0]["status"] = json!("fine");
    assert!(!validator("rebuild-report.schema.json").is_valid(&broken));

    let elsewhere = into.path().join("planned");
    let plan = r
        .cairn([
            "rebuild",
            "--lock",
            "b.cairn.lock",
            "--into",
            elsewhere.to_str().unwrap(),
            "--dry-run",
            "--format",
            "json",
        ])
        .expect(0)
        .json();
    assert!(!elsewhere.exists(), "a dry run creates nothing");
    assert_eq!(plan["commit"], report_commit(&r, "b.cairn.lock"));
    assert_valid("rebuild-plan.schema.json", &plan, "cairn rebuild --dry-run");
    let mut broken = plan.clone();
    broken["packages"] = json!([{ "name": "x", "version": "1", "source": "ftp" }]);
    assert!(!validator("rebuild-plan.schema.json").is_valid(&broken));
}

/// The commit a lock records.
fn report_commit(r: &Repo, lock: &str) -> Value {
    json!(r.lock_toml(lock)["code"]["commit"].as_str().unwrap())
}
