//! Text from a repository, made safe to show a person.
//!
//! Every string a lock, a manifest, a file name or a package can carry is the repository
//! author's. Printed raw, an escape sequence drives the terminal (colours, cursor moves, a title,
//! a hidden line), a newline forges a line of cairn's own output, and a line starting `::` is a
//! GitHub Actions workflow command. [`visible`] is the one function every human format and
//! prompt passes such strings through: control characters and the Unicode controls that reorder
//! text are shown as escapes, so what the user reads is what the bytes are.

use std::borrow::Cow;

/// A path as [`visible`] shows text (bytes that are not UTF-8 become U+FFFD).
pub fn visible_path(p: &std::path::Path) -> String {
    visible(&p.to_string_lossy()).into_owned()
}

/// `s` with every control character made visible: `\e` (escape), `\n`, `\r`, `\t`, `\0`, other
/// C0 and C1 controls and DEL as `\x{HH}`, and the bidirectional and zero-width formatting
/// characters as `\u{HHHH}`. A leading `::` (a GitHub Actions workflow command) becomes
/// `\x{3a}:`. Text with none of these is returned as it is, without copying.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.starts_with("::") && !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars();
    if s.starts_with("::") {
        out.push_str("\\x{3a}");
        chars.next();
    }
    for c in chars {
        match c {
            '\x1b' => out.push_str("\\e"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\x{{{:02x}}}", c as u32)),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Does `s` hold a character that [`visible`] would escape? Locks whose paths or names do are
/// refused as invalid.
pub fn has_control(s: &str) -> bool {
    s.chars().any(needs_escape)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // Bidirectional embeddings, overrides and isolates ("Trojan Source", CVE-2021-42574).
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
            // Zero-width characters and line/paragraph separators.
            | '\u{200b}'..='\u{200d}' | '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// `n` with thousands separators: `2,800`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` and the noun, singular or plural: `1 file`, `2,800 files`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_not_copied() {
        assert!(matches!(
            visible("runs/ckpt-1.safetensors"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(visible("données/été.txt"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_are_shown() {
        assert_eq!(visible("a\x1b[2Jb"), "a\\e[2Jb");
        assert_eq!(visible("x\n::error::y"), "x\\n::error::y");
        assert_eq!(visible("::warning::z"), "\\x{3a}:warning::z");
        assert_eq!(visible("tab\there\r\0"), "tab\\there\\r\\0");
        assert_eq!(visible("\x07\x7f\u{9b}"), "\\x{07}\\x{7f}\\x{9b}");
        assert_eq!(visible("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert!(has_control("a\nb") && has_control("\u{2066}") && !has_control("a b"));
    }
}
