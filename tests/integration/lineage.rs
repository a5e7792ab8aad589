//! Lineage and audit over a real three-run chain: pretrain (three checkpoints added while it
//! runs) -> fine-tune from the second checkpoint -> quantize. Then each link is broken in turn
//! and `cairn audit` must name exactly that link.

use std::path::Path;

use crate::util::{amend_checkpoint, Repo};

const PRETRAIN: &str = r#"import os, subprocess
os.makedirs("runs/pretrain", exist_ok=True)
for step in (1, 2, 3):
    p = f"runs/pretrain/ckpt-{step}.bin"
    with open(p, "wb") as f:
        f.write(bytes([step]) * 1000)
    subprocess.run(["cairn", "checkpoint", "add", p, "--step", str(step),
                    "--metric", f"loss={3.0 / step}"], check=True)
"#;

const FINETUNE: &str = r#"import os
os.makedirs("runs/ft", exist_ok=True)
base = open("runs/pretrain/ckpt-2.bin", "rb").read()
open("runs/ft/model.bin", "wb").write(base[:500] + b"ft" * 10)
"#;

const QUANTIZE: &str = r#"open("runs/quant.bin", "wb").write(open("runs/ft/model.bin", "rb").read()[::2])
"#;

/// The quantization run's lock command.
const LOCK_QUANTIZE: &[&str] = &[
    "lock",
    "--no-python",
    "--lock",
    "quantize.cairn.lock",
    "--input",
    "finetune.cairn.lock#runs/ft/model.bin",
    "--checkpoint",
    "runs/quant.bin",
    "--",
    "python3",
    "quantize.py",
];

/// `cairn` with the test binary's directory first on PATH, so the training scripts can call it.
fn cairn(r: &Repo, args: &[&str]) -> crate::util::Run {
    let bin = Path::new(env!("CARGO_BIN_EXE_cairn")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    r.cairn_env(&[("PATH", &path)], args)
}

fn chain() -> Repo {
    let r = Repo::new();
    r.write("data/corpus/a.txt", "the pretraining corpus\n");
    r.write("data/sft/b.txt", "fine-tuning pairs\n");
    r.write(".gitignore", "runs/\n");
    r.write("pretrain.py", PRETRAIN);
    r.write("finetune.py", FINETUNE);
    r.write("quantize.py", QUANTIZE);
    r.commit_all("code");
    let steps: [&[&str]; 3] = [
        &[
            "lock",
            "--no-python",
            "--lock",
            "pretrain.cairn.lock",
            "--data",
            "data/corpus",
            "--",
            "python3",
            "pretrain.py",
        ],
        &[
            "lock",
            "--no-python",
            "--lock",
            "finetune.cairn.lock",
            "--data",
            "data/sft",
            "--input",
            "pretrain.cairn.lock#runs/pretrain/ckpt-2.bin",
            "--checkpoint",
            "runs/ft/model.bin",
            "--",
            "python3",
            "finetune.py",
        ],
        LOCK_QUANTIZE,
    ];
    for args in steps {
        cairn(&r, args).expect(0);
        r.commit_all("lock a run");
    }
    r
}

fn audit_json(r: &Repo, code: i32) -> serde_json::Value {
    let out = cairn(r, &["audit", "--format", "json"]).expect(code);
    out.json()
}

/// The (rule, lock, subject) of every error.
fn errors(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "error")
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["lock"].as_str().unwrap().to_string(),
                f["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn chain_lineage_and_audit() {
    let r = chain();
    let pre = r.lock_toml("pretrain.cairn.lock");
    let ckpts = pre["checkpoint"].as_array().unwrap();
    assert_eq!(ckpts.len(), 3);
    assert_eq!(ckpts[1]["step"].as_integer(), Some(2));
    assert_eq!(
        ckpts[1]["parent"].as_str(),
        Some("runs/pretrain/ckpt-1.bin"),
        "the parent defaults to the previous checkpoint of the run"
    );
    assert_eq!(ckpts[2]["metrics"]["loss"].as_float(), Some(1.0));
    let ft = r.lock_toml("finetune.cairn.lock");
    assert_eq!(ft["input"][0]["kind"].as_str(), Some("lock"));
    assert_eq!(ft["input"][0]["run"].as_str(), pre["run"]["id"].as_str());

    // The quantized model's lineage goes back to the pretraining data.
    let out = cairn(&r, &["lineage", "runs/quant.bin"]).expect(0);
    let tree = out.stdout;
    for want in [
        "checkpoint runs/quant.bin",
        "`python3 quantize.py`",
        "checkpoint runs/ft/model.bin",
        "`python3 finetune.py`",
        "data sft data/sft",
        "checkpoint runs/pretrain/ckpt-2.bin step 2",
        "`python3 pretrain.py`",
        "data corpus data/corpus",
        "parent: checkpoint runs/pretrain/ckpt-1.bin step 1",
    ] {
        assert!(tree.contains(want), "{want:?} not in:\n{tree}");
    }
    // Other formats describe the same graph.
    let json: serde_json::Value = serde_json::from_str(
        &cairn(&r, &["lineage", "runs/quant.bin", "--format", "json"])
            .expect(0)
            .stdout,
    )
    .unwrap();
    assert_eq!(json["locks"].as_array().unwrap().len(), 3);
    let dot = cairn(&r, &["lineage", "runs/quant.bin", "--format", "dot"])
        .expect(0)
        .stdout;
    assert!(
        dot.starts_with("digraph lineage {") && dot.contains("-> n"),
        "{dot}"
    );
    let mermaid = cairn(&r, &["lineage", "--format", "mermaid"])
        .expect(0)
        .stdout;
    assert!(
        mermaid.starts_with("flowchart BT") && mermaid.contains("-->|input|"),
        "{mermaid}"
    );

    // Everything checks out.
    let report = audit_json(&r, 0);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"]["locks"], 3);
    assert_eq!(report["checked"]["checkpoints"], 5);

    // 1. A byte of a checkpoint changes: exactly that checkpoint.
    let ckpt = r.join("runs/pretrain/ckpt-2.bin");
    let good = std::fs::read(&ckpt).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 0xff;
    std::fs::write(&ckpt, &bad).unwrap();
    assert_eq!(
        errors(&audit_json(&r, 1)),
        [(
            "checkpoint-digest".into(),
            "pretrain.cairn.lock".into(),
            "runs/pretrain/ckpt-2.bin".into()
        )]
    );
    let gh = cairn(&r, &["audit", "--format", "github"]).expect(1).stdout;
    assert!(
        gh.starts_with("::error file=pretrain.cairn.lock,title=cairn audit%3A checkpoint-digest::"),
        "{gh}"
    );
    std::fs::write(&ckpt, &good).unwrap();
    audit_json(&r, 0);

    // 2. A parent is gone: the lock that produced the fine-tune's input.
    let pre_text = r.read("pretrain.cairn.lock");
    std::fs::remove_file(r.join("pretrain.cairn.lock")).unwrap();
    assert_eq!(
        errors(&audit_json(&r, 1)),
        [(
            "dangling-input".into(),
            "finetune.cairn.lock".into(),
            "pretrain.cairn.lock#runs/pretrain/ckpt-2.bin".into()
        )]
    );
    // ... or a checkpoint's parent entry is gone from its lock.
    let without_first = {
        let mut t: toml::Table = pre_text.parse().unwrap();
        let list = t["checkpoint"].as_array_mut().unwrap();
        list.retain(|c| c["path"].as_str() != Some("runs/pretrain/ckpt-1.bin"));
        toml::to_string(&t).unwrap()
    };
    r.write("pretrain.cairn.lock", without_first);
    assert_eq!(
        errors(&audit_json(&r, 1)),
        [(
            "dangling-parent".into(),
            "pretrain.cairn.lock".into(),
            "runs/pretrain/ckpt-2.bin".into()
        )]
    );
    r.write("pretrain.cairn.lock", &pre_text);
    audit_json(&r, 0);

    // 3. A run locked on a dirty tree.
    r.write("quantize.py", format!("{QUANTIZE}# tweak\n"));
    cairn(&r, LOCK_QUANTIZE).expect(0);
    assert_eq!(
        errors(&audit_json(&r, 1)),
        [(
            "dirty-code".into(),
            "quantize.cairn.lock".into(),
            "run".into()
        )]
    );
    // The rule can be relaxed in cairn.toml.
    r.write("cairn.toml", "[audit]\ndirty-code = \"warning\"\n");
    let report = audit_json(&r, 0);
    assert_eq!(report["findings"][0]["level"], "warning");
    r.write("cairn.toml", "[audit]\nno-such-rule = \"off\"\n");
    cairn(&r, &["audit"]).expect(2).stderr_has("unknown rule");
}

/// A Hugging Face cache laid out as `huggingface_hub` leaves it: refs, snapshots of links to
/// blobs.
fn hf_cache(root: &Path) -> String {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = root.join("models--acme--tiny-base");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::write(repo.join("blobs/aaaa"), "{\"hidden_size\": 8}\n").unwrap();
    std::fs::write(repo.join("blobs/bbbb"), vec![7u8; 4096]).unwrap();
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::os::unix::fs::symlink("../../blobs/aaaa", snap.join("config.json")).unwrap();
    std::os::unix::fs::symlink("../../blobs/bbbb", snap.join("model.safetensors")).unwrap();
    commit.to_string()
}

#[test]
fn hub_inputs_by_commit_pass_and_by_branch_are_flagged() {
    let r = Repo::ml();
    let cache = tempfile::tempdir().unwrap();
    let commit = hf_cache(cache.path());
    let hub_cache = cache.path().to_str().unwrap();
    let with_cache = |args: &[&str]| r.cairn_env(&[("HF_HUB_CACHE", hub_cache)], args);
    with_cache(&[
        "lock",
        "--no-python",
        "--input",
        &format!("hf://acme/tiny-base@{commit}"),
    ])
    .expect(0);
    let lock = r.lock_toml("cairn.lock");
    let input = &lock["input"][0];
    assert_eq!(input["kind"].as_str(), Some("hf"));
    assert_eq!(input["commit"].as_str(), Some(commit.as_str()));
    assert!(input.get("mutable").is_none());
    assert_eq!(input["files"].as_integer(), Some(2));
    with_cache(&["audit"]).expect(0);

    // A branch: recorded with the commit it resolved to, flagged as mutable, and audit fails.
    with_cache(&["lock", "--no-python", "--input", "hf://acme/tiny-base@main"]).expect(0);
    let lock = r.lock_toml("cairn.lock");
    assert_eq!(
        lock["input"][0]["ref"].as_str(),
        Some("hf://acme/tiny-base@main")
    );
    assert_eq!(lock["input"][0]["commit"].as_str(), Some(commit.as_str()));
    assert_eq!(lock["input"][0]["mutable"].as_bool(), Some(true));
    let out = with_cache(&["audit", "--format", "json"]).expect(1);
    let report = out.json();
    assert_eq!(
        errors(&report),
        [(
            "mutable-ref".into(),
            "cairn.lock".into(),
            "hf://acme/tiny-base@main".into()
        )]
    );
    // Not in the cache: a message that says to download it.
    with_cache(&["lock", "--no-python", "--input", "hf://acme/other@main"])
        .expect(2)
        .stderr_has("download it first");
}

#[test]
fn eight_processes_adding_fifty_checkpoints_each_lose_nothing() {
    let r = Repo::ml();
    r.cairn(["lock", "--no-python"]).expect(0);
    for rank in 0..8 {
        for i in 0..50 {
            r.write(
                &format!("runs/rank{rank}/ckpt-{i:02}.bin"),
                format!("{rank}-{i}"),
            );
        }
    }
    let bin = env!("CARGO_BIN_EXE_cairn");
    let script = format!(
        "for i in $(seq -w 0 49); do {bin} checkpoint add --amend runs/rank$RANK/ckpt-$i.bin --step $((10#$i)) || exit 1; done"
    );
    let children: Vec<_> = (0..8)
        .map(|rank| {
            r.cmd_raw("bash")
                .arg("-c")
                .arg(&script)
                .env("RANK", rank.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        crate::util::Run::from(c.wait_with_output().unwrap()).expect(0);
    }
    let lock = r.lock_toml("cairn.lock");
    let ckpts = lock["checkpoint"].as_array().unwrap();
    assert_eq!(ckpts.len(), 400);
    // Each rank's chain is intact: every checkpoint after the first of a rank has a parent.
    let with_parent = ckpts.iter().filter(|c| c.get("parent").is_some()).count();
    assert!(with_parent >= 392, "{with_parent}");
    r.cairn(["verify"]).expect(0);
}

#[test]
fn checkpoint_add_bad_input() {
    let r = Repo::ml();
    r.cairn(["lock", "--no-python"]).expect(0);
    let before = r.read("cairn.lock");
    r.cairn(["checkpoint", "add", "--amend", "runs/none.bin"])
        .expect(2)
        .stderr_has("checkpoint does not exist");
    let outside = tempfile::NamedTempFile::new().unwrap();
    r.cairn(amend_checkpoint(outside.path().to_str().unwrap(), &[]))
        .expect(2)
        .stderr_has("inside the project");
    r.write("runs/a.bin", "a");
    r.cairn(amend_checkpoint("runs/a.bin", &["--metric", "loss=abc"]))
        .expect(2)
        .stderr_has("is not a number");
    r.cairn(amend_checkpoint("runs/a.bin", &["--parent", "../x"]))
        .expect(2)
        .stderr_has("escapes the project");
    assert_eq!(r.read("cairn.lock"), before, "nothing written on bad input");
    // A lock from a newer cairn is never rewritten.
    let newer = before.replacen("version = 1", "version = 9", 1);
    r.write("cairn.lock", &newer);
    r.cairn(["checkpoint", "add", "--amend", "runs/a.bin"])
        .expect(2)
        .stderr_has("newer cairn");
    assert_eq!(r.read("cairn.lock"), newer);
}

/// A lock that git ignores (an example, a scratch run) is still found; an ignored directory is
/// not walked.
#[test]
fn ignored_lock_files_are_found_but_ignored_directories_are_not_walked() {
    let r = Repo::ml();
    r.write(".gitignore", "runs/\ncairn.lock\nscratch/\n");
    r.commit_all("ignore the lock");
    r.write("runs/model.bin", "weights");
    r.cairn(["lock", "--no-python", "--checkpoint", "runs/model.bin"])
        .expect(0);
    r.write("scratch/old.cairn.lock", "not even toml [");
    let out = r.cairn(["lineage"]).expect(0);
    out.stdout_has("checkpoint runs/model.bin");
    out.stderr_lacks("scratch");
    r.cairn(["audit"])
        .expect(0)
        .stdout_has("audit passed: 1 lock, ");
}

/// A lock file that is a link (to `/dev/zero`, or to another file) is found and refused with the
/// reason, never read: lineage warns and goes on, audit fails naming it.
#[test]
fn a_lock_that_is_a_link_is_named_not_read() {
    let r = Repo::new();
    std::os::unix::fs::symlink("/dev/zero", r.join("zero.cairn.lock")).unwrap();
    std::fs::create_dir_all(r.join("sub")).unwrap();
    std::os::unix::fs::symlink("../README.md", r.join("sub/cairn.lock")).unwrap();
    r.write("README.md", "not a lock\n");
    r.commit_all("links named like locks");
    r.cairn(["lineage"])
        .expect(0)
        .stderr_has("skipped zero.cairn.lock")
        .stderr_has("skipped sub/cairn.lock")
        .stderr_has("it is a symbolic link");
    r.cairn(["audit"])
        .expect(1)
        .stdout_has("[lock-invalid] zero.cairn.lock")
        .stdout_has("[lock-invalid] sub/cairn.lock");
}
