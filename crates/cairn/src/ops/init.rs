//! `cairn init`: a first, commented `cairn.toml`, guessed from what is in the directory.
//!
//! The guesses are deliberately plain, and every one is written where the user reads it:
//!
//! * **datasets**: `data/`, `datasets/`, `dataset/` and `corpus/` (split into one dataset per
//!   subdirectory when they hold only subdirectories, like `data/train` and `data/val`), and any
//!   other top-level directory with many files that are not source code;
//! * **checkpoints**: the checkpoint directories (`runs/`, `checkpoints/`, `outputs/`, ...) that
//!   exist or that the Python scripts mention, with the checkpoint extensions
//!   (`.safetensors`, `.pt`, `.pth`, `.ckpt`, `.bin`) found in them or in the scripts;
//! * **python**: `.venv/bin/python` or `venv/bin/python` when there is one;
//! * `env`, `inputs`, `outputs` and the `[audit]` rules (all of them, from [`crate::ops::audit::RULES`])
//!   as commented examples.
//!
//! `init` never replaces an existing `cairn.toml` unless forced, checks that what it wrote loads
//! as a configuration, and adds `.cairn/cache/` to `.gitignore` unless git already ignores it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::{Config, FILE_NAME};
use crate::error::{Error, IoResultExt, Result};

/// Directory names that hold datasets.
const DATA_DIRS: &[&str] = &["data", "datasets", "dataset", "corpus"];
/// Directory names that hold checkpoints.
const CHECKPOINT_DIRS: &[&str] = &[
    "runs",
    "checkpoints",
    "checkpoint",
    "ckpt",
    "ckpts",
    "outputs",
    "output",
    "models",
    "saved_models",
];
/// File extensions of checkpoints.
const CHECKPOINT_EXTS: &[&str] = &["safetensors", "pt", "pth", "ckpt", "bin"];
/// Directories whose Python files are not the project's own (and that are never datasets).
const NOT_SOURCES: &[&str] = &[
    "venv",
    "env",
    "node_modules",
    "__pycache__",
    "build",
    "dist",
    "site-packages",
];
/// Directories that are never datasets, besides [`NOT_SOURCES`].
const NOT_DATA: &[&str] = &[
    "target",
    "wandb",
    "mlruns",
    "docs",
    "doc",
    "tests",
    "test",
    "src",
    "scripts",
    "notebooks",
    "configs",
    "examples",
];
/// Extensions of source code and text that is not data.
const CODE_EXTS: &[&str] = &[
    "py", "pyi", "ipynb", "rs", "c", "cc", "cpp", "h", "hpp", "cu", "js", "ts", "go", "java", "sh",
    "md", "rst", "toml", "cfg", "ini", "yaml", "yml", "lock",
];
/// A top-level directory with at least this many files, nearly all not code, is a dataset.
const MANY_FILES: usize = 100;
/// How many entries of one directory to look at when guessing.
const LOOK_AT: usize = 5000;

/// What `cairn init` guessed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guess {
    /// Datasets: name and path, relative to the directory.
    pub data: Vec<(String, String)>,
    /// Checkpoint globs.
    pub checkpoints: Vec<String>,
    /// Checkpoint globs for directories the scripts name but that do not exist (yet): written
    /// as a comment, not guessed, so that a lock never waits three days to say a declared
    /// directory was never there.
    pub not_yet: Vec<String>,
    /// The interpreter, relative to the directory.
    pub python: Option<String>,
    /// The training script, for the "next step" line.
    pub script: Option<String>,
}

/// Look at `dir` and guess its configuration.
pub fn guess(dir: &Path) -> Result<Guess> {
    let mut top: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).ctx("cannot read directory", dir)? {
        let entry = entry.ctx("cannot read directory", dir)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if entry.path().is_dir() && !name.starts_with('.') {
            top.push((name, entry.path()));
        }
    }
    top.sort();

    let mut g = Guess::default();
    let mut names = BTreeSet::new();
    let mut add_data = |g: &mut Guess, name: &str, path: String| {
        let mut name = sanitize(name);
        if names.contains(&name) {
            name = sanitize(&path.replace('/', "-"));
        }
        if names.insert(name.clone()) {
            g.data.push((name, path));
        }
    };
    for (name, path) in &top {
        if [CHECKPOINT_DIRS, NOT_SOURCES, NOT_DATA]
            .iter()
            .any(|list| list.contains(&name.as_str()))
        {
            continue;
        }
        if DATA_DIRS.contains(&name.as_str()) {
            let subdirs = split_dataset(path);
            if subdirs.len() >= 2 {
                for sub in subdirs {
                    add_data(&mut g, &sub, format!("{name}/{sub}"));
                }
            } else {
                add_data(&mut g, name, name.clone());
            }
        } else if looks_like_data(path) {
            add_data(&mut g, name, name.clone());
        }
    }

    // Checkpoints: directories that exist or that the scripts name, extensions found in either.
    let scripts = python_sources(dir);
    let mut dirs = BTreeSet::new();
    let mut exts = BTreeSet::new();
    for text in &scripts {
        for d in CHECKPOINT_DIRS {
            if [
                format!("\"{d}/"),
                format!("'{d}/"),
                format!("\"{d}\""),
                format!("'{d}'"),
            ]
            .iter()
            .any(|p| text.contains(p.as_str()))
            {
                dirs.insert(d.to_string());
            }
        }
        for e in CHECKPOINT_EXTS {
            if text.contains(&format!(".{e}\"")) || text.contains(&format!(".{e}'")) {
                exts.insert(e.to_string());
            }
        }
    }
    for (name, path) in &top {
        if CHECKPOINT_DIRS.contains(&name.as_str()) {
            let found = extensions_in(path);
            if !found.is_empty() || dirs.contains(name) {
                dirs.insert(name.clone());
                exts.extend(found);
            }
        }
    }
    if !dirs.is_empty() && exts.is_empty() {
        exts.extend(["safetensors".to_string(), "pt".to_string()]);
    }
    for d in &dirs {
        let exists = dir.join(d).is_dir();
        for e in CHECKPOINT_EXTS.iter().filter(|e| exts.contains(**e)) {
            let glob = format!("{d}/**/*.{e}");
            if exists {
                g.checkpoints.push(glob);
            } else {
                g.not_yet.push(glob);
            }
        }
    }

    g.python = [".venv/bin/python", "venv/bin/python"]
        .into_iter()
        .find(|p| dir.join(p).is_file())
        .map(str::to_string);
    g.script = [
        "train.py",
        "main.py",
        "run.py",
        "scripts/train.py",
        "src/train.py",
    ]
    .into_iter()
    .find(|p| dir.join(p).is_file())
    .map(str::to_string);
    Ok(g)
}

/// A dataset name from a directory name (`[A-Za-z0-9._-]`, other characters become `-`).
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    if s.is_empty() {
        "data".into()
    } else {
        s
    }
}

/// The subdirectories of a data directory when it holds nothing else (hidden files aside).
fn split_dataset(path: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut subdirs = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if !entry.path().is_dir() {
            return Vec::new();
        }
        subdirs.push(name);
    }
    subdirs.sort();
    subdirs
}

/// Many files below `path`, hardly any of them code.
fn looks_like_data(path: &Path) -> bool {
    let mut files = 0usize;
    let mut code = 0usize;
    for entry in walkdir::WalkDir::new(path)
        .into_iter()
        .take(LOOK_AT)
        .filter_map(|e| e.ok())
    {
        if entry.file_type().is_file() {
            files += 1;
            let ext = entry.path().extension().and_then(|e| e.to_str());
            if ext.is_some_and(|e| CODE_EXTS.contains(&e)) {
                code += 1;
            }
        }
    }
    files >= MANY_FILES && code * 10 < files
}

/// The checkpoint extensions of the files below `path`.
fn extensions_in(path: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(path)
        .into_iter()
        .take(LOOK_AT)
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let ext = e.path().extension()?.to_str()?.to_string();
            CHECKPOINT_EXTS.contains(&ext.as_str()).then_some(ext)
        })
        .collect()
}

/// The text of the Python files at the top of `dir` and one level down (at most 200 files of at
/// most 1 MiB each).
fn python_sources(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .max_depth(2)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0 || !(name.starts_with('.') || NOT_SOURCES.contains(&name.as_ref()))
        })
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_type().is_file()
                && e.path().extension().is_some_and(|x| x == "py")
                && e.metadata().is_ok_and(|m| m.len() <= 1 << 20)
        })
        .take(200)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// A TOML string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML key: bare when it can be, else quoted.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        s.to_string()
    } else {
        quote(s)
    }
}

/// The commented `cairn.toml` for a guess.
pub fn render(g: &Guess) -> String {
    let command = format!(
        "{} {}",
        g.python.as_deref().unwrap_or("python"),
        g.script.as_deref().unwrap_or("train.py")
    );
    let mut s = format!(
        "# cairn.toml: what `cairn lock` records for this project, and where `cairn verify` finds\n\
         # data on this machine. Written by `cairn init` from a look at this directory: check each\n\
         # line, then lock a run with `cairn lock -- {command}`.\n\
         # Paths are relative to this directory. Reference: spec/lockfile.md, section 13.\n\
         # `python` and paths outside the repository are used only while this file is trusted on\n\
         # this machine: `cairn init` trusted it; after an edit, run `cairn trust` (spec/security.md).\n\
         \n\
         # The Python interpreter whose packages are recorded (default: $VIRTUAL_ENV, then\n\
         # $CONDA_PREFIX, then python3 on PATH).\n"
    );
    match &g.python {
        Some(p) => s.push_str(&format!("python = {}\n\n", quote(p))),
        None => s.push_str("# python = \".venv/bin/python\"\n\n"),
    }

    s.push_str(
        "# Checkpoints the run writes: paths or globs (`**` crosses directories), matched when the\n\
         # command has finished. They are recorded by digest and are never counted as code.\n",
    );
    if !g.not_yet.is_empty() {
        s.push_str(
            "# The scripts name these directories, which do not exist yet; uncomment once you know\n\
             # the run writes its checkpoints there.\n",
        );
        let list: Vec<String> = g.not_yet.iter().map(|c| quote(c)).collect();
        let line = format!("# checkpoints = [{}]\n", list.join(", "));
        if g.checkpoints.is_empty() {
            s.push_str(&line);
            s.push('\n');
        } else {
            s.push_str(&line);
        }
    }
    if g.checkpoints.is_empty() {
        if g.not_yet.is_empty() {
            s.push_str("# checkpoints = [\"runs/**/*.safetensors\", \"runs/**/*.pt\"]\n\n");
        }
    } else {
        s.push_str("checkpoints = [\n");
        for c in &g.checkpoints {
            s.push_str(&format!("    {},\n", quote(c)));
        }
        s.push_str("]\n\n");
    }

    s.push_str(
        "# Other outputs worth recording (metrics files, exports, samples): paths or globs.\n\
         # outputs = [\"runs/metrics.json\"]\n\
         \n\
         # Environment variables to record besides cairn's own list (PYTHONHASHSEED,\n\
         # CUBLAS_WORKSPACE_CONFIG, CUDA_VISIBLE_DEVICES, NCCL_*, OMP_NUM_THREADS, ...). A trailing\n\
         # `*` matches a prefix. Never list secrets: the values are written into cairn.lock.\n\
         # env = [\"WANDB_MODE\", \"HF_HUB_OFFLINE\", \"XLA_*\"]\n\
         \n\
         # Models every run starts from: a path here, another lock's checkpoint as\n\
         # LOCK#CHECKPOINT, or a Hugging Face cache snapshot as hf://ORG/NAME@COMMIT.\n\
         # inputs = [\"hf://org/base-model@<40-hex commit>\"]\n\
         \n\
         # Datasets the run reads: name = path. A path outside this directory is recorded as\n\
         # external (by digest only); every machine then says where it is in its own cairn.toml.\n\
         [data]\n",
    );
    if g.data.is_empty() {
        s.push_str("# train = \"data/train\"\n");
    }
    for (name, path) in &g.data {
        s.push_str(&format!("{} = {}\n", key(name), quote(path)));
    }

    s.push_str(
        "\n\
         # The rules of `cairn audit`: \"error\" fails the audit, \"warning\" only reports,\n\
         # \"off\" skips the check. Uncomment a line to change its level; the defaults are shown.\n\
         # [audit]\n",
    );
    let width = crate::ops::audit::RULES
        .iter()
        .map(|(n, l, _)| n.len() + level(*l).len())
        .max()
        .unwrap_or(0);
    for (name, l, what) in crate::ops::audit::RULES {
        let line = format!("{name} = \"{}\"", level(*l));
        s.push_str(&format!("# {line:<w$}  # {what}\n", w = width + 5));
    }
    s
}

fn level(l: crate::ops::audit::Level) -> &'static str {
    match l {
        crate::ops::audit::Level::Error => "error",
        crate::ops::audit::Level::Warning => "warning",
        crate::ops::audit::Level::Off => "off",
    }
}

/// What happened to `.gitignore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gitignore {
    /// `.cairn/cache/` was appended to this file.
    Added(PathBuf),
    /// git already ignores `.cairn/cache/`.
    AlreadyIgnored,
    /// `dir` is not in a git repository.
    NoRepository,
}

/// What `cairn init` did.
#[derive(Debug, Clone)]
pub struct Initialized {
    /// The file written.
    pub config: PathBuf,
    /// What was guessed.
    pub guess: Guess,
    /// What happened to `.gitignore`.
    pub gitignore: Gitignore,
    /// Whether the file written is trusted on this machine (`cairn trust`): the user asked for
    /// it, so its `python` and paths outside the project are used. `false` when no trust record
    /// could be written (no `$HOME`).
    pub trusted: bool,
}

/// Write a guessed, commented `cairn.toml` into `dir` (refusing to replace one unless `force`),
/// and make git ignore `.cairn/cache/`.
pub fn init(dir: &Path, force: bool) -> Result<Initialized> {
    let dir = dir.canonicalize().ctx("cannot open directory", dir)?;
    let path = dir.join(FILE_NAME);
    if path.exists() && !force {
        return Err(Error::Refused {
            message: format!("{} already exists; it was left untouched", path.display()),
            hint: "edit it by hand, or run `cairn init --force` to replace it with a new guess"
                .into(),
        });
    }
    // Everything that can refuse (a `.gitignore` that is a link) before anything is written.
    let ignore = plan_ignore(&dir)?;
    let g = guess(&dir)?;
    let text = render(&g);
    // What init writes must be a configuration `cairn lock` accepts.
    let _: Config = toml::from_str(&text).map_err(|e| Error::ConfigSyntax {
        path: path.clone(),
        source: crate::error::TomlSyntax::new(&text, &e),
    })?;
    crate::fs::atomic_write(&path, text.as_bytes())?;
    Config::load(&dir)?;
    // The user asked for this file: trust it, as `cairn trust` would (spec/security.md).
    let trusted = crate::trust::trust(&dir, text.as_bytes()).is_ok();
    let gitignore = match ignore {
        IgnorePlan::Done(g) => g,
        IgnorePlan::Write(path, text) => {
            crate::fs::atomic_write(&path, text.as_bytes())?;
            Gitignore::Added(path)
        }
    };
    Ok(Initialized {
        config: path,
        guess: g,
        gitignore,
        trusted,
    })
}

/// What init will do to `.gitignore`: nothing, or write this text.
enum IgnorePlan {
    Done(Gitignore),
    Write(PathBuf, String),
}

/// `dir/.gitignore` with `.cairn/cache/` appended, unless git already ignores it there.
fn plan_ignore(dir: &Path) -> Result<IgnorePlan> {
    let repo = match crate::probe::git::discover(dir) {
        Ok(r) => r,
        Err(Error::NotARepo { .. }) => return Ok(IgnorePlan::Done(Gitignore::NoRepository)),
        Err(e) => return Err(e),
    };
    let workdir = crate::probe::git::workdir(&repo)?;
    let workdir = workdir
        .canonicalize()
        .ctx("cannot open directory", &workdir)?;
    let rel = dir.strip_prefix(&workdir).unwrap_or(Path::new(""));
    // A file inside the cache: ignored when the directory or anything above it is.
    let probe = rel.join(".cairn").join("cache").join("busy");
    if repo.is_path_ignored(&probe).unwrap_or(false) {
        return Ok(IgnorePlan::Done(Gitignore::AlreadyIgnored));
    }
    let path = dir.join(".gitignore");
    // Read as a regular file only: a `.gitignore` that is a link (to `~/.bashrc`, say) would
    // otherwise have its target's bytes copied into the repository.
    let mut text = match crate::fs::read_bounded(&path, crate::fs::MAX_CONFIG_BYTES) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(crate::fs::read_error(".gitignore", &path, e)),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# cairn's local cache (cairn init)\n.cairn/cache/\n");
    Ok(IgnorePlan::Write(path, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn guesses_splits_and_scripts() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "data/train/a.csv", "1\n");
        write(d.path(), "data/val/b.csv", "2\n");
        write(
            d.path(),
            "train.py",
            "torch.save(m, 'checkpoints/last.pt')\n",
        );
        write(d.path(), "src/model.py", "x = 1\n");
        for i in 0..MANY_FILES {
            write(d.path(), &format!("images/{i}.png"), "png");
        }
        let g = guess(d.path()).unwrap();
        assert_eq!(
            g.data,
            vec![
                ("train".to_string(), "data/train".to_string()),
                ("val".to_string(), "data/val".to_string()),
                ("images".to_string(), "images".to_string()),
            ]
        );
        // The script names checkpoints/, which does not exist: suggested in a comment only.
        assert!(g.checkpoints.is_empty());
        assert_eq!(g.not_yet, vec!["checkpoints/**/*.pt".to_string()]);
        let text = render(&g);
        assert!(
            text.contains("# checkpoints = [\"checkpoints/**/*.pt\"]"),
            "{text}"
        );
        let c: Config = toml::from_str(&text).unwrap();
        assert!(c.checkpoints.is_empty());
        std::fs::create_dir(d.path().join("checkpoints")).unwrap();
        let g = guess(d.path()).unwrap();
        assert_eq!(g.checkpoints, vec!["checkpoints/**/*.pt".to_string()]);
        assert!(g.not_yet.is_empty());
        assert_eq!(g.script.as_deref(), Some("train.py"));
        let text = render(&g);
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(c.data.len(), 3);
        assert_eq!(c.checkpoints, g.checkpoints);
    }

    #[test]
    fn empty_directory_renders_a_valid_commented_file() {
        let d = tempfile::tempdir().unwrap();
        let g = guess(d.path()).unwrap();
        assert_eq!(g, Guess::default());
        let text = render(&g);
        let c: Config = toml::from_str(&text).unwrap();
        assert!(c.data.is_empty() && c.checkpoints.is_empty() && c.audit.is_empty());
        // Every audit rule is listed, and uncommenting the block gives valid rules.
        let audit: String = text
            .lines()
            .skip_while(|l| *l != "# [audit]")
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let c: Config = toml::from_str(&audit).unwrap();
        assert_eq!(c.audit.len(), crate::ops::audit::RULES.len());
        crate::ops::audit::levels(&c.audit).unwrap();
    }
}
