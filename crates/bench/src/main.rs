//! cairn-bench: measures cairn against its peers (b3sum, `find | xargs b3sum`, DVC, git) on
//! generated data, in one run, and prints medians and ratios. See README.md beside this file.
//!
//! Every figure is the median of `--runs` timed runs after one untimed warm-up run (page cache
//! warm). Peak memory comes from GNU time's maximum resident set size, in a separate run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

struct Args {
    dir: PathBuf,
    cairn: PathBuf,
    runs: usize,
    skip_dvc: bool,
    skip_1m: bool,
    only: Vec<String>,
}

const HELP: &str = "\
cairn-bench: time cairn against b3sum, DVC and git on generated data

usage: cairn-bench [--dir DIR] [--cairn PATH] [--runs N] [--skip-dvc] [--skip-1m] [--only NAME]...

  --dir DIR     where datasets, repositories and the DVC venv go [default: $TMPDIR/cairn-bench]
  --cairn PATH  the cairn binary [default: target/release/cairn]
  --runs N      timed runs per measurement, median reported [default: 5]
  --skip-dvc    do not install or run DVC
  --skip-1m     skip the 1,000,000-file case
  --only NAME   run only these cases: 1g, 20k, 100k, 1m, env, empty (repeatable)

Needs b3sum (cargo install b3sum), git, python3 (for the DVC venv) and GNU time (/usr/bin/time).";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        dir: std::env::temp_dir().join("cairn-bench"),
        cairn: PathBuf::from("target/release/cairn"),
        runs: 5,
        skip_dvc: false,
        skip_1m: false,
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dir" => args.dir = PathBuf::from(value()?),
            "--cairn" => args.cairn = PathBuf::from(value()?),
            "--runs" => args.runs = value()?.parse().context("--runs takes a number")?,
            "--skip-dvc" => args.skip_dvc = true,
            "--skip-1m" => args.skip_1m = true,
            "--only" => args.only.push(value()?),
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{HELP}"),
        }
    }
    if args.runs < 1 {
        bail!("--runs must be at least 1");
    }
    args.cairn = std::fs::canonicalize(&args.cairn).with_context(|| {
        format!(
            "no cairn binary at {} (build it: cargo build --release)",
            args.cairn.display()
        )
    })?;
    Ok(args)
}

/// A command line to time: program, arguments, working directory, environment.
#[derive(Clone)]
struct Cmd {
    argv: Vec<String>,
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// Exit codes that count as success.
    ok: Vec<i32>,
}

impl Cmd {
    fn new(dir: &Path, argv: &[&str]) -> Cmd {
        Cmd {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            dir: dir.to_path_buf(),
            env: Vec::new(),
            ok: vec![0],
        }
    }

    fn sh(dir: &Path, script: &str) -> Cmd {
        Cmd::new(dir, &["sh", "-c", script])
    }

    fn env(mut self, k: &str, v: &str) -> Cmd {
        self.env.push((k.into(), v.into()));
        self
    }

    fn ok(mut self, codes: &[i32]) -> Cmd {
        self.ok = codes.to_vec();
        self
    }

    fn shown(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                if a.contains([' ', '|', '\'', '*']) {
                    format!("'{}'", a.replace('\'', "'\\''"))
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Run once; the wall time.
    fn run(&self) -> Result<Duration> {
        let start = Instant::now();
        let out = self
            .command()
            .output()
            .with_context(|| format!("cannot run {}", self.shown()))?;
        let took = start.elapsed();
        let code = out.status.code().unwrap_or(-1);
        if !self.ok.contains(&code) {
            bail!(
                "{} exited with {code} in {}:\n{}",
                self.shown(),
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    }

    /// Run once under GNU time; the peak resident set size in bytes.
    fn peak_rss(&self) -> Result<u64> {
        let mut timed = self.clone();
        let mut argv = vec![
            "/usr/bin/time".to_string(),
            "-f".into(),
            "CAIRN_BENCH_RSS=%M".into(),
        ];
        argv.extend(self.argv.iter().cloned());
        timed.argv = argv;
        let out = timed
            .command()
            .output()
            .context("cannot run /usr/bin/time")?;
        let err = String::from_utf8_lossy(&out.stderr);
        let kib: u64 = err
            .lines()
            .find_map(|l| l.strip_prefix("CAIRN_BENCH_RSS="))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no RSS from GNU time for {}: {err}", self.shown()))?;
        Ok(kib * 1024)
    }
}

/// A measurement: median wall time over the runs, with `setup` before each run (untimed).
fn measure(runs: usize, cmd: &Cmd, mut setup: impl FnMut(usize) -> Result<()>) -> Result<Duration> {
    setup(0)?;
    cmd.run()?; // warm-up
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        setup(i + 1)?;
        times.push(cmd.run()?);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn no_setup(_: usize) -> Result<()> {
    Ok(())
}

/// One row of the table.
struct Row {
    case: String,
    cairn: Duration,
    cairn_rss: Option<u64>,
    peer: Option<(String, Duration)>,
    target: String,
    met: Option<bool>,
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// Deterministic file contents: a xorshift stream seeded by the file index.
fn content(seed: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
}

/// `count` files of `size` bytes, 1000 per directory, under `dir` (made once, then reused).
fn generate(dir: &Path, count: usize, size: usize) -> Result<()> {
    let done = dir.with_extension("done");
    if done.exists() {
        return Ok(());
    }
    eprintln!(
        "generating {count} files of {size} bytes in {}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(dir);
    let mut buf = Vec::new();
    for i in 0..count {
        let sub = dir.join(format!("d{:04}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&sub)?;
        }
        content(i as u64, size, &mut buf);
        std::fs::write(sub.join(format!("f{i:07}.bin")), &buf)?;
    }
    std::fs::write(done, b"")?;
    Ok(())
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().context("cannot run a setup command")?;
    if !out.status.success() {
        bail!(
            "setup command failed: {:?}\n{}",
            cmd,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A git repository holding `data/` (ignored by git), for cairn to lock.
fn cairn_project(root: &Path) -> Result<()> {
    if root.join(".git").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(root)?;
    std::fs::write(root.join(".gitignore"), "data/\n")?;
    std::fs::write(root.join("train.py"), "print('training')\n")?;
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=bench",
                    "-c",
                    "user.email=bench@example.com",
                ])
                .args(args)
                .current_dir(root),
        )
    };
    git(&["init", "-q"])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "bench project"])
}

struct Peers {
    dvc: Option<PathBuf>,
}

fn ensure_dvc(dir: &Path) -> Result<PathBuf> {
    let venv = dir.join("venv-dvc");
    let dvc = venv.join("bin/dvc");
    if !dvc.exists() {
        eprintln!("installing DVC from PyPI into {}", venv.display());
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run_ok(Command::new(venv.join("bin/pip")).args(["install", "-q", "dvc==3.*"]))?;
    }
    Ok(dvc)
}

fn tool_version(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|k| format!("{:.0} GiB", k as f64 / 1048576.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem}, Linux {}", kernel.trim())
}

fn wants(args: &Args, case: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| o == case)
}

fn bench_1g(args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let dir = args.dir.join("one-gib");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("model.bin");
    if std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) != 1 << 30 {
        eprintln!("generating a 1 GiB file");
        let mut buf = Vec::new();
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for i in 0..1024u64 {
            content(i, 1 << 20, &mut buf);
            std::io::Write::write_all(&mut out, &buf)?;
        }
        std::io::Write::flush(&mut out)?;
    }
    let cairn = args.cairn.to_str().unwrap();
    let ours = Cmd::new(&dir, &[cairn, "hash", "model.bin"]);
    let theirs = Cmd::new(&dir, &["b3sum", "model.bin"]);
    let t_ours = measure(args.runs, &ours, no_setup)?;
    let t_theirs = measure(args.runs, &theirs, no_setup)?;
    rows.push(Row {
        case: "1 GiB file: `cairn hash` vs `b3sum`".into(),
        cairn: t_ours,
        cairn_rss: Some(ours.peak_rss()?),
        peer: Some(("b3sum".into(), t_theirs)),
        target: "<= 1.10 x".into(),
        met: Some(ratio(t_ours, t_theirs) <= 1.10),
    });
    Ok(())
}

/// The 20k and 100k cases: cold lock, warm verify, one file changed.
fn bench_tree(
    args: &Args,
    peers: &Peers,
    label: &str,
    count: usize,
    size: usize,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let base = args.dir.join(format!("tree-{label}"));
    let source = base.join("source");
    generate(&source, count, size)?;
    let project = base.join("project");
    cairn_project(&project)?;
    let ds = project.join("data/ds");
    if !ds.exists() {
        std::fs::create_dir_all(project.join("data"))?;
        run_ok(Command::new("cp").arg("-a").arg(&source).arg(&ds))?;
    }
    let cairn = args.cairn.to_str().unwrap();
    let what = format!("{count} x {}", human_size(size));

    // Cold lock: no stat cache, no lock.
    let lock = Cmd::new(
        &project,
        &[cairn, "lock", "--quiet", "--no-python", "--data", "data/ds"],
    );
    let clear = |_: usize| -> Result<()> {
        let _ = std::fs::remove_dir_all(project.join(".cairn"));
        let _ = std::fs::remove_file(project.join("cairn.lock"));
        Ok(())
    };
    let t_lock = measure(args.runs, &lock, clear)?;
    clear(0)?;
    let lock_rss = lock.peak_rss()?;
    let xargs = Cmd::sh(
        &project,
        "find data/ds -type f -print0 | xargs -0 b3sum > /dev/null",
    );
    let t_xargs = measure(args.runs, &xargs, no_setup)?;
    rows.push(Row {
        case: format!("{what}: cold `cairn lock`"),
        cairn: t_lock,
        cairn_rss: Some(lock_rss),
        peer: Some(("`find -print0 \\| xargs -0 b3sum`".into(), t_xargs)),
        target: "<= 1.0 x".into(),
        met: Some(ratio(t_lock, t_xargs) <= 1.0),
    });

    // DVC on its own copy (dvc add writes .dvc files and a cache beside the data).
    let dvc_dir = base.join("dvc");
    let mut t_dvc_status = None;
    if let Some(dvc) = &peers.dvc {
        let dvc = dvc.to_str().unwrap();
        if !dvc_dir.join(".dvc").exists() {
            std::fs::create_dir_all(&dvc_dir)?;
            run_ok(
                Command::new("cp")
                    .arg("-a")
                    .arg(&source)
                    .arg(dvc_dir.join("ds")),
            )?;
            run_ok(
                Command::new(dvc)
                    .args(["init", "--no-scm", "-q"])
                    .current_dir(&dvc_dir),
            )?;
        }
        let site = dvc_dir.join("site-cache");
        let site_s = site.to_str().unwrap().to_string();
        let add = Cmd::new(&dvc_dir, &[dvc, "add", "-q", "ds"])
            .env("DVC_SITE_CACHE_DIR", &site_s)
            .env("DVC_NO_ANALYTICS", "1");
        let cold = |_: usize| -> Result<()> {
            for p in [".dvc/cache", ".dvc/tmp", "site-cache"] {
                let _ = std::fs::remove_dir_all(dvc_dir.join(p));
            }
            let _ = std::fs::remove_file(dvc_dir.join("ds.dvc"));
            Ok(())
        };
        let t_add = measure(args.runs, &add, cold)?;
        rows.push(Row {
            case: format!("{what}: cold `cairn lock`"),
            cairn: t_lock,
            cairn_rss: None,
            peer: Some(("dvc add".into(), t_add)),
            target: ">= 20 x faster".into(),
            met: Some(ratio(t_add, t_lock) >= 20.0),
        });
        let status = Cmd::new(&dvc_dir, &[dvc, "status", "-q"])
            .env("DVC_SITE_CACHE_DIR", &site_s)
            .env("DVC_NO_ANALYTICS", "1")
            .ok(&[0, 1]);
        t_dvc_status = Some(measure(args.runs, &status, no_setup)?);
    }

    // git status on the same tree, tracked (after git add), in a separate git dir.
    let gitdir = base.join("git-dir");
    if !gitdir.exists() {
        run_ok(
            Command::new("git")
                .arg("init")
                .arg("-q")
                .arg("--bare")
                .arg(&gitdir),
        )?;
        run_ok(
            Command::new("git")
                .arg(format!("--git-dir={}", gitdir.display()))
                .arg(format!("--work-tree={}", ds.display()))
                .args(["add", "-A"]),
        )?;
    }
    let git_status = Cmd::new(
        &ds,
        &[
            "git",
            &format!("--git-dir={}", gitdir.display()),
            &format!("--work-tree={}", ds.display()),
            "status",
            "--porcelain",
        ],
    );
    let t_git = measure(args.runs, &git_status, no_setup)?;

    // Warm verify: a lock, then a settled cache.
    run_ok(
        Command::new(cairn)
            .args(["lock", "--quiet", "--no-python", "--data", "data/ds"])
            .current_dir(&project),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let verify = Cmd::new(&project, &[cairn, "verify", "--quiet"]);
    verify.run()?; // refresh entries made in the lock's own tick
    let t_verify = measure(args.runs, &verify, no_setup)?;
    let verify_rss = verify.peak_rss()?;
    if let Some(t) = t_dvc_status {
        rows.push(Row {
            case: format!("{what}: warm `cairn verify`"),
            cairn: t_verify,
            cairn_rss: Some(verify_rss),
            peer: Some(("dvc status".into(), t)),
            target: ">= 20 x faster".into(),
            met: Some(ratio(t, t_verify) >= 20.0),
        });
    }
    rows.push(Row {
        case: format!("{what}: warm `cairn verify`"),
        cairn: t_verify,
        cairn_rss: if t_dvc_status.is_some() {
            None
        } else {
            Some(verify_rss)
        },
        peer: Some(("git status".into(), t_git)),
        target: "<= 1.5 x".into(),
        met: Some(ratio(t_verify, t_git) <= 1.5),
    });

    // The same, with a lock that records the Python environment and the host, as a training
    // repository's does: Python from an activated venv, then from a pyenv shim on PATH.
    let cache = args.dir.join("python/probe-cache");
    for py in python_setups(args)? {
        let name = format!("bench-{}.cairn.lock", py.label.split(' ').next().unwrap());
        let with_env = |c: Cmd| py.apply(c).env("XDG_CACHE_HOME", cache.to_str().unwrap());
        with_env(Cmd::new(
            &project,
            &[
                cairn, "lock", "--quiet", "--lock", &name, "--data", "data/ds",
            ],
        ))
        .run()?;
        let verify = with_env(Cmd::new(
            &project,
            &[cairn, "verify", "--quiet", "--lock", &name],
        ));
        verify.run()?;
        let t = measure(args.runs, &verify, no_setup)?;
        rows.push(Row {
            case: format!("{what}: warm `cairn verify`, Python from a {}", py.label),
            cairn: t,
            cairn_rss: None,
            peer: Some(("git status".into(), t_git)),
            target: "<= 1.2 x".into(),
            met: Some(ratio(t, t_git) <= 1.2),
        });
    }

    // One file changed: new content before every run, so it is never in the cache.
    let victim = ds.join("d0000/f0000007.bin");
    let original = std::fs::read(&victim)?;
    let changed = verify.clone().ok(&[1]);
    let t_changed = measure(args.runs, &changed, |i| {
        let mut v = original.clone();
        v[0] = v[0].wrapping_add(1 + i as u8);
        std::fs::write(&victim, v)?;
        Ok(())
    })?;
    std::fs::write(&victim, &original)?;
    rows.push(Row {
        case: format!("{what}: `cairn verify`, one file changed"),
        cairn: t_changed,
        cairn_rss: None,
        peer: Some(("warm `cairn verify`".into(), t_verify)),
        target: "<= 2 x".into(),
        met: Some(ratio(t_changed, t_verify) <= 2.0),
    });
    Ok(())
}

fn bench_1m(args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let base = args.dir.join("tree-1m");
    let project = base.join("project");
    cairn_project(&project)?;
    let ds = project.join("data/ds");
    generate(&ds, 1_000_000, 256)?;
    let cairn = args.cairn.to_str().unwrap();
    let lock = Cmd::new(
        &project,
        &[cairn, "lock", "--quiet", "--no-python", "--data", "data/ds"],
    );
    let clear = |_: usize| -> Result<()> {
        let _ = std::fs::remove_dir_all(project.join(".cairn"));
        let _ = std::fs::remove_file(project.join("cairn.lock"));
        Ok(())
    };
    let t_lock = measure(args.runs, &lock, clear)?;
    clear(0)?;
    let lock_rss = lock.peak_rss()?;
    rows.push(Row {
        case: "1,000,000 x 256 B: cold `cairn lock`".into(),
        cairn: t_lock,
        cairn_rss: Some(lock_rss),
        peer: None,
        target: "finishes; peak <= 500 MB".into(),
        met: Some(lock_rss <= 500_000_000),
    });
    std::thread::sleep(Duration::from_millis(300));
    let verify = Cmd::new(&project, &[cairn, "verify", "--quiet"]);
    verify.run()?;
    let t_verify = measure(args.runs, &verify, no_setup)?;
    let verify_rss = verify.peak_rss()?;
    rows.push(Row {
        case: "1,000,000 x 256 B: warm `cairn verify`".into(),
        cairn: t_verify,
        cairn_rss: Some(verify_rss),
        peer: None,
        target: "finishes; peak <= 500 MB".into(),
        met: Some(verify_rss <= 500_000_000),
    });
    Ok(())
}

/// A ~100-package venv from PyPI: `cairn env` against `pip freeze --all`.
fn bench_env(args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let base = args.dir.join("env");
    let venv = base.join("venv");
    if !venv.join(".done").exists() {
        eprintln!("installing ~100 packages from PyPI into {}", venv.display());
        let _ = std::fs::remove_dir_all(&venv);
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run_ok(Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "jupyterlab",
            "pandas",
            "scikit-learn",
        ]))?;
        std::fs::write(venv.join(".done"), b"")?;
    }
    let project = base.join("project");
    cairn_project(&project)?;
    let python = venv.join("bin/python");
    let count = Command::new(venv.join("bin/pip"))
        .args(["freeze", "--all"])
        .output()?
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let cairn = args.cairn.to_str().unwrap();
    let ours = Cmd::new(
        &project,
        &[cairn, "env", "--python", python.to_str().unwrap()],
    );
    let pip = venv.join("bin/pip");
    let theirs = Cmd::new(&project, &[pip.to_str().unwrap(), "freeze", "--all"]);
    let t_ours = measure(args.runs, &ours, no_setup)?;
    let t_theirs = measure(args.runs, &theirs, no_setup)?;
    rows.push(Row {
        case: format!("{count}-package venv: `cairn env`"),
        cairn: t_ours,
        cairn_rss: Some(ours.peak_rss()?),
        peer: Some(("pip freeze --all".into(), t_theirs)),
        target: ">= 10 x faster".into(),
        met: Some(ratio(t_theirs, t_ours) >= 10.0),
    });
    Ok(())
}

/// A pyenv-style installation under `dir` whose one version, `bench`, is `venv`: a
/// `shims/python3` that runs `libexec/pyenv exec`, which reads `PYENV_VERSION`, the
/// `.python-version` files up the tree and the global `version` file, as pyenv does. Used when
/// no real pyenv shim is on `PATH`.
fn pyenv_style_shims(dir: &Path, venv: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("pyenv");
    for d in ["shims", "libexec", "versions"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let version = root.join("versions/bench");
    if !version.exists() {
        std::os::unix::fs::symlink(venv, &version)?;
    }
    std::fs::write(root.join("version"), "bench\n")?;
    let pyenv = root.join("libexec/pyenv");
    std::fs::write(
        &pyenv,
        r#"#!/bin/sh
[ "$1" = exec ] || exit 2
shift
program="$1"; shift
version="$PYENV_VERSION"
dir="${PYENV_DIR:-$PWD}"
while [ -z "$version" ] && [ -n "$dir" ]; do
  [ -f "$dir/.python-version" ] && version=$(head -n1 "$dir/.python-version")
  [ "$dir" = / ] && break
  dir=$(dirname "$dir")
done
[ -n "$version" ] || version=$(head -n1 "$PYENV_ROOT/version")
exec "$PYENV_ROOT/versions/$version/bin/$program" "$@"
"#,
    )?;
    let shim = root.join("shims/python3");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nset -e\nprogram=\"${{0##*/}}\"\nexport PYENV_ROOT=\"{root}\"\nexec \"{root}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
            root = root.display()
        ),
    )?;
    for f in [&pyenv, &shim] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(root.join("shims"))
}

/// How many programs a command starts (`execve` calls under `strace -f`, its own included);
/// `None` without strace.
fn execve_count(cmd: &Cmd) -> Option<usize> {
    let log = std::env::temp_dir().join(format!("cairn-bench-strace-{}", std::process::id()));
    let mut traced = cmd.clone();
    let mut argv = vec![
        "strace".to_string(),
        "-f".into(),
        "-qq".into(),
        "-e".into(),
        "trace=execve".into(),
        "-o".into(),
        log.display().to_string(),
    ];
    argv.extend(cmd.argv.iter().cloned());
    traced.argv = argv;
    traced.run().ok()?;
    let text = std::fs::read_to_string(&log).ok()?;
    let _ = std::fs::remove_file(&log);
    Some(
        text.lines()
            .filter(|l| l.contains("execve(") && !l.contains("= -1"))
            .count(),
    )
}

/// Where the Python that cairn finds comes from: an activated venv, or a pyenv shim on `PATH`.
struct PythonSetup {
    label: &'static str,
    path: String,
    virtual_env: Option<String>,
}

impl PythonSetup {
    fn apply(&self, c: Cmd) -> Cmd {
        let c = c.env("PATH", &self.path);
        match &self.virtual_env {
            Some(v) => c.env("VIRTUAL_ENV", v),
            None => c,
        }
    }
}

/// An activated venv (made once under `--dir`), and a pyenv shim: the user's own when python3
/// on `PATH` is one, else a pyenv-style one of the bench's own leading to that venv.
fn python_setups(args: &Args) -> Result<Vec<PythonSetup>> {
    let base = args.dir.join("python");
    let venv = base.join("venv");
    if !venv.join("bin/python").exists() {
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let real_shim = std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
        .filter(|p| p.parent().and_then(Path::file_name) == Some("shims".as_ref()));
    let shim = match real_shim {
        Some(_) => PythonSetup {
            label: "pyenv shim",
            path: path.clone(),
            virtual_env: None,
        },
        None => PythonSetup {
            label: "pyenv-style shim (sh)",
            path: format!("{}:{path}", pyenv_style_shims(&base, &venv)?.display()),
            virtual_env: None,
        },
    };
    Ok(vec![
        PythonSetup {
            label: "venv",
            path: format!("{}:{path}", venv.join("bin").display()),
            virtual_env: Some(venv.display().to_string()),
        },
        shim,
    ])
}

/// A repository with no data: `cairn verify` against `git status` in the same repository,
/// warm (the user's probe cache filled) and cold (emptied before every run), with Python from
/// an activated venv and from a pyenv shim on `PATH`. The lock records Python and the host,
/// as a training repository's does.
fn bench_empty(args: &Args, rows: &mut Vec<Row>, notes: &mut Vec<String>) -> Result<()> {
    let base = args.dir.join("empty");
    let cache = base.join("probe-cache");
    let cache_s = cache.to_str().unwrap().to_string();
    // Runs of a few milliseconds: more of them, for a median that a busy machine moves less.
    let runs = args.runs.max(31);
    let cairn = args.cairn.to_str().unwrap();
    for py in python_setups(args)? {
        let label = py.label;
        let project = base.join(format!("project-{}", label.split(' ').next().unwrap()));
        cairn_project(&project)?;
        let with_env = |c: Cmd| py.apply(c).env("XDG_CACHE_HOME", &cache_s);
        let lock = with_env(Cmd::new(&project, &[cairn, "lock", "--quiet"]));
        lock.run()?;
        let verify = with_env(Cmd::new(&project, &[cairn, "verify", "--quiet"]));
        let git = Cmd::new(&project, &["git", "status", "--porcelain"]);
        let t_git = measure(runs, &git, no_setup)?;
        let t_warm = measure(runs, &verify, no_setup)?;
        let warm_rss = verify.peak_rss()?;
        let t_cold = measure(runs, &verify, |_| {
            let _ = std::fs::remove_dir_all(&cache);
            Ok(())
        })?;
        rows.push(Row {
            case: format!("empty repo, {label}: warm `cairn verify`"),
            cairn: t_warm,
            cairn_rss: Some(warm_rss),
            peer: Some(("git status".into(), t_git)),
            target: "<= 3 x".into(),
            met: Some(ratio(t_warm, t_git) <= 3.0),
        });
        rows.push(Row {
            case: format!("empty repo, {label}: cold `cairn verify` (no probe cache)"),
            cairn: t_cold,
            cairn_rss: None,
            peer: Some(("git status".into(), t_git)),
            target: "-".into(),
            met: None,
        });
        verify.run()?; // fill the cache again
        verify.run()?;
        if let Some(n) = execve_count(&verify) {
            notes.push(format!(
                "empty repo, {label}: a warm `cairn verify` starts {n} program(s) (`strace -f -e trace=execve`, cairn's own execve included)"
            ));
        }
        std::fs::remove_dir_all(&cache).ok();
        if let Some(n) = execve_count(&verify) {
            notes.push(format!(
                "empty repo, {label}: a cold `cairn verify` starts {n} program(s)"
            ));
        }
    }
    Ok(())
}

fn human_size(b: usize) -> String {
    if b >= 1024 && b.is_multiple_of(1024) {
        format!("{} KiB", b / 1024)
    } else {
        format!("{b} B")
    }
}

fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| case | cairn | cairn peak RSS | peer | peer time | cairn / peer | target | met |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (peer, pt, rat) = match &r.peer {
            Some((name, d)) => (name.clone(), secs(*d), format!("{:.3}", ratio(r.cairn, *d))),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.case,
            secs(r.cairn),
            r.cairn_rss.map(mib).unwrap_or_else(|| "".into()),
            peer,
            pt,
            rat,
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            }
        );
    }
    t
}

fn main() -> Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    if Command::new("b3sum").arg("--version").output().is_err() {
        bail!("b3sum is not on PATH: cargo install b3sum");
    }
    if !Path::new("/usr/bin/time").exists() {
        bail!("GNU time is needed for peak memory: apt-get install time");
    }
    let peers = Peers {
        dvc: if args.skip_dvc {
            None
        } else {
            Some(ensure_dvc(&args.dir)?)
        },
    };
    let mut rows = Vec::new();
    if wants(&args, "1g") {
        bench_1g(&args, &mut rows)?;
    }
    if wants(&args, "20k") {
        bench_tree(&args, &peers, "20k", 20_000, 4096, &mut rows)?;
    }
    if wants(&args, "100k") {
        bench_tree(&args, &peers, "100k", 100_000, 1024, &mut rows)?;
    }
    if wants(&args, "1m") && !args.skip_1m {
        bench_1m(&args, &mut rows)?;
    }
    if wants(&args, "env") {
        bench_env(&args, &mut rows)?;
    }
    let mut notes = Vec::new();
    if wants(&args, "empty") {
        bench_empty(&args, &mut rows, &mut notes)?;
    }
    println!("machine: {}", machine());
    println!(
        "versions: {}; {}; {}; dvc {}",
        tool_version(&[args.cairn.to_str().unwrap(), "--version"]),
        tool_version(&["b3sum", "--version"]),
        tool_version(&["git", "--version"]),
        peers
            .dvc
            .as_ref()
            .map(|d| tool_version(&[d.to_str().unwrap(), "--version"]))
            .unwrap_or_else(|| "not run".into())
    );
    println!("runs: median of {} after one warm-up run\n", args.runs);
    print!("{}", table(&rows));
    for n in &notes {
        println!("\n{n}");
    }
    Ok(())
}
