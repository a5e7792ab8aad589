//! `cairn.toml`: the optional project configuration, at the project root.
//!
//! ```toml
//! checkpoints = ["runs/*.safetensors"]   # paths or globs, relative to the project root
//! outputs = ["metrics.json"]
//! python = ".venv/bin/python"             # the interpreter to record (default: see --python)
//! env = ["MY_SEED", "XLA_*"]              # more environment variables to record
//!
//! [data]                                  # name = path; a path outside the project is external
//! train = "data/train"
//! imagenet = "/mnt/shared/imagenet"
//! ```
//!
//! Unknown keys are an error: a typo must not silently drop a dataset from the lock.
//!
//! The file is committed, so it is written by whoever wrote the repository. Settings that choose
//! a program (`python`) or a location outside the repository (`[data]`, `checkpoints`, `outputs`,
//! `inputs` that lead out) are honoured only when the user trusted this exact file with
//! `cairn trust` ([`crate::trust`]); otherwise [`Config::drop_untrusted`] removes them and says
//! which, and the user gives them on the command line instead (spec/security.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The file name of the configuration.
pub const FILE_NAME: &str = "cairn.toml";

/// The parsed `cairn.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Datasets: name -> path (relative to the project root, or absolute for external data).
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Checkpoint paths or globs, relative to the project root.
    #[serde(default)]
    pub checkpoints: Vec<String>,
    /// Other output paths or globs (metrics files, exports).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// The Python interpreter whose environment to record (relative to the project root, or
    /// absolute).
    #[serde(default)]
    pub python: Option<String>,
    /// More environment variables to record with the run, besides cairn's determinism list
    /// (`NCCL_*`, `PYTHONHASHSEED`, ...). A trailing `*` matches a prefix.
    #[serde(default)]
    pub env: Vec<String>,
    /// Models every run starts from: paths, `LOCK#CHECKPOINT` or `hf://ORG/NAME@REVISION`.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// `cairn audit` rules: rule name -> "error", "warning" or "off".
    #[serde(default)]
    pub audit: BTreeMap<String, String>,
}

impl Config {
    /// Load `cairn.toml` from `root`; a missing file is an empty configuration.
    pub fn load(root: &Path) -> Result<(Config, Option<PathBuf>)> {
        let (config, path, _) = Config::load_bytes(root)?;
        Ok((config, path))
    }

    /// [`Config::load`], also returning the file's bytes (what a trust record is about). The file
    /// must be a regular file (not a symlink, FIFO or device) of at most
    /// [`crate::fs::MAX_CONFIG_BYTES`].
    pub fn load_bytes(root: &Path) -> Result<(Config, Option<PathBuf>, Vec<u8>)> {
        let path = root.join(FILE_NAME);
        let bytes = match crate::fs::read_bounded(&path, crate::fs::MAX_CONFIG_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Config::default(), None, Vec::new()))
            }
            Err(e) => return Err(crate::fs::read_error("cairn.toml", &path, e)),
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Usage(format!("{}: not UTF-8 text", path.display())))?;
        let config: Config = toml::from_str(&text).map_err(|e| Error::ConfigSyntax {
            path: path.clone(),
            source: crate::error::TomlSyntax::new(&text, &e),
        })?;
        for name in config.data.keys() {
            if !crate::model::lockfile::valid_name(name) {
                return Err(Error::Usage(format!(
                    "{}: dataset name {name:?} must be letters, digits, `.`, `_` or `-`",
                    path.display()
                )));
            }
        }
        Ok((config, Some(path), text.into_bytes()))
    }

    /// The settings that reach outside `boundary` (the repository, or the project without git;
    /// `root` is the project root the relative paths start from): `python` always (it chooses a
    /// program), and every `[data]`, `checkpoints`, `outputs` or `inputs` path that is absolute
    /// or leads out, lexically or through a symlink.
    pub fn reaching_outside(&self, root: &Path, boundary: &Path) -> Vec<Ignored> {
        let mut out = Vec::new();
        if let Some(p) = &self.python {
            out.push(Ignored {
                key: "python".into(),
                value: p.clone(),
                why: "it chooses a program to run",
            });
        }
        let outside = |v: &str| leaves(root, boundary, v);
        for (name, v) in &self.data {
            if outside(v) {
                out.push(Ignored {
                    key: format!("data.{name}"),
                    value: v.clone(),
                    why: "it is outside the repository",
                });
            }
        }
        for (key, list) in [
            ("checkpoints", &self.checkpoints),
            ("outputs", &self.outputs),
        ] {
            for v in list.iter().filter(|v| outside(v)) {
                out.push(Ignored {
                    key: key.into(),
                    value: v.clone(),
                    why: "it is outside the repository",
                });
            }
        }
        for v in &self.inputs {
            if v.starts_with("hf://") {
                continue;
            }
            let path = v.split_once('#').map_or(v.as_str(), |(lock, _)| lock);
            if outside(path) {
                out.push(Ignored {
                    key: "inputs".into(),
                    value: v.clone(),
                    why: "it is outside the repository",
                });
            }
        }
        out
    }

    /// Remove the settings of [`Config::reaching_outside`] and return them: what an untrusted
    /// `cairn.toml` may not decide.
    pub fn drop_untrusted(&mut self, root: &Path, boundary: &Path) -> Vec<Ignored> {
        let ignored = self.reaching_outside(root, boundary);
        for i in &ignored {
            match i.key.split_once('.') {
                Some(("data", name)) => {
                    self.data.remove(name);
                }
                _ => match i.key.as_str() {
                    "python" => self.python = None,
                    "checkpoints" => self.checkpoints.retain(|v| v != &i.value),
                    "outputs" => self.outputs.retain(|v| v != &i.value),
                    "inputs" => self.inputs.retain(|v| v != &i.value),
                    _ => {}
                },
            }
        }
        ignored
    }
}

/// A setting of an untrusted `cairn.toml` that cairn did not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The key: `python`, `data.NAME`, `checkpoints`, `outputs` or `inputs`.
    pub key: String,
    /// The value as written.
    pub value: String,
    /// Why it needs the user's trust.
    pub why: &'static str,
}

/// Does the path `value` (relative to `root`, or absolute; a glob is judged by the directories
/// before its first pattern character) lead outside `boundary`, lexically or through a symlink
/// that exists now?
fn leaves(root: &Path, boundary: &Path, value: &str) -> bool {
    let fixed: PathBuf = Path::new(value)
        .components()
        .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
        .collect();
    let abs = crate::model::paths::absolutize(root, &fixed);
    if !abs.starts_with(boundary) {
        return true;
    }
    // The longest part that exists, with its symlinks resolved, must still be inside.
    let mut probe = abs.as_path();
    loop {
        if std::fs::symlink_metadata(probe).is_ok() {
            return match probe.canonicalize() {
                Ok(real) => !real.starts_with(boundary),
                Err(_) => true,
            };
        }
        match probe.parent() {
            Some(p) => probe = p,
            None => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "checkpoint = [\"x\"]\n").unwrap();
        let err = Config::load(dir.path()).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("unknown field `checkpoint`"), "{chain}");
    }

    #[test]
    fn settings_that_reach_outside_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("data/etc")).unwrap();
        std::fs::write(
            root.join(FILE_NAME),
            "python = \".venv/bin/python\"\ncheckpoints = [\"runs/*.pt\", \"../x/*.pt\"]\ninputs = [\"hf://a/b@main\", \"/m.pt\"]\n[data]\ninside = \"data/train\"\nabs = \"/home/victim/.ssh\"\nup = \"../up\"\nlink = \"data/etc\"\n",
        )
        .unwrap();
        let (mut c, _) = Config::load(&root).unwrap();
        let ignored = c.drop_untrusted(&root, &root);
        let keys: Vec<(&str, &str)> = ignored
            .iter()
            .map(|i| (i.key.as_str(), i.value.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("python", ".venv/bin/python"),
                ("data.abs", "/home/victim/.ssh"),
                ("data.link", "data/etc"),
                ("data.up", "../up"),
                ("checkpoints", "../x/*.pt"),
                ("inputs", "/m.pt"),
            ]
        );
        assert_eq!(c.python, None);
        assert_eq!(c.data.keys().collect::<Vec<_>>(), ["inside"]);
        assert_eq!(c.checkpoints, ["runs/*.pt"]);
        assert_eq!(c.inputs, ["hf://a/b@main"]);
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (c, p) = Config::load(dir.path()).unwrap();
        assert!(c.data.is_empty() && p.is_none());
    }
}
