//! pip's requirements files: logical lines (a trailing `\` joins the next line), comments
//! (`#` at the start or after whitespace), option lines (`--index-url`, `-e`, ...) skipped,
//! `-r`/`-c` files included from inside the project, per-requirement options (`--hash=...`) cut
//! off, and each requirement read as PEP 508 by `pep508_rs`.

use std::str::FromStr;

use pep508_rs::{Requirement, VersionOrUrl};

use super::{Need, Parsed, Place, Reader, Spec, Want};

/// How deep `-r` files may nest (pip has no limit, but a loop must end).
const MAX_DEPTH: usize = 16;

/// Join continued lines as pip does: a line ending in `\` continues on the next, unless it is a
/// whole-line comment. Yields (first line number, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (i, line) in text.lines().enumerate() {
        if current.is_empty() {
            start = i + 1;
        }
        let whole_comment = line.trim_start().starts_with('#');
        match line.strip_suffix('\\') {
            Some(head) if !whole_comment => current.push_str(head),
            _ => {
                current.push_str(line);
                out.push((start, std::mem::take(&mut current)));
            }
        }
    }
    if !current.is_empty() {
        out.push((start, current));
    }
    out
}

/// Remove a comment: `#` at the start of the line or after whitespace (a URL's `#egg=` stays).
fn strip_comment(line: &str) -> &str {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return &line[..i];
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// The value of an option line `-r x`, `-rx`, `--requirement x` or `--requirement=x`, for the
/// short and long names given.
fn option_value<'a>(line: &'a str, short: &str, long: &str) -> Option<&'a str> {
    if let Some(rest) = line.strip_prefix(long) {
        let rest = rest.strip_prefix('=').unwrap_or(rest);
        return (rest.starts_with(char::is_whitespace) || !rest.is_empty())
            .then(|| rest.trim())
            .filter(|v| !v.is_empty());
    }
    line.strip_prefix(short)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Read requirement lines into `out` (used for requirements files and the `pip:` list of an
/// environment.yml). `here` is the file the lines are in, for `-r` paths and messages.
pub(super) fn lines(
    text: &str,
    here: &Place<'_>,
    read: &mut Reader<'_>,
    depth: usize,
    out: &mut Parsed,
) {
    for (number, line) in logical_lines(text) {
        let line = strip_comment(&line).trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('-') {
            let include = option_value(line, "-r", "--requirement")
                .map(|p| (p, false))
                .or_else(|| option_value(line, "-c", "--constraint").map(|p| (p, true)));
            if let Some((path, constraint)) = include {
                included(path, constraint, here, number, read, depth, out);
            }
            // Every other option (`-e`, `--index-url`, `-f`, `--pre`...) says nothing about
            // versions: an editable install is the project's code.
            continue;
        }
        // Per-requirement options start at the first word that starts with `-`.
        let mut words: Vec<&str> = Vec::new();
        for word in line.split_whitespace() {
            if word.starts_with("--") || (word.starts_with('-') && word.len() == 2) {
                break;
            }
            words.push(word);
        }
        let requirement = words.join(" ");
        match one(&requirement) {
            Ok(Some(mut w)) => {
                if let Some(via) = here.via {
                    w.text = format!("{} (from {via})", w.text);
                }
                if here.constraint {
                    w.need = Need::IfInstalled;
                }
                out.wants.push(w);
            }
            Ok(None) => {}
            Err(e) => out
                .problems
                .push(format!("{} line {number}: {e}", here.name)),
        }
    }
}

/// An included file: read through `read`, which keeps to the project; its own includes are
/// relative to it.
fn included(
    path: &str,
    constraint: bool,
    here: &Place<'_>,
    number: usize,
    read: &mut Reader<'_>,
    depth: usize,
    out: &mut Parsed,
) {
    if depth >= MAX_DEPTH {
        out.problems.push(format!(
            "{} line {number}: `-r {path}` nests more than {MAX_DEPTH} files deep; not read",
            here.name
        ));
        return;
    }
    if path.contains("://") {
        out.problems.push(format!(
            "{} line {number}: `{path}` is a URL; not fetched",
            here.name
        ));
        return;
    }
    let joined = match here.name.rsplit_once('/') {
        Some((dir, _)) if !path.starts_with('/') => format!("{dir}/{path}"),
        _ => path.to_string(),
    };
    match read(&joined) {
        Ok((name, text)) => {
            // The finding is about the outermost file; `via` names the one the requirement
            // is written in.
            let place = Place {
                name: &name,
                via: Some(&name),
                constraint: constraint || here.constraint,
            };
            lines(&text, &place, read, depth + 1, out);
        }
        Err(e) => out
            .problems
            .push(format!("{} line {number}: {e}", here.name)),
    }
}

/// One requirement (comments and options already cut off): `Ok(None)` for a line that names no
/// package (a path or a URL alone), `Err` for one pip would refuse too.
pub(super) fn one(text: &str) -> Result<Option<Want>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // A path or URL without a name (`./pkg`, `https://host/pkg.whl`, `git+https://...`).
    let unnamed = text.starts_with(['.', '/', '~'])
        || text
            .split_once("://")
            .is_some_and(|(scheme, _)| !scheme.contains([' ', '@', ';']));
    if unnamed {
        return Ok(None);
    }
    let r = pep508(text).map_err(|e| format!("`{text}`: {e}"))?;
    Ok(Some(from_requirement(&r, Vec::new(), Need::Required)))
}

/// Parse a PEP 508 requirement; `Err` has the parser's first line. A name or extra that ends in
/// `.`, `-` or `_` before more text is refused here: pep508_rs 0.9.2 panics on it (its name
/// check and its parser disagree) where it should return an error.
pub(super) fn pep508(text: &str) -> Result<Requirement<pep508_rs::VerbatimUrl>, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let bad_end = |s: &str| s.ends_with(['.', '-', '_']);
    let rest = text.trim_start();
    let name_end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
    if bad_end(&rest[..name_end]) {
        return Err("a package name must end with a letter or digit".to_string());
    }
    if let Some(extras) = rest[name_end..].trim_start().strip_prefix('[') {
        let inside = extras.split(']').next().unwrap_or_default();
        if inside.split(|c: char| !is_name(c)).any(bad_end) {
            return Err("an extra's name must end with a letter or digit".to_string());
        }
    }
    Requirement::<pep508_rs::VerbatimUrl>::from_str(text).map_err(|e| {
        let message = e.to_string();
        message.lines().next().unwrap_or_default().to_string()
    })
}

/// A [`Want`] from a parsed PEP 508 requirement.
pub(super) fn from_requirement(
    r: &Requirement<pep508_rs::VerbatimUrl>,
    extras: Vec<pep508_rs::ExtraName>,
    need: Need,
) -> Want {
    let name = r.name.to_string();
    let (spec, text) = match &r.version_or_url {
        None => (Spec::Any, name.clone()),
        Some(VersionOrUrl::VersionSpecifier(s)) => {
            let written: Vec<String> = s.iter().map(ToString::to_string).collect();
            (
                Spec::Pep440(s.clone()),
                format!("{name}{}", written.join(",")),
            )
        }
        Some(VersionOrUrl::Url(u)) => (Spec::Any, format!("{name} @ {u}")),
    };
    let marker = (!r.marker.is_true()).then(|| r.marker.clone());
    Want {
        name,
        text,
        spec,
        marker,
        extras,
        need,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_and_comments() {
        let got = logical_lines("a==1 \\\n  --hash=x\n# c \\\nb\nc\\\n");
        assert_eq!(
            got,
            vec![
                (1, "a==1   --hash=x".to_string()),
                (3, "# c \\".to_string()),
                (4, "b".to_string()),
                (5, "c".to_string())
            ]
        );
        assert_eq!(
            strip_comment("x @ https://h/p#egg=x # y"),
            "x @ https://h/p#egg=x "
        );
    }

    #[test]
    fn options() {
        assert_eq!(
            option_value("-r base.txt", "-r", "--requirement"),
            Some("base.txt")
        );
        assert_eq!(
            option_value("-rbase.txt", "-r", "--requirement"),
            Some("base.txt")
        );
        assert_eq!(
            option_value("--requirement=base.txt", "-r", "--requirement"),
            Some("base.txt")
        );
        assert_eq!(option_value("-e .", "-r", "--requirement"), None);
    }

    #[test]
    fn one_requirement() {
        let w = one("Six >= 1.17 ; python_version >= '3.8'")
            .unwrap()
            .unwrap();
        assert_eq!((w.name.as_str(), w.text.as_str()), ("six", "six>=1.17"));
        assert!(w.marker.is_some());
        let w = one("typing_extensions[x]>=4,<5").unwrap().unwrap();
        assert_eq!(w.text, "typing-extensions>=4,<5");
        assert_eq!(one("./local/pkg").unwrap(), None);
        assert_eq!(one("https://example.com/pkg-1.0.tar.gz").unwrap(), None);
        let w = one("flash-attn @ https://github.com/x/f.whl")
            .unwrap()
            .unwrap();
        assert_eq!(w.spec, Spec::Any);
        // pep508_rs 0.9.2 would panic on these two.
        assert!(one("A_>=1")
            .unwrap_err()
            .contains("must end with a letter or digit"));
        assert!(one("a[x_]>=1")
            .unwrap_err()
            .contains("must end with a letter or digit"));
        let err = one("torch==").unwrap_err();
        assert!(err.starts_with("`torch==`: "), "{err}");
    }
}
