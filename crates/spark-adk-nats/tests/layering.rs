//! The nats crate's place in the layering (docs/ARCHITECTURE.md): it builds on core and edges
//! only, never on an executor or the facade.
#![allow(missing_docs, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_nats_crate_depends_on_core_and_edges_but_on_no_executor_and_not_on_the_facade() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--package",
            "spark-adk-nats",
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
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let deps: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(deps.contains(&"spark-adk-core"));
    assert!(deps.contains(&"spark-adk-edges"));
    for krate in ["spark-adk-mailbox", "spark-adk-sequential", "spark-adk"] {
        assert!(!deps.contains(&krate), "spark-adk-nats depends on {krate}");
    }
}
