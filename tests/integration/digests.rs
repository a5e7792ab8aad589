//! Digests must be checkable with the standard `b3sum` tool.

use std::path::Path;
use std::process::Command;

use crate::util::{require_tool, sh, Repo};

/// The pipeline from spec/lockfile.md, run by the shell.
pub(crate) fn b3sum_pipeline(dir: &Path) -> String {
    sh(dir, &format!("{MANIFEST} | b3sum --no-names"))
        .trim()
        .to_string()
}

/// The manifest part of the pipeline: b3sum's lines for every file, sorted by path bytes.
const MANIFEST: &str = "find -L . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 -r b3sum";

pub(crate) fn require_b3sum() {
    require_tool(
        "b3sum",
        "these tests compare against the real b3sum: `cargo install b3sum`, as .ci/run does",
    );
}

/// A directory with the awkward cases: names that sort differently per directory and as
/// whole paths, escaping characters, symlinks to files and directories, empty files and
/// directories, and files around blake3's 16 KiB mmap threshold.
pub(crate) fn awkward_tree(root: &Path) {
    let w = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    w("a.txt", b"dot sorts before slash");
    w("a/b", b"nested");
    w("a/c d/e f.txt", b"spaces");
    w("back\\slash", b"escaped by b3sum");
    w("new\nline", b"escaped by b3sum");
    w("carriage\rreturn", b"escaped by b3sum");
    w("unicode-\u{e9}\u{4e2d}.txt", b"utf-8 name");
    w("empty", b"");
    w("big/16k-1", &vec![1u8; 16 * 1024 - 1]);
    w("big/16k", &vec![2u8; 16 * 1024]);
    w("big/16k+1", &vec![3u8; 16 * 1024 + 1]);
    w("big/1m", &vec![4u8; 1 << 20]);
    std::fs::create_dir_all(root.join("empty-dir/inner")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink("a", root.join("link-to-dir")).unwrap();
}

fn cairn_hash(r: &Repo, path: &str) -> String {
    let out = r.cairn(["hash", path]).expect(0);
    let line = out.stdout.trim_end();
    let (digest, shown) = line.split_once("  ").unwrap();
    assert_eq!(shown, path);
    digest.strip_prefix("blake3:").unwrap().to_string()
}

#[test]
fn directory_digest_equals_the_b3sum_pipeline() {
    require_b3sum();
    let r = Repo::plain();
    awkward_tree(&r.join("ds"));
    assert_eq!(cairn_hash(&r, "ds"), b3sum_pipeline(&r.join("ds")));
}

#[test]
fn manifest_is_what_b3sum_prints() {
    require_b3sum();
    let r = Repo::plain();
    awkward_tree(&r.join("ds"));
    let ours = r.cairn(["hash", "--manifest", "ds"]).expect(0).stdout;
    let theirs = sh(&r.join("ds"), MANIFEST);
    assert_eq!(ours, theirs);
}

#[test]
fn file_digest_equals_b3sum() {
    require_b3sum();
    let r = Repo::plain();
    r.write("w.bin", vec![7u8; 3 << 20]);
    let theirs = crate::util::run_ok(
        Command::new("b3sum")
            .args(["--no-names", "w.bin"])
            .current_dir(r.path()),
    );
    assert_eq!(cairn_hash(&r, "w.bin"), theirs.trim());
}

#[test]
fn empty_directory_digest_is_blake3_of_nothing() {
    require_b3sum();
    let r = Repo::plain();
    std::fs::create_dir_all(r.join("nothing/inside")).unwrap();
    let ours = cairn_hash(&r, "nothing");
    assert_eq!(
        ours,
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
    assert_eq!(ours, b3sum_pipeline(&r.join("nothing")));
}

#[test]
fn symlink_loop_is_an_error_naming_the_path() {
    let r = Repo::plain();
    std::fs::create_dir_all(r.join("ds/sub")).unwrap();
    std::os::unix::fs::symlink("..", r.join("ds/sub/loop")).unwrap();
    let out = r.cairn(["hash", "ds"]).expect(2);
    out.stderr_has("symlink loop");
    out.stderr_has("ds/sub/loop");
}

#[test]
fn fifo_is_skipped_with_a_warning_not_opened() {
    let r = Repo::plain();
    r.write("ds/a", "a");
    let fifo = r.join("ds/pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success(), "mkfifo {}", fifo.display());
    let out = r.cairn(["hash", "ds"]).expect(0);
    out.stderr_has("pipe");
    out.stderr_has("not a regular file");
}

#[test]
fn hash_of_a_missing_path_is_an_error() {
    let r = Repo::plain();
    let out = r.cairn(["hash", "nope"]).expect(2);
    out.stderr_has("does not exist");
    out.stderr_has("nope");
}
