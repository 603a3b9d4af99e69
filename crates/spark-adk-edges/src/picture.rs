//! Pictures of a graph: Mermaid and Graphviz DOT text, drawn from the topology's actual edges.

use std::fmt::Write;

use crate::{EdgeCondition, Topology};

fn escape_mermaid(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('|', "#124;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn escape_dot(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The label of an edge in a picture: its condition, with its priority when not zero.
fn edge_label(condition: &EdgeCondition, priority: i32) -> Option<String> {
    match (condition.label(), priority) {
        (None, 0) => None,
        (None, p) => Some(format!("priority {p}")),
        (Some(l), 0) => Some(l),
        (Some(l), p) => Some(format!("{l} (priority {p})")),
    }
}

impl Topology {
    /// The graph as a Mermaid flowchart: one node per graph node (the start node drawn as a
    /// stadium), one arrow per edge in firing order, labelled with its condition.
    ///
    /// # Example
    ///
    /// ```
    /// use spark_adk_edges::GraphBuilder;
    /// use spark_adk_core::{node_fn, NodeError};
    /// use serde_json::json;
    ///
    /// let noop = || node_fn(|_| async { Ok::<_, NodeError>(json!({})) });
    /// let mut g = GraphBuilder::new();
    /// let (a, b) = (g.add("analyzer", noop()), g.add("actuator", noop()));
    /// g.connect(a.on("anomaly", true) >> b);
    /// let text = g.start(a).build().unwrap().to_mermaid();
    /// assert!(text.contains("n0 -->|\"anomaly == true\"| n1"));
    /// ```
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for (i, name) in self.names().iter().enumerate() {
            let name = escape_mermaid(name);
            if i == self.start() {
                let _ = writeln!(out, "    n{i}([\"{name}\"])");
            } else {
                let _ = writeln!(out, "    n{i}[\"{name}\"]");
            }
        }
        for edge in self.edges() {
            let arrow = if edge.condition.is_fallback() {
                "-.->"
            } else {
                "-->"
            };
            match edge_label(&edge.condition, edge.priority) {
                Some(label) => {
                    let _ = writeln!(
                        out,
                        "    n{} {arrow}|\"{}\"| n{}",
                        edge.from,
                        escape_mermaid(&label),
                        edge.to
                    );
                }
                None => {
                    let _ = writeln!(out, "    n{} {arrow} n{}", edge.from, edge.to);
                }
            }
        }
        out
    }

    /// The graph in Graphviz DOT: nodes by name (the start node doubled), one edge per graph
    /// edge in firing order, labelled with its condition; fallback edges dashed.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph spark {\n    rankdir=TB;\n");
        for (i, name) in self.names().iter().enumerate() {
            let shape = if i == self.start() {
                ", peripheries=2"
            } else {
                ""
            };
            let _ = writeln!(out, "    n{i} [label=\"{}\"{shape}];", escape_dot(name));
        }
        for edge in self.edges() {
            let mut attrs = Vec::new();
            if let Some(label) = edge_label(&edge.condition, edge.priority) {
                attrs.push(format!("label=\"{}\"", escape_dot(&label)));
            }
            if edge.condition.is_fallback() {
                attrs.push("style=dashed".to_owned());
            }
            if attrs.is_empty() {
                let _ = writeln!(out, "    n{} -> n{};", edge.from, edge.to);
            } else {
                let _ = writeln!(
                    out,
                    "    n{} -> n{} [{}];",
                    edge.from,
                    edge.to,
                    attrs.join(", ")
                );
            }
        }
        out.push_str("}\n");
        out
    }
}
