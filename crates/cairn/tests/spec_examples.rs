//! Every example lock in spec/examples must load and be in canonical form (so a change of the
//! writer or of the `toml` crate that changes bytes shows up here); every lock in
//! spec/examples/bad must be refused with the error the examples README promises.

use std::path::{Path, PathBuf};

use cairn::model::lockfile::Lock;
use cairn::Error;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/examples")
}

fn locks_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lock"))
        .collect();
    out.sort();
    out
}

#[test]
fn good_examples_load_and_are_canonical() {
    let files = locks_in(&examples());
    assert!(files.len() >= 3, "examples missing: {files:?}");
    for path in files {
        let lock = Lock::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(lock.to_toml(), text, "{} is not canonical", path.display());
    }
}

#[test]
fn bad_examples_are_refused_with_the_right_error() {
    let bad = examples().join("bad");
    let expect = |name: &str, check: &dyn Fn(&Error) -> bool| {
        let path = bad.join(name);
        match Lock::load(&path) {
            Ok(_) => panic!("{name} was accepted"),
            Err(e) => assert!(check(&e), "{name}: unexpected error {e:?}"),
        }
    };
    expect("newer-version.lock", &|e| {
        matches!(e, Error::LockTooNew { found: 2, .. })
    });
    expect("truncated.lock", &|e| matches!(e, Error::LockSyntax { .. }));
    for (name, words) in [
        ("escaping-path.lock", "escapes the project"),
        ("absolute-path.lock", "absolute"),
        ("missing-version.lock", "missing `version`"),
        ("dirty-without-change.lock", "code.change"),
    ] {
        expect(
            name,
            &|e| matches!(e, Error::LockInvalid { message, .. } if message.contains(words)),
        );
    }
    assert_eq!(
        locks_in(&bad).len(),
        6,
        "a new bad example needs its expectation here"
    );
}
