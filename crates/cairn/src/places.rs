//! Where this user's external datasets are on this machine, remembered by `cairn lock` and
//! kept on the user's machine, never in the repository.
//!
//! A lock never says where an external dataset is (spec/lockfile.md §12): a lock comes from a
//! repository, and a repository must not choose what verify reads. But the user who locked a
//! run on this machine already told cairn where the data is. So `cairn lock` remembers the
//! real (canonical) location of every external dataset it hashed in a small record in the
//! user's data directory (`$XDG_DATA_HOME/cairn/data/`, else `~/.local/share/cairn/data/`),
//! one file per project, named by and holding the project's canonical root, the way
//! [`crate::trust`] keeps its records. `cairn verify` (and rebuild's data step) in the same
//! project then reads the dataset there without `--data` or a `cairn.toml` entry.
//!
//! What keeps a repository from choosing the place (spec/security.md §4):
//! * the record is outside the repository and written only by `cairn lock`, from a location the
//!   user gave on its command line or in a cairn.toml they trust;
//! * it is found by the canonical project root and must name that root inside it: a clone at
//!   another path has no record, and a copied record names another root;
//! * it is used only when it is a regular file (not a link) owned by the user running cairn and
//!   writable by nobody else, and when the data directory is not inside the repository (a
//!   `XDG_DATA_HOME` pointing into the checkout is ignored).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The most a record may hold.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// The directory of location records: `$XDG_DATA_HOME/cairn/data`, else
/// `$HOME/.local/share/cairn/data`. `None` without either variable.
pub fn store_dir() -> Option<PathBuf> {
    crate::fs::user_dir("XDG_DATA_HOME", ".local/share").map(|d| d.join("cairn").join("data"))
}

/// One project's remembered locations.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The canonical project root.
    pub root: PathBuf,
    /// Dataset name -> its canonical location on this machine.
    #[serde(default)]
    pub data: BTreeMap<String, PathBuf>,
}

fn record_path(store: &Path, root: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let id = blake3::hash(root.as_os_str().as_bytes()).to_hex();
    store.join(format!("{}.toml", &id[..32]))
}

/// Is `dir` (or, when it does not exist yet, its nearest existing ancestor) inside `boundary`?
fn inside(dir: &Path, boundary: &Path) -> bool {
    let mut d = Some(dir);
    while let Some(p) = d {
        if let Ok(real) = p.canonicalize() {
            return real.starts_with(boundary);
        }
        d = p.parent();
    }
    false
}

/// Read a record under the rules above; `None` for anything else (absent, a link, another
/// owner, writable by others, too large, not a record).
fn read_record(path: &Path) -> Option<Record> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_file()
        || meta.uid() != me
        || meta.mode() & 0o022 != 0
        || meta.len() > MAX_RECORD_BYTES
    {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_string(&mut text)
        .ok()?;
    toml::from_str(&text).ok()
}

/// `O_NOFOLLOW | O_NONBLOCK`: never through a link, never hanging on a FIFO.
fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

/// Where this user's own `cairn lock` found the external dataset `name` of the project at
/// `root` (canonical) on this machine. `boundary` is the repository root (or the project
/// root without git): a data directory inside it is never read.
pub fn recall(root: &Path, boundary: &Path, name: &str) -> Option<PathBuf> {
    let store = store_dir()?;
    if inside(&store, boundary) {
        return None;
    }
    let record = read_record(&record_path(&store, root))?;
    if record.root != root {
        return None;
    }
    record.data.get(name).filter(|p| p.is_absolute()).cloned()
}

/// Remember where the external datasets `places` (name -> location as locked) of the project at
/// `root` are on this machine: each location is made canonical and merged into the project's
/// record. Returns the record's path, or `None` when there is nowhere to keep it (no
/// `$XDG_DATA_HOME` or `$HOME`, or a data directory inside the repository).
pub fn remember(
    root: &Path,
    boundary: &Path,
    places: &BTreeMap<String, PathBuf>,
) -> Result<Option<PathBuf>> {
    let Some(store) = store_dir() else {
        return Ok(None);
    };
    if places.is_empty() || inside(&store, boundary) {
        return Ok(None);
    }
    let path = record_path(&store, root);
    let mut record = read_record(&path)
        .filter(|r| r.root == root)
        .unwrap_or_else(|| Record {
            root: root.to_path_buf(),
            data: BTreeMap::new(),
        });
    let mut changed = false;
    for (name, place) in places {
        let Ok(real) = place.canonicalize() else {
            continue;
        };
        if record.data.get(name) != Some(&real) {
            record.data.insert(name.clone(), real);
            changed = true;
        }
    }
    if !changed && path.is_file() {
        return Ok(Some(path));
    }
    std::fs::create_dir_all(&store).map_err(|source| Error::Io {
        op: "cannot create directory",
        path: store.clone(),
        source,
    })?;
    let text = format!(
        "# Written by `cairn lock`: where this user's external datasets of this project are on this machine.\n{}",
        toml::to_string(&record).map_err(|e| Error::Usage(e.to_string()))?
    );
    crate::fs::atomic_write(&path, text.as_bytes())?;
    // Readable and writable by this user only (the temporary file got the umask's mode).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| Error::Io {
                op: "cannot set permissions of",
                path: path.clone(),
                source,
            },
        )?;
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_named_by_the_root() {
        let store = Path::new("/s");
        assert_ne!(
            record_path(store, Path::new("/a/project")),
            record_path(store, Path::new("/b/project"))
        );
        assert!(record_path(store, Path::new("/a")).starts_with(store));
    }

    #[test]
    fn a_record_writable_by_others_or_a_link_is_not_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        let record = Record {
            root: "/p".into(),
            data: BTreeMap::from([("big".to_string(), PathBuf::from("/mnt/big"))]),
        };
        std::fs::write(&path, toml::to_string(&record).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_record(&path), Some(record));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(read_record(&path), None, "writable by others");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_record(&link), None, "a link");
    }
}
