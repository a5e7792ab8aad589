//! The dependency lock files of a project (`uv.lock`, `poetry.lock`, `requirements.txt`, ...):
//! which ones sit at the project root, and the Python pins (name and version) of those that list
//! Python packages, so that a verify can say "uv.lock pins torch 2.5.1 but the environment has
//! 2.4.0".
//!
//! Only the fields needed for a pin are read; anything else in a file is ignored, so a newer
//! version of a format still parses. A file that cannot be read as its format says so in an
//! `Err(String)` that the caller reports as a warning.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{IoResultExt, Result};
use crate::model::paths::RelPath;
use crate::probe::python::normalize_name;

/// One lock file found in the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its path, relative to the project root.
    pub path: RelPath,
    /// What it is: `uv`, `pylock`, `poetry`, `pipfile`, `pdm`, `requirements`, `conda`,
    /// `conda-lock`, `pixi`, `cargo` or `npm`.
    pub kind: &'static str,
}

/// A pinned Python package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The name, PEP 503 normalised (`Foo_Bar` becomes `foo-bar`).
    pub name: String,
    /// The version exactly as the file writes it (`2.5.1+cu121`).
    pub version: String,
}

/// The kind of lock file a root-level file name denotes, if any.
fn kind_of(name: &str) -> Option<&'static str> {
    let kind = match name {
        "uv.lock" => "uv",
        "pylock.toml" => "pylock",
        "poetry.lock" => "poetry",
        "Pipfile.lock" => "pipfile",
        "pdm.lock" => "pdm",
        "environment.yml" | "environment.yaml" => "conda",
        "conda-lock.yml" => "conda-lock",
        "pixi.lock" => "pixi",
        "Cargo.lock" => "cargo",
        "package-lock.json" => "npm",
        _ => {
            // PEP 751 names: `pylock.<name>.toml`, where <name> has no dot.
            if let Some(mid) = name
                .strip_prefix("pylock.")
                .and_then(|s| s.strip_suffix(".toml"))
            {
                return (!mid.is_empty() && !mid.contains('.')).then_some("pylock");
            }
            let is_req = name.len() >= "requirements.txt".len()
                && name.starts_with("requirements")
                && name.ends_with(".txt");
            return is_req.then_some("requirements");
        }
    };
    Some(kind)
}

/// Lock files at the project root (not recursive), sorted by path: `uv.lock` is `uv`,
/// `pylock.toml` and `pylock.*.toml` are `pylock`, `poetry.lock` is `poetry`, `Pipfile.lock` is
/// `pipfile`, `pdm.lock` is `pdm`, `requirements*.txt` is `requirements`, `environment.yml` and
/// `environment.yaml` are `conda`, `conda-lock.yml` is `conda-lock`, `pixi.lock` is `pixi`,
/// `Cargo.lock` is `cargo` and `package-lock.json` is `npm`.
///
/// Only regular files count (a symlink counts when its target is one, as in the data walk); a
/// directory with one of these names is skipped, and so is a name that is not UTF-8.
pub fn find(root: &Path) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root).ctx("cannot read", root)? {
        let entry = entry.ctx("cannot read", root)?;
        let name = entry.file_name();
        let Some((name, kind)) = name.to_str().and_then(|n| Some((n, kind_of(n)?))) else {
            continue;
        };
        // `metadata` follows symlinks; a dangling one is not a lock file.
        let meta = match std::fs::metadata(entry.path()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            other => other.ctx("cannot read", &entry.path())?,
        };
        if !meta.is_file() {
            continue;
        }
        // A link that leads out of the project is not the project's lock file, and reading it
        // would read a file of the user's (spec/security.md).
        let inside = std::fs::canonicalize(entry.path())
            .ok()
            .zip(std::fs::canonicalize(root).ok())
            .is_some_and(|(target, root)| target.starts_with(root));
        if !inside {
            continue;
        }
        found.push(Found {
            path: RelPath::parse(name)?,
            kind,
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Whether a kind lists Python packages that [`pins`] can read: `uv`, `pylock`, `poetry`,
/// `pipfile`, `pdm`, `requirements` and `conda`.
pub fn is_python(kind: &str) -> bool {
    matches!(
        kind,
        "uv" | "pylock" | "poetry" | "pipfile" | "pdm" | "requirements" | "conda"
    )
}

/// Parse the Python pins of a lock file of this kind (see [`Found::kind`]), sorted by name and
/// version. A name can be pinned at several versions (uv resolves one per platform or Python
/// version: a fork); any of them is a match. Exact duplicates are dropped.
///
/// Only exact pins count: `torch==2.5.1` in a requirements file, but not `torch>=2.5` or a URL.
/// In `environment.yml`, conda's `name=version` is taken as the pin although conda reads it as a
/// prefix (`numpy=1.26` accepts 1.26.4), and conda names are not pip names (`pytorch`, `python`).
/// Kinds that are not Python ([`is_python`] false) give no pins. `Err` says what is wrong, with a
/// line number where there is one.
pub fn pins(kind: &str, text: &str) -> std::result::Result<Vec<Pin>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let found = match kind {
        "uv" | "poetry" | "pdm" => toml_pins::<PackageTables>(text)?.package,
        "pylock" => toml_pins::<PylockTables>(text)?.packages,
        "pipfile" => pipfile(text)?,
        "requirements" => requirements(text)?,
        "conda" => conda(text)?,
        _ => Vec::new(),
    };
    let mut out = std::collections::BTreeSet::new();
    for p in found {
        let (name, version) = (normalize_name(&p.name), p.version.unwrap_or_default());
        if !name.is_empty() && !version.trim().is_empty() {
            out.insert((name, version.trim().to_string()));
        }
    }
    Ok(out
        .into_iter()
        .map(|(name, version)| Pin { name, version })
        .collect())
}

/// A name and version as a file writes them, before normalising. As a TOML package entry, uv,
/// poetry, pdm and PEP 751 agree on these two keys; the version is absent for a uv workspace root
/// or virtual package, and for a PEP 751 directory or VCS package.
#[derive(Deserialize)]
struct RawPackage {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

/// `[[package]]`: uv.lock, poetry.lock, pdm.lock.
#[derive(Deserialize)]
struct PackageTables {
    #[serde(default)]
    package: Vec<RawPackage>,
}

/// `[[packages]]`: pylock.toml (PEP 751).
#[derive(Deserialize)]
struct PylockTables {
    #[serde(default)]
    packages: Vec<RawPackage>,
}

/// Parse TOML into `T`, with an error of one line: "line N: what".
fn toml_pins<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim();
        match e.span() {
            Some(span) => {
                let before = &text.as_bytes()[..span.start.min(text.len())];
                let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                format!("line {line}: {message}")
            }
            None => message.to_string(),
        }
    })
}

/// One Pipfile.lock entry: `{"version": "==1.2.3", "hashes": [...]}`.
#[derive(Deserialize)]
#[serde(expecting = "a package entry like {\"version\": \"==1.2.3\"}")]
struct PipfileEntry {
    #[serde(default)]
    version: Option<String>,
}

/// Pipfile.lock: `default` and `develop` map names to entries.
#[derive(Deserialize)]
struct PipfileLock {
    #[serde(default)]
    default: BTreeMap<String, PipfileEntry>,
    #[serde(default)]
    develop: BTreeMap<String, PipfileEntry>,
}

fn pipfile(text: &str) -> std::result::Result<Vec<RawPackage>, String> {
    let lock: PipfileLock = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let all = lock.default.into_iter().chain(lock.develop);
    Ok(all
        .filter_map(|(name, entry)| {
            let raw = entry.version?;
            let v = raw.strip_prefix("===").or_else(|| raw.strip_prefix("=="));
            let v = v.unwrap_or(&raw);
            let exact = !v.is_empty() && !v.contains(['<', '>', '=', '!', '~', '*', ',']);
            exact.then(|| RawPackage {
                name,
                version: Some(v.trim().to_string()),
            })
        })
        .collect())
}

/// Cut a comment: `#` at the start or after whitespace (so a URL's `#egg=` stays). Returns the
/// text before it and whether there was one.
fn strip_comment(line: &str) -> (&str, bool) {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return (&line[..i], true);
        }
        prev_space = c.is_whitespace();
    }
    (line, false)
}

/// requirements.txt: logical lines (backslash continuations joined), with their first line number.
fn requirements(text: &str) -> std::result::Result<Vec<RawPackage>, String> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if logical.is_empty() {
            start = i + 1;
        }
        let (line, comment) = strip_comment(raw);
        match line.strip_suffix('\\') {
            Some(head) if !comment => {
                logical.push_str(head);
                logical.push(' ');
                continue;
            }
            _ => logical.push_str(line),
        }
        if let Some(p) = requirement(&logical).map_err(|e| format!("line {start}: {e}"))? {
            out.push(p);
        }
        logical.clear();
    }
    if let Some(p) = requirement(&logical).map_err(|e| format!("line {start}: {e}"))? {
        out.push(p);
    }
    Ok(out)
}

/// One requirement line with comments removed: `Ok(Some)` for an exact pin, `Ok(None)` for
/// anything else pip accepts (options, ranges, URLs, paths, bare names), `Err` for a pin that is
/// broken (`torch==`).
fn requirement(line: &str) -> std::result::Result<Option<RawPackage>, String> {
    // Environment markers follow `;`; options (`--hash=...`) follow whitespace and `-`.
    let line = line.split(';').next().unwrap_or_default();
    let end = line
        .match_indices(char::is_whitespace)
        .find(|(i, _)| line[*i..].trim_start().starts_with('-'))
        .map_or(line.len(), |(i, _)| i);
    let line = line[..end].trim();
    if line.is_empty() || line.starts_with('-') {
        return Ok(None);
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(line.len());
    let (name, mut rest) = (&line[..name_end], line[name_end..].trim_start());
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Ok(None); // a path or URL, not a name
    }
    if let Some(extras) = rest.strip_prefix('[') {
        let close = extras
            .find(']')
            .ok_or_else(|| format!("`{line}`: extras not closed with `]`"))?;
        rest = extras[close + 1..].trim_start();
    }
    let Some(version) = rest.strip_prefix("===").or_else(|| rest.strip_prefix("==")) else {
        return Ok(None);
    };
    let version = version.trim();
    if version.is_empty() {
        return Err(format!("`{line}`: no version after `==`"));
    }
    if version.contains(|c: char| c.is_whitespace()) {
        return Err(format!("`{line}`: unexpected text after the version"));
    }
    // `==1.*` is a prefix match and `==1.0,!=1.0.1` a range: not exact pins.
    if version.contains(['*', ',', '<', '>', '=', '!', '~']) {
        return Ok(None);
    }
    Ok(Some(RawPackage {
        name: name.to_string(),
        version: Some(version.to_string()),
    }))
}

/// A conda match spec from environment.yml: `[channel::]name[=version[=build]]`, or with `==`,
/// or `name version [build]`. `None` when it has no plain version.
fn conda_spec(spec: &str) -> Option<RawPackage> {
    let spec = spec.rsplit("::").next().unwrap_or_default().trim();
    let end = spec.find(['=', '<', '>', '!', '~', ' ', '\t', '['])?;
    let (name, rest) = (&spec[..end], &spec[end..]);
    let version = if let Some(v) = rest.strip_prefix("==") {
        v.split('=').next()?
    } else if let Some(v) = rest.strip_prefix('=') {
        v.split('=').next()?
    } else if rest.starts_with(char::is_whitespace) {
        rest.split_whitespace().next()?
    } else {
        return None;
    };
    let version = version.trim();
    let plain = !version.is_empty() && !version.contains(['*', ',', '<', '>', '!', '~', '|']);
    (plain && !name.is_empty()).then(|| RawPackage {
        name: name.to_string(),
        version: Some(version.to_string()),
    })
}

/// Remove one pair of matching quotes around a YAML scalar.
fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// environment.yml: the items of the top-level `dependencies:` list, and of its nested `- pip:`
/// list. A subset of YAML read line by line; what it does not understand it ignores.
fn conda(text: &str) -> std::result::Result<Vec<RawPackage>, String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    let mut item_indent: Option<usize> = None; // indent of the `dependencies` items
    let mut in_pip = false; // inside the `- pip:` item
    for (i, raw) in text.lines().enumerate() {
        let (line, _) = strip_comment(raw);
        let body = line.trim_start();
        if body.is_empty() || line.trim_end() == "---" {
            continue;
        }
        let indent = line.len() - body.len();
        if indent == 0 && !body.starts_with('-') {
            // A top-level key (YAML allows a list's items at the key's own indent).
            let key = body.split(':').next().unwrap_or_default();
            in_deps = unquote(key) == "dependencies" && body[key.len()..].trim() == ":";
            (item_indent, in_pip) = (None, false);
            continue;
        }
        if !in_deps {
            continue;
        }
        let Some(item) = body
            .strip_prefix('-')
            .filter(|s| s.is_empty() || s.starts_with(' '))
        else {
            continue; // not a list item: part of something nested we do not read
        };
        let item = unquote(item);
        let top = *item_indent.get_or_insert(indent);
        if indent <= top {
            in_pip = item.strip_suffix(':').map(unquote) == Some("pip");
            if let Some(p) = conda_spec(item).filter(|_| !in_pip) {
                out.push(p);
            }
        } else if in_pip {
            if let Some(p) = requirement(item).map_err(|e| format!("line {}: {e}", i + 1))? {
                out.push(p);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/lockfiles/", $name))
        };
    }

    /// The pins as `name==version, ...`, or a panic with the error.
    fn pin_text(kind: &str, text: &str) -> String {
        let pins = pins(kind, text).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let pins: Vec<String> = pins
            .iter()
            .map(|p| format!("{}=={}", p.name, p.version))
            .collect();
        pins.join(", ")
    }

    #[test]
    fn finds_root_lock_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let names = "uv.lock pylock.toml pylock.gpu.toml pylock.a.b.toml pylock..toml poetry.lock \
            Pipfile.lock Pipfile pdm.lock requirements.txt requirements-dev.txt requirements_gpu.txt \
            requirements.in my-requirements.txt environment.yml conda-lock.yml pixi.lock Cargo.lock \
            package-lock.json README.md";
        for name in names.split_whitespace() {
            std::fs::write(root.join(name), "").unwrap();
        }
        std::fs::create_dir(root.join("requirements")).unwrap();
        std::fs::write(root.join("requirements/dev.txt"), "").unwrap();
        std::fs::create_dir(root.join("environment.yaml")).unwrap();
        std::os::unix::fs::symlink("requirements.txt", root.join("requirements-link.txt")).unwrap();
        std::os::unix::fs::symlink("gone.txt", root.join("requirements-gone.txt")).unwrap();
        let found: Vec<String> = find(root)
            .unwrap()
            .into_iter()
            .map(|f| format!("{} {}", f.path, f.kind))
            .collect();
        let want = "Cargo.lock cargo|Pipfile.lock pipfile|conda-lock.yml conda-lock|\
            environment.yml conda|package-lock.json npm|pdm.lock pdm|pixi.lock pixi|\
            poetry.lock poetry|pylock.gpu.toml pylock|pylock.toml pylock|\
            requirements-dev.txt requirements|requirements-link.txt requirements|\
            requirements.txt requirements|requirements_gpu.txt requirements|uv.lock uv";
        assert_eq!(found, want.split('|').collect::<Vec<_>>());
    }

    #[test]
    fn a_directory_named_like_a_lock_file_is_skipped_and_a_missing_root_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("uv.lock")).unwrap();
        assert!(find(dir.path()).unwrap().is_empty());
        let err = find(&dir.path().join("nope")).unwrap_err();
        let Error::Io { op, path, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!((op, path), ("cannot read", dir.path().join("nope")));
    }

    #[test]
    fn python_kinds() {
        for k in "uv pylock poetry pipfile pdm requirements conda".split(' ') {
            assert!(is_python(k), "{k}");
        }
        for k in "cargo npm conda-lock pixi other".split(' ') {
            assert!(!is_python(k), "{k}");
            assert_eq!(
                pins(k, "[[package]]\nname = \"x\"\nversion = \"1\"\n"),
                Ok(vec![])
            );
        }
    }

    #[test]
    fn toml_formats() {
        // The unversioned workspace root is skipped; both numpy forks are pins.
        let uv = fixture!("uv-lock.toml");
        assert_eq!(
            pin_text("uv", uv),
            "filelock==3.16.1, numpy==1.26.4, numpy==2.1.3, torch==2.5.1+cu121"
        );
        let pylock = fixture!("pylock-sample.toml");
        assert_eq!(
            pin_text("pylock", pylock),
            "jinja2==3.1.4, typing-extensions==4.12.2"
        );
        let poetry = fixture!("poetry-lock.toml");
        assert_eq!(pin_text("poetry", poetry), "pyyaml==6.0.2, tqdm==4.67.0");
        let pdm = fixture!("pdm-lock.toml");
        assert_eq!(pin_text("pdm", pdm), "pytest==8.3.3, safetensors==0.4.5");
        // A uv.lock read as pylock has no `[[packages]]`: no pins, no error.
        assert_eq!(pin_text("pylock", uv), "");
    }

    #[test]
    fn pipfile_lock_default_and_develop_are_both_pins() {
        let pins = pin_text("pipfile", fixture!("pipfile-lock.json"));
        assert_eq!(
            pins,
            "pillow==11.0.0, pytest==8.3.3, torch==2.4.0, torch==2.5.1"
        );
    }

    #[test]
    fn malformed_files_say_what_and_where() {
        let bad = "version = 1\n[[package]]\nname = \"torch\nversion = \"2\"\n";
        let err = pins("uv", bad).unwrap_err();
        assert!(err.starts_with("line 3: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = pins("poetry", "[[package]]\nversion = \"1.0\"\n").unwrap_err();
        assert!(err.contains("name"), "{err}");
        let err = pins("pipfile", "{\"default\": {\"torch\": }}").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        let err = pins("requirements", "numpy==1.0\n\ntorch==\n").unwrap_err();
        assert!(err.starts_with("line 3: `torch==`"), "{err}");
        let err = pins("requirements", "a \\\n[x==1.0\n").unwrap_err();
        assert!(
            err.starts_with("line 1: ") && err.contains("extras"),
            "{err}"
        );
        let err = pins("conda", "dependencies:\n  - pip:\n    - torch==\n").unwrap_err();
        assert!(err.starts_with("line 3: "), "{err}");
    }

    #[test]
    fn requirements_awkward_lines() {
        let pins = pin_text("requirements", fixture!("reqs-sample.txt"));
        let want = "accelerate==1.1.1, continued==1.2, datasets==3.1.0, numpy==1.26.4, \
            numpy==2.0.0, pkg-exact==1.0.post1, torch==2.5.1+cu121, typing-extensions==4.12.2";
        assert_eq!(pins, want);
    }

    #[test]
    fn conda_environment() {
        let pins = pin_text("conda", fixture!("environment-sample.yml"));
        let want = "numpy==1.26.4, numpy==2.0.0, python==3.11, pytorch==2.5.1, scipy==1.14.1, \
            tqdm==4.67.0, transformers==4.46.0";
        assert_eq!(pins, want);
        // Items may sit at the key's own indent; a byte-order mark is ignored.
        let text = "\u{feff}dependencies:\n- numpy=1.26.4\n- pip:\n  - torch==2.5.1\n- zlib=1.3\n";
        assert_eq!(
            pin_text("conda", text),
            "numpy==1.26.4, torch==2.5.1, zlib==1.3"
        );
    }

    #[test]
    fn odd_input_never_panics() {
        for odd in [
            "",
            "-",
            "\\",
            "dependencies: [numpy=1]\n",
            "dependencies:\n  -\n  - ::\n  - =1\n  - \"\n\t- x=1\n",
            "dependencies:\n    - a=1\n  - b=2\n - pip:\n   -\n   - \"é[==\"\n",
            "é==1 é\n[\n==\n#\n# \\\n-\\\n",
        ] {
            for kind in ["conda", "requirements", "uv", "pylock", "pipfile"] {
                let _ = pins(kind, odd);
            }
        }
    }
}
