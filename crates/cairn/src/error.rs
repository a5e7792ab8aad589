//! The library's error type. Every I/O error carries the path it was about, and
//! errors a user can fix carry a hint (see [`Error::hint`]).

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done ("cannot read", "cannot write", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A lockfile is not valid TOML or does not have the expected shape.
    #[error("cannot parse {}", path.display())]
    LockSyntax {
        /// The lockfile.
        path: PathBuf,
        /// The parser's message, with line and column.
        #[source]
        source: TomlSyntax,
    },
    /// A lockfile parsed but breaks a rule of the format.
    #[error("invalid lockfile {}: {message}", path.display())]
    LockInvalid {
        /// The lockfile.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The lockfile was written by a newer cairn.
    #[error(
        "{} was written by a newer cairn (lockfile version {found}); this cairn reads version {supported}",
        path.display()
    )]
    LockTooNew {
        /// The lockfile.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },
    /// `cairn.toml` is malformed.
    #[error("cannot parse {}", path.display())]
    ConfigSyntax {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line and column.
        #[source]
        source: TomlSyntax,
    },
    /// A path given by the user or found in a file is not acceptable.
    #[error("{message}: {path}")]
    BadPath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        message: String,
    },
    /// A data, checkpoint or output path does not exist.
    #[error("{what} does not exist: {}", path.display())]
    Missing {
        /// What kind of path ("data path", "checkpoint", ...).
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The directory is not inside a git repository.
    #[error("not a git repository (or any parent up to /): {}", path.display())]
    NotARepo {
        /// Where the search started.
        path: PathBuf,
    },
    /// A git operation failed.
    #[error("git: {message}")]
    Git {
        /// What was being done.
        message: String,
        /// The libgit2 error.
        #[source]
        source: git2::Error,
    },
    /// A directory walk met a symlink loop.
    #[error("symlink loop at {}", path.display())]
    SymlinkLoop {
        /// The path that closes the loop.
        path: PathBuf,
    },
    /// A file changed while it was being hashed (its size, times or identity differ between the
    /// stat before and the stat after reading it).
    #[error("{} changed while it was being read; its digest would not describe any one state of the file", path.display())]
    ChangedWhileReading {
        /// The file.
        path: PathBuf,
    },
    /// A user-declared setting is inconsistent (duplicate names, bad glob, ...).
    #[error("{0}")]
    Usage(String),
    /// Another cairn process holds the lock on this project. The lock is an OS file lock on
    /// `lock`: it is held exactly as long as that process lives, so the file existing means
    /// nothing, and removing it would let two runs interleave.
    #[error(
        "another cairn{} is working in {}: it holds the lock on {}",
        holder.map(|p| format!(" (process {p})")).unwrap_or_default(),
        dir.display(),
        lock.display()
    )]
    Busy {
        /// The project directory.
        dir: PathBuf,
        /// The lock file held.
        lock: PathBuf,
        /// The holder's process id, as it wrote it into the lock file, when it did.
        holder: Option<u32>,
    },
    /// A Python interpreter did not run, or did not say what it is.
    #[error("the Python interpreter {} failed: {detail}", path.display())]
    InterpreterFailed {
        /// The interpreter.
        path: PathBuf,
        /// What went wrong: its exit status and its last error lines.
        detail: String,
    },
    /// The git repository has no working tree, so there is no code state to record.
    #[error("the repository at {} is bare; cairn records a working tree", path.display())]
    BareRepository {
        /// The repository's git directory.
        path: PathBuf,
    },
    /// A command cannot do what was asked, for a reason the user can act on (an export of a
    /// lock without checkpoints, a `cairn init` over an existing cairn.toml, ...).
    #[error("{message}")]
    Refused {
        /// What is wrong.
        message: String,
        /// What to do about it.
        hint: String,
    },
}

impl Error {
    /// A line of advice for the user, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::LockTooNew { .. } => Some(
                "upgrade cairn (cargo install cairn-cli) to read this lockfile; it was left untouched"
                    .into(),
            ),
            Error::LockSyntax { .. } | Error::LockInvalid { .. } => Some(
                "the lockfile was left untouched; fix it by hand, or restore it with `git checkout -- <lockfile>`"
                    .into(),
            ),
            Error::NotARepo { .. } => Some(
                "run cairn inside a git repository (`git init`), or pass --no-git to lock without code"
                    .into(),
            ),
            Error::Busy { lock, holder, .. } => Some(format!(
                "wait for it to finish, then run this again; {} The lock goes away by itself when \
                 that process ends: removing {} would not stop it, only let two runs interleave",
                match holder {
                    Some(p) => format!("`ps -p {p}` shows what it is."),
                    None => format!("`fuser -v {}` shows which process it is.", lock.display()),
                },
                lock.display()
            )),
            Error::InterpreterFailed { path, .. } => Some(format!(
                "check that `{} -c pass` works, or name another interpreter with --python (or \
                 `python` in cairn.toml), or pass --no-python to record no Python environment",
                path.display()
            )),
            Error::BareRepository { .. } => Some(
                "run cairn in a clone with a checkout (`git clone`, or `git worktree add`), or \
                 pass --no-git to lock without code"
                    .into(),
            ),
            Error::ChangedWhileReading { .. } => Some(
                "wait until whatever is writing it has finished (a training run still saving?), then run cairn again"
                    .into(),
            ),
            Error::Refused { hint, .. } => Some(hint.clone()),
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                Some("check the file's permissions".into())
            }
            _ => None,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error about `path`: [`Error::Missing`] (naming `what`) when it does not exist,
    /// else [`Error::Io`] with "cannot read".
    pub(crate) fn reading(what: &'static str, path: &Path, source: std::io::Error) -> Error {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::Missing {
                what,
                path: path.to_path_buf(),
            }
        } else {
            Error::Io {
                op: "cannot read",
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Attach a path to an I/O error (after jj's `IoResultExt::context`).
pub(crate) trait IoResultExt<T> {
    /// Wrap the error with `op` and `path`.
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoResultExt<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Attach a message to a libgit2 error.
pub(crate) trait GitResultExt<T> {
    /// Wrap the error with what was being done.
    fn git(self, message: impl FnOnce() -> String) -> Result<T>;
}

impl<T> GitResultExt<T> for std::result::Result<T, git2::Error> {
    fn git(self, message: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Git {
            message: message(),
            source,
        })
    }
}

/// Where a TOML file fails to parse and why, on one line: `line L, column C: MESSAGE`.
///
/// The parser's own display quotes the offending line of the file, which is a stranger's text
/// (spec/security.md): it is left out, so nothing of the file reaches the terminal here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlSyntax {
    /// 1-based line of the error, when the parser knows it.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the error.
    pub column: Option<usize>,
    /// The parser's message, without the quoted source.
    pub message: String,
}

impl TomlSyntax {
    /// The syntax error `e` of parsing `text`.
    pub fn new(text: &str, e: &toml::de::Error) -> TomlSyntax {
        let (line, column) = match e.span() {
            Some(span) => {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        TomlSyntax {
            line,
            column,
            message: e.message().trim().to_string(),
        }
    }
}

impl std::fmt::Display for TomlSyntax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "TOML syntax error at line {l}, column {c}: ")?;
        } else {
            write!(f, "TOML syntax error: ")?;
        }
        // The message is the parser's; a key or value it quotes is the file's.
        write!(
            f,
            "{}",
            crate::text::visible(&self.message.replace('\n', " "))
        )
    }
}

impl std::error::Error for TomlSyntax {}
