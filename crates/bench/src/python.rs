//! Where the interpreter comes from (a venv, a pyenv shim) and how many programs a command starts.

use crate::*;

/// A pyenv-style installation under `dir` whose one version, `bench`, is `venv`: a
/// `shims/python3` that runs `libexec/pyenv exec`, which reads `PYENV_VERSION`, the
/// `.python-version` files up the tree and the global `version` file, as pyenv does. Used when
/// no real pyenv shim is on `PATH`.
pub(crate) fn pyenv_style_shims(dir: &Path, venv: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("pyenv");
    for d in ["shims", "libexec", "versions"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let version = root.join("versions/bench");
    if !version.exists() {
        std::os::unix::fs::symlink(venv, &version)?;
    }
    std::fs::write(root.join("version"), "bench\n")?;
    let pyenv = root.join("libexec/pyenv");
    std::fs::write(
        &pyenv,
        include_str!("../../../tests/fixtures/fake-pyenv.sh"),
    )?;
    let shim = root.join("shims/python3");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nset -e\nprogram=\"${{0##*/}}\"\nexport PYENV_ROOT=\"{root}\"\nexec \"{root}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
            root = root.display()
        ),
    )?;
    for f in [&pyenv, &shim] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(root.join("shims"))
}

/// How many programs a command starts (`execve` calls under `strace -f`, its own included);
/// `None` without strace.
pub(crate) fn execve_count(cmd: &Cmd) -> Option<usize> {
    let log = std::env::temp_dir().join(format!("cairn-bench-strace-{}", std::process::id()));
    let mut traced = cmd.clone();
    let mut argv = vec![
        "strace".to_string(),
        "-f".into(),
        "-qq".into(),
        "-e".into(),
        "trace=execve".into(),
        "-o".into(),
        log.display().to_string(),
    ];
    argv.extend(cmd.argv.iter().cloned());
    traced.argv = argv;
    traced.run().ok()?;
    let text = std::fs::read_to_string(&log).ok()?;
    let _ = std::fs::remove_file(&log);
    Some(
        text.lines()
            .filter(|l| l.contains("execve(") && !l.contains("= -1"))
            .count(),
    )
}

/// Where the Python that cairn finds comes from: an activated venv, or a pyenv shim on `PATH`.
pub(crate) struct PythonSetup {
    pub(crate) label: &'static str,
    pub(crate) path: String,
    pub(crate) virtual_env: Option<String>,
}

impl PythonSetup {
    pub(crate) fn apply(&self, c: Cmd) -> Cmd {
        let c = c.env("PATH", &self.path);
        match &self.virtual_env {
            Some(v) => c.env("VIRTUAL_ENV", v),
            None => c,
        }
    }
}

/// An activated venv (made once under `--dir`), and a pyenv shim: the user's own when python3
/// on `PATH` is one, else a pyenv-style one of the bench's own leading to that venv.
pub(crate) fn python_setups(args: &Args) -> Result<Vec<PythonSetup>> {
    let base = args.dir.join("python");
    let venv = base.join("venv");
    if !venv.join("bin/python").exists() {
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let real_shim = std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
        .filter(|p| p.parent().and_then(Path::file_name) == Some("shims".as_ref()));
    let shim = match real_shim {
        Some(_) => PythonSetup {
            label: "pyenv shim",
            path: path.clone(),
            virtual_env: None,
        },
        None => PythonSetup {
            label: "pyenv-style shim (sh)",
            path: format!("{}:{path}", pyenv_style_shims(&base, &venv)?.display()),
            virtual_env: None,
        },
    };
    Ok(vec![
        PythonSetup {
            label: "venv",
            path: format!("{}:{path}", venv.join("bin").display()),
            virtual_env: Some(venv.display().to_string()),
        },
        shim,
    ])
}
