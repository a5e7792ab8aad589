//! The framework callbacks of the Python package (`cairn.keras`, `cairn.transformers`,
//! `cairn.lightning`) against the real libraries, inside real `cairn lock -- python train.py`
//! runs: one checkpoint per save, with its step, the last logged metrics and the previous save
//! as its parent; and examples/keras-mnist-like locked and rebuilt bit for bit.
//!
//! Keras 3 (JAX backend, CPU) is installed offline from a directory of wheels named by
//! CAIRN_TEST_KERAS_WHEELS (`pip download -d DIR keras 'jax[cpu]' scikit-learn`; .ci/run makes
//! it): the tests serve it, with the cairn-ml wheel, as a local package index, so that the
//! rebuild installs the same packages again without the network. Without it (build.rs sets the
//! `cairn_keras` cfg) or without maturin they are ignored with the reason.
//!
//! transformers and Lightning need PyTorch: those tests are ignored with the reason and run with
//! `cargo test --test integration -- --ignored frameworks::` where torch is installed (in the
//! interpreter named by CAIRN_TEST_TORCH_PYTHON, else python3).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::util::{command, run_ok, Repo, Run};

/// A PEP 503 "simple" index of the Keras wheels and the cairn-ml wheel under the target
/// directory (made once per test run), and a venv with the example's packages installed from it.
struct KerasEnv {
    index_url: String,
    venv: PathBuf,
}

fn keras_env() -> &'static KerasEnv {
    static ENV: OnceLock<KerasEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("frameworks");
        let _ = std::fs::remove_dir_all(&base);
        let simple = base.join("simple");
        let wheels = Path::new(option_env!("CAIRN_TEST_KERAS_WHEELS").unwrap_or_default());
        let mut files: Vec<PathBuf> = std::fs::read_dir(wheels)
            .unwrap_or_else(|e| panic!("CAIRN_TEST_KERAS_WHEELS={}: {e}", wheels.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "whl"))
            .collect();
        files.push(crate::python_api::wheel());
        let mut projects: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for file in &files {
            let name = file.file_name().unwrap().to_str().unwrap().to_string();
            // PEP 503: the distribution name, lower case, runs of `-_.` as one `-`.
            let project = name.split('-').next().unwrap().to_lowercase();
            let project = project.replace(['_', '.'], "-");
            let dir = simple.join(&project);
            std::fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(file.canonicalize().unwrap(), dir.join(&name)).unwrap();
            projects.entry(project).or_default().push(name);
        }
        for (project, names) in &projects {
            let links: String = names
                .iter()
                .map(|n| format!("<a href=\"{n}\">{n}</a>\n"))
                .collect();
            std::fs::write(
                simple.join(project).join("index.html"),
                format!("<!DOCTYPE html><html><body>\n{links}</body></html>\n"),
            )
            .unwrap();
        }
        let index_url = format!("file://{}", simple.display());
        let venv = base.join("venv");
        run_ok(command("python3").args(["-m", "venv"]).arg(&venv));
        run_ok(
            command(venv.join("bin/python"))
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .args(["--no-input", "--no-cache-dir", "--index-url", &index_url])
                .args(["cairn-ml", "keras", "jax", "scikit-learn"]),
        );
        KerasEnv { index_url, venv }
    })
}

/// A repository holding examples/keras-mnist-like (its train.py and .gitignore), committed.
fn keras_example() -> Repo {
    let r = Repo::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/keras-mnist-like");
    for name in ["train.py", ".gitignore", "README.md"] {
        r.write(name, std::fs::read(example.join(name)).unwrap());
    }
    r.commit_all("the keras example");
    r
}

/// The lock's checkpoint entries whose path starts with `prefix`, by path.
fn checkpoints(lock: &toml::Table, prefix: &str) -> Vec<toml::Table> {
    let mut found: Vec<toml::Table> = lock["checkpoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_table().unwrap().clone())
        .filter(|c| c["path"].as_str().unwrap().starts_with(prefix))
        .collect();
    found.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    found
}

/// Each entry has the expected path and step, the digest of the file or directory on disk, the
/// previous entry as its parent (the first: none), and `metric` among its metrics.
fn assert_chain(r: &Repo, got: &[toml::Table], expected: &[(&str, i64)], metric: &str) {
    let paths: Vec<&str> = got.iter().map(|c| c["path"].as_str().unwrap()).collect();
    let want: Vec<&str> = expected.iter().map(|(p, _)| *p).collect();
    assert_eq!(paths, want);
    for (i, (c, (path, step))) in got.iter().zip(expected).enumerate() {
        assert_eq!(c["step"].as_integer(), Some(*step), "{c}");
        let parent = c.get("parent").and_then(|p| p.as_str());
        assert_eq!(parent, i.checked_sub(1).map(|p| expected[p].0), "{c}");
        assert!(c["metrics"][metric].as_float().is_some(), "{c}");
        let digest = r.cairn(["hash", path]).expect(0).stdout;
        assert!(digest.contains(c["digest"].as_str().unwrap()), "{c}");
    }
}

/// The example trains for real (Keras 3, JAX, CPU) under `cairn lock`: its callback records one
/// checkpoint per epoch with the epoch as step, that epoch's logged metrics (the same numbers
/// Keras's history has) and the previous epoch as parent. Then `cairn rebuild --run`, in a new
/// worktree and a new venv installed from the same (local) index, gives every checkpoint and the
/// metrics file again, bit for bit.
#[test]
#[cfg_attr(
    not(all(cairn_keras, cairn_maturin)),
    ignore = "needs maturin and CAIRN_TEST_KERAS_WHEELS (pip download -d DIR keras 'jax[cpu]' scikit-learn); .ci/run sets both up"
)]
fn keras_example_records_each_epoch_and_rebuilds_bit_identically() {
    let env = keras_env();
    let py = env.venv.join("bin/python");
    let py = py.to_str().unwrap();
    let r = keras_example();
    let index = [("PIP_INDEX_URL", env.index_url.as_str())];
    r.cairn_env(
        &index,
        [
            "lock",
            "--python",
            py,
            "--output",
            "metrics.json",
            "--seed",
            "0",
            "--",
            py,
            "train.py",
        ],
    )
    .expect(0);
    let lock = r.lock_toml("cairn.lock");
    // The rebuild installs from the index recorded here: the local one, without the network.
    assert_eq!(
        lock["python"]["index-url"].as_str(),
        Some(env.index_url.as_str())
    );
    let got = checkpoints(&lock, "ckpt/");
    let expected = [
        ("ckpt/epoch-01.weights.h5", 1),
        ("ckpt/epoch-02.weights.h5", 2),
        ("ckpt/epoch-03.weights.h5", 3),
    ];
    assert_chain(&r, &got, &expected, "val_loss");
    // The metrics are what Keras logged for that epoch (train.py writes its history).
    let history: serde_json::Value = serde_json::from_str(&r.read("metrics.json")).unwrap();
    for (epoch, c) in got.iter().enumerate() {
        for name in ["loss", "accuracy", "val_loss", "val_accuracy"] {
            assert_eq!(
                c["metrics"][name].as_float(),
                history[name][epoch].as_f64(),
                "{name} of epoch {}",
                epoch + 1
            );
        }
    }
    assert!(
        history["val_accuracy"][2].as_f64().unwrap() > 0.8,
        "{history}"
    );
    r.cairn(["verify", "--python", py]).expect(0);
    let lineage = r
        .cairn(["lineage", "ckpt/epoch-03.weights.h5"])
        .expect(0)
        .stdout;
    assert!(lineage.contains("ckpt/epoch-01.weights.h5"), "{lineage}");
    r.commit_all("lock the digits run");

    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let out = Run::of(
        r.cmd()
            .env("PIP_NO_CACHE_DIR", "1")
            .args(["rebuild", "--into"])
            .arg(&into)
            .args(["--run", "--installer", "pip", "--format", "json"]),
    )
    .expect(0);
    let report = out.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["ran"], true, "{report}");
    for (path, _) in expected.iter().chain([("metrics.json", 0)].iter()) {
        assert!(
            std::fs::read(into.join(path)).unwrap() == std::fs::read(r.join(path)).unwrap(),
            "{path} is not bit-identical after the rebuild"
        );
    }
}

/// Outside `cairn lock` the Keras callback still saves every epoch and training goes on, with
/// one warning that the saves are not recorded; no lock is written. A file name Keras 3 cannot
/// save to is refused when the callback is made, before any training.
#[test]
#[cfg_attr(
    not(all(cairn_keras, cairn_maturin)),
    ignore = "needs maturin and CAIRN_TEST_KERAS_WHEELS (pip download -d DIR keras 'jax[cpu]' scikit-learn); .ci/run sets both up"
)]
fn keras_callback_outside_a_run_saves_warns_once_and_trains_on() {
    let env = keras_env();
    let py = env.venv.join("bin/python");
    let r = keras_example();
    let out = Run::of(
        r.cmd_raw(py.to_str().unwrap())
            .env("EPOCHS", "2")
            .arg("train.py"),
    )
    .expect(0);
    assert_eq!(
        out.stderr
            .matches("cairn: checkpoints are saved but not recorded: not inside a locked run")
            .count(),
        1,
        "{}",
        out.stderr
    );
    assert!(r.join("ckpt/epoch-02.weights.h5").is_file());
    assert!(r.join("metrics.json").is_file());
    assert!(!r.join("cairn.lock").exists());
    let out = Run::of(
        r.cmd_raw(py.to_str().unwrap())
            .env("KERAS_BACKEND", "jax")
            .args([
                "-c",
                "from cairn.keras import CairnCallback\nCairnCallback('ckpt/model.h5')",
            ]),
    )
    .expect(1);
    assert!(
        out.stderr
            .contains("ValueError: 'ckpt/model.h5': the name must end in .keras (the whole model) or .weights.h5 (the weights)"),
        "{}",
        out.stderr
    );
}

/// A venv that sees the packages of the torch interpreter (CAIRN_TEST_TORCH_PYTHON, else
/// python3) and has the cairn-ml wheel installed on top, in `dir`.
fn torch_venv(dir: &Path) -> PathBuf {
    let base = std::env::var("CAIRN_TEST_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let venv = dir.join("venv");
    run_ok(
        command(base)
            .args(["-m", "venv", "--system-site-packages"])
            .arg(&venv),
    );
    let py = venv.join("bin/python");
    run_ok(
        command(&py)
            .args(["-m", "pip", "install", "-q", "--no-index", "--no-deps"])
            .arg("--disable-pip-version-check")
            .arg(crate::python_api::wheel()),
    );
    py
}

/// Lock `script` (saved as train.py) in a new repository with `py`, without probing packages.
fn lock_script(py: &Path, script: &str) -> Repo {
    let r = Repo::new();
    r.write("train.py", script);
    r.write(".gitignore", "out/\nckpt/\n");
    r.commit_all("train");
    let py = py.to_str().unwrap();
    r.cairn(["lock", "--no-python", "--", py, "train.py"])
        .expect(0);
    r
}

const TRANSFORMERS_TRAIN: &str = r#"
import torch
from transformers import Trainer, TrainingArguments
from cairn.transformers import CairnCallback

torch.manual_seed(0)

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x, labels=None):
        out = self.linear(x).squeeze(-1)
        return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}

xs = torch.randn(32, 4)
data = [{"x": x, "labels": x.sum()} for x in xs]
args = TrainingArguments(
    output_dir="out", max_steps=6, save_steps=2, logging_steps=1,
    per_device_train_batch_size=4, report_to=[], use_cpu=True,
)
callback = CairnCallback()
Trainer(model=Tiny(), args=args, train_dataset=data, callbacks=[callback]).train()
assert [c.step for c in callback.saved] == [2, 4, 6], callback.saved
"#;

/// A real `transformers.Trainer` (a tiny torch model, CPU) saves checkpoint-2, -4 and -6: each
/// directory is recorded with its global step, the last logged loss and the previous save.
#[test]
#[ignore = "needs torch (pip install torch transformers lightning): run where torch is installed"]
fn transformers_callback_records_each_checkpoint_dir() {
    let dir = tempfile::tempdir().unwrap();
    let py = torch_venv(dir.path());
    let r = lock_script(&py, TRANSFORMERS_TRAIN);
    let lock = r.lock_toml("cairn.lock");
    let got = checkpoints(&lock, "out/checkpoint-");
    assert_chain(
        &r,
        &got,
        &[
            ("out/checkpoint-2", 2),
            ("out/checkpoint-4", 4),
            ("out/checkpoint-6", 6),
        ],
        "loss",
    );
    r.cairn(["verify", "--no-python"]).expect(0);
}

const LIGHTNING_TRAIN: &str = r#"
import torch
try:
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint
except ImportError:
    import pytorch_lightning as L
    from pytorch_lightning.callbacks import ModelCheckpoint
from cairn.lightning import CairnCallback

L.seed_everything(0)

class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

xs = torch.randn(32, 4)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, xs.sum(-1)), batch_size=8)
callback = CairnCallback()
trainer = L.Trainer(
    max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
    callbacks=[ModelCheckpoint(dirpath="ckpt", filename="e{epoch}", save_top_k=-1, auto_insert_metric_name=False), callback],
)
trainer.fit(Tiny(), loader)
assert [c.step for c in callback.saved] == [4, 8, 12], callback.saved
"#;

/// A real Lightning `Trainer` with a `ModelCheckpoint` saves after each of 3 epochs: each file
/// is recorded with its global step, the logged `train_loss` and the previous save.
#[test]
#[ignore = "needs torch (pip install torch transformers lightning): run where torch is installed"]
fn lightning_callback_records_each_saved_file() {
    let dir = tempfile::tempdir().unwrap();
    let py = torch_venv(dir.path());
    let r = lock_script(&py, LIGHTNING_TRAIN);
    let lock = r.lock_toml("cairn.lock");
    let got = checkpoints(&lock, "ckpt/");
    assert_chain(
        &r,
        &got,
        &[
            ("ckpt/e0.ckpt", 4),
            ("ckpt/e1.ckpt", 8),
            ("ckpt/e2.ckpt", 12),
        ],
        "train_loss",
    );
    r.cairn(["verify", "--no-python"]).expect(0);
}
