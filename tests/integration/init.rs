//! `cairn init` on real directories: what it guesses, that `cairn lock` accepts what it writes
//! (and records what it guessed), that it never overwrites a cairn.toml without --force, and how
//! it treats .gitignore.

use crate::util::Repo;

#[test]
fn init_then_lock_and_verify() {
    let r = Repo::ml();
    // The directory train.py writes to exists (git ignores it), so its glob is guessed.
    std::fs::create_dir(r.join("runs")).unwrap();
    let out = r.cairn(["init"]).expect(0);
    assert!(out.stdout.is_empty());
    out.stderr_has("2 datasets (train, val), 1 checkpoint pattern")
        .stderr_has("added .cairn/cache/ to")
        .stderr_has("next: check cairn.toml, then lock a run:\n  cairn lock -- python train.py");
    let config: toml::Table = r.read("cairn.toml").parse().unwrap();
    assert_eq!(config["data"]["train"].as_str(), Some("data/train"));
    assert_eq!(config["data"]["val"].as_str(), Some("data/val"));
    assert_eq!(
        config["checkpoints"].as_array().unwrap(),
        &vec![toml::Value::from("runs/**/*.safetensors")]
    );
    // The other settings are there as comments.
    let text = r.read("cairn.toml");
    for commented in [
        "# env = [",
        "# inputs = [",
        "# outputs = [",
        "# [audit]",
        "# dirty-code = \"error\"",
    ] {
        assert!(text.contains(commented), "no {commented:?} in\n{text}");
    }
    // .gitignore keeps its lines and gains the cache.
    assert_eq!(
        r.read(".gitignore"),
        "runs/\n# cairn's local cache (cairn init)\n.cairn/cache/\n"
    );

    // cairn lock takes everything from the guessed file: no --data, no --checkpoint.
    r.commit_all("cairn init");
    r.cairn(["lock", "--no-python", "--", "python3", "train.py"])
        .expect(0);
    assert_eq!(r.data_names("cairn.lock"), ["train", "val"]);
    let lock = r.lock_toml("cairn.lock");
    assert_eq!(
        lock["checkpoint"][0]["path"].as_str(),
        Some("runs/final.safetensors")
    );
    r.cairn(["verify"]).expect(0);
    // The cache is ignored: git sees the lock and .cairn/.gitignore, nothing from the cache.
    let status = r.git(&["status", "--porcelain", "--untracked-files=all"]);
    assert!(!status.contains(".cairn/cache"), "{status}");
}

#[test]
fn never_overwrites_without_force() {
    let r = Repo::ml();
    r.write(
        "cairn.toml",
        "# mine\ncheckpoints = [\"runs/final.safetensors\"]\n",
    );
    let out = r.cairn(["init"]).expect(2);
    out.stderr_has("cairn.toml already exists; it was left untouched")
        .stderr_has("hint: edit it by hand, or run `cairn init --force`");
    assert!(out.stdout.is_empty());
    assert_eq!(
        r.read("cairn.toml"),
        "# mine\ncheckpoints = [\"runs/final.safetensors\"]\n"
    );
    assert_eq!(r.read(".gitignore"), "runs/\n");
    r.cairn(["init", "--force"]).expect(0);
    assert!(r.read("cairn.toml").contains("train = \"data/train\""));
}

#[test]
fn gitignore_left_alone_when_the_cache_is_ignored_and_no_repository() {
    let r = Repo::ml();
    r.write(".gitignore", "runs/\n.cairn/\n");
    r.cairn(["init"]).expect(0);
    assert_eq!(r.read(".gitignore"), "runs/\n.cairn/\n");

    // Outside git: the file is written, .gitignore is not, and the user hears about --no-git.
    let plain = Repo::plain();
    plain.write("datasets/x.csv", "1\n");
    plain.write(".venv/bin/python", "");
    let out = plain.cairn(["init"]).expect(0);
    out.stderr_has("not in a git repository")
        .stderr_has("cairn lock --no-git -- .venv/bin/python train.py");
    assert!(!plain.join(".gitignore").exists());
    let config: toml::Table = plain.read("cairn.toml").parse().unwrap();
    assert_eq!(config["data"]["datasets"].as_str(), Some("datasets"));
    assert_eq!(config["python"].as_str(), Some(".venv/bin/python"));
}

/// A `.gitignore` that is a link (to a file of the user's outside the repository) is neither read
/// nor written through: init refuses before writing anything, and the linked file is untouched.
#[test]
fn a_gitignore_link_is_refused_before_anything_is_written() {
    let r = Repo::ml();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("bashrc");
    std::fs::write(&victim, "export SECRET=1\n").unwrap();
    std::fs::remove_file(r.join(".gitignore")).unwrap();
    std::os::unix::fs::symlink(&victim, r.join(".gitignore")).unwrap();
    r.cairn(["init"])
        .expect(2)
        .stderr_has("cannot read .gitignore")
        .stderr_has("it is a symbolic link");
    assert!(!r.join("cairn.toml").exists(), "nothing is written");
    assert!(std::fs::symlink_metadata(r.join(".gitignore"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "export SECRET=1\n"
    );
}

/// A checkpoint directory that the script names but that does not exist is not guessed: its
/// glob is a comment, and init says so; the suggested command works outside git too.
#[test]
fn a_directory_that_does_not_exist_gets_no_checkpoint_glob() {
    let r = Repo::ml();
    let out = r.cairn(["init"]).expect(0);
    out.stderr_has("0 checkpoint patterns").stderr_has(
        "warning: no checkpoint glob guessed for runs/: the scripts name it but it does not exist yet",
    );
    let text = r.read("cairn.toml");
    assert!(
        text.contains("# checkpoints = [\"runs/**/*.safetensors\"]"),
        "{text}"
    );
    let config: toml::Table = text.parse().unwrap();
    assert!(config.get("checkpoints").is_none());

    let plain = Repo::plain();
    plain.write("train.py", crate::util::TRAIN_PY);
    let out = plain.cairn(["init"]).expect(0);
    out.stderr_has("  cairn lock --no-git -- python train.py");
    // The line it suggests, with the interpreter the tests have.
    plain
        .cairn([
            "lock",
            "--no-git",
            "--no-python",
            "--",
            "python3",
            "train.py",
        ])
        .expect(0);
}
