//! Printing: data to stdout, messages to stderr; colour only on a terminal and never with
//! `NO_COLOR`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
            eprintln!("{}: {msg}", self.paint("1;33", "warning"));
        }
    }

    /// A `hint:` line on stderr, after a warning (suppressed by --quiet).
    pub fn hint(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{}: {msg}", self.paint("1;36", "hint"));
        }
    }

    /// An informational line on stderr (suppressed by --quiet).
    pub fn info(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    /// Print an error, its cause chain and any hint.
    pub fn error(&self, err: &anyhow::Error) {
        eprintln!("{}: {err}", self.paint("1;31", "error"));
        for cause in err.chain().skip(1) {
            eprintln!("  {} {cause}", self.paint("2", "caused by:"));
        }
        if let Some(hint) = err.chain().find_map(|e| {
            e.downcast_ref::<cairn::Error>()
                .and_then(cairn::Error::hint)
                .or_else(|| {
                    e.downcast_ref::<cairn::ops::rebuild::RebuildError>()
                        .and_then(cairn::ops::rebuild::RebuildError::hint)
                })
        }) {
            eprintln!("{}: {hint}", self.paint("1;36", "hint"));
        }
    }
}

/// Write a report to stdout: pretty JSON with `json`, else what `human` prints.
pub fn write_report<R: serde::Serialize>(
    report: &R,
    json: bool,
    human: impl FnOnce(&mut std::io::StdoutLock<'static>, &R) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut w = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut w, report)?;
        writeln!(w)?;
    } else {
        human(&mut w, report)?;
    }
    w.flush()?;
    Ok(())
}

/// A progress bar for hashing: files, bytes, rate and ETA.
pub struct HashBar {
    bar: ProgressBar,
    bytes: Arc<AtomicU64>,
}

impl HashBar {
    fn new() -> HashBar {
        let bytes = Arc::new(AtomicU64::new(0));
        let (b1, b2) = (bytes.clone(), bytes.clone());
        let style = ProgressStyle::with_template(
            "{spinner} hashing [{bar:30}] {pos}/{len} files, {data} at {rate}, eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> ")
        .with_key(
            "data",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", HumanBytes(b1.load(Ordering::Relaxed)));
            },
        )
        .with_key(
            "rate",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let secs = s.elapsed().as_secs_f64().max(1e-3);
                let rate = b2.load(Ordering::Relaxed) as f64 / secs;
                let _ = write!(w, "{}/s", HumanBytes(rate as u64));
            },
        );
        // Hidden until there is something to hash, so nothing flashes before that.
        let bar = ProgressBar::hidden();
        bar.set_style(style);
        HashBar { bar, bytes }
    }
}

impl cairn::content::digest::Progress for HashBar {
    fn start(&self, files: u64) {
        self.bytes.store(0, Ordering::Relaxed);
        self.bar.reset();
        self.bar.set_length(files);
        self.bar.set_position(0);
        self.bar.set_draw_target(ProgressDrawTarget::stderr());
    }

    fn file_done(&self, bytes: u64, _read: bool) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
