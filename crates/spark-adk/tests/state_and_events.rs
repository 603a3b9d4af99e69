//! Graph state, events, tracing spans and pictures (docs/runtime-semantics.md, "Graph state", "Events and tracing", "Pictures").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use spark_adk::prelude::*;
use spark_adk::{EventBus, Map};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn counter_loop(limit: i64) -> Graph {
    let mut g = Graph::builder();
    let step = g.add(
        "step",
        node_fn(move |ctx| async move {
            let n = ctx.state().update_with("count", |v| {
                let next = v.as_i64().unwrap_or(0) + 1;
                *v = json!(next);
                next
            });
            Ok::<_, NodeError>(json!({ "count": n, "done": n >= limit }))
        }),
    );
    let done = g.add(
        "done",
        node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) }),
    );
    g.connect(step.on("done", false) >> step);
    g.connect(step.on("done", true) >> done);
    g.start(step).build().unwrap()
}

#[tokio::test]
async fn state_drives_a_standard_mode_loop_and_is_returned() {
    let result = counter_loop(5).run_default().await.unwrap();
    assert_eq!(result.content()["count"], 5);
    assert_eq!(result.state["count"], 5);
    assert_eq!(result.metadata.processed_by("step"), Some(5));
}

#[tokio::test]
async fn initial_state_comes_from_the_graph_and_a_task_can_replace_it() {
    let mut g = Graph::builder();
    let read = g.add(
        "read",
        node_fn(
            |ctx| async move { Ok::<_, NodeError>(json!({ "seen": ctx.state().get("seed") })) },
        ),
    );
    g.initial_state(obj(json!({ "seed": "graph" })));
    let graph = g.start(read).build().unwrap();
    assert_eq!(
        graph.run_default().await.unwrap().content()["seen"],
        "graph"
    );
    let task = Task::new(json!({})).with_state(obj(json!({ "seed": "task" })));
    assert_eq!(graph.run(task).await.unwrap().content()["seen"], "task");
    // Runs never share state: the graph's initial state is untouched.
    assert_eq!(
        graph.run_default().await.unwrap().content()["seen"],
        "graph"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_long_running_workers_never_lose_an_update() {
    const WORKERS: usize = 8;
    const PER_WORKER: i64 = 250;
    let mut g = Graph::builder();
    let fan = g.add("fan", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    for i in 0..WORKERS {
        let w = g.add(
            format!("worker{i}"),
            node_fn(|ctx| async move {
                if ctx.is_shutdown() {
                    return Ok::<_, NodeError>(json!({}));
                }
                for _ in 0..PER_WORKER {
                    ctx.state()
                        .update_with("counter", |v| *v = json!(v.as_i64().unwrap_or(0) + 1));
                    tokio::task::yield_now().await;
                }
                Ok(json!({}))
            }),
        );
        g.connect(fan >> w);
    }
    let graph = g.start(fan).build().unwrap();
    let result = graph.run(Task::long_running(json!({}))).await.unwrap();
    assert_eq!(result.state["counter"], json!(WORKERS as i64 * PER_WORKER));
}

#[tokio::test]
async fn subgraph_shares_parent_state_when_asked() {
    let mut inner = Graph::builder();
    let bump = inner.add(
        "bump",
        node_fn(|ctx| async move {
            ctx.state()
                .update_with("n", |v| *v = json!(v.as_i64().unwrap_or(0) + 1));
            Ok::<_, NodeError>(json!({}))
        }),
    );
    inner.initial_state(obj(json!({ "n": 100 })));
    let inner = inner.start(bump).build().unwrap();

    for (share, expected_outer) in [(true, json!(2)), (false, json!(1))] {
        let mut outer = Graph::builder();
        let sub = outer.add(
            "sub",
            SubgraphNode::new(inner.clone()).share_parent_state(share),
        );
        outer.initial_state(obj(json!({ "n": 1 })));
        let outer = outer.start(sub).build().unwrap();
        let result = outer.run_default().await.unwrap();
        assert_eq!(result.state["n"], expected_outer, "share = {share}");
    }
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e.kind {
            EventKind::GraphStarted { .. } => "GraphStarted",
            EventKind::NodeStarted { .. } => "NodeStarted",
            EventKind::NodeFinished { .. } => "NodeFinished",
            EventKind::NodeFailed { .. } => "NodeFailed",
            EventKind::MessageSent { .. } => "MessageSent",
            EventKind::BudgetExhausted { .. } => "BudgetExhausted",
            EventKind::GraphFinished { .. } => "GraphFinished",
            _ => "other",
        })
        .collect()
}

fn two_node_graph(bus: EventBus) -> Graph {
    let mut g = Graph::builder();
    let a = g.add("a", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    let b = g.add("b", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    g.connect(a >> b);
    g.event_bus(bus);
    g.start(a).build().unwrap()
}

#[tokio::test]
async fn standard_run_publishes_events_in_order() {
    let graph = two_node_graph(EventBus::new());
    let mut rx = graph.subscribe_events();
    let result = graph.run_default().await.unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert_eq!(
        kinds(&events),
        [
            "GraphStarted",
            "NodeStarted",
            "NodeFinished",
            "NodeStarted",
            "NodeFinished",
            "GraphFinished"
        ]
    );
    assert!(events.iter().all(|e| e.run_id == events[0].run_id));
    assert_eq!(events[1].node(), Some("a"));
    assert_eq!(events[3].node(), Some("b"));
    assert!(result.output().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_running_run_publishes_message_sent_events() {
    let graph = two_node_graph(EventBus::new());
    let mut rx = graph.subscribe_events();
    graph.run(Task::long_running(json!({}))).await.unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let k = kinds(&events);
    assert_eq!(k.first(), Some(&"GraphStarted"));
    assert_eq!(k.last(), Some(&"GraphFinished"));
    assert_eq!(k.iter().filter(|k| **k == "MessageSent").count(), 1);
    assert_eq!(k.iter().filter(|k| **k == "NodeFinished").count(), 2);
}

#[tokio::test]
async fn failures_and_budgets_are_published() {
    let mut g = Graph::builder();
    let bad = g.add(
        "bad",
        node_fn(|_| async { Err::<Value, _>(NodeError::new("nope")) }),
    );
    g.event_bus(EventBus::with_replay(16));
    let graph = g.start(bad).build().unwrap();
    assert!(graph.run_default().await.is_err());
    let replay = graph.events().replay();
    assert_eq!(
        kinds(&replay),
        ["GraphStarted", "NodeStarted", "NodeFailed", "GraphFinished"]
    );
    match &replay[3].kind {
        EventKind::GraphFinished { error: Some(e), .. } => assert!(e.contains("bad")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn replay_buffer_keeps_only_the_last_n_events() {
    let graph = two_node_graph(EventBus::with_replay(3));
    graph.run_default().await.unwrap();
    let replay = graph.events().replay();
    assert_eq!(
        kinds(&replay),
        ["NodeStarted", "NodeFinished", "GraphFinished"]
    );
}

#[tokio::test]
async fn a_dropped_or_lagging_subscriber_never_blocks_the_run() {
    let graph = counter_loop(3000);
    let lagging = graph.subscribe_events(); // never read: lags past the channel capacity
    drop(graph.subscribe_events()); // dropped at once
    let result = graph
        .run(Task::new(json!({})).with_max_steps(5000))
        .await
        .unwrap();
    assert_eq!(result.content()["count"], 3000);
    assert!(!lagging.is_empty());
}

#[tokio::test]
async fn time_budget_exhaustion_is_published() {
    let mut g = Graph::builder();
    let slow = g.add(
        "slow",
        node_fn(|_| async {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            Ok::<_, NodeError>(json!({}))
        }),
    );
    g.event_bus(EventBus::with_replay(8));
    let graph = g.start(slow).build().unwrap();
    tokio::time::pause();
    let err = graph
        .run(Task::new(json!({})).with_budget(Budget::seconds(1.0).unwrap()))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(kinds(&graph.events().replay()).contains(&"BudgetExhausted"));
}

fn seed_agent() -> Graph {
    let noop = || node_fn(|_| async { Ok::<_, NodeError>(json!({})) });
    let mut g = Graph::builder();
    let sensor = g.add("sensor", noop());
    let analyzer = g.add("analyzer", noop());
    let actuator = g.add("actuator", noop());
    let log = g.add("log", noop());
    g.connect(sensor >> analyzer);
    g.connect(analyzer.on("anomaly", true) >> actuator);
    g.connect(analyzer.when("$.outputs.score < 0.5").priority(2) >> log);
    g.connect(analyzer.otherwise() >> sensor);
    g.connect(actuator >> sensor);
    g.start(sensor).build().unwrap()
}

/// Parses `nX -->|"label"| nY` / `nX --> nY` lines back into (from, to, label) by name.
fn mermaid_edges(text: &str, names: &[Arc<str>]) -> Vec<(String, String, Option<String>)> {
    text.lines()
        .filter(|l| l.contains("->"))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            let idx =
                |s: &str| names[s.trim_start_matches('n').parse::<usize>().unwrap()].to_string();
            let label = l.split('|').nth(1).map(|s| {
                s.trim_matches('"')
                    .replace("#lt;", "<")
                    .replace("#gt;", ">")
                    .replace("#quot;", "\"")
                    .replace("#124;", "|")
            });
            (idx(parts[0]), idx(parts.last().unwrap()), label)
        })
        .collect()
}

#[test]
fn mermaid_picture_matches_the_graphs_actual_edges() {
    let graph = seed_agent();
    let topology = graph.topology();
    let drawn = mermaid_edges(&graph.to_mermaid(), topology.names());
    let actual: Vec<(String, String, Option<String>)> = topology
        .edges()
        .map(|e| {
            let label = match (e.condition.label(), e.priority) {
                (None, 0) => None,
                (None, p) => Some(format!("priority {p}")),
                (Some(l), 0) => Some(l),
                (Some(l), p) => Some(format!("{l} (priority {p})")),
            };
            (
                topology.names()[e.from].to_string(),
                topology.names()[e.to].to_string(),
                label,
            )
        })
        .collect();
    assert_eq!(drawn, actual);
    assert_eq!(drawn.len(), 5);
    assert!(drawn.contains(&(
        "analyzer".into(),
        "actuator".into(),
        Some("anomaly == true".into())
    )));
    assert!(drawn.contains(&("analyzer".into(), "sensor".into(), Some("otherwise".into()))));
    assert!(
        graph.to_mermaid().contains("n0([\"sensor\"])"),
        "start node is drawn as a stadium"
    );
}

#[test]
fn dot_picture_has_one_edge_line_per_edge_and_dashes_fallbacks() {
    let graph = seed_agent();
    let dot = graph.to_dot();
    let edge_lines: Vec<&str> = dot.lines().filter(|l| l.contains("->")).collect();
    assert_eq!(edge_lines.len(), graph.topology().edges().count());
    let dashed: Vec<&&str> = edge_lines
        .iter()
        .filter(|l| l.contains("style=dashed"))
        .collect();
    assert_eq!(dashed.len(), 1);
    assert!(dashed[0].starts_with("    n1 -> n0"));
    assert!(dot.contains("label=\"$.outputs.score < 0.5 (priority 2)\""));
}

#[tokio::test]
async fn picture_agrees_with_execution_routing() {
    // The edge the picture labels `anomaly == true` is the one execution takes for such output.
    let mut g = Graph::builder();
    let analyzer = g.add(
        "analyzer",
        node_fn(|_| async { Ok::<_, NodeError>(json!({ "anomaly": true })) }),
    );
    let actuator = g.add(
        "actuator",
        node_fn(|_| async { Ok::<_, NodeError>(json!({ "acted": true })) }),
    );
    let idle = g.add(
        "idle",
        node_fn(|_| async { Ok::<_, NodeError>(json!({ "idle": true })) }),
    );
    g.connect(analyzer.on("anomaly", true) >> actuator);
    g.connect(analyzer.otherwise() >> idle);
    let graph = g.start(analyzer).build().unwrap();
    let drawn = mermaid_edges(&graph.to_mermaid(), graph.topology().names());
    let taken = graph.run_default().await.unwrap();
    let label_of_taken = drawn
        .iter()
        .find(|(_, to, _)| Some(to.as_str()) == taken.output_node())
        .and_then(|(_, _, l)| l.clone());
    assert_eq!(label_of_taken.as_deref(), Some("anomaly == true"));
}
