//! The cases, each against its peer measured in the same run on the same data.

use crate::*;

pub(crate) fn wants(args: &Args, case: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| o == case)
}

pub(crate) fn bench_1g(args: &Args, rows: &mut Vec<Row>) -> Result<()> {
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
pub(crate) fn bench_tree(
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

    let (t_lock, lock_rss) = cold_lock(&project, cairn, args.runs)?;
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
    let git_status = git_status_of(&base, &ds)?;
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

/// Cold `cairn lock --data data/ds` in `project` (no stat cache and no lock before each run):
/// the median of `runs` and the peak RSS, leaving no lock behind.
fn cold_lock(project: &Path, cairn: &str, runs: usize) -> Result<(Duration, u64)> {
    let lock = Cmd::new(
        project,
        &[cairn, "lock", "--quiet", "--no-python", "--data", "data/ds"],
    );
    let clear = |_: usize| -> Result<()> {
        let _ = std::fs::remove_dir_all(project.join(".cairn"));
        let _ = std::fs::remove_file(project.join("cairn.lock"));
        Ok(())
    };
    let t = measure(runs, &lock, clear)?;
    clear(0)?;
    Ok((t, lock.peak_rss()?))
}

/// A bare git directory tracking `tree` (after `git add -A`, made once), and `git status
/// --porcelain` on it: the peer of a warm `cairn verify`.
fn git_status_of(base: &Path, tree: &Path) -> Result<Cmd> {
    let gitdir = base.join("git-dir");
    if !gitdir.join(".added").exists() {
        let _ = std::fs::remove_dir_all(&gitdir);
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
                .arg(format!("--work-tree={}", tree.display()))
                .args(["add", "-A"]),
        )?;
        std::fs::write(gitdir.join(".added"), b"")?;
    }
    Ok(Cmd::new(
        tree,
        &[
            "git",
            &format!("--git-dir={}", gitdir.display()),
            &format!("--work-tree={}", tree.display()),
            "status",
            "--porcelain",
        ],
    ))
}

/// A million small files: cold lock (time and peak memory), and warm verify against `git
/// status` on the same tree, time and peak memory both.
pub(crate) fn bench_1m(args: &Args, rows: &mut Vec<Row>, notes: &mut Vec<String>) -> Result<()> {
    let base = args.dir.join("tree-1m");
    let project = base.join("project");
    cairn_project(&project)?;
    let ds = project.join("data/ds");
    generate(&ds, 1_000_000, 256)?;
    let cairn = args.cairn.to_str().unwrap();
    // A million-file run takes seconds: three are enough for a median.
    let runs = args.runs.min(3);
    let (t_lock, lock_rss) = cold_lock(&project, cairn, runs)?;
    rows.push(Row {
        case: "1,000,000 x 256 B: cold `cairn lock`".into(),
        cairn: t_lock,
        cairn_rss: Some(lock_rss),
        peer: None,
        target: "finishes; peak <= 500 MB".into(),
        met: Some(lock_rss <= 500_000_000),
    });
    let git_status = git_status_of(&base, &ds)?;
    let t_git = measure(runs, &git_status, no_setup)?;
    let git_rss = git_status.peak_rss()?;
    std::thread::sleep(Duration::from_millis(300));
    let verify = Cmd::new(&project, &[cairn, "verify", "--quiet"]);
    verify.run()?; // refresh entries made in the lock's own tick
    let t_verify = measure(runs, &verify, no_setup)?;
    let verify_rss = verify.peak_rss()?;
    rows.push(Row {
        case: "1,000,000 x 256 B: warm `cairn verify`".into(),
        cairn: t_verify,
        cairn_rss: Some(verify_rss),
        peer: Some(("git status".into(), t_git)),
        target: "<= 1.2 x".into(),
        met: Some(ratio(t_verify, t_git) <= 1.2),
    });
    notes.push(format!(
        "1,000,000 x 256 B: peak RSS of a warm `cairn verify` {} against `git status` {} ({:.2} x; target <= 1.0 x: {})",
        mib(verify_rss),
        mib(git_rss),
        verify_rss as f64 / git_rss as f64,
        if verify_rss <= git_rss { "met" } else { "**not met**" }
    ));
    Ok(())
}

/// A ~100-package venv from PyPI: `cairn env` with the user's probe cache filled against
/// `uv pip freeze` (uv installed from PyPI into the same venv when it is missing, its cache
/// warm too), and with no probe cache against `pip freeze --all`.
pub(crate) fn bench_env(args: &Args, rows: &mut Vec<Row>) -> Result<()> {
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
    let uv = venv.join("bin/uv");
    if !uv.exists() {
        eprintln!("installing uv from PyPI into {}", venv.display());
        run_ok(Command::new(venv.join("bin/pip")).args(["install", "-q", "uv"]))?;
    }
    let project = base.join("project");
    cairn_project(&project)?;
    let python = venv.join("bin/python");
    let python = python.to_str().unwrap();
    let count = Command::new(venv.join("bin/pip"))
        .args(["freeze", "--all"])
        .output()?
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let cairn = args.cairn.to_str().unwrap();
    let cache = base.join("probe-cache");
    let cache_s = cache.to_str().unwrap();
    let ours =
        Cmd::new(&project, &[cairn, "env", "--python", python]).env("XDG_CACHE_HOME", cache_s);
    let uv_cache = base.join("uv-cache");
    let uv_freeze = Cmd::new(
        &project,
        &[uv.to_str().unwrap(), "pip", "freeze", "--python", python],
    )
    .env("UV_CACHE_DIR", uv_cache.to_str().unwrap())
    .env("UV_NO_PROGRESS", "1");
    let pip = venv.join("bin/pip");
    let pip_freeze = Cmd::new(&project, &[pip.to_str().unwrap(), "freeze", "--all"]);

    // Runs of tens of milliseconds: more of them, for a steadier median.
    let runs = args.runs.max(11);
    // Warm: the probe cache filled (the warm-up run fills it), against uv with its own cache.
    ours.run()?;
    let t_warm = measure(runs, &ours, no_setup)?;
    let warm_rss = ours.peak_rss()?;
    let t_uv = measure(runs, &uv_freeze, no_setup)?;
    rows.push(Row {
        case: format!("{count}-package venv: `cairn env`, warm (probe cache filled)"),
        cairn: t_warm,
        cairn_rss: Some(warm_rss),
        peer: Some(("uv pip freeze".into(), t_uv)),
        target: "<= 1.0 x".into(),
        met: Some(ratio(t_warm, t_uv) <= 1.0),
    });
    // Cold: no probe cache at all before every run.
    let clear = |_: usize| -> Result<()> {
        let _ = std::fs::remove_dir_all(&cache);
        Ok(())
    };
    let t_cold = measure(runs, &ours, clear)?;
    let t_pip = measure(args.runs, &pip_freeze, no_setup)?;
    rows.push(Row {
        case: format!("{count}-package venv: `cairn env`, cold (no probe cache)"),
        cairn: t_cold,
        cairn_rss: None,
        peer: Some(("pip freeze --all".into(), t_pip)),
        target: ">= 10 x faster".into(),
        met: Some(ratio(t_pip, t_cold) >= 10.0),
    });
    rows.push(Row {
        case: format!("{count}-package venv: `cairn env`, cold (no probe cache)"),
        cairn: t_cold,
        cairn_rss: None,
        peer: Some(("uv pip freeze".into(), t_uv)),
        target: "-".into(),
        met: None,
    });
    Ok(())
}

/// A repository with no data: `cairn verify` against `git status` in the same repository,
/// warm (the user's probe cache filled) and cold (emptied before every run), with Python from
/// an activated venv and from a pyenv shim on `PATH`. The lock records Python and the host,
/// as a training repository's does.
pub(crate) fn bench_empty(args: &Args, rows: &mut Vec<Row>, notes: &mut Vec<String>) -> Result<()> {
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
