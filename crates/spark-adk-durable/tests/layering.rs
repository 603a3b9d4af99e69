//! The durable crates' layering, checked with `cargo tree` (see docs/ARCHITECTURE.md): durable
//! depends on core only among the workspace's crates; the stores on durable (and core through
//! it), never on an executor, edges or the facade.
#![allow(clippy::expect_used)]

use std::process::Command;

/// Names of the workspace crates `package` depends on (normal dependencies, transitively).
fn spark_dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--package",
            package,
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut deps: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("spark-adk"))
        .map(str::to_owned)
        .collect();
    deps.sort();
    deps.dedup();
    deps
}

#[test]
fn durable_depends_on_core_only_among_the_workspace_crates() {
    assert_eq!(
        spark_dependencies("spark-adk-durable"),
        vec!["spark-adk-core"]
    );
}

#[test]
fn the_stores_depend_on_durable_and_core_only() {
    for store in ["spark-adk-sqlite", "spark-adk-postgres"] {
        assert_eq!(
            spark_dependencies(store),
            vec!["spark-adk-core", "spark-adk-durable"],
            "{store}"
        );
    }
}
