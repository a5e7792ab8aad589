//! Printing: data to stdout, messages to stderr; colour only on a terminal and never with
//! `NO_COLOR`.

use std::io::IsTerminal;

/// Where messages go and how they look.
pub struct Printer {
    quiet: bool,
    color: bool,
}

impl Printer {
    pub fn new(quiet: bool) -> Printer {
        let color = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Printer { quiet, color }
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
        if let Some(hint) = err
            .chain()
            .find_map(|e| e.downcast_ref::<cairn::Error>())
            .and_then(cairn::Error::hint)
        {
            eprintln!("{}: {hint}", self.paint("1;36", "hint"));
        }
    }
}
