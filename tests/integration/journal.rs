//! Checkpoints added inside a run go to per-writer journals beside the in-progress lock, with no
//! file lock; `cairn lock` merges them into the final lock when the command ends (spec/lockfile.md,
//! "Checkpoints during a run").

use crate::util::Repo;

/// The checkpoints of `cairn.lock` as (path, step, parent).
fn checkpoints(r: &Repo) -> Vec<(String, Option<i64>, Option<String>)> {
    let lock = r.lock_toml("cairn.lock");
    lock.get("checkpoint")
        .and_then(|c| c.as_array())
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c.get("step").and_then(|s| s.as_integer()),
                c.get("parent").and_then(|p| p.as_str()).map(String::from),
            )
        })
        .collect()
}

/// Nothing of the run is left behind: no in-progress lock, no journal, and no file lock was
/// ever taken (the `.cairn/cache/flock/` directory is created by the first lock taken).
fn assert_run_files_gone_and_no_flock(r: &Repo) {
    let running = r.join(".cairn/cache/running");
    let left: Vec<String> = std::fs::read_dir(&running)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", running.display());
    assert!(
        !r.join(".cairn/cache/flock").exists(),
        "a file lock was taken on the run path"
    );
}

#[test]
fn eight_writers_of_fifty_checkpoints_in_a_run_give_400_entries_without_a_file_lock() {
    let r = Repo::ml();
    for rank in 0..8 {
        for i in 0..50 {
            r.write(
                &format!("runs/rank{rank}/ckpt-{i:02}.bin"),
                format!("{rank}-{i}"),
            );
        }
    }
    let seen = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_cairn");
    // Eight writers at once, each its own `cairn checkpoint add` per checkpoint; before the run
    // ends, count the records in the journals (one per add, one journal per writer process).
    let script = format!(
        r#"for rank in 0 1 2 3 4 5 6 7; do
  ( for i in $(seq -w 0 49); do {bin} checkpoint add runs/rank$rank/ckpt-$i.bin --step $((10#$i)) >/dev/null || exit 1; done ) &
done
fail=0; for j in $(jobs -p); do wait $j || fail=1; done
cat "$CAIRN_RUN_LOCK.d"/*.jsonl | wc -l > {seen}/records
ls "$CAIRN_RUN_LOCK.d" | wc -l > {seen}/journals
exit $fail"#,
        seen = seen.path().display()
    );
    r.cairn(["lock", "--no-python", "--", "bash", "-c", &script])
        .expect(0);
    let read = |n: &str| -> u32 {
        std::fs::read_to_string(seen.path().join(n))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(read("records"), 400);
    assert_eq!(read("journals"), 400);
    let ckpts = checkpoints(&r);
    assert_eq!(ckpts.len(), 400);
    for rank in 0..8 {
        for i in 0..50 {
            let path = format!("runs/rank{rank}/ckpt-{i:02}.bin");
            let c = ckpts.iter().find(|c| c.0 == path).expect(&path);
            assert_eq!(c.1, Some(i));
        }
    }
    // Each rank's chain: the previous checkpoint of the run is read from all journals, so every
    // checkpoint after the very first has a parent.
    let with_parent = ckpts.iter().filter(|c| c.2.is_some()).count();
    assert!(with_parent >= 392, "{with_parent}");
    assert_run_files_gone_and_no_flock(&r);
    r.cairn(["verify"]).expect(0);
}

#[test]
fn a_killed_writer_loses_nothing_it_completed_and_a_torn_record_is_skipped_with_a_note() {
    let r = Repo::ml();
    for i in 0..20 {
        r.write(&format!("runs/ckpt-{i:02}.bin"), format!("weights {i}"));
    }
    let bin = env!("CARGO_BIN_EXE_cairn");
    // A writer that adds ten checkpoints and is then killed with SIGKILL before its next add;
    // then what a writer killed in the middle of its write() leaves: the first half of a record
    // as the last line of its journal.
    let script = format!(
        r#"( for i in $(seq -w 0 19); do
    {bin} checkpoint add runs/ckpt-$i.bin --step $((10#$i)) >/dev/null || exit 1
    [ $i = 09 ] && kill -KILL $BASHPID
  done ) &
wait $! && exit 1
line=$(head -n 1 "$(ls "$CAIRN_RUN_LOCK.d"/*.jsonl | head -n 1)")
printf %s "${{line%%t_ns*}}" > "$CAIRN_RUN_LOCK.d/deadhost-99-00000000.jsonl"
exit 0"#
    );
    let out = r
        .cairn(["lock", "--no-python", "--", "bash", "-c", &script])
        .expect(0);
    out.stderr_has("checkpoint journal: skipped the last line of ")
        .stderr_has("deadhost-99-00000000.jsonl: an incomplete checkpoint record");
    let ckpts = checkpoints(&r);
    let paths: Vec<&str> = ckpts.iter().map(|c| c.0.as_str()).collect();
    let want: Vec<String> = (0..10).map(|i| format!("runs/ckpt-{i:02}.bin")).collect();
    assert_eq!(
        paths, want,
        "the ten completed adds, nothing after the kill"
    );
    for (i, c) in ckpts.iter().enumerate() {
        let parent = (i > 0).then(|| format!("runs/ckpt-{:02}.bin", i - 1));
        assert_eq!(c.2, parent, "{}", c.0);
    }
    assert_run_files_gone_and_no_flock(&r);
    r.cairn(["verify"]).expect(0);
}

#[test]
fn outside_a_run_amend_still_rewrites_the_lock_under_a_file_lock() {
    let r = Repo::ml();
    r.cairn(["lock", "--no-python"]).expect(0);
    r.write("runs/a.bin", "a");
    r.cairn(["checkpoint", "add", "--amend", "runs/a.bin", "--step", "1"])
        .expect(0);
    assert_eq!(checkpoints(&r).len(), 1);
    assert!(r.join(".cairn/cache/flock").is_dir());
    assert!(!r.join("cairn.lock.d").exists());
}

/// `cairn checkpoint list` while a run is going shows what every writer added so far (from the
/// journals), from another terminal and from inside the run; afterwards, the finished lock.
#[test]
fn checkpoint_list_reads_a_running_runs_journals() {
    let r = Repo::ml();
    for i in 1..=3 {
        r.write(&format!("runs/ckpt-{i}.bin"), format!("weights {i}"));
    }
    let sync = tempfile::tempdir().unwrap();
    let (ready, go) = (sync.path().join("ready"), sync.path().join("go"));
    for f in [&ready, &go] {
        crate::util::run_ok(std::process::Command::new("mkfifo").arg(f));
    }
    let bin = env!("CARGO_BIN_EXE_cairn");
    // Two writer processes, then the run's own view, then it says it is ready and waits.
    let script = format!(
        r#"{bin} checkpoint add runs/ckpt-1.bin --step 1 --metric loss=2.5 >/dev/null || exit 1
( {bin} checkpoint add runs/ckpt-2.bin --step 2 >/dev/null ) || exit 1
( {bin} checkpoint add runs/ckpt-3.bin --step 3 >/dev/null ) || exit 1
{bin} checkpoint list > {dir}/inside.txt || exit 1
echo ready > {ready}
read line < {go}
exit 0"#,
        dir = sync.path().display(),
        ready = ready.display(),
        go = go.display()
    );
    let mut run = r
        .cmd()
        .args(["lock", "--no-python", "--", "bash", "-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Blocks until the script has opened the FIFO: the adds are done, the run is not.
    let said = std::fs::read_to_string(&ready).unwrap();
    assert_eq!(said.trim(), "ready");

    let json = r
        .cairn(["checkpoint", "list", "--format", "json"])
        .expect(0)
        .json();
    let runs = json.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{json}");
    assert_eq!(runs[0]["running"], true);
    let ckpts = runs[0]["checkpoints"].as_array().unwrap();
    let got: Vec<(&str, i64, Option<&str>)> = ckpts
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap(),
                c["step"].as_i64().unwrap(),
                c["parent"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("runs/ckpt-1.bin", 1, None),
            ("runs/ckpt-2.bin", 2, Some("runs/ckpt-1.bin")),
            ("runs/ckpt-3.bin", 3, Some("runs/ckpt-2.bin")),
        ]
    );
    assert_eq!(ckpts[0]["metrics"]["loss"], 2.5);
    crate::schemas::assert_valid("checkpoint-list.schema.json", &json, "checkpoint list");
    let mut broken = json.clone();
    broken[0]["checkpoints"][0]["digest"] = "sha256:00".into();
    assert!(!crate::schemas::validator("checkpoint-list.schema.json").is_valid(&broken));
    let human = r.cairn(["checkpoint", "list"]).expect(0);
    human
        .stdout_has("(running, ")
        .stdout_has("3 checkpoints")
        .stdout_has("step 3")
        .stdout_has("from runs/ckpt-2.bin");
    let inside = std::fs::read_to_string(sync.path().join("inside.txt")).unwrap();
    assert!(
        inside.contains("3 checkpoints") && inside.contains("(running, "),
        "{inside}"
    );

    std::fs::write(&go, "go\n").unwrap();
    assert!(run.wait().unwrap().success());
    r.cairn(["checkpoint", "list"])
        .expect(0)
        .stdout_has("(finished, cairn.lock): 3 checkpoints");
    assert_run_files_gone_and_no_flock(&r);
}

/// A stranger's repository whose `.cairn/cache/running` (or a run's journal directory) is a
/// link to elsewhere: `checkpoint list` reads nothing through it.
#[test]
fn checkpoint_list_follows_no_link_out_of_the_project() {
    let r = Repo::ml_locked();
    // Elsewhere on the disk: an in-progress lock of another run, with a journal.
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = outside.path().join("running");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mine = r.lock_toml("cairn.lock")["run"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = "0123456789abcdef0123456789abcdef";
    let lock = r.read("cairn.lock").replacen(&mine, other, 1);
    std::fs::write(elsewhere.join("0utside.lock"), &lock).unwrap();
    // The locked run left an empty running directory; the stranger's is a link.
    let _ = std::fs::remove_dir_all(r.join(".cairn/cache/running"));
    std::fs::create_dir_all(r.join(".cairn/cache")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, r.join(".cairn/cache/running")).unwrap();
    let out = r.cairn(["checkpoint", "list"]).expect(0);
    out.stdout_lacks("0utside")
        .stdout_has("(finished, cairn.lock)");

    // A real running directory whose lock's journal directory is a link: its records are not
    // read, and the lock's own checkpoints are listed.
    std::fs::remove_file(r.join(".cairn/cache/running")).unwrap();
    std::fs::create_dir_all(r.join(".cairn/cache/running")).unwrap();
    std::fs::write(r.join(".cairn/cache/running/0utside.lock"), &lock).unwrap();
    let journals = outside.path().join("journals");
    std::fs::create_dir_all(&journals).unwrap();
    std::fs::write(journals.join("h-1-00000000.jsonl"), "not a record\n").unwrap();
    std::os::unix::fs::symlink(&journals, r.join(".cairn/cache/running/0utside.lock.d")).unwrap();
    let out = r.cairn(["checkpoint", "list"]).expect(0);
    out.stdout_has(&format!("run {other} (running, "))
        .stderr_lacks("h-1-00000000");
}
