//! What decides float results (issue #14, point 6): the lock records the CPU's instruction sets,
//! the CPUs the run may use, the BLAS library of each numeric package (from its files, never by
//! importing it) and the variables that change numerics or thread pools; `cairn diff` and
//! `cairn rebuild` name them, in order, when checkpoints differ.

use crate::util::{Repo, Run, Venv};

/// A training script whose checkpoint depends on the thread settings it runs with, as a BLAS
/// reduction split over another number of threads does: it writes the CPUs it may use and
/// `OMP_NUM_THREADS`.
const THREAD_DEPENDENT: &str = r#"import os
os.makedirs("runs", exist_ok=True)
with open("runs/model.bin", "w") as f:
    f.write("cpus=%d omp=%s\n" % (len(os.sched_getaffinity(0)), os.environ.get("OMP_NUM_THREADS")))
"#;

fn project() -> Repo {
    let r = Repo::new();
    r.write("train.py", THREAD_DEPENDENT);
    r.write(".gitignore", "runs/\n");
    r.commit_all("initial");
    r
}

/// `cairn lock --lock LOCK --no-python` of the training run.
fn lock_args(lock: &str) -> Vec<&str> {
    lock_args_python(lock, None)
}

/// `cairn lock --lock LOCK` of the training run, with the interpreter `python` (or
/// `--no-python`).
fn lock_args_python<'a>(lock: &'a str, python: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["lock", "--lock", lock];
    match python {
        Some(py) => args.extend(["--python", py]),
        None => args.push("--no-python"),
    }
    args.extend([
        "--checkpoint",
        "runs/model.bin",
        "--",
        "python3",
        "train.py",
    ]);
    args
}

/// Rewrite the `[host]` table of the lock `rel` as another machine would have written it.
fn set_host(r: &Repo, rel: &str, edit: impl FnOnce(&mut toml::Table)) {
    let mut t = r.lock_toml(rel);
    edit(t.get_mut("host").unwrap().as_table_mut().unwrap());
    r.write(rel, toml::to_string(&t).unwrap());
}

fn strings(list: &[&str]) -> toml::Value {
    toml::Value::Array(list.iter().map(|s| toml::Value::from(*s)).collect())
}

/// The (cause, line) pairs of a diff or rebuild JSON report.
fn causes(report: &serde_json::Value) -> Vec<(String, String)> {
    report["likely_causes"]
        .as_array()
        .unwrap_or_else(|| panic!("no likely_causes: {report}"))
        .iter()
        .map(|c| {
            (
                c["cause"].as_str().unwrap().to_string(),
                c["line"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The lock records the numeric instruction sets of this CPU (a subset of its flags), how many
/// CPUs the run may use, and the numerics and thread-pool variables that are set.
#[test]
fn lock_records_cpu_features_affinity_and_numerics_variables() {
    let r = project();
    let vars = [
        ("RAYON_NUM_THREADS", "3"),
        ("TOKENIZERS_PARALLELISM", "false"),
        ("OPENBLAS_CORETYPE", "Haswell"),
        ("MKL_CBWR", "COMPATIBLE"),
        ("NUMEXPR_NUM_THREADS", "2"),
        ("VECLIB_MAXIMUM_THREADS", "2"),
        ("TF_ENABLE_ONEDNN_OPTS", "0"),
        ("XLA_FLAGS", "--xla_cpu_enable_fast_math=false"),
        ("JAX_ENABLE_X64", "1"),
    ];
    r.cairn_env(&vars, lock_args("cairn.lock")).expect(0);
    let t = r.lock_toml("cairn.lock");
    let env = t["run"]["env"].as_table().unwrap();
    for (k, v) in vars {
        assert_eq!(env.get(k).and_then(|x| x.as_str()), Some(v), "{k}: {env:?}");
    }
    let host = t["host"].as_table().unwrap();
    // The CPUs the process may use are at least those it can use at once (a cgroup quota can
    // lower the second).
    let cpus = std::thread::available_parallelism().unwrap().get() as i64;
    let affinity = host["affinity"].as_integer().unwrap();
    assert!(affinity >= cpus, "affinity {affinity}, {cpus} usable");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "flags" | "Features").then_some(v)
        })
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let recorded: Vec<&str> = host
        .get("cpu-features")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().map(|x| x.as_str().unwrap()).collect())
        .unwrap_or_default();
    for f in &recorded {
        assert!(flags.contains(f), "{f} is not a flag of this CPU");
    }
    for f in ["avx2", "fma", "sse4_2", "avx512f", "asimd"] {
        assert_eq!(recorded.contains(&f), flags.contains(&f), "{f}");
    }
    assert!(!recorded.contains(&"hypervisor"), "only numeric features");
}

/// The CPUs the process may use are its affinity mask: `taskset -c 0` makes it 1.
#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "taskset and /proc/self/status are Linux's"
)]
fn affinity_under_taskset_is_recorded_and_named_by_diff() {
    crate::util::require_tool("taskset", "this test pins cairn to one CPU");
    let r = project();
    r.cairn(lock_args("a.cairn.lock")).expect(0);
    let mut pinned = r.cmd_raw("taskset");
    pinned
        .args(["-c", "0", env!("CARGO_BIN_EXE_cairn")])
        .args(lock_args("b.cairn.lock"));
    Run::of(&mut pinned).expect(0);
    let b = r.lock_toml("b.cairn.lock");
    assert_eq!(b["host"]["affinity"].as_integer(), Some(1));
    let a = r.lock_toml("a.cairn.lock");
    let all = a["host"]["affinity"].as_integer().unwrap();
    if all == 1 {
        // One CPU: both runs are the same; nothing to name.
        return assert_eq!(r.read("runs/model.bin"), "cpus=1 omp=None\n");
    }
    let d = r
        .cairn(["diff", "a.cairn.lock", "b.cairn.lock", "--format", "json"])
        .expect(1)
        .json();
    assert_eq!(
        causes(&d),
        [(
            "threads".to_string(),
            format!("cores {all} -> 1, affinity {all} -> 1")
        )]
    );
}

/// Two machines: one with AVX-512, the other without; one run with 1 OpenMP thread, the other
/// with 2 and `MKL_CBWR` set; the checkpoints differ. diff names the causes, one line each, in
/// order: instruction sets, then thread counts, then numerics variables.
#[test]
fn diff_names_cpu_features_threads_and_variables_in_order() {
    let r = project();
    r.cairn_env(&[("OMP_NUM_THREADS", "1")], lock_args("a.cairn.lock"))
        .expect(0);
    r.cairn_env(
        &[("OMP_NUM_THREADS", "2"), ("MKL_CBWR", "COMPATIBLE")],
        lock_args("b.cairn.lock"),
    )
    .expect(0);
    set_host(&r, "a.cairn.lock", |h| {
        h.insert(
            "cpu-features".into(),
            strings(&["avx", "avx2", "avx512f", "fma", "sse4_2"]),
        );
        h.insert("cpu".into(), "Intel(R) Xeon(R) Platinum 8480+".into());
    });
    set_host(&r, "b.cairn.lock", |h| {
        h.insert(
            "cpu-features".into(),
            strings(&["avx", "avx2", "fma", "sse4_2"]),
        );
        h.insert("cpu".into(), "AMD EPYC 7B13".into());
    });
    let d = r
        .cairn(["diff", "a.cairn.lock", "b.cairn.lock", "--format", "json"])
        .expect(1)
        .json();
    assert_eq!(d["effects"][0]["subject"], "runs/model.bin", "{d}");
    assert_eq!(
        causes(&d),
        [
            (
                "cpu-features".to_string(),
                "cpu Intel(R) Xeon(R) Platinum 8480+ -> AMD EPYC 7B13, cpu features avx512f -> none"
                    .to_string()
            ),
            ("threads".to_string(), "OMP_NUM_THREADS 1 -> 2".to_string()),
            (
                "numerics-variables".to_string(),
                "MKL_CBWR COMPATIBLE now".to_string()
            ),
        ]
    );
    let human = r.cairn(["diff", "a.cairn.lock", "b.cairn.lock"]).expect(1);
    let text = human.stdout.clone();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{text}"))
    };
    let head = at("likely causes of the different results (most likely first):");
    let cpu = at("  CPU instruction sets: cpu Intel(R) Xeon(R) Platinum 8480+ -> AMD EPYC 7B13, cpu features avx512f -> none");
    let threads = at("  thread counts and affinity: OMP_NUM_THREADS 1 -> 2");
    let vars = at("  numerics variables: MKL_CBWR COMPATIBLE now");
    assert!(head < cpu && cpu < threads && threads < vars, "{text}");

    // The same differences with equal checkpoints are causes without effects: no
    // likely-causes block.
    let same = r
        .cairn(["diff", "a.cairn.lock", "a.cairn.lock", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(same["likely_causes"], serde_json::json!([]));
}

/// A fake environment whose numpy and scipy bundle OpenBLAS as manylinux wheels do
/// (`numpy.libs/`, `scipy.libs/`), and whose numpy's build configuration names it: the lock
/// records both, from the files, and never imports them (their `__init__.py` would touch a
/// marker).
#[test]
fn blas_of_numeric_packages_is_read_from_their_files() {
    let venv = Venv::new();
    let site = venv.site_packages();
    let marker = venv.dir.path().join("IMPORTED");
    let touch = format!("open({:?}, 'w').close()\n", marker.to_str().unwrap());
    let write = |rel: &str, text: &str| {
        let p = site.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("numpy/__init__.py", &touch);
    write(
        "numpy/__config__.py",
        "CONFIG = {\n    \"Build Dependencies\": {\n        \"blas\": {\n            \"name\": \"scipy-openblas\",\n            \"version\": \"0.3.27\",\n        },\n    },\n}\n",
    );
    write(
        "numpy.libs/libscipy_openblas64_-ff651d7f.so",
        "not really a library",
    );
    write("numpy.libs/libgfortran-040039e1.so.5.0.0", "not BLAS");
    write("scipy/__init__.py", &touch);
    write(
        "scipy.libs/libopenblasp-r0-23e5df77.3.21.dev.so",
        "not really a library",
    );
    let r = project();
    let py = venv.python();
    r.cairn(lock_args_python("cairn.lock", py.to_str()))
        .expect(0);
    assert!(!marker.exists(), "a numeric package was imported");
    let t = r.lock_toml("cairn.lock");
    let blas: Vec<(String, String, String, String)> = t["host"]["blas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let s = |k: &str| b.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            (s("package"), s("library"), s("version"), s("file"))
        })
        .collect();
    assert_eq!(
        blas,
        [
            (
                "numpy".into(),
                "openblas".into(),
                "0.3.27".into(),
                "numpy.libs/libscipy_openblas64_-ff651d7f.so".into()
            ),
            (
                "scipy".into(),
                "openblas".into(),
                String::new(),
                "scipy.libs/libopenblasp-r0-23e5df77.3.21.dev.so".into()
            ),
        ]
    );

    // Another numpy build (MKL instead of OpenBLAS) is another BLAS library: diff names it
    // before everything but code, data and packages.
    std::fs::remove_dir_all(site.join("numpy.libs")).unwrap();
    write("numpy.libs/libmkl_rt-a1b2c3.so.2", "not really a library");
    write(
        "numpy/__config__.py",
        "CONFIG = {\"blas\": {\"name\": \"mkl-sdl\", \"version\": \"2023.1\"}}\n",
    );
    std::fs::write(r.join("train.py"), THREAD_DEPENDENT.replace("cpus=", "n=")).unwrap();
    r.commit_all("another format");
    r.cairn(lock_args_python("b.cairn.lock", py.to_str()))
        .expect(0);
    let d = r
        .cairn(["diff", "cairn.lock", "b.cairn.lock", "--format", "json"])
        .expect(1)
        .json();
    let got = causes(&d);
    assert_eq!(got[0], ("code".to_string(), "train.py".to_string()), "{d}");
    assert_eq!(
        got[1],
        (
            "blas".to_string(),
            "numpy openblas 0.3.27 (numpy.libs/libscipy_openblas64_-ff651d7f.so) -> mkl 2023.1 (numpy.libs/libmkl_rt-a1b2c3.so.2)"
                .to_string()
        ),
        "{d}"
    );
    assert!(!marker.exists(), "a numeric package was imported");
}

/// A lock written before cairn recorded instruction sets, affinity and BLAS still reads, and
/// diff does not invent differences from keys it lacks.
#[test]
fn older_locks_without_these_keys_read_and_compare_quietly() {
    let r = project();
    r.cairn(lock_args("a.cairn.lock")).expect(0);
    r.cairn(lock_args("b.cairn.lock")).expect(0);
    set_host(&r, "a.cairn.lock", |h| {
        for k in ["cpu-features", "affinity", "cpu-quota", "blas"] {
            h.remove(k);
        }
    });
    r.cairn(["verify", "--lock", "a.cairn.lock"]).expect(0);
    let d = r
        .cairn(["diff", "a.cairn.lock", "b.cairn.lock", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(d["causes"], serde_json::json!([]), "{d}");
}

/// Where the rebuild runs with fewer CPUs than the locked run had, and the checkpoint differs
/// for it, the rebuild names the affinity among the likely causes.
#[test]
fn rebuild_under_taskset_names_the_affinity() {
    crate::util::require_tool("taskset", "this test pins the rebuild to one CPU");
    let r = project();
    r.cairn(lock_args("cairn.lock")).expect(0);
    let all = r.lock_toml("cairn.lock")["host"]["affinity"]
        .as_integer()
        .unwrap();
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let mut cmd = r.cmd_raw("taskset");
    cmd.args(["-c", "0", env!("CARGO_BIN_EXE_cairn"), "rebuild", "--into"])
        .arg(&into)
        .args(["--run", "--format", "json"]);
    if all == 1 {
        // A one-CPU machine cannot run with fewer: the rebuild reproduces, with no causes.
        let report = Run::of(&mut cmd).expect(0).json();
        return assert_eq!(report["likely_causes"], serde_json::json!([]));
    }
    let report = Run::of(&mut cmd).expect(1).json();
    assert_eq!(
        causes(&report),
        [(
            "threads".to_string(),
            format!("cores {all} -> 1, affinity {all} -> 1")
        )],
        "{report}"
    );
    assert_eq!(
        std::fs::read_to_string(into.join("runs/model.bin")).unwrap(),
        "cpus=1 omp=None\n"
    );
}
