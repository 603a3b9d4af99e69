//! Random acyclic graphs shared by the mode-equivalence and durable long-running tests: edges go
//! from a lower to a higher node index, with random conditions (always, equality on a key of the
//! output, fallback, an expression), duplicate edges, fan-out and merges, and random mailbox
//! capacities (down to 1, so backpressure is exercised too).
#![allow(dead_code)]

use std::sync::OnceLock;

use proptest::prelude::*;
use spark_adk::prelude::*;
use tokio::runtime::Runtime;

/// One multi-thread runtime for every case.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// An edge's condition.
#[derive(Clone, Debug)]
pub enum Cond {
    Always,
    /// `from.on("k", v)`
    Equals(i64),
    /// `from.otherwise()`
    Fallback,
    /// `from.when("$.outputs.h >= t and $.outputs.k != v")`
    Expr(i64, i64),
}

/// A random graph: its node count, edges `(from, to, condition)`, mailbox capacity and input.
#[derive(Clone, Debug)]
pub struct Spec {
    pub nodes: usize,
    pub edges: Vec<(usize, usize, Cond)>,
    pub capacity: usize,
    pub input: i64,
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        3 => Just(Cond::Always),
        3 => (0..3i64).prop_map(Cond::Equals),
        1 => Just(Cond::Fallback),
        2 => (0..1000i64, 0..3i64).prop_map(|(t, v)| Cond::Expr(t, v)),
    ]
}

/// Graphs of 3 to `max_nodes` nodes with up to `max_extra` edges beyond the spine.
pub fn spec(max_nodes: usize, max_extra: usize) -> impl Strategy<Value = Spec> {
    (3..=max_nodes)
        .prop_flat_map(move |nodes| {
            // Every node but the start gets one edge from a lower node (so most nodes are
            // reachable), then extra random edges (duplicates allowed: they fire twice).
            let spine: Vec<_> = (1..nodes).map(|to| (0..to, Just(to), cond())).collect();
            let extra = (0..nodes, 0..nodes, cond())
                .prop_filter_map("no self edge", |(a, b, c)| {
                    (a != b).then(|| (a.min(b), a.max(b), c))
                });
            (
                Just(nodes),
                spine,
                prop::collection::vec(extra, 0..=max_extra),
                1..=4usize,
                0..1000i64,
            )
        })
        .prop_map(|(nodes, spine, extra, capacity, input)| Spec {
            nodes,
            edges: spine.into_iter().chain(extra).collect(),
            capacity,
            input,
        })
}

/// The graph of `spec`, node `i` being `node(i)`.
pub fn build<N: Node>(spec: &Spec, node: impl Fn(usize) -> N) -> Graph {
    let mut g = Graph::builder();
    let refs: Vec<NodeRef> = (0..spec.nodes)
        .map(|i| g.add(format!("n{i}"), node(i)))
        .collect();
    for (from, to, c) in &spec.edges {
        let (from, to) = (refs[*from], refs[*to]);
        match c {
            Cond::Always => g.connect(from >> to),
            Cond::Equals(v) => g.connect(from.on("k", *v) >> to),
            Cond::Fallback => g.connect(from.otherwise() >> to),
            Cond::Expr(t, v) => {
                g.connect(from.when(&format!("$.outputs.h >= {t} and $.outputs.k != {v}")) >> to)
            }
        };
    }
    g.mailbox_capacity(spec.capacity);
    g.start(refs[0]).build().unwrap()
}

/// The sink outputs as a sorted multiset of `(node, content)`.
pub fn multiset(result: &RunResult) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = result
        .sink_outputs()
        .iter()
        .map(|s| (s.node.to_string(), s.message.content.to_string()))
        .collect();
    v.sort();
    v
}
