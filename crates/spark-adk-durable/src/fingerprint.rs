//! The topology fingerprint: what a run's header remembers of the graph that started it, so a
//! resume by a different graph is refused with the differences spelled out.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::DurableError;
use crate::record::RunId;

/// One edge of a topology, as plain data.
///
/// `condition` is a stable text form of the edge's condition chosen by the caller, e.g.
/// `"always"`, `"eq {\"anomaly\":true}"`, `"expr $.outputs.score >= 0.8"`, `"fallback"`, or a
/// predicate's label. Two graphs with the same text are taken to route the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeShape {
    /// The source node's name.
    pub from: String,
    /// The target node's name.
    pub to: String,
    /// The condition's text form.
    pub condition: String,
    /// The edge's priority (higher fires first).
    #[serde(default)]
    pub priority: i64,
}

impl EdgeShape {
    /// An edge with priority 0.
    pub fn new(
        from: impl Into<String>,
        to: impl Into<String>,
        condition: impl Into<String>,
    ) -> Self {
        Self {
            from: from.into(),
            to: to.into(),
            condition: condition.into(),
            priority: 0,
        }
    }

    fn describe(&self) -> String {
        format!(
            "`{}` -> `{}` when {} (priority {})",
            self.from, self.to, self.condition, self.priority
        )
    }
}

/// A graph's topology as plain data: node names, edges in the order they were added (the order
/// matters: it is the firing order among equal priorities), and the start node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyShape {
    /// Node names, in the order the graph lists them.
    pub nodes: Vec<String>,
    /// Edges, in the order they were added.
    pub edges: Vec<EdgeShape>,
    /// The start node.
    pub start: String,
}

/// The fingerprint of a [`TopologyShape`]: a stable 64-bit digest plus the shape itself, so that a
/// mismatch can say what differs.
///
/// The digest is FNV-1a over a canonical text of the shape; it is the same on every platform and
/// every build (unlike `std`'s hasher).
///
/// ```
/// use spark_adk_durable::{EdgeShape, Fingerprint, TopologyShape};
///
/// let shape = TopologyShape {
///     nodes: vec!["a".into(), "b".into()],
///     edges: vec![EdgeShape::new("a", "b", "always")],
///     start: "a".into(),
/// };
/// let same = Fingerprint::of(shape.clone());
/// assert_eq!(Fingerprint::of(shape), same);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The digest, as 16 lower-case hex digits.
    pub digest: String,
    /// The shape the digest was computed from.
    pub shape: TopologyShape,
}

impl Fingerprint {
    /// Computes the fingerprint of a topology.
    pub fn of(shape: TopologyShape) -> Self {
        let mut canonical = String::new();
        let _ = writeln!(canonical, "start={}", escape(&shape.start));
        for n in &shape.nodes {
            let _ = writeln!(canonical, "node={}", escape(n));
        }
        for e in &shape.edges {
            let _ = writeln!(
                canonical,
                "edge={}|{}|{}|{}",
                escape(&e.from),
                escape(&e.to),
                escape(&e.condition),
                e.priority
            );
        }
        Self {
            digest: format!("{:016x}", fnv1a(canonical.as_bytes())),
            shape,
        }
    }

    /// The differences between the topology that started a run (`self`) and `other`, in words;
    /// empty when they are the same.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let (a, b) = (&self.shape, &other.shape);
        let mut out = Vec::new();
        if a.start != b.start {
            out.push(format!(
                "the start node was `{}`, now `{}`",
                a.start, b.start
            ));
        }
        for n in &a.nodes {
            if !b.nodes.contains(n) {
                out.push(format!("node `{n}` is missing"));
            }
        }
        for n in &b.nodes {
            if !a.nodes.contains(n) {
                out.push(format!("node `{n}` is new"));
            }
        }
        for e in &a.edges {
            if !b.edges.contains(e) {
                out.push(format!("edge {} is missing", e.describe()));
            }
        }
        for e in &b.edges {
            if !a.edges.contains(e) {
                out.push(format!("edge {} is new", e.describe()));
            }
        }
        if out.is_empty() && a != b {
            out.push("the same nodes and edges, in a different order".to_owned());
        }
        if out.is_empty() && self.digest != other.digest {
            out.push(format!(
                "the digest differs ({} against {})",
                self.digest, other.digest
            ));
        }
        out
    }

    /// `Ok` when `other` (the resuming graph) has the same topology as `self` (the run's),
    /// otherwise [`DurableError::FingerprintMismatch`] listing what differs.
    pub fn check(&self, run: &RunId, other: &Fingerprint) -> Result<(), DurableError> {
        let differences = self.differences(other);
        if differences.is_empty() {
            Ok(())
        } else {
            Err(DurableError::FingerprintMismatch {
                run: run.clone(),
                differences,
            })
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('\n', "\\n")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn shape() -> TopologyShape {
        TopologyShape {
            nodes: vec!["a".into(), "b".into(), "c".into()],
            edges: vec![
                EdgeShape::new("a", "b", "always"),
                EdgeShape::new("b", "c", "expr $.outputs.n > 1"),
            ],
            start: "a".into(),
        }
    }

    #[test]
    fn the_digest_is_stable_across_builds() {
        // FNV-1a of the canonical text; a change here breaks every stored run's resume.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_changed_condition_is_named_in_the_differences() {
        let old = Fingerprint::of(shape());
        let mut s = shape();
        s.edges[1].condition = "expr $.outputs.n > 2".into();
        let new = Fingerprint::of(s);
        assert_ne!(old.digest, new.digest);
        let d = old.differences(&new);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("$.outputs.n > 1") && d[0].contains("missing"));
        assert!(d[1].contains("$.outputs.n > 2") && d[1].contains("new"));
    }

    #[test]
    fn a_missing_node_and_another_start_are_reported() {
        let old = Fingerprint::of(shape());
        let mut s = shape();
        s.nodes.retain(|n| n != "c");
        s.edges.truncate(1);
        s.start = "b".into();
        let err = old
            .check(&RunId::new("r"), &Fingerprint::of(s))
            .expect_err("topologies differ");
        let text = err.to_string();
        assert!(text.contains("node `c` is missing"), "{text}");
        assert!(text.contains("start node was `a`, now `b`"), "{text}");
    }

    #[test]
    fn reordered_edges_differ() {
        let old = Fingerprint::of(shape());
        let mut s = shape();
        s.edges.reverse();
        let new = Fingerprint::of(s);
        assert_eq!(
            old.differences(&new),
            vec!["the same nodes and edges, in a different order".to_owned()]
        );
    }
}
