//! A directory hashed in shards (on many machines, here one after another) merges into the
//! digest one machine makes and b3sum checks; a shard that is missing, killed, given twice or
//! made from a changed tree is named and nothing is recorded (#16).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::digests::{awkward_tree, b3sum_pipeline, require_b3sum};
use crate::util::Repo;

/// The awkward tree plus files of many sizes (so byte balancing has something to balance),
/// in `root`.
fn corpus(root: &Path) {
    awkward_tree(root);
    for i in 0..120u32 {
        let p = root.join(format!("shards/{:02}/f{i:03}.bin", i % 7));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        // Sizes from 0 to ~600 KiB, one large file among many small ones.
        let len = if i == 77 {
            3 << 20
        } else {
            (i as usize * 4099) % 600_000
        };
        let bytes: Vec<u8> = (0..len)
            .map(|j| (j as u32 ^ i).wrapping_mul(2654435761) as u8)
            .collect();
        std::fs::write(p, bytes).unwrap();
    }
}

/// Many small files: a shard's part is far bigger than a pipe holds.
fn many_small_files(root: &Path) {
    for i in 0..6000u32 {
        let p = root.join(format!("d{:02}/file-{i:05}.txt", i % 10));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("sample {i} {}\n", "x".repeat(i as usize % 40))).unwrap();
    }
}

fn digest_of(line: &str) -> String {
    line.split_once("  ").unwrap().0.to_string()
}

/// `cairn hash DIR --shard K/N -o PARTS/t.K.part` for every K; the part paths.
fn hash_shards(r: &Repo, dir: &Path, parts: &Path, n: u32) -> Vec<PathBuf> {
    (1..=n)
        .map(|k| {
            let part = parts.join(format!("t.{k}.part"));
            let shard = format!("{k}/{n}");
            r.cairn([
                "hash".as_ref(),
                dir.as_os_str(),
                "--shard".as_ref(),
                shard.as_ref(),
                "-o".as_ref(),
                part.as_os_str(),
            ])
            .expect(0)
            .stderr_has(&format!("shard {shard} of"));
            part
        })
        .collect()
}

fn merge(r: &Repo, parts: &[PathBuf]) -> crate::util::Run {
    let mut args = vec!["hash".into(), "--merge".into()];
    args.extend(parts.iter().map(|p| p.as_os_str().to_owned()));
    r.cairn(args)
}

#[test]
fn merged_shards_are_the_one_machine_digest_and_the_b3sum_one() {
    require_b3sum();
    let r = Repo::plain();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("corpus");
    corpus(&dir);
    let one = r.cairn(["hash".as_ref(), dir.as_os_str()]).expect(0);
    let one = digest_of(one.stdout.trim_end());
    assert_eq!(one, format!("blake3:{}", b3sum_pipeline(&dir)));
    let whole_manifest = r
        .cairn(["hash".as_ref(), "--manifest".as_ref(), dir.as_os_str()])
        .expect(0)
        .stdout;
    for n in [1, 2, 3, 7] {
        let parts = tempfile::tempdir().unwrap();
        let list = hash_shards(&r, &dir, parts.path(), n);
        let merged = merge(&r, &list).expect(0);
        assert_eq!(digest_of(merged.stdout.trim_end()), one, "N = {n}");
        merged.stderr_has(&format!("merged {n} shards of"));
        // The merged manifest is the one-machine manifest, byte for byte.
        let mut args = vec!["hash".into(), "--merge".into(), "--manifest".into()];
        args.extend(list.iter().map(|p| p.as_os_str().to_owned()));
        assert_eq!(r.cairn(args).expect(0).stdout, whole_manifest, "N = {n}");
        // Balanced by bytes: no shard holds much more than its share plus the largest file.
        if n > 1 {
            let bytes: Vec<u64> = list
                .iter()
                .map(|p| {
                    let text = std::fs::read_to_string(p).unwrap();
                    let line = text.lines().find(|l| l.starts_with("bytes = ")).unwrap();
                    line["bytes = ".len()..].parse().unwrap()
                })
                .collect();
            let total: u64 = bytes.iter().sum();
            let largest = 3u64 << 20;
            for b in &bytes {
                assert!(*b <= total / n as u64 + largest, "N = {n}: {bytes:?}");
            }
        }
    }
}

#[test]
fn a_missing_twice_given_or_killed_shard_is_named_and_nothing_is_locked() {
    let r = Repo::new();
    r.write("train.py", "print('hi')\n");
    r.commit_all("code");
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("corpus");
    many_small_files(&dir);
    let parts = tempfile::tempdir().unwrap();
    let list = hash_shards(&r, &dir, parts.path(), 3);
    let data_arg = format!("corpus={}", dir.display());
    let lock = |parts: &[PathBuf]| {
        let mut args: Vec<std::ffi::OsString> = vec![
            "lock".into(),
            "--no-python".into(),
            "--data".into(),
            data_arg.clone().into(),
            "--from-shards".into(),
        ];
        args.extend(parts.iter().map(|p| p.as_os_str().to_owned()));
        r.cairn(args)
    };

    // Missing: named, exit 2, no lock written.
    lock(&[list[0].clone(), list[2].clone()])
        .expect(2)
        .stderr_has("shard 2/3 of")
        .stderr_has("is missing");
    assert!(!r.join("cairn.lock").exists());
    merge(&r, &list[..1])
        .expect(2)
        .stderr_has("shards 2/3, 3/3 of");
    // Given twice.
    merge(
        &r,
        &[
            list[0].clone(),
            list[1].clone(),
            list[1].clone(),
            list[2].clone(),
        ],
    )
    .expect(2)
    .stderr_has("shard 2/3 of")
    .stderr_has("given twice");

    // A good lock, then the same lock again with a shard killed while writing its part to
    // stdout: the lock stays as it was.
    lock(&list).expect(0);
    let before = std::fs::read(r.join("cairn.lock")).unwrap();
    let one = r.cairn(["hash".as_ref(), dir.as_os_str()]).expect(0);
    let locked = r.lock_toml("cairn.lock");
    assert_eq!(
        locked["data"][0]["digest"].as_str().unwrap(),
        digest_of(one.stdout.trim_end())
    );

    // Shard 2 writes its part to a pipe nobody reads: its part is far bigger than the pipe
    // holds, so it cannot finish; it is killed, and what came through is a torn part.
    let mut child = r
        .cmd()
        .args([
            "hash".as_ref(),
            dir.as_os_str(),
            "--shard".as_ref(),
            "2/3".as_ref(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 4096];
    stdout.read_exact(&mut first).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut torn = first.to_vec();
    stdout.read_to_end(&mut torn).unwrap();
    let full = std::fs::read(&list[1]).unwrap();
    assert!(
        full.len() > 2 * 65536,
        "the part must not fit in a pipe (64 KiB)"
    );
    assert!(torn.len() < full.len(), "the part came through whole");
    let torn_part = parts.path().join("torn.part");
    std::fs::write(&torn_part, &torn).unwrap();
    lock(&[list[0].clone(), torn_part.clone(), list[2].clone()])
        .expect(2)
        .stderr_has("torn.part (shard 2/3) is incomplete");
    assert_eq!(std::fs::read(r.join("cairn.lock")).unwrap(), before);

    // The directory changed after the shards hashed it: refused, lock unchanged.
    std::fs::write(dir.join("late.txt"), b"written after the shards ran").unwrap();
    lock(&list)
        .expect(2)
        .stderr_has("changed since its shards were hashed");
    assert_eq!(std::fs::read(r.join("cairn.lock")).unwrap(), before);

    // Parts of a directory the lock does not name.
    let other = data.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("x"), b"x").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let other_parts = hash_shards(&r, &other, elsewhere.path(), 1);
    std::fs::remove_file(dir.join("late.txt")).unwrap();
    let mut all = list.clone();
    all.extend(other_parts);
    lock(&all)
        .expect(2)
        .stderr_has("which is no dataset of this lock");
    assert_eq!(std::fs::read(r.join("cairn.lock")).unwrap(), before);
}

/// `cairn verify --shard K/N --parts DIR` on each "machine", then `cairn verify --from-shards`,
/// finds what a plain verify finds; each shard keeps a stat cache of its own.
#[test]
fn sharded_verify_finds_what_a_plain_verify_finds() {
    let r = Repo::new();
    r.write("train.py", "print('hi')\n");
    r.write(".gitignore", "data/\n");
    corpus(&r.join("data/corpus"));
    r.commit_all("code");
    r.cairn(["lock", "--no-python", "--data", "data/corpus"])
        .expect(0);
    crate::util::settle(&r.join("data/corpus"));
    let parts = tempfile::tempdir().unwrap();
    let sharded_verify = |expect: i32| {
        for k in 1..=3 {
            let shard = format!("{k}/3");
            r.cairn([
                "verify".as_ref(),
                "--shard".as_ref(),
                shard.as_ref(),
                "--parts".as_ref(),
                parts.path().as_os_str(),
            ])
            .expect(0)
            .stderr_has(&format!("corpus: shard {shard}"));
        }
        let mut args: Vec<std::ffi::OsString> = vec![
            "verify".into(),
            "--format".into(),
            "json".into(),
            "--from-shards".into(),
        ];
        for k in 1..=3 {
            args.push(parts.path().join(format!("corpus.{k}-of-3.part")).into());
        }
        r.cairn(args).expect(expect).json()
    };
    let clean = sharded_verify(0);
    assert_eq!(clean["ok"], true);
    // Warm: every shard's files come from its own stat cache.
    let warm = r
        .cairn([
            "verify".as_ref(),
            "--shard".as_ref(),
            "2/3".as_ref(),
            "--parts".as_ref(),
            parts.path().as_os_str(),
        ])
        .expect(0);
    warm.stderr_has("(0 read)");
    let stat_files = std::fs::read_dir(r.join(".cairn/cache/stat"))
        .unwrap()
        .count();
    assert!(stat_files >= 3, "{stat_files} stat caches");

    // A changed, an added and a removed file: the same findings as a plain verify.
    std::fs::write(r.join("data/corpus/a.txt"), b"changed").unwrap();
    std::fs::write(r.join("data/corpus/shards/03/new.bin"), b"added").unwrap();
    std::fs::remove_file(r.join("data/corpus/shards/05/f005.bin")).unwrap();
    let sharded = sharded_verify(1);
    let plain = r.cairn(["verify", "--format", "json"]).expect(1).json();
    assert_eq!(sharded["findings"], plain["findings"]);
    let text = sharded["findings"].to_string();
    for path in ["a.txt", "shards/03/new.bin", "shards/05/f005.bin"] {
        assert!(text.contains(path), "{path} not in {text}");
    }

    // A part missing at the merge: named, exit 2.
    std::fs::remove_file(parts.path().join("corpus.3-of-3.part")).unwrap();
    let mut args: Vec<std::ffi::OsString> = vec!["verify".into(), "--from-shards".into()];
    for k in 1..=2 {
        args.push(parts.path().join(format!("corpus.{k}-of-3.part")).into());
    }
    r.cairn(args)
        .expect(2)
        .stderr_has("shard 3/3 of")
        .stderr_has("is missing");
}

/// Bad shard arguments teach the form.
#[test]
fn a_bad_shard_argument_is_explained() {
    let r = Repo::plain();
    let dir = r.join("d");
    std::fs::create_dir(&dir).unwrap();
    for bad in ["0/3", "4/3", "3", "x/y"] {
        r.cairn(["hash", "d", "--shard", bad])
            .expect(2)
            .stderr_has("expected K/N with 1 <= K <= N");
    }
    std::fs::write(r.join("f"), b"x").unwrap();
    r.cairn(["hash", "f", "--shard", "1/2"])
        .expect(2)
        .stderr_has("only a directory can be hashed in shards");
    let not_a_part = r.join("notes.txt");
    std::fs::write(&not_a_part, b"hello\n").unwrap();
    r.cairn(["hash", "--merge", "notes.txt"])
        .expect(2)
        .stderr_has("is not a shard part");
}

/// A merge of more parts than the process may hold files open: each part is open only while
/// it is read.
#[test]
fn a_merge_of_more_parts_than_open_files_allowed() {
    let r = Repo::plain();
    let dir = r.join("d");
    for i in 0..300 {
        std::fs::create_dir_all(dir.join(format!("s{}", i % 9))).unwrap();
        std::fs::write(dir.join(format!("s{}/f{i}", i % 9)), vec![i as u8; i * 7]).unwrap();
    }
    let parts = r.join("parts");
    std::fs::create_dir(&parts).unwrap();
    let n = 200;
    let cairn = env!("CARGO_BIN_EXE_cairn");
    crate::util::sh(
        r.path(),
        &format!("for k in $(seq 1 {n}); do {cairn} hash d --shard $k/{n} -o parts/$k.part 2>/dev/null || exit 1; done"),
    );
    let one = r.cairn(["hash", "d"]).expect(0);
    let merged = crate::util::sh(
        r.path(),
        &format!("ulimit -n 64 && {cairn} hash --merge parts/*.part"),
    );
    assert_eq!(
        digest_of(merged.trim_end()),
        digest_of(one.stdout.trim_end())
    );
}

/// A listing made once feeds every shard (none walks the tree); the merge is the one-machine
/// digest, and a file changed since the listing stops its shard.
#[test]
fn shards_from_one_listing_merge_to_the_one_machine_digest() {
    require_b3sum();
    let r = Repo::plain();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("corpus");
    corpus(&dir);
    let out = tempfile::tempdir().unwrap();
    let listing = out.path().join("corpus.listing");
    r.cairn([
        "hash".as_ref(),
        dir.as_os_str(),
        "--list".as_ref(),
        "-o".as_ref(),
        listing.as_os_str(),
    ])
    .expect(0)
    .stderr_has("listed ");
    let mut parts = Vec::new();
    for k in 1..=4 {
        let part = out.path().join(format!("{k}.part"));
        let shard = format!("{k}/4");
        r.cairn([
            "hash".as_ref(),
            dir.as_os_str(),
            "--shard".as_ref(),
            shard.as_ref(),
            "--listing".as_ref(),
            listing.as_os_str(),
            "-o".as_ref(),
            part.as_os_str(),
        ])
        .expect(0);
        parts.push(part);
    }
    let merged = merge(&r, &parts).expect(0);
    assert_eq!(
        digest_of(merged.stdout.trim_end()),
        format!("blake3:{}", b3sum_pipeline(&dir))
    );
    // -o alone is a mistake; a changed file stops the shard that holds it.
    r.cairn([
        "hash".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        "x".as_ref(),
    ])
    .expect(2)
    .stderr_has("-o/--output goes with --shard");
    std::fs::write(dir.join("a.txt"), b"a longer text than before").unwrap();
    r.cairn([
        "hash".as_ref(),
        dir.as_os_str(),
        "--shard".as_ref(),
        "1/1".as_ref(),
        "--listing".as_ref(),
        listing.as_os_str(),
    ])
    .expect(2)
    .stderr_has("a.txt changed since the listing was made");
}
