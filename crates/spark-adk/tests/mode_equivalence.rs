//! Mode equivalence (docs/runtime-semantics.md, "Long-running mode"): for an acyclic graph of deterministic, stateless
//! nodes, standard and long-running mode produce the same multiset of sink outputs, and the
//! same result when the run has a single sink activation. A long-running run that ends at
//! quiescence has processed everything it accepted.
//!
//! Graphs are random: edges go from a lower to a higher node index (so they are acyclic), with
//! random conditions (always, equality on a key of the output, fallback, an expression),
//! duplicate edges, fan-out and merges, and random mailbox capacities (down to 1, so
//! backpressure is exercised too).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use spark_adk::prelude::*;
use spark_adk::RunMetadata;
use tokio::runtime::Runtime;

/// One multi-thread runtime for every case.
fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

#[derive(Clone, Debug)]
enum Cond {
    Always,
    /// `from.on("k", v)`
    Equals(i64),
    /// `from.otherwise()`
    Fallback,
    /// `from.when("$.outputs.h >= t and $.outputs.k != v")`
    Expr(i64, i64),
}

#[derive(Clone, Debug)]
struct Spec {
    nodes: usize,
    edges: Vec<(usize, usize, Cond)>,
    capacity: usize,
    input: i64,
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        3 => Just(Cond::Always),
        3 => (0..3i64).prop_map(Cond::Equals),
        1 => Just(Cond::Fallback),
        2 => (0..1000i64, 0..3i64).prop_map(|(t, v)| Cond::Expr(t, v)),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (3..=8usize)
        .prop_flat_map(|nodes| {
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
                prop::collection::vec(extra, 0..=10),
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

/// Node `i`: a deterministic function of its input and its index.
fn node(i: usize) -> impl Node {
    node_fn(move |ctx: Context| async move {
        let h = ctx.inputs().content["h"].as_i64().unwrap_or(0);
        let next = (h * 31 + 7 * (i as i64 + 1)) % 1009;
        Ok::<_, NodeError>(json!({ "h": next, "k": next % 3, "by": i }))
    })
}

fn build(spec: &Spec) -> Graph {
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
fn multiset(result: &RunResult) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = result
        .sink_outputs()
        .iter()
        .map(|s| (s.node.to_string(), s.message.content.to_string()))
        .collect();
    v.sort();
    v
}

struct Both {
    standard: RunResult,
    long: RunResult,
}

fn run_both(spec: &Spec) -> Both {
    let graph = build(spec);
    let input = json!({ "h": spec.input });
    runtime().block_on(async {
        let both = async {
            let standard = graph.run(Task::new(input.clone())).await.unwrap();
            let long = graph.run(Task::long_running(input)).await.unwrap();
            Both { standard, long }
        };
        // A run that never ends fails the case instead of hanging the test.
        tokio::time::timeout(Duration::from_secs(30), both)
            .await
            .expect("a run did not finish within 30 s")
    })
}

fn balanced(m: &RunMetadata) -> bool {
    m.accepted == m.processed + m.unprocessed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn both_modes_produce_the_same_sink_outputs(spec in spec()) {
        let Both { standard, long } = run_both(&spec);

        prop_assert_eq!(multiset(&standard), multiset(&long));
        prop_assert_eq!(standard.metadata.steps, long.metadata.processed);
        prop_assert!(balanced(&long.metadata), "{:?}", long.metadata);
        prop_assert_eq!(long.metadata.unprocessed, 0);
        prop_assert_eq!(long.metadata.stop_reason, StopReason::Completed);
        if standard.sink_outputs().len() == 1 {
            prop_assert_eq!(standard.content(), long.content());
            prop_assert_eq!(standard.output_node(), long.output_node());
        }
    }
}
