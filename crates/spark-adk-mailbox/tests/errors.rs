//! Node errors and panics in long-running mode: the run ends with the error naming the node, the
//! other workers stop gracefully.
//!
//! Time-dependent tests use a paused, auto-advancing clock (`start_paused = true`), so they
//! never sleep in real time. Every test that gets a result checks the accounting identity
//! `accepted == processed + unprocessed` (counted by the runtime, not computed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

// Errors (section 5)
// ---------------------------------------------------------------------------------------------

/// A graph where `start` feeds `bad` and an endless `tick`/`tock` cycle: without a stop on
/// `bad`'s failure the run would never end (no budget, never quiescent).
fn graph_with_failing_node(bad: impl Node, calls: &Calls) -> Topology {
    let mut g = Graph::builder();
    let start = g.add("start", echo(calls, "start"));
    let bad = g.add("bad", bad);
    let tick = g.add("tick", echo(calls, "tick"));
    let tock = g.add("tock", pass());
    g.connect(start >> bad);
    g.connect(start >> tick);
    g.connect(tick >> tock >> tick);
    g.start(start).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_error_stops_the_run_and_names_the_node() {
    let calls = Calls::default();
    let bad = node_fn(|_ctx: Context| async move {
        Err::<Value, _>(NodeError::with_source(
            "disk on fire",
            std::io::Error::other("EIO"),
        ))
    });
    let graph = graph_with_failing_node(bad, &calls);

    let err = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
        .await
        .expect("the node error did not stop the run")
        .unwrap_err();

    match &err {
        RunError::NodeFailed { node, source, .. } => {
            assert_eq!(node, "bad");
            assert_eq!(source.message(), "disk on fire");
        }
        other => panic!("expected NodeFailed, got {other:?}"),
    }
    assert_eq!(err.node(), Some("bad"));
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("disk on fire"));
}

/// A node that panics on its data call, before or after an `.await`.
fn panicking(after_await: bool) -> impl Node {
    node_fn(move |ctx: Context| async move {
        if ctx.is_shutdown() {
            return Ok::<_, NodeError>(json!({}));
        }
        if after_await {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("node blew up (after await: {after_await})");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_panic_stops_the_run_and_names_the_node() {
    for after_await in [false, true] {
        let calls = Calls::default();
        let graph = graph_with_failing_node(panicking(after_await), &calls);

        let err = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
            .await
            .expect("the panic did not stop the run")
            .unwrap_err();

        match &err {
            RunError::NodePanicked { node, message, .. } => {
                assert_eq!(node, "bad");
                assert_eq!(
                    message,
                    &format!("node blew up (after await: {after_await})")
                );
            }
            other => panic!("expected NodePanicked, got {other:?}"),
        }
        // The other workers were stopped gracefully.
        assert_eq!(calls.shutdowns("start"), 1);
        assert_eq!(calls.shutdowns("tick"), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_worker_gets_no_shutdown_delivery_but_others_do() {
    let calls = Calls::default();
    let bad = probe(&calls, "bad", |_| json!({}));
    // `bad` records its calls, then fails on data: wrap it.
    let bad = {
        let bad = Arc::new(bad);
        node_fn(move |ctx: Context| {
            let bad = Arc::clone(&bad);
            async move {
                bad.process(&ctx).await?;
                if ctx.is_shutdown() {
                    Ok::<Value, NodeError>(json!({}))
                } else {
                    Err(NodeError::new("refused"))
                }
            }
        })
    };
    let graph = graph_with_failing_node(bad, &calls);

    let err = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
        .await
        .expect("the node error did not stop the run")
        .unwrap_err();

    assert_eq!(err.node(), Some("bad"));
    assert_eq!(calls.data("bad").len(), 1);
    assert_eq!(
        calls.shutdowns("bad"),
        0,
        "the failed worker got a shutdown delivery"
    );
    assert_eq!(calls.shutdowns("start"), 1);
    assert_eq!(calls.shutdowns("tick"), 1);
}

#[tokio::test]
async fn condition_predicate_panic_names_the_edge() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let b = g.add("b", pass());
    let c = g.add("c", pass());
    g.connect(a >> c);
    g.connect(a.when_fn(|_| panic!("predicate exploded")) >> b);
    let graph = g.start(a).build().unwrap();

    let err = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
        .await
        .expect("the predicate panic did not end the run")
        .unwrap_err();

    match err {
        RunError::ConditionPanicked {
            from, to, message, ..
        } => {
            assert_eq!((from.as_str(), to.as_str()), ("a", "b"));
            assert_eq!(message, "predicate exploded");
        }
        other => panic!("expected ConditionPanicked, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
