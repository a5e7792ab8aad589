//! Every bad input gets a clear message, exit status 2, and leaves files as they were.

use crate::util::{Repo, Run};

/// Lock the `ml` repository and return the lock's bytes.
fn locked() -> (Repo, Vec<u8>) {
    let r = Repo::ml_locked();
    let bytes = std::fs::read(r.join("cairn.lock")).unwrap();
    (r, bytes)
}

fn replace_lock(r: &Repo, text: &str) -> Vec<u8> {
    std::fs::write(r.join("cairn.lock"), text).unwrap();
    text.as_bytes().to_vec()
}

#[track_caller]
fn assert_untouched(r: &Repo, bytes: &[u8]) {
    assert_eq!(
        std::fs::read(r.join("cairn.lock")).unwrap(),
        bytes,
        "the lock was rewritten"
    );
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    let (r, good) = locked();
    let text = String::from_utf8(good)
        .unwrap()
        .replacen("[code]", "[code", 1);
    let bad = replace_lock(&r, &text);
    let out = r.cairn(["verify"]).expect(2);
    out.stderr_has("error: cannot parse");
    out.stderr_has("cairn.lock");
    let line = text.lines().position(|l| l == "[code").unwrap() + 1;
    out.stderr_has(&format!("line {line}, column"));
    out.stderr_has("hint:");
    // lock refuses to replace what it cannot read...
    let out = r.lock_ml().expect(2);
    out.stderr_has("cannot parse");
    assert_untouched(&r, &bad);
    // ...unless told to.
    r.cairn(["lock", "--force"]).expect(0);
    r.cairn(["verify"]).expect(0);
}

#[test]
fn truncated_lock_is_refused() {
    let (r, good) = locked();
    let cut = &good[..good.len() * 2 / 3];
    let text = String::from_utf8_lossy(cut).into_owned();
    let bad = replace_lock(&r, &text);
    let out = r.cairn(["verify"]).expect(2);
    out.stderr_has("error:");
    out.stderr_has("cairn.lock");
    r.lock_ml().expect(2);
    assert_untouched(&r, &bad);
}

#[test]
fn newer_version_says_upgrade_and_is_never_replaced() {
    let (r, good) = locked();
    let text = String::from_utf8(good)
        .unwrap()
        .replacen("version = 1", "version = 2", 1)
        + "\n[future-table]\nshape = { of = \"things to come\" }\n";
    let bad = replace_lock(&r, &text);
    let out = r.cairn(["verify"]).expect(2);
    out.stderr_has("newer cairn (lockfile version 2)");
    out.stderr_has("upgrade cairn");
    for args in [&["lock"][..], &["lock", "--force"][..]] {
        let out = r.cairn(args).expect(2);
        out.stderr_has("newer cairn");
        assert_untouched(&r, &bad);
    }
}

#[test]
fn missing_version_is_refused() {
    let (r, good) = locked();
    let text = String::from_utf8(good)
        .unwrap()
        .replacen("version = 1\n", "", 1);
    replace_lock(&r, &text);
    let out = r.cairn(["verify"]).expect(2);
    out.stderr_has("missing `version`");
}

#[test]
fn paths_in_a_lock_that_escape_are_refused() {
    let (r, good) = locked();
    let text = String::from_utf8(good).unwrap();
    for (from, to, want) in [
        (
            "path = \"data/val\"",
            "path = \"../../etc\"",
            "escapes the project",
        ),
        (
            "path = \"runs/final.safetensors\"",
            "path = \"/etc/passwd\"",
            "not absolute",
        ),
    ] {
        let bad = replace_lock(&r, &text.replacen(from, to, 1));
        let out = r.cairn(["verify"]).expect(2);
        out.stderr_has(want);
        assert_untouched(&r, &bad);
    }
}

/// A lock inside the repository must have a lock's name, and a path that leads out of the
/// repository through a link in it is refused (paths that resolve inside or outside are fine:
/// terminal::lock_paths_work_like_gits).
#[test]
fn lock_path_misnamed_or_through_a_link_out_is_refused() {
    let r = Repo::ml();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), r.join("ext")).unwrap();
    for (arg, want) in [
        (
            "runs.lock",
            "must be named `cairn.lock` or `<name>.cairn.lock`",
        ),
        (
            "data/../x.lock",
            "must be named `cairn.lock` or `<name>.cairn.lock`",
        ),
        (
            "ext/x.cairn.lock",
            "leads out of the repository through a symbolic link",
        ),
        (".", "is the repository itself"),
    ] {
        for cmd in ["lock", "verify"] {
            let out = r.cairn([cmd, "--lock", arg]).expect(2);
            assert!(
                out.stderr.contains(want),
                "{cmd} --lock {arg}: {}",
                out.stderr
            );
        }
    }
    assert!(crate::util::names_in(outside.path()).is_empty());
    assert!(!r.join("runs.lock").exists());
    assert!(!r.join("x.lock").exists());
}

#[test]
fn missing_data_path_writes_nothing() {
    let (r, good) = locked();
    let out = r
        .cairn(["lock", "--data", "data/nope", "--", "python3", "train.py"])
        .expect(2);
    out.stderr_has("data path does not exist");
    out.stderr_has("data/nope");
    assert_untouched(&r, &good);
}

#[test]
fn missing_lock_is_an_error_with_the_path() {
    let r = Repo::ml();
    let out = r.cairn(["verify"]).expect(2);
    out.stderr_has("lockfile does not exist");
}

#[test]
fn not_a_git_repository() {
    let r = Repo::plain();
    r.write("data/a.txt", "a");
    let out = r.cairn(["lock", "--data", "data"]).expect(2);
    out.stderr_has("not a git repository");
    out.stderr_has("--no-git");
    assert!(!r.join("cairn.lock").exists());
    // Asked for explicitly, a lock without code works and verifies.
    r.cairn(["lock", "--no-git", "--data", "data"]).expect(0);
    let lock = r.lock_toml("cairn.lock");
    assert!(lock.get("code").is_none());
    let out = r.cairn(["verify"]).expect(0);
    out.stdout_has("no code");
}

#[test]
fn repository_without_commits() {
    let r = Repo::new();
    r.write("train.py", "pass\n");
    let out = r.cairn(["lock"]).expect(2);
    out.stderr_has("no commit yet");
}

#[test]
fn malformed_cairn_toml_is_reported() {
    let r = Repo::ml();
    r.write("cairn.toml", "[data\ntrain = 1\n");
    let out = r.cairn(["lock"]).expect(2);
    out.stderr_has("cairn.toml");
    out.stderr_has("line 1");
    r.write("cairn.toml", "checkpoint = [\"typo\"]\n");
    let out = r.cairn(["lock"]).expect(2);
    out.stderr_has("unknown field `checkpoint`");
    assert!(!r.join("cairn.lock").exists());
}

#[test]
fn duplicate_dataset_names_are_refused() {
    let r = Repo::ml();
    r.write("other/train/x.txt", "x");
    let out = r
        .cairn(["lock", "--data", "data/train", "--data", "other/train"])
        .expect(2);
    out.stderr_has("given twice");
    out.stderr_has("NAME=PATH");
}

/// Root reads everything, so the unreadable-file case runs cairn as `nobody` (setpriv) when
/// the tests run as root. The data lives outside any git repository owned by another user.
#[test]
fn unreadable_file_is_named_and_nothing_is_written() {
    let r = Repo::plain();
    r.write("data/ok.txt", "fine");
    r.write("data/secret.txt", "hidden");
    let set = |p: &str, mode: u32| crate::util::set_mode(&r.join(p), mode);
    set(".", 0o777);
    set("data", 0o755);
    set("data/ok.txt", 0o644);
    set("data/secret.txt", 0o000);
    Run::of(crate::util::cairn_unprivileged(r.path()).args(["lock", "--no-git", "--data", "data"]))
        .expect(2)
        .stderr_has("cannot read")
        .stderr_has("data/secret.txt")
        .stderr_has("Permission denied");
    assert!(!r.join("cairn.lock").exists());
}

/// An interpreter that crashes is named with its exit status and last words, and the lock is
/// left as it was. (The stand-in lives in the test's own directory and only writes to stderr.)
#[test]
fn crashing_interpreter_is_named_and_nothing_is_written() {
    let (r, good) = locked();
    crate::util::write_executable(
        &r.join("tools/crashing-python"),
        "#!/bin/sh\necho 'Fatal Python error: init_fs_encoding' >&2\nexit 3\n",
    );
    let out = r
        .cairn([
            "lock",
            "--force",
            "--replace-run",
            "--python",
            "tools/crashing-python",
        ])
        .expect(2);
    out.stderr_has("error: the Python interpreter");
    out.stderr_has("crashing-python failed: it exited with status 3");
    out.stderr_has("Fatal Python error: init_fs_encoding");
    out.stderr_has("hint: check that `");
    out.stderr_has("--no-python");
    assert_untouched(&r, &good);
}

/// A bare repository has no working tree to record: its own error, with a way out.
#[test]
fn bare_repository_is_refused_with_a_way_out() {
    let r = Repo::plain();
    r.git(&["init", "-q", "--bare", "-b", "main"]);
    let out = r.cairn(["lock", "--no-python"]).expect(2);
    out.stderr_has("error: the repository at");
    out.stderr_has("is bare");
    out.stderr_has("hint: run cairn in a clone with a checkout");
    out.stderr_has("--no-git");
    assert!(!r.join("cairn.lock").exists(), "nothing written");
    assert!(!r.join(".cairn").exists(), "nothing written");
}
