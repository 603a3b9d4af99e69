//! `MapNode`: a parallel map over the items of a list, as a node, in both modes. Paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use spark_adk::crates::sequential::SequentialExecutor;
use spark_adk::prelude::*;
use spark_adk::{find_cause, CancellationToken, MapError, RunScope};
use tokio::time::Instant;

/// `n -> 3n + 1` after sleeping `delay(n)`; fails for multiples of 7 when `fail_sevens`.
fn triple(delay: fn(i64) -> Duration, fail_sevens: bool) -> impl Node {
    node_fn(move |ctx: Context| async move {
        let n = ctx.inputs().content.as_i64().unwrap_or(0);
        tokio::time::sleep(delay(n)).await;
        if fail_sevens && n % 7 == 0 {
            return Err(NodeError::new(format!("{n} is a multiple of 7")));
        }
        Ok(json!(3 * n + 1))
    })
}

fn graph_of(map: MapNode) -> Graph {
    let mut g = Graph::builder();
    let m = g.add("map", map);
    g.start(m).build().unwrap()
}

fn map_error(err: &RunError) -> &MapError {
    let RunError::NodeFailed { node, source, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(node, "map");
    find_cause::<MapError>(source).expect("a MapError")
}

#[tokio::test(start_paused = true)]
async fn results_come_back_in_input_order_when_later_items_finish_first() {
    // Item n sleeps (10 - n) ms: the last item finishes first.
    let node = triple(|n| Duration::from_millis(10 - n as u64), false);
    let graph = graph_of(MapNode::over_node(node).concurrency(10));
    let result = graph
        .run_with(json!((0..10).collect::<Vec<_>>()))
        .await
        .unwrap();
    let expected: Vec<i64> = (0..10).map(|n| 3 * n + 1).collect();
    assert_eq!(result.content()["results"], json!(expected));
}

/// A node that notes how many of its activations run at once.
fn gauge(running: &Arc<AtomicUsize>, peak: &Arc<AtomicUsize>) -> impl Node {
    let (running, peak) = (Arc::clone(running), Arc::clone(peak));
    node_fn(move |_ctx| {
        let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, NodeError>(json!(null))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn at_most_the_concurrency_limit_of_items_run_at_once() {
    let (running, peak) = (Arc::default(), Arc::default());
    let graph = graph_of(MapNode::over_node(gauge(&running, &peak)).concurrency(3));
    let started = Instant::now();
    graph.run_with(json!(vec![0; 10])).await.unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(40),
        "10 items of 10 ms, 3 at a time"
    );
}

#[tokio::test(start_paused = true)]
async fn an_items_failure_fails_the_map_naming_the_items_index_and_no_later_item_starts() {
    let started = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&started);
    let node = node_fn(move |ctx: Context| {
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            let n = ctx.inputs().content.as_i64().unwrap_or(0);
            if n == 2 {
                return Err(NodeError::new("bad document"));
            }
            Ok(json!(n))
        }
    });
    let graph = graph_of(MapNode::over_node(node));
    let err = graph.run_with(json!([0, 1, 2, 3, 4])).await.unwrap_err();
    assert!(matches!(
        map_error(&err),
        MapError::ItemFailed { index: 2, .. }
    ));
    assert_eq!(
        err.to_string(),
        "node `map` failed: map `map` failed at item 2: node `item` failed: bad document"
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        3,
        "items 3 and 4 never started"
    );
}

#[tokio::test(start_paused = true)]
async fn collect_mode_runs_every_item_and_lists_each_failure_by_index() {
    let graph = graph_of(
        MapNode::over_node(triple(|_| Duration::from_millis(1), true))
            .concurrency(4)
            .on_item_error(OnItemError::Collect),
    );
    let result = graph.run_with(json!([1, 7, 2, 14, 3])).await.unwrap();
    assert_eq!(result.content()["results"], json!([4, null, 7, null, 10]));
    let errors = result.content()["errors"].as_array().unwrap();
    let indices: Vec<_> = errors.iter().map(|e| e["index"].clone()).collect();
    assert_eq!(indices, vec![json!(1), json!(3)]);
    assert!(errors[0]["error"]
        .as_str()
        .unwrap()
        .contains("7 is a multiple of 7"));
}

#[tokio::test(start_paused = true)]
async fn a_map_over_a_non_list_is_an_error_at_the_node_saying_what_it_found() {
    let graph = graph_of(MapNode::over_node(triple(|_| Duration::ZERO, false)).items_at("docs"));
    let err = graph
        .run_with(json!({ "docs": "not a list" }))
        .await
        .unwrap_err();
    assert!(matches!(
        map_error(&err),
        MapError::NotAList {
            found: "a string",
            ..
        }
    ));
    assert_eq!(
        map_error(&err).to_string(),
        "map `map`: the input content at `docs` is not a list but a string"
    );
    let err = graph.run_with(json!({ "other": [] })).await.unwrap_err();
    assert!(matches!(
        map_error(&err),
        MapError::NotAList { found: "null", .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_of_zero_is_an_error_at_the_node() {
    let graph = graph_of(MapNode::over_node(triple(|_| Duration::ZERO, false)).concurrency(0));
    let err = graph.run_with(json!([1])).await.unwrap_err();
    assert!(matches!(map_error(&err), MapError::ZeroConcurrency { .. }));
}

#[tokio::test(start_paused = true)]
async fn items_are_found_at_a_dollar_path_and_an_empty_list_gives_no_results() {
    let graph = graph_of(
        MapNode::over_node(triple(|_| Duration::ZERO, false))
            .items_at("$.batch.docs")
            .output_key("summaries"),
    );
    let result = graph
        .run_with(json!({ "batch": { "docs": [5] } }))
        .await
        .unwrap();
    assert_eq!(result.content()["summaries"], json!([16]));
    let result = graph
        .run_with(json!({ "batch": { "docs": [] } }))
        .await
        .unwrap();
    assert_eq!(result.content()["summaries"], json!([]));
}

#[tokio::test(start_paused = true)]
async fn a_map_over_an_inner_graph_runs_the_whole_graph_per_item() {
    let mut inner = Graph::builder();
    let double = inner.add(
        "double",
        node_fn(|ctx| async move {
            Ok::<_, NodeError>(json!({ "n": ctx.inputs().content["n"].as_i64().unwrap_or(0) * 2 }))
        }),
    );
    let label = inner.add(
        "label",
        node_fn(|ctx| async move {
            let n = ctx.inputs().content["n"].as_i64().unwrap_or(0);
            Ok::<_, NodeError>(json!(format!("#{n}")))
        }),
    );
    inner.connect(double >> label);
    let inner = inner.start(double).build().unwrap();
    let graph = graph_of(MapNode::over_graph(inner).items_at("items").concurrency(2));
    let result = graph
        .run_with(json!({ "items": [{ "n": 1 }, { "n": 2 }] }))
        .await
        .unwrap();
    assert_eq!(result.content()["results"], json!(["#2", "#4"]));
    let counts = &result.output().unwrap().metadata["map"];
    assert_eq!(
        counts,
        &json!({ "items": 2, "failed": 0, "activations": 4 })
    );
}

/// Records `tokens` per item.
fn spender(tokens: u64, calls: &Arc<AtomicUsize>) -> impl Node {
    let calls = Arc::clone(calls);
    node_fn(move |ctx: Context| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            ctx.record_tokens(tokens);
            Ok::<_, NodeError>(json!(ctx.inputs().metadata["map_index"].clone()))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn tokens_of_every_item_roll_up_into_the_parent_run() {
    let calls = Arc::new(AtomicUsize::new(0));
    let graph = graph_of(MapNode::over_node(spender(7, &calls)).concurrency(2));
    let result = graph.run_with(json!([0, 0, 0, 0])).await.unwrap();
    assert_eq!(result.metadata.tokens_used, 28);
    assert_eq!(
        result.content()["results"],
        json!([0, 1, 2, 3]),
        "each item sees its index"
    );
}

#[tokio::test(start_paused = true)]
async fn no_item_starts_once_the_token_budget_is_used_up() {
    let calls = Arc::new(AtomicUsize::new(0));
    let graph = graph_of(MapNode::over_node(spender(10, &calls)));
    let task = Task::new(json!(vec![0; 10])).with_budget(Budget::tokens(25).unwrap());
    let err = graph.run(task).await.unwrap_err();
    assert!(
        matches!(
            map_error(&err),
            MapError::Stopped {
                not_started: 7,
                total: 10,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(err.counts().unwrap().tokens_used, 30);
}

#[tokio::test(start_paused = true)]
async fn the_runs_cancellation_reaches_every_running_item() {
    let seen = Arc::new(AtomicUsize::new(0));
    let watcher = Arc::clone(&seen);
    let item = node_fn(move |ctx: Context| {
        let token = ctx.cancellation().clone();
        let watcher = Arc::clone(&watcher);
        tokio::spawn(async move {
            token.cancelled().await;
            watcher.fetch_add(1, Ordering::SeqCst);
        });
        async move {
            std::future::pending::<()>().await;
            Ok::<_, NodeError>(json!(null))
        }
    });
    let graph = graph_of(MapNode::over_node(item).concurrency(3));
    let token = CancellationToken::new();
    let scope = RunScope::with_cancellation(None, token.clone());
    let cancel = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        token.cancel();
    };
    let (outcome, ()) = tokio::join!(
        SequentialExecutor::new().run_scoped(
            graph.topology(),
            json!([1, 2, 3, 4]).into(),
            None,
            scope
        ),
        cancel,
    );
    assert!(
        matches!(outcome, Err(RunError::Cancelled { .. })),
        "{outcome:?}"
    );
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "the three running items saw the cancellation"
    );
}

#[tokio::test(start_paused = true)]
async fn a_map_works_as_a_node_of_a_long_running_graph() {
    let graph = graph_of(
        MapNode::over_node(triple(|n| Duration::from_millis(n as u64), false)).concurrency(2),
    );
    let result = graph
        .run(Task::long_running(json!([3, 1, 2])))
        .await
        .unwrap();
    assert_eq!(result.content()["results"], json!([10, 4, 7]));
}

#[tokio::test(start_paused = true)]
async fn no_item_starts_after_a_long_running_stop_began() {
    // One item at a time, 1 s each; the time budget ends at 1.5 s, while item 1 runs.
    let node = triple(|_| Duration::from_secs(1), false);
    let graph = graph_of(MapNode::over_node(node));
    let task =
        Task::long_running(json!([1, 2, 3, 4, 5])).with_budget(Budget::seconds(1.5).unwrap());
    let err = graph.run(task).await.unwrap_err();
    assert!(
        matches!(
            map_error(&err),
            MapError::Stopped {
                not_started: 3,
                total: 5,
                ..
            }
        ),
        "{err}"
    );
}

/// Runs `f` on a current-thread runtime with a paused clock (for proptest bodies).
fn paused<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_map_returns_what_a_sequential_loop_returns(
        items in proptest::collection::vec(-50i64..50, 0..40),
        concurrency in 1usize..8,
        collect in any::<bool>(),
    ) {
        // Items take (n mod 5) ms, so completion order differs from input order.
        let delay: fn(i64) -> Duration = |n| Duration::from_millis(n.rem_euclid(5) as u64);
        let mode = if collect { OnItemError::Collect } else { OnItemError::Fail };
        let graph = graph_of(
            MapNode::over_node(triple(delay, true)).concurrency(concurrency).on_item_error(mode),
        );
        let outcome = paused(graph.run_with(json!(items.clone())));

        // The sequential loop.
        let expected: Vec<Result<i64, String>> = items
            .iter()
            .map(|&n| if n % 7 == 0 { Err(format!("{n} is a multiple of 7")) } else { Ok(3 * n + 1) })
            .collect();
        let first_failure = expected.iter().position(Result::is_err);
        match (collect, first_failure) {
            (false, Some(index)) => {
                let err = outcome.unwrap_err();
                let is_first = matches!(map_error(&err), MapError::ItemFailed { index: i, .. } if *i == index);
                // Concurrent items may fail in another order; the failure named is one of them.
                let failed = matches!(map_error(&err), MapError::ItemFailed { index: i, .. } if expected[*i].is_err());
                prop_assert!(failed, "{err}");
                if concurrency == 1 {
                    prop_assert!(is_first, "{err}");
                }
            }
            _ => {
                let result = outcome.unwrap();
                let results: Vec<Value> = expected
                    .iter()
                    .map(|r| r.as_ref().map_or(Value::Null, |v| json!(v)))
                    .collect();
                prop_assert_eq!(&result.content()["results"], &json!(results));
                if collect {
                    let errors: Vec<Value> = expected
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| r.as_ref().err().map(|e| {
                            json!({ "index": i, "error": format!("node `item` failed: {e}") })
                        }))
                        .collect();
                    prop_assert_eq!(&result.content()["errors"], &json!(errors));
                }
            }
        }
    }
}
