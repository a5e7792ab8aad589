//! Writing files: atomically (temporary file, fsync, rename), so a crash leaves the old or the new
//! file and never half of one.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoResultExt, Result};

/// Write `text` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. Returns `false` (and writes nothing) when the file already holds
/// exactly these bytes.
pub fn write_if_changed(path: &Path, text: &[u8]) -> Result<bool> {
    if let Ok(old) = std::fs::read(path) {
        if old == text {
            return Ok(false);
        }
    }
    atomic_write(path, text)?;
    Ok(true)
}

/// Remove cairn's temporary files older than an hour from `dir`: what a killed writer left
/// behind (a live writer's file is seconds old).
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let hour = std::time::Duration::from_secs(3600);
    for e in rd.filter_map(|e| e.ok()) {
        let stale = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(crate::probe::git::TEMP_PREFIX))
            && e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > hour);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Atomically replace `path` with `bytes` (see [`write_if_changed`]), durably.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, true, |w| w.write_all(bytes))
}

/// Atomically replace `path` with what `write` produces, streamed through a buffer into a
/// temporary file in the same directory, then renamed. `durable` also fsyncs the file before
/// the rename and the directory after it; files that check themselves (content-addressed
/// manifests) can skip that cost.
pub fn atomic_write_with(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).ctx("cannot create directory", &dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(crate::probe::git::TEMP_PREFIX)
        .tempfile_in(&dir)
        .ctx("cannot create a temporary file in", &dir)?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        write(&mut w).ctx("cannot write", tmp.path())?;
        w.flush().ctx("cannot write", tmp.path())?;
    }
    if durable {
        tmp.as_file().sync_all().ctx("cannot sync", tmp.path())?;
    }
    tmp.persist(path).map_err(|e| Error::Io {
        op: "cannot replace",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    if durable {
        if let Ok(d) = std::fs::File::open(&dir) {
            // Make the rename durable; a directory that cannot be opened is not worth failing for.
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Read a regular file without following a link at `path` itself, and at most `max` bytes
/// (`InvalidData` beyond). A link, a device, a FIFO or a directory is refused: a repository can
/// make any of its files one of them.
pub fn read_regular_nofollow(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// Write `bytes` to a new file at `path`, never through a link: whatever is at `path` that is
/// not a directory (a file or a link a checkout put there) is removed first, and the file is
/// created with `O_CREAT | O_EXCL | O_NOFOLLOW`, so a link that appears in between makes the
/// write fail instead of landing where the link points.
pub fn write_new_nofollow(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(Error::Io {
                op: "cannot write (a directory is there)",
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            })
        }
        Ok(_) => std::fs::remove_file(path).ctx("cannot replace", path)?,
        Err(_) => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .ctx("cannot create", path)?;
    file.write_all(bytes).ctx("cannot write", path)?;
    Ok(())
}

#[cfg(test)]
mod nofollow_tests {
    use super::*;

    #[test]
    fn reads_refuse_links_devices_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_regular_nofollow(&file, 5).unwrap(), b"12345");
        assert!(read_regular_nofollow(&file, 4).is_err(), "over the limit");
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(
            read_regular_nofollow(&link, 100).is_err(),
            "a link is not followed"
        );
        assert!(read_regular_nofollow(Path::new("/dev/zero"), 100).is_err());
        assert!(read_regular_nofollow(dir.path(), 100).is_err());
    }

    #[test]
    fn writes_replace_a_link_and_never_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let at = dir.path().join("cairn.lock");
        std::os::unix::fs::symlink(&victim, &at).unwrap();
        write_new_nofollow(&at, b"lock").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&at).unwrap().is_file());
        assert_eq!(std::fs::read(&at).unwrap(), b"lock");
        // A file there is replaced too; a directory is refused.
        write_new_nofollow(&at, b"again").unwrap();
        assert_eq!(std::fs::read(&at).unwrap(), b"again");
        assert!(write_new_nofollow(dir.path(), b"x").is_err());
    }
}
