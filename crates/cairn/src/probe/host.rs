//! The machine a run happens on: OS, kernel, CPU, memory and GPUs.
//!
//! Everything is read from files under `/proc` and `/etc/os-release`, and GPUs from
//! `nvidia-smi` when it is on `PATH` (or where `CAIRN_NVIDIA_SMI` points). A missing source
//! leaves its field out; nothing here is ever an error.

use std::process::{Command, Stdio};

use crate::model::lockfile::{Gpu, Host};

/// Probe this machine.
pub fn probe() -> Host {
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .ok();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok();
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    Host {
        os: os_release.as_deref().and_then(parse_os_release),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        arch: Some(std::env::consts::ARCH.to_string()),
        cpu: cpuinfo.as_deref().and_then(parse_cpu_model),
        cores: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u64),
        memory: meminfo.as_deref().and_then(parse_mem_total),
        glibc: glibc(),
        torch: None,
        gpus: probe_gpus(),
    }
}

fn parse_os_release(text: &str) -> Option<String> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    };
    field("PRETTY_NAME").or_else(|| field("NAME"))
}

fn parse_cpu_model(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        matches!(k.trim(), "model name" | "Model name" | "cpu model").then(|| v.trim().to_string())
    })
}

fn parse_mem_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The C library version, from `getconf GNU_LIBC_VERSION` (`glibc 2.36`).
fn glibc() -> Option<String> {
    let getconf = crate::process::on_path("getconf")?;
    crate::probe::cache::host_output(&getconf, &["GNU_LIBC_VERSION"], &[], || {
        let out = Command::new(&getconf)
            .arg("GNU_LIBC_VERSION")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    })
}

/// `$CAIRN_NVIDIA_SMI`, else `nvidia-smi` on the absolute directories of `PATH`.
fn nvidia_smi() -> Option<std::path::PathBuf> {
    match std::env::var_os("CAIRN_NVIDIA_SMI") {
        Some(p) => Some(p.into()),
        None => crate::process::on_path("nvidia-smi"),
    }
}

/// The loaded NVIDIA driver's version: a new driver may report other GPUs or CUDA versions.
const NVIDIA_DRIVER_VERSION: &str = "/proc/driver/nvidia/version";

/// `nvidia-smi ARGS`, answered from the user's cache on an unchanged machine (same program,
/// boot and driver; [`crate::probe::cache::host_output`]).
fn run(args: &[&str]) -> Option<String> {
    let smi = nvidia_smi()?;
    let driver = std::path::Path::new(NVIDIA_DRIVER_VERSION);
    crate::probe::cache::host_output(&smi, args, &[driver], || {
        let out = Command::new(&smi)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

/// GPUs from nvidia-smi; empty when there is none (or no driver).
pub fn probe_gpus() -> Vec<Gpu> {
    // Both queries at once: each costs ~25 ms on a GPU machine. `-q -d COMPUTE` still prints the
    // header with the CUDA version, and is ~5 x faster than a full `-q` (measured on an H100).
    let (csv, q) = std::thread::scope(|s| {
        let q = s.spawn(|| run(&["-q", "-d", "COMPUTE"]));
        let csv = run(&[
            "--query-gpu=name,uuid,memory.total,driver_version,compute_cap",
            "--format=csv,noheader,nounits",
        ]);
        (csv, q.join().ok().flatten())
    });
    let Some(csv) = csv else {
        return Vec::new();
    };
    let cuda = q.as_deref().and_then(parse_cuda_version);
    parse_gpu_csv(&csv, cuda.as_deref())
}

/// Parse `nvidia-smi --query-gpu=name,uuid,memory.total,driver_version,compute_cap
/// --format=csv,noheader,nounits` (memory in MiB).
pub fn parse_gpu_csv(csv: &str, cuda: Option<&str>) -> Vec<Gpu> {
    let value = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && !s.starts_with("[N/A]") && s != "N/A" && !s.starts_with("[Not"))
            .then(|| s.to_string())
    };
    csv.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            if cols.len() < 5 {
                return None;
            }
            Some(Gpu {
                name: value(cols[0])?,
                uuid: value(cols[1]),
                memory: value(cols[2])
                    .and_then(|m| m.parse::<u64>().ok())
                    .map(|mib| mib * 1024 * 1024),
                driver: value(cols[3]),
                cuda: cuda.map(str::to_string),
                compute_capability: value(cols[4]),
            })
        })
        .collect()
}

/// The "CUDA Version" line of `nvidia-smi -q` (the newest CUDA the driver supports).
pub fn parse_cuda_version(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "CUDA Version")
            .then(|| v.trim().to_string())
            .filter(|v| !v.is_empty() && v != "N/A")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_csv() {
        let csv = "NVIDIA H100 80GB HBM3, GPU-1d2f3a4b-0000-1111-2222-333344445555, 81559, 550.54.15, 9.0\n\
                   NVIDIA H100 80GB HBM3, GPU-aaaaaaaa-0000-1111-2222-333344445555, 81559, 550.54.15, 9.0\n";
        let gpus = parse_gpu_csv(csv, Some("12.4"));
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpus[0].memory, Some(81559 * 1024 * 1024));
        assert_eq!(gpus[0].driver.as_deref(), Some("550.54.15"));
        assert_eq!(gpus[0].compute_capability.as_deref(), Some("9.0"));
        assert_eq!(gpus[1].cuda.as_deref(), Some("12.4"));
    }

    #[test]
    fn na_fields_are_left_out() {
        let gpus = parse_gpu_csv("Tesla T4, [N/A], [N/A], 535.1, [N/A]\n", None);
        assert_eq!(gpus[0].uuid, None);
        assert_eq!(gpus[0].memory, None);
        assert_eq!(gpus[0].compute_capability, None);
    }

    #[test]
    fn parses_cuda_version_and_os() {
        let q = "Timestamp : x\nDriver Version                            : 550.54.15\nCUDA Version                              : 12.4\n";
        assert_eq!(parse_cuda_version(q).as_deref(), Some("12.4"));
        assert_eq!(
            parse_os_release("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            parse_mem_total("MemTotal:       16384 kB\n"),
            Some(16384 * 1024)
        );
    }
}
