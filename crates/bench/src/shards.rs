//! `--only shards`: sharded hashing (#16). A tree of mixed file sizes (10 GiB by default)
//! hashed with `cairn hash DIR --shard K/N` for N = 1, 2, 4, each shard on its own (as if on
//! its own machine) and all N at once, merged with `cairn hash --merge`, against the
//! one-machine `cairn hash DIR` and the b3sum pipeline in the same run; the per-core rate
//! (one shard pinned to one core); and the merge of the parts of the million-file tree of the
//! `1m` case, time and peak memory.
//!
//! The tree is generated once and then read from the page cache (it is far smaller than the
//! memory), so what is timed is hashing, not the disk.

use crate::*;

/// The shard counts of the mixed tree.
const SHARD_COUNTS: [u32; 3] = [1, 2, 4];
/// How much slower than T1/N the slowest of N shards may be and still count as "falls as 1/N".
const PER_SHARD_SLACK: f64 = 1.10;
/// The most a merge may cost, as a share of all the shards' time together.
const MERGE_SHARE: f64 = 0.01;
/// Small files in the mixed tree, and their largest size.
const SMALL_FILES: u64 = 4000;
const SMALL_MAX: u64 = 64 << 10;
/// Large files are log-uniform between these sizes.
const LARGE_MIN: u64 = 1 << 20;
const LARGE_MAX_LOG2: f64 = 8.0; // LARGE_MIN * 2^8 = 256 MiB

/// A fixed-seed xorshift, for the tree's layout.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The sizes of the mixed tree's files, in file order: `SMALL_FILES` small files (1 B to
/// 64 KiB) and large ones (1 MiB to 256 MiB, log-uniform) up to `total` bytes in all, shuffled
/// so that large and small files alternate along the sorted path order.
fn mixed_sizes(total: u64) -> Vec<u64> {
    let mut rng = Rng(0x5eed_0016_cafe_f00d);
    let mut sizes: Vec<u64> = (0..SMALL_FILES)
        .map(|_| 1 + rng.next() % SMALL_MAX)
        .collect();
    let mut sum: u64 = sizes.iter().sum();
    while sum < total {
        let size = ((LARGE_MIN as f64) * (LARGE_MAX_LOG2 * rng.unit()).exp2()) as u64;
        let size = size.min(total - sum);
        sizes.push(size);
        sum += size;
    }
    for i in (1..sizes.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        sizes.swap(i, j);
    }
    sizes
}

/// The mixed tree of `gib` GiB under `dir` (made once, then reused): file `j` is
/// `dNN/fJJJJJ.bin`, 200 files a directory, incompressible bytes (a xorshift stream per MiB).
/// Returns the number of files, their bytes and the largest file.
fn mixed_tree(dir: &Path, gib: u64) -> Result<(u64, u64, u64)> {
    let sizes = mixed_sizes(gib << 30);
    let summary = (
        sizes.len() as u64,
        sizes.iter().sum(),
        sizes.iter().copied().max().unwrap_or(0),
    );
    let done = dir.with_extension("done");
    if done.exists() {
        return Ok(summary);
    }
    eprintln!(
        "generating {} files, {} GiB, in {}",
        sizes.len(),
        gib,
        dir.display()
    );
    let _ = std::fs::remove_dir_all(dir);
    let mut buf = Vec::new();
    for (j, &size) in sizes.iter().enumerate() {
        let sub = dir.join(format!("d{:02}", j / 200));
        if j % 200 == 0 {
            std::fs::create_dir_all(&sub)?;
        }
        let path = sub.join(format!("f{j:05}.bin"));
        let mut f = std::fs::File::create(&path).with_context(|| path.display().to_string())?;
        let mut left = size;
        let mut chunk = 0u64;
        while left > 0 {
            let n = left.min(1 << 20);
            content(((j as u64) << 20) + chunk, n as usize, &mut buf);
            std::io::Write::write_all(&mut f, &buf)?;
            left -= n;
            chunk += 1;
        }
    }
    std::fs::write(done, b"")?;
    Ok(summary)
}

/// The 1-, 5- and 15-minute load averages now.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Run `cmd` once and return the first word of its stdout (a digest).
fn first_word(cmd: &Cmd) -> Result<String> {
    let out = cmd
        .command()
        .stdout(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {}", cmd.shown()))?;
    if !out.status.success() {
        bail!(
            "{} failed:\n{}",
            cmd.shown(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
        .with_context(|| format!("{} printed nothing", cmd.shown()))
}

/// A number from a part's header (`key = value` lines up to the first blank line), such as
/// `bytes` (the bytes of its shard's range) or `files`.
fn header_number(part: &Path, key: &str) -> Result<u64> {
    use std::io::BufRead;
    let f = std::fs::File::open(part).with_context(|| part.display().to_string())?;
    let prefix = format!("{key} = ");
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        if let Some(v) = line.strip_prefix(&prefix) {
            return Ok(v.parse()?);
        }
        if line.is_empty() {
            break;
        }
    }
    bail!("{} has no `{key} = ` line", part.display())
}

/// The CPU time (user + system) of one run of `cmd`, from GNU time: unlike the wall time, it
/// does not grow when other work shares the cores.
fn cpu_time(cmd: &Cmd) -> Result<Duration> {
    let mut timed = cmd.clone();
    timed.argv.splice(
        0..0,
        [
            "/usr/bin/time".into(),
            "-f".into(),
            "CAIRN_BENCH_CPU=%U %S".into(),
        ],
    );
    let out = timed
        .command()
        .output()
        .context("cannot run /usr/bin/time")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{} failed:\n{err}", cmd.shown());
    }
    let secs: Option<f64> = err
        .lines()
        .find_map(|l| l.strip_prefix("CAIRN_BENCH_CPU="))
        .and_then(|v| {
            v.split_whitespace()
                .map(|t| t.parse::<f64>().ok())
                .sum::<Option<f64>>()
        });
    let secs =
        secs.with_context(|| format!("no CPU time from GNU time for {}: {err}", cmd.shown()))?;
    Ok(Duration::from_secs_f64(secs))
}

/// `cairn hash DIR --shard K/N -o PART`.
fn shard_cmd(cairn: &str, at: &Path, dir: &str, k: u32, n: u32, part: &Path) -> Cmd {
    Cmd::new(
        at,
        &[
            cairn,
            "hash",
            dir,
            "--shard",
            &format!("{k}/{n}"),
            "-o",
            part.to_str().unwrap(),
        ],
    )
}

/// All N shards at once, in the background; with `pin`, shard K on core (K-1) mod cores.
fn at_once(cairn: &str, at: &Path, dir: &str, n: u32, parts: &Path, pin: bool) -> Cmd {
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    let mut script = String::from("pids=''; ");
    for k in 1..=n {
        let taskset = if pin {
            format!("taskset -c {} ", (k as usize - 1) % cores)
        } else {
            String::new()
        };
        script.push_str(&format!(
            "{taskset}'{cairn}' hash '{dir}' --shard {k}/{n} -o '{}' & pids=\"$pids $!\"; ",
            parts.join(format!("{k}.part")).display()
        ));
    }
    script.push_str("for p in $pids; do wait $p || exit 1; done");
    Cmd::sh(at, &script)
}

/// One N of the mixed tree.
struct Split {
    n: u32,
    /// Median time of each shard run alone.
    shard_times: Vec<Duration>,
    /// CPU time of each shard (one run).
    shard_cpu: Vec<Duration>,
    /// Bytes of each shard's range.
    shard_bytes: Vec<u64>,
    merge: Duration,
    together: Option<Duration>,
    together_pinned: Option<Duration>,
}

impl Split {
    fn max(&self) -> Duration {
        self.shard_times.iter().copied().max().unwrap_or_default()
    }
    fn sum(&self) -> Duration {
        self.shard_times.iter().sum()
    }
    fn mean(&self) -> Duration {
        self.sum() / self.n
    }
    fn max_cpu(&self) -> Duration {
        self.shard_cpu.iter().copied().max().unwrap_or_default()
    }
    fn balance(&self) -> f64 {
        let max = self.shard_bytes.iter().copied().max().unwrap_or(0) as f64;
        let mean = self.shard_bytes.iter().sum::<u64>() as f64 / self.n as f64;
        max / mean.max(1.0)
    }
}

pub(crate) fn bench_shards(
    args: &Args,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let started_load = load();
    let cairn = args.cairn.to_str().unwrap();
    let base = args.dir.join("shards");
    let tree = base.join(format!("mixed-{}g", args.shard_gib));
    let (files, bytes, largest) = mixed_tree(&tree, args.shard_gib)?;
    let what = format!(
        "{} GiB, {files} files (largest {})",
        args.shard_gib,
        mib(largest)
    );
    let dir = tree.to_str().unwrap();
    let mut note = String::new();
    let _ = writeln!(
        note,
        "Sharded hashing (#16), {what}: load average at the start {started_load}"
    );

    // The peers and the digest every merge must give.
    let one = Cmd::new(&base, &[cairn, "hash", dir]);
    let pipeline = "find -L . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 -r b3sum | b3sum --no-names";
    let b3 = Cmd::sh(&tree, pipeline);
    let want = first_word(&one)?;
    let b3_hex = first_word(&b3)?;
    if want != format!("blake3:{b3_hex}") {
        bail!("`cairn hash {dir}` printed {want} but the b3sum pipeline {b3_hex}");
    }
    let t_one = measure(args.runs, &one, no_setup)?;
    let one_rss = one.peak_rss()?;
    let t_b3 = measure(args.runs, &b3, no_setup)?;

    // Shards one at a time, then at once, then merged.
    let mut splits = Vec::new();
    for n in SHARD_COUNTS {
        let parts = base.join(format!("parts-{}g-{n}", args.shard_gib));
        std::fs::create_dir_all(&parts)?;
        let part = |k: u32| parts.join(format!("{k}.part"));
        let mut shard_times = Vec::new();
        let mut shard_bytes = Vec::new();
        let mut shard_cpu = Vec::new();
        for k in 1..=n {
            let cmd = shard_cmd(cairn, &base, dir, k, n, &part(k));
            shard_times.push(measure(args.runs, &cmd, no_setup)?);
            shard_cpu.push(cpu_time(&cmd)?);
            shard_bytes.push(header_number(&part(k), "bytes")?);
        }
        let mut merge_argv = vec![cairn.to_string(), "hash".into(), "--merge".into()];
        merge_argv.extend((1..=n).map(|k| part(k).to_str().unwrap().to_string()));
        let merge = Cmd::new(
            &base,
            &merge_argv.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let got = first_word(&merge)?;
        if got != want {
            bail!("the merge of {n} shards printed {got}, one machine {want}");
        }
        let t_merge = measure(args.runs, &merge, no_setup)?;
        let (together, together_pinned) = if n > 1 {
            let t = measure(
                args.runs,
                &at_once(cairn, &base, dir, n, &parts, false),
                no_setup,
            )?;
            let p = measure(
                args.runs,
                &at_once(cairn, &base, dir, n, &parts, true),
                no_setup,
            )?;
            if first_word(&merge)? != want {
                bail!("the merge of {n} shards run at once differs from one machine");
            }
            (Some(t), Some(p))
        } else {
            (None, None)
        };
        splits.push(Split {
            n,
            shard_times,
            shard_cpu,
            shard_bytes,
            merge: t_merge,
            together,
            together_pinned,
        });
    }

    // One core: the per-core rate, against the b3sum pipeline on the same core.
    let pinned_part = base.join("pinned.part");
    let mut pinned = shard_cmd(cairn, &base, dir, 1, 1, &pinned_part);
    pinned
        .argv
        .splice(0..0, ["taskset".into(), "-c".into(), "0".into()]);
    let t_core = measure(args.runs, &pinned, no_setup)?;
    let b3_core = Cmd::sh(&tree, &format!("taskset -c 0 sh -c \"{pipeline}\""));
    let t_b3_core = measure(args.runs, &b3_core, no_setup)?;
    let per_core = bytes as f64 / t_core.as_secs_f64();

    let t1 = splits[0].max();
    let c1 = splits[0].max_cpu();
    let _ = writeln!(note, "\n| N | slowest shard | mean shard | ideal T1/N | slowest / ideal | slowest shard's CPU time | its share of T1's CPU time x N | bytes per shard, max / mean | merge | merge / sum of shards | N at once (wall) | N at once, one core each (wall) |");
    let _ = writeln!(note, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in &splits {
        let ideal = t1 / s.n;
        let share = ratio(s.merge, s.sum());
        let _ = writeln!(
            note,
            "| {} | {} | {} | {} | {:.3} | {} | {:.3} | {:.3} | {} | {:.2} % | {} | {} |",
            s.n,
            secs(s.max()),
            secs(s.mean()),
            secs(ideal),
            ratio(s.max(), ideal),
            secs(s.max_cpu()),
            ratio(s.max_cpu() * s.n, c1),
            s.balance(),
            secs(s.merge),
            100.0 * share,
            s.together.map(secs).unwrap_or_else(|| "-".into()),
            s.together_pinned.map(secs).unwrap_or_else(|| "-".into()),
        );
        if s.n > 1 {
            let met = ratio(s.max(), ideal) <= PER_SHARD_SLACK;
            rows.push(Row {
                case: format!("{what}: slowest of {} shards run one at a time", s.n),
                cairn: s.max(),
                cairn_rss: None,
                peer: Some((format!("T1/{} (T1: `--shard 1/1`)", s.n), ideal)),
                target: format!("<= {PER_SHARD_SLACK:.2} x"),
                met: Some(met),
            });
        }
        rows.push(Row {
            case: format!(
                "{what}: `cairn hash --merge` of {} part{}",
                s.n,
                if s.n == 1 { "" } else { "s" }
            ),
            cairn: s.merge,
            cairn_rss: None,
            peer: Some((format!("sum of the {} shards", s.n), s.sum())),
            target: format!("< {MERGE_SHARE:.2} x"),
            met: Some(share < MERGE_SHARE),
        });
    }
    rows.push(Row {
        case: format!("{what}: one-machine `cairn hash DIR`"),
        cairn: t_one,
        cairn_rss: Some(one_rss),
        peer: Some(("b3sum pipeline".into(), t_b3)),
        target: "-".into(),
        met: None,
    });
    rows.push(Row {
        case: format!("{what}: `--shard 1/1`, one core (`taskset -c 0`)"),
        cairn: t_core,
        cairn_rss: None,
        peer: Some(("b3sum pipeline, one core".into(), t_b3_core)),
        target: "-".into(),
        met: None,
    });
    let _ = writeln!(
        note,
        "\nOne machine: `cairn hash DIR` {} (peak RSS {}), the b3sum pipeline `{pipeline}` {} ({:.3} x); `--shard 1/1` {} ({:.3} x of `cairn hash DIR`).",
        secs(t_one),
        mib(one_rss),
        secs(t_b3),
        ratio(t_one, t_b3),
        secs(t1),
        ratio(t1, t_one)
    );
    let _ = writeln!(
        note,
        "Per core (`taskset -c 0 cairn hash DIR --shard 1/1`): {} for {bytes} bytes = {:.0} MB/s = {:.2} GiB/s per core; the b3sum pipeline on the same core {} ({:.3} x).",
        secs(t_core),
        per_core / 1e6,
        per_core / (1u64 << 30) as f64,
        secs(t_b3_core),
        ratio(t_core, t_b3_core)
    );
    let _ = writeln!(
        note,
        "Digests: every merge (N = 1, 2, 4; one at a time and at once) printed {want}, the same as `cairn hash DIR` and the b3sum pipeline."
    );

    if !args.skip_1m {
        million(args, &mut note, rows)?;
    }
    let _ = write!(note, "\nLoad average at the end: {}", load());
    notes.push(note);
    Ok(())
}

/// The million-file tree of the `1m` case: its parts for N = 4 and 32, their merge (time and
/// peak RSS, digest and manifest), the walk alone, and the one-machine hash for scale.
fn million(args: &Args, note: &mut String, rows: &mut Vec<Row>) -> Result<()> {
    let cairn = args.cairn.to_str().unwrap();
    let project = args.dir.join("tree-1m/project");
    cairn_project(&project)?;
    let ds = project.join("data/ds");
    generate(&ds, 1_000_000, 256)?;
    let dir = ds.to_str().unwrap();
    let base = args.dir.join("shards");
    // Runs of seconds: three are enough for a median.
    let runs = args.runs.min(3);
    let one = Cmd::new(&base, &[cairn, "hash", dir]);
    let want = first_word(&one)?;
    let t_one = measure(runs, &one, no_setup)?;
    let one_rss = one.peak_rss()?;
    // The walk alone: shard 1 of the most shards hashes a few files of the million.
    let walk_part = base.join("walk.part");
    let walk = shard_cmd(cairn, &base, dir, 1, shard_max(), &walk_part);
    let t_walk = measure(runs, &walk, no_setup)?;
    let walk_files = header_number(&walk_part, "files")?;

    let _ = writeln!(
        note,
        "\n1,000,000 x 256 B (the `1m` case's tree): one-machine `cairn hash DIR` {} (peak RSS {}); the walk alone (`--shard 1/{}`, which hashes {walk_files} files) {}.",
        secs(t_one),
        mib(one_rss),
        shard_max(),
        secs(t_walk)
    );
    let _ = writeln!(note, "\n| N | slowest shard (one run each) | mean shard | merge | merge peak RSS | merge `--manifest > /dev/null` | its peak RSS | merge / one-machine hash |");
    let _ = writeln!(note, "|---|---|---|---|---|---|---|---|");
    for n in [4u32, 32] {
        let parts = base.join(format!("parts-1m-{n}"));
        std::fs::create_dir_all(&parts)?;
        let mut times = Vec::new();
        let mut argv = vec![cairn.to_string(), "hash".into(), "--merge".into()];
        for k in 1..=n {
            let part = parts.join(format!("{k}.part"));
            times.push(shard_cmd(cairn, &base, dir, k, n, &part).run()?);
            argv.push(part.to_str().unwrap().to_string());
        }
        let merge = Cmd::new(&base, &argv.iter().map(String::as_str).collect::<Vec<_>>());
        let got = first_word(&merge)?;
        if got != want {
            bail!("the merge of {n} shards of the 1M tree printed {got}, one machine {want}");
        }
        let t_merge = measure(runs, &merge, no_setup)?;
        let merge_rss = merge.peak_rss()?;
        let mut manifest = merge.clone();
        manifest.argv.push("--manifest".into());
        let t_manifest = measure(runs, &manifest, no_setup)?;
        let manifest_rss = manifest.peak_rss()?;
        let slowest = times.iter().copied().max().unwrap_or_default();
        let mean = times.iter().sum::<Duration>() / n;
        let _ = writeln!(
            note,
            "| {n} | {} | {} | {} | {} | {} | {} | {:.3} |",
            secs(slowest),
            secs(mean),
            secs(t_merge),
            mib(merge_rss),
            secs(t_manifest),
            mib(manifest_rss),
            ratio(t_merge, t_one)
        );
        rows.push(Row {
            case: format!("1,000,000 x 256 B: `cairn hash --merge` of {n} parts"),
            cairn: t_merge,
            cairn_rss: Some(merge_rss),
            peer: Some(("one-machine `cairn hash DIR`".into(), t_one)),
            target: "-".into(),
            met: None,
        });
    }
    let _ = writeln!(
        note,
        "\nDigests: both merges printed {want}, the same as `cairn hash DIR`."
    );

    // One walk for all shards: the listing, then shard 3 of 32 from it against the same shard
    // walking; the two parts must be the same bytes.
    let listing = base.join("1m.listing");
    let list = Cmd::new(
        &base,
        &[
            cairn,
            "hash",
            dir,
            "--list",
            "-o",
            listing.to_str().unwrap(),
        ],
    );
    let t_list = measure(runs, &list, no_setup)?;
    let list_rss = list.peak_rss()?;
    let walked_part = base.join("walked-3-of-32.part");
    let walked = shard_cmd(cairn, &base, dir, 3, 32, &walked_part);
    let t_walked = measure(runs, &walked, no_setup)?;
    let walked_rss = walked.peak_rss()?;
    let listed_part = base.join("listed-3-of-32.part");
    let mut listed = shard_cmd(cairn, &base, dir, 3, 32, &listed_part);
    listed.argv.push("--listing".into());
    listed.argv.push(listing.to_str().unwrap().into());
    let t_listed = measure(runs, &listed, no_setup)?;
    let listed_rss = listed.peak_rss()?;
    if std::fs::read(&walked_part)? != std::fs::read(&listed_part)? {
        bail!("shard 3/32 of the 1M tree from the listing differs from the walking shard's part");
    }
    let _ = writeln!(
        note,
        "\nOne listing for all shards: `cairn hash DIR --list` {} (peak RSS {}, {} MB of listing); shard 3/32 from it {} (peak RSS {}) against {} walking (peak RSS {}), **{:.3} x**; the two parts are the same bytes.",
        secs(t_list),
        mib(list_rss),
        std::fs::metadata(&listing)?.len() / 1_000_000,
        secs(t_listed),
        mib(listed_rss),
        secs(t_walked),
        mib(walked_rss),
        ratio(t_listed, t_walked)
    );
    rows.push(Row {
        case: "1,000,000 x 256 B: shard 3/32 with `--listing` (no walk)".into(),
        cairn: t_listed,
        cairn_rss: Some(listed_rss),
        peer: Some(("shard 3/32 walking the tree".into(), t_walked)),
        target: "-".into(),
        met: None,
    });
    Ok(())
}

/// The most shards cairn splits a directory into (`MAX_SHARDS` in content/shard.rs).
fn shard_max() -> u32 {
    1 << 16
}
