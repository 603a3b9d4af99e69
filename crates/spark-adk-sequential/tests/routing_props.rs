//! Property test of standard-mode routing (docs/runtime-semantics.md, "Edges and conditions" and "Standard mode"): on random small DAGs
//! with random conditions and priorities, the executor's activation order, per-node counts and
//! sink outputs equal those of an independent reference model of the FIFO rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::sample::Index;
mod support;

use support::prelude::*;

/// A generated edge condition.
#[derive(Clone, Debug)]
enum Cond {
    Always,
    /// `on("k", value)`; `as_float` writes the value as a float (`1.0` for `1`).
    Equals {
        value: i64,
        as_float: bool,
    },
    Fallback,
}

#[derive(Clone, Debug)]
struct GenEdge {
    from: usize,
    to: usize,
    cond: Cond,
    priority: i32,
}

/// A graph: node `i` always outputs `{"k": outputs[i], "path": <input path> + [i]}`.
#[derive(Clone, Debug)]
struct Case {
    outputs: Vec<i64>,
    edges: Vec<GenEdge>,
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        3 => Just(Cond::Always),
        4 => (0_i64..3, any::<bool>()).prop_map(|(value, as_float)| Cond::Equals { value, as_float }),
        2 => Just(Cond::Fallback),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (2_usize..=6).prop_flat_map(|n| {
        // Edges go from a lower to a higher index, so the graph is acyclic.
        let edge = (0..n - 1, any::<Index>(), cond(), -2_i32..=2).prop_map(
            move |(from, to, cond, priority)| GenEdge {
                from,
                to: from + 1 + to.index(n - 1 - from),
                cond,
                priority,
            },
        );
        (
            prop::collection::vec(0_i64..3, n),
            prop::collection::vec(edge, 0..=10),
        )
            .prop_map(|(outputs, edges)| Case { outputs, edges })
    })
}

fn node_name(i: usize) -> String {
    format!("n{i}")
}

fn output_of(case: &Case, node: usize, input: &Value) -> Value {
    let mut path = input["path"].as_array().cloned().unwrap_or_default();
    path.push(json!(node));
    json!({ "k": case.outputs[node], "path": path })
}

/// What the reference model predicts: activation order and sink outputs `(node, content)`.
struct Prediction {
    order: Vec<usize>,
    sinks: Vec<(usize, Value)>,
}

/// The standard-mode scheduling rule written out directly: a FIFO queue starting at node 0; after a node runs,
/// the regular edges whose condition holds fire by priority (higher first), ties in insertion
/// order; if none fired, every fallback edge fires in the same order; no edge fired = sink.
fn model(case: &Case, input: &Value) -> Prediction {
    let mut order = Vec::new();
    let mut sinks = Vec::new();
    let mut queue = VecDeque::from([(0_usize, input.clone())]);
    while let Some((node, input)) = queue.pop_front() {
        order.push(node);
        let output = output_of(case, node, &input);
        let k = case.outputs[node];
        let by_priority = |fallback: bool| {
            let mut edges: Vec<(usize, &GenEdge)> = case
                .edges
                .iter()
                .enumerate()
                .filter(|(_, e)| e.from == node && matches!(e.cond, Cond::Fallback) == fallback)
                .collect();
            edges.sort_by(|(i, x), (j, y)| y.priority.cmp(&x.priority).then(i.cmp(j)));
            edges.into_iter().map(|(_, e)| e).collect::<Vec<_>>()
        };
        let mut fired: Vec<usize> = by_priority(false)
            .into_iter()
            .filter(|e| match e.cond {
                Cond::Always => true,
                Cond::Equals { value, .. } => value == k,
                Cond::Fallback => false,
            })
            .map(|e| e.to)
            .collect();
        if fired.is_empty() {
            fired = by_priority(true).into_iter().map(|e| e.to).collect();
        }
        if fired.is_empty() {
            sinks.push((node, output.clone()));
        }
        for to in fired {
            queue.push_back((to, output.clone()));
        }
    }
    Prediction { order, sinks }
}

fn build(case: &Case, log: &Arc<Mutex<Vec<usize>>>) -> Graph {
    let mut g = Graph::builder();
    let refs: Vec<NodeRef> = (0..case.outputs.len())
        .map(|i| {
            let log = Arc::clone(log);
            let k = case.outputs[i];
            g.add(
                node_name(i),
                node_fn(move |ctx: Context| {
                    let log = Arc::clone(&log);
                    async move {
                        log.lock().unwrap().push(i);
                        let mut path = ctx.inputs().content["path"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        path.push(json!(i));
                        Ok::<_, NodeError>(json!({ "k": k, "path": path }))
                    }
                }),
            )
        })
        .collect();
    for e in &case.edges {
        let condition = match e.cond {
            Cond::Always => EdgeCondition::Always,
            Cond::Equals { value, as_float } if as_float => {
                EdgeCondition::equals("k", value as f64)
            }
            Cond::Equals { value, .. } => EdgeCondition::equals("k", value),
            Cond::Fallback => EdgeCondition::Fallback,
        };
        g.edge_with(refs[e.from], refs[e.to], condition, e.priority);
    }
    g.start(refs[0]).build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn standard_mode_routing_matches_the_reference_model(case in case()) {
        let input = json!({ "path": [] });
        let expected = model(&case, &input);
        let log = Arc::new(Mutex::new(Vec::new()));
        let graph = build(&case, &log);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();

        let result = rt.block_on(graph.run_with(input)).unwrap();

        // (2) the order of activations.
        let order = log.lock().unwrap().clone();
        prop_assert_eq!(&order, &expected.order);
        // (1) activations per node = fired incoming messages (+1 for the start node's input).
        for i in 0..case.outputs.len() {
            let predicted = expected.order.iter().filter(|&&n| n == i).count() as u64;
            prop_assert_eq!(result.metadata.processed_by(&node_name(i)), Some(predicted));
        }
        prop_assert_eq!(result.metadata.steps, expected.order.len() as u64);
        // (3) the sink outputs, in completion order, and the result.
        let sinks: Vec<(String, Value)> = result
            .sink_outputs()
            .iter()
            .map(|s| (s.node.to_string(), Value::clone(&s.message.content)))
            .collect();
        let predicted: Vec<(String, Value)> = expected
            .sinks
            .iter()
            .map(|(n, v)| (node_name(*n), v.clone()))
            .collect();
        prop_assert_eq!(&sinks, &predicted);
        prop_assert_eq!(result.content(), &predicted.last().map(|(_, v)| v.clone()).unwrap_or(Value::Null));
    }
}
