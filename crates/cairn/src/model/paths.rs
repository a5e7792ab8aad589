//! Relative paths as the lockfile stores them: `/`-separated, inside the project, never absolute
//! and never climbing out with `..`. Every path read from a lock goes through [`RelPath::parse`]
//! before it touches the file system.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// A validated relative path: non-empty, `/`-separated, no `.` or `..` component, no empty
/// component, no NUL, not absolute.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

impl RelPath {
    /// Check a path string from a lock or the command line.
    pub fn parse(s: &str) -> Result<RelPath> {
        let refuse = |message: &str| {
            Err(Error::BadPath {
                path: crate::text::visible(s).into_owned(),
                message: message.to_string(),
            })
        };
        if s.is_empty() {
            return refuse("empty path");
        }
        if s.starts_with('/') {
            return refuse("path must be relative to the project, not absolute");
        }
        if s.contains('\0') {
            return refuse("path contains a NUL byte");
        }
        if crate::text::has_control(s) {
            return refuse("path contains a control character (shown escaped)");
        }
        for part in s.split('/') {
            match part {
                "" => return refuse("path has an empty component (`//` or a trailing `/`)"),
                "." => return refuse("path has a `.` component"),
                ".." => return refuse("path escapes the project with `..`"),
                _ => {}
            }
        }
        Ok(RelPath(s.to_string()))
    }

    /// Make a relative path from a file-system path below `root` (both absolute or both
    /// relative to the same directory; `path` is normalised lexically first).
    pub fn from_fs(root: &Path, path: &Path) -> Result<RelPath> {
        let norm = normalize(path);
        let rel = norm.strip_prefix(root).map_err(|_| Error::BadPath {
            path: path.display().to_string(),
            message: format!("path is outside the project {}", root.display()),
        })?;
        let text = rel.to_str().ok_or_else(|| Error::BadPath {
            path: path.display().to_string(),
            message: "path is not valid UTF-8".into(),
        })?;
        RelPath::parse(text)
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This path below `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Lexically normalise a path: drop `.` components and resolve `..` against what came before
/// (without touching the file system).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Make `path` absolute against `cwd` and normalise it lexically.
pub fn absolutize(cwd: &Path, path: &Path) -> PathBuf {
    normalize(&cwd.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_relative_paths() {
        for ok in ["a", "data/train", "a.b/c-d_e", "x/.hidden"] {
            assert_eq!(RelPath::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_escapes_and_absolute_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/",
            "./a",
            "a/./b",
            "a\0b",
            "a\nb",
            "runs/\x1b[2Jx",
            "evil\u{202e}txt",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn from_fs_strips_the_root() {
        let root = Path::new("/repo");
        assert_eq!(
            RelPath::from_fs(root, Path::new("/repo/./data/../data/x"))
                .unwrap()
                .as_str(),
            "data/x"
        );
        assert!(RelPath::from_fs(root, Path::new("/elsewhere/x")).is_err());
        assert!(RelPath::from_fs(root, Path::new("/repo")).is_err());
    }
}
