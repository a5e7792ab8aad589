//! Code capture: dirty runs are rebuildable from the lock and the repository alone.

use crate::util::{git_in, Repo};

/// Lock a dirty tree (a tracked edit, a binary untracked file, a deletion), then rebuild it
/// in a fresh worktree from the commit and the sidecar patch with plain git.
#[test]
fn dirty_run_is_rebuildable_with_git_apply() {
    let r = Repo::ml();
    r.write("lib/util.py", "def f():\n    return 1\n");
    r.commit_all("add util");
    r.write("train.py", "# local experiment\nprint('dirty')\n");
    r.write("weights/init.bin", (0u8..=255).rev().collect::<Vec<_>>());
    // git looks only at the owner's execute bit: group-executable is a plain file to it.
    r.write("group-exec.sh", "echo hi\n");
    crate::util::set_mode(&r.join("group-exec.sh"), 0o654);
    std::fs::remove_file(r.join("lib/util.py")).unwrap();
    let out = r
        .cairn(["lock", "--data", "data/train", "--data", "data/val"])
        .expect(0);
    out.stderr_has("uncommitted changes in 4 files");

    let lock = r.lock_toml("cairn.lock");
    let code = lock["code"].as_table().unwrap();
    assert_eq!(code["dirty"].as_bool(), Some(true));
    let change = code["change"].as_str().unwrap();
    let hex = change.strip_prefix("blake3:").unwrap();
    let sidecar = r.join(&format!(".cairn/changes/{hex}.patch"));
    let patch = std::fs::read(&sidecar).unwrap();
    assert_eq!(
        blake3::hash(&patch).to_hex().as_str(),
        hex,
        "sidecar named by its digest"
    );
    assert!(
        String::from_utf8_lossy(&patch).contains("GIT binary patch"),
        "binary content is carried"
    );

    // Rebuild: a worktree at the locked commit plus the patch gives the locked tree.
    let wt = tempfile::tempdir().unwrap();
    let wt_path = wt.path().join("rebuild");
    let commit = code["commit"].as_str().unwrap();
    r.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        wt_path.to_str().unwrap(),
        commit,
    ]);
    let git_in_wt = |args: &[&str]| git_in(&wt_path, r.home(), args);
    git_in_wt(&["apply", "--binary", sidecar.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(wt_path.join("weights/init.bin")).unwrap(),
        (0u8..=255).rev().collect::<Vec<_>>()
    );
    assert!(!wt_path.join("lib/util.py").exists());
    // The tree id in the lock is git's own: stage everything, drop what cairn excludes.
    git_in_wt(&["add", "-A"]);
    git_in_wt(&["rm", "-r", "-q", "--cached", "data/train", "data/val"]);
    let tree = git_in_wt(&["write-tree"]);
    assert_eq!(tree.trim(), code["tree"].as_str().unwrap());

    // Verify passes on the dirty tree, and after committing everything with the lock.
    r.cairn(["verify"]).expect(0);
    // Without the sidecar the code still matches, but the run could not be rebuilt: say so.
    let saved = std::fs::read(&sidecar).unwrap();
    std::fs::remove_file(&sidecar).unwrap();
    r.cairn(["verify"])
        .expect(0)
        .stdout_has("cannot be rebuilt from the repository");
    std::fs::write(&sidecar, saved).unwrap();
    r.commit_all("commit the experiment and its lock");
    r.cairn(["verify"]).expect(0);
    // And a later edit of a file that was part of the change is named.
    r.write("weights/init.bin", "retrained");
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has("code: 1 file changed, 0 added, 0 removed\n  changed      weights/init.bin\n");
    let code_lines = out.stdout.lines().filter(|l| l.starts_with("code")).count();
    assert_eq!(code_lines, 1, "{}", out.stdout);
}

#[test]
fn untracked_file_after_lock_is_named() {
    let r = Repo::ml();
    r.cairn(["lock"]).expect(0);
    r.write("scratch.py", "x = 1\n");
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has("code: 0 files changed, 1 added, 0 removed\n  added        scratch.py\n");
    // Ignored files are not code.
    std::fs::remove_file(r.join("scratch.py")).unwrap();
    r.write("runs/log.txt", "ignored by .gitignore");
    r.cairn(["verify"]).expect(0);
}

#[test]
fn detached_head_has_no_branch_and_remote_has_no_credentials() {
    let r = Repo::ml();
    r.git(&[
        "remote",
        "add",
        "origin",
        "https://alice:s3cret-token@git.example.com/team/model.git",
    ]);
    let head = r.head();
    r.git(&["checkout", "-q", "--detach", &head]);
    r.cairn(["lock"]).expect(0);
    let text = r.read("cairn.lock");
    assert!(!text.contains("s3cret"), "credentials leaked:\n{text}");
    assert!(!text.contains("alice"), "user name leaked:\n{text}");
    let lock: toml::Table = text.parse().unwrap();
    assert_eq!(
        lock["code"]["remote"].as_str(),
        Some("https://git.example.com/team/model.git")
    );
    assert!(lock["code"].get("branch").is_none(), "{text}");
}

#[test]
fn submodule_commit_is_recorded() {
    let sub = Repo::new();
    sub.write("lib.py", "VALUE = 1\n");
    sub.commit_all("sub");
    let r = Repo::ml();
    r.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        sub.path().to_str().unwrap(),
        "vendor/sub",
    ]);
    r.commit_all("add submodule");
    r.cairn(["lock"]).expect(0);
    let lock = r.lock_toml("cairn.lock");
    let sm = &lock["code"]["submodule"][0];
    assert_eq!(sm["path"].as_str(), Some("vendor/sub"));
    assert_eq!(sm["commit"].as_str().unwrap(), sub.head());
    assert_eq!(lock["code"]["dirty"].as_bool(), Some(false));
    r.cairn(["verify"]).expect(0);
    // Moving the submodule to another commit is a code difference.
    std::fs::write(r.join("vendor/sub/lib.py"), "VALUE = 2\n").unwrap();
    let sub_git = |args: &[&str]| git_in(&r.join("vendor/sub"), r.home(), args);
    sub_git(&["commit", "-q", "-am", "bump"]);
    let out = r.cairn(["verify"]).expect(1);
    out.stdout_has("code: 1 file changed, 0 added, 0 removed\n  changed      vendor/sub\n");
}

#[test]
fn lock_in_a_subproject_uses_its_cairn_toml() {
    let r = Repo::ml();
    r.write("projects/mnist/cairn.toml", "[data]\ndigits = \"digits\"\n");
    r.write("projects/mnist/digits/0.txt", "zero");
    r.commit_all("subproject");
    r.cairn_in("projects/mnist", ["lock"]).expect(0);
    assert!(r.join("projects/mnist/cairn.lock").exists());
    assert!(r.join("projects/mnist/.cairn/.gitignore").exists());
    let lock = r.lock_toml("projects/mnist/cairn.lock");
    assert_eq!(lock["data"][0]["path"].as_str(), Some("digits"));
    r.cairn_in("projects/mnist", ["verify"]).expect(0);
    // Its data is not code, even though it is committed.
    r.write("projects/mnist/digits/0.txt", "changed");
    let out = r.cairn_in("projects/mnist", ["verify"]).expect(1);
    out.stdout_has("data digits: 1 of 1 file changed, 0 added, 0 removed\n  changed      0.txt\n");
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("code")),
        "{}",
        out.stdout
    );
}

#[test]
fn core_filemode_false_ignores_execute_bits_like_git() {
    let r = Repo::ml();
    r.git(&["config", "core.fileMode", "false"]);
    r.cairn(["lock"]).expect(0);
    crate::util::set_mode(&r.join("train.py"), 0o755);
    assert_eq!(
        r.git(&["status", "--porcelain", "--", "train.py"]),
        "",
        "git sees no change"
    );
    r.cairn(["verify"]).expect(0);
}

/// A checkpoint glob that matches a file which already exists when the lock is taken: the file
/// is not code at lock time (the pattern excludes it) nor at verify time (the lock lists it).
#[test]
fn glob_checkpoints_are_not_code_before_or_after_the_run() {
    let r = Repo::ml();
    r.write(".gitignore", "");
    r.commit_all("stop ignoring runs/");
    r.write("runs/old.safetensors", "from an earlier run");
    r.cairn([
        "lock",
        "--checkpoint",
        "runs/*.safetensors",
        "--output",
        "runs/metrics.json",
        "--",
        "python3",
        "train.py",
    ])
    .expect(0);
    let lock = r.lock_toml("cairn.lock");
    assert_eq!(lock["code"]["dirty"].as_bool(), Some(false));
    assert_eq!(lock["checkpoint"].as_array().unwrap().len(), 2);
    r.cairn(["verify"]).expect(0);
}
