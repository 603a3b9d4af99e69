//! A node may process up to N messages at once (`GraphBuilder::node_concurrency`): N in flight
//! at once and never more, messages started in send order, and the counting, budget, stop and
//! grace rules unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

/// `src` sends `n` numbered messages (`{"seq": i}`, in order) to the node `w` added by `add_w`,
/// whose concurrency is `concurrency`.
fn fan_out(
    n: u64,
    concurrency: usize,
    add_w: impl FnOnce(&mut GraphBuilder) -> spark_adk_edges::NodeRef,
) -> Arc<Topology> {
    topology(|g| {
        let src = g.add("src", sequence_source(n));
        let w = add_w(g);
        g.connect(src.on("more", true) >> src);
        g.connect(src >> w);
        g.node_concurrency(w, concurrency);
        g.start(src);
    })
}

/// What a node's activation does with a message: returns the node's output.
fn worker_node<F, Fut>(f: F) -> impl Node
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = NodeResult> + Send + 'static,
{
    let f = Arc::new(f);
    node_fn(move |ctx: Context| {
        let f = Arc::clone(&f);
        async move {
            if ctx.is_shutdown() {
                return Ok(NodeMessage::new(json!({ "shutdown": true })));
            }
            f(ctx).await
        }
    })
}

fn seq_of(ctx: &Context) -> u64 {
    ctx.inputs().content["seq"].as_u64().unwrap()
}

/// Counts activations in flight and the most seen at once.
#[derive(Clone, Default)]
struct InFlight {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl InFlight {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_concurrency_three_has_three_messages_in_flight_at_once() {
    // Each activation waits at a barrier of three: the run completes only if three activations
    // of `w` are in flight together (with one at a time it would stop at the time budget).
    let barrier = Arc::new(Barrier::new(3));
    let topology = fan_out(6, 3, |g| {
        g.add(
            "w",
            worker_node(move |ctx| {
                let barrier = Arc::clone(&barrier);
                async move {
                    barrier.wait().await;
                    Ok(ctx.inputs().clone())
                }
            }),
        )
    });
    let task = task()
        .with_budget(Budget::seconds(30.0).unwrap())
        .with_grace(Duration::ZERO);
    let result = run(&topology, task).await.unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_eq!(result.metadata.per_node.get("w"), Some(6));
    assert_balanced(&result.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_never_has_more_messages_in_flight_than_its_concurrency() {
    let in_flight = InFlight::default();
    let barrier = Arc::new(Barrier::new(2));
    let seen = in_flight.clone();
    let topology = fan_out(20, 2, move |g| {
        g.add(
            "w",
            worker_node(move |ctx| {
                let (seen, barrier) = (seen.clone(), Arc::clone(&barrier));
                async move {
                    seen.enter();
                    barrier.wait().await;
                    tokio::task::yield_now().await;
                    seen.leave();
                    Ok(ctx.inputs().clone())
                }
            }),
        )
    });
    let result = run(&topology, task()).await.unwrap();

    assert_eq!(result.metadata.per_node.get("w"), Some(20));
    assert_eq!(
        in_flight.most.load(Ordering::SeqCst),
        2,
        "two at once (the barrier), never three"
    );
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn messages_start_in_send_order_and_may_finish_in_another_order() {
    // One thread: the lanes take the mailbox's messages in order. Message i sleeps (3 - i) *
    // 10 ms, so the last one sent finishes first.
    let started = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&started);
    let topology = topology(|g| {
        let src = g.add("src", sequence_source(3));
        let w = g.add(
            "w",
            worker_node(move |ctx| {
                let log = Arc::clone(&log);
                async move {
                    let seq = seq_of(&ctx);
                    log.lock().unwrap().push(seq);
                    tokio::time::sleep(Duration::from_millis((3 - seq) * 10)).await;
                    Ok(NodeMessage::new(json!({ "seq": seq })))
                }
            }),
        );
        let sink = g.add("sink", pass());
        g.connect(src.on("more", true) >> src);
        g.connect(src >> w >> sink);
        g.node_concurrency(w, 3);
        g.start(src);
    });
    let result = run(&topology, task()).await.unwrap();

    assert_eq!(*started.lock().unwrap(), [0, 1, 2], "started in send order");
    let finished: Vec<Value> = sinks(result.sink_outputs())
        .into_iter()
        .filter(|(node, _)| node == "sink")
        .map(|(_, v)| v["seq"].clone())
        .collect();
    assert_eq!(
        finished,
        [json!(2), json!(1), json!(0)],
        "finished out of order"
    );
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn with_one_lane_messages_are_processed_one_at_a_time_in_send_order() {
    let in_flight = InFlight::default();
    let order = Arc::new(Mutex::new(Vec::new()));
    let (seen, log) = (in_flight.clone(), Arc::clone(&order));
    let topology = fan_out(5, 1, move |g| {
        g.add(
            "w",
            worker_node(move |ctx| {
                let (seen, log) = (seen.clone(), Arc::clone(&log));
                async move {
                    seen.enter();
                    let seq = seq_of(&ctx);
                    tokio::time::sleep(Duration::from_millis((5 - seq) * 10)).await;
                    log.lock().unwrap().push(seq);
                    seen.leave();
                    Ok(ctx.inputs().clone())
                }
            }),
        )
    });
    run(&topology, task()).await.unwrap();

    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(in_flight.most.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn at_a_stop_every_running_message_finishes_and_the_node_gets_one_shutdown_delivery() {
    let shutdowns = counter();
    let barrier = Arc::new(Barrier::new(4));
    let (calls, gate) = (Arc::clone(&shutdowns), Arc::clone(&barrier));
    let topology = fan_out(3, 3, move |g| {
        g.add(
            "w",
            node_fn(move |ctx: Context| {
                let (calls, gate) = (Arc::clone(&calls), Arc::clone(&gate));
                async move {
                    if ctx.is_shutdown() {
                        calls.fetch_add(1, Ordering::SeqCst);
                        return Ok::<_, NodeError>(json!({}));
                    }
                    gate.wait().await;
                    ctx.stopping().await;
                    Ok(Value::clone(&ctx.inputs().content))
                }
            }),
        )
    });
    let handle = LongRunningExecutor::new()
        .spawn(topology, task().with_grace(Duration::from_secs(5)))
        .unwrap();
    barrier.wait().await; // all three in flight
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_eq!(result.metadata.per_node.get("w"), Some(3));
    assert_eq!(result.metadata.activations_dropped, 0);
    assert_eq!(count(&shutdowns), 1, "one shutdown delivery for the node");
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn at_the_end_of_the_grace_period_every_running_message_is_dropped_and_counted() {
    let shutdowns = counter();
    let barrier = Arc::new(Barrier::new(4));
    let (calls, gate) = (Arc::clone(&shutdowns), Arc::clone(&barrier));
    let topology = fan_out(3, 3, move |g| {
        g.add(
            "w",
            node_fn(move |ctx: Context| {
                let (calls, gate) = (Arc::clone(&calls), Arc::clone(&gate));
                async move {
                    if ctx.is_shutdown() {
                        calls.fetch_add(1, Ordering::SeqCst);
                        return Ok::<_, NodeError>(json!({}));
                    }
                    gate.wait().await;
                    std::future::pending::<()>().await;
                    Ok(json!({}))
                }
            }),
        )
    });
    let handle = LongRunningExecutor::new()
        .spawn(topology, task().with_grace(Duration::from_secs(1)))
        .unwrap();
    barrier.wait().await;
    let stopped = Instant::now();
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();

    assert_eq!(stopped.elapsed(), Duration::from_secs(1));
    assert_eq!(result.metadata.activations_dropped, 3);
    assert_eq!(result.metadata.per_node.get("w"), Some(0));
    assert_eq!(result.metadata.unprocessed, 3);
    assert_eq!(
        count(&shutdowns),
        0,
        "no shutdown delivery after the grace period"
    );
    assert_balanced(&result.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_budget_stops_new_starts_while_n_messages_are_in_flight() {
    // Four lanes, all busy until the fourth recorded its tokens (the barrier): then 40 >= 35,
    // and no fifth message starts.
    let barrier = Arc::new(Barrier::new(4));
    let topology = fan_out(10, 4, move |g| {
        g.add(
            "w",
            worker_node(move |ctx| {
                let barrier = Arc::clone(&barrier);
                async move {
                    ctx.record_tokens(10);
                    barrier.wait().await;
                    Ok(ctx.inputs().clone())
                }
            }),
        )
    });
    let task = task().with_budget(Budget::tokens(35).unwrap());
    let result = run(&topology, task).await.unwrap();

    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Tokens)
    );
    assert_eq!(result.metadata.per_node.get("w"), Some(4));
    assert_eq!(result.metadata.tokens_used, 40);
    assert_balanced(&result.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_of_n_messages_fails_the_run_and_the_others_finish() {
    let shutdowns = counter();
    let barrier = Arc::new(Barrier::new(3));
    let (calls, gate) = (Arc::clone(&shutdowns), Arc::clone(&barrier));
    let topology = fan_out(3, 3, move |g| {
        g.add(
            "w",
            node_fn(move |ctx: Context| {
                let (calls, gate) = (Arc::clone(&calls), Arc::clone(&gate));
                async move {
                    if ctx.is_shutdown() {
                        calls.fetch_add(1, Ordering::SeqCst);
                        return Ok::<_, NodeError>(json!({}));
                    }
                    gate.wait().await;
                    if seq_of(&ctx) == 1 {
                        panic!("message 1 breaks");
                    }
                    ctx.stopping().await;
                    Ok(Value::clone(&ctx.inputs().content))
                }
            }),
        )
    });
    let error = run(&topology, task()).await.unwrap_err();

    match &error {
        RunError::NodePanicked { node, message, .. } => {
            assert_eq!(node, "w");
            assert!(message.contains("message 1 breaks"), "{message}");
        }
        other => panic!("expected NodePanicked, got {other:?}"),
    }
    let counts = counts_of(&error);
    assert_eq!(
        counts.processed,
        3 + 3,
        "src three times, and all three of w"
    );
    assert_counts_balanced(&counts);
    assert_eq!(
        count(&shutdowns),
        0,
        "a failed node gets no shutdown delivery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_of_full_mailboxes_with_several_lanes_per_node_is_a_deadlock() {
    for _ in 0..10 {
        let topology = topology(|g| {
            let a = g.add("a", pass());
            let b = g.add("b", pass());
            g.connect(a >> b);
            // `b` doubles every message: the cycle fills up.
            g.connect(b >> a);
            g.connect(b >> a);
            g.mailbox_capacity(1);
            g.node_concurrency(a, 2);
            g.node_concurrency(b, 3);
            g.start(a);
        });
        let error = run(&topology, task()).await.unwrap_err();
        match &error {
            RunError::Deadlock { blocked, .. } => {
                let mut blocked = blocked.clone();
                blocked.sort();
                assert_eq!(blocked, ["a", "b"]);
            }
            other => panic!("expected Deadlock, got {other:?}"),
        }
        assert_counts_balanced(&counts_of(&error));
    }
}

#[test]
fn a_concurrency_of_zero_is_an_error_when_the_graph_is_built() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", pass());
    g.node_concurrency(a, 0);
    let error = g.start(a).build().unwrap_err();
    assert_eq!(
        error.errors(),
        [spark_adk_edges::BuildError::InvalidConcurrency {
            node: "a".to_owned()
        }]
    );
}
