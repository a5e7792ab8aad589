//! pyenv shims, resolved the way pyenv resolves them, without running the shim.
//!
//! A pyenv shim (`$PYENV_ROOT/shims/python3`) is a bash script that runs `pyenv exec`, which
//! starts a dozen more processes to choose a version and then execs that version's own
//! executable. cairn reads the same inputs itself (pyenv's `pyenv-version-name`,
//! `pyenv-version-file`, `pyenv-version-file-read` and `pyenv-which`):
//!
//! 1. `PYENV_VERSION`, a `:`-separated list of names;
//! 2. else the first `.python-version` file from `$PYENV_DIR` up to `/`, then (when `PYENV_DIR`
//!    is set to another directory) from the current directory up: its first word on each line
//!    that is not empty and not a `#` comment, in order;
//! 3. else `$PYENV_ROOT/version`, read the same way;
//! 4. nothing at all, or `system`, means the next program of the shim's name on `PATH` once the
//!    shims directory is taken out of it.
//!
//! A name chooses `$PYENV_ROOT/versions/NAME/bin/PROGRAM`, where `PROGRAM` is the shim's own
//! name (`python3`, `python`); of a list, the first name whose program is there wins, as in
//! `pyenv which`.
//!
//! A repository's `.python-version` is read because pyenv reads it when the user types `python`
//! in the checkout: it may choose among the user's installed versions and nothing else. A name
//! that is empty, `.` or `..`, holds a `/` or a control character, or is not a directory right
//! under `$PYENV_ROOT/versions/` is refused: cairn does not choose, it runs the shim as before
//! (in a new empty directory, where no repository's file is seen) and says why
//! ([`Shim::Refused`]). So do a file that is not a regular file (a link, a FIFO) or larger than
//! [`MAX_VERSION_FILE`], a `PYENV_DIR` that is not a directory, a version without the program,
//! and a `system` that leads to another script. pyenv's prefix names (`3.11` for the newest
//! installed 3.11.x) and its plugins' hooks are not followed: such a name is refused too.

use std::path::{Path, PathBuf};

/// The most of a version file cairn reads (pyenv reads 1024 bytes of each line).
pub const MAX_VERSION_FILE: u64 = 64 << 10;

/// What chose the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetBy {
    /// `PYENV_VERSION`.
    Variable,
    /// A `.python-version` file or `$PYENV_ROOT/version`, with its bytes.
    File(PathBuf, Vec<u8>),
    /// No variable and no file: `system`.
    Nothing,
}

/// The version pyenv would run, found without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The program to run in the shim's place (`$PYENV_ROOT/versions/NAME/bin/python3`, or the
    /// system's `python3`).
    pub executable: PathBuf,
    /// The version's name (`3.11.7`, `system`).
    pub version: String,
    /// What chose it.
    pub set_by: SetBy,
    /// `PYENV_VERSION`'s value, when it is set.
    pub variable: Option<String>,
}

impl Choice {
    /// Everything that made this choice, for the probe cache's key: the version's name, the
    /// variable, and the path and bytes of the file that chose it.
    pub fn key_bytes(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Vec::new();
        let mut field = |b: &[u8]| {
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        };
        field(self.version.as_bytes());
        match &self.variable {
            Some(v) => {
                field(b"PYENV_VERSION");
                field(v.as_bytes());
            }
            None => field(b"no PYENV_VERSION"),
        }
        match &self.set_by {
            SetBy::Variable => field(b"variable"),
            SetBy::File(path, bytes) => {
                field(b"file");
                field(path.as_os_str().as_bytes());
                field(bytes);
            }
            SetBy::Nothing => field(b"nothing"),
        }
        out
    }
}

/// What cairn makes of an interpreter path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shim {
    /// Not a pyenv shim: run it as it is.
    No,
    /// A pyenv shim, and the version it would run.
    Resolved(Choice),
    /// A pyenv shim whose choice cairn does not make (the reason, for a warning): run the shim.
    Refused(String),
}

/// Resolve `executable` when it is a pyenv shim (see the module documentation).
pub fn resolve(executable: &Path) -> Shim {
    let given = if executable.components().count() > 1 {
        match std::path::absolute(executable) {
            Ok(p) => p,
            Err(_) => return Shim::No,
        }
    } else {
        match crate::process::on_path(&executable.to_string_lossy()) {
            Some(p) => p,
            None => return Shim::No,
        }
    };
    let Ok(canonical) = given.canonicalize() else {
        return Shim::No;
    };
    if is_script(&canonical) != Some(true) {
        return Shim::No;
    }
    let Some(root) = shim_root(&canonical) else {
        return Shim::No;
    };
    // The shim runs `pyenv exec "${0##*/}"`: the name it was started by.
    let Some(program) = given.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Shim::No;
    };
    match choose(&root, &program) {
        Ok(choice) => Shim::Resolved(choice),
        Err(why) => Shim::Refused(format!(
            "{why}; cairn runs the pyenv shim {} instead, which does not see a .python-version in the project",
            crate::text::visible_path(&given)
        )),
    }
}

/// Does the file start with `#!`? `None` when it cannot be read.
pub(crate) fn is_script(path: &Path) -> Option<bool> {
    use std::io::Read;
    let mut head = [0u8; 2];
    let mut f = std::fs::File::open(path).ok()?;
    let n = f.read(&mut head).ok()?;
    Some(n == 2 && &head == b"#!")
}

/// The `PYENV_ROOT` of a pyenv shim (`$PYENV_ROOT/shims/NAME`, a script that execs
/// `$PYENV_ROOT/libexec/pyenv exec`); `None` for any other script.
pub(crate) fn shim_root(shim: &Path) -> Option<PathBuf> {
    let dir = shim.parent()?;
    if dir.file_name()? != "shims" {
        return None;
    }
    let text = crate::fs::read_bounded(shim, 64 << 10).ok()?;
    let text = String::from_utf8(text).ok()?;
    if !text.contains("pyenv\" exec") && !text.contains("pyenv exec") {
        return None;
    }
    // The shim sets PYENV_ROOT itself: `export PYENV_ROOT="/home/me/.pyenv"`.
    let root = text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("export PYENV_ROOT=")?;
        Some(PathBuf::from(v.trim_matches('"').trim_matches('\'')))
    });
    root.filter(|r| r.is_absolute())
        .or_else(|| dir.parent().map(Path::to_path_buf))
}

/// A variable's value, when it is set and not empty.
fn var(name: &str) -> Option<String> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(|v| v.to_string_lossy().into_owned())
}

/// The version the shim would run, or why cairn does not choose it.
fn choose(root: &Path, program: &str) -> Result<Choice, String> {
    let variable = var("PYENV_VERSION");
    let (names, set_by) = match &variable {
        Some(v) => (v.split(':').map(str::to_string).collect(), SetBy::Variable),
        None => {
            let file = version_file(root)?;
            let names = match &file {
                Some((_, bytes)) => version_names(bytes),
                None => Vec::new(),
            };
            let set_by = match file {
                Some((path, bytes)) => SetBy::File(path, bytes),
                None => SetBy::Nothing,
            };
            (names, set_by)
        }
    };
    let origin = match &set_by {
        SetBy::Variable => "PYENV_VERSION".to_string(),
        SetBy::File(p, _) => crate::text::visible_path(p),
        SetBy::Nothing => "no version set".to_string(),
    };
    let names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
    let choice = |executable: PathBuf, version: &str| Choice {
        executable,
        version: version.to_string(),
        set_by: set_by.clone(),
        variable: variable.clone(),
    };
    if names.is_empty() {
        return Ok(choice(system(root, program)?, "system"));
    }
    let versions = root.join("versions");
    for name in &names {
        if name == "system" {
            return Ok(choice(system(root, program)?, "system"));
        }
        let shown = crate::text::visible(name);
        if name == "." || name == ".." || name.contains('/') || crate::text::has_control(name) {
            return Err(format!(
                "the pyenv version {shown:?} (set by {origin}) is not a version name"
            ));
        }
        // pyenv accepts `python-3.12` for `3.12`.
        let dir = [name.as_str(), name.strip_prefix("python-").unwrap_or(name)]
            .into_iter()
            .map(|n| versions.join(n))
            .find(|d| d.is_dir())
            .ok_or_else(|| {
                format!(
                    "the pyenv version {shown:?} (set by {origin}) is not installed in {}",
                    crate::text::visible_path(&versions)
                )
            })?;
        let exe = dir.join("bin").join(program);
        if is_executable(&exe) {
            let version = dir.file_name().unwrap_or_default().to_string_lossy();
            return Ok(choice(exe, &version));
        }
    }
    Err(format!(
        "no pyenv version of {} (set by {origin}) has bin/{}",
        crate::text::visible(&names.join(":")),
        crate::text::visible(program)
    ))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `system`: the program on `PATH` (its absolute entries) once `$PYENV_ROOT/shims` is taken out.
fn system(root: &Path, program: &str) -> Result<PathBuf, String> {
    let shims = root.join("shims");
    let found = crate::process::path_dirs()
        .into_iter()
        .filter(|d| *d != shims)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            format!(
                "the pyenv version is `system`, and there is no {} on PATH outside {}",
                crate::text::visible(program),
                crate::text::visible_path(&shims)
            )
        })?;
    // Another pyenv's shim, or a wrapper: cairn would have to guess what it runs.
    match found.canonicalize().ok().map(|c| is_script(&c)) {
        Some(Some(false)) => Ok(found),
        _ => Err(format!(
            "the pyenv version is `system`, and {} is a script",
            crate::text::visible_path(&found)
        )),
    }
}

/// The current directory as the shell that runs pyenv names it: `$PWD` when that is an
/// absolute path to the same directory (the path the user typed, links and all), else the
/// real path.
fn current_dir() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let real = std::env::current_dir().ok()?;
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    match std::env::var_os("PWD").map(PathBuf::from) {
        Some(pwd) if pwd.is_absolute() && pwd != real && same(&pwd, &real) => Some(pwd),
        _ => Some(real),
    }
}

/// The file that sets the version (`pyenv version-file`): the first `.python-version` that is
/// a file from `$PYENV_DIR` up, then from the current directory up, else `$PYENV_ROOT/version`
/// when it exists; with its bytes. `Ok(None)`: no file.
#[allow(clippy::type_complexity)]
fn version_file(root: &Path) -> Result<Option<(PathBuf, Vec<u8>)>, String> {
    let cwd = current_dir();
    let pyenv_dir = match var("PYENV_DIR") {
        Some(d) => {
            let d = match &cwd {
                Some(cwd) => cwd.join(d),
                None => PathBuf::from(d),
            };
            if !d.is_dir() {
                return Err(format!(
                    "PYENV_DIR {} is not a directory",
                    crate::text::visible_path(&d)
                ));
            }
            Some(d)
        }
        None => cwd.clone(),
    };
    let mut starts: Vec<PathBuf> = pyenv_dir.iter().cloned().collect();
    if let Some(cwd) = cwd.filter(|c| Some(c) != pyenv_dir.as_ref()) {
        starts.push(cwd);
    }
    for start in &starts {
        for dir in start.ancestors() {
            let file = dir.join(".python-version");
            if std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
                return read_version_file(&file).map(|b| Some((file, b)));
            }
        }
    }
    let global = root.join("version");
    match std::fs::metadata(&global) {
        Ok(m) if m.is_file() => read_version_file(&global).map(|b| Some((global, b))),
        _ => Ok(None),
    }
}

fn read_version_file(path: &Path) -> Result<Vec<u8>, String> {
    crate::fs::read_bounded(path, MAX_VERSION_FILE).map_err(|e| {
        format!(
            "cannot read the pyenv version file {}: {e}",
            crate::text::visible_path(path)
        )
    })
}

/// The names a version file lists (`pyenv version-file-read`): the first word of each line that
/// is not blank and not a `#` comment.
fn version_names(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.split_ascii_whitespace().next())
        .filter(|w| !w.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_files_list_first_words() {
        assert_eq!(
            version_names(b"# pinned\n\n3.11.7 extra words\r\n  3.10.13\r\n#x\nsystem"),
            ["3.11.7", "3.10.13", "system"]
        );
        assert_eq!(version_names(b""), Vec::<String>::new());
        assert_eq!(
            version_names(b"  \n# only a comment\n"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn only_pyenv_shims_among_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pyenv");
        std::fs::create_dir_all(root.join("shims")).unwrap();
        let shim = root.join("shims/python3");
        std::fs::write(
            &shim,
            format!(
                "#!/usr/bin/env bash\nset -e\nexport PYENV_ROOT=\"{}\"\nexec \"{}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
                root.display(),
                root.display()
            ),
        )
        .unwrap();
        assert_eq!(is_script(&shim), Some(true));
        assert_eq!(shim_root(&shim), Some(root.clone()));
        let other = dir.path().join("python3");
        std::fs::write(&other, "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n").unwrap();
        assert_eq!(shim_root(&other), None);
    }
}
