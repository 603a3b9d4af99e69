//! The workspace's layering, checked with `cargo tree` (see docs/ARCHITECTURE.md):
//! core and edges never pull in a tokio runtime, the two executors never depend on each
//! other, and nothing but the facade depends on every crate.
#![allow(clippy::expect_used, clippy::panic)]

use std::process::Command;

/// `cargo tree` lines (`name version [features]`) of `package`'s normal dependencies.
fn dependency_tree(package: &str) -> Vec<String> {
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
            "{p} [{f}]",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn depends_on(tree: &[String], krate: &str) -> bool {
    tree.iter()
        .skip(1) // the package itself
        .any(|l| l.split_whitespace().next() == Some(krate))
}

fn tokio_features(tree: &[String]) -> Vec<String> {
    tree.iter()
        .filter(|l| l.starts_with("tokio v"))
        .flat_map(|l| {
            let inside = l.split('[').nth(1).unwrap_or("").trim_end_matches(']');
            inside
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

const RUNTIME_FEATURES: [&str; 4] = ["rt", "rt-multi-thread", "net", "full"];

#[test]
fn core_and_edges_do_not_pull_in_a_tokio_runtime() {
    for package in ["spark-adk-core", "spark-adk-edges"] {
        let tree = dependency_tree(package);
        let features = tokio_features(&tree);
        for f in RUNTIME_FEATURES {
            assert!(
                !features.iter().any(|x| x == f),
                "{package} enables tokio feature `{f}`: {features:?}"
            );
        }
    }
}

#[test]
fn core_depends_on_no_other_spark_crate() {
    let tree = dependency_tree("spark-adk-core");
    for krate in [
        "spark-adk-edges",
        "spark-adk-sequential",
        "spark-adk-mailbox",
        "spark-adk",
    ] {
        assert!(
            !depends_on(&tree, krate),
            "spark-adk-core depends on {krate}"
        );
    }
}

#[test]
fn edges_depend_only_on_core() {
    let tree = dependency_tree("spark-adk-edges");
    assert!(depends_on(&tree, "spark-adk-core"));
    for krate in ["spark-adk-sequential", "spark-adk-mailbox", "spark-adk"] {
        assert!(
            !depends_on(&tree, krate),
            "spark-adk-edges depends on {krate}"
        );
    }
}

#[test]
fn the_standard_executor_uses_the_durable_trait_and_no_concrete_store() {
    let sequential = dependency_tree("spark-adk-sequential");
    assert!(depends_on(&sequential, "spark-adk-durable"));
    for store in ["spark-adk-sqlite", "spark-adk-postgres"] {
        assert!(
            !depends_on(&sequential, store),
            "sequential depends on {store}"
        );
    }
}

#[test]
fn executors_do_not_depend_on_each_other() {
    let sequential = dependency_tree("spark-adk-sequential");
    assert!(!depends_on(&sequential, "spark-adk-mailbox"));
    assert!(!depends_on(&sequential, "spark-adk"));
    let mailbox = dependency_tree("spark-adk-mailbox");
    assert!(!depends_on(&mailbox, "spark-adk-sequential"));
    assert!(!depends_on(&mailbox, "spark-adk"));
}

#[test]
fn facade_reexports_every_member_crate() {
    let tree = dependency_tree("spark-adk");
    for krate in [
        "spark-adk-core",
        "spark-adk-edges",
        "spark-adk-sequential",
        "spark-adk-mailbox",
        "spark-adk-policy",
    ] {
        assert!(depends_on(&tree, krate), "the facade misses {krate}");
    }
}

#[test]
fn policies_and_metrics_depend_only_on_core_and_pull_in_no_tokio_runtime() {
    for package in ["spark-adk-policy", "spark-adk-metrics"] {
        let tree = dependency_tree(package);
        assert!(depends_on(&tree, "spark-adk-core"));
        for krate in [
            "spark-adk-edges",
            "spark-adk-sequential",
            "spark-adk-mailbox",
            "spark-adk-policy",
            "spark-adk-metrics",
            "spark-adk",
        ] {
            assert!(
                krate == package || !depends_on(&tree, krate),
                "{package} depends on {krate}"
            );
        }
        let features = tokio_features(&tree);
        for f in RUNTIME_FEATURES {
            assert!(
                !features.iter().any(|x| x == f),
                "{package} enables tokio feature `{f}`: {features:?}"
            );
        }
    }
}
