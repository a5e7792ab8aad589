use super::*;
use crate::model::lockfile::{PyPackage, Python};
use crate::model::python::{CondaPackage, Source};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/lockfiles/", $name))
    };
}

fn no_includes(path: &str) -> Result<(String, String), String> {
    Err(format!("{path}: no such file"))
}

/// The wants of a file as `text` (sorted, `!` before a required one), or a panic on a problem.
fn wants(kind: &str, text: &str) -> String {
    let parsed = parse(kind, "f", text, &mut no_includes);
    let mut all: Vec<String> = parsed
        .wants
        .iter()
        .map(|w| {
            let need = if w.need == Need::Required { "!" } else { "" };
            format!("{need}{}", w.text)
        })
        .collect();
    all.sort();
    all.join(", ")
}

fn python(version: &str, platform: &str, packages: &[(&str, &str)]) -> Python {
    Python {
        implementation: "cpython".into(),
        version: version.into(),
        abi: None,
        platform: Some(platform.into()),
        packages: packages
            .iter()
            .map(|(n, v)| PyPackage {
                name: (*n).into(),
                version: (*v).into(),
                source: Source::Registry,
                installer: None,
                wheel_tag: None,
                fingerprint: None,
            })
            .collect(),
        conda: Vec::new(),
        index_url: None,
        extra_index_urls: Vec::new(),
    }
}

/// The findings as `file wants X, the environment has Y` lines.
fn findings(kind: &str, text: &str, env: &Python) -> Vec<String> {
    let parsed = parse(kind, "f", text, &mut no_includes);
    assert_eq!(parsed.problems, Vec::<String>::new());
    unmet(&parsed, &Installed::new(env))
        .into_iter()
        .map(|u| {
            format!(
                "{} -> {}",
                u.wants.join(" or "),
                u.installed.as_deref().unwrap_or("none")
            )
        })
        .collect()
}

#[test]
fn the_issues_example() {
    let env = python(
        "3.11.9",
        "linux-x86_64",
        &[("six", "1.16.0"), ("regex", "2024.11.6")],
    );
    let text = "six==1.16\nSix>=1.17\nregex==2024.11.06\n";
    assert_eq!(
        findings("requirements", text, &env),
        ["six>=1.17 -> 1.16.0"]
    );
}

#[test]
fn every_operator_is_pep_440() {
    let env = python(
        "3.11.9",
        "linux-x86_64",
        &[
            ("a", "1.4.2"),
            ("b", "2.0rc1"),
            ("c", "1!1.0"),
            ("d", "2.5.1+cu121"),
        ],
    );
    let meets = |req: &str| findings("requirements", req, &env).is_empty();
    for ok in [
        "a>=1.4",
        "a<2",
        "a~=1.4.0",
        "a!=1.4.1",
        "a==1.*",
        "a==1.4.2",
        "a===1.4.2",
        "a<=1.4.2",
        "a>1.4",
        "A>=1,<2",
        "b>=2.0a1",
        "c>=1!0.5",
        "d==2.5.1",
        "d==2.5.1+cu121",
        "a",
    ] {
        assert!(meets(ok), "{ok}");
    }
    for bad in [
        "a>=1.5",
        "a<1.4.2",
        "a~=1.3.0",
        "a!=1.4.2",
        "a==1.3.*",
        "a!=1.*",
        "a===1.4.2.0",
        "a>1.4.2",
        "c<1",
        "d==2.5.1+cu118",
    ] {
        assert!(!meets(bad), "{bad}");
    }
}

#[test]
fn markers_are_evaluated_against_the_interpreter() {
    let env = python("3.11.9", "linux-x86_64", &[("six", "1.16.0")]);
    let text = "six>=1.17; python_version < '3.10'\n\
        six>=1.18; sys_platform == 'win32'\n\
        six>=1.19; platform_machine == 'x86_64' and python_full_version >= '3.11.2'\n\
        torch>=2; sys_platform == 'darwin'\n\
        missing>=1; python_version >= '3.11'\n";
    assert_eq!(
        findings("requirements", text, &env),
        ["six>=1.19 -> 1.16.0", "missing>=1 -> none"]
    );
    let mac = python("3.12.1", "macosx-14.0-arm64", &[("six", "1.16.0")]);
    let env = marker_environment(&mac).unwrap();
    let holds = |m: &str| MarkerTree::from_str(m).unwrap().evaluate(&env, &[]);
    assert!(holds(
        "sys_platform == 'darwin' and platform_machine == 'arm64'"
    ));
    assert!(holds("platform_system == 'Darwin' and os_name == 'posix'"));
    assert!(holds("implementation_name == 'cpython'"));
    assert!(holds("platform_python_implementation == 'CPython'"));
    assert!(!holds("python_version < '3.12'"));
}

#[test]
fn optional_groups_are_checked_only_when_installed() {
    let env = python(
        "3.11.9",
        "linux-x86_64",
        &[("numpy", "1.26.4"), ("pytest", "7.0.0")],
    );
    let text = r#"
[project]
name = "trainer"
requires-python = ">=3.12"
dependencies = ["numpy>=2", "torch>=2.4 ; sys_platform == 'linux'"]
[project.optional-dependencies]
test = ["pytest>=8", "hypothesis>=6"]
gpu = ["cupy>=13; extra == 'gpu'"]
[dependency-groups]
dev = ["pytest>=7", {include-group = "lint"}]
lint = ["ruff>=0.6"]
"#;
    assert_eq!(
        findings("pyproject", text, &env),
        [
            "python>=3.12 -> 3.11.9",
            "numpy>=2 -> 1.26.4",
            "torch>=2.4 -> none",
            "pytest>=8 -> 7.0.0"
        ]
    );
}

#[test]
fn pipfile_specs_tables_and_marker_keys() {
    let text = r#"
[requires]
python_version = "3.11"
[packages]
requests = "*"
Django = ">=4.2,<5"
numpy = "1.26.4"
torch = {version = ">=2.4", sys_platform = "== 'linux'"}
pywin32 = {version = "*", markers = "sys_platform == 'win32'"}
mylib = {git = "https://github.com/x/mylib.git", ref = "main"}
[dev-packages]
pytest = ">=8"
"#;
    assert_eq!(
        wants("pipenv", text),
        "!django>=4.2,<5, !mylib, !numpy==1.26.4, !python==3.11.*, !pywin32, !requests, \
         !torch>=2.4, pytest>=8"
    );
    let env = python(
        "3.11.9",
        "linux-x86_64",
        &[
            ("requests", "2.32.3"),
            ("django", "5.0"),
            ("numpy", "1.26.4"),
            ("torch", "2.3.0"),
            ("mylib", "0.1"),
            ("pytest", "8.3.3"),
        ],
    );
    assert_eq!(
        findings("pipenv", text, &env),
        ["django>=4.2,<5 -> 5.0", "torch>=2.4 -> 2.3.0"]
    );
}

#[test]
fn lock_files_pin_with_markers() {
    let uv = fixture!("uv-lock.toml");
    assert_eq!(
        wants("uv", uv),
        "filelock==3.16.1, numpy==1.26.4, numpy==2.1.3, torch==2.5.1+cu121"
    );
    // Python 3.11: the 2.1.3 fork applies, so 1.26.4 installed is reported against it alone.
    let env = python(
        "3.11.9",
        "linux-x86_64",
        &[("numpy", "1.26.4"), ("torch", "2.5.1+cu121")],
    );
    assert_eq!(findings("uv", uv, &env), ["numpy==2.1.3 -> 1.26.4"]);
    let env = python("3.10.4", "linux-x86_64", &[("numpy", "1.26.4")]);
    assert_eq!(findings("uv", uv, &env), Vec::<String>::new());
    let pylock = fixture!("pylock-sample.toml");
    assert_eq!(
        wants("pylock", pylock),
        "jinja2==3.1.4, typing-extensions==4.12.2"
    );
    let env = python("3.9.1", "linux-x86_64", &[("jinja2", "3.0.0")]);
    assert_eq!(findings("pylock", pylock, &env), Vec::<String>::new());
    let poetry = fixture!("poetry-lock.toml");
    assert_eq!(wants("poetry", poetry), "pyyaml==6.0.2, tqdm==4.67.0");
    let pdm = fixture!("pdm-lock.toml");
    assert_eq!(wants("pdm", pdm), "pytest==8.3.3, safetensors==0.4.5");
    // A uv.lock read as pylock has no `[[packages]]`: nothing, and no problem.
    assert_eq!(wants("pylock", uv), "");
    let pipfile = fixture!("pipfile-lock.json");
    assert_eq!(
        wants("pipfile", pipfile),
        "pillow==11.0.0, pytest==8.3.3, torch==2.4.0, torch==2.5.1"
    );
    let env = python("3.11.9", "linux-x86_64", &[("torch", "2.4.0")]);
    assert_eq!(findings("pipfile", pipfile, &env), Vec::<String>::new());
}

#[test]
fn poetry_markers_by_group_and_versions_compared_as_pep_440() {
    let text = r#"
[[package]]
name = "colorama"
version = "0.4.6"
markers = {main = "sys_platform == 'win32'", dev = "platform_system == 'Windows'"}
[[package]]
name = "regex"
version = "2024.11.06"
markers = "python_version >= '3.8'"
"#;
    let env = python(
        "3.11.9",
        "linux-x86_64",
        &[("colorama", "0.4.5"), ("regex", "2024.11.6")],
    );
    assert_eq!(findings("poetry", text, &env), Vec::<String>::new());
    let win = python("3.11.9", "win-amd64", &[("colorama", "0.4.5")]);
    assert_eq!(findings("poetry", text, &win), ["colorama==0.4.6 -> 0.4.5"]);
}

#[test]
fn requirements_awkward_lines() {
    let got = wants("requirements", fixture!("reqs-sample.txt"));
    let parsed = parse(
        "requirements",
        "f",
        fixture!("reqs-sample.txt"),
        &mut no_includes,
    );
    assert_eq!(
        parsed.problems,
        [
            "f line 4: requirements-base.txt: no such file",
            "f line 5: constraints.txt: no such file"
        ]
    );
    let want = "!accelerate==1.1.1, !continued==1.2, !datasets==3.1.0, \
        !flash-attn @ https://github.com/x/flash_attn-2.6.3.whl#sha256=cc, !numpy==1.26.4, \
        !numpy==2.0.0, !pkg-exact===1.0.post1, !safetensors, !sentencepiece==0.2.*, \
        !tokenizers~=0.20.0, !torch==2.5.1+cu121, !transformers>=4.46, \
        !typing-extensions==4.12.2";
    assert_eq!(got, want);
}

#[test]
fn includes_stay_relative_and_constraints_only_constrain() {
    let files = [
        ("reqs/base.txt", "-r common.txt\nsix>=1.17\n"),
        ("reqs/common.txt", "numpy>=2\n"),
        ("reqs/c.txt", "torch<2\nscipy<1\n"),
    ];
    let mut read = |path: &str| -> Result<(String, String), String> {
        files
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .ok_or_else(|| format!("{path}: no such file"))
    };
    let parsed = parse(
        "requirements",
        "requirements.txt",
        "-r reqs/base.txt\n--constraint reqs/c.txt\n-r reqs/base.txt\n",
        &mut read,
    );
    assert_eq!(parsed.problems, Vec::<String>::new());
    let env = python(
        "3.11.9",
        "linux-x86_64",
        &[("six", "1.16.0"), ("numpy", "2.0.0"), ("torch", "2.4.0")],
    );
    let got: Vec<String> = unmet(&parsed, &Installed::new(&env))
        .into_iter()
        .map(|u| u.wants.join(" or "))
        .collect();
    assert_eq!(
        got,
        [
            "six>=1.17 (from reqs/base.txt)",
            "torch<2 (from reqs/c.txt)",
            "six>=1.17 (from reqs/base.txt)"
        ]
    );
}

#[test]
fn a_loop_of_includes_ends() {
    let mut read = |path: &str| -> Result<(String, String), String> {
        Ok((path.to_string(), format!("-r {path}\n")))
    };
    let parsed = parse("requirements", "a.txt", "-r a.txt\n", &mut read);
    assert_eq!(parsed.problems.len(), 1, "{:?}", parsed.problems);
    assert!(
        parsed.problems[0].contains("nests more than"),
        "{:?}",
        parsed.problems
    );
}

#[test]
fn conda_environment_with_yaml_features() {
    let text = fixture!("environment-sample.yml");
    let parsed = parse("conda", "environment.yml", text, &mut no_includes);
    assert_eq!(
        parsed.problems,
        ["environment.yml line 3: requirements.txt: no such file"]
    );
    let text = "name: x\nchannels: [conda-forge, defaults]\n\
        base: &base [\"numpy=1.26\", 'scipy>=1.14,<2']\n\
        dependencies:\n  - python=3.11\n  - *base\n  - pip:\n    - Six>=1.17\n";
    // An alias inside the list is a list, not a package: the flow sequence's own items count
    // only where YAML puts them.
    assert_eq!(wants("conda", text), "!six>=1.17, python=3.11");
    let text = "dependencies: [\"numpy=1.26\", 'scipy>=1.14,<2', {pip: [six>=1.17]}]\n";
    assert_eq!(
        wants("conda", text),
        "!six>=1.17, numpy=1.26, scipy>=1.14,<2"
    );
    let anchors = "deps: &d\n  - numpy=1.26\ndependencies: *d\n";
    assert_eq!(wants("conda", anchors), "numpy=1.26");
}

#[test]
fn conda_specs_are_checked_against_conda_meta_or_pip() {
    let text =
        "dependencies:\n  - python=3.11\n  - numpy=1.26\n  - pytorch=2.5.1=*cuda*\n  - zlib\n";
    // No conda-meta: pip names and the interpreter.
    let env = python("3.12.1", "linux-x86_64", &[("numpy", "1.26.4")]);
    assert_eq!(findings("conda", text, &env), ["python=3.11 -> 3.12.1"]);
    let mut env = python("3.11.9", "linux-x86_64", &[]);
    env.conda = [
        ("numpy", "1.26.4", "py311h1"),
        ("python", "3.11.9", "h1"),
        ("pytorch", "2.5.1", "py3.11_cpu_0"),
    ]
    .iter()
    .map(|(n, v, b)| CondaPackage {
        name: (*n).into(),
        version: (*v).into(),
        build: Some((*b).into()),
        channel: None,
        sha256: None,
    })
    .collect();
    assert_eq!(
        findings("conda", text, &env),
        ["pytorch=2.5.1=*cuda* -> 2.5.1"]
    );
}

#[test]
fn malformed_files_say_what_and_where() {
    let bad = "version = 1\n[[package]]\nname = \"torch\nversion = \"2\"\n";
    let p = parse("uv", "uv.lock", bad, &mut no_includes);
    assert!(p.problems[0].starts_with("line 3: "), "{:?}", p.problems);
    let p = parse(
        "poetry",
        "poetry.lock",
        "[[package]]\nversion = \"1.0\"\n",
        &mut no_includes,
    );
    assert!(p.problems[0].contains("name"), "{:?}", p.problems);
    let p = parse(
        "pipfile",
        "Pipfile.lock",
        "{\"default\": {\"torch\": }}",
        &mut no_includes,
    );
    assert!(p.problems[0].contains("line 1"), "{:?}", p.problems);
    // A bad line is a problem; the lines around it are still read.
    let p = parse(
        "requirements",
        "r.txt",
        "numpy==1.0\n\ntorch==\nsix\n",
        &mut no_includes,
    );
    assert_eq!(p.wants.len(), 2);
    assert!(
        p.problems[0].starts_with("r.txt line 3: `torch==`"),
        "{:?}",
        p.problems
    );
    let p = parse(
        "conda",
        "environment.yml",
        "dependencies: [a\n",
        &mut no_includes,
    );
    assert!(p.problems[0].starts_with("line "), "{:?}", p.problems);
    let p = parse(
        "pyproject",
        "pyproject.toml",
        "[project]\ndependencies = [\"a >>> 1\"]\n",
        &mut no_includes,
    );
    assert!(
        p.problems[0].starts_with("project.dependencies: `a >>> 1`"),
        "{:?}",
        p.problems
    );
}

#[test]
fn odd_input_never_panics() {
    for odd in [
        "",
        "-",
        "\\",
        "dependencies: [numpy=1]\n",
        "dependencies:\n  -\n  - ::\n  - =1\n  - \"\n\t- x=1\n",
        "dependencies:\n    - a=1\n  - b=2\n - pip:\n   -\n   - \"é[==\"\n",
        "é==1 é\n[\n==\n#\n# \\\n-\\\n",
        "[project]\ndependencies = 3\n[dependency-groups]\nx = [1, {a = 2}]\n",
        "[packages]\na = 1\nb = {version = 2}\n",
    ] {
        for kind in [
            "conda",
            "requirements",
            "uv",
            "pylock",
            "pipfile",
            "pyproject",
            "pipenv",
            "poetry",
        ] {
            let _ = parse(kind, "f", odd, &mut no_includes);
        }
    }
}

#[test]
fn a_conda_spec_that_names_a_channel_wants_that_channel() {
    let text = "channels: [conda-forge, defaults]\ndependencies:\n  - conda-forge::numpy=1.26\n  - defaults::zlib\n  - pytorch::pytorch=2.5\n  - nvidia/label/cuda-12.1.0::cuda-toolkit\n";
    let mut env = python("3.11.9", "linux-x86_64", &[]);
    env.conda = [
        (
            "numpy",
            "1.26.4",
            "https://conda.anaconda.org/conda-forge/linux-64",
        ),
        (
            "zlib",
            "1.3.1",
            "https://repo.anaconda.com/pkgs/main/linux-64",
        ),
        (
            "cuda-toolkit",
            "12.1.0",
            "https://conda.anaconda.org/nvidia/label/cuda-12.1.0/linux-64",
        ),
        (
            "pytorch",
            "2.5.1",
            "https://conda.anaconda.org/conda-forge/linux-64",
        ),
    ]
    .iter()
    .map(|(n, v, c)| CondaPackage {
        name: (*n).into(),
        version: (*v).into(),
        build: None,
        channel: Some((*c).into()),
        sha256: None,
    })
    .collect();
    assert_eq!(
        findings("conda", text, &env),
        ["pytorch::pytorch=2.5 -> 2.5.1 from conda-forge"]
    );
    assert_eq!(channel_name("pytorch"), "pytorch");
    assert_eq!(
        channel_name("https://conda.anaconda.org/nvidia/label/cuda-12.1.0/noarch"),
        "nvidia/label/cuda-12.1.0"
    );
    assert_eq!(
        channel_name("https://repo.anaconda.com/pkgs/main/osx-arm64"),
        "pkgs/main"
    );
    assert_eq!(channel_name("conda-forge/linux-64"), "conda-forge");
}

#[test]
fn pylock_extras_and_group_markers_are_taken_to_hold() {
    let text = r#"
lock-version = "1.0"
created-by = "hand"
[[packages]]
name = "pytest"
version = "8.3.3"
marker = "'test' in extras or 'dev' in dependency_groups"
[[packages]]
name = "pywin32"
version = "308"
marker = "'gui' not in extras and sys_platform == 'win32'"
"#;
    let env = python(
        "3.12.3",
        "linux-x86_64",
        &[("pytest", "8.0.0"), ("pywin32", "300")],
    );
    assert_eq!(findings("pylock", text, &env), ["pytest==8.3.3 -> 8.0.0"]);
    assert_eq!(
        pep751_markers(
            "'a b' in extras and \"x\"  not in dependency_groups or python_version < '3'"
        ),
        "python_full_version >= '0' and python_full_version >= '0' or python_version < '3'"
    );
}

/// Hostile requirement lines never panic the parser (pep508_rs 0.9.2 did on `A_>=1`): a fixed
/// pseudo-random sample over the characters that matter to PEP 508 and markers.
#[test]
fn generated_requirement_lines_never_panic() {
    let alphabet: Vec<char> = "aZ09._-[],;=<>!~* '\"@:/\\#()extrapython_version"
        .chars()
        .collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let env = python("3.12.3", "linux-x86_64", &[("a", "1.0")]);
    for _ in 0..20_000 {
        let starts = [
            "",
            "a",
            "a[",
            "a>=1",
            "a ; ",
            "a @ ",
            "a ; python_version ",
            "a ; extra ",
        ];
        let len = (next() % 24) as usize;
        let mut line = starts[(next() % starts.len() as u64) as usize].to_string();
        line.extend((0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
        let parsed = parse("requirements", "r.txt", &line, &mut no_includes);
        let _ = unmet(&parsed, &Installed::new(&env));
        let marker = format!("[[package]]\nname = \"a\"\nversion = \"1\"\nmarkers = {line:?}\n");
        let _ = parse("poetry", "poetry.lock", &marker, &mut no_includes);
        if let Ok((_, spec)) = conda::parse_match_spec(&line) {
            let _ = spec.matches(&line, Some(&line));
        }
        let yaml = format!("dependencies:\n  - {line}\n  - pip: [{line}]\n");
        let _ = parse("conda", "environment.yml", &yaml, &mut no_includes);
    }
}

#[test]
fn pipfile_requires_a_python() {
    let env = python("3.12.3", "linux-x86_64", &[]);
    let text = "[requires]\npython_version = \"3.11\"\n";
    assert_eq!(findings("pipenv", text, &env), ["python==3.11.* -> 3.12.3"]);
    let text = "[requires]\npython_full_version = \"3.12.3\"\npython_version = \"3.11\"\n";
    assert_eq!(findings("pipenv", text, &env), Vec::<String>::new());
}
