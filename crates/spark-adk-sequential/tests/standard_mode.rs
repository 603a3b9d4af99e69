//! Integration tests of standard mode (docs/runtime-semantics.md, "Edges and conditions" and "Standard mode"): data flow, edge
//! conditions and routing order, FIFO scheduling, the result rule, cycles, errors, concurrent
//! runs and subgraphs. Budgets are in `standard_budgets.rs`, build errors beside the builder
//! (`crates/spark-adk-edges/tests/build_errors.rs`). `support::GraphExt` gives a topology the facade's
//! `Graph` methods, run by this crate's executor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

mod support;

use support::prelude::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The names of the nodes that ran, in activation order.
type Log = Arc<Mutex<Vec<String>>>;
/// `(node, input content)` for every activation, in activation order.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

fn new_log() -> Log {
    Arc::default()
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

fn seen_entries(seen: &Seen) -> Vec<(String, Value)> {
    seen.lock().unwrap().clone()
}

/// A node that records its name and returns `output`, whatever its input.
fn emit(log: &Log, name: &'static str, output: Value) -> impl Node {
    let log = Arc::clone(log);
    node_fn(move |_ctx| {
        let log = Arc::clone(&log);
        let output = output.clone();
        async move {
            log.lock().unwrap().push(name.to_owned());
            Ok::<_, NodeError>(output)
        }
    })
}

/// A node that records its name and returns its input unchanged.
fn echo(log: &Log, name: &'static str) -> impl Node {
    let log = Arc::clone(log);
    node_fn(move |ctx: Context| {
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push(name.to_owned());
            Ok::<_, NodeError>(ctx.inputs().clone())
        }
    })
}

/// A node that records `(name, input content)` and returns `output`.
fn witness(seen: &Seen, name: &'static str, output: Value) -> impl Node {
    let seen = Arc::clone(seen);
    node_fn(move |ctx: Context| {
        let seen = Arc::clone(&seen);
        let output = output.clone();
        async move {
            let input = Value::clone(&ctx.inputs().content);
            seen.lock().unwrap().push((name.to_owned(), input));
            Ok::<_, NodeError>(output)
        }
    })
}

/// Runs `graph` with `input`; returns the nodes that ran after the first activation.
async fn ran_after_start(graph: &Graph, log: &Log, input: Value) -> Vec<String> {
    log.lock().unwrap().clear();
    graph.run_with(input).await.unwrap();
    entries(log).into_iter().skip(1).collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Panics with `message`; typed as returning a value so that code after it is reachable.
fn boom(message: &str) -> Value {
    panic!("{message}")
}

// ---------------------------------------------------------------------------------------------
// Data flow (section 4, section 7)
// ---------------------------------------------------------------------------------------------

/// Appends its name to the input's `trail` and records what it saw.
fn trail_node(seen: &Seen, name: &'static str) -> impl Node {
    let seen = Arc::clone(seen);
    node_fn(move |ctx: Context| {
        let seen = Arc::clone(&seen);
        async move {
            let input = Value::clone(&ctx.inputs().content);
            let mut trail = input["trail"].as_array().cloned().unwrap_or_default();
            seen.lock().unwrap().push((name.to_owned(), input));
            trail.push(json!(name));
            Ok::<_, NodeError>(json!({ "trail": trail }))
        }
    })
}

#[tokio::test]
async fn linear_chain_passes_each_output_to_the_next_node() {
    let seen: Seen = Arc::default();
    let mut g = Graph::builder();
    let a = g.add("a", trail_node(&seen, "a"));
    let b = g.add("b", trail_node(&seen, "b"));
    let c = g.add("c", trail_node(&seen, "c"));
    g.connect(a >> b >> c);
    let graph = g.start(a).build().unwrap();

    let result = graph.run_with(json!({ "trail": ["in"] })).await.unwrap();

    let seen = seen_entries(&seen);
    let order: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["a", "b", "c"]);
    // Each node saw exactly what its predecessor returned (the predecessor appends its name).
    assert_eq!(seen[0].1, json!({ "trail": ["in"] }));
    assert_eq!(seen[1].1, json!({ "trail": ["in", "a"] }));
    assert_eq!(seen[2].1, json!({ "trail": ["in", "a", "b"] }));
    assert_eq!(result.content(), &json!({ "trail": ["in", "a", "b", "c"] }));
}

/// The seed's ETL pipeline, with struct nodes.
struct Extract {
    rows: Vec<i64>,
}

impl Node for Extract {
    async fn process(&self, _ctx: &Context) -> Result<NodeMessage, NodeError> {
        Ok(json!({ "data": self.rows }).into())
    }
}

struct Transform;

impl Node for Transform {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let data = ctx.inputs().content["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let doubled: Vec<i64> = data
            .iter()
            .filter_map(Value::as_i64)
            .map(|n| n * 2)
            .collect();
        Ok(json!({ "data": doubled }).into())
    }
}

struct Load {
    warehouse: Arc<Mutex<Vec<i64>>>,
}

impl Node for Load {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let data: Vec<i64> = ctx.inputs().content["data"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let loaded = data.len();
        self.warehouse.lock().unwrap().extend(data);
        Ok(json!({ "loaded": loaded }).into())
    }
}

#[tokio::test]
async fn output_of_last_node_is_the_result() {
    let rows = vec![3, 1, 4, 1, 5];
    let warehouse = Arc::new(Mutex::new(Vec::new()));
    let mut g = Graph::builder();
    let extract = g.add("extract", Extract { rows: rows.clone() });
    let transform = g.add("transform", Transform);
    let load = g.add(
        "load",
        Load {
            warehouse: Arc::clone(&warehouse),
        },
    );
    g.connect(extract >> transform >> load);
    let graph = g.start(extract).build().unwrap();

    let result = graph.run_default().await.unwrap();

    assert_eq!(result.content(), &json!({ "loaded": rows.len() }));
    assert_eq!(result.output_node(), Some("load"));
    assert_eq!(result.sink_outputs().len(), 1);
    let expected: Vec<i64> = rows.iter().map(|n| n * 2).collect();
    assert_eq!(*warehouse.lock().unwrap(), expected);
}

#[tokio::test]
async fn run_default_gives_an_empty_object_input() {
    let seen: Seen = Arc::default();
    let mut g = Graph::builder();
    let a = g.add("a", witness(&seen, "a", json!({})));
    let graph = g.start(a).build().unwrap();

    graph.run_default().await.unwrap();
    graph.run(Task::default()).await.unwrap();

    let seen = seen_entries(&seen);
    assert_eq!(seen.len(), 2);
    for (_, input) in seen {
        assert_eq!(input, json!({}));
    }
    assert_eq!(Task::default().task_type, TaskType::Standard);
}

#[tokio::test]
async fn returning_unit_means_an_empty_object() {
    let seen: Seen = Arc::default();
    let mut g = Graph::builder();
    let nothing = g.add("nothing", node_fn(|_| async { Ok::<_, NodeError>(()) }));
    let next = g.add("next", witness(&seen, "next", json!({ "done": true })));
    let last = g.add("last", node_fn(|_| async { Ok::<_, NodeError>(()) }));
    g.connect(nothing >> next >> last);
    let graph = g.start(nothing).build().unwrap();

    let result = graph.run_with(json!({ "ignored": 1 })).await.unwrap();

    assert_eq!(seen_entries(&seen), vec![("next".to_owned(), json!({}))]);
    assert_eq!(result.content(), &json!({}));
    assert_eq!(result.output_node(), Some("last"));
}

#[tokio::test]
async fn plain_builder_methods_wire_edges_like_the_operators() {
    async fn run(use_operators: bool) -> Vec<String> {
        let log = new_log();
        let mut g = Graph::builder();
        let a = g.add("a", echo(&log, "a"));
        let b = g.add("b", echo(&log, "b"));
        let c = g.add("c", echo(&log, "c"));
        let d = g.add("d", echo(&log, "d"));
        if use_operators {
            g.connect(a >> b >> c);
            g.connect(a.on("go", true) >> d);
        } else {
            // By handle and by name.
            g.edge(a, b).edge("b", "c");
            g.edge_when("a", d, EdgeCondition::equals("go", true));
        }
        let graph = g.start(a).build().unwrap();
        graph.run_with(json!({ "go": true })).await.unwrap();
        entries(&log)
    }
    let with_operators = run(true).await;
    assert_eq!(with_operators, names(&["a", "b", "d", "c"]));
    assert_eq!(run(false).await, with_operators);
}

// ---------------------------------------------------------------------------------------------
// Routing order and fallback (section 3, section 9 "Edges")
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_matching_edge_fires_in_priority_order() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", emit(&log, "a", json!({})));
    let low = g.add("low", emit(&log, "low", json!({})));
    let mid = g.add("mid", emit(&log, "mid", json!({})));
    let high = g.add("high", emit(&log, "high", json!({})));
    // Added in neither priority order nor node order.
    g.connect(a.priority(2) >> mid);
    g.connect(a.priority(1) >> low);
    g.connect(a.priority(3) >> high);
    let graph = g.start(a).build().unwrap();

    let after = ran_after_start(&graph, &log, json!({})).await;

    assert_eq!(after, names(&["high", "mid", "low"]));
}

#[tokio::test]
async fn equal_priority_edges_fire_in_insertion_order() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", emit(&log, "a", json!({})));
    let b = g.add("b", emit(&log, "b", json!({})));
    let c = g.add("c", emit(&log, "c", json!({})));
    let d = g.add("d", emit(&log, "d", json!({})));
    let e = g.add("e", emit(&log, "e", json!({})));
    // Priority 0 edges in the order c, d, b (not node order); one priority 1 edge in between.
    g.connect(a >> c);
    g.connect(a.priority(1) >> e);
    g.connect(a >> d);
    g.connect(a >> b);
    let graph = g.start(a).build().unwrap();

    let after = ran_after_start(&graph, &log, json!({})).await;

    assert_eq!(after, names(&["e", "c", "d", "b"]));
}

#[tokio::test]
async fn priority_changes_order_not_whether_an_edge_fires() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let never = g.add("never", emit(&log, "never", json!({})));
    let late = g.add("late", emit(&log, "late", json!({})));
    let early = g.add("early", emit(&log, "early", json!({})));
    // The highest priority cannot make a non-matching edge fire ...
    g.connect(a.on("x", 2).priority(100) >> never);
    // ... and the lowest cannot stop a matching one.
    g.connect(a.priority(-100) >> late);
    g.connect(a.on("x", 1).priority(5) >> early);
    let graph = g.start(a).build().unwrap();

    let after = ran_after_start(&graph, &log, json!({ "x": 1 })).await;

    assert_eq!(after, names(&["early", "late"]));
}

#[tokio::test]
async fn same_edge_added_twice_fires_twice() {
    let seen: Seen = Arc::default();
    let mut g = Graph::builder();
    let a = g.add("a", witness(&seen, "a", json!({ "from": "a" })));
    let b = g.add("b", witness(&seen, "b", json!({ "from": "b" })));
    g.connect(a >> b);
    g.edge(a, b);
    let graph = g.start(a).build().unwrap();

    let result = graph.run_default().await.unwrap();

    let seen = seen_entries(&seen);
    let b_inputs: Vec<&Value> = seen
        .iter()
        .filter(|(n, _)| n == "b")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(b_inputs, [&json!({ "from": "a" }), &json!({ "from": "a" })]);
    assert_eq!(result.metadata.processed_by("b"), Some(2));
    assert_eq!(result.sink_outputs().len(), 2);
}

#[tokio::test]
async fn fallback_fires_only_when_no_other_edge_fired() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let ok = g.add("ok", emit(&log, "ok", json!({})));
    let fallback = g.add("fallback", emit(&log, "fallback", json!({})));
    g.connect(a.on("ok", true) >> ok);
    g.connect(a.otherwise() >> fallback);
    let graph = g.start(a).build().unwrap();

    assert_eq!(
        ran_after_start(&graph, &log, json!({ "ok": true })).await,
        names(&["ok"])
    );
    assert_eq!(
        ran_after_start(&graph, &log, json!({ "ok": false })).await,
        names(&["fallback"])
    );
}

#[tokio::test]
async fn a_lone_fallback_edge_always_fires() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let fallback = g.add("fallback", emit(&log, "fallback", json!({})));
    g.connect(a.otherwise() >> fallback);
    let graph = g.start(a).build().unwrap();

    let result = graph.run_with(json!({ "ok": true })).await.unwrap();

    assert_eq!(entries(&log), names(&["a", "fallback"]));
    assert_eq!(result.output_node(), Some("fallback"));
}

#[tokio::test]
async fn a_lone_conditional_edge_that_does_not_match_leaves_a_sink_output() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let ok = g.add("ok", emit(&log, "ok", json!({})));
    g.connect(a.on("ok", true) >> ok);
    let graph = g.start(a).build().unwrap();

    let result = graph.run_with(json!({ "ok": false })).await.unwrap();

    assert_eq!(entries(&log), names(&["a"]));
    assert_eq!(result.output_node(), Some("a"));
    assert_eq!(result.metadata.accepted, 1);
}

#[tokio::test]
async fn several_fallback_edges_all_fire() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let hit = g.add("hit", emit(&log, "hit", json!({})));
    let first = g.add("first", emit(&log, "first", json!({})));
    let second = g.add("second", emit(&log, "second", json!({})));
    g.connect(a.otherwise() >> first);
    g.connect(a.on("x", 1) >> hit);
    g.connect(a.otherwise() >> second);
    let graph = g.start(a).build().unwrap();

    assert_eq!(
        ran_after_start(&graph, &log, json!({ "x": 0 })).await,
        names(&["first", "second"])
    );
}

#[tokio::test]
async fn fallback_does_not_fire_when_a_conditional_edge_fired() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let fallback = g.add("fallback", emit(&log, "fallback", json!({})));
    let matched = g.add("matched", emit(&log, "matched", json!({})));
    // The fallback is added first and with the higher priority: neither makes it fire.
    g.connect(a.otherwise().priority(10) >> fallback);
    g.connect(a.when("$.outputs.n > 3") >> matched);
    let graph = g.start(a).build().unwrap();

    assert_eq!(
        ran_after_start(&graph, &log, json!({ "n": 4 })).await,
        names(&["matched"])
    );
    assert_eq!(
        ran_after_start(&graph, &log, json!({ "n": 3 })).await,
        names(&["fallback"])
    );
}

// ---------------------------------------------------------------------------------------------
// Equality conditions (section 3 form 1)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn on_with_several_pairs_requires_all() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let both = g.add("both", emit(&log, "both", json!({})));
    g.connect(a.on("x", 1).on("y", "z") >> both);
    let graph = g.start(a).build().unwrap();

    assert_eq!(
        ran_after_start(&graph, &log, json!({ "x": 1, "y": "z" })).await,
        names(&["both"])
    );
    for partial in [
        json!({ "x": 1, "y": "w" }),
        json!({ "x": 2, "y": "z" }),
        json!({ "x": 1 }),
        json!({}),
    ] {
        assert!(
            ran_after_start(&graph, &log, partial.clone())
                .await
                .is_empty(),
            "fired for {partial}"
        );
    }
}

#[tokio::test]
async fn missing_key_reads_as_null_for_equality() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let null = g.add("null", emit(&log, "null", json!({})));
    g.connect(a.on("k", Value::Null) >> null);
    let graph = g.start(a).build().unwrap();

    for fires in [json!({}), json!({ "k": null }), json!({ "other": 1 })] {
        assert_eq!(
            ran_after_start(&graph, &log, fires.clone()).await,
            names(&["null"]),
            "{fires}"
        );
    }
    for silent in [json!({ "k": 0 }), json!({ "k": false }), json!({ "k": "" })] {
        assert!(
            ran_after_start(&graph, &log, silent.clone())
                .await
                .is_empty(),
            "fired for {silent}"
        );
    }
}

#[tokio::test]
async fn numbers_compare_by_value_in_equality() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let int_edge = g.add("int_edge", emit(&log, "int_edge", json!({})));
    let float_edge = g.add("float_edge", emit(&log, "float_edge", json!({})));
    g.connect(a.on("n", 1) >> int_edge);
    g.connect(a.on("n", 1.0) >> float_edge);
    let graph = g.start(a).build().unwrap();

    for same in [json!({ "n": 1 }), json!({ "n": 1.0 })] {
        assert_eq!(
            ran_after_start(&graph, &log, same.clone()).await,
            names(&["int_edge", "float_edge"]),
            "{same}"
        );
    }
    for different in [json!({ "n": 1.5 }), json!({ "n": "1" }), json!({ "n": 2 })] {
        assert!(
            ran_after_start(&graph, &log, different.clone())
                .await
                .is_empty(),
            "fired for {different}"
        );
    }
}

#[tokio::test]
async fn true_does_not_equal_one() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let is_true = g.add("is_true", emit(&log, "is_true", json!({})));
    let is_one = g.add("is_one", emit(&log, "is_one", json!({})));
    g.connect(a.on("v", true) >> is_true);
    g.connect(a.on("v", 1) >> is_one);
    let graph = g.start(a).build().unwrap();

    assert_eq!(
        ran_after_start(&graph, &log, json!({ "v": true })).await,
        names(&["is_true"])
    );
    assert_eq!(
        ran_after_start(&graph, &log, json!({ "v": 1 })).await,
        names(&["is_one"])
    );
}

// ---------------------------------------------------------------------------------------------
// Expression and predicate conditions (section 3 forms 2 and 3, section 9 "Expressions")
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn expression_condition_routes_on_score_and_status() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let accept = g.add("accept", emit(&log, "accept", json!({})));
    let review = g.add("review", emit(&log, "review", json!({})));
    g.connect(a.when("$.outputs.score >= 0.8 and $.outputs.status == 'ok'") >> accept);
    g.connect(a.otherwise() >> review);
    let graph = g.start(a).build().unwrap();

    for (input, expected) in [
        (json!({ "score": 0.93, "status": "ok" }), "accept"),
        (json!({ "score": 0.8, "status": "ok" }), "accept"),
        (json!({ "score": 1, "status": "ok" }), "accept"),
        (json!({ "score": 0.79, "status": "ok" }), "review"),
        (json!({ "score": 0.95, "status": "failed" }), "review"),
        (json!({ "score": "0.9", "status": "ok" }), "review"),
        (json!({ "status": "ok" }), "review"),
    ] {
        assert_eq!(
            ran_after_start(&graph, &log, input.clone()).await,
            names(&[expected]),
            "{input}"
        );
    }
}

#[tokio::test]
async fn predicate_condition_routes_with_a_closure() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let big = g.add("big", emit(&log, "big", json!({})));
    let small = g.add("small", emit(&log, "small", json!({})));
    g.connect(a.when_fn(|m| m.content["items"].as_array().is_some_and(|v| v.len() > 2)) >> big);
    g.connect(a.otherwise() >> small);
    let graph = g.start(a).build().unwrap();

    assert_eq!(
        ran_after_start(&graph, &log, json!({ "items": [1, 2, 3] })).await,
        names(&["big"])
    );
    assert_eq!(
        ran_after_start(&graph, &log, json!({ "items": [1, 2] })).await,
        names(&["small"])
    );
}

#[tokio::test]
async fn python_spellings_of_true_false_and_none_work_in_edge_expressions() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let t = g.add("t", emit(&log, "t", json!({})));
    let f = g.add("f", emit(&log, "f", json!({})));
    let n = g.add("n", emit(&log, "n", json!({})));
    g.connect(a.when("$.outputs.flag == True") >> t);
    g.connect(a.when("$.outputs.off == FALSE") >> f);
    g.connect(a.when("$.outputs.missing == None") >> n);
    let graph = g.start(a).build().unwrap();

    assert_eq!(
        ran_after_start(&graph, &log, json!({ "flag": true, "off": false })).await,
        names(&["t", "f", "n"])
    );
    assert!(
        ran_after_start(&graph, &log, json!({ "flag": 1, "off": 0, "missing": 0 }))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn paths_through_missing_keys_or_non_objects_read_as_null() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let null = g.add("null", emit(&log, "null", json!({})));
    g.connect(a.when("$.outputs.a.b == null") >> null);
    let graph = g.start(a).build().unwrap();

    for reads_null in [
        json!({}),
        json!({ "a": 5 }),
        json!({ "a": [{ "b": 1 }] }),
        json!({ "a": {} }),
        json!([1, 2]),
        json!("text"),
    ] {
        assert_eq!(
            ran_after_start(&graph, &log, reads_null.clone()).await,
            names(&["null"]),
            "{reads_null}"
        );
    }
    assert!(ran_after_start(&graph, &log, json!({ "a": { "b": 1 } }))
        .await
        .is_empty());
}

#[tokio::test]
async fn truthiness_of_a_bare_path_decides_the_edge() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let yes = g.add("yes", emit(&log, "yes", json!({})));
    let no = g.add("no", emit(&log, "no", json!({})));
    g.connect(a.when("$.outputs.v") >> yes);
    g.connect(a.when("not $.outputs.v") >> no);
    let graph = g.start(a).build().unwrap();

    for falsy in [
        json!(null),
        json!(false),
        json!(0),
        json!(0.0),
        json!(""),
        json!([]),
        json!({}),
    ] {
        assert_eq!(
            ran_after_start(&graph, &log, json!({ "v": falsy })).await,
            names(&["no"]),
            "{falsy}"
        );
    }
    for truthy in [
        json!(true),
        json!(1),
        json!(-0.5),
        json!("x"),
        json!([0]),
        json!({ "k": null }),
    ] {
        assert_eq!(
            ran_after_start(&graph, &log, json!({ "v": truthy })).await,
            names(&["yes"]),
            "{truthy}"
        );
    }
}

#[tokio::test]
async fn in_lists_and_comparisons_follow_the_value_rules() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let member = g.add("member", emit(&log, "member", json!({})));
    let less = g.add("less", emit(&log, "less", json!({})));
    let differs = g.add("differs", emit(&log, "differs", json!({})));
    g.connect(a.when("$.outputs.n in [1, 'two', null]") >> member);
    g.connect(a.when("$.outputs.n < 10") >> less);
    g.connect(a.when("$.outputs.n != '1'") >> differs);
    let graph = g.start(a).build().unwrap();

    // 1.0 is in the list by value, less than 10, and a number differs from the string '1'.
    assert_eq!(
        ran_after_start(&graph, &log, json!({ "n": 1.0 })).await,
        names(&["member", "less", "differs"])
    );
    // The string "1" is not in the list, is not ordered against 10, and equals '1'.
    assert!(ran_after_start(&graph, &log, json!({ "n": "1" }))
        .await
        .is_empty());
    // A missing key is null: in the list, not ordered, different from '1'.
    assert_eq!(
        ran_after_start(&graph, &log, json!({})).await,
        names(&["member", "differs"])
    );
}

#[tokio::test]
async fn or_binds_looser_than_and_and_not_looser_than_comparisons() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let or_and = g.add("or_and", emit(&log, "or_and", json!({})));
    let not_cmp = g.add("not_cmp", emit(&log, "not_cmp", json!({})));
    g.connect(a.when("$.outputs.a or $.outputs.b and $.outputs.c") >> or_and);
    g.connect(a.when("not $.outputs.n == 0") >> not_cmp);
    let graph = g.start(a).build().unwrap();

    // `a or (b and c)` is true here; `(a or b) and c` would be false.
    // `not (n == 0)` is true for n = 5; `(not n) == 0` would compare false with 0: false.
    assert_eq!(
        ran_after_start(
            &graph,
            &log,
            json!({ "a": true, "b": false, "c": false, "n": 5 })
        )
        .await,
        names(&["or_and", "not_cmp"])
    );
}

#[tokio::test]
async fn conditions_see_the_source_output_not_the_input() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", emit(&log, "a", json!({ "route": "out" })));
    let by_input = g.add("by_input", emit(&log, "by_input", json!({})));
    let by_output = g.add("by_output", emit(&log, "by_output", json!({})));
    g.connect(a.on("route", "in") >> by_input);
    g.connect(a.when("$.outputs.route == 'out'") >> by_output);
    let graph = g.start(a).build().unwrap();

    assert_eq!(
        ran_after_start(&graph, &log, json!({ "route": "in" })).await,
        names(&["by_output"])
    );
}

// ---------------------------------------------------------------------------------------------
// FIFO scheduling, fan-out and merge (section 4)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn merge_node_runs_once_per_input() {
    let seen: Seen = Arc::default();
    let mut g = Graph::builder();
    let a = g.add("a", witness(&seen, "a", json!({ "from": "a" })));
    let b = g.add("b", witness(&seen, "b", json!({ "from": "b" })));
    let c = g.add("c", witness(&seen, "c", json!({ "from": "c" })));
    let d = g.add("d", witness(&seen, "d", json!({ "from": "d" })));
    g.connect(a >> b >> d);
    g.connect(a >> c >> d);
    let graph = g.start(a).build().unwrap();

    let result = graph.run_default().await.unwrap();

    let d_inputs: Vec<Value> = seen_entries(&seen)
        .into_iter()
        .filter(|(n, _)| n == "d")
        .map(|(_, v)| v)
        .collect();
    // No implicit join: one activation per incoming message, each with its sender's output.
    assert_eq!(d_inputs, [json!({ "from": "b" }), json!({ "from": "c" })]);
    assert_eq!(result.metadata.processed_by("d"), Some(2));
    assert_eq!(result.sink_outputs().len(), 2);
}

#[tokio::test]
async fn activations_run_in_fifo_order() {
    let log = new_log();
    let mut g = Graph::builder();
    let names_in_tree = ["root", "l", "r", "l1", "l2", "r1", "l1x"];
    let refs: Vec<NodeRef> = names_in_tree
        .iter()
        .map(|n| g.add(*n, emit(&log, n, json!({}))))
        .collect();
    let node = |name: &str| refs[names_in_tree.iter().position(|n| *n == name).unwrap()];
    // root -> l, r; l -> l1, l2; r -> r1; l1 -> l1x
    let tree = [
        ("root", "l"),
        ("root", "r"),
        ("l", "l1"),
        ("l", "l2"),
        ("r", "r1"),
        ("l1", "l1x"),
    ];
    for (from, to) in tree {
        g.edge(node(from), node(to));
    }
    let graph = g.start(node("root")).build().unwrap();

    graph.run_default().await.unwrap();

    // A FIFO queue visits the tree breadth first: level by level, each level in edge order.
    // (A stack would give root, l, l1, l1x, l2, r, r1.)
    assert_eq!(
        entries(&log),
        names(&["root", "l", "r", "l1", "l2", "r1", "l1x"])
    );
}

#[tokio::test]
async fn each_successor_gets_its_own_copy() {
    let seen: Seen = Arc::default();
    let mut g = Graph::builder();
    let a = g.add("a", emit(&new_log(), "a", json!({ "n": 1, "list": [1] })));
    let mutator = g.add(
        "mutator",
        node_fn(|ctx: Context| async move {
            let mut mine = ctx.inputs().clone();
            mine.content_mut()["n"] = json!(999);
            mine.content_mut()["list"]
                .as_array_mut()
                .unwrap()
                .push(json!(2));
            Ok::<_, NodeError>(mine)
        }),
    );
    let sibling = g.add("sibling", witness(&seen, "sibling", json!({})));
    let after_mutator = g.add("after_mutator", witness(&seen, "after_mutator", json!({})));
    g.connect(a >> mutator >> after_mutator);
    g.connect(a >> sibling);
    let graph = g.start(a).build().unwrap();

    graph.run_default().await.unwrap();

    let seen = seen_entries(&seen);
    // The mutator ran before the sibling, yet the sibling sees a's original output.
    assert_eq!(
        seen[0],
        ("sibling".to_owned(), json!({ "n": 1, "list": [1] }))
    );
    assert_eq!(
        seen[1],
        (
            "after_mutator".to_owned(),
            json!({ "n": 999, "list": [1, 2] })
        )
    );
}

// ---------------------------------------------------------------------------------------------
// The result rule (section 4)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn result_is_the_most_recent_sink_output() {
    let mut g = Graph::builder();
    let log = new_log();
    let a = g.add("a", emit(&log, "a", json!({ "from": "a" })));
    let b = g.add("b", emit(&log, "b", json!({ "from": "b" })));
    let c = g.add("c", emit(&log, "c", json!({ "from": "c" })));
    g.connect(a >> b);
    g.connect(a >> c);
    let graph = g.start(a).build().unwrap();

    let result = graph.run_default().await.unwrap();

    // b and c are both sinks; c completed last.
    let last = entries(&log).last().cloned().unwrap();
    assert_eq!(result.output_node(), Some(last.as_str()));
    assert_eq!(result.content(), &json!({ "from": last }));
    assert_eq!(
        result.output().map(|m| Value::clone(&m.content)),
        Some(json!({ "from": "c" }))
    );
}

#[tokio::test]
async fn sink_outputs_are_listed_in_completion_order() {
    let log = new_log();
    let mut g = Graph::builder();
    // Nodes added in an order unlike the completion order.
    let deep = g.add("deep", emit(&log, "deep", json!({ "from": "deep" })));
    let shallow = g.add(
        "shallow",
        emit(&log, "shallow", json!({ "from": "shallow" })),
    );
    let mid = g.add("mid", emit(&log, "mid", json!({ "from": "mid" })));
    let root = g.add("root", emit(&log, "root", json!({ "from": "root" })));
    let leaf = g.add("leaf", emit(&log, "leaf", json!({ "from": "leaf" })));
    g.connect(root >> mid >> deep);
    g.connect(root >> shallow);
    g.connect(mid >> leaf);
    let graph = g.start(root).build().unwrap();

    let result = graph.run_default().await.unwrap();

    let sinks: Vec<(&str, &Value)> = result
        .sink_outputs()
        .iter()
        .map(|s| (&*s.node, &*s.message.content))
        .collect();
    // Sinks are the nodes without edges; keep them in the order they ran.
    let expected: Vec<String> = entries(&log)
        .into_iter()
        .filter(|n| ["shallow", "deep", "leaf"].contains(&n.as_str()))
        .collect();
    assert_eq!(expected, names(&["shallow", "deep", "leaf"]));
    let sink_nodes: Vec<&str> = sinks.iter().map(|(n, _)| *n).collect();
    assert_eq!(sink_nodes, expected);
    for (node, content) in sinks {
        assert_eq!(content, &json!({ "from": node }));
    }
    assert_eq!(result.output_node(), Some("leaf"));
}

#[tokio::test]
async fn metadata_counts_steps_and_per_node_activations() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", emit(&log, "a", json!({})));
    let b = g.add("b", emit(&log, "b", json!({})));
    let c = g.add("c", emit(&log, "c", json!({})));
    let d = g.add("d", emit(&log, "d", json!({})));
    let unused = g.add("unused", emit(&log, "unused", json!({})));
    g.connect(a >> b >> d);
    g.connect(a >> c >> d);
    g.connect(a >> d);
    g.connect(a.on("never", true) >> unused);
    let graph = g.start(a).build().unwrap();

    let result = graph.run_default().await.unwrap();

    let ran = entries(&log);
    let meta = &result.metadata;
    assert_eq!(meta.task_type, TaskType::Standard);
    assert_eq!(meta.stop_reason, StopReason::Completed);
    assert_eq!(meta.steps, ran.len() as u64);
    assert_eq!(meta.processed, meta.steps);
    assert_eq!(meta.accepted, meta.steps);
    assert_eq!(meta.unprocessed, 0);
    assert_eq!(meta.tokens_used, 0);
    let graph_order = ["a", "b", "c", "d", "unused"];
    let per_node: Vec<(&str, u64)> = meta
        .per_node
        .iter()
        .map(|c| (c.node, c.processed))
        .collect();
    let expected: Vec<(&str, u64)> = graph_order
        .iter()
        .map(|n| (*n, ran.iter().filter(|r| r == n).count() as u64))
        .collect();
    assert_eq!(per_node, expected);
    assert_eq!(meta.processed_by("d"), Some(3));
    assert_eq!(meta.processed_by("unused"), Some(0));
    assert_eq!(meta.processed_by("ghost"), None);
}

#[tokio::test]
async fn output_matching_no_edge_is_a_sink_even_if_node_has_edges() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&log, "a"));
    let b = g.add("b", emit(&log, "b", json!({ "from": "b" })));
    g.connect(a.on("go", true) >> b);
    g.connect(a.when("$.outputs.n > 10") >> b);
    let graph = g.start(a).build().unwrap();

    let result = graph
        .run_with(json!({ "go": false, "n": 1 }))
        .await
        .unwrap();

    assert_eq!(entries(&log), names(&["a"]));
    assert_eq!(result.output_node(), Some("a"));
    assert_eq!(result.content(), &json!({ "go": false, "n": 1 }));
}

// ---------------------------------------------------------------------------------------------
// Determinism and reuse (section 4, section 7)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn same_inputs_give_same_order_and_result() {
    let log = new_log();
    let counter = {
        let log = Arc::clone(&log);
        node_fn(move |ctx: Context| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push("count".to_owned());
                let n = ctx.inputs().content["n"].as_i64().unwrap_or(0);
                Ok::<_, NodeError>(json!({ "n": n + 1, "even": (n + 1) % 2 == 0 }))
            }
        })
    };
    let mut g = Graph::builder();
    let count = g.add("count", counter);
    let even = g.add("even", echo(&log, "even"));
    let odd = g.add("odd", echo(&log, "odd"));
    let merge = g.add("merge", echo(&log, "merge"));
    g.connect(count.when("$.outputs.n < 6") >> count);
    g.connect(count.on("even", true).priority(1) >> even >> merge);
    g.connect(count.otherwise() >> odd >> merge);
    let graph = g.start(count).build().unwrap();

    let mut runs = Vec::new();
    for _ in 0..3 {
        log.lock().unwrap().clear();
        let result = graph.run_with(json!({ "n": 0 })).await.unwrap();
        runs.push((entries(&log), result));
    }

    let (first_order, first) = &runs[0];
    assert!(
        first_order.len() > 6,
        "the graph did too little: {first_order:?}"
    );
    for (order, result) in &runs[1..] {
        assert_eq!(order, first_order);
        assert_eq!(result.sink_outputs(), first.sink_outputs());
        assert_eq!(result.metadata.per_node, first.metadata.per_node);
        assert_eq!(result.metadata.steps, first.metadata.steps);
    }
}

#[tokio::test]
async fn a_graph_can_run_concurrently_without_sharing_budgets() {
    // Each node records 10 tokens and yields, so the two runs interleave. Each run uses 30 of
    // its own 35 tokens; a shared counter would pass 35 and refuse an activation.
    let tokens_node = || {
        node_fn(|ctx: Context| async move {
            ctx.record_tokens(10);
            tokio::task::yield_now().await;
            Ok::<_, NodeError>(json!({ "run": ctx.run_id() }))
        })
    };
    let mut g = Graph::builder();
    let a = g.add("a", tokens_node());
    let b = g.add("b", tokens_node());
    let c = g.add("c", tokens_node());
    g.connect(a >> b >> c);
    let graph = g.start(a).build().unwrap();
    let task = || Task::new(json!({})).with_budget(Budget::tokens(35).unwrap());

    let (one, two) = tokio::join!(graph.run(task()), graph.run(task()));

    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one.metadata.tokens_used, 30);
    assert_eq!(two.metadata.tokens_used, 30);
    assert_ne!(one.content()["run"], two.content()["run"]);
}

// ---------------------------------------------------------------------------------------------
// Cycles and the step limit (section 4, section 9 "Budgets and limits")
// ---------------------------------------------------------------------------------------------

/// A node that counts its activations and returns an empty object.
fn counted(count: &Arc<AtomicUsize>) -> impl Node {
    let count = Arc::clone(count);
    node_fn(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, NodeError>(json!({})) }
    })
}

#[tokio::test]
async fn runaway_cycle_hits_step_limit() {
    const LIMIT: u64 = 10;
    let log = new_log();
    let cycle = ["a", "b", "c"];
    let mut g = Graph::builder();
    let refs: Vec<NodeRef> = cycle
        .iter()
        .map(|n| g.add(*n, emit(&log, n, json!({}))))
        .collect();
    g.connect(refs[0] >> refs[1] >> refs[2] >> refs[0]);
    g.step_limit(LIMIT);
    let graph = g.start(refs[0]).build().unwrap();

    let err = graph.run_default().await.unwrap_err();

    assert_eq!(entries(&log).len() as u64, LIMIT);
    // Activation LIMIT + 1 is the (LIMIT % 3)-th node of the cycle.
    let next = cycle[(LIMIT as usize) % cycle.len()];
    match &err {
        RunError::StepLimitExceeded { node, limit, .. } => {
            assert_eq!(node, next);
            assert_eq!(*limit, LIMIT);
        }
        other => panic!("expected StepLimitExceeded, got {other:?}"),
    }
    assert_eq!(err.node(), Some(next));
    assert!(err.to_string().contains(&LIMIT.to_string()), "{err}");
}

#[tokio::test]
async fn step_limit_is_settable_on_graph_and_per_task() {
    let count = Arc::new(AtomicUsize::new(0));
    let mut g = Graph::builder();
    let spin = g.add("spin", counted(&count));
    g.connect(spin >> spin);
    g.step_limit(5);
    let graph = g.start(spin).build().unwrap();

    for (task, limit) in [
        (Task::default(), 5_u64),
        (Task::default().with_max_steps(3), 3),
        (Task::default().with_max_steps(20), 20),
    ] {
        count.store(0, Ordering::SeqCst);
        let err = graph.run(task).await.unwrap_err();
        assert!(
            matches!(err, RunError::StepLimitExceeded { limit: l, .. } if l == limit),
            "{err:?}"
        );
        assert_eq!(count.load(Ordering::SeqCst) as u64, limit);
    }
}

#[tokio::test]
async fn default_step_limit_is_ten_thousand_activations() {
    let count = Arc::new(AtomicUsize::new(0));
    let mut g = Graph::builder();
    let spin = g.add("spin", counted(&count));
    g.connect(spin >> spin);
    let graph = g.start(spin).build().unwrap();

    let err = graph.run_default().await.unwrap_err();

    assert!(
        matches!(&err, RunError::StepLimitExceeded { node, limit: 10_000, .. } if node == "spin"),
        "{err:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 10_000);
}

#[tokio::test]
async fn bounded_cycle_with_counter_condition_completes() {
    const STOP_AT: i64 = 5;
    let mut g = Graph::builder();
    let inc = g.add(
        "inc",
        node_fn(|ctx: Context| async move {
            let n = ctx.inputs().content["n"].as_i64().unwrap_or(0);
            Ok::<_, NodeError>(json!({ "n": n + 1 }))
        }),
    );
    let done = g.add(
        "done",
        node_fn(|ctx: Context| async move {
            Ok::<_, NodeError>(json!({ "final": ctx.inputs().content["n"] }))
        }),
    );
    g.connect(inc.when(&format!("$.outputs.n < {STOP_AT}")) >> inc);
    g.connect(inc.otherwise() >> done);
    let graph = g.start(inc).build().unwrap();

    let result = graph.run_with(json!({ "n": 0 })).await.unwrap();

    assert_eq!(result.content(), &json!({ "final": STOP_AT }));
    assert_eq!(result.metadata.processed_by("inc"), Some(STOP_AT as u64));
    assert_eq!(result.metadata.processed_by("done"), Some(1));
    assert_eq!(result.sink_outputs().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Errors and panics (section 4)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn node_error_stops_the_run_and_names_the_node() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", emit(&log, "a", json!({})));
    let bad = g.add("bad", {
        let log = Arc::clone(&log);
        node_fn(move |_| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push("bad".to_owned());
                Err::<Value, _>(NodeError::with_source(
                    "database down",
                    std::io::Error::other("connection refused"),
                ))
            }
        })
    });
    let sibling = g.add("sibling", emit(&log, "sibling", json!({})));
    let after = g.add("after", emit(&log, "after", json!({})));
    g.connect(a >> bad >> after);
    g.connect(a >> sibling);
    let graph = g.start(a).build().unwrap();

    let err = graph.run_default().await.unwrap_err();

    assert!(
        matches!(&err, RunError::NodeFailed { node, .. } if node == "bad"),
        "{err:?}"
    );
    assert_eq!(err.node(), Some("bad"));
    let source = err.source().expect("the node's error is the source");
    assert_eq!(source.to_string(), "database down");
    let cause = source.source().expect("the node error keeps its cause");
    assert_eq!(cause.to_string(), "connection refused");
    // The sibling was already queued and `after` would follow: neither ran.
    assert_eq!(entries(&log), names(&["a", "bad"]));
}

#[tokio::test]
async fn node_panic_becomes_error_naming_the_node() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", emit(&log, "a", json!({})));
    let crash = g.add(
        "crash",
        node_fn(|_| async { Ok::<_, NodeError>(boom("boom before any await")) }),
    );
    let after = g.add("after", emit(&log, "after", json!({})));
    g.connect(a >> crash >> after);
    let graph = g.start(a).build().unwrap();

    let err = graph.run_default().await.unwrap_err();

    match &err {
        RunError::NodePanicked { node, message, .. } => {
            assert_eq!(node, "crash");
            assert_eq!(message, "boom before any await");
        }
        other => panic!("expected NodePanicked, got {other:?}"),
    }
    assert_eq!(entries(&log), names(&["a"]));
}

#[tokio::test]
async fn node_panic_after_an_await_is_caught_too() {
    let mut g = Graph::builder();
    let crash = g.add(
        "crash",
        node_fn(|_| async {
            tokio::task::yield_now().await;
            Ok::<_, NodeError>(boom("boom after an await"))
        }),
    );
    let graph = g.start(crash).build().unwrap();

    let err = graph.run_default().await.unwrap_err();

    assert!(
        matches!(&err, RunError::NodePanicked { node, message, .. }
            if node == "crash" && message == "boom after an await"),
        "{err:?}"
    );
}

#[tokio::test]
async fn closure_node_panicking_before_it_returns_its_future_is_caught() {
    // A common closure shape: validate the input, then return the async block. The panic
    // happens when the runtime calls the closure, not when it polls the future.
    let mut g = Graph::builder();
    let strict = g.add(
        "strict",
        node_fn(|ctx: Context| {
            let n = ctx.inputs().content["n"]
                .as_i64()
                .expect("input `n` must be an integer");
            async move { Ok::<_, NodeError>(json!({ "n": n })) }
        }),
    );
    let graph = g.start(strict).build().unwrap();

    let outcome = tokio::spawn(async move { graph.run_with(json!({})).await }).await;

    let run = outcome.expect("the node's panic escaped `Graph::run` instead of becoming an error");
    let err = run.unwrap_err();
    assert!(
        matches!(&err, RunError::NodePanicked { node, message, .. }
            if node == "strict" && message.contains("input `n` must be an integer")),
        "{err:?}"
    );
}

#[tokio::test]
async fn predicate_panic_becomes_error_naming_the_edge() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", emit(&log, "a", json!({})));
    let first = g.add("first", emit(&log, "first", json!({})));
    let guarded = g.add("guarded", emit(&log, "guarded", json!({})));
    g.connect(a.priority(1) >> first);
    g.connect(a.when_fn(|_| boom("predicate exploded").is_null()) >> guarded);
    let graph = g.start(a).build().unwrap();

    let err = graph.run_default().await.unwrap_err();

    match &err {
        RunError::ConditionPanicked {
            from, to, message, ..
        } => {
            assert_eq!((from.as_str(), to.as_str()), ("a", "guarded"));
            assert_eq!(message, "predicate exploded");
        }
        other => panic!("expected ConditionPanicked, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("`a` -> `guarded`"), "{text}");
    // The run stopped: not even the edge that fired before the panic delivered its message.
    assert_eq!(entries(&log), names(&["a"]));
}

#[tokio::test]
async fn a_predicate_panic_after_two_fired_edges_leaves_neither_target_accepted() {
    let log = new_log();
    let mut g = Graph::builder();
    let a = g.add("a", emit(&log, "a", json!({})));
    let first = g.add("first", emit(&log, "first", json!({})));
    let second = g.add("second", emit(&log, "second", json!({})));
    let guarded = g.add("guarded", emit(&log, "guarded", json!({})));
    g.connect(a.priority(2) >> first);
    g.connect(a.priority(1) >> second);
    g.connect(a.when_fn(|_| boom("predicate exploded").is_null()) >> guarded);
    let graph = g.start(a).build().unwrap();

    let err = graph.run_default().await.unwrap_err();

    assert!(
        matches!(&err, RunError::ConditionPanicked { to, .. } if to == "guarded"),
        "{err:?}"
    );
    let counts = err.counts().expect("the error carries the run's counts");
    assert_eq!(
        (counts.accepted, counts.processed, counts.unprocessed),
        (1, 1, 0),
        "only the task input was accepted"
    );
    assert_eq!(entries(&log), names(&["a"]));
}

// ---------------------------------------------------------------------------------------------
// Subgraphs (section 4, hybrid mode)
// ---------------------------------------------------------------------------------------------

fn add_n(n: i64) -> impl Node {
    node_fn(move |ctx: Context| async move {
        let v = ctx.inputs().content["v"].as_i64().unwrap_or(0);
        Ok::<_, NodeError>(json!({ "v": v + n }))
    })
}

fn times(n: i64) -> impl Node {
    node_fn(move |ctx: Context| async move {
        let v = ctx.inputs().content["v"].as_i64().unwrap_or(0);
        Ok::<_, NodeError>(json!({ "v": v * n }))
    })
}

#[tokio::test]
async fn subgraph_runs_inner_graph_and_returns_its_result() {
    let mut inner = Graph::builder();
    let double = inner.add("double", times(2));
    let plus_one = inner.add("plus_one", add_n(1));
    inner.connect(double >> plus_one);
    let inner = inner.start(double).build().unwrap();

    let seen: Seen = Arc::default();
    let mut outer = Graph::builder();
    let pre = outer.add("pre", add_n(10));
    let sub = outer.add("sub", SubgraphNode::new(inner.clone()));
    let post = outer.add("post", witness(&seen, "post", json!({ "done": true })));
    outer.connect(pre >> sub >> post);
    let outer = outer.start(pre).build().unwrap();

    let v = 5;
    outer.run_with(json!({ "v": v })).await.unwrap();

    let inner_alone = inner.run_with(json!({ "v": v + 10 })).await.unwrap();
    assert_eq!(inner_alone.content(), &json!({ "v": (v + 10) * 2 + 1 }));
    assert_eq!(
        seen_entries(&seen),
        vec![("post".to_owned(), Value::clone(inner_alone.content()))]
    );
}

#[tokio::test]
async fn subgraph_input_and_output_keys_map_values() {
    let seen: Seen = Arc::default();
    let mut inner = Graph::builder();
    let look = inner.add(
        "look",
        node_fn({
            let seen = Arc::clone(&seen);
            move |ctx: Context| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock()
                        .unwrap()
                        .push(("look".to_owned(), Value::clone(&ctx.inputs().content)));
                    let v = ctx.inputs().content["v"].as_i64().unwrap_or(0);
                    Ok::<_, NodeError>(json!({ "v": v * 3 }))
                }
            }
        }),
    );
    let inner = inner.start(look).build().unwrap();

    let mut outer = Graph::builder();
    let sub = outer.add(
        "sub",
        SubgraphNode::new(inner)
            .input_key("payload")
            .output_key("answer"),
    );
    let outer = outer.start(sub).build().unwrap();

    let result = outer
        .run_with(json!({ "payload": { "v": 4 }, "other": "not passed" }))
        .await
        .unwrap();

    assert_eq!(
        seen_entries(&seen),
        vec![("look".to_owned(), json!({ "v": 4 }))]
    );
    assert_eq!(result.content(), &json!({ "answer": { "v": 12 } }));
}

#[tokio::test]
async fn subgraph_inner_failure_names_the_subgraph_node_with_the_inner_error_as_source() {
    let mut inner = Graph::builder();
    let ok = inner.add("inner_ok", add_n(1));
    let fail = inner.add(
        "inner_fail",
        node_fn(|_| async { Err::<Value, _>(NodeError::new("inner broke")) }),
    );
    inner.connect(ok >> fail);
    let inner = inner.start(ok).build().unwrap();

    let log = new_log();
    let mut outer = Graph::builder();
    let sub = outer.add("sub", SubgraphNode::new(inner));
    let after = outer.add("after", emit(&log, "after", json!({})));
    outer.connect(sub >> after);
    let outer = outer.start(sub).build().unwrap();

    let err = outer.run_default().await.unwrap_err();

    assert!(
        matches!(&err, RunError::NodeFailed { node, .. } if node == "sub"),
        "{err:?}"
    );
    // Walk the source chain down to the inner run's error.
    let mut source = err.source();
    let mut inner_err = None;
    while let Some(s) = source {
        if let Some(run) = s.downcast_ref::<RunError>() {
            inner_err = Some(run);
            break;
        }
        source = s.source();
    }
    let inner_err = inner_err.expect("the inner RunError is in the source chain");
    assert!(
        matches!(inner_err, RunError::NodeFailed { node, source, .. } if node == "inner_fail"
            && source.message() == "inner broke"),
        "{inner_err:?}"
    );
    assert!(entries(&log).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Runs one after another on one thread (the executor keeps a finished run's scope for the next)

/// What a node saw of its run: run id, tokens so far, state key `k`, cancelled, stopping.
type RunSeen = (u64, u64, Option<Value>, bool, bool);

/// A node that records what it sees, then leaves as much behind in its run as it can: tokens,
/// a state write, a cancellation token (cancelled when the run ends), a shutdown request.
fn leaves_traces(seen: &Arc<Mutex<Vec<RunSeen>>>) -> impl Node {
    let seen = Arc::clone(seen);
    node_fn(move |ctx| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push((
                ctx.run_id(),
                ctx.tokens_used(),
                ctx.state().get("k"),
                ctx.is_cancelled(),
                ctx.is_stopping(),
            ));
            ctx.record_tokens(5);
            ctx.state().set("k", json!(1));
            let _ = ctx.cancellation();
            ctx.request_shutdown();
            Ok::<_, NodeError>(json!({}))
        }
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_run_after_another_on_the_same_thread_starts_with_nothing_of_the_first() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut g = Graph::builder();
    let n = g.add("n", leaves_traces(&seen));
    let graph = g.start(n).build().unwrap();

    let first = graph.run_default().await.unwrap();
    let second = graph.run_default().await.unwrap();

    assert_eq!(first.metadata.tokens_used, 5);
    assert_eq!(second.metadata.tokens_used, 5, "tokens are counted per run");
    assert_eq!(second.state.get("k"), Some(&json!(1)));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let (first_id, second_id) = (seen[0].0, seen[1].0);
    assert_ne!(first_id, second_id, "each run has its own id");
    assert_eq!(seen[1], (second_id, 0, None, false, false), "a fresh run");
}

#[tokio::test(flavor = "current_thread")]
async fn a_run_started_with_a_given_state_after_another_sees_only_that_state() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut g = Graph::builder();
    let n = g.add("n", leaves_traces(&seen));
    let graph = g.start(n).build().unwrap();

    graph.run_default().await.unwrap();
    let mut state = spark_adk_core::Map::new();
    state.insert("k".to_owned(), json!("given"));
    graph.run(Task::default().with_state(state)).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[1].2, Some(json!("given")));
}

#[tokio::test(flavor = "current_thread")]
async fn the_event_bus_of_a_dropped_graph_closes_after_its_runs() {
    let mut g = Graph::builder();
    let n = g.add("n", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    let graph = g.start(n).build().unwrap();
    let mut events = graph.events().subscribe();

    graph.run_default().await.unwrap();
    drop(graph);

    let drained = async {
        let mut received = 0;
        loop {
            match events.recv().await {
                Ok(_) => received += 1,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return received,
                Err(e) => panic!("{e}"),
            }
        }
    };
    let received = tokio::time::timeout(std::time::Duration::from_secs(5), drained)
        .await
        .expect("the bus stays open: something still holds it");
    assert!(received >= 2, "GraphStarted and GraphFinished at least");
}

#[tokio::test(flavor = "current_thread")]
async fn a_scope_a_node_kept_stays_that_runs_scope() {
    let kept = Arc::new(Mutex::new(None));
    let mut g = Graph::builder();
    let keep = Arc::clone(&kept);
    let n = g.add(
        "n",
        node_fn(move |ctx| {
            let keep = Arc::clone(&keep);
            async move {
                keep.lock()
                    .unwrap()
                    .get_or_insert_with(|| Arc::clone(ctx.scope()));
                let _ = ctx.cancellation();
                ctx.record_tokens(3);
                Ok::<_, NodeError>(json!({}))
            }
        }),
    );
    let graph = g.start(n).build().unwrap();

    graph.run_default().await.unwrap();
    let first_scope = kept.lock().unwrap().clone().unwrap();
    let first_id = first_scope.run_id();
    graph.run_default().await.unwrap();
    graph.run_default().await.unwrap();

    assert_eq!(first_scope.run_id(), first_id);
    assert_eq!(
        first_scope.tokens_used(),
        3,
        "later runs never reuse a kept scope"
    );
    assert!(first_scope.is_cancelled(), "its run has ended");
}
