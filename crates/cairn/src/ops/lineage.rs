//! Model lineage: every lock in the repository, joined into one graph.
//!
//! A checkpoint leads to the run that produced it (its lock: code, data, environment) and to its
//! parent checkpoint (by path in the same lock, or by digest in any lock); a run leads to its
//! input models (another lock's checkpoint, a local file, a Hugging Face snapshot). Following
//! those links from a model gives its whole history back to the base model, the code and the
//! data. `cairn audit` walks the same graph and checks every link.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::content::digest::{self, Digest, HashOptions};
use crate::error::{Error, Result};
use crate::model::lockfile::{Artifact, InputSource, Location, Lock, Parent};
use crate::model::paths::RelPath;
use crate::project::Project;

/// A lock that was found, loaded or not.
#[derive(Debug)]
pub struct Found {
    /// Its path.
    pub path: PathBuf,
    /// Its path relative to the project root, for display (`None` outside the project).
    pub shown: String,
    /// The lock, or why it could not be read.
    pub lock: std::result::Result<Lock, String>,
}

/// Is this a lockfile name cairn looks for?
pub fn is_lock_name(name: &str) -> bool {
    name == "cairn.lock" || name.ends_with(".cairn.lock")
}

/// Find the locks: `cairn.lock` and `*.cairn.lock` anywhere in the repository (or the project,
/// without git), skipping `.git`, `.cairn` and directories git ignores; plus every lock below
/// `extra`.
pub fn discover(project: &Project, extra: &[PathBuf]) -> Result<Vec<Found>> {
    let root = project.boundary().to_path_buf();
    let mut paths = BTreeSet::new();
    let repo = project.repo.as_ref();
    let walk = walkdir::WalkDir::new(&root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            if e.depth() > 0 && (name == ".git" || name == ".cairn") {
                return false;
            }
            // Directories git ignores (data, caches) are not walked; a lock file is read even
            // when it is ignored itself.
            match (repo, e.path().strip_prefix(&root)) {
                (Some(r), Ok(rel)) if e.depth() > 0 && e.file_type().is_dir() => {
                    !r.is_path_ignored(rel).unwrap_or(false)
                }
                _ => true,
            }
        });
    for entry in walk.filter_map(|e| e.ok()) {
        // Not only regular files: a lock that is a link or a FIFO is found too, and refused
        // by `Lock::load` with the reason, rather than passed over without a word.
        if !entry.file_type().is_dir() && is_lock_name(&entry.file_name().to_string_lossy()) {
            paths.insert(entry.into_path());
        }
    }
    for dir in extra {
        let found: Vec<PathBuf> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .filter(|e| is_lock_name(&e.file_name().to_string_lossy()))
            .map(|e| e.into_path())
            .collect();
        if !dir.exists() {
            return Err(Error::Missing {
                what: "lock directory",
                path: dir.clone(),
            });
        }
        paths.extend(found);
    }
    Ok(paths
        .into_iter()
        .map(|path| Found {
            shown: shown(project, &path),
            lock: Lock::load(&path).map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                msg
            }),
            path,
        })
        .collect())
}

fn shown(project: &Project, path: &Path) -> String {
    path.strip_prefix(&project.root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.display().to_string())
}

/// A node of the lineage graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Node {
    /// A checkpoint of a lock.
    Checkpoint {
        /// Index of the lock in [`Graph::locks`].
        lock: usize,
        /// Its path.
        path: String,
    },
    /// A run (one lock).
    Run {
        /// Index of the lock.
        lock: usize,
    },
    /// A dataset of a run.
    Data {
        /// Index of the lock.
        lock: usize,
        /// Its name.
        name: String,
    },
    /// A model from outside any lock (a local file, a hub snapshot).
    External {
        /// Its reference.
        reference: String,
    },
    /// A link that leads nowhere.
    Missing {
        /// What was looked for.
        reference: String,
    },
    /// A parent recorded by the digest of a file that no lock records (`cairn checkpoint add
    /// --parent FILE` for a file no run produced).
    Untracked {
        /// Its digest.
        digest: String,
    },
}

/// The graph of all locks.
pub struct Graph {
    /// The locks, in path order.
    pub locks: Vec<Found>,
    by_digest: BTreeMap<Digest, Vec<(usize, String)>>,
    by_run: BTreeMap<String, usize>,
}

impl Graph {
    /// Build the graph from the discovered locks.
    pub fn new(locks: Vec<Found>) -> Graph {
        let mut by_digest: BTreeMap<Digest, Vec<(usize, String)>> = BTreeMap::new();
        let mut by_run = BTreeMap::new();
        for (i, f) in locks.iter().enumerate() {
            if let Ok(l) = &f.lock {
                by_run.insert(l.run.id.clone(), i);
                for c in &l.checkpoints {
                    by_digest
                        .entry(c.digest)
                        .or_default()
                        .push((i, c.path.to_string()));
                }
            }
        }
        Graph {
            locks,
            by_digest,
            by_run,
        }
    }

    /// The lock at an index, when it loaded.
    pub fn lock(&self, i: usize) -> Option<&Lock> {
        self.locks.get(i).and_then(|f| f.lock.as_ref().ok())
    }

    /// The checkpoint `path` of lock `i`.
    pub fn checkpoint(&self, i: usize, path: &str) -> Option<&Artifact> {
        self.lock(i)?
            .checkpoints
            .iter()
            .find(|c| c.path.as_str() == path)
    }

    /// Checkpoints (in any lock) with this digest.
    pub fn with_digest(&self, d: &Digest) -> &[(usize, String)] {
        self.by_digest.get(d).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Where a parent link of checkpoint `path` in lock `i` leads.
    pub fn parent_of(&self, i: usize, c: &Artifact) -> Option<Node> {
        match c.parent.as_ref()? {
            Parent::Path(p) => Some(match self.checkpoint(i, p.as_str()) {
                Some(_) => Node::Checkpoint {
                    lock: i,
                    path: p.to_string(),
                },
                None => Node::Missing {
                    reference: format!("{}#{p}", self.locks[i].shown),
                },
            }),
            Parent::Digest(d) => {
                let found = self.with_digest(d);
                // The lock of the run the parent came from, when the entry says; else the first
                // lock (in path order) that records the digest.
                let chosen = match &c.parent_run {
                    Some(run) => found
                        .iter()
                        .find(|(j, _)| self.lock(*j).is_some_and(|l| &l.run.id == run)),
                    None => found.first(),
                };
                Some(match (chosen, &c.parent_run) {
                    (Some((j, p)), _) => Node::Checkpoint {
                        lock: *j,
                        path: p.clone(),
                    },
                    // It came from a run whose lock is not here (or no longer records it).
                    (None, Some(run)) => Node::Missing {
                        reference: format!("{d} of run {run}"),
                    },
                    (None, None) => Node::Untracked {
                        digest: d.to_string(),
                    },
                })
            }
        }
    }

    /// The lock an input of kind `lock` points to: by run id, else by path.
    pub fn input_lock(&self, lock: &RelPath, run: &str) -> Option<usize> {
        self.by_run.get(run).copied().or_else(|| {
            self.locks
                .iter()
                .position(|f| f.shown == lock.as_str() || f.path.ends_with(lock.as_str()))
        })
    }

    /// What a run's inputs lead to: a checkpoint of another lock, an external model, or nothing.
    pub fn inputs_of(&self, i: usize) -> Vec<(String, Node)> {
        let Some(l) = self.lock(i) else {
            return Vec::new();
        };
        l.inputs
            .iter()
            .map(|input| {
                let node = match &input.source {
                    InputSource::Lock {
                        lock,
                        checkpoint,
                        run,
                    } => match self.input_lock(lock, run) {
                        Some(j) if self.checkpoint(j, checkpoint.as_str()).is_some() => {
                            Node::Checkpoint {
                                lock: j,
                                path: checkpoint.to_string(),
                            }
                        }
                        _ => Node::Missing {
                            reference: input.reference(),
                        },
                    },
                    _ => Node::External {
                        reference: input.reference(),
                    },
                };
                (input.reference(), node)
            })
            .collect()
    }

    /// The nodes a node links to, with the link's label.
    pub fn edges(&self, node: &Node) -> Vec<(&'static str, Node)> {
        match node {
            Node::Checkpoint { lock, path } => {
                let mut out = vec![("produced by", Node::Run { lock: *lock })];
                if let Some(c) = self.checkpoint(*lock, path) {
                    if let Some(p) = self.parent_of(*lock, c) {
                        out.push(("parent", p));
                    }
                }
                out
            }
            Node::Run { lock } => {
                let mut out = Vec::new();
                if let Some(l) = self.lock(*lock) {
                    for d in &l.data {
                        out.push((
                            "data",
                            Node::Data {
                                lock: *lock,
                                name: d.name.clone(),
                            },
                        ));
                    }
                }
                for (_, n) in self.inputs_of(*lock) {
                    out.push(("input", n));
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// Checkpoints nothing else builds on: not a parent, not an input. The "models".
    pub fn leaves(&self) -> Vec<Node> {
        let mut used: BTreeSet<Node> = BTreeSet::new();
        let mut all = Vec::new();
        for (i, f) in self.locks.iter().enumerate() {
            let Ok(l) = &f.lock else { continue };
            for c in &l.checkpoints {
                let n = Node::Checkpoint {
                    lock: i,
                    path: c.path.to_string(),
                };
                for (_, e) in self.edges(&n) {
                    used.insert(e);
                }
                all.push(n);
            }
            for (_, n) in self.inputs_of(i) {
                used.insert(n);
            }
        }
        all.into_iter().filter(|n| !used.contains(n)).collect()
    }

    /// Every checkpoint node.
    pub fn checkpoints(&self) -> Vec<Node> {
        let mut out = Vec::new();
        for (i, f) in self.locks.iter().enumerate() {
            if let Ok(l) = &f.lock {
                out.extend(l.checkpoints.iter().map(|c| Node::Checkpoint {
                    lock: i,
                    path: c.path.to_string(),
                }));
            }
        }
        out
    }

    /// A one-line description of a node, with every control character in it made visible
    /// ([`crate::text::visible`]): it names paths and strings from locks and file names.
    pub fn label(&self, node: &Node) -> String {
        crate::text::visible(&self.label_raw(node)).into_owned()
    }

    fn label_raw(&self, node: &Node) -> String {
        match node {
            Node::Checkpoint { lock, path } => {
                let c = self.checkpoint(*lock, path);
                let mut s = format!("checkpoint {path}");
                if let Some(c) = c {
                    if c.deleted_by_run {
                        s.push_str(" (deleted by the run)");
                    }
                    if let Some(step) = c.step {
                        s.push_str(&format!(" step {step}"));
                    }
                    s.push_str(&format!(" {}", short(&c.digest.to_string())));
                    if !c.metrics.is_empty() {
                        let m: Vec<String> = c
                            .metrics
                            .iter()
                            .map(|(k, v)| format!("{k}={}", v.0))
                            .collect();
                        s.push_str(&format!(" ({})", m.join(", ")));
                    }
                }
                s.push_str(&format!(" [{}]", self.locks[*lock].shown));
                s
            }
            Node::Run { lock } => match self.lock(*lock) {
                Some(l) => {
                    let mut s = format!("run {}", &l.run.id[..l.run.id.len().min(12)]);
                    if let Some(cmd) = &l.run.command {
                        s.push_str(&format!(" `{}`", cmd.join(" ")));
                    }
                    match &l.code {
                        Some(c) => s.push_str(&format!(
                            " at {}{}",
                            &c.commit[..c.commit.len().min(12)],
                            if c.dirty { " + uncommitted change" } else { "" }
                        )),
                        None => s.push_str(" (no code recorded)"),
                    }
                    if let Some(p) = &l.python {
                        s.push_str(&format!(
                            ", python {} with {} packages",
                            p.version,
                            p.packages.len()
                        ));
                    }
                    s
                }
                None => format!("run in {} (unreadable)", self.locks[*lock].shown),
            },
            Node::Data { lock, name } => {
                let d = self
                    .lock(*lock)
                    .and_then(|l| l.data.iter().find(|d| &d.name == name));
                match d {
                    Some(d) => format!(
                        "data {name} {} {} ({} files)",
                        match &d.location {
                            Location::Path(p) => p.to_string(),
                            Location::External => "(external)".into(),
                        },
                        short(&d.digest.to_string()),
                        d.files
                    ),
                    None => format!("data {name}"),
                }
            }
            Node::External { reference } => {
                let mutable = self
                    .locks
                    .iter()
                    .filter_map(|f| f.lock.as_ref().ok())
                    .flat_map(|l| &l.inputs)
                    .any(|i| &i.reference() == reference && i.mutable);
                format!(
                    "model {reference}{}",
                    if mutable { " (mutable reference)" } else { "" }
                )
            }
            Node::Missing { reference } => format!("MISSING {reference}"),
            Node::Untracked { digest } => {
                format!("untracked file, digest {digest} (recorded by no lock)")
            }
        }
    }

    /// The lineage of `roots` as an indented tree (each node once; repeats are marked).
    pub fn tree(&self, roots: &[Node]) -> String {
        let mut out = String::new();
        let mut seen = BTreeSet::new();
        for r in roots {
            out.push_str(&self.label(r));
            out.push('\n');
            seen.insert(r.clone());
            self.tree_children(r, "", &mut seen, &mut out);
        }
        out
    }

    fn tree_children(
        &self,
        node: &Node,
        indent: &str,
        seen: &mut BTreeSet<Node>,
        out: &mut String,
    ) {
        let edges = self.edges(node);
        for (k, (label, child)) in edges.iter().enumerate() {
            let last = k + 1 == edges.len();
            let (branch, next) = if last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            let again = !seen.insert(child.clone());
            out.push_str(&format!(
                "{indent}{branch}{label}: {}{}\n",
                self.label(child),
                if again { " (see above)" } else { "" }
            ));
            if !again {
                self.tree_children(child, &format!("{indent}{next}"), seen, out);
            }
        }
    }

    /// Every node and edge reachable from `roots`.
    pub fn reachable(&self, roots: &[Node]) -> (Vec<Node>, Vec<(Node, &'static str, Node)>) {
        let mut seen = BTreeSet::new();
        let mut order = Vec::new();
        let mut edges = Vec::new();
        let mut stack: Vec<Node> = roots.iter().rev().cloned().collect();
        while let Some(n) = stack.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            order.push(n.clone());
            for (label, child) in self.edges(&n) {
                edges.push((n.clone(), label, child.clone()));
                stack.push(child);
            }
        }
        (order, edges)
    }

    /// Graphviz dot.
    pub fn dot(&self, roots: &[Node]) -> String {
        let (nodes, edges) = self.reachable(roots);
        let id: BTreeMap<&Node, usize> = nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
        let mut s = String::from("digraph lineage {\n  rankdir=BT;\n  node [shape=box];\n");
        for (n, i) in &id {
            s.push_str(&format!("  n{i} [label=\"{}\"];\n", escape(&self.label(n))));
        }
        for (a, label, b) in &edges {
            s.push_str(&format!(
                "  n{} -> n{} [label=\"{label}\"];\n",
                id[a], id[b]
            ));
        }
        s.push_str("}\n");
        s
    }

    /// A Mermaid flowchart.
    pub fn mermaid(&self, roots: &[Node]) -> String {
        let (nodes, edges) = self.reachable(roots);
        let id: BTreeMap<&Node, usize> = nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
        let mut s = String::from("flowchart BT\n");
        for (n, i) in &id {
            s.push_str(&format!(
                "  n{i}[\"{}\"]\n",
                self.label(n).replace('"', "#quot;")
            ));
        }
        for (a, label, b) in &edges {
            s.push_str(&format!("  n{} -->|{label}| n{}\n", id[a], id[b]));
        }
        s
    }

    /// JSON: `{"locks": [...], "nodes": [...], "edges": [...]}`.
    pub fn json(&self, roots: &[Node]) -> serde_json::Value {
        let (nodes, edges) = self.reachable(roots);
        serde_json::json!({
            "locks": self.locks.iter().map(|f| serde_json::json!({
                "path": f.shown,
                "run": f.lock.as_ref().ok().map(|l| l.run.id.clone()),
                "error": f.lock.as_ref().err(),
            })).collect::<Vec<_>>(),
            "nodes": nodes.iter().map(|n| serde_json::json!({
                "node": n,
                "label": self.label_raw(n),
            })).collect::<Vec<_>>(),
            "edges": edges.iter().map(|(a, l, b)| serde_json::json!({
                "from": a, "label": l, "to": b,
            })).collect::<Vec<_>>(),
        })
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn short(digest: &str) -> String {
    digest.chars().take(7 + 12).collect()
}

/// Resolve a lineage target: a lock path (its final checkpoints), a digest, or a file or
/// directory (hashed with `hopts`, matched by digest, then by path).
pub fn targets(
    graph: &Graph,
    project: &Project,
    target: &str,
    hopts: &HashOptions<'_>,
) -> Result<Vec<Node>> {
    if let Ok(d) = target.parse::<Digest>() {
        let found: Vec<Node> = graph
            .with_digest(&d)
            .iter()
            .map(|(i, p)| Node::Checkpoint {
                lock: *i,
                path: p.clone(),
            })
            .collect();
        if found.is_empty() {
            return Err(Error::Usage(format!("no lock records a checkpoint {d}")));
        }
        return Ok(found);
    }
    let (abs, rel) = project.resolve(&project.cwd, target);
    if let Some(i) = graph.locks.iter().position(|f| f.path == abs) {
        let leaves: Vec<Node> = graph
            .leaves()
            .into_iter()
            .filter(|n| matches!(n, Node::Checkpoint { lock, .. } if *lock == i))
            .collect();
        return Ok(if leaves.is_empty() {
            vec![Node::Run { lock: i }]
        } else {
            leaves
        });
    }
    if !abs.exists() {
        return Err(Error::Missing {
            what: "lineage target",
            path: abs,
        });
    }
    let d = digest::hash_path_with(&abs, hopts)?.digest;
    let by_digest = graph.with_digest(&d);
    if !by_digest.is_empty() {
        return Ok(by_digest
            .iter()
            .map(|(i, p)| Node::Checkpoint {
                lock: *i,
                path: p.clone(),
            })
            .collect());
    }
    let by_path: Vec<Node> = match &rel {
        Some(rel) => graph
            .checkpoints()
            .into_iter()
            .filter(|n| matches!(n, Node::Checkpoint { path, .. } if path == rel.as_str()))
            .collect(),
        None => Vec::new(),
    };
    if by_path.is_empty() {
        Err(Error::Usage(format!(
            "no lock records {target} ({d}); lock the run that produced it, or pass --locks DIR"
        )))
    } else {
        Err(Error::Usage(format!(
            "{target} is recorded in a lock, but its content ({d}) is not what was recorded: it changed since"
        )))
    }
}
