//! `cairn hash`: print the digest of files and directories.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use crate::output::Printer;

/// Print the cairn digest of each PATH (a file or a directory), as `<digest>  <path>`.
///
/// A file's digest is `blake3:` + the BLAKE3 of its bytes (what `b3sum` prints). A
/// directory's digest is BLAKE3 over the b3sum-style manifest of every regular file below it,
/// sorted by path bytes, symlinks followed: the same hex as
/// `cd DIR && find -L . -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 -r b3sum | b3sum --no-names`.
#[derive(clap::Args)]
pub struct Args {
    /// Files or directories to hash.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// For a directory, print its manifest (the b3sum lines) instead of its digest.
    #[arg(long)]
    manifest: bool,
}

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
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
