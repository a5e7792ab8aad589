//! Timing a command: the command line, the median of several runs, a table row.

use crate::*;

/// A command line to time: program, arguments, working directory, environment.
#[derive(Clone)]
pub(crate) struct Cmd {
    pub(crate) argv: Vec<String>,
    pub(crate) dir: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    /// Exit codes that count as success.
    pub(crate) ok: Vec<i32>,
}

impl Cmd {
    pub(crate) fn new(dir: &Path, argv: &[&str]) -> Cmd {
        Cmd {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            dir: dir.to_path_buf(),
            env: Vec::new(),
            ok: vec![0],
        }
    }

    pub(crate) fn sh(dir: &Path, script: &str) -> Cmd {
        Cmd::new(dir, &["sh", "-c", script])
    }

    pub(crate) fn env(mut self, k: &str, v: &str) -> Cmd {
        self.env.push((k.into(), v.into()));
        self
    }

    pub(crate) fn ok(mut self, codes: &[i32]) -> Cmd {
        self.ok = codes.to_vec();
        self
    }

    pub(crate) fn shown(&self) -> String {
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

    pub(crate) fn command(&self) -> Command {
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
    pub(crate) fn run(&self) -> Result<Duration> {
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
    pub(crate) fn peak_rss(&self) -> Result<u64> {
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
pub(crate) fn measure(
    runs: usize,
    cmd: &Cmd,
    mut setup: impl FnMut(usize) -> Result<()>,
) -> Result<Duration> {
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

pub(crate) fn no_setup(_: usize) -> Result<()> {
    Ok(())
}

/// One row of the table.
pub(crate) struct Row {
    pub(crate) case: String,
    pub(crate) cairn: Duration,
    pub(crate) cairn_rss: Option<u64>,
    pub(crate) peer: Option<(String, Duration)>,
    pub(crate) target: String,
    pub(crate) met: Option<bool>,
}

pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

pub(crate) fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

pub(crate) fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
