//! The Python API (issue #15): 1,000 `cairn.checkpoint()` calls in one process against 1,000
//! `cairn checkpoint add` processes, and the time `import cairn` takes.

use crate::*;

/// How many checkpoints each side records per run.
const CALLS: usize = 1000;

/// The `py` case: needs `--wheel` (a wheel built with `crates/py/build-wheel`), installed into
/// a venv under `--dir`. Both sides record into the same kind of lock, through
/// `CAIRN_RUN_LOCK` as inside `cairn lock -- COMMAND`, reset to the same content before every
/// run, and hash the same 1,000 files of 4 KiB.
pub(crate) fn bench_py(args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let Some(wheel) = &args.wheel else {
        bail!("--only py needs --wheel PATH (build it: crates/py/build-wheel DIR)");
    };
    let base = args.dir.join("py");
    let venv = base.join("venv");
    let _ = std::fs::remove_dir_all(&venv);
    run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--no-index", "--disable-pip-version-check"])
            .arg(wheel),
    )?;
    let python = venv.join("bin/python");
    let project = base.join("project");
    cairn_project(&project)?;
    let ckpt = project.join("data/ckpt");
    std::fs::create_dir_all(&ckpt)?;
    for i in 0..CALLS {
        let mut bytes = vec![0u8; 4096];
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        std::fs::write(ckpt.join(format!("c{i:04}.bin")), bytes)?;
    }
    let cairn = args.cairn.to_str().unwrap();
    let lock = project.join("cairn.lock");
    if !lock.exists() {
        run_ok(
            Command::new(cairn)
                .args(["lock", "--no-python"])
                .current_dir(&project),
        )?;
    }
    let fresh = std::fs::read(&lock)?;
    let run_lock = project.join("bench-run.cairn.lock");
    let journals = project.join("bench-run.cairn.lock.d");
    let reset = |_| -> Result<()> {
        std::fs::write(&run_lock, &fresh)?;
        // Checkpoint adds inside a run append to journals beside the run lock (#16).
        let _ = std::fs::remove_dir_all(&journals);
        Ok(())
    };
    let in_process = Cmd::new(
        &project,
        &[
            python.to_str().unwrap(),
            "-c",
            &format!(
                "import cairn\nfor i in range({CALLS}):\n    \
                 cairn.checkpoint(f'data/ckpt/c{{i:04}}.bin', step=i, metrics={{'loss': 0.5}})"
            ),
        ],
    )
    .env("CAIRN_RUN_LOCK", run_lock.to_str().unwrap());
    let processes = Cmd::sh(
        &project,
        &format!(
            "i=0; while [ $i -lt {CALLS} ]; do f=$(printf 'data/ckpt/c%04d.bin' $i); \
             \"$CAIRN\" checkpoint add \"$f\" --step $i --metric loss=0.5 || exit 1; i=$((i+1)); done"
        ),
    )
    .env("CAIRN", cairn)
    .env("CAIRN_RUN_LOCK", run_lock.to_str().unwrap());
    let t_in = measure(args.runs, &in_process, reset)?;
    let t_proc = measure(args.runs, &processes, reset)?;
    rows.push(Row {
        case: format!("{CALLS} checkpoints of 4 KiB: `cairn.checkpoint()` in one Python process"),
        cairn: t_in,
        cairn_rss: Some(in_process.peak_rss()?),
        peer: Some((format!("{CALLS} `cairn checkpoint add` processes"), t_proc)),
        target: ">= 20 x faster".into(),
        met: Some(ratio(t_proc, t_in) >= 20.0),
    });

    // `import cairn`, timed inside fresh interpreters (so interpreter start is not counted),
    // against `import json` timed the same way.
    let import_time = |module: &str| -> Result<Duration> {
        let script = format!(
            "import time\nt = time.perf_counter()\nimport {module}\nprint(time.perf_counter() - t)"
        );
        let mut times = Vec::new();
        for _ in 0..=args.runs.max(11) {
            let out = Command::new(&python)
                .args(["-c", &script])
                .current_dir(&project)
                .output()?;
            if !out.status.success() {
                bail!(
                    "import {module} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let s: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
            times.push(Duration::from_secs_f64(s));
        }
        times.remove(0); // warm-up
        times.sort();
        Ok(times[times.len() / 2])
    };
    let t_import = import_time("cairn")?;
    let t_json = import_time("json")?;
    rows.push(Row {
        case: "`import cairn` (timed inside the interpreter)".into(),
        cairn: t_import,
        cairn_rss: None,
        peer: Some(("`import json`".into(), t_json)),
        target: "<= 20 ms".into(),
        met: Some(t_import <= Duration::from_millis(20)),
    });
    Ok(())
}
