//! The main workflow: lock, then verify, then change one thing at a time.

use crate::util::{sh, Repo};

#[test]
fn lock_then_verify_passes() {
    let r = Repo::ml();
    let out = r.lock_ml().expect(0);
    out.stderr_has("locked");
    let lock = r.lock_toml("cairn.lock");
    assert_eq!(lock["version"].as_integer(), Some(1));
    let code = lock["code"].as_table().unwrap();
    assert_eq!(code["commit"].as_str().unwrap(), r.head());
    assert_eq!(code["branch"].as_str(), Some("main"));
    assert_eq!(code["dirty"].as_bool(), Some(false));
    let run = lock["run"].as_table().unwrap();
    assert_eq!(
        run["command"].as_array().unwrap().len(),
        2,
        "argv recorded: {run:?}"
    );
    assert_eq!(run["exit-code"].as_integer(), Some(0));
    for key in ["started-at", "finished-at"] {
        let t = run[key].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 20, "{key} = {t}");
    }
    let data = lock["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["name"].as_str(), Some("train"));
    assert_eq!(data[0]["path"].as_str(), Some("data/train"));
    assert_eq!(data[0]["files"].as_integer(), Some(2));
    assert_eq!(data[0]["bytes"].as_integer(), Some(11));
    let ckpt = lock["checkpoint"].as_array().unwrap();
    assert_eq!(ckpt[0]["path"].as_str(), Some("runs/final.safetensors"));
    assert_eq!(ckpt[0]["bytes"].as_integer(), Some(256 * 64));

    let out = r.cairn(["verify"]).expect(0);
    out.stdout_has("verify: ok, matches cairn.lock\n");
}

#[test]
fn changed_data_file_is_named() {
    let r = Repo::ml_locked();
    r.write("data/train/a.txt", "alpha\nx\n");
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has("data train: 1 of 2 files changed, 0 added, 0 removed\n  changed      a.txt\n");
    // Data declared in the lock is not also reported as a code change.
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("code")),
        "{}",
        out.stdout
    );
}

#[test]
fn added_and_removed_data_files_are_named() {
    let r = Repo::ml_locked();
    r.write("data/train/c.txt", "new\n");
    std::fs::remove_file(r.join("data/val/v.txt")).unwrap();
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has("data train: 0 of 2 files changed, 1 added, 0 removed\n  added        c.txt\n");
    out.stdout_has("data val: 0 of 1 file changed, 0 added, 1 removed\n  removed      v.txt\n");
    out.stdout_has(
        "verify: FAILED — 2 differences from cairn.lock: data train (1 file), data val (1 file)\n",
    );
}

#[test]
fn deleted_checkpoint_is_missing() {
    let r = Repo::ml_locked();
    std::fs::remove_file(r.join("runs/final.safetensors")).unwrap();
    let out = r.cairn(["verify"]).expect(1);
    assert!(
        out.stdout
            .contains("checkpoint runs/final.safetensors: missing ("),
        "{}",
        out.stdout
    );
}

#[test]
fn every_difference_is_reported_in_one_run() {
    let r = Repo::ml_locked();
    r.write("data/train/a.txt", "changed\n");
    r.write("data/val/extra.txt", "extra\n");
    r.write("runs/final.safetensors", "tampered");
    r.write("train.py", "print('different')\n");
    let out = r.cairn(["verify", "--format", "json"]).expect(1);
    let report = out.json();
    assert_eq!(report["ok"], false);
    let findings = report["findings"].as_array().unwrap();
    let got: Vec<(String, String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["area"].as_str().unwrap().to_string(),
                f["path"]
                    .as_str()
                    .unwrap_or(f["subject"].as_str().unwrap())
                    .to_string(),
                f["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("code", "train.py", "changed"),
        ("data", "a.txt", "changed"),
        ("data", "extra.txt", "added"),
        ("checkpoint", "runs/final.safetensors", "changed"),
    ];
    for (area, path, change) in want {
        assert!(
            got.iter()
                .any(|g| g.0 == area && g.1 == path && g.2 == change),
            "missing {area} {path} {change} in {got:?}"
        );
    }
    assert_eq!(got.len(), want.len(), "{got:?}");
    assert_eq!(report["checked"]["data"], 2);
    assert_eq!(report["checked"]["checkpoints"], 1);
}

#[test]
fn committing_the_lock_keeps_it_verified() {
    let r = Repo::ml_locked();
    let locked_commit = r.head();
    r.commit_all("lock training run");
    assert_ne!(r.head(), locked_commit);
    let out = r.cairn(["verify"]).expect(0);
    out.stdout_has("note: the code matches");
}

#[test]
fn a_new_commit_that_changes_code_fails() {
    let r = Repo::ml_locked();
    r.write("model.py", "class Model: pass\n");
    r.commit_all("add model");
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has("code: 0 files changed, 1 added, 0 removed\n  added        model.py\n");
}

#[test]
fn uncommitted_change_after_lock_fails() {
    let r = Repo::ml_locked();
    r.write("train.py", "# edited\n");
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has("code: 1 file changed, 0 added, 0 removed\n  changed      train.py\n");
    // An executable bit alone is a difference too.
    r.git(&["checkout", "--", "train.py"]);
    crate::util::set_mode(&r.join("train.py"), 0o755);
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has("  mode changed train.py\n");
}

#[test]
fn verify_from_a_subdirectory_finds_the_lock() {
    let r = Repo::ml_locked();
    r.cairn_in("data", ["verify"]).expect(0);
}

#[test]
fn lock_without_command_records_state_and_is_not_rewritten() {
    let r = Repo::ml();
    let args = ["lock", "--data", "data/train"];
    r.cairn(args).expect(0);
    let lock = r.lock_toml("cairn.lock");
    assert!(lock["run"].get("command").is_none());
    let before = std::fs::read(r.join("cairn.lock")).unwrap();
    // An mtime an hour back, and the inode: a rewrite (in place, or a new file renamed over
    // it) changes one of them whatever the timestamp granularity.
    crate::util::set_mtime(&r.join("cairn.lock"), -3600);
    let stat = || {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(r.join("cairn.lock")).unwrap();
        (m.ino(), m.modified().unwrap())
    };
    let untouched = stat();
    let out = r.cairn(args).expect(0);
    out.stderr_has("up to date");
    assert_eq!(std::fs::read(r.join("cairn.lock")).unwrap(), before);
    assert_eq!(stat(), untouched, "the lockfile was rewritten");
    // A real change is written.
    r.write("data/train/a.txt", "different\n");
    let out = r.cairn(args).expect(0);
    out.stderr_has("locked");
    assert_ne!(std::fs::read(r.join("cairn.lock")).unwrap(), before);
}

#[test]
fn same_state_gives_same_bytes_apart_from_times() {
    let a = Repo::ml();
    let b = Repo::ml();
    a.lock_ml().expect(0);
    b.lock_ml().expect(0);
    let strip = |r: &Repo| {
        r.read("cairn.lock")
            .lines()
            .filter(|l| !l.ends_with("Z\"") && !l.starts_with("id = "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&a), strip(&b));
}

#[test]
fn failed_command_keeps_the_good_lock() {
    let r = Repo::ml_locked();
    let good = r.read("cairn.lock");
    r.cairn_env(
        &[("TRAIN_EXIT", "3")],
        ["lock", "--data", "data/train", "--", "python3", "train.py"],
    )
    // The command's own status (spec/failure-modes.md).
    .expect(3)
    .stderr_has("exited with status 3")
    .stderr_has(".cairn/failed/");
    assert_eq!(r.read("cairn.lock"), good, "the good lock was replaced");
    let failed: Vec<_> = std::fs::read_dir(r.join(".cairn/failed"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(failed.len(), 1);
    let record: toml::Table = std::fs::read_to_string(&failed[0])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(record["run"]["exit-code"].as_integer(), Some(3));
}

#[test]
fn declared_checkpoint_not_produced_is_a_failed_run() {
    let r = Repo::ml();
    let out = r
        .cairn(["lock", "--checkpoint", "runs/never.pt", "--", "true"])
        .expect(1);
    out.stderr_has("runs/never.pt was not produced");
    assert!(!r.join("cairn.lock").exists());
}

#[test]
fn cairn_toml_declares_data_and_checkpoint_globs() {
    let r = Repo::ml();
    r.write(
        "cairn.toml",
        "checkpoints = [\"runs/*.safetensors\"]\noutputs = [\"runs/metrics.json\"]\n\n[data]\ntrain = \"data/train\"\nvalidation = \"data/val\"\n",
    );
    r.commit_all("config");
    r.cairn(["lock", "--", "python3", "train.py"]).expect(0);
    assert_eq!(r.data_names("cairn.lock"), ["train", "validation"]);
    let lock = r.lock_toml("cairn.lock");
    assert_eq!(
        lock["checkpoint"][0]["path"].as_str(),
        Some("runs/final.safetensors")
    );
    assert_eq!(
        lock["output"][0]["path"].as_str(),
        Some("runs/metrics.json")
    );
    r.cairn(["verify"]).expect(0);
}

#[test]
fn unmatched_glob_warns() {
    let r = Repo::ml();
    let out = r
        .cairn([
            "lock",
            "--checkpoint",
            "runs/*.pt",
            "--",
            "python3",
            "train.py",
        ])
        .expect(0);
    out.stderr_has("\"runs/*.pt\" matched no file");
}

#[test]
fn checkpoint_directory_is_digested_like_a_dataset() {
    let r = Repo::ml();
    r.write("runs/ckpt-100/model.bin", "weights");
    r.write("runs/ckpt-100/optimizer.bin", "adam");
    r.cairn(["lock", "--checkpoint", "runs/ckpt-100"]).expect(0);
    let lock = r.lock_toml("cairn.lock");
    assert_eq!(lock["checkpoint"][0]["kind"].as_str(), Some("dir"));
    assert_eq!(lock["checkpoint"][0]["files"].as_integer(), Some(2));
    r.write("runs/ckpt-100/optimizer.bin", "sgd");
    let out = r.cairn(["verify"]).expect(1);
    assert!(
        out.stdout
            .contains("checkpoint runs/ckpt-100: 1 of 2 files changed, 0 added, 0 removed\n  changed      optimizer.bin\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn external_dataset_is_checked_only_where_the_user_says() {
    let r = Repo::ml();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("x.bin"), "shared data").unwrap();
    let arg = format!("imagenet={}", shared.path().display());
    r.cairn(["lock", "--data", &arg]).expect(0);
    let text = r.read("cairn.lock");
    assert!(text.contains("external = true"), "{text}");
    assert!(
        !text.contains(&shared.path().display().to_string()),
        "the external location must not be in the lock"
    );
    // The user who locked it, here: found where the lock found it.
    r.cairn(["verify"]).expect(0);
    // Where this user's lock found the external data is remembered on this machine (spec/lockfile.md
    // §12); forget it, as for a lock made by somebody else, to see the unlocated case.
    std::fs::remove_dir_all(r.home().join(".local/share/cairn/data")).unwrap();
    // No location known: not checked, which is not a pass.
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has("data imagenet: not checked (");
    // Told on the command line.
    r.cairn(["verify", "--data", &arg]).expect(0);
    // Told in cairn.toml: a place outside the repository, so only once the user trusts the file.
    r.write(
        "cairn.toml",
        format!("[data]\nimagenet = \"{}\"\n", shared.path().display()),
    );
    r.cairn(["verify"])
        .expect(1)
        .stderr_has("is not trusted on this machine; ignored: data.imagenet = ");
    r.cairn(["trust"]).expect(0);
    r.cairn(["verify"]).expect(0);
    std::fs::write(shared.path().join("x.bin"), "changed").unwrap();
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has(
        "data imagenet: 1 of 1 file changed, 0 added, 0 removed\n  changed      x.bin\n",
    );
}

#[test]
fn lock_path_option_and_extra_lockfiles() {
    let r = Repo::ml();
    r.cairn(["lock", "--data", "data/val", "--lock", "val.cairn.lock"])
        .expect(0);
    assert!(r.join("val.cairn.lock").exists());
    assert!(!r.join("cairn.lock").exists());
    r.cairn(["verify", "--lock", "val.cairn.lock"]).expect(0);
}

#[test]
fn concurrent_locks_do_not_interleave() {
    let r = Repo::ml();
    // The first lock's command says it has started (cairn holds the project lock by then) by
    // writing into one FIFO, then waits on another until the test lets it finish: the test
    // blocks on the first FIFO, so no timing decides the outcome.
    sh(r.path(), "mkfifo .go .started");
    r.write(".gitignore", "runs/\n.go\n.started\n");
    r.commit_all("ignore the test's signals");
    let mut first = r
        .cmd()
        .args(["lock", "--", "sh", "-c", "echo up > .started && cat .go"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = r.join(".started");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(std::fs::read_to_string(started)));
    let said = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the first lock's command never started")
        .unwrap();
    assert_eq!(said, "up\n");
    let before = r.read(".cairn/cache/busy");
    let out = r.cairn(["lock"]).expect(2);
    out.stderr_has(&format!(
        "error: another cairn (process {}) is working in",
        first.id()
    ));
    out.stderr_has("hint: wait for it to finish");
    // A held lock is never offered for removal: that would let two runs interleave.
    out.stderr_has("removing");
    out.stderr_has("would not stop it");
    assert!(
        !out.stderr.contains("remove "),
        "the hint must not tell the user to remove a held lock:\n{}",
        out.stderr
    );
    assert!(
        !r.join("cairn.lock").exists(),
        "the refused lock wrote nothing"
    );
    assert_eq!(r.read(".cairn/cache/busy"), before);
    std::fs::write(r.join(".go"), "").unwrap();
    assert!(first.wait().unwrap().success());
    r.cairn(["verify"]).expect(0);
}

#[test]
fn help_teaches_every_subcommand() {
    let r = Repo::plain();
    let out = r.cairn(["--help"]).expect(0);
    out.stdout_has("Exit status");
    for sub in ["lock", "verify", "hash"] {
        let out = r.cairn([sub, "--help"]).expect(0);
        assert!(
            out.stdout.len() > 400,
            "{sub} --help is thin:\n{}",
            out.stdout
        );
    }
    let out = r.cairn(["lock", "--help"]).expect(0);
    out.stdout_has("cairn.toml");
    r.cairn(["verify", "--no-such-flag"]).expect(2);
}

#[test]
fn gpu_is_recorded_from_nvidia_smi() {
    let r = Repo::ml();
    let bin = tempfile::tempdir().unwrap();
    let smi = crate::util::replay_nvidia_smi(bin.path());
    r.cairn_env(&[("CAIRN_NVIDIA_SMI", smi.to_str().unwrap())], ["lock"])
        .expect(0);
    let lock = r.lock_toml("cairn.lock");
    let gpu = &lock["host"]["gpu"][0];
    assert_eq!(gpu["name"].as_str(), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(
        gpu["uuid"].as_str(),
        Some("GPU-924111ed-60fa-1e94-aad1-047709c4a0d6")
    );
    assert_eq!(gpu["memory"].as_integer(), Some(81559 * 1024 * 1024));
    assert_eq!(gpu["driver"].as_str(), Some("580.159.04"));
    assert_eq!(gpu["cuda"].as_str(), Some("13.0"));
    assert_eq!(gpu["compute-capability"].as_str(), Some("9.0"));
    assert_eq!(lock["host"]["gpu"].as_array().unwrap().len(), 1);
}

#[test]
fn no_gpu_is_not_an_error() {
    let r = Repo::ml();
    r.cairn_env(&[("CAIRN_NVIDIA_SMI", "/nonexistent/nvidia-smi")], ["lock"])
        .expect(0);
    let lock = r.lock_toml("cairn.lock");
    assert!(lock["host"].get("gpu").is_none());
    assert!(lock["host"]["arch"].as_str().is_some());
}

#[test]
fn interrupted_command_is_recorded_not_locked() {
    let r = Repo::ml();
    // The command interrupts cairn (its parent) the way Ctrl-C would, waits until cairn has
    // taken the signal (it left cairn's pending set), then exits as a Python program does on
    // KeyboardInterrupt.
    let out = r
        .cairn([
            "lock",
            "--",
            "sh",
            "-c",
            r#"kill -INT $PPID
while m=$(sed -n 's/^ShdPnd:[[:space:]]*//p' /proc/$PPID/status) && [ $(( 0x$m & 2 )) -ne 0 ]; do :; done
exit 130"#,
        ])
        // cairn ends by SIGINT, as the command did (no exit code: terminal::ctrl_c_* checks
        // the signal).
        .expect(-1);
    out.stderr_has("interrupted");
    out.stderr_has(".cairn/failed/");
    assert!(!r.join("cairn.lock").exists());
}
