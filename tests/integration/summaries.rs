//! What a person sees: verify and diff summarise (one line per dataset with its first files,
//! causes before content, the packages the run imports first), --verbose and --format json
//! list everything, -q prints only what fails, the verdict is in words with proper plurals,
//! help texts wrap, audit warns over zero locks, checkpoint add writes one short line.

use std::path::Path;

use crate::util::{lock_ml_no_python, Repo, Venv};

/// A terminal of 45 lines, as in the report that asked for summaries (tmux, 160x45).
const SCREEN: usize = 45;

/// `data/train` with `n` files, untracked (as large datasets are), each holding `tag`.
fn dataset(r: &Repo, n: usize, tag: &str) {
    let dir = r.join("data/train");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("img-{i:04}.png")), format!("{tag} {i}\n")).unwrap();
    }
}

/// The index of the first line that starts with `prefix`.
#[track_caller]
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

#[test]
fn a_3000_file_change_fits_one_screen_with_the_cause_first() {
    let r = Repo::ml();
    r.untrack_data();
    dataset(&r, 3000, "v1");
    r.cairn(lock_ml_no_python(&[
        "--lock",
        "a.cairn.lock",
        "--seed",
        "1",
    ]))
    .expect(0);
    // The dataset is regenerated and the seed changed: the seed explains the run.
    dataset(&r, 3000, "v2");
    r.cairn(lock_ml_no_python(&[
        "--lock",
        "b.cairn.lock",
        "--seed",
        "7",
    ]))
    .expect(0);

    let out = r.cairn(["diff", "a.cairn.lock", "b.cairn.lock"]).expect(1);
    let text = &out.stdout;
    assert!(
        text.lines().count() <= SCREEN,
        "{} lines:\n{text}",
        text.lines().count()
    );
    assert!(
        line_of(text, "  seed: changed 1 -> 7") < line_of(text, "  data train: "),
        "the seed must come before the data:\n{text}"
    );
    out.stdout_has("  data train: 3,000 of 3,000 files changed, 0 added, 0 removed\n")
        .stdout_has("    changed      img-0000.png\n")
        .stdout_has(
            "    changed      img-0004.png\n    ... and 2,995 more (--verbose lists them)\n",
        )
        .stdout_lacks("img-0005.png")
        .stdout_has(
            "diff: the runs differ — 2 possible causes (seed and data train); no effects\n",
        );

    // --verbose lists every file; the JSON has every difference with or without it.
    let all = r
        .cairn(["diff", "a.cairn.lock", "b.cairn.lock", "--verbose"])
        .expect(1);
    assert_eq!(all.stdout.matches("    changed      img-").count(), 3000);
    let json = |extra: &[&str]| {
        let mut args = vec!["diff", "a.cairn.lock", "b.cairn.lock", "--format", "json"];
        args.extend(extra);
        r.cairn(args).expect(1).stdout
    };
    let plain = json(&[]);
    assert_eq!(plain, json(&["--verbose"]));
    let report: serde_json::Value = serde_json::from_str(&plain).unwrap();
    let data = report["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["section"] == "data")
        .count();
    assert_eq!(data, 3000);

    // verify against the first lock: the same summary, the verdict last in words.
    let out = r.cairn(["verify", "--lock", "a.cairn.lock"]).expect(1);
    let text = &out.stdout;
    assert!(
        text.lines().count() <= SCREEN,
        "{} lines:\n{text}",
        text.lines().count()
    );
    out.stdout_has("data train: 3,000 of 3,000 files changed, 0 added, 0 removed\n")
        .stdout_has("  ... and 2,995 more (--verbose lists them)\n")
        .stdout_has(
            "verify: FAILED — 3,000 differences from a.cairn.lock: data train (3,000 files)\n",
        )
        .stdout_has("checked code, 1 dataset and 1 checkpoint: 3,001 files, ");
    out.stderr_has("hint: `cairn diff a.cairn.lock` shows what changed and why; if the changes are intended, record them with `cairn lock`");
    let all = r
        .cairn(["verify", "--lock", "a.cairn.lock", "-v"])
        .expect(1);
    assert_eq!(all.stdout.matches("  changed      img-").count(), 3000);
    let json = |extra: &[&str]| {
        let mut args = vec!["verify", "--lock", "a.cairn.lock", "--format", "json"];
        args.extend(extra);
        r.cairn(args).expect(1).stdout
    };
    let plain = json(&[]);
    let report: serde_json::Value = serde_json::from_str(&plain).unwrap();
    let verbose: serde_json::Value = serde_json::from_str(&json(&["--verbose"])).unwrap();
    // The same findings (what was read depends on the stat cache).
    assert_eq!(report["findings"], verbose["findings"]);
    assert_eq!(report["findings"].as_array().unwrap().len(), 3000);
    assert!(
        !plain.contains("salience") && !plain.contains("section"),
        "the summary's data stays out of the JSON: {plain:.400}"
    );
}

#[test]
fn plurals_and_the_verdict_in_words() {
    let r = Repo::ml();
    r.cairn(crate::util::LOCK_ML_NO_PYTHON).expect(0);
    r.cairn(["verify"])
        .expect(0)
        .stdout_has("verify: ok, matches cairn.lock\n")
        .stdout_has("checked code, 1 dataset and 1 checkpoint: 3 files, ");
    r.write("data/train/a.txt", "changed\n");
    r.cairn(["verify"])
        .expect(1)
        .stdout_has("data train: 1 of 2 files changed, 0 added, 0 removed\n")
        .stdout_has("verify: FAILED — 1 difference from cairn.lock: data train (1 file)\n")
        .stdout_lacks("(s)");
    r.write("data/train/b.txt", "changed too\n");
    r.write("data/train/c.txt", "new\n");
    r.write("train.py", "# edited\n");
    r.cairn(["verify"])
        .expect(1)
        .stdout_has("code: 1 file changed, 0 added, 0 removed\n  changed      train.py\n")
        .stdout_has("data train: 2 of 2 files changed, 1 added, 0 removed\n")
        .stdout_has(
            "verify: FAILED — 4 differences from cairn.lock: code (1 file), data train (3 files)\n",
        )
        .stdout_lacks("(s)");
    // The verdict is coloured only on a terminal: here stdout is a pipe.
    r.cairn(["verify"]).expect(1).stdout_lacks("\x1b[");
}

/// `-q`: the exit status, and what fails; no warnings, notes or hints, nothing at all when
/// verification passes.
#[test]
fn quiet_verify_prints_only_what_fails() {
    let r = Repo::ml();
    r.cairn_env(&[("PYTHONHASHSEED", "0")], crate::util::LOCK_ML_NO_PYTHON)
        .expect(0);
    let drift = [("PYTHONHASHSEED", "1")];
    let out = r.cairn_env(&drift, ["verify"]).expect(0);
    out.stdout_has("env PYTHONHASHSEED: changed (0 -> 1) [warning]\n")
        .stdout_has("verify: ok, matches cairn.lock; the 1 environment or host difference above does not fail it (--strict would)\n");
    for q in ["-q", "--quiet"] {
        let out = r.cairn_env(&drift, ["verify", q]).expect(0);
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""), "{q}");
    }
    r.write("data/train/a.txt", "changed\n");
    let out = r.cairn_env(&drift, ["verify"]).expect(1);
    out.stderr_has("hint: `cairn diff` shows");
    let out = r.cairn_env(&drift, ["verify", "-q"]).expect(1);
    assert_eq!(
        out.stdout,
        "data train: 1 of 2 files changed, 0 added, 0 removed\n  changed      a.txt\nverify: FAILED — 1 difference from cairn.lock: data train (1 file)\n"
    );
    assert_eq!(out.stderr, "");
    // The JSON has the same findings with -q (what was read depends on the stat cache).
    let json = |q: &[&str]| {
        let mut args = vec!["verify", "--format", "json"];
        args.extend(q);
        r.cairn_env(&drift, args).expect(1).json()["findings"].clone()
    };
    let findings = json(&[]);
    assert_eq!(findings.as_array().unwrap().len(), 2, "{findings}");
    assert_eq!(findings, json(&["-q"]));
}

/// A distribution as installers leave it: `NAME-VERSION.dist-info` with METADATA, and
/// `top_level.txt` when `provides` names its modules.
pub(crate) fn install(site: &Path, name: &str, version: &str, provides: Option<&str>) {
    let dir = site.join(format!("{}-{version}.dist-info", name.replace('-', "_")));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("METADATA"),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("INSTALLER"), "pip\n").unwrap();
    if let Some(modules) = provides {
        std::fs::write(dir.join("top_level.txt"), format!("{modules}\n")).unwrap();
    }
}

/// Someone else's clone, verified with another interpreter: the packages the run imports come
/// first (by import name, through the installed metadata, or a well-known alias for one not
/// installed here), then counts; --verbose lists every package.
#[test]
fn another_interpreter_names_the_imported_packages_first() {
    let (mine, theirs) = (Venv::new(), Venv::new());
    let (a, b) = (mine.site_packages(), theirs.site_packages());
    // Thirty packages the run does not import, each differing, and alphabetically first.
    for i in 0..30 {
        install(&a, &format!("aaa-unused-{i:02}"), "1.0", None);
        if i % 3 != 0 {
            install(&b, &format!("aaa-unused-{i:02}"), "1.1", None);
        }
    }
    for i in 0..10 {
        install(&b, &format!("aaa-extra-{i:02}"), "0.1", None);
    }
    // What the run imports.
    install(&a, "numpy", "1.26.4", None);
    install(&b, "numpy", "2.0.0", None);
    install(&a, "scikit-learn", "1.4.0", Some("sklearn"));
    install(&b, "scikit-learn", "1.5.0", Some("sklearn"));
    install(&a, "pyyaml", "6.0.1", Some("yaml"));
    install(&a, "fast-tok-dist", "0.3", Some("fasttok"));
    install(&b, "fast-tok-dist", "0.4", Some("fasttok"));

    let r = Repo::ml();
    // Never executed: the imports are read as text.
    r.write(
        "train.py",
        format!(
            "import os, sys\nif os.environ.get('NEVER_SET_IN_TESTS'):\n    import numpy as np\n    from sklearn.linear_model import LogisticRegression\n    import yaml\n    from model import Net\n{}",
            crate::util::TRAIN_PY
        ),
    );
    r.write("model.py", "import fasttok\nclass Net: pass\n");
    r.commit_all("a training script");
    let py = |v: &Venv| v.python().display().to_string();
    r.cairn(["lock", "--python", &py(&mine), "--", "python3", "train.py"])
        .expect(0);

    let out = r.cairn(["verify", "--python", &py(&theirs)]).expect(0);
    let text = &out.stdout;
    assert!(text.lines().count() <= SCREEN, "{text}");
    let head = line_of(text, "packages: ");
    assert_eq!(
        text.lines().nth(head).unwrap(),
        "packages: 44 differ: 10 added, 11 removed, 23 changed [warning]",
        "{text}"
    );
    let listed: Vec<&str> = text.lines().skip(head + 1).take(5).collect();
    assert_eq!(
        listed,
        [
            "  fast-tok-dist changed (0.3 -> 0.4), imported by model.py (as fasttok)",
            "  numpy changed (1.26.4 -> 2.0.0), imported by train.py",
            "  scikit-learn changed (1.4.0 -> 1.5.0), imported by train.py (as sklearn)",
            "  pyyaml removed (6.0.1 was locked), imported by train.py (as yaml)",
            "  aaa-unused-00 removed (1.0 was locked)",
        ],
        "{text}"
    );
    out.stdout_has(
        "  ... and 39 more packages: 10 added, 9 removed, 20 changed; --verbose lists them\n",
    )
    .stdout_has("verify: ok, matches cairn.lock; the 44 environment and host differences above do not fail it (--strict would)\n");

    let all = r
        .cairn(["verify", "--python", &py(&theirs), "--verbose"])
        .expect(0);
    assert_eq!(all.stdout.matches("\n  aaa-").count(), 40, "{}", all.stdout);
    all.stdout_lacks("more packages");
    let report = r
        .cairn(["verify", "--python", &py(&theirs), "--format", "json"])
        .expect(0)
        .json();
    let packages = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["area"] == "environment")
        .count();
    assert_eq!(packages, 44);
}

#[test]
fn diff_without_a_lock_compares_cairn_lock_with_now() {
    let r = Repo::ml();
    r.cairn(crate::util::LOCK_ML_NO_PYTHON).expect(0);
    r.write("data/train/a.txt", "changed\n");
    let json = |args: &[&str]| r.cairn(args).expect(1).json();
    let implicit = json(&["diff", "--no-python", "--format", "json"]);
    let explicit = json(&["diff", "cairn.lock", "--no-python", "--format", "json"]);
    assert_eq!(implicit["causes"], explicit["causes"]);
    assert_eq!(implicit["a"]["lock"], explicit["a"]["lock"]);
    assert_eq!(implicit["b"]["lock"], serde_json::Value::Null);
    // No lock at all: the usual error, with exit status 2.
    let bare = Repo::ml();
    bare.cairn(["diff"]).expect(2).stderr_has("error: ");
}

#[test]
fn audit_over_zero_locks_warns_and_strict_fails() {
    let r = Repo::ml();
    let out = r.cairn(["audit"]).expect(0);
    out.stderr_has("warning: no lock found: nothing was audited")
        .stdout_has("audit passed: 0 locks, 0 runs, 0 checkpoints: 0 errors, 0 warnings\n");
    let out = r.cairn(["audit", "--strict"]).expect(1);
    out.stderr_has("warning: no lock found")
        .stdout_has("audit failed: 0 locks");
    // With a lock, --strict passes a clean audit.
    r.cairn(crate::util::LOCK_ML_NO_PYTHON).expect(0);
    r.cairn(["audit", "--strict"])
        .expect(0)
        .stdout_has("audit passed: 1 lock, 1 run, 1 checkpoint: 0 errors, 0 warnings\n")
        .stderr_lacks("no lock found");
}

/// Inside a locked run, each `checkpoint add` writes one short line to the training log: the
/// path, the step, a short digest, no internal path; `-q` writes nothing.
#[test]
fn checkpoint_add_writes_one_short_line() {
    let r = Repo::ml();
    let bin = env!("CARGO_BIN_EXE_cairn");
    r.write(
        "train.sh",
        format!(
            "mkdir -p runs\necho w1 > runs/step-1.bin\n{bin} checkpoint add runs/step-1.bin --step 1\necho w2 > runs/step-2.bin\n{bin} -q checkpoint add runs/step-2.bin --step 2\n"
        ),
    );
    r.commit_all("a shell training run");
    let out = r
        .cairn(["lock", "--no-python", "--", "sh", "train.sh"])
        .expect(0);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("recorded checkpoint") || l.contains("step-2"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    let line = lines[0];
    let digest = blake3::hash(b"w1\n").to_hex().to_string();
    assert_eq!(
        line,
        format!(
            "cairn: recorded checkpoint runs/step-1.bin (step 1, blake3:{})",
            &digest[..12]
        )
    );
    assert!(line.len() < 80 && !line.contains(".cairn"), "{line}");
    let lock = r.lock_toml("cairn.lock");
    assert_eq!(lock["checkpoint"].as_array().unwrap().len(), 2);
}

/// Every command's help wraps at the terminal's width: no line longer than it, and no
/// paragraph broken by hand in the middle of a wider line.
#[test]
fn help_texts_wrap_at_any_width() {
    let r = Repo::plain();
    let commands: &[&[&str]] = &[
        &[],
        &["lock"],
        &["verify"],
        &["hash"],
        &["env"],
        &["checkpoint", "add"],
        &["checkpoint", "list"],
        &["lineage"],
        &["audit"],
        &["rebuild"],
        &["diff"],
        &["export"],
        &["completions"],
        &["man"],
        &["init"],
        &["trust"],
    ];
    for cmd in commands {
        for width in [80usize, 160] {
            let mut args: Vec<&str> = cmd.to_vec();
            args.push("--help");
            let out = r
                .cairn_env(&[("COLUMNS", &width.to_string())], &args)
                .expect(0);
            let lines: Vec<&str> = out.stdout.lines().collect();
            for l in &lines {
                assert!(l.chars().count() <= width, "{cmd:?} at {width}: {l:?}");
            }
            if width == 160 {
                // A paragraph's line is followed by another of the same paragraph only when it
                // was filled (a hard wrap leaves a short line in the middle of a paragraph).
                for pair in lines.windows(2) {
                    let (l, next) = (pair[0], pair[1]);
                    let prose = |s: &str| !s.is_empty() && !s.starts_with(' ');
                    if prose(l) && prose(next) && !l.ends_with(':') {
                        assert!(
                            l.chars().count() > 120,
                            "{cmd:?}: a hard wrap at {width} columns:\n{l}\n{next}"
                        );
                    }
                }
            }
        }
    }
}

/// On a terminal the verdict is coloured, green or red; never with NO_COLOR, never in a pipe.
#[test]
fn the_verdict_is_coloured_only_on_a_terminal() {
    crate::util::require_tool("script", "util-linux `script` gives cairn a terminal");
    let r = Repo::ml();
    r.cairn(crate::util::LOCK_ML_NO_PYTHON).expect(0);
    let on_terminal = |no_color: Option<&str>| {
        // The hermetic environment sets NO_COLOR; a person's terminal usually does not.
        let mut script = r.cmd_raw("script");
        match no_color {
            Some(v) => script.env("NO_COLOR", v),
            None => script.env_remove("NO_COLOR"),
        };
        crate::util::on_terminal(script, "verify", "")
    };
    on_terminal(None).stdout_has("\x1b[1;32mverify: ok\x1b[0m, matches cairn.lock");
    on_terminal(Some("1"))
        .stdout_has("verify: ok, matches cairn.lock")
        .stdout_lacks("\x1b[1;32m");
    r.write("data/train/a.txt", "changed\n");
    on_terminal(None).stdout_has("\x1b[1;31mverify: FAILED\x1b[0m — 1 difference");
    r.cairn(["verify"]).expect(1).stdout_lacks("\x1b");
}
