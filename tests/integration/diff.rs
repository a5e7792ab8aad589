//! `cairn diff` end to end: two locks, or a lock and the current state. (The package and data
//! causes of a real retraining are checked with a real venv in rebuild.rs.)

use crate::util::{amend_checkpoint, diff_keys, names_in, Repo};

fn k(section: &str, subject: &str, path: &str) -> (String, String, String) {
    (section.into(), subject.into(), path.into())
}

/// `cairn diff ARGS... --format json` in `r`, which must exit with `code`, as JSON.
#[track_caller]
fn diff_json(r: &Repo, args: &[&str], code: i32) -> serde_json::Value {
    let mut all = vec!["diff"];
    all.extend(args);
    all.extend(["--format", "json"]);
    r.cairn(all).expect(code).json()
}

fn lock(r: &Repo, lock: &str, extra: &[&str]) {
    let mut args = vec![
        "lock",
        "--lock",
        lock,
        "--no-python",
        "--data",
        "data/train",
        "--checkpoint",
        "runs/final.safetensors",
    ];
    args.extend(extra);
    r.cairn(args).expect(0);
}

/// Two runs of the same thing differ in nothing but their ids and times.
#[test]
fn identical_runs_have_no_difference() {
    let r = Repo::ml();
    lock(&r, "a.cairn.lock", &["--", "python3", "train.py"]);
    lock(&r, "b.cairn.lock", &["--", "python3", "train.py"]);
    let out = r.cairn(["diff", "a.cairn.lock", "b.cairn.lock"]).expect(0);
    out.stdout_has("code: commit ")
        .stdout_has("same code")
        .stdout_has("no difference");
    let d = diff_json(&r, &["a.cairn.lock", "b.cairn.lock"], 0);
    assert_eq!(d["same"], true);
    assert_eq!(d["causes"], serde_json::json!([]));
    assert_eq!(d["effects"], serde_json::json!([]));
}

/// Code: the commits between the two runs and each file that differs, committed or not.
#[test]
fn code_commits_between_and_files_that_differ() {
    let r = Repo::ml();
    lock(&r, "a.cairn.lock", &["--", "python3", "train.py"]);
    r.write("model.py", "LAYERS = 4\n");
    r.commit_all("add the model");
    r.write("train.py", format!("{}# tweak\n", crate::util::TRAIN_PY));
    lock(&r, "b.cairn.lock", &["--", "python3", "train.py"]);
    let d = diff_json(&r, &["a.cairn.lock", "b.cairn.lock"], 1);
    assert_eq!(
        diff_keys(&d["causes"]),
        [k("code", "code", "model.py"), k("code", "code", "train.py")],
        "{d}"
    );
    assert_eq!(d["causes"][0]["change"], "added");
    assert_eq!(d["causes"][1]["change"], "changed");
    assert_eq!(d["code"]["same_tree"], false);
    let ahead = d["code"]["ahead"].as_array().unwrap();
    assert_eq!(ahead.len(), 1);
    assert_eq!(ahead[0]["subject"], "add the model");
    assert_eq!(ahead[0]["commit"], r.head().as_str());
    assert_eq!(d["code"]["behind"], serde_json::json!([]));
    // Same checkpoint: the code changed, the result did not.
    assert_eq!(d["effects"], serde_json::json!([]));
    let out = r.cairn(["diff", "a.cairn.lock", "b.cairn.lock"]).expect(1);
    out.stdout_has("  1 commit in B, not in A:\n")
        .stdout_has(" add the model\n")
        .stdout_has("  code: 1 file changed, 1 added, 0 removed\n    added        model.py\n    changed      train.py\n");
}

/// The command, the determinism variables and the seed, in that order, after the data.
#[test]
fn command_env_and_seed_in_order_of_likely_cause() {
    let r = Repo::ml();
    let run = |lockname: &str, seed: &str, hashseed: &str, extra: &[&str]| {
        let mut args = crate::util::lock_ml_no_python(&["--lock", lockname, "--seed", seed]);
        args.extend(extra);
        r.cairn_env(&[("PYTHONHASHSEED", hashseed)], args).expect(0);
    };
    run("a.cairn.lock", "1", "0", &[]);
    r.write("data/train/c.txt", "gamma\n");
    run("b.cairn.lock", "2", "1", &["--lr", "3e-4"]);
    let d = diff_json(&r, &["a.cairn.lock", "b.cairn.lock"], 1);
    assert_eq!(
        diff_keys(&d["causes"]),
        [
            k("data", "train", "c.txt"),
            k("command", "command", ""),
            k("env", "PYTHONHASHSEED", ""),
            k("seed", "seed", ""),
        ],
        "{d}"
    );
    assert_eq!(d["causes"][0]["change"], "added");
    assert_eq!(d["causes"][1]["b"], "python3 train.py --lr 3e-4");
    assert_eq!(d["causes"][2]["a"], "0");
    assert_eq!(d["causes"][2]["b"], "1");
    assert_eq!(d["causes"][3]["a"], "1");
    assert_eq!(d["causes"][3]["b"], "2");
}

/// One lock: B is the project now, probed without writing anything.
#[test]
fn a_lock_against_the_current_state() {
    let r = Repo::ml();
    lock(&r, "cairn.lock", &["--", "python3", "train.py"]);
    r.commit_all("lock");
    let before = names_in(&r.join(".cairn/manifests"));
    let out = r.cairn(["diff", "cairn.lock", "--no-python"]).expect(0);
    out.stdout_has("B: the current state")
        .stdout_has("no difference");

    r.write("data/train/a.txt", "alpha, relabelled\n");
    r.write("train.py", "print('rewritten')\n");
    std::fs::remove_file(r.join("runs/final.safetensors")).unwrap();
    let d = diff_json(&r, &["cairn.lock", "--no-python"], 1);
    assert_eq!(
        diff_keys(&d["causes"]),
        [k("code", "code", "train.py"), k("data", "train", "a.txt")],
        "{d}"
    );
    assert_eq!(
        diff_keys(&d["effects"]),
        [k("checkpoint", "runs/final.safetensors", "")]
    );
    assert_eq!(d["effects"][0]["change"], "missing");
    assert!(d["effects"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    assert_eq!(d["b"]["lock"], serde_json::Value::Null);
    assert!(d["notes"]
        .to_string()
        .contains("the current state has no command"));
    // Nothing was written: no new manifest, the lock untouched.
    assert_eq!(names_in(&r.join(".cairn/manifests")), before);
    assert_eq!(
        r.git(&["status", "--porcelain", "cairn.lock", ".cairn"]),
        ""
    );
}

#[test]
fn bad_input_is_exit_2() {
    let r = Repo::ml();
    lock(&r, "cairn.lock", &["--", "python3", "train.py"]);
    r.cairn(["diff", "cairn.lock", "nope.cairn.lock"])
        .expect(2)
        .stderr_has("nope.cairn.lock");
    r.write("broken.cairn.lock", "version = 1\n[code\n");
    r.cairn(["diff", "cairn.lock", "broken.cairn.lock"])
        .expect(2)
        .stderr_has("error: cannot parse")
        .stderr_has("hint:");
    r.cairn(["diff", "cairn.lock", "cairn.lock", "--no-python"])
        .expect(2)
        .stderr_has("apply only to a comparison with the current state");
}

/// The same run locked on a machine without a GPU and on an H100 (real nvidia-smi output,
/// replayed): diff names the GPU, driver and CUDA as host causes; a rebuild on the H100 of the
/// CPU machine's lock reproduces, and reports the host difference as information.
#[test]
fn host_and_gpu_differences() {
    let r = Repo::ml();
    let bin = tempfile::tempdir().unwrap();
    let smi = crate::util::replay_nvidia_smi(bin.path());
    let lock_on = |smi: &str, name: &str| {
        r.cairn_env(
            &[("CAIRN_NVIDIA_SMI", smi)],
            crate::util::lock_ml_no_python(&["--lock", name]),
        )
        .expect(0);
    };
    lock_on("/nonexistent/nvidia-smi", "cpu.cairn.lock");
    lock_on(smi.to_str().unwrap(), "h100.cairn.lock");
    let d = diff_json(&r, &["cpu.cairn.lock", "h100.cairn.lock"], 1);
    assert_eq!(
        diff_keys(&d["causes"]),
        [
            k("host", "gpu", ""),
            k("host", "gpu driver", ""),
            k("host", "gpu cuda", ""),
        ],
        "{d}"
    );
    assert_eq!(d["causes"][0]["a"], serde_json::Value::Null);
    assert_eq!(d["causes"][0]["b"], "NVIDIA H100 80GB HBM3");
    assert_eq!(d["causes"][1]["b"], "580.159.04");
    assert_eq!(d["causes"][2]["b"], "13.0");
    assert_eq!(d["effects"], serde_json::json!([]));

    r.commit_all("locks");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("on-h100");
    r.cairn_env(
        &[("CAIRN_NVIDIA_SMI", smi.to_str().unwrap())],
        [
            "rebuild",
            "--lock",
            "cpu.cairn.lock",
            "--into",
            into.to_str().unwrap(),
            "--run",
        ],
    )
    .expect(0)
    .stdout_has("host (differs from the locking machine; information):\n  gpu: none -> NVIDIA H100 80GB HBM3\n")
    .stdout_has("reproduced: every step matches the lock");
}

/// Checkpoint metrics recorded with `cairn checkpoint add` are compared name by name.
#[test]
fn checkpoint_metrics_are_compared() {
    let r = Repo::ml();
    r.cairn(["lock", "--no-python"]).expect(0);
    r.write("runs/a.bin", "weights");
    r.cairn(amend_checkpoint(
        "runs/a.bin",
        &["--metric", "loss=1.5", "--metric", "acc=0.5"],
    ))
    .expect(0);
    std::fs::copy(r.join("cairn.lock"), r.join("first.cairn.lock")).unwrap();
    r.cairn(amend_checkpoint("runs/a.bin", &["--metric", "loss=0.75"]))
        .expect(0);
    let report = diff_json(&r, &["first.cairn.lock", "cairn.lock"], 1);
    let metrics: Vec<(String, String)> = report["effects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["path"].as_str().is_some_and(|p| p.starts_with("metric ")))
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        metrics,
        [
            ("metric acc".to_string(), "removed".to_string()),
            ("metric loss".to_string(), "changed".to_string())
        ]
    );
}
