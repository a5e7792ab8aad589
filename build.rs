//! Build script of the root package: tells the Python API tests (tests/integration/python_api.rs)
//! whether maturin is there to build the wheel, so that without it they are ignored with the
//! reason instead of failing or passing without running. Likewise the Keras tests
//! (tests/integration/frameworks.rs) need the directory of wheels CAIRN_TEST_KERAS_WHEELS names
//! (cfg `cairn_keras`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(cairn_maturin)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CAIRN_TEST_MATURIN");
    let given = std::env::var_os("CAIRN_TEST_MATURIN").filter(|v| !v.is_empty());
    let found = given
        .map(|p| std::path::Path::new(&p).is_file())
        .unwrap_or_else(|| {
            std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join("maturin").is_file())
            })
        });
    if found {
        println!("cargo::rustc-cfg=cairn_maturin");
    }
    println!("cargo::rustc-check-cfg=cfg(cairn_keras)");
    println!("cargo::rerun-if-env-changed=CAIRN_TEST_KERAS_WHEELS");
    if std::env::var_os("CAIRN_TEST_KERAS_WHEELS")
        .filter(|v| !v.is_empty())
        .is_some_and(|dir| std::path::Path::new(&dir).is_dir())
    {
        println!("cargo::rustc-cfg=cairn_keras");
    }
}
