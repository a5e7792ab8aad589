//! Untrusted locks, crashes and odd file systems, with the real thing: real symlinks leading
//! out of the repository, real SIGKILLs at random moments, real sockets, oversized and deeply
//! nested locks.

use std::time::Duration;

use crate::util::{Repo, Run};

/// A small deterministic generator (tests must not depend on an RNG crate's versions).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn a_symlink_leading_out_of_the_repository_is_not_read_without_consent() {
    let r = Repo::ml();
    r.cairn(crate::util::LOCK_TRAIN_DATA).expect(0);
    // Someone replaces the dataset with a link to a directory elsewhere (say, their home).
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("a.txt"), "alpha\n").unwrap();
    std::fs::write(elsewhere.path().join("b.txt"), "beta\n").unwrap();
    std::fs::remove_dir_all(r.join("data/train")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), r.join("data/train")).unwrap();
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has("data train: not checked (");
    out.stdout_has("leads outside the repository");
    // The user says so: then it is read (and here it matches).
    r.cairn(["verify", "--data", "train=data/train"]).expect(0);

    // A checkpoint that leads out is never read.
    std::fs::create_dir_all(r.join("runs")).unwrap();
    std::fs::write(elsewhere.path().join("secret.bin"), "not yours").unwrap();
    r.write("runs/real.bin", "weights");
    r.cairn(["lock", "--no-python", "--checkpoint", "runs/real.bin"])
        .expect(0);
    std::fs::remove_file(r.join("runs/real.bin")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("secret.bin"), r.join("runs/real.bin"))
        .unwrap();
    r.cairn(["verify"])
        .expect(1)
        .stdout_has("checkpoint runs/real.bin: not checked (");
}

#[test]
fn a_dataset_on_another_disk_is_recorded_as_external() {
    let r = Repo::ml();
    let disk = tempfile::tempdir().unwrap();
    std::fs::write(disk.path().join("shard-0.bin"), "shard").unwrap();
    std::os::unix::fs::symlink(disk.path(), r.join("data/big")).unwrap();
    r.write(".gitignore", "runs/\ndata/big\n");
    r.commit_all("ignore the big data link");
    let out = r
        .cairn(["lock", "--no-python", "--data", "data/big"])
        .expect(0);
    assert!(out.code == 0);
    let lock = r.lock_toml("cairn.lock");
    assert_eq!(lock["data"][0]["external"].as_bool(), Some(true));
    assert!(lock["data"][0].get("path").is_none());
    // The user who locked it verifies it here with no flags.
    r.cairn(["verify"]).expect(0);
    // Where this user's lock found the external data is remembered on this machine (spec/lockfile.md
    // §12); forget it, as for a lock made by somebody else, to see the unlocated case.
    std::fs::remove_dir_all(r.home().join(".local/share/cairn/data")).unwrap();
    r.cairn(["verify"])
        .expect(1)
        .stdout_has("data big: not checked (");
    // cairn.toml names a path that leads out (through the link): used once the user trusts it.
    r.write("cairn.toml", "[data]\nbig = \"data/big\"\n");
    r.cairn(["verify"])
        .expect(1)
        .stderr_has("ignored: data.big = \"data/big\" (it is outside the repository)");
    r.cairn(["trust"]).expect(0);
    r.cairn(["verify"]).expect(0);
}

#[test]
fn oversized_and_deeply_nested_locks_are_refused() {
    let r = Repo::ml();
    // A lock over the size limit is refused before it is read (a sparse file: cheap).
    let f = std::fs::File::create(r.join("cairn.lock")).unwrap();
    f.set_len(65 << 20).unwrap();
    drop(f);
    r.cairn(["verify"])
        .expect(2)
        .stderr_has("larger than 64 MiB, the most cairn reads for this file");
    // Deep nesting is a parse error with a position, not a crash.
    let deep = format!(
        "version = 1\nx = {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    r.write("cairn.lock", &deep);
    let out = r.cairn(["verify"]).expect(2);
    out.stderr_has("cannot parse");
    out.stderr_has("line 2");
    assert_eq!(r.read("cairn.lock"), deep);
}

#[test]
fn sockets_and_device_links_in_a_dataset_are_skipped_and_reported() {
    let r = Repo::plain();
    r.write("ds/a.txt", "a");
    let _listener = std::os::unix::net::UnixListener::bind(r.join("ds/app.sock")).unwrap();
    std::os::unix::fs::symlink("/dev/null", r.join("ds/null")).unwrap();
    let out = r.cairn(["hash", "ds"]).expect(0);
    out.stderr_has("app.sock");
    out.stderr_has("null");
    out.stderr_has("not a regular file");
}

/// Root reads everything: run as `nobody` when the tests run as root.
#[test]
fn unreadable_directory_is_named() {
    let r = Repo::plain();
    r.write("data/ok/a.txt", "fine");
    r.write("data/closed/b.txt", "hidden");
    for (p, mode) in [
        (".", 0o777),
        ("data", 0o755),
        ("data/ok", 0o755),
        ("data/ok/a.txt", 0o644),
        ("data/closed", 0o000),
    ] {
        crate::util::set_mode(&r.join(p), mode);
    }
    let out = Run::of(crate::util::cairn_unprivileged(r.path()).args(["hash", "data"]));
    crate::util::set_mode(&r.join("data/closed"), 0o755);
    out.expect(2)
        .stderr_has("data/closed")
        .stderr_has("Permission denied");
}

/// Kill `cairn lock` with SIGKILL at many random moments: the lock on disk is always the old
/// one or a complete new one, and always parses; the next lock works (the OS released the
/// project lock with the process).
/// Start cairn with `args` in `r`, output discarded, and SIGKILL it after `ms` milliseconds (or
/// let it be, where it finished first).
fn kill_after(r: &Repo, args: &[&str], ms: u64) {
    let mut child = r
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    let _ = child.kill();
    child.wait().unwrap();
}

/// The lock `text` parsed and validated: a killed writer must never leave a torn one. `when`
/// names the moment, for the message.
#[track_caller]
fn whole_lock(text: &str, when: &str) -> cairn::model::lockfile::Lock {
    cairn::model::lockfile::Lock::from_toml(text, std::path::Path::new("cairn.lock"))
        .unwrap_or_else(|e| panic!("{when}: torn lock: {e}"))
}

#[test]
fn sigkill_during_lock_never_leaves_a_torn_lock() {
    let r = Repo::ml();
    for i in 0..1500 {
        r.write(&format!("data/train/many/{i:04}.txt"), format!("{i}\n"));
    }
    r.commit_all("data");
    let args = crate::util::LOCK_TRAIN_DATA;
    r.cairn(args).expect(0);
    let mut rng = Lcg(7);
    let mut kinds = std::collections::BTreeSet::new();
    for round in 0..25 {
        let before = std::fs::read(r.join("cairn.lock")).unwrap();
        r.write("data/train/a.txt", format!("round {round}\n"));
        kill_after(&r, args, rng.next(250));
        let after = std::fs::read(r.join("cairn.lock")).unwrap();
        let text = String::from_utf8(after.clone()).expect("UTF-8");
        whole_lock(&text, &format!("round {round}"));
        kinds.insert(if after == before { "old" } else { "new" });
    }
    // The project is not left locked, and a lock still completes.
    r.cairn(args).expect(0);
    r.cairn(["verify"]).expect(0);
    assert!(
        kinds.contains("old"),
        "every run finished before the kill: {kinds:?}"
    );
}

#[test]
fn sigkill_during_checkpoint_add_never_leaves_a_torn_lock() {
    let r = Repo::ml();
    r.cairn(["lock", "--no-python"]).expect(0);
    for i in 0..30 {
        r.write(&format!("runs/ckpt-{i:02}.bin"), vec![i as u8; 200_000]);
    }
    let mut rng = Lcg(11);
    let mut count_before = 0;
    for i in 0..30 {
        let path = format!("runs/ckpt-{i:02}.bin");
        let step = i.to_string();
        kill_after(
            &r,
            &["checkpoint", "add", "--amend", &path, "--step", &step],
            rng.next(40),
        );
        let lock = whole_lock(&r.read("cairn.lock"), &format!("add {i}"));
        let n = lock.checkpoints.len();
        assert!(
            n == count_before || n == count_before + 1,
            "{n} after {count_before}"
        );
        count_before = n;
    }
    // Whatever survived verifies, and adding still works.
    r.cairn([
        "checkpoint",
        "add",
        "--amend",
        "runs/ckpt-00.bin",
        "--step",
        "0",
    ])
    .expect(0);
    r.cairn(["verify"]).expect(0);
}

/// Names that are not UTF-8 are recorded losslessly (`\xHH` for each invalid byte), so two
/// names that differ only in those bytes stay two files, and verify names the one that changed.
#[test]
fn names_that_are_not_utf8_are_recorded_losslessly() {
    use std::os::unix::ffi::OsStrExt;
    let r = Repo::ml();
    let dir = r.join("data/raw");
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join(std::ffi::OsStr::from_bytes(b"scan-\xfe.bin"));
    let b = dir.join(std::ffi::OsStr::from_bytes(b"scan-\xff.bin"));
    std::fs::write(&a, "first").unwrap();
    std::fs::write(&b, "second").unwrap();
    r.cairn(["lock", "--no-python", "--data", "data/raw"])
        .expect(0);
    let lock = r.lock_toml("cairn.lock");
    assert_eq!(lock["data"][0]["files"].as_integer(), Some(2));
    let manifest = std::fs::read_dir(r.join(".cairn/manifests"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|t| t.contains("scan-"))
        .unwrap();
    assert!(manifest.contains("  scan-\\xfe.bin\n"), "{manifest}");
    assert!(manifest.contains("  scan-\\xff.bin\n"), "{manifest}");
    std::fs::write(&b, "changed").unwrap();
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has(
        "data raw: 1 of 2 files changed, 0 added, 0 removed\n  changed      scan-\\xff.bin\n",
    );
    out.stdout_lacks("scan-\\xfe");
}
