//! The minimum supported Rust version is true of the dependencies: no package in the locked
//! dependency graph declares a `rust-version` newer than the workspace's. (The GitHub workflow's
//! `msrv` job builds and tests with that toolchain; this catches a dependency bump locally,
//! where only a newer toolchain may be installed.) Not in the published package (`exclude` in
//! Cargo.toml): it reads the workspace's lock file.
#![allow(clippy::expect_used, clippy::panic)]

use std::process::Command;

use serde_json::Value;

/// `"1.88"` or `"1.85.0"` as comparable numbers (missing parts are zero).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

#[test]
fn no_locked_dependency_needs_a_newer_rust_than_the_workspace_rust_version() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let msrv = env!("CARGO_PKG_RUST_VERSION");
    assert!(!msrv.is_empty(), "the facade declares no rust-version");

    let packages = meta["packages"].as_array().expect("a package list");
    let newer: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let rv = p["rust_version"].as_str()?;
            (version(rv) > version(msrv))
                .then(|| format!("{} {} needs {rv}", p["name"], p["version"]))
        })
        .collect();
    assert!(
        newer.is_empty(),
        "rust-version is {msrv}, but: {}",
        newer.join("; ")
    );
    // Every member declares the workspace's rust-version.
    for p in packages.iter().filter(|p| p["source"].is_null()) {
        assert_eq!(p["rust_version"].as_str(), Some(msrv), "{}", p["name"]);
    }
}
