//! The rules for lock fields that reach an argv or a path: URL schemes, package names and
//! versions, the Python version, env names, the code remote (spec/lockfile.md §6.1,
//! spec/security.md §8). Validation applies them when a lock is read, so no command
//! sees a lock that breaks one.

use crate::text::has_control;

/// URL schemes a `vcs` package may have (pip's `VCS+TRANSPORT`). `git+file` is what pip records
/// for a local repository; git then runs with cairn's transport limits.
pub const VCS_SCHEMES: &[&str] = &["git+https://", "git+ssh://", "git+http://", "git+file://"];

/// URL schemes an `archive` package may have.
pub const ARCHIVE_SCHEMES: &[&str] = &["https://", "http://", "file://"];

/// Transports a `code.remote` URL may name (besides `[user@]host:path` and an absolute path).
pub const REMOTE_SCHEMES: &[&str] = &["https://", "http://", "ssh://", "git://", "file://"];

pub(crate) fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes
        .iter()
        .any(|s| url.len() > s.len() && url[..s.len()].eq_ignore_ascii_case(s))
}

/// Is `s` an environment variable name (`[A-Za-z_][A-Za-z0-9_]*`)?
pub fn valid_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Is `name` a PEP 503-normalised distribution name (lower-case letters and digits, `-` only
/// between them)?
pub fn valid_package_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Is `v` a package version as installers record it: PEP 440, or a legacy version made of the
/// same characters (letters, digits, `.`, `+`, `!`, `_`, `-`), starting with a letter or digit.
pub fn valid_package_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'!' | b'_' | b'-'))
}

/// Is `v` an interpreter version as `sys.version` gives it, a PEP 440 release: `N(.N)*`, then
/// optionally `aN`/`bN`/`rcN`, `.postN`, `.devN`, and a local part `+LABEL` (CPython built from
/// a checkout says `3.14.0a1+`). Never a `/`, so it cannot become a path.
pub fn valid_python_version(v: &str) -> bool {
    let (public, local) = match v.split_once('+') {
        Some((p, l)) => (p, Some(l)),
        None => (v, None),
    };
    if let Some(l) = local {
        if !l
            .split('.')
            .all(|part| part.bytes().all(|b| b.is_ascii_alphanumeric()))
            || (!l.is_empty() && l.split('.').any(str::is_empty))
        {
            return false;
        }
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    // The release: digit groups joined by `.`, ending before a `.` not followed by a digit.
    let bytes = public.as_bytes();
    let mut end = 0;
    while end < bytes.len()
        && (bytes[end].is_ascii_digit()
            || (bytes[end] == b'.' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)))
    {
        end += 1;
    }
    let release = &public[..end];
    if release.split('.').any(|n| !digits(n)) || release.split('.').count() > 4 {
        return false;
    }
    let mut rest = &public[end..];
    for pre in ["rc", "a", "b"] {
        if let Some(r) = rest.strip_prefix(pre) {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if !digits(&r[..end]) {
                return false;
            }
            rest = &r[end..];
            break;
        }
    }
    for tag in [".post", ".dev"] {
        if let Some(r) = rest.strip_prefix(tag) {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if !digits(&r[..end]) {
                return false;
            }
            rest = &r[end..];
        }
    }
    rest.is_empty()
}

/// Check a `code.remote`: a URL of an allowed transport (`https`, `http`, `ssh`, `git`,
/// `file`), `[user@]host:path` (scp-like ssh), or an absolute path. Never an option (leading
/// `-`), a transport helper (`ext::`, `fd::`, `TRANSPORT::ADDRESS`), a relative path (it would
/// name something inside the repository), or a control character or space.
pub fn check_remote(remote: &str) -> std::result::Result<(), &'static str> {
    if remote.is_empty() {
        return Err("is empty");
    }
    if remote.starts_with('-') {
        return Err("starts with `-` (git would read it as an option)");
    }
    if has_control(remote) || remote.chars().any(char::is_whitespace) {
        return Err("contains a space or a control character");
    }
    if remote.contains("::") {
        return Err("names a git transport helper (`TRANSPORT::ADDRESS`, e.g. `ext::`), which runs a program");
    }
    if remote.contains("://") {
        return if has_scheme(remote, REMOTE_SCHEMES) {
            Ok(())
        } else {
            Err("uses a transport other than https, http, ssh, git or file")
        };
    }
    if remote.starts_with('/') {
        return Ok(());
    }
    // scp-like: `[user@]host:path`, where the part before the first `:` has no `/`.
    match remote.split_once(':') {
        Some((host, path)) if !host.is_empty() && !host.contains('/') && !path.is_empty() => Ok(()),
        _ => Err("is a relative path (a remote must be a URL, `host:path` or an absolute path)"),
    }
}

/// Check a package index URL (`python.index-url`, `python.extra-index-url`): an `https`,
/// `http` or `file` URL, with no space or control character (an installer argument is never
/// split or read as an option).
pub fn check_index_url(url: &str) -> std::result::Result<(), &'static str> {
    if has_control(url) || url.chars().any(char::is_whitespace) {
        return Err("contains a space or a control character");
    }
    if !has_scheme(url, &["https://", "http://", "file://"]) {
        return Err("is not an https, http or file URL");
    }
    Ok(())
}

#[cfg(test)]
mod field_tests {
    use super::*;

    #[test]
    fn python_versions_are_pep_440_releases() {
        for ok in [
            "3.11.7",
            "3",
            "3.13.0rc1",
            "3.14.0a1+",
            "3.12.1+local.1",
            "3.10.0.post1",
            "3.13.0b2.dev3",
        ] {
            assert!(valid_python_version(ok), "{ok} refused");
        }
        for bad in [
            "",
            "../../../../proc/self/cwd/tools",
            "3.11/../x",
            "3.11.7 ",
            "-3",
            "3..1",
            "3.11.7\n",
            "3.11.x",
            "3.11+a/b",
        ] {
            assert!(!valid_python_version(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn remotes() {
        for ok in [
            "https://github.com/org/ml.git",
            "ssh://git@host/x.git",
            "git@github.com:org/ml.git",
            "/srv/git/ml.git",
            "file:///srv/git/ml.git",
        ] {
            assert_eq!(check_remote(ok), Ok(()), "{ok}");
        }
        for bad in [
            "--upload-pack=touch /tmp/x #",
            "-oProxyCommand=x",
            "ext::sh -c touch% /tmp/x",
            "fd::3",
            "../evil.git",
            "evil.git",
            "ftp://host/x",
            "https://host/x\n",
            "https://host/a b",
        ] {
            assert!(check_remote(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_and_versions() {
        assert!(valid_package_name("torch") && valid_package_name("typing-extensions"));
        for bad in ["", "-x", "x-", "A", "a b", "a/b", "--log=x"] {
            assert!(!valid_package_name(bad), "{bad:?}");
        }
        assert!(valid_package_version("2.3.0+cu121") && valid_package_version("1!2.0.post1"));
        for bad in ["", "-1", "1 0", "1;x", "1/2", "1\n"] {
            assert!(!valid_package_version(bad), "{bad:?}");
        }
        assert!(
            valid_env_name("CUBLAS_WORKSPACE_CONFIG")
                && !valid_env_name("A=B")
                && !valid_env_name("1X")
        );
    }
}
