//! The generated data and projects the cases run on, and the peers they run against.

use crate::*;

/// Deterministic file contents: a xorshift stream seeded by the file index.
pub(crate) fn content(seed: u64, len: usize, out: &mut Vec<u8>) {
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
pub(crate) fn generate(dir: &Path, count: usize, size: usize) -> Result<()> {
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

pub(crate) fn run_ok(cmd: &mut Command) -> Result<()> {
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
pub(crate) fn cairn_project(root: &Path) -> Result<()> {
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

pub(crate) struct Peers {
    pub(crate) dvc: Option<PathBuf>,
}

pub(crate) fn ensure_dvc(dir: &Path) -> Result<PathBuf> {
    let venv = dir.join("venv-dvc");
    let dvc = venv.join("bin/dvc");
    if !dvc.exists() {
        eprintln!("installing DVC from PyPI into {}", venv.display());
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run_ok(Command::new(venv.join("bin/pip")).args(["install", "-q", "dvc==3.*"]))?;
    }
    Ok(dvc)
}

pub(crate) fn tool_version(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn machine() -> String {
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
