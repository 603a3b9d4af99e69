//! `benches/targets.toml`: the benchmark table (seed figures, best peers, our targets).
//!
//! The file documents its fields in its header; this module parses and validates it.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Context, Error, Result};

/// The unit of a row's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Nanoseconds (latency).
    Ns,
    /// Bytes (memory).
    Bytes,
}

/// Where a row's measurement comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The median of criterion's `<criterion_id>/new/estimates.json`, in ns.
    #[default]
    Criterion,
    /// `{"bytes": N}` in `<target>/bench-mem/<id>.json`, written by the memory bench.
    Memory,
}

/// One row of the benchmark table.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The bench id.
    pub id: String,
    /// What the bench runs.
    pub scenario: String,
    /// Criterion's id, when it differs from `id` (a group with a throughput).
    #[serde(default)]
    pub criterion_id: Option<String>,
    /// Where the measurement comes from.
    #[serde(default)]
    pub source: Source,
    /// The unit of `seed_value`, `peer_value` and `target_value`.
    pub unit: Unit,
    /// The measured median is divided by this (time per node or per message).
    #[serde(default = "one")]
    pub divide_by: u64,
    /// What one divided unit is ("node", "message").
    #[serde(default)]
    pub per: Option<String>,
    /// The seed's figure, as written.
    pub seed: String,
    /// The seed's figure as a number in `unit` (the low end of a range).
    #[serde(default)]
    pub seed_value: Option<f64>,
    /// The best peer's figure, as written ("-" when there is none).
    pub peer: String,
    /// Who the best peer is.
    #[serde(default)]
    pub peer_name: Option<String>,
    /// The best peer's figure as a number in `unit`.
    #[serde(default)]
    pub peer_value: Option<f64>,
    /// Our target, as written.
    pub target: String,
    /// Our target as a number in `unit`: a measurement at or below it passes.
    pub target_value: f64,
    /// Extra benches reported beside this row, without a target.
    #[serde(default)]
    pub related: Vec<String>,
}

fn one() -> u64 {
    1
}

impl Target {
    /// The id criterion files the estimates under.
    pub fn criterion_id(&self) -> &str {
        self.criterion_id.as_deref().unwrap_or(&self.id)
    }

    /// The best peer as shown in the report: `0.9 us (graph-flow)`, or `-`.
    pub fn peer_label(&self) -> String {
        match &self.peer_name {
            Some(name) => format!("{} ({name})", self.peer),
            None => self.peer.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    bench: Vec<Target>,
}

/// Parses and validates the text of a targets file.
///
/// # Errors
/// A TOML or schema error, a duplicate id, a `divide_by` of zero, a target or a figure that is
/// not a positive number: all problems at once, one per line.
pub fn parse(text: &str) -> Result<Vec<Target>> {
    let file: File = toml::from_str(text).map_err(|e| Error::fail(e.to_string()))?;
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for t in &file.bench {
        if t.id.is_empty() {
            problems.push("a row has an empty id".to_owned());
        }
        for id in std::iter::once(&t.id).chain(&t.related) {
            if !seen.insert(id.clone()) {
                problems.push(format!("`{id}` appears more than once"));
            }
        }
        if t.divide_by == 0 {
            problems.push(format!("`{}`: divide_by must be at least 1", t.id));
        }
        let figures = [
            ("target_value", Some(t.target_value)),
            ("seed_value", t.seed_value),
            ("peer_value", t.peer_value),
        ];
        for (field, value) in figures {
            if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                problems.push(format!("`{}`: {field} must be a positive number", t.id));
            }
        }
        if t.source == Source::Memory && t.unit != Unit::Bytes {
            problems.push(format!(
                "`{}`: a memory row must use unit = \"bytes\"",
                t.id
            ));
        }
    }
    if file.bench.is_empty() {
        problems.push("no [[bench]] rows".to_owned());
    }
    if problems.is_empty() {
        Ok(file.bench)
    } else {
        Err(Error::fail(problems.join("\n")))
    }
}

/// Reads and parses a targets file.
///
/// # Errors
/// When the file cannot be read, or as [`parse`].
pub fn load(path: &Path) -> Result<Vec<Target>> {
    let text = std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
    parse(&text).map_err(|e| Error::fail(format!("{}: {e}", path.display())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixture with every kind of row: plain, grouped with a divisor, no peer, memory.
    pub(crate) const FIXTURE: &str = r#"
[[bench]]
id = "std_flow_3"
scenario = "3-node linear flow, standard"
seed = "~1 ms"
seed_value = 1_000_000
peer = "0.9 us"
peer_name = "graph-flow"
peer_value = 900
target = "<= 0.8 us"
target_value = 800
unit = "ns"
related = ["std_flow_3_mt"]

[[bench]]
id = "std_per_node"
criterion_id = "std_per_node/chain_1000"
scenario = "1,000-node chain, time / 1,000"
seed = "~0.1 ms"
seed_value = 100_000
peer = "0.25 us"
peer_name = "graph-flow"
peer_value = 250
target = "<= 0.2 us"
target_value = 200
unit = "ns"
divide_by = 1_000
per = "node"

[[bench]]
id = "lr_flow_3"
scenario = "3-node flow, long-running"
seed = "10-50 ms"
seed_value = 10_000_000
peer = "-"
target = "<= 25 us"
target_value = 25_000
unit = "ns"

[[bench]]
id = "mem_lr_10k"
scenario = "RSS of an idle 10,000-node long-running graph"
source = "memory"
seed = "(higher)"
peer = "-"
target = "<= 64 MiB"
target_value = 67_108_864
unit = "bytes"
"#;

    #[test]
    fn the_fixture_parses() {
        let rows = parse(FIXTURE).unwrap_or_default();
        assert_eq!(rows.len(), 4);
        let flow = &rows[0];
        assert_eq!(flow.criterion_id(), "std_flow_3");
        assert_eq!(flow.seed_value, Some(1_000_000.0));
        assert_eq!(flow.peer_label(), "0.9 us (graph-flow)");
        assert_eq!(flow.divide_by, 1);
        assert_eq!(flow.related, ["std_flow_3_mt"]);
        let per_node = &rows[1];
        assert_eq!(per_node.criterion_id(), "std_per_node/chain_1000");
        assert_eq!(per_node.divide_by, 1_000);
        assert_eq!(per_node.per.as_deref(), Some("node"));
        assert_eq!(rows[2].peer_label(), "-");
        let mem = &rows[3];
        assert_eq!((mem.source, mem.unit), (Source::Memory, Unit::Bytes));
        assert_eq!(mem.seed_value, None);
    }

    #[test]
    fn the_real_table_parses_and_covers_design() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/targets.toml");
        let rows = load(&path).map_err(|e| e.to_string());
        let ids: Vec<String> = rows.unwrap_or_default().into_iter().map(|t| t.id).collect();
        assert_eq!(
            ids,
            [
                "std_startup",
                "std_flow_3",
                "std_pipeline_10",
                "std_branching",
                "std_per_node",
                "lr_startup",
                "lr_flow_3",
                "lr_pipeline_10",
                "lr_branching",
                "lr_per_message",
                "mem_lr_10k",
            ]
        );
    }

    #[test]
    fn problems_are_reported_together() {
        let text = r#"
[[bench]]
id = "a"
scenario = "s"
seed = "-"
peer = "-"
target = "t"
target_value = 0
unit = "ns"
divide_by = 0

[[bench]]
id = "a"
scenario = "s"
seed = "-"
peer = "-"
target = "t"
target_value = 5
unit = "ns"
source = "memory"
"#;
        let msg = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("`a` appears more than once"), "{msg}");
        assert!(msg.contains("divide_by must be at least 1"), "{msg}");
        assert!(
            msg.contains("target_value must be a positive number"),
            "{msg}"
        );
        assert!(msg.contains("must use unit = \"bytes\""), "{msg}");
    }

    #[test]
    fn unknown_fields_and_units_are_rejected() {
        let typo = FIXTURE.replace("target_value = 800", "target_vaule = 800");
        assert!(parse(&typo).is_err());
        let unit = FIXTURE.replace("unit = \"ns\"\nrelated", "unit = \"us\"\nrelated");
        assert!(parse(&unit).is_err());
        assert!(parse("").is_err());
    }
}
