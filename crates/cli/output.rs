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
}

impl<W: Write> Human<W> {
    /// A human report written to `w`.
    pub fn new(w: W) -> Human<W> {
        Human {
            w,
            pending: Vec::new(),
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
        let mut h = Human::new(w);
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

/// A difference's subject and file as shown: the file alone for code (`src/train.py`), else
/// `subject: file` or the subject alone.
pub fn what(line: &cairn::compare::Reported) -> String {
    match &line.path {
        Some(p) if line.subject == "code" => p.clone(),
        Some(p) => format!("{}: {p}", line.subject),
        None => line.subject.clone(),
    }
}

/// A reported line's words in parentheses after a space, or nothing when it has none.
pub fn detail(line: &cairn::compare::Reported) -> String {
    line.detail
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
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

    fn found(&self, files: u64) {
        self.bar.inc_length(files);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
