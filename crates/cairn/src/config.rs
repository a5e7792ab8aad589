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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, IoResultExt, Result};

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
        let path = root.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Config::default(), None))
            }
            Err(e) => return Err(e).ctx("cannot read", &path),
        };
        let config: Config = toml::from_str(&text).map_err(|e| Error::ConfigSyntax {
            path: path.clone(),
            source: Box::new(e),
        })?;
        for name in config.data.keys() {
            if !crate::model::lockfile::valid_name(name) {
                return Err(Error::Usage(format!(
                    "{}: dataset name {name:?} must be letters, digits, `.`, `_` or `-`",
                    path.display()
                )));
            }
        }
        Ok((config, Some(path)))
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
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (c, p) = Config::load(dir.path()).unwrap();
        assert!(c.data.is_empty() && p.is_none());
    }
}
