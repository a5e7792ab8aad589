//! Trust in a project's `cairn.toml`, kept on the user's machine and never in the repository.
//!
//! A committed `cairn.toml` is written by whoever wrote the repository. Most of it only says
//! where things are inside the project, but two kinds of setting reach further: one that chooses
//! a program to run (`python`) and one that names a location outside the project (`[data]`,
//! `checkpoints`, `outputs` or `inputs` with an absolute path or one that leads out). Those are
//! honoured only when the user has trusted this exact file for this exact project:
//! `cairn trust` records the BLAKE3 of the file's bytes and the project's canonical path in the
//! user's data directory (`$XDG_DATA_HOME/cairn/trust/`, else `~/.local/share/cairn/trust/`),
//! one small file per project, the way `direnv allow` and `mise trust` do. Any edit of the file
//! changes its digest and so revokes the trust; a clone elsewhere is another path and is not
//! trusted. `cairn init` trusts the file it writes. See spec/security.md.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The directory of trust records: `$XDG_DATA_HOME/cairn/trust`, else
/// `$HOME/.local/share/cairn/trust`. `None` without either variable.
pub fn store_dir() -> Option<PathBuf> {
    crate::fs::user_dir("XDG_DATA_HOME", ".local/share").map(|d| d.join("cairn").join("trust"))
}

/// One trust record: a project root and the digest of the `cairn.toml` the user trusted there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The canonical project root.
    pub root: PathBuf,
    /// `blake3:<hex>` of the trusted `cairn.toml` bytes.
    pub config: String,
}

/// The digest a trust record stores for these `cairn.toml` bytes.
pub fn config_digest(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

fn record_path(store: &Path, root: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let id = blake3::hash(root.as_os_str().as_bytes()).to_hex();
    store.join(format!("{}.toml", &id[..32]))
}

fn read_record(path: &Path) -> Option<Record> {
    let bytes = crate::fs::read_bounded(path, 64 << 10).ok()?;
    toml::from_str(std::str::from_utf8(&bytes).ok()?).ok()
}

/// Does the user trust `config` (the bytes of `cairn.toml`) in the project at `root`?
pub fn is_trusted(root: &Path, config: &[u8]) -> bool {
    let Some(store) = store_dir() else {
        return false;
    };
    read_record(&record_path(&store, root))
        .is_some_and(|r| r.root == root && r.config == config_digest(config))
}

fn no_store() -> Error {
    Error::Refused {
        message: "no place to keep trust records: neither $XDG_DATA_HOME nor $HOME is set".into(),
        hint: "set HOME (or XDG_DATA_HOME) to your home directory".into(),
    }
}

/// Trust the `cairn.toml` bytes `config` in the project at `root` (canonical). Returns where the
/// record was written.
pub fn trust(root: &Path, config: &[u8]) -> Result<PathBuf> {
    let store = store_dir().ok_or_else(no_store)?;
    std::fs::create_dir_all(&store).map_err(|source| Error::Io {
        op: "cannot create directory",
        path: store.clone(),
        source,
    })?;
    let record = Record {
        root: root.to_path_buf(),
        config: config_digest(config),
    };
    let text = format!(
        "# Written by `cairn trust`: this user trusts this cairn.toml in this project.\n{}",
        toml::to_string(&record).map_err(|e| Error::Usage(e.to_string()))?
    );
    let path = record_path(&store, root);
    crate::fs::atomic_write(&path, text.as_bytes())?;
    Ok(path)
}

/// What [`trust_project`] did.
#[derive(Debug, Clone)]
pub struct Trusted {
    /// The trusted file.
    pub config: PathBuf,
    /// Its digest, as recorded.
    pub digest: String,
    /// The record written.
    pub record: PathBuf,
    /// The settings that are now used and were not before: what the user just allowed.
    pub settings: Vec<crate::config::Ignored>,
}

/// Trust the project's `cairn.toml` as it is now: read it once, check that it parses, and
/// record the digest of exactly those bytes. Refused when there is no cairn.toml.
pub fn trust_project(project: &crate::project::Project) -> Result<Trusted> {
    let (config, path, bytes) = crate::config::Config::load_bytes(&project.root)?;
    let Some(path) = path else {
        return Err(Error::Refused {
            message: format!(
                "there is no {} in {}; nothing to trust",
                crate::config::FILE_NAME,
                project.root.display()
            ),
            hint: "`cairn init` writes one (and trusts it); without one, nothing needs trust"
                .into(),
        });
    };
    let settings = config.reaching_outside(&project.root, project.boundary());
    let record = trust(&project.root, &bytes)?;
    Ok(Trusted {
        config: path,
        digest: config_digest(&bytes),
        record,
        settings,
    })
}

/// Forget the trust in the project at `root`. `Ok(false)` when there was none.
pub fn revoke(root: &Path) -> Result<bool> {
    let store = store_dir().ok_or_else(no_store)?;
    let path = record_path(&store, root);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(Error::Io {
            op: "cannot remove",
            path,
            source,
        }),
    }
}

/// Every trust record, sorted by project root, each with whether the project's `cairn.toml`
/// still has the trusted bytes.
pub fn list() -> Result<Vec<(Record, bool)>> {
    let Some(store) = store_dir() else {
        return Ok(Vec::new());
    };
    let rd = match std::fs::read_dir(&store) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                op: "cannot read directory",
                path: store,
                source,
            })
        }
    };
    let mut out: Vec<(Record, bool)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".toml"))
        .filter_map(|e| read_record(&e.path()))
        .map(|r| {
            let current = crate::fs::read_bounded(
                &r.root.join(crate::config::FILE_NAME),
                crate::fs::MAX_CONFIG_BYTES,
            )
            .ok()
            .is_some_and(|b| config_digest(&b) == r.config);
            (r, current)
        })
        .collect();
    out.sort_by(|a, b| a.0.root.cmp(&b.0.root));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_names_its_algorithm() {
        let d = config_digest(b"python = \"x\"\n");
        assert!(d.starts_with("blake3:") && d.len() == 7 + 64, "{d}");
        assert_ne!(d, config_digest(b"python = \"y\"\n"));
    }
}
