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

mod cases;
mod data;
mod measure;
mod py_api;
mod python;
mod rebuild_env;
mod shards;

pub(crate) use cases::*;
pub(crate) use data::*;
pub(crate) use measure::*;
pub(crate) use py_api::*;
pub(crate) use python::*;

pub(crate) struct Args {
    pub(crate) dir: PathBuf,
    pub(crate) cairn: PathBuf,
    pub(crate) runs: usize,
    pub(crate) skip_dvc: bool,
    pub(crate) skip_1m: bool,
    pub(crate) only: Vec<String>,
    pub(crate) wheel: Option<PathBuf>,
    pub(crate) shard_gib: u64,
}

pub(crate) const HELP: &str = "\
cairn-bench: time cairn against b3sum, DVC and git on generated data

usage: cairn-bench [--dir DIR] [--cairn PATH] [--runs N] [--skip-dvc] [--skip-1m] [--only NAME]... [--wheel PATH]
                   [--shard-gib G]

  --dir DIR     where datasets, repositories and the DVC venv go [default: $TMPDIR/cairn-bench]
  --cairn PATH  the cairn binary [default: target/release/cairn]
  --runs N      timed runs per measurement, median reported [default: 5]
  --skip-dvc    do not install or run DVC
  --skip-1m     skip the 1,000,000-file case
  --only NAME   run only these cases: 1g, 20k, 100k, 1m, env, empty, rebuild-env, py, shards
                (repeatable;
                shards runs only when named)
  --wheel PATH  the cairn-ml wheel (crates/py/build-wheel DIR) for the py case, which runs
                only with it
  --shard-gib G the size of the shards case's tree of mixed file sizes, in GiB [default: 10]

Needs b3sum (cargo install b3sum), git, python3 (for the DVC venv) and GNU time (/usr/bin/time);
the shards case also taskset (util-linux).";

pub(crate) fn parse_args() -> Result<Args> {
    let mut args = Args {
        dir: std::env::temp_dir().join("cairn-bench"),
        cairn: PathBuf::from("target/release/cairn"),
        runs: 5,
        skip_dvc: false,
        skip_1m: false,
        only: Vec::new(),
        wheel: None,
        shard_gib: 10,
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
            "--wheel" => args.wheel = Some(PathBuf::from(value()?)),
            "--shard-gib" => {
                args.shard_gib = value()?.parse().context("--shard-gib takes a number")?
            }
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
    if args.shard_gib < 1 {
        bail!("--shard-gib must be at least 1");
    }
    args.cairn = std::fs::canonicalize(&args.cairn).with_context(|| {
        format!(
            "no cairn binary at {} (build it: cargo build --release)",
            args.cairn.display()
        )
    })?;
    Ok(args)
}

pub(crate) fn human_size(b: usize) -> String {
    if b >= 1024 && b.is_multiple_of(1024) {
        format!("{} KiB", b / 1024)
    } else {
        format!("{b} B")
    }
}

pub(crate) fn table(rows: &[Row]) -> String {
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

pub(crate) fn main() -> Result<()> {
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
    let mut notes = Vec::new();
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
        bench_1m(&args, &mut rows, &mut notes)?;
    }
    if wants(&args, "env") {
        bench_env(&args, &mut rows)?;
    }
    if wants(&args, "rebuild-env") {
        rebuild_env::bench_rebuild_env(&args, &mut rows)?;
    }
    if wants(&args, "empty") {
        bench_empty(&args, &mut rows, &mut notes)?;
    }
    if wants(&args, "py") && (args.wheel.is_some() || !args.only.is_empty()) {
        bench_py(&args, &mut rows)?;
    }
    // 10 GiB of data and minutes: only when asked for by name.
    if args.only.iter().any(|o| o == "shards") {
        shards::bench_shards(&args, &mut rows, &mut notes)?;
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
