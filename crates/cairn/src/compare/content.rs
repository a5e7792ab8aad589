//! Datasets, checkpoints and outputs: digests compared, and file by file through their
//! manifests when both are here.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::*;
use crate::content::digest::Entry;

/// A side's manifest of a directory digest: in memory when just hashed (borrowed, not copied:
/// it can hold a million entries), else from `.cairn/manifests/` (its bytes checked against
/// the digest before parsing).
pub fn manifest_of<'a>(project: &Project, content: &'a Content) -> Option<Cow<'a, Manifest>> {
    if let Some(m) = &content.manifest {
        return Some(Cow::Borrowed(m));
    }
    let text = project.read_manifest(&content.digest).ok()?;
    (Digest::of_bytes(&text) == content.digest)
        .then(|| Manifest::parse(&text).ok().map(Cow::Owned))
        .flatten()
}

/// The differences between two contents of one dataset, checkpoint or output: file by file
/// when both manifests are here, else one for the whole. Empty when they are the same.
pub fn content_differences(
    project: &Project,
    (area, subject): (Area, &str),
    locked: &Content,
    now: &Content,
) -> Vec<Difference> {
    if locked.digest == now.digest && locked.kind == now.kind {
        return Vec::new();
    }
    let whole = Difference::new(area, subject, Change::Changed).values(
        Some(Value::Digest(locked.digest)),
        Some(Value::Digest(now.digest)),
    );
    if locked.kind != now.kind {
        return vec![whole.because(Reason::KindChanged {
            locked: locked.kind,
            now: now.kind,
        })];
    }
    if locked.kind == Kind::File {
        return vec![whole];
    }
    // The usual case (verify: the lock's side stored, this side just hashed) streams the
    // stored manifest past the one in memory instead of parsing it whole.
    let streamed = match (&locked.manifest, &now.manifest) {
        (None, Some(m)) => stream_diff(project, &locked.digest, m, true),
        (Some(m), None) => stream_diff(project, &now.digest, m, false),
        _ => None,
    };
    let files = match streamed {
        Some(files) => files,
        None => {
            let (ml, mn) = (manifest_of(project, locked), manifest_of(project, now));
            let (Some(ml), Some(mn)) = (&ml, &mn) else {
                let missing = if ml.is_none() {
                    locked.digest
                } else {
                    now.digest
                };
                return vec![whole.because(Reason::NoManifest(project.manifest_path(&missing)))];
            };
            manifest_diff(ml, mn)
        }
    };
    if files.is_empty() {
        // Same text, different digest cannot happen; be explicit rather than silent.
        return vec![whole];
    }
    files
        .into_iter()
        .map(|(path, change)| {
            let mut d = Difference::new(area, subject, change);
            d.path = Some(path);
            d
        })
        .collect()
}

/// Sorted by path bytes, no duplicates, every name UTF-8: the lists the merges below take.
fn sorted_utf8<'a>(entries: impl Iterator<Item = Entry<'a>>) -> bool {
    let mut prev: Option<&[u8]> = None;
    for e in entries {
        if prev.is_some_and(|p| p >= e.path) || std::str::from_utf8(e.path).is_err() {
            return false;
        }
        prev = Some(e.path);
    }
    true
}

/// The files that differ between the stored manifest of `digest` (in `.cairn/manifests/`) and
/// `mem`, the stored one read as a stream, line by line in a small buffer, and merged with
/// `mem` in one pass (a million-file manifest is about 90 MB of text): `stored_is_old` says
/// which side is the older. `None` when the stored one is not there or not a regular file,
/// fails its digest (known only at its end; nothing found before counts then), or either side
/// is out of order or has a name that is not UTF-8: the caller then takes the long way, which
/// says why.
fn stream_diff(
    project: &Project,
    digest: &Digest,
    mem: &Manifest,
    stored_is_old: bool,
) -> Option<Vec<(String, Change)>> {
    use std::io::BufRead;
    if !sorted_utf8(mem.iter()) {
        return None;
    }
    let (file, size) = crate::fs::open_regular(&project.manifest_path(digest)).ok()?;
    if size > crate::fs::MAX_MANIFEST_BYTES {
        return None;
    }
    // Entries only in the stored manifest, and only in memory.
    let (stored_only, mem_only) = if stored_is_old {
        (Change::Removed, Change::Added)
    } else {
        (Change::Added, Change::Removed)
    };
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut hasher = blake3::Hasher::new();
    let (mut line, mut scratch, mut prev) = (Vec::new(), Vec::new(), Vec::new());
    let mut mem = mem.iter().peekable();
    let mut out = Vec::new();
    for lineno in 1.. {
        line.clear();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            break;
        }
        hasher.update(&line);
        let text = std::str::from_utf8(line.strip_suffix(b"\n")?).ok()?;
        let (path, hash) = crate::content::manifest::parse_line(text, lineno, &mut scratch).ok()?;
        if (lineno > 1 && prev.as_slice() >= path) || std::str::from_utf8(path).is_err() {
            return None;
        }
        while let Some(e) = mem.next_if(|e| e.path < path) {
            out.push((e.shown(), mem_only));
        }
        match mem.next_if(|e| e.path == path) {
            Some(e) if e.hash != hash => out.push((e.shown(), Change::Changed)),
            Some(_) => {}
            None => {
                let e = Entry {
                    path,
                    hash,
                    size: None,
                };
                out.push((e.shown(), stored_only));
            }
        }
        prev.clear();
        prev.extend_from_slice(path);
    }
    out.extend(mem.map(|e| (e.shown(), mem_only)));
    (Digest::from(hasher.finalize()) == *digest).then_some(out)
}

fn location_text(l: &Location) -> String {
    match l {
        Location::Path(p) => p.to_string(),
        Location::External => "external".into(),
    }
}

pub(super) fn items<K: Ord + fmt::Display>(
    project: &Project,
    area: Area,
    a: &BTreeMap<K, Item>,
    b: &BTreeMap<K, Item>,
    out: &mut Vec<Difference>,
) {
    let keys: BTreeSet<&K> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let subject = key.to_string();
        let (x, y) = match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) => (x, y),
            (x, y) => {
                let digest = |i: Option<&Item>| {
                    i.and_then(|i| i.content.as_ref().ok())
                        .map(|c| Value::Digest(c.digest))
                };
                out.push(value_difference(area, &subject, digest(x), digest(y)));
                continue;
            }
        };
        if let (Some(lx), Some(ly)) = (&x.location, &y.location) {
            if lx != ly {
                out.push(
                    Difference::new(area, &subject, Change::Changed)
                        .values(
                            Some(Value::Text(location_text(lx))),
                            Some(Value::Text(location_text(ly))),
                        )
                        .because(Reason::Relocated),
                );
            }
        }
        match (&x.content, &y.content) {
            (Ok(cx), Ok(cy)) => out.extend(content_differences(project, (area, &subject), cx, cy)),
            (Ok(cx), Err(absence)) | (Err(absence), Ok(cx)) => {
                let (change, reason) = match absence {
                    Absence::NotFound(p) => (Change::Missing, Reason::NotFound(p.clone())),
                    Absence::DeletedByRun(_) => (Change::Deleted, Reason::DeletedByRun),
                    Absence::Unlocated => (Change::Unchecked, Reason::Unlocated),
                    Absence::LeadsOutside { place, target } => (
                        Change::Unchecked,
                        Reason::LeadsOutside {
                            place: place.clone(),
                            target: target.clone(),
                        },
                    ),
                };
                out.push(
                    Difference::new(area, &subject, change)
                        .values(Some(Value::Digest(cx.digest)), None)
                        .because(reason),
                );
            }
            (Err(_), Err(_)) => {}
        }
        if let (Some(mx), Some(my)) = (&x.metrics, &y.metrics) {
            let names: BTreeSet<&String> = mx.keys().chain(my.keys()).collect();
            for name in names {
                let (va, vb) = (mx.get(name), my.get(name));
                if va != vb {
                    let mut d = value_difference(
                        area,
                        &subject,
                        va.map(|v| Value::Text(v.0.to_string())),
                        vb.map(|v| Value::Text(v.0.to_string())),
                    )
                    .because(Reason::Metric);
                    d.path = Some(format!("metric {name}"));
                    out.push(d);
                }
            }
        }
    }
}

/// Files that differ between two manifests, shown by their escaped names
/// ([`crate::content::digest::Entry::shown`]).
///
/// Both lists are normally sorted by the same bytes, so one streaming merge pass does it,
/// holding nothing but the differences; a stored manifest written in another order is compared
/// through maps instead.
pub fn manifest_diff(old: &Manifest, new: &Manifest) -> Vec<(String, Change)> {
    if !(sorted_utf8(old.iter()) && sorted_utf8(new.iter())) {
        return manifest_diff_by_name(old, new);
    }
    let mut out = Vec::new();
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(o), None) => {
                out.push((o.shown(), Change::Removed));
                a.next();
            }
            (None, Some(n)) => {
                out.push((n.shown(), Change::Added));
                b.next();
            }
            (Some(o), Some(n)) => match o.path.cmp(n.path) {
                std::cmp::Ordering::Less => {
                    out.push((o.shown(), Change::Removed));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((n.shown(), Change::Added));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if o.hash != n.hash {
                        out.push((o.shown(), Change::Changed));
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    out
}

fn manifest_diff_by_name(old: &Manifest, new: &Manifest) -> Vec<(String, Change)> {
    let old: BTreeMap<String, Digest> = old.iter().map(|e| (e.shown(), e.hash)).collect();
    let new: BTreeMap<String, Digest> = new.iter().map(|e| (e.shown(), e.hash)).collect();
    let mut out = Vec::new();
    for (p, h) in &old {
        match new.get(p) {
            None => out.push((p.clone(), Change::Removed)),
            Some(n) if n != h => out.push((p.clone(), Change::Changed)),
            Some(_) => {}
        }
    }
    for p in new.keys() {
        if !old.contains_key(p) {
            out.push((p.clone(), Change::Added));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::digest::Entry;

    use crate::content::manifest::test_manifest as m;

    #[test]
    fn merge_and_map_diffs_agree() {
        let old = m(&[(b"a", 1), (b"b", 2), (b"d/x", 3)]);
        let new = m(&[(b"a", 1), (b"b", 9), (b"c", 4)]);
        let want = vec![
            ("b".to_string(), Change::Changed),
            ("c".to_string(), Change::Added),
            ("d/x".to_string(), Change::Removed),
        ];
        let mut merged = manifest_diff(&old, &new);
        merged.sort();
        assert_eq!(merged, want);
        assert_eq!(manifest_diff_by_name(&old, &new), want);
        // Names that are not UTF-8 are told apart and shown escaped.
        let old = m(&[(b"\xfe", 1), (b"\xff", 1)]);
        let new = m(&[(b"\xfe", 1), (b"\xff", 2)]);
        let want = vec![("\\xff".to_string(), Change::Changed)];
        assert_eq!(manifest_diff(&old, &new), want);
        // A stored manifest out of order goes through maps, with the same answer.
        let entries: Vec<Entry<'_>> = old.iter().collect();
        let unsorted: Manifest = entries.into_iter().rev().collect();
        assert_eq!(manifest_diff(&unsorted, &new), want);
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    fn m(items: &[(&str, u8)]) -> Manifest {
        let items: Vec<(&[u8], u8)> = items.iter().map(|(p, h)| (p.as_bytes(), *h)).collect();
        crate::content::manifest::test_manifest(&items)
    }

    /// Streaming the stored side gives what parsing it whole gives, in either direction; a
    /// stored manifest that fails its digest, is out of order or is not there gives `None`.
    #[test]
    fn streamed_and_parsed_diffs_agree() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::open(dir.path(), false).unwrap();
        let old = m(&[("a", 1), ("b", 2), ("c/x", 3), ("d", 4), ("é", 5)]);
        let new = m(&[("a", 1), ("b", 9), ("c/y", 3), ("d", 4), ("z", 6)]);
        let store = |m: &Manifest, text: &[u8]| {
            let path = project.manifest_path(&m.digest());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        store(&old, &old.to_text());
        store(&new, &new.to_text());
        let want = manifest_diff(&old, &new);
        assert_eq!(want.len(), 5, "{want:?}");
        assert_eq!(
            stream_diff(&project, &old.digest(), &new, true),
            Some(want.clone())
        );
        assert_eq!(
            stream_diff(&project, &new.digest(), &old, false),
            Some(want)
        );
        // Damaged: the digest fails at the end, so nothing found counts.
        let mut text = old.to_text();
        text[3] = b'f';
        store(&old, &text);
        assert_eq!(stream_diff(&project, &old.digest(), &new, true), None);
        // Out of order (and so another digest): not streamed.
        let unsorted = m(&[("b", 2), ("a", 1)]);
        store(&unsorted, &unsorted.to_text());
        assert_eq!(stream_diff(&project, &unsorted.digest(), &new, true), None);
        // Not there.
        assert_eq!(stream_diff(&project, &Digest([7; 32]), &new, true), None);
    }
}

#[cfg(test)]
mod absence_tests {
    use super::*;
    use crate::model::lockfile::Metric;

    fn item(digest: u8, content: bool, metrics: Option<&[(&str, f64)]>) -> Item {
        Item {
            location: None,
            content: if content {
                Ok(Content {
                    kind: Kind::File,
                    digest: Digest([digest; 32]),
                    manifest: None,
                })
            } else {
                Err(Absence::Unlocated)
            },
            metrics: metrics.map(|m| m.iter().map(|(k, v)| (k.to_string(), Metric(*v))).collect()),
        }
    }

    /// Whatever the side, an absence is one typed difference: `missing` for nothing there,
    /// `unchecked` for what was not read, with the reason (never a string key).
    #[test]
    fn absences_and_metrics_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::open(dir.path(), false).unwrap();
        let locked: BTreeMap<String, Item> = [
            ("ext".to_string(), item(1, true, None)),
            ("gone".to_string(), item(2, true, None)),
            ("link".to_string(), item(3, true, None)),
            ("same".to_string(), item(4, true, Some(&[("loss", 0.5)]))),
        ]
        .into();
        let mut now = locked.clone();
        now.get_mut("ext").unwrap().content = Err(Absence::Unlocated);
        now.get_mut("gone").unwrap().content = Err(Absence::NotFound("/x/gone".into()));
        now.get_mut("link").unwrap().content = Err(Absence::LeadsOutside {
            place: "/p/link".into(),
            target: "/etc".into(),
        });
        now.get_mut("same").unwrap().metrics = Some([("loss".to_string(), Metric(0.25))].into());
        let mut out = Vec::new();
        items(&project, Area::Data, &locked, &now, &mut out);
        let got: Vec<(&str, Change, Option<&Reason>)> = out
            .iter()
            .map(|d| (d.subject.as_str(), d.change, d.reason.as_ref()))
            .collect();
        assert_eq!(
            got,
            [
                ("ext", Change::Unchecked, Some(&Reason::Unlocated)),
                (
                    "gone",
                    Change::Missing,
                    Some(&Reason::NotFound("/x/gone".into()))
                ),
                (
                    "link",
                    Change::Unchecked,
                    Some(&Reason::LeadsOutside {
                        place: "/p/link".into(),
                        target: "/etc".into()
                    })
                ),
                ("same", Change::Changed, Some(&Reason::Metric)),
            ]
        );
        assert_eq!(out[3].path.as_deref(), Some("metric loss"));
        assert_eq!(out[3].locked, Some(Value::Text("0.5".into())));
        assert_eq!(out[3].now, Some(Value::Text("0.25".into())));
        // One wording for every command: the advice names the dataset.
        assert_eq!(
            out[0].reason_text().as_deref(),
            Some("external dataset: say where it is with --data ext=PATH or in cairn.toml")
        );
        // A side with no content on either side of a pair is no difference.
        let both_absent: BTreeMap<String, Item> = [("x".to_string(), item(0, false, None))].into();
        let mut out = Vec::new();
        items(&project, Area::Data, &both_absent, &both_absent, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
