//! Issue #14, points 1, 2, 3 and 8: a stranger reproduces the run.
//!
//! * A rebuild makes the (git-ignored) directories the run writes its checkpoints into, inside
//!   the rebuilt worktree and nowhere else.
//! * `cairn checkpoint add --parent FILE` for a checkpoint of another run records it by digest
//!   with that run; lineage follows it and audit passes; a file no lock records is an
//!   "untracked" parent; a parent that does not exist is refused.
//! * External data on another disk verifies with no flags for the user who locked it, on this
//!   machine, in this project, and nowhere else.
//! * Checkpoints the run deleted itself are "deleted by the run", not missing.

use std::path::Path;

use crate::util::{clone_repo, names_in, set_mode, snapshot, Repo, Run};

/// `cairn` with the test binary's directory first on PATH, so training scripts can call it.
fn cairn(r: &Repo, env: &[(&str, &str)], args: &[&str]) -> Run {
    let bin = Path::new(env!("CARGO_BIN_EXE_cairn")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut all = vec![("PATH", path.as_str())];
    all.extend_from_slice(env);
    r.cairn_env(&all, args)
}

// ---------------------------------------------------------------------------------------------
// 1. Output directories.

/// Writes its checkpoint into `ckpt/`, which it does not make: the directory existed (ignored
/// by git) where the run was locked.
const TRAIN_INTO_CKPT: &str = r#"import hashlib
data = open("data/train.txt", "rb").read()
with open("ckpt/model.bin", "wb") as f:
    f.write(hashlib.sha256(data).digest() * 32)
with open("logs/run/metrics.json", "w") as f:
    f.write('{"loss": 0.5}\n')
"#;

fn ckpt_project() -> Repo {
    ckpt_project_with(None, true)
}

/// The checkpoint project, with a committed link `evil` to `link_out` when given, locked with
/// the metrics file as an output when `output`.
fn ckpt_project_with(link_out: Option<&Path>, output: bool) -> Repo {
    let r = Repo::new();
    r.write("train.py", TRAIN_INTO_CKPT);
    r.write("data/train.txt", "some training text\n");
    r.write(".gitignore", "ckpt/\nlogs/\n");
    match link_out {
        Some(to) => {
            std::os::unix::fs::symlink(to, r.join("evil")).unwrap();
            r.commit_all("training code and a link out");
        }
        None => r.commit_all("training code"),
    }
    std::fs::create_dir_all(r.join("ckpt")).unwrap();
    std::fs::create_dir_all(r.join("logs/run")).unwrap();
    let mut args = vec![
        "lock",
        "--no-python",
        "--data",
        "data/train.txt",
        "--checkpoint",
        "ckpt/model.bin",
    ];
    if output {
        args.extend(["--output", "logs/run/metrics.json"]);
    }
    args.extend(["--", "python3", "train.py"]);
    r.cairn(args).expect(0);
    r
}

/// `cairn rebuild --into INTO --run --format json` in `r`, which must exit with `code`: its report.
fn rebuild_and_run(r: &Repo, into: &Path, code: i32) -> serde_json::Value {
    crate::rebuild::rebuild(r, into, &["--run", "--format", "json"])
        .expect(code)
        .json()
}

/// The `run` step of a `rebuild --format json` report.
fn run_step(report: &serde_json::Value) -> &serde_json::Value {
    crate::rebuild::step(report, "run")
}

#[test]
fn rebuild_makes_the_directories_the_run_writes_into() {
    let r = ckpt_project();
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let report = rebuild_and_run(&r, &into, 0);
    let run = run_step(&report);
    assert_eq!(run["status"], "reproduced", "{report}");
    let actions = run["actions"].to_string();
    assert!(actions.contains("created ckpt/"), "{actions}");
    assert!(actions.contains("created logs/run/"), "{actions}");
    assert!(
        actions.contains("checkpoint ckpt/model.bin is bit-identical"),
        "{actions}"
    );
    crate::util::assert_same_bytes(&r.join("ckpt/model.bin"), &into.join("ckpt/model.bin"));
    // Only those directories were made: nothing else appeared in the worktree.
    assert_eq!(names_in(&into.join("ckpt")), ["model.bin"]);
    assert_eq!(names_in(&into.join("logs")), ["run"]);
}

#[test]
fn a_hostile_lock_path_creates_nothing_outside_the_worktree() {
    // A committed link `evil` leads to a directory outside the repository.
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("MARKER");
    let r = ckpt_project_with(Some(outside.path()), false);
    // The lock is edited to name a checkpoint below the link; the command would touch the
    // marker if it ran.
    let mut lock = r.lock_toml("cairn.lock");
    let ckpts = lock["checkpoint"].as_array_mut().unwrap();
    let mut evil = ckpts[0].clone();
    evil["path"] = toml::Value::String("evil/planted/deep/model.bin".into());
    ckpts.push(evil);
    lock["run"]["command"] = toml::Value::Array(vec![
        "sh".into(),
        "-c".into(),
        format!("touch {}", marker.display()).into(),
    ]);
    r.write("cairn.lock", toml::to_string(&lock).unwrap());
    let before = snapshot(&[outside.path()]);
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let report = rebuild_and_run(&r, &into, 1);
    let run = run_step(&report);
    assert_eq!(run["status"], "failed", "{report}");
    assert!(
        run["differences"].to_string().contains("evil/planted/deep"),
        "{report}"
    );
    assert!(!marker.exists(), "the command did not run");
    assert_eq!(snapshot(&[outside.path()]), before, "nothing made outside");
    assert!(!outside.path().join("planted").exists());

    // A lock path that is absolute or climbs out is refused before anything is made.
    let mut lock = r.lock_toml("cairn.lock");
    lock["checkpoint"].as_array_mut().unwrap()[0]["path"] =
        toml::Value::String("../../escaped/model.bin".into());
    r.write("cairn.lock", toml::to_string(&lock).unwrap());
    let into2 = target.path().join("second");
    r.cairn(["rebuild", "--into", into2.to_str().unwrap(), "--run"])
        .expect(2)
        .stderr_has("escapes the project");
    assert!(!into2.exists());
    assert!(!target.path().join("escaped").exists());
    assert_eq!(snapshot(&[outside.path()]), before);
}

// ---------------------------------------------------------------------------------------------
// 2. Parents from another run.

const FINETUNE: &str = r#"import os
os.makedirs("ckpt", exist_ok=True)
open("ckpt/ft.bin", "wb").write(b"fine-tuned weights " * 50)
"#;

/// A quantization that adds its checkpoint with the fine-tune's file as the parent.
const QUANTIZE: &str = r#"import subprocess
open("ckpt/q.bin", "wb").write(open("ckpt/ft.bin", "rb").read()[::2])
subprocess.run(["cairn", "checkpoint", "add", "ckpt/q.bin", "--parent", "ckpt/ft.bin"], check=True)
"#;

fn two_runs() -> Repo {
    let r = Repo::new();
    r.write("finetune.py", FINETUNE);
    r.write("quantize.py", QUANTIZE);
    r.write(".gitignore", "ckpt/\n");
    r.commit_all("code");
    cairn(
        &r,
        &[],
        &[
            "lock",
            "--no-python",
            "--lock",
            "finetune.cairn.lock",
            "--checkpoint",
            "ckpt/ft.bin",
            "--",
            "python3",
            "finetune.py",
        ],
    )
    .expect(0);
    r.commit_all("fine-tune locked");
    cairn(
        &r,
        &[],
        &[
            "lock",
            "--no-python",
            "--lock",
            "quantize.cairn.lock",
            "--",
            "python3",
            "quantize.py",
        ],
    )
    .expect(0);
    r.commit_all("quantize locked");
    r
}

#[test]
fn a_parent_from_another_run_is_followed_by_digest() {
    let r = two_runs();
    let ft = r.lock_toml("finetune.cairn.lock");
    let q = r.lock_toml("quantize.cairn.lock");
    let entry = &q["checkpoint"][0];
    assert_eq!(entry["path"].as_str(), Some("ckpt/q.bin"));
    assert_eq!(entry["parent"], ft["checkpoint"][0]["digest"], "{q:?}");
    assert_eq!(entry["parent-run"], ft["run"]["id"], "{q:?}");

    let out = cairn(&r, &[], &["lineage", "ckpt/q.bin"]).expect(0);
    out.stdout_has("parent: checkpoint ckpt/ft.bin")
        .stdout_has("[finetune.cairn.lock]")
        .stdout_lacks("MISSING");
    let audit = cairn(&r, &[], &["audit", "--format", "json"]).expect(0);
    assert_eq!(audit.json()["ok"], true, "{}", audit.stdout);

    // The fine-tune's lock gone: the link names the run it came from, and audit fails.
    let text = r.read("finetune.cairn.lock");
    std::fs::remove_file(r.join("finetune.cairn.lock")).unwrap();
    cairn(&r, &[], &["lineage", "ckpt/q.bin"])
        .expect(0)
        .stdout_has(&format!(
            "MISSING {} of run {}",
            ft["checkpoint"][0]["digest"].as_str().unwrap(),
            ft["run"]["id"].as_str().unwrap()
        ));
    let audit = cairn(&r, &[], &["audit", "--format", "json"]).expect(1);
    assert!(audit.stdout.contains("dangling-parent"), "{}", audit.stdout);
    r.write("finetune.cairn.lock", text);
}

#[test]
fn an_untracked_parent_is_kept_by_digest_and_a_missing_one_refused() {
    let r = Repo::ml();
    r.cairn(["lock", "--no-python"]).expect(0);
    r.write("runs/base.bin", "weights nobody locked");
    r.write("runs/q.bin", "quantized");
    let before = r.read("cairn.lock");
    // A parent that does not exist: an error with a hint, and the lock untouched.
    r.cairn([
        "checkpoint",
        "add",
        "--amend",
        "runs/q.bin",
        "--parent",
        "runs/nope.bin",
    ])
    .expect(2)
    .stderr_has("the parent runs/nope.bin does not exist")
    .stderr_has("hint: ");
    assert_eq!(r.read("cairn.lock"), before, "nothing written");

    // From a subdirectory the parent is relative to it, like the checkpoint.
    let out = r
        .cairn_in(
            "runs",
            [
                "checkpoint",
                "add",
                "--amend",
                "q.bin",
                "--parent",
                "base.bin",
            ],
        )
        .expect(0);
    let digest = r
        .cairn(["hash", "runs/base.bin"])
        .expect(0)
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    out.stderr_has(&format!("parent {}, in no lock", &digest[..19]));
    let lock = r.lock_toml("cairn.lock");
    let q = &lock["checkpoint"][0];
    assert_eq!(q["parent"].as_str(), Some(digest.as_str()));
    assert!(q.get("parent-run").is_none(), "{lock:?}");

    r.cairn(["lineage", "runs/q.bin"])
        .expect(0)
        .stdout_has(&format!("parent: untracked file, digest {digest}"));
    let json = r
        .cairn(["lineage", "runs/q.bin", "--format", "json"])
        .expect(0)
        .json();
    crate::schemas::assert_valid(
        "lineage.schema.json",
        &json,
        "lineage with an untracked parent",
    );
    assert!(
        json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node"]["type"] == "untracked" && n["node"]["digest"] == digest.as_str()),
        "{json}"
    );
    // A warning by default (the lineage stops at a file nobody locked), an error when the
    // project says so.
    let audit = r.cairn(["audit", "--format", "json"]).expect(0).json();
    let findings = audit["findings"].to_string();
    assert!(findings.contains("untracked-parent"), "{findings}");
    r.write("cairn.toml", "[audit]\nuntracked-parent = \"error\"\n");
    r.cairn(["audit"]).expect(1).stdout_has("untracked-parent");
}

#[test]
fn a_parent_of_the_same_run_stays_a_path() {
    let r = Repo::ml();
    r.cairn(["lock", "--no-python"]).expect(0);
    r.write("runs/a.bin", "a");
    r.write("runs/b.bin", "b");
    r.cairn(["checkpoint", "add", "--amend", "runs/a.bin"])
        .expect(0);
    r.cairn([
        "checkpoint",
        "add",
        "--amend",
        "runs/b.bin",
        "--parent",
        "runs/a.bin",
    ])
    .expect(0);
    let lock = r.lock_toml("cairn.lock");
    let b = lock["checkpoint"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"].as_str() == Some("runs/b.bin"))
        .unwrap();
    assert_eq!(b["parent"].as_str(), Some("runs/a.bin"));
    assert!(b.get("parent-run").is_none());
    // Even once the file is gone, a checkpoint of this lock is found by its path.
    std::fs::remove_file(r.join("runs/a.bin")).unwrap();
    r.write("runs/c.bin", "c");
    r.cairn([
        "checkpoint",
        "add",
        "--amend",
        "runs/c.bin",
        "--parent",
        "runs/a.bin",
    ])
    .expect(0);
    r.cairn(["audit", "--format", "json"]).expect(0);
}

// ---------------------------------------------------------------------------------------------
// 3. Same machine, data on another disk.

/// A repository whose `data/big` is a link to a directory on "another disk".
fn data_on_another_disk() -> (Repo, tempfile::TempDir) {
    let r = Repo::ml();
    let disk = tempfile::tempdir().unwrap();
    std::fs::write(disk.path().join("shard-0.bin"), "shard").unwrap();
    std::os::unix::fs::symlink(disk.path(), r.join("data/big")).unwrap();
    r.write(".gitignore", "runs/\ndata/big\n");
    r.commit_all("ignore the big data link");
    r.cairn(["lock", "--no-python", "--data", "data/big"])
        .expect(0);
    let lock = r.lock_toml("cairn.lock");
    assert_eq!(lock["data"][0]["external"].as_bool(), Some(true));
    assert!(
        !r.read("cairn.lock")
            .contains(&disk.path().display().to_string()),
        "the location is not in the lock"
    );
    (r, disk)
}

#[test]
fn the_same_user_verifies_external_data_with_no_flags() {
    let (r, disk) = data_on_another_disk();
    // It says where it read it.
    let real = disk.path().canonicalize().unwrap();
    r.cairn(["verify"]).expect(0).stdout_has(&format!(
        "note: external dataset big was read at {}, where your `cairn lock` found it",
        real.display()
    ));
    // It is really read there: a change is seen.
    std::fs::write(disk.path().join("shard-0.bin"), "changed").unwrap();
    r.cairn(["verify"])
        .expect(1)
        .stdout_has("data big: 1 of 1 file changed");
    std::fs::write(disk.path().join("shard-0.bin"), "shard").unwrap();
    // The record is in the user's data directory, not in the repository.
    let store = r.home().join(".local/share/cairn/data");
    let records = names_in(&store);
    assert_eq!(records.len(), 1, "{records:?}");
    let text = std::fs::read_to_string(store.join(&records[0])).unwrap();
    assert!(text.contains(&disk.path().canonicalize().unwrap().display().to_string()));
    // Another user (another data directory) has no record: not checked.
    let other = tempfile::tempdir().unwrap();
    r.cairn_env(
        &[("XDG_DATA_HOME", other.path().to_str().unwrap())],
        ["verify"],
    )
    .expect(1)
    .stdout_has("data big: not checked");
}

#[test]
fn a_clone_elsewhere_still_reports_external_data_not_checked() {
    let (r, disk) = data_on_another_disk();
    r.commit_all("lock");
    let parent = tempfile::tempdir().unwrap();
    // The same user (the same HOME), another path: the clone's record is not the original's.
    let clone = clone_repo(&r, parent.path(), r.home(), "clone");
    let out = Run::of(r.cmd().current_dir(&clone).arg("verify")).expect(1);
    out.stdout_has("data big: not checked");
    // Its own link to the data (if it made one) is not followed either.
    std::os::unix::fs::symlink(disk.path(), clone.join("data/big")).unwrap();
    Run::of(r.cmd().current_dir(&clone).arg("verify"))
        .expect(1)
        .stdout_has("data big: not checked");
}

#[test]
fn a_location_record_cannot_be_planted_from_the_repository() {
    let (r, disk) = data_on_another_disk();
    let store = r.home().join(".local/share/cairn/data");
    let record = store.join(&names_in(&store)[0]);
    let text = std::fs::read_to_string(&record).unwrap();

    // A record others may write is not used.
    set_mode(&record, 0o666);
    r.cairn(["verify"])
        .expect(1)
        .stdout_has("data big: not checked");
    set_mode(&record, 0o600);
    r.cairn(["verify"]).expect(0);

    // A data directory inside the repository (a checkout that ships `cairn/data/...` and an
    // environment pointing there): never read, never written.
    let planted = r.join("cairn/data").join(&names_in(&store)[0]);
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::write(&planted, &text).unwrap();
    set_mode(&planted, 0o600);
    let xdg = r.path().to_str().unwrap().to_string();
    r.cairn_env(&[("XDG_DATA_HOME", &xdg)], ["verify"])
        .expect(1)
        .stdout_has("data big: not checked");
    let before = std::fs::read(&planted).unwrap();
    r.cairn_env(
        &[("XDG_DATA_HOME", &xdg)],
        ["lock", "--no-python", "--data", "data/big"],
    )
    .expect(0);
    assert_eq!(std::fs::read(&planted).unwrap(), before, "not written");

    // A record naming another project root is not used, even under this project's name.
    let other_root = text.replace(
        &r.path().canonicalize().unwrap().display().to_string(),
        "/somewhere/else",
    );
    std::fs::write(&record, other_root).unwrap();
    set_mode(&record, 0o600);
    r.cairn(["verify"])
        .expect(1)
        .stdout_has("data big: not checked");
    // A link in place of the record is not followed.
    std::fs::remove_file(&record).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let real = elsewhere.path().join("r.toml");
    std::fs::write(&real, &text).unwrap();
    set_mode(&real, 0o600);
    std::os::unix::fs::symlink(&real, &record).unwrap();
    r.cairn(["verify"])
        .expect(1)
        .stdout_has("data big: not checked");
    drop(disk);
}

// ---------------------------------------------------------------------------------------------
// 8. Checkpoints the run deleted itself.

/// Keeps the last two checkpoints, adding each as it is written.
const KEEP_LAST_TWO: &str = r#"import os, subprocess
os.makedirs("runs", exist_ok=True)
for step in (1, 2, 3):
    p = f"runs/ckpt-{step}.bin"
    open(p, "wb").write(bytes([step]) * 100)
    subprocess.run(["cairn", "checkpoint", "add", p, "--step", str(step)], check=True)
    if step > 2:
        os.remove(f"runs/ckpt-{step - 2}.bin")
"#;

#[test]
fn checkpoints_the_run_deleted_are_not_missing() {
    let r = Repo::ml();
    r.write("keep.py", KEEP_LAST_TWO);
    r.commit_all("keep the last two");
    cairn(
        &r,
        &[],
        &["lock", "--no-python", "--", "python3", "keep.py"],
    )
    .expect(0);
    let lock = r.lock_toml("cairn.lock");
    let ckpts = lock["checkpoint"].as_array().unwrap();
    assert_eq!(ckpts.len(), 3);
    assert_eq!(ckpts[0]["path"].as_str(), Some("runs/ckpt-1.bin"));
    assert_eq!(ckpts[0]["deleted-by-run"].as_bool(), Some(true));
    let recorded = ckpts[0]["digest"].as_str().unwrap().to_string();
    assert!(ckpts[1].get("deleted-by-run").is_none());
    assert!(ckpts[2].get("deleted-by-run").is_none());

    // Verify passes, and says so, with the recorded digest; not even --strict fails on it.
    let out = r.cairn(["verify"]).expect(0);
    out.stdout_has("checkpoint runs/ckpt-1.bin: deleted by the run")
        .stdout_has(&recorded)
        .stdout_lacks("missing");
    r.cairn(["verify", "--strict"]).expect(0);
    let json = r.cairn(["verify", "--format", "json"]).expect(0).json();
    crate::schemas::assert_valid(
        "verify-report.schema.json",
        &json,
        "verify with a deleted checkpoint",
    );
    let f = &json["findings"][0];
    assert_eq!(f["change"], "deleted", "{json}");
    assert_eq!(f["severity"], "info", "{json}");
    assert_eq!(f["subject"], "runs/ckpt-1.bin", "{json}");
    r.cairn(["lineage", "runs/ckpt-3.bin"])
        .expect(0)
        .stdout_has("checkpoint runs/ckpt-1.bin (deleted by the run)");
    let audit = r.cairn(["audit", "--format", "json"]).expect(0).json();
    assert!(!audit["findings"].to_string().contains("ckpt-1"), "{audit}");
    // An export keeps its subject (blake3 from the lock) without warning that it is gone.
    let export = r.cairn(["export"]).expect(0);
    export.stderr_lacks("ckpt-1");
    assert!(
        export.stdout.contains("runs/ckpt-1.bin"),
        "{}",
        export.stdout
    );

    // A rebuild that runs it again does not expect it either.
    r.commit_all("the lock");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let report = cairn(
        &r,
        &[],
        &[
            "rebuild",
            "--into",
            into.to_str().unwrap(),
            "--run",
            "--format",
            "json",
        ],
    )
    .expect(0)
    .json();
    let run = run_step(&report);
    assert_eq!(run["status"], "reproduced", "{report}");
    assert!(
        run["actions"]
            .to_string()
            .contains("checkpoint runs/ckpt-1.bin was deleted by the run"),
        "{report}"
    );

    // One that existed when the run ended and is gone now is missing.
    std::fs::remove_file(r.join("runs/ckpt-3.bin")).unwrap();
    r.cairn(["verify"])
        .expect(1)
        .stdout_has("checkpoint runs/ckpt-3.bin: missing")
        .stdout_has("checkpoint runs/ckpt-1.bin: deleted by the run");
}
