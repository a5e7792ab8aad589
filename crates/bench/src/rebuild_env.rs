//! The rebuild's environment step against `uv pip sync` of the same packages (issue #14).

use crate::*;

/// The packages of the rebuild row: a numeric stack (numpy, scipy, scikit-learn and their
/// dependencies), from PyPI, pinned as the lock pins them.
const PACKAGES: &[&str] = &["numpy", "scipy", "scikit-learn"];

/// `cairn rebuild --yes --installer uv` (code, environment, data; no run) of a lock whose
/// environment has [`PACKAGES`], against `uv venv` + `uv pip sync` of the same pins into a new
/// venv. Both use uv's cache, warm after the warm-up run; each run starts from a removed target.
pub(crate) fn bench_rebuild_env(args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let uv = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("uv"))
                .find(|f| f.is_file())
        })
        .context("uv is not on PATH (pip install uv)")?;
    let uv_s = uv.to_str().unwrap().to_string();
    let base = args.dir.join("rebuild-env");
    let venv = base.join("venv");
    if !venv.join(".done").exists() {
        eprintln!("installing {PACKAGES:?} from PyPI into {}", venv.display());
        let _ = std::fs::remove_dir_all(&venv);
        run_ok(Command::new(&uv).args(["venv", "--seed", "-q"]).arg(&venv))?;
        run_ok(
            Command::new(&uv)
                .args(["pip", "install", "-q", "--python"])
                .arg(venv.join("bin/python"))
                .args(PACKAGES),
        )?;
        std::fs::write(venv.join(".done"), b"")?;
    }
    let python = venv.join("bin/python");
    let project = base.join("project");
    cairn_project(&project)?;
    let cairn = args.cairn.to_str().unwrap();
    if !project.join("cairn.lock").exists() {
        Cmd::new(
            &project,
            &[
                cairn,
                "lock",
                "--quiet",
                "--python",
                python.to_str().unwrap(),
            ],
        )
        .run()?;
    }
    // The same pins, for uv pip sync.
    let freeze = Command::new(&uv)
        .args(["pip", "freeze", "--python"])
        .arg(&python)
        .output()?;
    let requirements = base.join("requirements.txt");
    std::fs::write(&requirements, &freeze.stdout)?;
    let count = freeze
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();

    let into = base.join("rebuilt");
    let into_s = into.to_str().unwrap().to_string();
    let ours = Cmd::new(
        &project,
        &[
            cairn,
            "rebuild",
            "--quiet",
            "--yes",
            "--installer",
            "uv",
            "--python",
            python.to_str().unwrap(),
            "--into",
            &into_s,
        ],
    );
    let fresh = |_: usize| -> Result<()> {
        let _ = std::fs::remove_dir_all(&into);
        run_ok(
            Command::new("git")
                .arg("-C")
                .arg(&project)
                .args(["worktree", "prune"]),
        )?;
        Ok(())
    };
    let t_ours = measure(args.runs, &ours, fresh)?;
    let synced = base.join("synced");
    let synced_s = synced.to_str().unwrap().to_string();
    let theirs = Cmd::sh(
        &base,
        &format!(
            "'{uv_s}' venv -q --python '{}' '{synced_s}' && '{uv_s}' pip sync -q --python '{synced_s}/bin/python' '{}'",
            python.display(),
            requirements.display()
        ),
    );
    let t_theirs = measure(args.runs, &theirs, |_| {
        let _ = std::fs::remove_dir_all(&synced);
        Ok(())
    })?;
    fresh(0)?;
    rows.push(Row {
        case: format!("{count}-package numeric venv: `cairn rebuild --yes` (environment step)"),
        cairn: t_ours,
        cairn_rss: None,
        peer: Some(("uv venv + uv pip sync".into(), t_theirs)),
        target: "<= 1.2 x".into(),
        met: Some(ratio(t_ours, t_theirs) <= 1.2),
    });
    Ok(())
}
