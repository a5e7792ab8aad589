//! The package indexes an environment installs registry packages from: what uv and pip are
//! configured with (`UV_DEFAULT_INDEX`, `UV_INDEX_URL`, `UV_INDEX`, `UV_EXTRA_INDEX_URL`,
//! `PIP_INDEX_URL`, `PIP_EXTRA_INDEX_URL`, and `index-url` / `extra-index-url` of pip's
//! configuration files), with credentials removed. A rebuild installs from the same indexes, so
//! that `torch==2.5.1+cu121` comes from where it came from.
//!
//! This reads the configuration when the lock is taken, which is normally the one the
//! environment was installed with; an index given once on an installer's command line is not
//! seen. Nothing here runs a program.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::rules::check_index_url;
use crate::probe::git::strip_credentials;

/// The indexes an installer is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexes {
    /// The main index (`None`: the installer's default, PyPI).
    pub index_url: Option<String>,
    /// Further indexes, in order.
    pub extra: Vec<String>,
}

/// pip's configuration files, in the order pip reads them (a later one overrides): the file
/// `PIP_CONFIG_FILE` names, the system's, the user's, the environment's (`PREFIX/pip.conf`).
pub fn pip_config_files(
    var: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    prefix: Option<&Path>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(f) = var("PIP_CONFIG_FILE").filter(|f| !f.is_empty() && f != "/dev/null") {
        out.push(PathBuf::from(f));
    }
    out.push(PathBuf::from("/etc/xdg/pip/pip.conf"));
    out.push(PathBuf::from("/etc/pip.conf"));
    if let Some(home) = home {
        out.push(home.join(".pip/pip.conf"));
        let config = var("XDG_CONFIG_HOME")
            .filter(|x| x.starts_with('/'))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        out.push(config.join("pip/pip.conf"));
    }
    if let Some(prefix) = prefix {
        out.push(prefix.join("pip.conf"));
    }
    out
}

/// `index-url` and `extra-index-url` of pip configuration texts, later texts overriding
/// earlier ones and `[install]` overriding `[global]`.
pub fn pip_config(texts: &[String]) -> (Option<String>, Option<Vec<String>>) {
    let (mut index, mut extra) = (None, None);
    for text in texts {
        let sections = parse_ini(text);
        for section in ["global", "install"] {
            let Some(keys) = sections.get(section) else {
                continue;
            };
            if let Some(v) = keys.get("index-url").or_else(|| keys.get("index_url")) {
                index = v.split_whitespace().next().map(str::to_string);
            }
            if let Some(v) = keys
                .get("extra-index-url")
                .or_else(|| keys.get("extra_index_url"))
            {
                extra = Some(v.split_whitespace().map(str::to_string).collect());
            }
        }
    }
    (index, extra)
}

/// A minimal INI reader, as pip's configuration uses it: `[section]`, `key = value` or
/// `key: value`, indented continuation lines, `#` and `;` comments.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(key) = &last {
                if let Some(v) = out.get_mut(&section).and_then(|s| s.get_mut(key)) {
                    v.push('\n');
                    v.push_str(trimmed);
                }
            }
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            section = name.trim().to_lowercase();
            last = None;
            continue;
        }
        let split = trimmed
            .find(['=', ':'])
            .map(|i| (&trimmed[..i], &trimmed[i + 1..]));
        if let Some((k, v)) = split {
            let key = k.trim().to_lowercase();
            out.entry(section.clone())
                .or_default()
                .insert(key.clone(), v.trim().to_string());
            last = Some(key);
        }
    }
    out
}

/// The indexes from the variables (`var`) and pip's configuration texts: uv's settings first
/// when `prefer_uv` (uv installed the packages), else pip's; each URL with credentials removed,
/// and one that is not an http(s) or file URL left out.
pub fn resolve(
    var: &dyn Fn(&str) -> Option<String>,
    pip_texts: &[String],
    prefer_uv: bool,
) -> Indexes {
    let words = |v: Option<String>| -> Option<Vec<String>> {
        v.map(|s| s.split_whitespace().map(str::to_string).collect())
            .filter(|l: &Vec<String>| !l.is_empty())
    };
    let (pip_config_index, pip_config_extra) = pip_config(pip_texts);
    let uv_index = var("UV_DEFAULT_INDEX").or_else(|| var("UV_INDEX_URL"));
    // `UV_INDEX` entries may be named: `name=URL`.
    let uv_extra = {
        let mut l: Vec<String> = words(var("UV_INDEX"))
            .unwrap_or_default()
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((name, url)) if !name.contains(':') => url.to_string(),
                _ => e,
            })
            .collect();
        l.extend(words(var("UV_EXTRA_INDEX_URL")).unwrap_or_default());
        (!l.is_empty()).then_some(l)
    };
    let pip_index = var("PIP_INDEX_URL").or(pip_config_index);
    let pip_extra = words(var("PIP_EXTRA_INDEX_URL")).or(pip_config_extra);
    let (index, extra) = if prefer_uv {
        (uv_index.or(pip_index), uv_extra.or(pip_extra))
    } else {
        (pip_index.or(uv_index), pip_extra.or(uv_extra))
    };
    let clean = |u: String| -> Option<String> {
        let u = strip_credentials(u.trim());
        check_index_url(&u).is_ok().then_some(u)
    };
    let mut out = Indexes {
        index_url: index.and_then(clean),
        extra: Vec::new(),
    };
    for u in extra.unwrap_or_default().into_iter().filter_map(clean) {
        if !out.extra.contains(&u) && out.index_url.as_ref() != Some(&u) {
            out.extra.push(u);
        }
    }
    out
}

/// The indexes configured for this process: its variables and pip's configuration files
/// (`prefix`: the environment's `sys.prefix`).
pub fn probe(prefix: Option<&Path>, prefer_uv: bool) -> Indexes {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let texts: Vec<String> = pip_config_files(&var, home.as_deref(), prefix)
        .iter()
        .filter_map(|p| crate::fs::read_bounded(p, 1 << 20).ok())
        .filter_map(|b| String::from_utf8(b).ok())
        .collect();
    resolve(&var, &texts, prefer_uv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn pip_variables_win_over_its_configuration() {
        let config = "[global]\nindex-url = https://mirror.example/simple\nextra-index-url =\n    https://a.example/simple\n    https://b.example/simple\n".to_string();
        let got = resolve(&vars(&[]), std::slice::from_ref(&config), false);
        assert_eq!(
            got.index_url.as_deref(),
            Some("https://mirror.example/simple")
        );
        assert_eq!(
            got.extra,
            ["https://a.example/simple", "https://b.example/simple"]
        );
        let got = resolve(
            &vars(&[
                ("PIP_INDEX_URL", "https://user:token@private.example/simple"),
                (
                    "PIP_EXTRA_INDEX_URL",
                    "https://x.example/simple  https://x.example/simple",
                ),
            ]),
            &[config],
            false,
        );
        assert_eq!(
            got.index_url.as_deref(),
            Some("https://private.example/simple")
        );
        assert_eq!(got.extra, ["https://x.example/simple"]);
    }

    #[test]
    fn uv_settings_when_uv_installed_and_bad_urls_left_out() {
        let v = vars(&[
            ("UV_INDEX_URL", "https://download.pytorch.org/whl/cu121"),
            ("UV_INDEX", "torch=https://t.example/simple ext::sh"),
            ("PIP_INDEX_URL", "https://pip.example/simple"),
        ]);
        let uv = resolve(&v, &[], true);
        assert_eq!(
            uv.index_url.as_deref(),
            Some("https://download.pytorch.org/whl/cu121")
        );
        assert_eq!(uv.extra, ["https://t.example/simple"]);
        let pip = resolve(&v, &[], false);
        assert_eq!(pip.index_url.as_deref(), Some("https://pip.example/simple"));
        assert_eq!(resolve(&vars(&[]), &[], true), Indexes::default());
    }

    #[test]
    fn later_files_and_the_install_section_override() {
        let texts = [
            "[global]\nindex-url = https://one.example/simple\n".to_string(),
            "# user\n[global]\nindex-url: https://two.example/simple\n[install]\nindex-url = https://three.example/simple\n".to_string(),
        ];
        let (index, extra) = pip_config(&texts);
        assert_eq!(index.as_deref(), Some("https://three.example/simple"));
        assert_eq!(extra, None);
        let files = pip_config_files(
            &vars(&[("PIP_CONFIG_FILE", "/cfg/pip.conf")]),
            Some(Path::new("/home/u")),
            Some(Path::new("/venv")),
        );
        assert_eq!(files.first(), Some(&PathBuf::from("/cfg/pip.conf")));
        assert_eq!(files.last(), Some(&PathBuf::from("/venv/pip.conf")));
        assert!(files.contains(&PathBuf::from("/home/u/.config/pip/pip.conf")));
    }
}
