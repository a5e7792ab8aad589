//! What a run imports: the top-level module names in the `import` and `from` statements of the
//! locked command's script files, and which installed distributions provide them.
//!
//! Used only to order a summary (the packages a run imports are the ones most likely to
//! explain a different result), so it is a cheap reading of text, never an import: the scripts
//! are the `.py` arguments of the locked command (`python train.py`, `torchrun ... train.py`)
//! and the module of `python -m pkg.mod`, read as text from the checkout, then the project's
//! own modules they import, up to [`MAX_FILES`] files of at most [`MAX_BYTES`] each. A file is
//! read only when it is a regular file that stays inside the repository once links are followed
//! (through [`crate::fs::read_bounded`]: a FIFO is passed over, not waited on; the checkout may be
//! a stranger's). An `import` inside a string or behind `if False:` counts too: a summary may
//! put such a package first, nothing fails because of it.
//!
//! A distribution provides the names in its `top_level.txt`, else the first components of the
//! paths in its `RECORD`; a distribution that is not installed here is matched by its name
//! (`numpy`) or a few well-known import names (`sklearn` for `scikit-learn`, see [`ALIASES`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::model::python::normalize_name;

/// At most this many files are read.
pub const MAX_FILES: usize = 64;

/// A larger file is not read.
pub const MAX_BYTES: u64 = 1 << 20;

/// Import names that differ from the distribution's name, for distributions not installed here
/// (an installed one says what it provides itself): `(import name, distribution)`.
pub const ALIASES: &[(&str, &str)] = &[
    ("sklearn", "scikit-learn"),
    ("skimage", "scikit-image"),
    ("PIL", "pillow"),
    ("yaml", "pyyaml"),
    ("cv2", "opencv-python"),
    ("bs4", "beautifulsoup4"),
    ("dateutil", "python-dateutil"),
    ("google.protobuf", "protobuf"),
    ("attr", "attrs"),
    ("Crypto", "pycryptodome"),
    ("OpenSSL", "pyopenssl"),
    ("jwt", "pyjwt"),
    ("serial", "pyserial"),
    ("zmq", "pyzmq"),
    ("git", "gitpython"),
];

/// The modules a run imports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imports {
    /// Top-level module name -> the scripts (relative to the project root) that import it, in
    /// the order they were read.
    pub modules: BTreeMap<String, Vec<String>>,
}

impl Imports {
    /// The modules of `dist` that the run imports: those `provides` lists for it (read from
    /// the installed distribution), else its name or a well-known alias.
    pub fn of_distribution(&self, dist: &str, provides: Option<&[String]>) -> Vec<String> {
        let dist = normalize_name(dist);
        let hit = |m: &str| -> bool {
            match provides.filter(|p| !p.is_empty()) {
                Some(list) => list.iter().any(|p| p == m),
                None => {
                    normalize_name(m) == dist
                        || ALIASES
                            .iter()
                            .any(|(name, d)| *d == dist && name.split('.').next() == Some(m))
                }
            }
        };
        self.modules.keys().filter(|m| hit(m)).cloned().collect()
    }

    /// The first script that imports `module`.
    pub fn first_importer(&self, module: &str) -> Option<&str> {
        self.modules
            .get(module)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// The scripts a command names: its `.py` arguments and the module of `-m`, relative to
/// `root`.
fn entry_scripts(command: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut args = command.iter().peekable();
    while let Some(a) = args.next() {
        if a == "-m" {
            if let Some(m) = args.next() {
                let base: PathBuf = m.split('.').collect();
                out.push(base.with_extension("py"));
                out.push(base.join("__main__.py"));
                out.push(base.join("__init__.py"));
            }
        } else if a.ends_with(".py") && !a.starts_with('-') {
            out.push(PathBuf::from(a));
        }
    }
    out
}

/// Read `rel` under `root` as text if it is a regular file inside `boundary` and small enough.
fn read_inside(root: &Path, boundary: &Path, rel: &Path) -> Option<String> {
    if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
        return None;
    }
    let place = root.join(rel);
    let real = place.canonicalize().ok()?;
    if !real.starts_with(boundary) {
        return None;
    }
    // A FIFO, device or oversized file is passed over, never waited on (spec/security.md §6).
    let bytes = crate::fs::read_bounded(&real, MAX_BYTES).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The modules named by the `import` and `from` statements of Python source, as written
/// (dotted), without relative imports (`from . import x`). Statements may be indented and
/// several may share a line through `;`.
pub fn imported_names(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in source.lines() {
        let line = line.split('#').next().unwrap_or("");
        for stmt in line.split(';') {
            let stmt = stmt.trim();
            if let Some(rest) = stmt.strip_prefix("import ") {
                for part in rest.split(',') {
                    let name = part.split_whitespace().next().unwrap_or("");
                    push_module(&mut out, name.trim_matches(|c| c == '(' || c == ')'));
                }
            } else if let Some(rest) = stmt.strip_prefix("from ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some("import")) = (words.next(), words.next()) {
                    push_module(&mut out, name);
                }
            }
        }
    }
    out
}

fn push_module(out: &mut Vec<String>, name: &str) {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
    if ok && !out.iter().any(|n| n == name) {
        out.push(name.to_string());
    }
}

/// The modules the run of `command` imports, reading its scripts under `root` and, from them,
/// the project's own modules (a `model.py` or `model/` next to the script or at the root).
/// Nothing is read outside `boundary`.
pub fn scan(root: &Path, boundary: &Path, command: &[String]) -> Imports {
    let mut imports = Imports::default();
    let mut queue: Vec<PathBuf> = entry_scripts(command);
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut local: BTreeSet<String> = BTreeSet::new();
    let mut read = 0;
    let mut i = 0;
    while i < queue.len() && read < MAX_FILES {
        let rel = queue[i].clone();
        i += 1;
        if !seen.insert(rel.clone()) {
            continue;
        }
        let Some(text) = read_inside(root, boundary, &rel) else {
            continue;
        };
        read += 1;
        let shown = rel.to_string_lossy().into_owned();
        let dir = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        for name in imported_names(&text) {
            let parts: Vec<&str> = name.split('.').collect();
            // The project's own module, next to this script or at the root: read it too.
            let mut is_local = false;
            for base in [dir.clone(), PathBuf::new()] {
                let as_path: PathBuf = base.join(parts.iter().collect::<PathBuf>());
                let top = base.join(parts[0]);
                let candidates = [
                    as_path.with_extension("py"),
                    as_path.join("__init__.py"),
                    top.with_extension("py"),
                    top.join("__init__.py"),
                ];
                for c in candidates {
                    if root.join(&c).is_file() {
                        is_local = true;
                        queue.push(c);
                    }
                }
            }
            if is_local {
                local.insert(parts[0].to_string());
                continue;
            }
            let list = imports.modules.entry(parts[0].to_string()).or_default();
            if !list.contains(&shown) {
                list.push(shown.clone());
            }
        }
    }
    // A name that is a module of the project in one script is not a package in another.
    imports.modules.retain(|m, _| !local.contains(m));
    imports
}

/// The top-level modules an installed distribution provides, from its metadata directory
/// (`*.dist-info`, `*.egg-info`): `top_level.txt`, else the first components of the paths in
/// `RECORD`. Empty when neither can be read.
pub fn provided_modules(metadata: &Path) -> Vec<String> {
    let read = |f: &str| -> Option<String> {
        let bytes = crate::fs::read_bounded(&metadata.join(f), 16 * MAX_BYTES).ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    };
    let mut out: Vec<String> = Vec::new();
    let mut push = |name: &str| {
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    };
    if let Some(text) = read("top_level.txt") {
        for l in text.lines() {
            push(l.trim().split('/').next().unwrap_or(""));
        }
        return out;
    }
    if let Some(text) = read("RECORD") {
        for l in text.lines() {
            let path = l.split(',').next().unwrap_or("").trim_matches('"');
            let first = path.split('/').next().unwrap_or("");
            let is_dir = path.contains('/');
            if first.is_empty()
                || first == ".."
                || first == "__pycache__"
                || first.ends_with(".dist-info")
                || first.ends_with(".data")
                || first.ends_with(".pth")
            {
                continue;
            }
            let name = if is_dir {
                first
            } else if let Some(stem) = first.strip_suffix(".py") {
                stem
            } else if first.ends_with(".so") || first.ends_with(".pyd") {
                first.split('.').next().unwrap_or("")
            } else {
                continue;
            };
            push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_statements() {
        let src = "\
import os, sys as system
import numpy as np  # comment
from sklearn.linear_model import LogisticRegression
from . import sibling
from .models import Net
    import torch.nn.functional as F
x = 1; import yaml
from  PIL   import Image
def f():
    from tokenizers import (
        Tokenizer,
    )
important = 3
";
        assert_eq!(
            imported_names(src),
            [
                "os",
                "sys",
                "numpy",
                "sklearn.linear_model",
                "torch.nn.functional",
                "yaml",
                "PIL",
                "tokenizers"
            ]
        );
    }

    #[test]
    fn scripts_of_a_command() {
        let cmd = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            entry_scripts(&cmd("torchrun --nproc-per-node 8 train.py --lr 3")),
            [PathBuf::from("train.py")]
        );
        assert_eq!(
            entry_scripts(&cmd("python -m pkg.train")),
            [
                PathBuf::from("pkg/train.py"),
                PathBuf::from("pkg/train/__main__.py"),
                PathBuf::from("pkg/train/__init__.py")
            ]
        );
    }

    #[test]
    fn follows_local_modules_and_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("src/lib")).unwrap();
        std::fs::write(
            root.join("src/train.py"),
            "import numpy\nfrom model import Net\nimport lib.data\n",
        )
        .unwrap();
        std::fs::write(root.join("src/model.py"), "import torch\n").unwrap();
        std::fs::write(root.join("src/lib/__init__.py"), "").unwrap();
        std::fs::write(root.join("src/lib/data.py"), "from PIL import Image\n").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("evil.py"), "import secretpkg\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("evil.py"), root.join("evil.py")).unwrap();
        // A FIFO is passed over, not waited on.
        let status = std::process::Command::new("mkfifo")
            .arg(root.join("pipe.py"))
            .status()
            .unwrap();
        assert!(status.success());
        let cmd: Vec<String> = ["python", "src/train.py", "evil.py", "pipe.py"]
            .map(String::from)
            .into();
        let got = scan(&root, &root, &cmd);
        let names: Vec<&str> = got.modules.keys().map(String::as_str).collect();
        assert_eq!(names, ["PIL", "numpy", "torch"]);
        assert_eq!(got.first_importer("torch"), Some("src/model.py"));
        assert_eq!(got.first_importer("numpy"), Some("src/train.py"));
    }

    #[test]
    fn distributions_by_metadata_name_or_alias() {
        let mut imports = Imports::default();
        for m in ["sklearn", "numpy", "PIL", "mylib"] {
            imports.modules.insert(m.into(), vec!["train.py".into()]);
        }
        assert_eq!(imports.of_distribution("scikit-learn", None), ["sklearn"]);
        assert_eq!(imports.of_distribution("NumPy", None), ["numpy"]);
        assert_eq!(imports.of_distribution("Pillow", None), ["PIL"]);
        assert!(imports.of_distribution("torch", None).is_empty());
        let provides = ["mylib".to_string()];
        assert_eq!(
            imports.of_distribution("my-lib-dist", Some(&provides)),
            ["mylib"]
        );
    }

    #[test]
    fn provided_modules_from_record() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("six-1.16.0.dist-info");
        std::fs::create_dir(&meta).unwrap();
        std::fs::write(
            meta.join("RECORD"),
            "six.py,sha256=a,1\n__pycache__/six.cpython-311.pyc,,\nsix-1.16.0.dist-info/RECORD,,\n../../../bin/x,,\n_cffi.cpython-311-x86_64-linux-gnu.so,,\npkg/__init__.py,,\n",
        )
        .unwrap();
        assert_eq!(provided_modules(&meta), ["six", "_cffi", "pkg"]);
        std::fs::write(meta.join("top_level.txt"), "sklearn\n").unwrap();
        assert_eq!(provided_modules(&meta), ["sklearn"]);
    }
}
