//! `cairn hash`: print the digest of files and directories, or hash a directory in shards on
//! many machines and merge the shards.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use cairn::content::digest::{HashOptions, Progress};
use cairn::content::shard::{self, Shard};
use indicatif::HumanBytes;

use crate::output::Printer;

/// Print the cairn digest of each PATH (a file or a directory), as `<digest>  <path>`.
///
/// A file's digest is `blake3:` + the BLAKE3 of its bytes (what `b3sum` prints). A
/// directory's digest is BLAKE3 over the b3sum-style manifest of every regular file below it,
/// sorted by path bytes, symlinks followed: the same hex as
/// `cd DIR && find -L . -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 -r b3sum | b3sum --no-names`.
///
/// A directory too big for one machine is hashed in shards, one per machine (a job array),
/// then merged into the same digest, byte for byte (example below). Each shard walks the whole
/// directory (stat only), takes one N-th of its bytes (whole files, contiguous in path order)
/// and reads only those. The merge checks that the parts cover the directory exactly once: a
/// shard that failed or is missing, given twice, cut short or made from a directory that
/// changed meanwhile is named, and nothing is printed. docs/cluster.md shows a Slurm job array.
#[derive(clap::Args)]
#[command(after_long_help = SHARD_EXAMPLE)]
pub struct Args {
    /// Files or directories to hash; with --merge, the part files to merge.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// For a directory, print its manifest (the b3sum lines) instead of its digest (with
    /// --merge: the merged manifest).
    #[arg(long)]
    manifest: bool,

    /// Hash only shard K of N of the directory (K = 1..N) and write its part (see -o).
    /// Shards are balanced by bytes; every machine must see the same directory.
    #[arg(long, value_name = "K/N", conflicts_with = "merge")]
    shard: Option<Shard>,

    /// With --shard: write the part to FILE (atomically: a killed shard leaves no part)
    /// instead of to stdout. With --list: where the listing goes.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Write the directory's listing (every file's path and size, from one walk) to -o FILE
    /// instead of hashing, for `--shard K/N --listing FILE`: the shards then read it rather
    /// than each walking the whole tree (on a network filesystem with millions of files, N
    /// walks are N times the load on its metadata servers).
    #[arg(long, requires = "output", conflicts_with_all = ["shard", "merge", "manifest"])]
    list: bool,

    /// With --shard: take the directory's files from this listing (`--list`) instead of walking
    /// it; only this shard's files are stat'ed and read. A listed file that is gone or has
    /// another size is an error: make the listing again.
    #[arg(long, value_name = "FILE", requires = "shard")]
    listing: Option<PathBuf>,

    /// Merge the part files written by `--shard K/N` runs into the directory's digest. Fails,
    /// naming the shard, unless the parts are shards 1..N of one listing of the directory,
    /// each once and complete.
    #[arg(long)]
    merge: bool,
}

const SHARD_EXAMPLE: &str = "\
Example, a directory hashed by 32 machines:
  cairn hash /data/corpus --shard 3/32 -o parts/corpus.3.part      (on machine K = 1..32)
  cairn hash --merge parts/corpus.*.part                           (once all are done)
  cairn lock --data corpus=/data/corpus --from-shards parts/corpus.*.part

With many files on a network filesystem, list the directory once and let the shards read it:
  cairn hash /data/corpus --list -o parts/corpus.listing                        (once)
  cairn hash /data/corpus --shard 3/32 --listing parts/corpus.listing -o parts/corpus.3.part";

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    if args.output.is_some() && args.shard.is_none() && !args.list {
        bail!(cairn::Error::Usage(
            "-o/--output goes with --shard (the part) or --list (the listing)".into()
        ));
    }
    if args.list {
        return run_list(args, out);
    }
    if let Some(shard) = args.shard {
        return run_shard(args, shard, out);
    }
    if args.merge {
        return run_merge(args, out);
    }
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    for path in &args.paths {
        let h = cairn::content::digest::hash_path(path)?;
        for s in &h.skipped {
            out.warn(&format!(
                "skipped {}: {}",
                path.join(&s.path).display(),
                s.reason
            ));
        }
        match (&h.manifest, args.manifest) {
            (Some(m), true) => stdout.write_all(&m.to_text())?,
            _ => writeln!(stdout, "{}  {}", h.digest, path.display())?,
        }
    }
    stdout.flush()?;
    Ok(crate::EXIT_OK)
}

fn run_shard(args: &Args, shard: Shard, out: &Printer) -> Result<u8> {
    let [dir] = args.paths.as_slice() else {
        bail!(cairn::Error::Usage(
            "--shard hashes one directory: give exactly one PATH".into()
        ));
    };
    if args.manifest {
        bail!(cairn::Error::Usage(
            "--manifest goes with --merge: a shard writes a part, not a manifest".into()
        ));
    }
    let bar = out.progress();
    let opts = HashOptions {
        progress: bar.as_ref().map(|b| b as &dyn Progress),
        ..HashOptions::default()
    };
    let h = match &args.listing {
        Some(listing) => shard::hash_shard_listed(dir, shard, listing, &opts)?,
        None => shard::hash_shard(dir, shard, &opts)?,
    };
    drop(bar);
    for s in &h.skipped {
        out.warn(&format!(
            "skipped {}: {}",
            dir.join(&s.path).display(),
            s.reason
        ));
    }
    let head = &h.part.header;
    match &args.output {
        Some(file) => h.part.write_file(file)?,
        None => {
            let stdout = std::io::stdout();
            let mut stdout = stdout.lock();
            h.part.write_to(&mut stdout)?;
            stdout.flush()?;
        }
    }
    out.info(&format!(
        "shard {shard} of {}: {} of {} files, {} of {}{}",
        head.root.display(),
        head.files,
        head.tree.files,
        HumanBytes(head.bytes),
        HumanBytes(head.tree.bytes),
        args.output
            .as_ref()
            .map(|f| format!(" -> {}", f.display()))
            .unwrap_or_default()
    ));
    Ok(crate::EXIT_OK)
}

fn run_list(args: &Args, out: &Printer) -> Result<u8> {
    let [dir] = args.paths.as_slice() else {
        bail!(cairn::Error::Usage(
            "--list lists one directory: give exactly one PATH".into()
        ));
    };
    let file = args.output.as_ref().expect("clap requires -o with --list");
    let listing = shard::list_tree(dir)?;
    for s in &listing.skipped {
        out.warn(&format!(
            "skipped {}: {}",
            dir.join(&s.path).display(),
            s.reason
        ));
    }
    listing.write_file(file)?;
    let tree = listing.tree();
    out.info(&format!(
        "listed {}: {} files, {} -> {}",
        listing.root().display(),
        tree.files,
        HumanBytes(tree.bytes),
        file.display()
    ));
    Ok(crate::EXIT_OK)
}

fn run_merge(args: &Args, out: &Printer) -> Result<u8> {
    let merged = shard::merge_files(&args.paths)?;
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    for m in &merged {
        if args.manifest {
            m.manifest.write_text(&mut stdout)?;
        } else {
            writeln!(stdout, "{}  {}", m.digest, m.root.display())?;
        }
        out.info(&format!(
            "merged {} shards of {}: {} files, {}",
            m.n,
            m.root.display(),
            m.tree.files,
            HumanBytes(m.tree.bytes)
        ));
    }
    stdout.flush()?;
    Ok(crate::EXIT_OK)
}
