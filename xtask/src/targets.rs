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
    /// A number (`field`) of `<target>/bench-proc/<process>.json`, written by `cargo xtask
    /// bench` from the output of a child-process bench (`mem_lr_10k`, `server_10k`).
    Process,
}

/// One same-run ratio a row is judged by: the row's value divided by another value measured
/// in the same run (a peer's median, a floor) must be at most `max`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ratio {
    /// Who or what the row is compared with, for the report ("graph-flow", "bare tokio").
    pub name: String,
    /// Criterion id of the other bench (criterion rows), divided by the row's `divide_by`.
    #[serde(default)]
    pub criterion_id: Option<String>,
    /// The other figure's field in the row's process result file (process rows).
    #[serde(default)]
    pub field: Option<String>,
    /// The numerator's criterion id, when it is not the row's own bench (for example the row's
    /// current-thread variant against the peer's); divided like the row.
    #[serde(default)]
    pub of: Option<String>,
    /// row / other must be at most this; without it the ratio is only reported.
    #[serde(default)]
    pub max: Option<f64>,
    /// Whether the other bench is a peer (built from `benches/peers`, skipped by
    /// `--no-peers`).
    #[serde(default)]
    pub peer: bool,
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
    /// The bench target of `spark-adk-benches` that holds the criterion bench ("standard",
    /// "long_running").
    #[serde(default)]
    pub bench_target: Option<String>,
    /// The package whose bench target that is (default: `spark-adk-benches`).
    #[serde(default)]
    pub package: Option<String>,
    /// A server (`host:port`) the row's benches need (a criterion row's bench, or the figure a
    /// process row reads); when it does not answer, `cargo xtask bench` skips the row and
    /// reports it as skipped (not a failure).
    #[serde(default)]
    pub server: Option<String>,
    /// Where the measurement comes from.
    #[serde(default)]
    pub source: Source,
    /// The child-process bench whose result file holds the figure (process rows; default:
    /// `id`).
    #[serde(default)]
    pub process: Option<String>,
    /// The figure's field in that file (process rows; default `bytes`).
    #[serde(default)]
    pub field: Option<String>,
    /// The unit of the measured value and of `seed_value`, `target_value`.
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
    /// Our target, as written in the project's design targets (the ratio table in `benches/targets.toml`).
    pub target: String,
    /// The same-run ratios the row is judged by (all must hold).
    #[serde(default)]
    pub ratios: Vec<Ratio>,
    /// An absolute bound in `unit`: the verdict of a row without ratios; with ratios, only
    /// information (DESIGN's earlier absolute target).
    #[serde(default)]
    pub target_value: Option<f64>,
    /// Whether `cargo xtask bench --instructions` counts this row (standard-mode rows).
    #[serde(default)]
    pub instructions: bool,
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

    /// The package of the row's bench target.
    pub fn package(&self) -> &str {
        self.package.as_deref().unwrap_or(crate::bench::PACKAGE)
    }

    /// The child-process bench of a process row.
    pub fn process(&self) -> &str {
        self.process.as_deref().unwrap_or(&self.id)
    }

    /// The field of a process row.
    pub fn field(&self) -> &str {
        self.field.as_deref().unwrap_or("bytes")
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
            ("target_value", t.target_value),
            ("seed_value", t.seed_value),
        ]
        .into_iter()
        .chain(t.ratios.iter().map(|r| ("ratios.max", r.max)));
        for (field, value) in figures {
            if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                problems.push(format!("`{}`: {field} must be a positive number", t.id));
            }
        }
        for r in &t.ratios {
            let wanted = match t.source {
                Source::Criterion => r.criterion_id.is_some() && r.field.is_none(),
                Source::Process => r.field.is_some() && r.criterion_id.is_none(),
            };
            if !wanted {
                problems.push(format!(
                    "`{}`: ratio `{}` needs `criterion_id` (criterion rows) or `field` \
                     (process rows), not both",
                    t.id, r.name
                ));
            }
        }
        if t.source == Source::Process && t.package.is_some() {
            problems.push(format!("`{}`: `package` is for criterion rows", t.id));
        }
        if t.source == Source::Criterion && t.bench_target.is_none() {
            problems.push(format!("`{}`: a criterion row needs `bench_target`", t.id));
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

    /// A fixture with every kind of row: a peer ratio, a divisor with a peer and a floor, no
    /// ratio (absolute target), a process row with a ratio, an information row.
    pub(crate) const FIXTURE: &str = r#"
[[bench]]
id = "std_flow_3"
scenario = "3-node linear flow, standard"
bench_target = "standard"
seed = "~1 ms"
seed_value = 1_000_000
target = "<= 0.5x graph-flow"
ratios = [{ name = "graph-flow", criterion_id = "graph_flow/std_flow_3", max = 0.5, peer = true }]
target_value = 800
unit = "ns"
instructions = true
related = ["std_flow_3_mt"]

[[bench]]
id = "lr_per_message"
criterion_id = "lr_per_message/pipeline_3"
scenario = "100,000 messages"
bench_target = "long_running"
seed = "~0.5 ms"
seed_value = 500_000
target = "<= 0.5x dagrs; <= 1.0x the floor"
ratios = [
    { name = "bare tokio", criterion_id = "floor/pipeline_3", max = 1.0 },
    { name = "dagrs", criterion_id = "dagrs/pipeline_3", max = 0.5, peer = true },
    { name = "dagrs, both ct", of = "ct/pipeline_3", criterion_id = "dagrs_ct/pipeline_3", peer = true },
]
unit = "ns"
divide_by = 100_000
per = "message"

[[bench]]
id = "mem_lr_10k"
scenario = "idle RSS per node"
source = "process"
field = "bytes_per_node"
seed = "(higher)"
target = "<= 2 KiB per idle node"
target_value = 2_048
unit = "bytes"

[[bench]]
id = "server_10k"
scenario = "10,000 concurrent runs"
source = "process"
field = "wall_ns"
seed = "-"
target = "<= 1.25x one run"
ratios = [{ name = "one run alone", field = "single_wall_ns", max = 1.25 }]
unit = "ns"

[[bench]]
id = "server_lr_1k"
scenario = "1,000 long-running runs"
source = "process"
process = "server_10k"
field = "lr_wall_ns"
seed = "-"
target = "-"
ratios = [{ name = "one run alone", field = "lr_single_ns" }]
unit = "ns"
"#;

    /// A row of another package's bench that needs a server.
    pub(crate) const NATS_ROW: &str = r#"
[[bench]]
id = "nats_hop"
criterion_id = "nats_hop/pipeline_3"
scenario = "3 nodes, 2 processes"
package = "spark-adk-nats"
bench_target = "nats_hop"
server = "127.0.0.1:4222"
seed = "-"
target = "<= 2x bare"
ratios = [{ name = "bare JetStream", criterion_id = "nats_hop/bare", max = 2.0 }]
unit = "ns"
related = ["nats_hop/throughput_1"]
"#;

    #[test]
    fn a_row_names_its_package_and_server_and_defaults_to_the_benches_package() {
        let rows = parse(&format!("{FIXTURE}{NATS_ROW}")).unwrap_or_default();
        let packages: Vec<(&str, Option<&str>)> = rows
            .iter()
            .map(|t| (t.package(), t.server.as_deref()))
            .collect();
        assert_eq!(packages.len(), 6);
        assert_eq!(packages[0], ("spark-adk-benches", None));
        assert_eq!(packages[5], ("spark-adk-nats", Some("127.0.0.1:4222")));
        let process_with_package = FIXTURE.replace(
            "field = \"bytes_per_node\"",
            "field = \"bytes_per_node\"\npackage = \"spark-adk-nats\"",
        );
        let msg = parse(&process_with_package)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("`package` is for criterion rows"), "{msg}");
        // A process row may need a server (a figure the binary measures only when it answers).
        let process_with_server = FIXTURE.replace(
            "field = \"bytes_per_node\"",
            "field = \"bytes_per_node\"\nserver = \"127.0.0.1:1\"",
        );
        let rows = parse(&process_with_server).unwrap_or_default();
        assert_eq!(rows.len(), 5);
        assert!(rows
            .iter()
            .any(|t| t.server.as_deref() == Some("127.0.0.1:1")));
    }

    #[test]
    fn the_fixture_parses() {
        let rows = parse(FIXTURE).unwrap_or_default();
        assert_eq!(rows.len(), 5);
        let flow = &rows[0];
        assert_eq!(flow.criterion_id(), "std_flow_3");
        assert_eq!(flow.seed_value, Some(1_000_000.0));
        assert_eq!(flow.ratios[0].max, Some(0.5));
        assert!(flow.ratios[0].peer && flow.instructions);
        assert_eq!(flow.divide_by, 1);
        assert_eq!(flow.related, ["std_flow_3_mt"]);
        let per_message = &rows[1];
        assert_eq!(per_message.criterion_id(), "lr_per_message/pipeline_3");
        assert_eq!(per_message.divide_by, 100_000);
        assert_eq!(per_message.ratios.len(), 3);
        assert_eq!(per_message.ratios[2].of.as_deref(), Some("ct/pipeline_3"));
        let mem = &rows[2];
        assert_eq!((mem.source, mem.unit), (Source::Process, Unit::Bytes));
        assert_eq!(
            (mem.process(), mem.field()),
            ("mem_lr_10k", "bytes_per_node")
        );
        assert_eq!(rows[4].process(), "server_10k");
        assert_eq!(rows[4].ratios[0].max, None);
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
                "server_10k",
                "server_10k_rss",
                "server_lr_1k",
                "nats_hop",
                "nats_hop_throughput_1",
                "durable_lr",
                "durable_append",
                "durable_step",
                "durable_step_sync",
                "durable_recovery_10k",
                "durable_commit_memory",
                "durable_commit_memory_p99",
                "durable_commit_sqlite",
                "durable_commit_sqlite_p99",
                "durable_commit_postgres",
                "durable_commit_postgres_p99",
                "durable_bytes_per_step",
                "cost_stream_std_flow_3",
                "cost_stream_lr_flow_3",
                "cost_retry_std_flow_3",
                "cost_retry_per_node",
                "cost_map_20x10ms",
                "cost_durable_lr_per_message",
            ]
        );
    }

    #[test]
    fn every_standard_row_is_judged_against_graph_flow_and_counted() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/targets.toml");
        let rows = load(&path).unwrap_or_default();
        let std_rows: Vec<&Target> = rows.iter().filter(|t| t.id.starts_with("std_")).collect();
        assert_eq!(std_rows.len(), 5);
        for t in std_rows {
            let peer = t.ratios.iter().find(|r| r.peer);
            assert_eq!(
                peer.map(|r| (r.name.as_str(), r.max)),
                Some(("graph-flow", Some(0.5))),
                "{}",
                t.id
            );
            assert!(t.instructions, "{}", t.id);
        }
    }

    #[test]
    fn problems_are_reported_together() {
        let text = r#"
[[bench]]
id = "a"
scenario = "s"
seed = "-"
target = "t"
target_value = 0
unit = "ns"
divide_by = 0
bench_target = "standard"
ratios = [{ name = "p", field = "x", max = -1 }]

[[bench]]
id = "a"
scenario = "s"
seed = "-"
target = "t"
target_value = 5
unit = "ns"
"#;
        let msg = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("`a` appears more than once"), "{msg}");
        assert!(msg.contains("divide_by must be at least 1"), "{msg}");
        assert!(
            msg.contains("target_value must be a positive number"),
            "{msg}"
        );
        assert!(
            msg.contains("ratios.max must be a positive number"),
            "{msg}"
        );
        assert!(msg.contains("ratio `p` needs `criterion_id`"), "{msg}");
        assert!(
            msg.contains("a criterion row needs `bench_target`"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_fields_and_units_are_rejected() {
        let typo = FIXTURE.replace("target_value = 800", "target_vaule = 800");
        assert!(parse(&typo).is_err());
        let unit = FIXTURE.replace("unit = \"ns\"\ninstructions", "unit = \"us\"\ninstructions");
        assert!(parse(&unit).is_err());
        assert!(parse("").is_err());
    }
}
