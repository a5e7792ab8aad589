//! Sharded hashing on a real Slurm cluster (#16): examples/slurm/submit.sh submits the
//! hash-shards job array and the merge-and-lock job to the one-node cluster that `.ci/slurm`
//! starts, and the merged digest must be the one-machine digest and the b3sum pipeline's; a
//! shard killed while it runs must be named by the merge job, and nothing locked.
//!
//! These tests need a running Slurm and are ignored otherwise: .ci/run starts one and runs them
//! with `--ignored slurm::` (by hand: `eval "$(.ci/slurm start)"`, then
//! `cargo test --test integration -- --ignored slurm::`). They wait for jobs through Slurm
//! itself (`srun --dependency=afterany:ID`), with a deadline, never by sleeping.

use crate::util::{command, run_ok, snapshot, Repo};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a test waits for a job, or a shard's process, before failing: generous, for a
/// loaded machine; a healthy run takes seconds.
const DEADLINE: Duration = Duration::from_secs(600);

/// Fail, saying how to start one, unless a Slurm controller answers with the `SLURM_CONF` of
/// this environment.
fn require_slurm() {
    let conf = std::env::var_os("SLURM_CONF").unwrap_or_else(|| {
        panic!("SLURM_CONF is not set: start a cluster with `eval \"$(.ci/slurm start)\"`")
    });
    let ping = command("scontrol").arg("ping").output();
    assert!(
        ping.as_ref().is_ok_and(|o| o.status.success()),
        "no Slurm controller answers for SLURM_CONF={} ({ping:?}): start one with .ci/slurm start",
        conf.to_string_lossy()
    );
}

/// A small deterministic generator (an LCG), so the tree is the same in every run without
/// a random-number dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Write a tree of a few hundred files below `root`: mostly small files of varied sizes, some
/// empty, a few of several MiB, in nested directories, one name with a space and a hidden
/// file. Returns how many files it wrote.
fn build_tree(root: &Path) -> usize {
    let dirs = ["", "a", "a/b", "a/b/c", "with space", "z"];
    let mut rng = Lcg(16);
    let mut count = 0;
    for i in 0..320usize {
        let size = if i % 40 == 0 {
            0
        } else if i % 101 == 7 {
            (3 << 20) + rng.next() as usize % 4096
        } else {
            rng.next() as usize % 24_000
        };
        let name = match i {
            3 => "a name with spaces.txt".to_string(),
            4 => ".hidden".to_string(),
            _ => format!("f{i:03}.bin"),
        };
        let dir = root.join(dirs[i % dirs.len()]);
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = Vec::with_capacity(size);
        while bytes.len() < size {
            bytes.extend_from_slice(&rng.next().to_le_bytes()[..4]);
        }
        bytes.truncate(size);
        std::fs::write(dir.join(name), bytes).unwrap();
        count += 1;
    }
    count
}

/// The directory digest by the b3sum pipeline that cairn's directory digest is defined by.
fn b3sum_pipeline(dir: &Path) -> String {
    let out = run_ok(command("sh").current_dir(dir).arg("-c").arg(
        "find -L . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 -r b3sum \
         | b3sum --no-names",
    ));
    format!("blake3:{}", out.trim())
}

/// A project for the lock: a git repository whose `data/` is ignored, as datasets are.
fn project() -> Repo {
    let repo = Repo::new();
    repo.write("README.md", "a project\n");
    repo.write(".gitignore", "data/\n");
    repo.commit_all("initial");
    repo
}

/// Run `examples/slurm/submit.sh DATA 3 PARTS PROJECT corpus --no-python` with `repo` as the
/// project, `path_first` ahead of PATH (where the jobs find `cairn`: sbatch passes the
/// environment on) and `env` on top; returns the ids of the array job and of the merge job.
fn submit(
    repo: &Repo,
    data: &Path,
    parts: &Path,
    path_first: &[&Path],
    env: &[(&str, &Path)],
) -> (String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slurm/submit.sh");
    let path = std::env::join_paths(
        path_first
            .iter()
            .map(|p| p.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let mut cmd = repo.cmd_raw("bash");
    cmd.arg(script)
        .arg(data)
        .arg("3")
        .arg(parts)
        .arg(repo.path())
        .arg("corpus")
        .arg("--no-python")
        .env("PATH", path)
        .envs(env.iter().copied());
    let out = run_ok(&mut cmd);
    let ids: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(ids.len(), 2, "submit.sh prints the two job ids: {out:?}");
    (ids[0].to_string(), ids[1].to_string())
}

/// The `JobState` of each line of `scontrol show job -o ID` (one line per task of an array),
/// by array task id (0 for a job that is not an array). Empty when Slurm no longer knows it.
fn job_states(id: &str) -> Vec<(u32, String)> {
    let out = command("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .expect("scontrol runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|line| {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .map(str::to_string)
            };
            let state = field("JobState=")?;
            let task = field("ArrayTaskId=")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            Some((task, state))
        })
        .collect()
}

/// Is `state` one a job does not leave?
fn finished(state: &str) -> bool {
    !matches!(
        state,
        "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "SUSPENDED" | "REQUEUED"
    )
}

/// Wait, up to [`DEADLINE`], until every task of job `id` has finished; returns their states
/// by task id. Slurm itself does the waiting: `srun --dependency=afterany:ID true` is granted
/// only once job `id` (every task of an array) has ended, so nothing here sleeps a guessed time.
fn wait_job(id: &str) -> Vec<(u32, String)> {
    let waited = command("timeout")
        .arg(DEADLINE.as_secs().to_string())
        .args(["srun", "--quiet", "--ntasks=1"])
        .arg(format!("--dependency=afterany:{id}"))
        .arg("true")
        .status()
        .expect("srun runs");
    assert!(
        waited.success(),
        "waiting for job {id} failed or passed {DEADLINE:?}: {waited}, {:?}",
        job_states(id)
    );
    // A job that has ended may still be COMPLETING for a moment; ask until it is not.
    let start = Instant::now();
    loop {
        let mut states = job_states(id);
        assert!(!states.is_empty(), "Slurm does not know job {id}");
        if states.iter().all(|(_, s)| finished(s)) {
            states.sort();
            return states;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "job {id} still not done after {DEADLINE:?}: {states:?}"
        );
    }
}

/// The output of the merge job `id` (its log in `parts`).
fn merge_log(parts: &Path, id: &str) -> String {
    let log = parts.join(format!("slurm-merge-{id}.out"));
    std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()))
}

/// The part of shard `k` of 3 in `parts`.
fn part(parts: &Path, k: u32) -> PathBuf {
    parts.join(format!("corpus.{k}-of-3.part"))
}

#[test]
#[ignore = "needs a running Slurm: .ci/run starts one (CAIRN_TEST_SLURM)"]
fn array_hash_merge_and_lock_match_one_machine_and_b3sum() {
    require_slurm();
    let repo = project();
    let data = repo.join("data/corpus");
    let files = build_tree(&data);
    let parts = tempfile::tempdir().unwrap();
    let parts = parts.path().join("parts");
    let bin = Path::new(env!("CARGO_BIN_EXE_cairn")).parent().unwrap();

    let (array, merge) = submit(&repo, &data, &parts, &[bin], &[]);
    let merged = wait_job(&merge);
    let log = merge_log(&parts, &merge);
    assert_eq!(
        merged,
        [(0, "COMPLETED".to_string())],
        "merge job log:\n{log}"
    );
    assert_eq!(
        wait_job(&array),
        (1..=3)
            .map(|k| (k, "COMPLETED".to_string()))
            .collect::<Vec<_>>()
    );
    for k in 1..=3 {
        let text = std::fs::read_to_string(part(&parts, k)).unwrap();
        assert!(text.starts_with("cairn-shard-part 1"), "part {k}:\n{text}");
    }

    // The digest the merge job printed, the one-machine digest and the b3sum pipeline's.
    let merged: Vec<&str> = log.lines().filter(|l| l.starts_with("blake3:")).collect();
    assert_eq!(merged.len(), 1, "one digest line in the merge log:\n{log}");
    let (digest, dir) = merged[0].split_once("  ").unwrap();
    assert_eq!(Path::new(dir), data.canonicalize().unwrap());
    let one = repo.cairn(["hash".as_ref(), data.as_os_str()]).expect(0);
    assert_eq!(one.stdout.split_once("  ").unwrap().0, digest);
    assert_eq!(b3sum_pipeline(&data), digest);

    // The lock the merge job wrote records that digest.
    let lock = repo.lock_toml("cairn.lock");
    let entry = &lock["data"].as_array().expect("the lock has [[data]]")[0];
    assert_eq!(entry["name"].as_str(), Some("corpus"));
    assert_eq!(entry["digest"].as_str(), Some(digest));
    assert_eq!(entry["files"].as_integer(), Some(files as i64));
    repo.cairn(["verify"]).expect(0);
}

/// A stand-in for `cairn` on the jobs' PATH: shard 2/3 runs the real cairn, stops it once it
/// runs (after its exec), writes its pid to $SHARD_PID and waits for it; every other call is the
/// real cairn. A cairn that ended before it could be stopped (it never has: it walks and
/// hashes megabytes first) writes `lost` instead, and the test fails saying so.
const STOPPING_SHIM: &str = r#"#!/usr/bin/env bash
set -u
real="$REAL_CAIRN"
case " $* " in
*" --shard 2/3 "*)
    "$real" "$@" &
    pid=$!
    # Until the child is cairn (after its exec), then stop it.
    until [ /proc/$pid/exe -ef "$real" ]; do
        kill -0 "$pid" 2>/dev/null || break
    done
    kill -STOP "$pid" 2>/dev/null
    state=""
    while kill -0 "$pid" 2>/dev/null; do
        read -r _ _ state _ < "/proc/$pid/stat" || break
        [ "$state" = T ] && break
    done
    # SHARD_PID is a FIFO the test reads: the write waits for the test, and the test for it.
    if [ "$state" = T ] && [ /proc/$pid/exe -ef "$real" ]; then
        echo "$pid" > "$SHARD_PID"
    else
        echo lost > "$SHARD_PID"
    fi
    wait "$pid"
    ;;
*) exec "$real" "$@" ;;
esac
"#;

#[test]
#[ignore = "needs a running Slurm: .ci/run starts one (CAIRN_TEST_SLURM)"]
fn shard_killed_while_running_is_named_and_nothing_is_locked() {
    require_slurm();
    let repo = project();
    let data = repo.join("data/corpus");
    build_tree(&data);
    // An earlier lock, which the failed merge must leave as it is.
    repo.cairn(["lock", "--no-python"]).expect(0);
    let before = snapshot(&[repo.path()]);

    let tmp = tempfile::tempdir().unwrap();
    let parts = tmp.path().join("parts");
    let shim = tmp.path().join("shim");
    crate::util::write_executable(&shim.join("cairn"), STOPPING_SHIM);
    let pid_file = tmp.path().join("shard-2.pid");
    run_ok(command("mkfifo").arg(&pid_file));
    let real = PathBuf::from(env!("CARGO_BIN_EXE_cairn"));
    let (array, merge) = submit(
        &repo,
        &data,
        &parts,
        &[&shim],
        &[("REAL_CAIRN", &real), ("SHARD_PID", &pid_file)],
    );

    // Wait for shard 2's cairn to be stopped mid-way (the shim writes its pid into the FIFO,
    // whose reading blocks until then), then kill it.
    let (tx, rx) = std::sync::mpsc::channel();
    let fifo = pid_file.clone();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read_to_string(&fifo));
    });
    let pid = rx
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| {
            panic!(
                "shard 2 did not start within {DEADLINE:?}: {:?}",
                job_states(&array)
            )
        })
        .unwrap();
    let pid = pid.trim();
    assert_ne!(
        pid, "lost",
        "shard 2's cairn ended before it could be stopped"
    );
    assert!(
        !part(&parts, 2).exists(),
        "shard 2 wrote its part before it was stopped"
    );
    run_ok(command("kill").args(["-KILL", pid]));

    let merged = wait_job(&merge);
    let log = merge_log(&parts, &merge);
    assert_eq!(merged, [(0, "FAILED".to_string())], "merge job log:\n{log}");
    assert_eq!(
        wait_job(&array),
        [
            (1, "COMPLETED".to_string()),
            (2, "FAILED".to_string()),
            (3, "COMPLETED".to_string())
        ]
    );
    let canonical = data.canonicalize().unwrap();
    assert!(
        log.contains(&format!("shard 2/3 of {} is missing", data.display()))
            || log.contains(&format!("shard 2/3 of {} is missing", canonical.display())),
        "the merge log names shard 2/3 as missing:\n{log}"
    );
    assert!(
        !log.contains("shard 1/3") && !log.contains("shard 3/3"),
        "{log}"
    );
    assert!(!log.contains("locked in"), "{log}");
    assert!(part(&parts, 1).exists() && part(&parts, 3).exists());
    assert!(!part(&parts, 2).exists());
    assert!(
        snapshot(&[repo.path()]) == before,
        "the failed merge changed the project"
    );

    // cairn's own merge of the two parts there are names the same shard.
    let alone = repo.cairn([
        "hash".as_ref(),
        "--merge".as_ref(),
        part(&parts, 1).as_os_str(),
        part(&parts, 3).as_os_str(),
    ]);
    alone
        .expect(2)
        .stderr_has(&format!("shard 2/3 of {}", canonical.display()))
        .stderr_has("missing");
}

/// With `CAIRN_SLURM_LISTING=1`, a job lists the tree once and the shards read that listing:
/// the merged digest and the lock are the same as without it.
#[test]
#[ignore = "needs a running Slurm: .ci/run starts one (CAIRN_TEST_SLURM)"]
fn array_from_one_listing_gives_the_same_digest() {
    require_slurm();
    let repo = project();
    let data = repo.join("data/corpus");
    build_tree(&data);
    let parts = tempfile::tempdir().unwrap();
    let parts = parts.path().join("parts");
    let bin = Path::new(env!("CARGO_BIN_EXE_cairn")).parent().unwrap();

    let (array, merge) = submit(
        &repo,
        &data,
        &parts,
        &[bin],
        &[("CAIRN_SLURM_LISTING", Path::new("1"))],
    );
    let merged = wait_job(&merge);
    let log = merge_log(&parts, &merge);
    assert_eq!(
        merged,
        [(0, "COMPLETED".to_string())],
        "merge job log:\n{log}"
    );
    assert_eq!(
        wait_job(&array),
        (1..=3)
            .map(|k| (k, "COMPLETED".to_string()))
            .collect::<Vec<_>>()
    );
    let listing = std::fs::read_to_string(parts.join("corpus.listing")).unwrap();
    assert!(listing.starts_with("cairn-shard-listing 1"), "{listing}");
    // Every shard read the listing (its log says which command ran).
    for k in 1..=3 {
        let log = std::fs::read_to_string(parts.join(format!("slurm-hash-{array}_{k}.out")))
            .unwrap_or_default();
        assert!(
            log.contains(&format!("shard {k}/3")) && log.contains(", from the listing "),
            "shard {k} log:\n{log}"
        );
    }
    let digest = log
        .lines()
        .find(|l| l.starts_with("blake3:"))
        .and_then(|l| l.split_once("  "))
        .map(|(d, _)| d.to_string())
        .unwrap_or_else(|| panic!("no digest in the merge log:\n{log}"));
    assert_eq!(b3sum_pipeline(&data), digest);
    let lock = repo.lock_toml("cairn.lock");
    assert_eq!(lock["data"][0]["digest"].as_str(), Some(digest.as_str()));
}

/// A listing job that fails (here: a symlink loop in the tree) cancels the array; the merge
/// job still runs, names every shard missing and the listing job's log, and locks nothing.
#[test]
#[ignore = "needs a running Slurm: .ci/run starts one (CAIRN_TEST_SLURM)"]
fn a_failed_listing_job_is_named_and_nothing_is_locked() {
    require_slurm();
    let repo = project();
    let data = repo.join("data/corpus");
    build_tree(&data);
    std::fs::create_dir_all(data.join("loop")).unwrap();
    std::os::unix::fs::symlink("..", data.join("loop/up")).unwrap();
    let parts = tempfile::tempdir().unwrap();
    let parts = parts.path().join("parts");
    let bin = Path::new(env!("CARGO_BIN_EXE_cairn")).parent().unwrap();

    let (_array, merge) = submit(
        &repo,
        &data,
        &parts,
        &[bin],
        &[("CAIRN_SLURM_LISTING", Path::new("1"))],
    );
    let merged = wait_job(&merge);
    let log = merge_log(&parts, &merge);
    assert_eq!(merged, [(0, "FAILED".to_string())], "merge job log:\n{log}");
    assert!(
        log.contains("the listing job failed, so no shard ran"),
        "{log}"
    );
    for k in 1..=3 {
        assert!(log.contains(&format!("shard {k}/3 of")), "{log}");
    }
    assert!(!repo.join("cairn.lock").exists());
}
