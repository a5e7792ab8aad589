//! What a lock says about Python distributions: where each came from ([`Source`]), conda
//! packages, the PyTorch build, and the two name rules every reader of a lock needs (PEP 503
//! names, `file://` URLs). The probe ([`crate::probe::python`]) fills these; the model, the
//! comparison and the commands read them.

use std::path::PathBuf;

use crate::content::digest::Digest;

/// Where a distribution came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A package index (pip and uv do not record which one).
    Registry,
    /// A version-control URL at a commit.
    Vcs {
        /// `git+https://...` (credentials removed).
        url: String,
        /// The commit installed.
        commit: String,
    },
    /// An archive (wheel or sdist) by URL, with its hash when the installer kept it.
    Archive {
        /// The URL (credentials removed).
        url: String,
        /// `sha256=<hex>`, when known.
        hash: Option<String>,
    },
    /// A local directory.
    Directory {
        /// `file://` URL of the directory.
        url: String,
        /// Installed in editable (develop) mode.
        editable: bool,
        /// The directory's git commit, when it is in a git repository.
        commit: Option<String>,
        /// The digest of that repository's uncommitted change, when there is one.
        change: Option<Digest>,
    },
}

impl Source {
    /// The lock's name for this kind of source: `registry`, `vcs`, `archive` or `directory`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Registry => "registry",
            Source::Vcs { .. } => "vcs",
            Source::Archive { .. } => "archive",
            Source::Directory { .. } => "directory",
        }
    }

    /// Where it was installed from; `None` for a registry.
    pub fn url(&self) -> Option<&str> {
        match self {
            Source::Registry => None,
            Source::Vcs { url, .. }
            | Source::Archive { url, .. }
            | Source::Directory { url, .. } => Some(url),
        }
    }

    /// The git commit installed (VCS) or of the directory's repository, when there is one.
    pub fn commit(&self) -> Option<&str> {
        match self {
            Source::Vcs { commit, .. } => Some(commit),
            Source::Directory { commit, .. } => commit.as_deref(),
            Source::Registry | Source::Archive { .. } => None,
        }
    }
}

/// A conda package from `conda-meta/*.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondaPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Build string.
    pub build: Option<String>,
    /// Channel URL or name.
    pub channel: Option<String>,
    /// SHA-256 of the package archive, when recorded.
    pub sha256: Option<String>,
}

/// What PyTorch was built with, read from files (never by importing it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TorchStack {
    /// `torch.__version__`.
    pub version: Option<String>,
    /// `torch.version.cuda`.
    pub cuda: Option<String>,
    /// `torch.version.git_version`.
    pub git_version: Option<String>,
    /// cuDNN, from the nvidia-cudnn wheel's `cudnn_version.h`.
    pub cudnn: Option<String>,
    /// NCCL, from the nvidia-nccl wheel's `nccl.h`.
    pub nccl: Option<String>,
}

/// PEP 503 normalisation: lower case, every run of `-`, `_` and `.` becomes one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The path of a `file://` URL, percent-decoded by the `url` crate (a byte that is not UTF-8
/// stays that byte); `None` for any other URL, and for a `file://` URL with a host other than
/// `localhost` (a path on another machine).
pub fn file_url_path(url: &str) -> Option<PathBuf> {
    let parsed = url::Url::parse(url).ok()?;
    if parsed.scheme() != "file" {
        return None;
    }
    parsed.to_file_path().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls() {
        let p = |u: &str| file_url_path(u).map(|p| p.into_os_string());
        assert_eq!(p("file:///a/b%20c"), Some("/a/b c".into()));
        assert_eq!(p("file://localhost/srv/x"), Some("/srv/x".into()));
        assert_eq!(p("file:///a/%E2%9C%93"), Some("/a/\u{2713}".into()));
        assert_eq!(p("file:///a/%2541"), Some("/a/%41".into()));
        assert_eq!(p("file://otherhost/srv/x"), None);
        assert_eq!(p("https://x/y"), None);
        assert_eq!(p("not a url"), None);
        // A byte that is not UTF-8 is kept, not replaced.
        use std::os::unix::ffi::OsStrExt;
        let raw = file_url_path("file:///a/%FF").unwrap();
        assert_eq!(raw.as_os_str().as_bytes(), b"/a/\xff");
    }

    #[test]
    fn names() {
        assert_eq!(normalize_name("Foo_Bar..baz"), "foo-bar-baz");
    }
}
