//! What a project's dependency files ask of the Python environment, read with each
//! ecosystem's own rules, and which of those asks the installed packages do not meet.
//!
//! * Requirements files, `pyproject.toml` (`[project] dependencies`, `optional-dependencies`,
//!   PEP 735 `[dependency-groups]`) and `Pipfile` are read as PEP 508 requirements by
//!   `pep508_rs` (the parser uv grew from, published on its own): names normalised, versions
//!   compared as PEP 440 versions (`2024.11.06` is `2024.11.6`), every operator, extras, and
//!   environment markers evaluated against the interpreter the packages belong to, so a
//!   requirement that does not apply here is not reported.
//! * Lock files (`uv.lock`, `pylock.toml`, `poetry.lock`, `pdm.lock`, `Pipfile.lock`) pin one
//!   version per package, or several for different platforms or Pythons (uv's forks), each with
//!   its marker; an installed version must equal one of the pins that apply.
//! * `environment.yml` is read as YAML, its conda match specs with conda's version rules
//!   ([`conda`]) and, where `conda-meta` records a channel, the spec's `channel::`; its `pip:`
//!   list as requirement lines.
//!
//! `requires-python` of `pyproject.toml` and a Pipfile's `[requires]` are requirements on the
//! interpreter (`python`).
//!
//! A requirement of a requirements file, of `[project] dependencies`, of a Pipfile's
//! `[packages]` or of an environment.yml's `pip:` list must be installed; everything else
//! (optional groups, dev packages, lock files, which also list packages for other platforms and
//! groups, constraints files, conda names, which are not pip names) is checked only when the
//! package is installed. What cannot be read is a problem the caller reports as a warning;
//! the rest of the file is still checked.

pub mod conda;
mod requirements;

use std::collections::BTreeMap;
use std::str::FromStr;

use pep508_rs::pep440_rs::{Operator, Version, VersionSpecifiers};
use pep508_rs::{ExtraName, MarkerEnvironment, MarkerEnvironmentBuilder, MarkerTree};
use serde::Deserialize;

use crate::model::lockfile::Python;
use crate::model::python::normalize_name;

/// When a missing package is a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The package must be installed (a requirements file, `[project] dependencies`).
    Required,
    /// Only an installed package is checked (optional groups, lock files, conda names).
    IfInstalled,
}

/// What a requirement asks of the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// Any version (a bare name or a URL).
    Any,
    /// PEP 440 specifiers (`>=1.2,<2`, `~=0.20.0`, `==1.*`, `===1.0`).
    Pep440(VersionSpecifiers),
    /// A lock file's pin: this exact version (compared as PEP 440 versions when both parse).
    Exact(String),
    /// A conda match spec.
    Conda(conda::MatchSpec),
}

/// One thing a dependency file asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The package: a PEP 503 normalised name, or a conda name in lower case.
    pub name: String,
    /// How it reads in a message: `six>=1.17`, `torch==2.5.1`, `numpy=1.26`.
    pub text: String,
    /// The version it accepts.
    pub spec: Spec,
    /// When it applies (`None`: always).
    pub marker: Option<MarkerTree>,
    /// The extras the marker is evaluated with (an optional group's own name).
    pub extras: Vec<ExtraName>,
    /// Whether a missing package is a finding.
    pub need: Need,
}

/// A dependency file read: what it asks for, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The requirements, in file order.
    pub wants: Vec<Want>,
    /// True for a lock file: several pins of one name are alternatives (any one matches);
    /// otherwise every requirement must hold.
    pub alternatives: bool,
    /// Lines or entries that could not be read, each "where: what".
    pub problems: Vec<String>,
}

/// A requirement the environment does not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    /// The package.
    pub package: String,
    /// What the file asks for (alternatives of a lock file: any one would do).
    pub wants: Vec<String>,
    /// The installed version, `None` when the package is not installed.
    pub installed: Option<String>,
}

/// The file a line is in, for `-r` paths and messages.
pub(crate) struct Place<'a> {
    /// Its path relative to the project root.
    pub name: &'a str,
    /// The included file a requirement comes from, when not the outermost one.
    pub via: Option<&'a str>,
    /// Inside a constraints file (`-c`): checked only when installed.
    pub constraint: bool,
}

/// Reads an included file by its `/`-separated path relative to the project root: its
/// normalised path and text, or why not.
pub type Reader<'a> = dyn FnMut(&str) -> Result<(String, String), String> + 'a;

/// Whether [`parse`] reads this kind of file.
pub fn is_python(kind: &str) -> bool {
    matches!(
        kind,
        "uv" | "pylock"
            | "poetry"
            | "pipfile"
            | "pdm"
            | "requirements"
            | "conda"
            | "pyproject"
            | "pipenv"
    )
}

/// Read a dependency file of `kind` (see [`crate::probe::lockfiles::Found::kind`]) at `path`
/// (relative to the project root, for `-r` includes, which `read` fetches).
pub fn parse(kind: &str, path: &str, text: &str, read: &mut Reader<'_>) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Parsed {
        alternatives: matches!(kind, "uv" | "pylock" | "poetry" | "pdm" | "pipfile"),
        ..Parsed::default()
    };
    let here = Place {
        name: path,
        via: None,
        constraint: false,
    };
    let result = match kind {
        "requirements" => {
            requirements::lines(text, &here, read, 0, &mut out);
            Ok(())
        }
        "conda" => {
            conda::environment(text, &here, read, &mut out);
            Ok(())
        }
        "uv" | "poetry" | "pdm" => toml_lock::<PackageTables>(text).map(|t| {
            for p in t.package {
                lock_pin(p, &mut out);
            }
        }),
        "pylock" => toml_lock::<PylockTables>(text).map(|t| {
            for p in t.packages {
                lock_pin(p, &mut out);
            }
        }),
        "pipfile" => pipfile_lock(text, &mut out),
        "pyproject" => pyproject(text, &mut out),
        "pipenv" => pipfile(text, &mut out),
        _ => Ok(()),
    };
    if let Err(e) = result {
        out.problems.push(e);
    }
    out
}

/// The installed side: pip packages, conda packages and the interpreter's marker environment.
pub struct Installed<'a> {
    pip: BTreeMap<&'a str, &'a str>,
    conda: BTreeMap<&'a str, (&'a str, Option<&'a str>, Option<&'a str>)>,
    python: &'a str,
    markers: Option<MarkerEnvironment>,
}

impl<'a> Installed<'a> {
    /// The packages and interpreter of a recorded or observed `[python]`.
    pub fn new(python: &'a Python) -> Installed<'a> {
        Installed {
            pip: python
                .packages
                .iter()
                .map(|p| (p.name.as_str(), p.version.as_str()))
                .collect(),
            conda: python
                .conda
                .iter()
                .map(|c| {
                    let record = (c.version.as_str(), c.build.as_deref(), c.channel.as_deref());
                    (c.name.as_str(), record)
                })
                .collect(),
            python: &python.version,
            markers: marker_environment(python),
        }
    }

    fn applies(&self, w: &Want) -> bool {
        match (&w.marker, &self.markers) {
            (None, _) => true,
            (Some(m), Some(env)) => m.evaluate(env, &w.extras),
            // Without an interpreter to evaluate against, a marker is taken to hold.
            (Some(_), None) => true,
        }
    }

    /// The installed version of what `w` names, with its conda build and channel when known;
    /// `None` when not installed.
    fn version_of(&self, w: &Want) -> Option<(&'a str, Option<&'a str>, Option<&'a str>)> {
        if let Spec::Conda(_) = w.spec {
            if let Some(&record) = self.conda.get(w.name.as_str()) {
                return Some(record);
            }
            if !self.conda.is_empty() {
                return None;
            }
            if w.name == "python" {
                return Some((self.python, None, None));
            }
            return self
                .pip
                .get(normalize_name(&w.name).as_str())
                .map(|&v| (v, None, None));
        }
        if w.name == "python" {
            // `requires-python`, Pipfile's `[requires]`: the interpreter (no distribution on
            // the index is called `python`).
            return Some((self.python, None, None));
        }
        self.pip.get(w.name.as_str()).map(|&v| (v, None, None))
    }
}

/// The name of a conda channel as a spec writes it (`conda-forge`, `nvidia/label/cuda-12.1.0`),
/// from what `conda-meta` records or a spec names (a URL, with or without the platform subdir:
/// `https://conda.anaconda.org/conda-forge/linux-64`, `pkgs/main`, `conda-forge/noarch`).
pub fn channel_name(recorded: &str) -> &str {
    let path = recorded.split_once("://").map_or(recorded, |(_, rest)| {
        rest.split_once('/').map_or("", |(_, p)| p)
    });
    let path = path.trim_matches('/');
    const PLATFORMS: &[&str] = &[
        "noarch",
        "linux-64",
        "linux-32",
        "linux-aarch64",
        "linux-ppc64le",
        "linux-s390x",
        "osx-64",
        "osx-arm64",
        "win-64",
        "win-32",
        "win-arm64",
    ];
    match path.rsplit_once('/') {
        Some((head, last)) if PLATFORMS.contains(&last) => head,
        _ => path,
    }
}

/// How the installed side reads in a finding: the version, and for a conda package from
/// another channel than the spec names, that channel.
fn installed_text(spec: &Spec, version: &str, channel: Option<&str>) -> String {
    match (spec, channel) {
        (Spec::Conda(m), Some(c)) if !channel_matches(m, Some(c)) => {
            format!("{version} from {}", channel_name(c))
        }
        _ => version.to_string(),
    }
}

/// Whether a conda package's recorded channel is the one a spec names (any, when it names
/// none or nothing is recorded).
fn channel_matches(m: &conda::MatchSpec, recorded: Option<&str>) -> bool {
    match (&m.channel, recorded) {
        (Some(want), Some(have)) => {
            let (want, have) = (channel_name(want), channel_name(have));
            // `defaults` is conda's name for its own `pkgs/main`, `pkgs/r`... channels.
            have == want || (want == "defaults" && have.starts_with("pkgs/"))
        }
        _ => true,
    }
}

/// Whether an installed version meets a spec. A version that is not PEP 440 meets a PEP 440
/// specifier only by being written the same (`===`).
fn meets(spec: &Spec, version: &str, build: Option<&str>, channel: Option<&str>) -> bool {
    match spec {
        Spec::Any => true,
        Spec::Pep440(s) => match Version::from_str(version) {
            Ok(v) => s.contains(&v),
            Err(_) => s.iter().all(|one| {
                *one.operator() == Operator::ExactEqual && one.version().to_string() == version
            }),
        },
        Spec::Exact(pin) => match (Version::from_str(pin), Version::from_str(version)) {
            (Ok(a), Ok(b)) => a == b,
            _ => pin.trim() == version.trim(),
        },
        Spec::Conda(m) => m.matches(version, build) && channel_matches(m, channel),
    }
}

/// The requirements of `parsed` that `installed` does not meet, in file order (a lock file's
/// alternatives grouped under their name).
pub fn unmet(parsed: &Parsed, installed: &Installed<'_>) -> Vec<Unmet> {
    let applying: Vec<&Want> = parsed
        .wants
        .iter()
        .filter(|w| installed.applies(w))
        .collect();
    let mut out = Vec::new();
    if parsed.alternatives {
        let mut by_name: BTreeMap<&str, Vec<&Want>> = BTreeMap::new();
        for w in &applying {
            by_name.entry(&w.name).or_default().push(w);
        }
        for (name, pins) in by_name {
            let Some((v, b, c)) = installed.version_of(pins[0]) else {
                if pins.iter().any(|w| w.need == Need::Required) {
                    out.push(Unmet {
                        package: name.to_string(),
                        wants: pins.iter().map(|w| w.text.clone()).collect(),
                        installed: None,
                    });
                }
                continue;
            };
            if !pins.iter().any(|w| meets(&w.spec, v, b, c)) {
                let mut wants: Vec<String> = pins.iter().map(|w| w.text.clone()).collect();
                wants.dedup();
                out.push(Unmet {
                    package: name.to_string(),
                    wants,
                    installed: Some(installed_text(&pins[0].spec, v, c)),
                });
            }
        }
        return out;
    }
    for w in applying {
        match installed.version_of(w) {
            None if w.need == Need::Required => out.push(Unmet {
                package: w.name.clone(),
                wants: vec![w.text.clone()],
                installed: None,
            }),
            None => {}
            Some((v, b, c)) if !meets(&w.spec, v, b, c) => out.push(Unmet {
                package: w.name.clone(),
                wants: vec![w.text.clone()],
                installed: Some(installed_text(&w.spec, v, c)),
            }),
            Some(_) => {}
        }
    }
    out
}

/// The PEP 508 marker environment of an interpreter as a lock records it: its version, its
/// implementation and its `sysconfig` platform (`linux-x86_64`, `macosx-14.0-arm64`,
/// `win-amd64`). The lock does not record `platform_release` or `platform_version`; they are
/// empty, so a marker on them does not hold. `None` when the version is not a PEP 440 version.
pub fn marker_environment(p: &Python) -> Option<MarkerEnvironment> {
    let full = p.version.trim();
    let short: String = full.split('.').take(2).collect::<Vec<_>>().join(".");
    let implementation = p.implementation.to_lowercase();
    let platform = p.platform.as_deref().unwrap_or("").to_lowercase();
    let (sys_platform, system, os_name) = if platform.starts_with("macosx") {
        ("darwin", "Darwin", "posix")
    } else if platform.starts_with("win") {
        ("win32", "Windows", "nt")
    } else if platform.starts_with("freebsd") {
        ("freebsd", "FreeBSD", "posix")
    } else {
        ("linux", "Linux", "posix")
    };
    let machine = match platform.rsplit('-').next().unwrap_or("") {
        "amd64" => "AMD64",
        "win32" => "x86",
        "universal2" => "arm64",
        m => m,
    };
    let python_implementation = match implementation.as_str() {
        "cpython" => "CPython",
        "pypy" => "PyPy",
        "graalpy" => "GraalVM",
        other => other,
    };
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: &implementation,
        implementation_version: full,
        os_name,
        platform_machine: machine,
        platform_python_implementation: python_implementation,
        platform_release: "",
        platform_system: system,
        platform_version: "",
        python_full_version: full,
        python_version: &short,
        sys_platform,
    })
    .ok()
}

/// A lock file's package entry: uv, poetry, pdm and PEP 751 agree on `name` and `version`; the
/// marker is `marker` (PEP 751, pdm), `markers` (poetry: a string, or one per group) or
/// `resolution-markers` (uv: the forks the entry belongs to; any one).
#[derive(Deserialize)]
struct RawPackage {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    marker: Option<String>,
    #[serde(default)]
    markers: Option<Markers>,
    #[serde(default, rename = "resolution-markers")]
    resolution_markers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Markers {
    One(String),
    ByGroup(BTreeMap<String, String>),
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
fn toml_lock<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
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

/// Several markers of which any one is enough, as one marker (`None`: always).
fn any_marker<'a>(
    markers: impl IntoIterator<Item = &'a str>,
    problems: &mut Vec<String>,
    what: &str,
) -> Option<MarkerTree> {
    let mut tree: Option<MarkerTree> = None;
    for m in markers {
        match MarkerTree::from_str(&pep751_markers(m)) {
            Ok(t) => match &mut tree {
                Some(acc) => acc.or(t),
                None => tree = Some(t),
            },
            Err(e) => {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or_default().to_string();
                problems.push(format!("{what}: marker `{m}`: {first}; taken to hold"));
                return None;
            }
        }
    }
    tree.filter(|t| !t.is_true())
}

/// PEP 751 markers may test the extras and dependency groups a lock was installed with
/// (`'test' in extras`, `'dev' not in dependency_groups`), which pep508_rs 0.9 does not parse.
/// Which were chosen is not recorded, and only installed packages are compared, so each such
/// test is replaced by one that holds (`python_full_version >= '0'`); the rest of the marker
/// is evaluated.
fn pep751_markers(marker: &str) -> String {
    let mut out = String::with_capacity(marker.len());
    let mut rest = marker;
    while let Some(q) = rest.find(['\'', '"']) {
        let quote = rest[q..].chars().next().unwrap_or('\'');
        let Some(len) = rest[q + 1..].find(quote) else {
            break;
        };
        let after = &rest[q + len + 2..];
        let words: Vec<&str> = after.split_whitespace().take(3).collect();
        let consumed = match words.as_slice() {
            ["in", set, ..] | ["not", "in", set] if is_pep751_set(set) => {
                let skip = if words[0] == "not" { 3 } else { 2 };
                Some(end_of_words(after, skip))
            }
            _ => None,
        };
        match consumed {
            Some(end) => {
                out.push_str(&rest[..q]);
                out.push_str("python_full_version >= '0'");
                rest = &after[end..];
            }
            None => {
                out.push_str(&rest[..q + len + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_pep751_set(word: &str) -> bool {
    let word = word.trim_end_matches(')');
    word == "extras" || word == "dependency_groups"
}

/// The byte offset just past the `n`th whitespace-separated word of `s` (a closing parenthesis
/// glued to the last word stays).
fn end_of_words(s: &str, n: usize) -> usize {
    let mut seen = 0;
    let mut in_word = false;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if in_word {
                seen += 1;
                if seen == n {
                    return i;
                }
            }
            in_word = false;
        } else if c == ')' && in_word && seen + 1 == n {
            return i;
        } else {
            in_word = true;
        }
    }
    s.len()
}

fn lock_pin(p: RawPackage, out: &mut Parsed) {
    let Some(version) = p.version.filter(|v| !v.trim().is_empty()) else {
        return; // a workspace root, a virtual package, a directory or VCS entry
    };
    let name = normalize_name(&p.name);
    if name.is_empty() {
        return;
    }
    let mut markers: Vec<&str> = Vec::new();
    if let Some(m) = &p.marker {
        markers.push(m);
    }
    match &p.markers {
        Some(Markers::One(m)) => markers.push(m),
        Some(Markers::ByGroup(g)) => markers.extend(g.values().map(String::as_str)),
        None => {}
    }
    markers.extend(p.resolution_markers.iter().map(String::as_str));
    let marker = any_marker(markers, &mut out.problems, &name);
    let version = version.trim().to_string();
    out.wants.push(Want {
        text: format!("{name}=={version}"),
        name,
        spec: Spec::Exact(version),
        marker,
        extras: Vec::new(),
        need: Need::IfInstalled,
    });
}

/// One Pipfile.lock entry: `{"version": "==1.2.3", "markers": "...", "hashes": [...]}`.
#[derive(Deserialize)]
struct PipfileEntry {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    markers: Option<String>,
}

/// Pipfile.lock: `default` and `develop` map names to entries.
#[derive(Deserialize)]
struct PipfileLock {
    #[serde(default)]
    default: BTreeMap<String, PipfileEntry>,
    #[serde(default)]
    develop: BTreeMap<String, PipfileEntry>,
}

fn pipfile_lock(text: &str, out: &mut Parsed) -> Result<(), String> {
    let lock: PipfileLock = serde_json::from_str(text).map_err(|e| e.to_string())?;
    for (name, entry) in lock.default.into_iter().chain(lock.develop) {
        let Some(raw) = entry.version else {
            continue; // a VCS or path entry
        };
        let version = raw
            .trim()
            .strip_prefix("===")
            .or_else(|| raw.trim().strip_prefix("=="))
            .unwrap_or(raw.trim());
        // `"*"` or a range is not a pin (pipenv writes these for some VCS and path entries).
        if version.is_empty() || version.contains(['*', ',', '<', '>', '=', '!', '~']) {
            continue;
        }
        lock_pin(
            RawPackage {
                name,
                version: Some(version.to_string()),
                marker: entry.markers,
                markers: None,
                resolution_markers: Vec::new(),
            },
            out,
        );
    }
    Ok(())
}

/// A requirement string of a TOML file, into `out` (a problem when it does not parse).
fn toml_requirement(text: &str, extras: Vec<ExtraName>, need: Need, what: &str, out: &mut Parsed) {
    match requirements::pep508(text) {
        Ok(r) => out
            .wants
            .push(requirements::from_requirement(&r, extras, need)),
        Err(e) => out.problems.push(format!("{what}: `{text}`: {e}")),
    }
}

/// pyproject.toml: `[project] dependencies` (required), `[project.optional-dependencies]` (each
/// group evaluated with its own extra, checked when installed) and PEP 735
/// `[dependency-groups]` (checked when installed; `{include-group = ...}` entries are read
/// where the included group is).
fn pyproject(text: &str, out: &mut Parsed) -> Result<(), String> {
    let doc: toml::Table = toml_lock(text)?;
    let project = doc.get("project").and_then(toml::Value::as_table);
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(project) = project {
        if let Some(range) = project.get("requires-python").and_then(toml::Value::as_str) {
            python_requirement(range, "project.requires-python", out);
        }
        for r in strings(project.get("dependencies")) {
            toml_requirement(&r, Vec::new(), Need::Required, "project.dependencies", out);
        }
        if let Some(groups) = project
            .get("optional-dependencies")
            .and_then(toml::Value::as_table)
        {
            for (group, list) in groups {
                let extra = ExtraName::from_str(group).ok();
                let what = format!("project.optional-dependencies.{group}");
                for r in strings(Some(list)) {
                    let extras = extra.iter().cloned().collect();
                    toml_requirement(&r, extras, Need::IfInstalled, &what, out);
                }
            }
        }
    }
    if let Some(groups) = doc.get("dependency-groups").and_then(toml::Value::as_table) {
        for (group, list) in groups {
            let what = format!("dependency-groups.{group}");
            for r in strings(Some(list)) {
                toml_requirement(&r, Vec::new(), Need::IfInstalled, &what, out);
            }
        }
    }
    Ok(())
}

/// The interpreter version a file requires (`>=3.10`), as a requirement on `python`.
fn python_requirement(range: &str, what: &str, out: &mut Parsed) {
    match VersionSpecifiers::from_str(range) {
        Ok(s) => {
            let written: Vec<String> = s.iter().map(ToString::to_string).collect();
            out.wants.push(Want {
                name: "python".into(),
                text: format!("python{}", written.join(",")),
                spec: Spec::Pep440(s),
                marker: None,
                extras: Vec::new(),
                need: Need::Required,
            });
        }
        Err(e) => out.problems.push(format!("{what}: `{range}`: {e}")),
    }
}

/// The marker variables a Pipfile entry may give as keys (`sys_platform = "== 'linux'"`).
const PIPFILE_MARKER_KEYS: &[&str] = &[
    "os_name",
    "sys_platform",
    "platform_machine",
    "platform_python_implementation",
    "platform_release",
    "platform_system",
    "platform_version",
    "python_version",
    "python_full_version",
    "implementation_name",
    "implementation_version",
];

/// Pipfile: `[packages]` (required) and `[dev-packages]` (checked when installed). A value is a
/// version spec (`"*"`, `">=1.2"`, `"==1.2.*"`) or a table with `version`, `extras`, `markers`
/// and marker keys; an entry with `git`, `path` or `file` has no version to compare.
fn pipfile(text: &str, out: &mut Parsed) -> Result<(), String> {
    let doc: toml::Table = toml_lock(text)?;
    // `[requires]`: `python_full_version = "3.11.4"` or `python_version = "3.11"` (any 3.11).
    let requires = doc.get("requires").and_then(toml::Value::as_table);
    let full = requires.and_then(|r| r.get("python_full_version")?.as_str());
    let short = requires.and_then(|r| r.get("python_version")?.as_str());
    match (full, short) {
        (Some(v), _) => python_requirement(&format!("=={v}"), "requires.python_full_version", out),
        (None, Some(v)) => python_requirement(&format!("=={v}.*"), "requires.python_version", out),
        (None, None) => {}
    }
    for (section, need) in [
        ("packages", Need::Required),
        ("dev-packages", Need::IfInstalled),
    ] {
        let Some(table) = doc.get(section).and_then(toml::Value::as_table) else {
            continue;
        };
        for (name, value) in table {
            let (version, mut markers, extras) = match value {
                toml::Value::String(s) => (s.clone(), Vec::new(), Vec::new()),
                toml::Value::Table(t) => {
                    let version = t
                        .get("version")
                        .and_then(toml::Value::as_str)
                        .unwrap_or("*")
                        .to_string();
                    let mut markers: Vec<String> = t
                        .get("markers")
                        .and_then(toml::Value::as_str)
                        .map(|m| vec![format!("({m})")])
                        .unwrap_or_default();
                    for key in PIPFILE_MARKER_KEYS {
                        if let Some(v) = t.get(*key).and_then(toml::Value::as_str) {
                            markers.push(format!("{key} {v}"));
                        }
                    }
                    let extras: Vec<String> = t
                        .get("extras")
                        .and_then(toml::Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    (version, markers, extras)
                }
                _ => continue,
            };
            let version = version.trim();
            let spec = if version == "*" || version.is_empty() {
                String::new()
            } else if version.starts_with(|c: char| c.is_ascii_digit()) {
                format!("=={version}")
            } else {
                version.to_string()
            };
            let extras = if extras.is_empty() {
                String::new()
            } else {
                format!("[{}]", extras.join(","))
            };
            let marker = if markers.is_empty() {
                String::new()
            } else {
                format!(" ; {}", std::mem::take(&mut markers).join(" and "))
            };
            let line = format!("{name}{extras}{spec}{marker}");
            toml_requirement(&line, Vec::new(), need, &format!("{section}.{name}"), out);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
