//! conda's side of the dependency files: `environment.yml` read with a YAML parser, conda match
//! specs (`numpy=1.26`, `pytorch::pytorch>=2.4,<3=*cuda*`, `scipy 1.14.*|1.15.*`) and conda's
//! version order, which is not PEP 440's (`1.1dev1 < 1.1a1 < 1.1 < 1.1post1`, `1.26 == 1.26.0`).
//!
//! The rules follow conda's own documentation of match specs and of `VersionOrder`; what conda
//! accepts that is not read here (a `[md5=...]` or `[subdir=...]` key, a spec with a URL) is
//! ignored rather than guessed at.

use std::cmp::Ordering;

use yaml_rust2::{Yaml, YamlLoader};

use super::{Need, Parsed, Spec, Want};

/// A conda match spec: the parts cairn can check against `conda-meta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchSpec {
    /// The channel before `::`, without a platform subdir (`conda-forge`,
    /// `nvidia/label/cuda-12.1.0`), when named.
    pub channel: Option<String>,
    /// The version constraint (`>=1.2,<2|3.*`), when there is one.
    pub version: Option<VersionSpec>,
    /// The build string, a glob (`py3*_0`), when there is one.
    pub build: Option<String>,
}

impl MatchSpec {
    /// Whether an installed version (and build, when known) meets this spec.
    pub fn matches(&self, version: &str, build: Option<&str>) -> bool {
        let version_ok = self.version.as_ref().is_none_or(|v| v.matches(version));
        let build_ok = match (&self.build, build) {
            (Some(pattern), Some(b)) => glob_match(pattern, b),
            _ => true,
        };
        version_ok && build_ok
    }
}

/// A conda version spec: alternatives (`|`) of conjunctions (`,`) of single constraints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSpec {
    any_of: Vec<Vec<Constraint>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Constraint {
    /// `*`: any version.
    Any,
    /// `==`, `!=`, `<`, `<=`, `>`, `>=` against a version.
    Compare(&'static str, VersionOrder),
    /// `1.26.*`, `=1.26`, `1.26*`: the version starts with these components.
    Prefix(VersionOrder, bool),
    /// `~=1.4.2`: at least 1.4.2 and starts with 1.4.
    Compatible(VersionOrder),
}

impl VersionSpec {
    /// Parse a version spec as conda does (`=1.26` is the fuzzy `1.26.*`, a bare `1.26` is
    /// `==1.26`). `None` for an empty or unreadable spec.
    pub fn parse(text: &str) -> Option<VersionSpec> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let mut any_of = Vec::new();
        for alternative in text.split('|') {
            let mut all = Vec::new();
            for part in alternative.split(',') {
                all.push(Constraint::parse(part.trim())?);
            }
            any_of.push(all);
        }
        Some(VersionSpec { any_of })
    }

    /// Whether `version` meets the spec.
    pub fn matches(&self, version: &str) -> bool {
        let Some(v) = VersionOrder::parse(version) else {
            return false;
        };
        self.any_of
            .iter()
            .any(|all| all.iter().all(|c| c.matches(&v)))
    }
}

impl Constraint {
    fn parse(part: &str) -> Option<Constraint> {
        if part == "*" || part.is_empty() {
            return Some(Constraint::Any);
        }
        for op in ["==", "!=", "<=", ">=", "~=", "<", ">", "="] {
            let Some(rest) = part.strip_prefix(op) else {
                continue;
            };
            let rest = rest.trim();
            return Some(match op {
                "~=" => Constraint::Compatible(VersionOrder::parse(rest)?),
                "=" => Constraint::Prefix(VersionOrder::parse(strip_star(rest))?, false),
                "==" | "!=" if rest.ends_with('*') => {
                    Constraint::Prefix(VersionOrder::parse(strip_star(rest))?, op == "!=")
                }
                _ => Constraint::Compare(op, VersionOrder::parse(rest)?),
            });
        }
        if part.ends_with('*') {
            return Some(Constraint::Prefix(
                VersionOrder::parse(strip_star(part))?,
                false,
            ));
        }
        Some(Constraint::Compare("==", VersionOrder::parse(part)?))
    }

    fn matches(&self, v: &VersionOrder) -> bool {
        match self {
            Constraint::Any => true,
            Constraint::Compare(op, want) => {
                let o = v.cmp(want);
                match *op {
                    "==" => o == Ordering::Equal,
                    "!=" => o != Ordering::Equal,
                    "<" => o == Ordering::Less,
                    "<=" => o != Ordering::Greater,
                    ">" => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }
            }
            Constraint::Prefix(want, negated) => v.starts_with(want) != *negated,
            Constraint::Compatible(want) => {
                let mut head = want.clone();
                head.parts.pop();
                v >= want && v.starts_with(&head)
            }
        }
    }
}

fn strip_star(s: &str) -> &str {
    let s = s.strip_suffix('*').unwrap_or(s);
    s.strip_suffix('.').unwrap_or(s)
}

/// One piece of a version component: a number or a word. Words sort below numbers, `dev` below
/// every other word and `post` above everything (conda's `VersionOrder`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Dev,
    Word(String),
    Number(u64),
    Post,
}

impl Piece {
    fn rank(&self) -> u8 {
        match self {
            Piece::Dev => 0,
            Piece::Word(_) => 1,
            Piece::Number(_) => 2,
            Piece::Post => 3,
        }
    }
}

impl Ord for Piece {
    fn cmp(&self, other: &Piece) -> Ordering {
        match (self, other) {
            (Piece::Number(a), Piece::Number(b)) => a.cmp(b),
            (Piece::Word(a), Piece::Word(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Piece {
    fn partial_cmp(&self, other: &Piece) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A conda version split for comparison: epoch, components (each a list of pieces), local part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionOrder {
    epoch: u64,
    parts: Vec<Vec<Piece>>,
    local: Vec<Vec<Piece>>,
}

impl VersionOrder {
    /// Split a version as conda does: lower case, `N!` epoch, `+local`, components at `.` and
    /// `_` (and `-`), each component into runs of digits and of letters, with a 0 put before a
    /// component that starts with a letter. `None` for an empty version or one with characters
    /// conda refuses.
    pub fn parse(text: &str) -> Option<VersionOrder> {
        let text = text.trim().to_lowercase();
        if text.is_empty()
            || !text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '!'))
        {
            return None;
        }
        let (epoch, rest) = match text.split_once('!') {
            Some((e, rest)) => (e.parse().ok()?, rest),
            None => (0, text.as_str()),
        };
        let (main, local) = match rest.split_once('+') {
            Some((m, l)) => (m, l),
            None => (rest, ""),
        };
        let components = |s: &str| -> Option<Vec<Vec<Piece>>> {
            if s.is_empty() {
                return Some(Vec::new());
            }
            s.split(['.', '_', '-'])
                .map(|c| {
                    let mut pieces = Vec::new();
                    let mut chars = c.chars().peekable();
                    while let Some(&first) = chars.peek() {
                        let mut run = String::new();
                        while let Some(&c) = chars.peek() {
                            if c.is_ascii_digit() != first.is_ascii_digit() {
                                break;
                            }
                            run.push(c);
                            chars.next();
                        }
                        let piece = if first.is_ascii_digit() {
                            Piece::Number(run.parse().ok()?)
                        } else {
                            if pieces.is_empty() {
                                pieces.push(Piece::Number(0));
                            }
                            match run.as_str() {
                                "dev" => Piece::Dev,
                                "post" => Piece::Post,
                                _ => Piece::Word(run),
                            }
                        };
                        pieces.push(piece);
                    }
                    if pieces.is_empty() {
                        pieces.push(Piece::Number(0));
                    }
                    Some(pieces)
                })
                .collect()
        };
        let parts = components(main)?;
        if parts.is_empty() {
            return None;
        }
        Some(VersionOrder {
            epoch,
            parts,
            local: components(local)?,
        })
    }

    /// Whether this version begins with `prefix`'s components (`1.26.4` begins with `1.26`,
    /// `1.260` does not).
    fn starts_with(&self, prefix: &VersionOrder) -> bool {
        self.epoch == prefix.epoch
            && prefix.parts.iter().enumerate().all(|(i, want)| {
                let have = self.parts.get(i).cloned().unwrap_or_default();
                compare_component(&have, want) == Ordering::Equal
            })
    }
}

/// Compare two components, the shorter padded with zeros.
fn compare_component(a: &[Piece], b: &[Piece]) -> Ordering {
    let zero = Piece::Number(0);
    for i in 0..a.len().max(b.len()) {
        let o = a.get(i).unwrap_or(&zero).cmp(b.get(i).unwrap_or(&zero));
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn compare_parts(a: &[Vec<Piece>], b: &[Vec<Piece>]) -> Ordering {
    let zero = vec![Piece::Number(0)];
    for i in 0..a.len().max(b.len()) {
        let o = compare_component(a.get(i).unwrap_or(&zero), b.get(i).unwrap_or(&zero));
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

impl Ord for VersionOrder {
    fn cmp(&self, other: &VersionOrder) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_parts(&self.parts, &other.parts))
            .then_with(|| compare_parts(&self.local, &other.local))
    }
}

impl PartialOrd for VersionOrder {
    fn partial_cmp(&self, other: &VersionOrder) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `*` and `?` glob, as conda matches build strings.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Parse one match spec: `[channel[/subdir]::]name[ version[ build]]`, `name=version[=build]`,
/// `name==version`, `name>=1,<2`, `name[version='>=1',build='py*']`. Returns the name (as
/// written) and the spec; `Err` when the name is missing or a part cannot be read.
pub fn parse_match_spec(text: &str) -> Result<(String, MatchSpec), String> {
    let mut text = text.trim();
    let mut channel = None;
    if let Some((c, rest)) = text.rsplit_once("::") {
        let c = super::channel_name(c.trim());
        channel = (!c.is_empty()).then(|| c.to_string());
        text = rest.trim();
    }
    // `name[key=value, ...]`: the bracket's keys override the positional parts.
    let mut keys: Vec<(String, String)> = Vec::new();
    if let Some(open) = text.find('[') {
        let close = text
            .rfind(']')
            .filter(|&c| c > open)
            .ok_or_else(|| format!("`{text}`: `[` not closed with `]`"))?;
        for kv in split_outside_quotes(&text[open + 1..close]) {
            if let Some((k, v)) = kv.split_once('=') {
                let v = v.trim().trim_matches(|c| c == '\'' || c == '"');
                keys.push((k.trim().to_string(), v.to_string()));
            }
        }
        let after = text[close + 1..].trim();
        text = if after.is_empty() {
            text[..open].trim()
        } else {
            return Err(format!("`{text}`: text after `]`"));
        };
    }
    let end = text
        .find(|c: char| c.is_whitespace() || matches!(c, '=' | '<' | '>' | '!' | '~'))
        .unwrap_or(text.len());
    let (name, rest) = (text[..end].trim(), text[end..].trim());
    if name.is_empty() {
        return Err(format!("`{text}`: no package name"));
    }
    let (mut version, mut build) = if rest.is_empty() {
        (None, None)
    } else if !text[end..].starts_with(char::is_whitespace)
        || rest.starts_with(['=', '<', '>', '!', '~'])
    {
        split_version_build(rest)
    } else {
        let mut words = rest.split_whitespace();
        let v = words.next().map(str::to_string);
        (v, words.next().map(str::to_string))
    };
    for (k, v) in keys {
        match k.as_str() {
            "version" => version = Some(v),
            "build" => build = Some(v),
            "channel" => channel = Some(v),
            _ => {}
        }
    }
    let version = match version {
        None => None,
        Some(v) => Some(
            VersionSpec::parse(&v).ok_or_else(|| format!("`{text}`: cannot read version `{v}`"))?,
        ),
    };
    Ok((
        name.to_string(),
        MatchSpec {
            channel,
            version,
            build,
        },
    ))
}

/// `=1.26=py311_0`, `==1.26.4`, `>=1.2,<2`: the version part and the build string after a
/// second `=` (conda's `name=version=build`), with a leading single `=` kept (fuzzy).
fn split_version_build(rest: &str) -> (Option<String>, Option<String>) {
    let rest = rest.trim();
    // The build follows the last `=` that is not part of an operator.
    let bytes = rest.as_bytes();
    let mut cut = None;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if b == b'=' && !matches!(bytes[i - 1], b'=' | b'<' | b'>' | b'!' | b'~') {
            let next_is_eq = bytes.get(i + 1) == Some(&b'=');
            if !next_is_eq {
                cut = Some(i);
            }
        }
    }
    match cut {
        Some(i) if i > 0 => {
            let (v, b) = (&rest[..i], &rest[i + 1..]);
            (Some(v.trim().to_string()), Some(b.trim().to_string()))
        }
        _ => (Some(rest.to_string()), None),
    }
}

/// Split `a='x,y', b=z` at the commas outside quotes.
fn split_outside_quotes(s: &str) -> Vec<&str> {
    let (mut out, mut start, mut quote) = (Vec::new(), 0, None);
    for (i, c) in s.char_indices() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            (',', None) => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// environment.yml: the `dependencies` list (conda match specs) and its `pip:` lists
/// (requirement lines, `-r` included relative to the file). Anchors and aliases, flow sequences
/// and quoting are YAML's. The `channels` list is read but only the `channel::` of a spec is
/// compared (a package may come from any listed channel).
pub(super) fn environment(
    text: &str,
    here: &super::Place<'_>,
    read: &mut super::Reader<'_>,
    out: &mut Parsed,
) {
    let docs = match YamlLoader::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => {
            out.problems
                .push(format!("line {}: {}", e.marker().line(), e.info()));
            return;
        }
    };
    let Some(doc) = docs.first() else {
        return;
    };
    let Yaml::Array(deps) = &doc["dependencies"] else {
        if !matches!(doc["dependencies"], Yaml::BadValue | Yaml::Null) {
            out.problems
                .push("`dependencies` is not a list".to_string());
        }
        return;
    };
    for item in deps {
        match item {
            Yaml::String(spec) => match parse_match_spec(spec) {
                Ok((name, m)) => {
                    let text = spec.split_whitespace().collect::<Vec<_>>().join(" ");
                    out.wants.push(Want {
                        name: name.to_lowercase(),
                        text,
                        spec: Spec::Conda(m),
                        marker: None,
                        extras: Vec::new(),
                        need: Need::IfInstalled,
                    });
                }
                Err(e) => out.problems.push(e),
            },
            Yaml::Hash(h) => {
                for (k, v) in h {
                    if k.as_str() != Some("pip") {
                        continue;
                    }
                    let Yaml::Array(lines) = v else {
                        out.problems.push("`pip:` is not a list".to_string());
                        continue;
                    };
                    let lines: Vec<&str> = lines.iter().filter_map(Yaml::as_str).collect();
                    super::requirements::lines(&lines.join("\n"), here, read, 0, out);
                }
            }
            // A number such as `- 3` is not a package; anything else is not conda's.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(a: &str, b: &str) -> Ordering {
        VersionOrder::parse(a)
            .unwrap()
            .cmp(&VersionOrder::parse(b).unwrap())
    }

    #[test]
    fn version_order_is_condas() {
        // conda's documented order.
        let chain = "0.4 0.4.1.rc 0.4.1 0.5a1 0.5b3 0.5C1 0.5 0.9.6 0.960923 1.0 1.1dev1 \
            1.1a1 1.1.0dev1 1.1.a1 1.1.0rc1 1.1.0 1.1.0post1 1.1post1 1996.07.12 1!0.4.1";
        let list: Vec<&str> = chain.split_whitespace().collect();
        for w in list.windows(2) {
            assert_eq!(order(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
        }
        for (a, b) in [
            ("0.4", "0.4.0"),
            ("0.4.1.rc", "0.4.1.RC"),
            ("1.1.0dev1", "1.1.dev1"),
            ("1.1.0", "1.1"),
            ("1.1.0post1", "1.1.post1"),
        ] {
            assert_eq!(order(a, b), Ordering::Equal, "{a} == {b}");
        }
    }

    #[test]
    fn match_specs_use_condas_rules() {
        let ok = |spec: &str, v: &str, b: Option<&str>| {
            let (_, m) = parse_match_spec(spec).unwrap();
            m.matches(v, b)
        };
        assert!(ok("numpy=1.26", "1.26.4", None));
        assert!(ok("numpy=1.26", "1.26", None));
        assert!(!ok("numpy=1.2", "1.26.4", None));
        assert!(ok("numpy==1.26", "1.26.0", None));
        assert!(!ok("numpy==1.26", "1.26.4", None));
        assert!(ok("numpy >=1.2,<2", "1.26.4", None));
        assert!(!ok("numpy>=1.2,<2", "2.0.0", None));
        assert!(ok("numpy 1.2|1.4", "1.4", None));
        assert!(!ok("numpy 1.2|1.4", "1.3", None));
        assert!(ok("numpy 1.26.*", "1.26.4", None));
        assert!(ok("numpy 1.26*", "1.26.4", None));
        assert!(ok("numpy ~=1.26.1", "1.26.4", None));
        assert!(!ok("numpy ~=1.26.1", "1.27.0", None));
        assert!(ok("numpy !=1.26.3", "1.26.4", None));
        assert!(ok(
            "pytorch::pytorch=2.5.1=py3.11_cuda12.1_0",
            "2.5.1",
            Some("py3.11_cuda12.1_0")
        ));
        assert!(!ok("pytorch=2.5.1=*cuda*", "2.5.1", Some("py3.11_cpu_0")));
        assert!(ok(
            "pytorch=2.5.1=*cuda*",
            "2.5.1",
            Some("py3.11_cuda12.1_0")
        ));
        assert!(ok(
            "tqdm 4.67.0 pyhd8ed1ab_0",
            "4.67.0",
            Some("pyhd8ed1ab_0")
        ));
        assert!(ok(
            "numpy[version='>=1.2,<2', build=py*]",
            "1.26.4",
            Some("py311h1")
        ));
        assert!(!ok("numpy[version='>=1.2,<2']", "2.1", None));
        assert!(ok("cudatoolkit", "11.8", None));
        let (name, m) = parse_match_spec("conda-forge/linux-64::numpy==1.26.4").unwrap();
        assert_eq!(
            (name.as_str(), m.channel.as_deref()),
            ("numpy", Some("conda-forge"))
        );
        assert!(parse_match_spec("=1.2").is_err());
        assert!(parse_match_spec("numpy[version='1").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*cuda*", "py311_cuda12_0"));
        assert!(glob_match("py3?_0", "py39_0"));
        assert!(!glob_match("py3?_0", "py310_0"));
        assert!(glob_match("*", ""));
    }
}
