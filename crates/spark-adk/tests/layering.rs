//! The workspace's layering, checked with `cargo tree` (docs/ARCHITECTURE.md, "Layering"; each
//! crate's lib.rs doc states its own rule). One table, [`LAYERS`], says for every workspace crate
//! which other workspace crates it must and may depend on (normal dependencies, transitively), and
//! whether it may enable a tokio runtime feature. Nothing but the facade may depend on every crate,
//! and no crate may depend on the facade.
#![allow(clippy::expect_used, clippy::panic)]

use std::process::Command;

/// One crate's rule.
struct Layer {
    package: &'static str,
    /// Workspace crates `package` must depend on.
    requires: &'static [&'static str],
    /// Workspace crates `package` may depend on besides `requires`.
    may_use: &'static [&'static str],
    /// Whether `package` must stay free of tokio's runtime features.
    runtime_free: bool,
}

const CORE: &str = "spark-adk-core";
const EDGES: &str = "spark-adk-edges";
const SEQUENTIAL: &str = "spark-adk-sequential";
const MAILBOX: &str = "spark-adk-mailbox";
const POLICY: &str = "spark-adk-policy";
const METRICS: &str = "spark-adk-metrics";
const DURABLE: &str = "spark-adk-durable";
const SQLITE: &str = "spark-adk-sqlite";
const POSTGRES: &str = "spark-adk-postgres";
const NATS: &str = "spark-adk-nats";
const FACADE: &str = "spark-adk";

const LAYERS: [Layer; 11] = [
    Layer {
        package: CORE,
        requires: &[],
        may_use: &[],
        runtime_free: true,
    },
    Layer {
        package: EDGES,
        requires: &[CORE],
        may_use: &[],
        runtime_free: true,
    },
    // The executors are independent of each other; they may use durable's trait and records,
    // never a store.
    Layer {
        package: SEQUENTIAL,
        requires: &[CORE, EDGES],
        may_use: &[DURABLE],
        runtime_free: false,
    },
    Layer {
        package: MAILBOX,
        requires: &[CORE, EDGES],
        may_use: &[DURABLE],
        runtime_free: false,
    },
    Layer {
        package: POLICY,
        requires: &[CORE],
        may_use: &[],
        runtime_free: true,
    },
    Layer {
        package: METRICS,
        requires: &[CORE],
        may_use: &[],
        runtime_free: true,
    },
    Layer {
        package: DURABLE,
        requires: &[CORE],
        may_use: &[],
        runtime_free: false,
    },
    Layer {
        package: SQLITE,
        requires: &[CORE, DURABLE],
        may_use: &[],
        runtime_free: false,
    },
    Layer {
        package: POSTGRES,
        requires: &[CORE, DURABLE],
        may_use: &[],
        runtime_free: false,
    },
    Layer {
        package: NATS,
        requires: &[CORE, EDGES],
        may_use: &[],
        runtime_free: false,
    },
    // The facade re-exports every member crate and picks the store; it does not depend on the
    // distributed runtime.
    Layer {
        package: FACADE,
        requires: &[CORE, EDGES, SEQUENTIAL, MAILBOX, POLICY],
        may_use: &[METRICS, DURABLE, SQLITE, POSTGRES],
        runtime_free: false,
    },
];

const RUNTIME_FEATURES: [&str; 4] = ["rt", "rt-multi-thread", "net", "full"];

/// `cargo tree` lines (`name version [features]`) of `package`'s normal dependencies, the
/// package itself first.
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

/// The workspace crates in `tree`, the package itself left out, sorted and without repeats.
fn workspace_dependencies(tree: &[String]) -> Vec<String> {
    let mut deps: Vec<String> = tree
        .iter()
        .skip(1) // the package itself
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with("spark-adk"))
        .map(str::to_owned)
        .collect();
    deps.sort();
    deps.dedup();
    deps
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

#[test]
fn the_layering_table_names_every_workspace_crate_once() {
    let mut named: Vec<&str> = LAYERS.iter().map(|l| l.package).collect();
    named.sort_unstable();
    let crates = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .expect("the crates folder reads");
    let mut on_disk: Vec<String> = crates
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(named, on_disk, "every crate under crates/ has one rule");
}

#[test]
fn every_crate_depends_on_exactly_the_workspace_crates_its_layer_allows() {
    for layer in &LAYERS {
        let deps = workspace_dependencies(&dependency_tree(layer.package));
        for required in layer.requires {
            assert!(
                deps.iter().any(|d| d == required),
                "{} does not depend on {required}: {deps:?}",
                layer.package
            );
        }
        for dep in &deps {
            assert!(
                layer.requires.contains(&dep.as_str()) || layer.may_use.contains(&dep.as_str()),
                "{} depends on {dep}, which its layer does not allow",
                layer.package
            );
        }
    }
}

#[test]
fn core_edges_policies_and_metrics_pull_in_no_tokio_runtime() {
    for layer in LAYERS.iter().filter(|l| l.runtime_free) {
        let features = tokio_features(&dependency_tree(layer.package));
        for f in RUNTIME_FEATURES {
            assert!(
                !features.iter().any(|x| x == f),
                "{} enables tokio feature `{f}`: {features:?}",
                layer.package
            );
        }
    }
}
