//! The stat cache and change detection, against real files: an unchanged file is not read
//! again, every kind of change is still seen, and a damaged cache never gives a wrong answer.

use crate::util::{set_mtime, settle, Repo, Run};

/// The `ml` repository, locked with both datasets once its files are outside the racy window,
/// so that the cache entries the lock leaves are trusted.
fn locked() -> Repo {
    let r = Repo::ml();
    settle(r.path());
    r.cairn(["lock", "--data", "data/train", "--data", "data/val"])
        .expect(0);
    r
}

fn verify_json(r: &Repo, args: &[&str], code: i32) -> serde_json::Value {
    let mut all = vec!["verify", "--format", "json"];
    all.extend_from_slice(args);
    let out: Run = r.cairn(&all).expect(code);
    out.json()
}

fn files_read(report: &serde_json::Value) -> u64 {
    report["checked"]["files_read"].as_u64().unwrap()
}

#[test]
fn unchanged_data_verifies_from_stat_alone() {
    let r = locked();
    let report = verify_json(&r, &[], 0);
    assert_eq!(report["checked"]["files"], 3);
    assert_eq!(files_read(&report), 0, "{report}");
    // --no-cache reads everything.
    let report = verify_json(&r, &["--no-cache"], 0);
    assert_eq!(files_read(&report), 3, "{report}");
}

#[test]
fn one_changed_file_is_named_and_is_the_only_one_read() {
    let r = locked();
    r.write("data/train/b.txt", "BETA\n");
    // A same-size rewrite: a new mtime makes it a change on any timestamp granularity.
    set_mtime(&r.join("data/train/b.txt"), 3600);
    let report = verify_json(&r, &[], 1);
    assert_eq!(files_read(&report), 1, "{report}");
    let f = &report["findings"][0];
    assert_eq!(f["path"], "b.txt");
    assert_eq!(f["change"], "changed");
    assert_eq!(report["findings"].as_array().unwrap().len(), 1);
}

/// DVC's state database keys on inode, mtime and size: a same-size rewrite whose mtime is put
/// back looks unchanged to it. The ctime, which no user can set, gives it away.
#[test]
fn same_size_rewrite_with_mtime_put_back_is_seen() {
    let r = locked();
    let path = r.join("data/train/a.txt");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, "ALPHA\n").unwrap(); // same length as "alpha\n"
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    let report = verify_json(&r, &[], 1);
    assert_eq!(report["findings"][0]["path"], "a.txt", "{report}");
    assert_eq!(files_read(&report), 1);
}

#[test]
fn damaged_or_foreign_caches_never_give_a_wrong_answer() {
    let other = locked();
    other.write("data/train/a.txt", "other content\n");
    other
        .cairn(["lock", "--data", "data/train", "--data", "data/val"])
        .expect(0);
    let foreign: Vec<Vec<u8>> = cache_files(&other)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();

    let damage: [(&str, &Damage<'_>); 4] = [
        ("garbage", &|b: &[u8], _| vec![0x5a; b.len()]),
        ("truncated", &|b: &[u8], _| b[..b.len() / 2].to_vec()),
        ("empty", &|_: &[u8], _| Vec::new()),
        ("from another repo", &|_: &[u8], i| {
            foreign[i % foreign.len()].clone()
        }),
    ];
    for (what, f) in damage {
        let r = locked();
        let files = cache_files(&r);
        assert_eq!(files.len(), 2, "one cache per dataset");
        for (i, p) in files.iter().enumerate() {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, f(&bytes, i)).unwrap();
        }
        let report = verify_json(&r, &[], 0);
        assert_eq!(files_read(&report), 3, "{what}: the cache must be ignored");
        // Damage again, then change a file: still named.
        for (i, p) in files.iter().enumerate() {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, f(&bytes, i)).unwrap();
        }
        r.write("data/val/v.txt", "VAL\n");
        set_mtime(&r.join("data/val/v.txt"), 3600);
        let report = verify_json(&r, &[], 1);
        assert_eq!(report["findings"][0]["path"], "v.txt", "{what}: {report}");
        assert_eq!(report["findings"].as_array().unwrap().len(), 1, "{what}");
    }
}

/// Turns a cache file's bytes (and its index) into damaged bytes.
type Damage<'a> = dyn Fn(&[u8], usize) -> Vec<u8> + 'a;

fn cache_files(r: &Repo) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(r.join(".cairn/cache/stat"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn fresh_files_are_read_again_until_their_timestamps_settle() {
    // Files whose timestamps are too close to the moment of hashing cannot be trusted from
    // stat: they are read again every time (git's racy-clean rule). An mtime in the future
    // keeps them racy however long the machine takes between steps.
    let r = Repo::ml();
    for f in ["data/train/a.txt", "data/train/b.txt"] {
        set_mtime(&r.join(f), 3600);
    }
    r.cairn(["lock", "--data", "data/train"]).expect(0);
    let first = verify_json(&r, &[], 0);
    assert_eq!(files_read(&first), 2, "{first}");
    let second = verify_json(&r, &[], 0);
    assert_eq!(files_read(&second), 2, "{second}");
    // Once the files are outside the window, the next verify reads and caches them, and the
    // one after reads nothing.
    for f in ["data/train/a.txt", "data/train/b.txt"] {
        set_mtime(&r.join(f), -3600);
    }
    settle(r.path());
    let third = verify_json(&r, &[], 0);
    assert_eq!(files_read(&third), 2, "{third}");
    let fourth = verify_json(&r, &[], 0);
    assert_eq!(files_read(&fourth), 0, "{fourth}");
}

/// A writer that keeps appending to a file, without pause, until dropped.
struct Appender {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Appender {
    fn start(path: std::path::PathBuf) -> Appender {
        use std::io::Write;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let start_len = std::fs::metadata(&path).unwrap().len();
        let file = path.clone();
        let thread = std::thread::spawn(move || {
            let mut f = std::fs::File::options().append(true).open(file).unwrap();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"x").unwrap();
                std::thread::yield_now();
            }
        });
        // Running once the file has grown: no guess at how long a thread takes to start.
        while std::fs::metadata(&path).unwrap().len() == start_len {
            std::thread::yield_now();
        }
        Appender {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A large sparse file takes long enough to hash (through the memory-mapped path) that an
/// appender running beside it always changes it mid-read.
#[test]
fn file_appended_while_hashed_is_reported_not_recorded() {
    let r = Repo::ml();
    let path = r.join("growing/big.bin");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(&path)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let appender = Appender::start(path.clone());
    let hash_out = r.cairn(["hash", "growing/big.bin"]);
    let lock_out = r.cairn(["lock", "--data", "growing/big.bin"]);
    drop(appender);
    hash_out
        .expect(2)
        .stderr_has("changed while it was being read");
    let out = lock_out.expect(2);
    out.stderr_has("changed while it was being read");
    out.stderr_has("growing/big.bin");
    out.stderr_has("hint:");
    assert!(!r.join("cairn.lock").exists(), "nothing recorded");
}

#[test]
fn progress_bar_only_on_a_terminal() {
    let r = Repo::ml();
    // Not a terminal (a pipe): no bar.
    let out = r.cairn(["lock", "--data", "data/train"]).expect(0);
    out.stderr_lacks("hashing");
    // A terminal, through script(1): a bar while files are read (made to appear at once; it
    // is cleared afterwards, terminal::progress_bars_leave_nothing_on_the_terminal), unless
    // --quiet.
    let bin = env!("CARGO_BIN_EXE_cairn");
    for (args, want) in [
        ("verify --no-cache", true),
        ("verify --no-cache --quiet", false),
    ] {
        let out = r
            .cmd_raw("script")
            .env("CAIRN_PROGRESS_DELAY_MS", "0")
            .args(["-qec", &format!("{bin} {args}"), "/dev/null"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.contains("hashing ["), want, "{args}: {text:?}");
        // -q: the exit status says it passed; nothing is printed.
        assert_eq!(text.contains("verify: ok"), want, "{args}: {text:?}");
    }
}
