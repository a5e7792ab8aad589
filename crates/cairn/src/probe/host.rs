//! The machine a run happens on: OS, kernel, CPU, memory and GPUs, and what decides float
//! results on it: the CPU's instruction-set features that numeric kernels dispatch on, how many
//! CPUs the process may use (affinity, cgroup quota), and the BLAS library each numeric Python
//! package loads ([`blas`]).
//!
//! Everything is read from files under `/proc`, `/sys/fs/cgroup` and `/etc/os-release`, and GPUs
//! from `nvidia-smi` when it is on `PATH` (or where `CAIRN_NVIDIA_SMI` points). A missing source
//! leaves its field out; nothing here is ever an error.

use std::process::{Command, Stdio};

use std::path::{Path, PathBuf};

use crate::model::lockfile::{Blas, Gpu, Host};

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
        cpu_features: cpuinfo.as_deref().map(cpu_features).unwrap_or_default(),
        affinity: std::fs::read_to_string("/proc/self/status")
            .ok()
            .as_deref()
            .and_then(parse_affinity),
        cpu_quota: cgroup_cpu_quota(),
        blas: Vec::new(),
    }
}

/// The `/proc/cpuinfo` flags (x86) and `Features` (arm64) that numpy, OpenBLAS, MKL, oneDNN and
/// XLA choose kernels by: two machines that differ here can run different SIMD code on the same
/// wheels and get different floating-point results.
pub const NUMERIC_CPU_FEATURES: &[&str] = &[
    // x86
    "sse3",
    "pni",
    "ssse3",
    "sse4_1",
    "sse4_2",
    "popcnt",
    "f16c",
    "fma",
    "fma4",
    "avx",
    "avx2",
    "avx512f",
    "avx512cd",
    "avx512bw",
    "avx512dq",
    "avx512vl",
    "avx512ifma",
    "avx512vbmi",
    "avx512_vbmi2",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_bitalg",
    "avx512_vpopcntdq",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    // arm64
    "asimd",
    "asimdhp",
    "asimddp",
    "asimdfhm",
    "fphp",
    "sve",
    "sve2",
    "svebf16",
    "svei8mm",
    "bf16",
    "i8mm",
    "sme",
];

/// The numeric features of the first CPU in `/proc/cpuinfo` (`flags` on x86, `Features` on
/// arm64), sorted.
pub fn cpu_features(cpuinfo: &str) -> Vec<String> {
    let Some(flags) = cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        matches!(k.trim(), "flags" | "Features").then_some(v)
    }) else {
        return Vec::new();
    };
    let mut out: Vec<String> = flags
        .split_whitespace()
        .filter(|f| NUMERIC_CPU_FEATURES.contains(f))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The number of CPUs in `Cpus_allowed_list` of `/proc/self/status` (`0-3,8,10-11`: 7).
pub fn parse_affinity(status: &str) -> Option<u64> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let mut n = 0u64;
    for part in list.split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                b.checked_sub(a)? + 1
            }
            None => {
                part.trim().parse::<u64>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

/// The CPU quota of this process's cgroup, in CPUs: `cpu.max` (cgroup v2) or
/// `cpu.cfs_quota_us` / `cpu.cfs_period_us` (v1). `None` when there is no limit.
fn cgroup_cpu_quota() -> Option<String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let root = Path::new("/sys/fs/cgroup");
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            // v2: the limit may be set on any ancestor; the tightest one applies.
            let mut dir = root.join(rel);
            let mut best: Option<f64> = None;
            loop {
                if let Some(q) = std::fs::read_to_string(dir.join("cpu.max"))
                    .ok()
                    .as_deref()
                    .and_then(parse_cpu_max)
                {
                    best = Some(best.map_or(q, |b: f64| b.min(q)));
                }
                if dir == root || !dir.pop() || !dir.starts_with(root) {
                    break;
                }
            }
            if let Some(q) = best {
                return Some(quota_text(q));
            }
        } else if controllers.split(',').any(|c| c == "cpu") {
            let dir: PathBuf = [root, Path::new("cpu"), Path::new(rel)].iter().collect();
            let read = |f: &str| -> Option<i64> {
                std::fs::read_to_string(dir.join(f))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            };
            if let (Some(q), Some(p)) = (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")) {
                if q > 0 && p > 0 {
                    return Some(quota_text(q as f64 / p as f64));
                }
            }
        }
    }
    None
}

/// `cpu.max` (`QUOTA PERIOD`, or `max PERIOD`) as CPUs.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut it = text.split_whitespace();
    let quota: f64 = it.next()?.parse().ok()?;
    let period: f64 = it.next().unwrap_or("100000").parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// A quota in CPUs with at most two decimals, without trailing zeros (`2`, `1.5`, `0.25`).
fn quota_text(q: f64) -> String {
    let t = format!("{q:.2}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The Python packages whose BLAS/LAPACK library decides their float results.
const NUMERIC_PACKAGES: &[&str] = &[
    "numpy",
    "scipy",
    "torch",
    "jaxlib",
    "tensorflow",
    "sklearn",
    "scikit_learn",
    "scipy_openblas32",
    "scipy_openblas64",
];

/// The library a shared-object file name names, when it is a BLAS/LAPACK library:
/// `libopenblas64_p-r0-0cf96a72.3.23.dev.so` and `libscipy_openblas64_-ff651d7f.so` are
/// `openblas`, `libmkl_rt.so.2` is `mkl`.
pub fn blas_library(file_name: &str) -> Option<&'static str> {
    let name = file_name.strip_prefix("lib")?;
    if !(name.contains(".so") || name.ends_with(".dylib") || name.ends_with(".dll")) {
        return None;
    }
    let name = name.strip_prefix("scipy_").unwrap_or(name);
    [
        ("openblas", "openblas"),
        ("mkl_rt", "mkl"),
        ("mkl_core", "mkl"),
        ("blis", "blis"),
        ("flexiblas", "flexiblas"),
        ("cblas", "cblas"),
        ("accelerate", "accelerate"),
    ]
    .into_iter()
    .find_map(|(prefix, lib)| name.starts_with(prefix).then_some(lib))
}

/// The BLAS/LAPACK libraries the numeric packages of an environment load, found from their
/// files without importing anything: the libraries a wheel bundles (`numpy.libs/`,
/// `numpy/.libs/`, `torch/lib/`, a `scipy_openblas64` package), the BLAS that numpy's build
/// configuration names (`numpy/__config__.py`, with its version), and for a conda environment
/// the libraries in `PREFIX/lib`. `site_dirs` are the environment's `sys.path` directories;
/// the first that holds a package wins.
pub fn blas(site_dirs: &[PathBuf], prefix: Option<&Path>) -> Vec<Blas> {
    let mut out = Vec::new();
    for package in NUMERIC_PACKAGES {
        let Some(site) = site_dirs
            .iter()
            .find(|d| d.join(package).is_dir() || d.join(format!("{package}.libs")).is_dir())
        else {
            continue;
        };
        let display = package.replace("scikit_learn", "sklearn");
        let version = (*package == "numpy")
            .then(|| std::fs::read_to_string(site.join("numpy/__config__.py")).ok())
            .flatten()
            .as_deref()
            .and_then(numpy_config_blas);
        let mut found = Vec::new();
        for dir in [
            format!("{package}.libs"),
            format!("{package}/.libs"),
            format!("{package}/lib"),
            format!("{package}/lib64"),
        ] {
            let Ok(entries) = std::fs::read_dir(site.join(&dir)) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                if let Some(lib) = blas_library(&n) {
                    found.push((lib.to_string(), format!("{dir}/{n}")));
                }
            }
        }
        match (found.is_empty(), version) {
            (true, Some((lib, v))) => out.push(Blas {
                package: display,
                library: lib,
                version: v,
                file: None,
            }),
            (true, None) => {}
            (false, version) => {
                for (lib, file) in found {
                    let v = version
                        .as_ref()
                        .filter(|(l, _)| l.contains(&lib))
                        .and_then(|(_, v)| v.clone());
                    out.push(Blas {
                        package: display.clone(),
                        library: lib,
                        version: v,
                        file: Some(file),
                    });
                }
            }
        }
    }
    // A conda environment links numpy against the BLAS in its own lib/.
    if let Some(prefix) = prefix.filter(|p| p.join("conda-meta").is_dir()) {
        if let Ok(entries) = std::fs::read_dir(prefix.join("lib")) {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".so"))
                .collect();
            names.sort();
            for n in names {
                if let Some(lib) = blas_library(&n) {
                    out.push(Blas {
                        package: "conda".into(),
                        library: lib.into(),
                        version: None,
                        file: Some(format!("lib/{n}")),
                    });
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The BLAS that numpy's generated `__config__.py` names (numpy 1.26 and later:
/// `"blas": {"name": "scipy-openblas", ..., "version": "0.3.27", ...}`), as (library, version).
pub fn numpy_config_blas(text: &str) -> Option<(String, Option<String>)> {
    let start = text.find("\"blas\"")?;
    let rest = &text[start..];
    let end = rest.find('}').unwrap_or(rest.len());
    let block = &rest[..end];
    let field = |key: &str| -> Option<String> {
        let at = block.find(&format!("\"{key}\""))?;
        let after = &block[at + key.len() + 2..];
        let after = after.trim_start().strip_prefix(':')?.trim_start();
        let quoted = after.strip_prefix('"')?;
        let v = &quoted[..quoted.find('"')?];
        (!v.is_empty() && !v.contains("@")).then(|| v.to_string())
    };
    let name = field("name")?.to_lowercase();
    let library = [
        "openblas",
        "mkl",
        "blis",
        "flexiblas",
        "accelerate",
        "cblas",
    ]
    .into_iter()
    .find(|l| name.contains(l))
    .map(str::to_string)
    .unwrap_or(name);
    Some((library, field("version")))
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
    fn numeric_cpu_features_from_cpuinfo() {
        let x86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx512f avx512_bf16 amx_tile hypervisor\n\nprocessor\t: 1\nflags\t\t: fpu\n";
        assert_eq!(
            cpu_features(x86),
            [
                "amx_tile",
                "avx",
                "avx2",
                "avx512_bf16",
                "avx512f",
                "fma",
                "sse4_1",
                "sse4_2",
                "ssse3"
            ]
        );
        let arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimddp sve\n";
        assert_eq!(
            cpu_features(arm),
            ["asimd", "asimddp", "asimdhp", "fphp", "sve"]
        );
        assert!(cpu_features("processor: 0\n").is_empty());
    }

    #[test]
    fn affinity_and_quota() {
        assert_eq!(
            parse_affinity("Name:\tx\nCpus_allowed_list:\t0-3,8,10-11\n"),
            Some(7)
        );
        assert_eq!(parse_affinity("Cpus_allowed_list:\t0\n"), Some(1));
        assert_eq!(parse_affinity("Cpus_allowed_list:\t3-1\n"), None);
        assert_eq!(parse_affinity("Name:\tx\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(quota_text(1.5), "1.5");
        assert_eq!(quota_text(2.0), "2");
        assert_eq!(quota_text(0.25), "0.25");
    }

    #[test]
    fn blas_libraries_by_file_name() {
        assert_eq!(
            blas_library("libopenblas64_p-r0-0cf96a72.3.23.dev.so"),
            Some("openblas")
        );
        assert_eq!(
            blas_library("libscipy_openblas64_-ff651d7f.so"),
            Some("openblas")
        );
        assert_eq!(blas_library("libmkl_rt.so.2"), Some("mkl"));
        assert_eq!(blas_library("libgfortran-040039e1.so.5.0.0"), None);
        assert_eq!(blas_library("libopenblas.txt"), None);
    }

    #[test]
    fn numpy_build_configuration_names_its_blas() {
        let config = r#"CONFIG = _cleanup({
    "Build Dependencies": {
        "blas": {
            "name": "scipy-openblas",
            "found": bool("True".lower().replace('false', '')),
            "version": "0.3.27",
            "detection method": "pkgconfig",
        },
        "lapack": {"name": "dep123", "version": "1.0"},
    },
})"#;
        assert_eq!(
            numpy_config_blas(config),
            Some(("openblas".to_string(), Some("0.3.27".to_string())))
        );
        let unconfigured = r#""blas": {"name": "@BLAS_NAME@", "version": "@BLAS_VERSION@"}"#;
        assert_eq!(numpy_config_blas(unconfigured), None);
    }

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
