//! Printing: data to stdout, messages to stderr; colour only on a terminal and never with
//! `NO_COLOR`.
//!
//! Every human line goes through [`cairn::text::visible`] here, where it is written, so no
//! command can forget it: a file name, package name or lock string from a repository cannot
//! move the cursor, forge a line of cairn's output or start a GitHub Actions workflow command.
//! Messages ([`Printer::warn`], [`Printer::info`], [`Printer::error`]) are escaped whole; a
//! human report writes [`Human::line`]s, each escaped whole.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn::text::visible;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Where messages go and how they look.
pub struct Printer {
    quiet: bool,
    color: bool,
    terminal: bool,
}

impl Printer {
    pub fn new(quiet: bool) -> Printer {
        let color = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Printer {
            quiet,
            color,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Whether --quiet was given.
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// A progress bar for hashing, on stderr; `None` when stderr is not a terminal or with
    /// --quiet.
    pub fn progress(&self) -> Option<HashBar> {
        (self.terminal && !self.quiet).then(HashBar::new)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A warning line (suppressed by --quiet).
    pub fn warn(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{}: {}", self.paint("1;33", "warning"), visible(msg));
        }
    }

    /// A `hint:` line on stderr, after a warning (suppressed by --quiet).
    pub fn hint(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{}: {}", self.paint("1;36", "hint"), visible(msg));
        }
    }

    /// An informational line on stderr (suppressed by --quiet).
    pub fn info(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{}", visible(msg));
        }
    }

    /// Print an error, its cause chain and any hint.
    pub fn error(&self, err: &anyhow::Error) {
        eprintln!(
            "{}: {}",
            self.paint("1;31", "error"),
            visible(&err.to_string())
        );
        for cause in err.chain().skip(1) {
            eprintln!(
                "  {} {}",
                self.paint("2", "caused by:"),
                visible(&cause.to_string())
            );
        }
        if let Some(hint) = err.chain().find_map(|e| {
            e.downcast_ref::<cairn::Error>()
                .and_then(cairn::Error::hint)
                .or_else(|| {
                    e.downcast_ref::<cairn::ops::rebuild::RebuildError>()
                        .and_then(cairn::ops::rebuild::RebuildError::hint)
                })
        }) {
            eprintln!("{}: {}", self.paint("1;36", "hint"), visible(&hint));
        }
    }
}

/// A human report on stdout. [`Human::line`] writes one line with every control character in
/// it made visible, newlines included. Bytes written through [`std::io::Write`] (for printers
/// that still use `writeln!`) are escaped line by line as they complete.
pub struct Human<W: Write> {
    w: W,
    pending: Vec<u8>,
    color: bool,
}

impl<W: Write> Human<W> {
    /// A human report written to `w`.
    pub fn new(w: W) -> Human<W> {
        Human {
            w,
            pending: Vec::new(),
            color: false,
        }
    }

    /// Colour [`Human::verdict`]s (on a terminal without `NO_COLOR`).
    pub fn with_color(mut self, color: bool) -> Human<W> {
        self.color = color;
        self
    }

    /// A verdict line: `head` (cairn's own words, coloured with the SGR `code` when colour is
    /// on) then `rest`, escaped whole like every [`Human::line`].
    pub fn verdict(&mut self, code: &str, head: &str, rest: &str) -> std::io::Result<()> {
        self.flush_pending()?;
        let head = visible(head);
        if self.color {
            writeln!(self.w, "\x1b[{code}m{head}\x1b[0m{}", visible(rest))
        } else {
            writeln!(self.w, "{head}{}", visible(rest))
        }
    }

    /// Write `text` as one line, escaped whole.
    pub fn line(&mut self, text: impl AsRef<str>) -> std::io::Result<()> {
        self.flush_pending()?;
        writeln!(self.w, "{}", visible(text.as_ref()))
    }

    fn flush_pending(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            write!(self.w, "{}", visible(&text))?;
        }
        Ok(())
    }
}

impl<W: Write> Write for Human<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                self.flush_pending()?;
                self.w.write_all(b"\n")?;
            } else {
                self.pending.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_pending()?;
        self.w.flush()
    }
}

/// Write a report to stdout: pretty JSON with `json`, else what `human` prints, line by line
/// through [`Human`].
pub fn write_report<R: serde::Serialize>(
    report: &R,
    json: bool,
    human: impl FnOnce(&mut Human<std::io::StdoutLock<'static>>, &R) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut w = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut w, report)?;
        writeln!(w)?;
        w.flush()?;
    } else {
        let color = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let mut h = Human::new(w).with_color(color);
        human(&mut h, report)?;
        h.flush()?;
    }
    Ok(())
}

/// Run a comparison with a hashing bar (see [`Printer::progress`]), write its report (JSON or
/// `human`) and say how cairn exits: 0 when `ok` holds for the report, else 1.
pub fn compare_and_report<R: serde::Serialize>(
    out: &Printer,
    json: bool,
    run: impl FnOnce(Option<&dyn cairn::content::digest::Progress>) -> cairn::Result<R>,
    ok: impl FnOnce(&R) -> bool,
    human: impl FnOnce(&mut Human<std::io::StdoutLock<'static>>, &R) -> std::io::Result<()>,
) -> anyhow::Result<u8> {
    let bar = out.progress();
    let report = run(bar
        .as_ref()
        .map(|b| b as &dyn cairn::content::digest::Progress))?;
    write_report(&report, json, human)?;
    Ok(if ok(&report) {
        crate::EXIT_OK
    } else {
        crate::EXIT_DIFF
    })
}

/// A reported line's words in parentheses after a space, or nothing when it has none.
pub fn detail(line: &cairn::compare::Reported) -> String {
    line.detail
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// A progress bar for hashing: files, bytes read, rate and ETA, on stderr.
///
/// Like cargo's and uv's, it is there only while it helps: it appears once hashing has gone on
/// for a moment *and* some file had to be read (digests from the stat cache need no bar, and
/// would give an absurd rate), its rate counts only the bytes actually read, and it is cleared
/// when hashing ends ([`HashBar::clear`] too, before a command takes the terminal), so no line
/// of it is ever left behind.
pub struct HashBar {
    /// The bar while one is shown.
    shown: std::sync::Mutex<Option<ProgressBar>>,
    /// Set once the bar of this round is shown (a quick check for the many threads).
    visible: std::sync::atomic::AtomicBool,
    /// This round: files to hash, files done, bytes read, and when it started.
    files: AtomicU64,
    done: AtomicU64,
    read: Arc<AtomicU64>,
    started: std::sync::Mutex<std::time::Instant>,
    /// How long hashing goes on before a bar appears ($CAIRN_PROGRESS_DELAY_MS, default 200).
    delay: std::time::Duration,
}

impl HashBar {
    fn new() -> HashBar {
        let delay = std::env::var("CAIRN_PROGRESS_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        HashBar {
            shown: std::sync::Mutex::new(None),
            visible: std::sync::atomic::AtomicBool::new(false),
            files: AtomicU64::new(0),
            done: AtomicU64::new(0),
            read: Arc::new(AtomicU64::new(0)),
            started: std::sync::Mutex::new(std::time::Instant::now()),
            delay: std::time::Duration::from_millis(delay),
        }
    }

    fn draw(&self) -> ProgressBar {
        let (r1, r2) = (self.read.clone(), self.read.clone());
        let started = *self.started.lock().unwrap_or_else(|p| p.into_inner());
        let style = ProgressStyle::with_template(
            "{spinner} hashing [{bar:20}] {pos}/{len} files, {read} at {rate}, eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> ")
        .with_key(
            "read",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", HumanBytes(r1.load(Ordering::Relaxed)));
            },
        )
        .with_key(
            "rate",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let rate = r2.load(Ordering::Relaxed) as f64 / secs;
                let _ = write!(w, "{}/s", HumanBytes(rate as u64));
            },
        );
        let bar = ProgressBar::with_draw_target(
            Some(self.files.load(Ordering::Relaxed)),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(style);
        bar.set_position(self.done.load(Ordering::Relaxed));
        bar
    }

    /// Clear the bar now, if one is shown; the next file of this round may show it again.
    pub fn clear(&self) {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = shown.take() {
            bar.finish_and_clear();
        }
        self.visible.store(false, Ordering::SeqCst);
    }
}

impl cairn::content::digest::Progress for HashBar {
    fn start(&self, files: u64) {
        self.clear();
        self.files.store(files, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.read.store(0, Ordering::Relaxed);
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
    }

    fn file_done(&self, bytes: u64, read: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if read {
            self.read.fetch_add(bytes, Ordering::Relaxed);
        }
        if self.visible.load(Ordering::Relaxed) {
            if let Some(bar) = &*self.shown.lock().unwrap_or_else(|p| p.into_inner()) {
                bar.inc(1);
            }
            return;
        }
        let due = self.read.load(Ordering::Relaxed) > 0
            && self
                .started
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                >= self.delay;
        if due {
            let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
            if shown.is_none() {
                *shown = Some(self.draw());
                self.visible.store(true, Ordering::SeqCst);
            }
        }
    }

    fn found(&self, files: u64) {
        // A cold walk finds files as it goes: the round grows, and so does a bar already shown.
        self.files.fetch_add(files, Ordering::Relaxed);
        if self.visible.load(Ordering::Relaxed) {
            if let Some(bar) = &*self.shown.lock().unwrap_or_else(|p| p.into_inner()) {
                bar.inc_length(files);
            }
        }
    }

    fn finish(&self) {
        self.clear();
    }
}

/// Numbers and nouns as people write them (the library's rebuild messages use the same).
pub use cairn::text::{count, plural};

/// How many differences a summary lists of each group before "... and N more".
pub const SAMPLE: usize = 5;

/// At most this many imported packages are listed before the rest.
pub const SAMPLE_IMPORTED: usize = 10;

/// One difference as a summary shows it.
pub struct Entry<'a> {
    /// The part of the run.
    pub section: cairn::compare::Area,
    /// Subject, path, change and words.
    pub line: &'a cairn::compare::Reported,
    /// What follows the change in a listing: ` (1.26.4 -> 2.0.0)`, ` blake3:… -> blake3:…`.
    pub words: String,
    /// ` [warning]`, ` [info]` or nothing: what the difference does to the verdict.
    pub tag: &'static str,
    /// For a package: how likely it matters.
    pub salience: Option<&'a cairn::compare::Salience>,
}

/// Where a group of differences comes in a summary: what explains a run (code, command,
/// seed, variables, packages, lock files, host) before the content (data), then the effects.
fn summary_rank(a: cairn::compare::Area) -> u8 {
    use cairn::compare::Area as A;
    match a {
        A::Code => 0,
        A::Command => 1,
        A::Seed => 2,
        A::Env => 3,
        A::Python => 4,
        A::Lockfile => 5,
        A::Host => 6,
        A::Data => 7,
        A::Checkpoint => 8,
        A::Output => 9,
    }
}

/// A group's name as shown: `code`, `data train`, `checkpoint runs/final.pt`, `seed`,
/// `env PYTHONHASHSEED`, `host gpu`.
fn label(section: cairn::compare::Area, subject: &str) -> String {
    use cairn::compare::Area as A;
    match section {
        A::Code | A::Seed => section.as_str().to_string(),
        A::Command | A::Python => subject.to_string(),
        _ => format!("{} {subject}", section.as_str()),
    }
}

/// Which group an entry belongs to: packages all together (after the interpreter), else one
/// per section and subject.
fn group_key(e: &Entry<'_>) -> (u8, bool, String) {
    let package = e.section == cairn::compare::Area::Python && e.line.subject != "python";
    let subject = if package {
        String::new()
    } else {
        e.line.subject.clone()
    };
    (summary_rank(e.section), package, subject)
}

/// A summary of differences, `git diff --stat` style: one line per group (the code, each
/// dataset, checkpoint and output, the packages, each other cause) with the first few files
/// (`verbose`: all of them), causes before content. `files` gives the "of N files" of each
/// locked directory.
pub fn summarise(
    entries: &[Entry<'_>],
    files: &std::collections::BTreeMap<(cairn::compare::Area, String), u64>,
    verbose: bool,
) -> Vec<String> {
    let mut groups: std::collections::BTreeMap<(u8, bool, String), Vec<&Entry<'_>>> =
        std::collections::BTreeMap::new();
    for e in entries {
        groups.entry(group_key(e)).or_default().push(e);
    }
    let mut out = Vec::new();
    for ((_, package, _), list) in groups {
        let first = list[0];
        if package {
            packages(&list, verbose, &mut out);
            continue;
        }
        let name = label(first.section, &first.line.subject);
        let with_path = list.iter().filter(|e| e.line.path.is_some()).count();
        if with_path == 0 {
            for e in &list {
                out.push(format!(
                    "{name}: {}{}{}",
                    e.line.change.as_str(),
                    e.words,
                    e.tag
                ));
            }
            continue;
        }
        let t = cairn::compare::Tally::of(
            list.iter()
                .filter(|e| e.line.path.is_some())
                .map(|e| e.line.change),
        );
        let head = match files.get(&(first.section, first.line.subject.clone())) {
            Some(&total) => format!(
                "{} of {} changed, {} added, {} removed",
                count(t.changed),
                plural(total, "file", "files"),
                count(t.added),
                count(t.removed)
            ),
            None => format!(
                "{} changed, {} added, {} removed",
                plural(t.changed, "file", "files"),
                count(t.added),
                count(t.removed)
            ),
        };
        out.push(format!("{name}: {head}{}", first.tag));
        let shown = if verbose { list.len() } else { SAMPLE };
        for e in list.iter().take(shown) {
            let what = e.line.path.as_deref().unwrap_or("(as a whole)");
            out.push(format!(
                "  {:<12} {what}{}",
                e.line.change.as_str(),
                e.words
            ));
        }
        if list.len() > shown {
            out.push(format!(
                "  ... and {} more (--verbose lists them)",
                count((list.len() - shown) as u64)
            ));
        }
    }
    out
}

/// The groups of a summary by name, in its order: `code`, `seed`, `packages`, `data train`.
pub fn group_names(entries: &[Entry<'_>]) -> Vec<String> {
    let mut groups: std::collections::BTreeMap<(u8, bool, String), String> =
        std::collections::BTreeMap::new();
    for e in entries {
        groups.entry(group_key(e)).or_insert_with(|| {
            if e.section == cairn::compare::Area::Python && e.line.subject != "python" {
                "packages".to_string()
            } else {
                label(e.section, &e.line.subject)
            }
        });
    }
    groups.into_values().collect()
}

/// Names in a sentence: `a, b and c`, at most `max` of them then `and N more`.
pub fn listing(names: &[String], max: usize) -> String {
    let mut shown: Vec<String> = names.iter().take(max).cloned().collect();
    if names.len() > max {
        shown.push(format!("{} more", count((names.len() - max) as u64)));
    }
    match shown.len() {
        0 => String::new(),
        1 => shown[0].clone(),
        n => format!("{} and {}", shown[..n - 1].join(", "), shown[n - 1]),
    }
}

/// The packages that differ: the ones most likely to matter first (imported by the run, else
/// the largest changes), then counts.
fn packages(list: &[&Entry<'_>], verbose: bool, out: &mut Vec<String>) {
    use cairn::compare::Salience;
    let mut sorted: Vec<&Entry<'_>> = list.to_vec();
    sorted.sort_by(|a, b| a.salience.cmp(&b.salience));
    let all = cairn::compare::Tally::of(sorted.iter().map(|e| e.line.change));
    out.push(format!("packages: {}{}", tally_words(&all), list[0].tag));
    let imported = sorted
        .iter()
        .filter(|e| matches!(e.salience, Some(Salience::Imported { .. })))
        .count();
    let shown = if verbose {
        sorted.len()
    } else {
        imported.clamp(SAMPLE, SAMPLE_IMPORTED)
    };
    for e in sorted.iter().take(shown) {
        let why = match e.salience {
            Some(Salience::Imported { modules, by }) if modules[..] == [e.line.subject.clone()] => {
                format!(", imported by {by}")
            }
            Some(Salience::Imported { modules, by }) => {
                format!(", imported by {by} (as {})", modules.join(", "))
            }
            _ => String::new(),
        };
        out.push(format!(
            "  {} {}{}{why}",
            e.line.subject,
            e.line.change.as_str(),
            e.words
        ));
    }
    if sorted.len() > shown {
        let rest = cairn::compare::Tally::of(sorted[shown..].iter().map(|e| e.line.change));
        out.push(format!(
            "  ... and {} more {}: {}; --verbose lists them",
            count(rest.total()),
            if rest.total() == 1 {
                "package"
            } else {
                "packages"
            },
            tally_parts(&rest)
        ));
    }
}

/// `60 added, 30 removed, 14 changed`: the counts that are not zero.
fn tally_parts(t: &cairn::compare::Tally) -> String {
    let parts: Vec<String> = [
        (t.added, "added"),
        (t.removed, "removed"),
        (t.changed, "changed"),
        (t.other, "missing"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, w)| format!("{} {w}", count(*n)))
    .collect();
    parts.join(", ")
}

/// `1 changed`, or `104 differ: 60 added, 30 removed, 14 changed`.
fn tally_words(t: &cairn::compare::Tally) -> String {
    if t.total() == 1 {
        tally_parts(t)
    } else {
        format!("{} differ: {}", count(t.total()), tally_parts(t))
    }
}

/// A path as shown: relative to the current directory when it is below it, else as given.
pub fn shown_path(cwd: &std::path::Path, path: &std::path::Path) -> String {
    path.strip_prefix(cwd)
        .ok()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_plurals() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(2800), "2,800");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(plural(1, "file", "files"), "1 file");
        assert_eq!(plural(0, "file", "files"), "0 files");
        assert_eq!(plural(3000, "file", "files"), "3,000 files");
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).into();
        assert_eq!(listing(&names[..1], 4), "a");
        assert_eq!(listing(&names[..3], 4), "a, b and c");
        assert_eq!(listing(&names, 4), "a, b, c, d and 1 more");
    }

    #[test]
    fn summary_puts_what_explains_a_run_before_the_data() {
        use cairn::compare::{Area, Change, Reported};
        let rep = |subject: &str, path: Option<String>, change: Change| Reported {
            subject: subject.into(),
            path,
            change,
            detail: None,
        };
        let mut lines = Vec::new();
        for i in 0..12 {
            lines.push((
                Area::Data,
                rep("train", Some(format!("f{i:02}")), Change::Changed),
            ));
        }
        lines.push((Area::Python, rep("numpy", None, Change::Changed)));
        lines.push((Area::Python, rep("python", None, Change::Changed)));
        lines.push((Area::Seed, rep("seed", None, Change::Added)));
        let entries: Vec<Entry<'_>> = lines
            .iter()
            .map(|(section, line)| Entry {
                section: *section,
                line,
                words: String::new(),
                tag: "",
                salience: None,
            })
            .collect();
        let files = [((Area::Data, "train".to_string()), 40)].into();
        let out = summarise(&entries, &files, false);
        assert_eq!(
            out,
            [
                "seed: added",
                "python: changed",
                "packages: 1 changed",
                "  numpy changed",
                "data train: 12 of 40 files changed, 0 added, 0 removed",
                "  changed      f00",
                "  changed      f01",
                "  changed      f02",
                "  changed      f03",
                "  changed      f04",
                "  ... and 7 more (--verbose lists them)",
            ]
        );
        assert_eq!(summarise(&entries, &files, true).len(), 4 + 1 + 12);
        assert_eq!(
            group_names(&entries),
            ["seed", "python", "packages", "data train"]
        );
    }

    #[test]
    fn tallies_in_words() {
        let t = cairn::compare::Tally {
            changed: 1,
            ..Default::default()
        };
        assert_eq!(tally_words(&t), "1 changed");
        let t = cairn::compare::Tally {
            changed: 14,
            added: 60,
            removed: 30,
            other: 0,
        };
        assert_eq!(
            tally_words(&t),
            "104 differ: 60 added, 30 removed, 14 changed"
        );
    }
}
