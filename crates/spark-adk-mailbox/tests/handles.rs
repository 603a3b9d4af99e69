//! Spawned runs and their handles: sending, subscribing, dropping, detaching; invalid tasks and
//! concurrent runs.
//!
//! Time-dependent tests use a paused, auto-advancing clock (`start_paused = true`), so they
//! never sleep in real time. Every test that gets a result checks the accounting identity
//! `accepted == processed + unprocessed` (counted by the runtime, not computed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

// Run handles (section 7, section 9)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn spawned_run_processes_messages_sent_through_the_handle() {
    let calls = Calls::default();
    let mut g = Graph::builder();
    let start = g.add("start", echo(&calls, "start"));
    let _worker = g.add(
        "worker",
        probe(
            &calls,
            "worker",
            |v| json!({ "doubled": v["n"].as_i64().unwrap_or(0) * 2 }),
        ),
    );
    let graph = g.start(start).build().unwrap();

    let handle = graph
        .spawn(Task::long_running(json!({ "hello": 1 })))
        .unwrap();
    let mut outputs = handle.subscribe();
    for n in 1..=3 {
        handle.send("worker", json!({ "n": n })).await.unwrap();
    }
    let mut doubled = Vec::new();
    while doubled.len() < 3 {
        let out = outputs.recv().guarded().await.unwrap();
        if out.node.as_ref() == "worker" {
            doubled.push(out.message.content["doubled"].as_i64().unwrap());
        }
    }
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();

    assert_eq!(doubled, [2, 4, 6]);
    assert_eq!(
        calls.data("worker"),
        [json!({ "n": 1 }), json!({ "n": 2 }), json!({ "n": 3 })]
    );
    assert_eq!(result.metadata.processed_by("worker"), Some(3));
    assert_eq!(result.metadata.processed_by("start"), Some(1));
    assert_eq!(result.metadata.accepted, 4);
    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_balanced(&result.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_can_keep_only_its_most_recent_sink_outputs() {
    const N: u64 = 100;
    let mut g = Graph::builder();
    let src = g.add("src", sequence_source(N));
    let out = g.add("out", pass());
    g.connect(src >> out);
    g.connect(src.on("more", true) >> src);
    let graph = g.start(src).build().unwrap();

    let result = LongRunningExecutor::new()
        .sink_retention(SinkRetention::Last(3))
        .run(Arc::new(graph.clone()), Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    let kept: Vec<u64> = result
        .sink_outputs()
        .iter()
        .map(|s| s.message.content["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [N - 3, N - 2, N - 1]);
    assert_eq!(result.content()["seq"], N - 1);
    assert_eq!(result.metadata.sink_outputs_discarded, N - 3);
    assert_eq!(result.metadata.processed_by("out"), Some(N));
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn every_sink_output_is_kept_by_default() {
    const N: u64 = 50;
    let mut g = Graph::builder();
    let src = g.add("src", sequence_source(N));
    let out = g.add("out", pass());
    g.connect(src >> out);
    g.connect(src.on("more", true) >> src);
    let graph = g.start(src).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    assert_eq!(result.sink_outputs().len() as u64, N);
    assert_eq!(result.metadata.sink_outputs_discarded, 0);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn subscribers_see_sink_outputs() {
    let mut g = Graph::builder();
    let shout = g.add(
        "shout",
        node_fn(|ctx: Context| async move {
            let text = ctx.inputs().content["text"]
                .as_str()
                .unwrap_or("")
                .to_uppercase();
            Ok::<_, NodeError>(json!({ "reply": text }))
        }),
    );
    let relay = g.add("relay", pass());
    g.connect(relay >> shout);
    let graph = g.start(shout).build().unwrap();

    let handle = graph
        .spawn(Task::long_running(json!({ "text": "hi" })))
        .unwrap();
    let mut first = handle.subscribe();
    let mut second = handle.subscribe();
    handle
        .send("relay", json!({ "text": "hello" }))
        .await
        .unwrap();
    handle
        .send("shout", json!({ "text": "bye" }))
        .await
        .unwrap();

    for rx in [&mut first, &mut second] {
        let mut got = Vec::new();
        for _ in 0..3 {
            let out = rx.recv().guarded().await.unwrap();
            got.push((out.node.to_string(), out.message.content["reply"].clone()));
        }
        got.sort_by_key(|(_, r)| r.to_string());
        assert_eq!(
            got,
            [
                ("shout".to_owned(), json!("BYE")),
                ("shout".to_owned(), json!("HELLO")),
                ("shout".to_owned(), json!("HI")),
            ]
        );
    }
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();
    // Routed outputs (relay -> shout) are not sink outputs.
    assert_eq!(result.sink_outputs().len(), 3);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_workers() {
    let shut = Arc::new(Notify::new());
    let shutdowns = counter();
    let node = |shut: &Arc<Notify>, shutdowns: &Arc<AtomicUsize>| {
        let (shut, shutdowns) = (Arc::clone(shut), Arc::clone(shutdowns));
        node_fn(move |ctx: Context| {
            let (shut, shutdowns) = (Arc::clone(&shut), Arc::clone(&shutdowns));
            async move {
                if ctx.is_shutdown() {
                    shutdowns.fetch_add(1, Ordering::SeqCst);
                    shut.notify_one();
                }
                Ok::<_, NodeError>(ctx.inputs().clone())
            }
        })
    };
    let mut g = Graph::builder();
    let a = g.add("a", node(&shut, &shutdowns));
    let graph = g.start(a).build().unwrap();

    let handle = graph.spawn(Task::long_running(json!({}))).unwrap();
    let mut outputs = handle.subscribe();
    outputs.recv().guarded().await.unwrap(); // the task input was processed
    assert!(!handle.is_stopping());
    assert_eq!(count(&shutdowns), 0);

    drop(handle);

    tokio::time::timeout(GUARD, shut.notified())
        .await
        .expect("dropping the handle did not stop the worker");
    assert_eq!(count(&shutdowns), 1);
    // The worker exited: the output channel closes once the run is over.
    let closed = tokio::time::timeout(GUARD, async {
        loop {
            if let Err(tokio::sync::broadcast::error::RecvError::Closed) =
                outputs.recv().guarded().await
            {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the run's output channel never closed");
}

#[tokio::test(start_paused = true)]
async fn spawned_run_does_not_end_at_quiescence_by_default() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let handle = graph.spawn(Task::long_running(json!({ "n": 0 }))).unwrap();
    let mut outputs = handle.subscribe();
    assert_eq!(
        outputs.recv().guarded().await.unwrap().message.content["n"],
        0
    );
    // Quiescent now; an hour of (virtual) time later it is still running.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!handle.is_stopping());
    handle.send("a", json!({ "n": 1 })).await.unwrap();
    assert_eq!(
        outputs.recv().guarded().await.unwrap().message.content["n"],
        1
    );

    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();
    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_eq!(result.metadata.processed, 2);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn spawned_run_can_opt_into_quiescence() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let handle = LongRunningExecutor::new()
        .stop_on_quiescence(true)
        .spawn(
            Arc::new(graph.clone()),
            Task::long_running(json!({ "n": 5 })),
        )
        .unwrap();
    let result = tokio::time::timeout(GUARD, handle.wait())
        .await
        .expect("the run did not end at quiescence")
        .unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_eq!(result.content(), &json!({ "n": 5 }));
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn run_without_budget_and_without_quiescence_is_rejected() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let err = LongRunningExecutor::new()
        .stop_on_quiescence(false)
        .run(Arc::new(graph.clone()), Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap_err();

    assert!(matches!(err, RunError::InvalidTask(_)), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn run_without_quiescence_but_with_budget_ends_at_the_budget() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let result = LongRunningExecutor::new()
        .stop_on_quiescence(false)
        .run(
            Arc::new(graph.clone()),
            Task::long_running(json!({})).with_budget(Budget::seconds(2.0).unwrap()),
        )
        .guarded()
        .await
        .unwrap();

    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    assert_eq!(result.metadata.elapsed, Duration::from_secs(2));
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn ack_hook_fires_once_the_receiver_finished_processing() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let node = {
        let log = Arc::clone(&log);
        node_fn(move |ctx: Context| {
            let log = Arc::clone(&log);
            async move {
                if !ctx.is_shutdown() {
                    log.lock()
                        .unwrap()
                        .push(format!("process {}", ctx.inputs().content["n"]));
                    tokio::task::yield_now().await;
                    log.lock()
                        .unwrap()
                        .push(format!("finish {}", ctx.inputs().content["n"]));
                }
                Ok::<_, NodeError>(ctx.inputs().clone())
            }
        })
    };
    let mut g = Graph::builder();
    let a = g.add("a", node);
    let graph = g.start(a).build().unwrap();

    let handle = graph.spawn(Task::long_running(json!({ "n": 0 }))).unwrap();
    let mut outputs = handle.subscribe();
    let (acked_tx, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let ack = {
        let log = Arc::clone(&log);
        AckHook::new(move || {
            log.lock().unwrap().push("ack 1".to_owned());
            let _ = acked_tx.send(());
        })
    };
    handle
        .send_channel("a", ChannelMessage::new(json!({ "n": 1 })).with_ack(ack))
        .await
        .unwrap();
    tokio::time::timeout(GUARD, acked.recv())
        .await
        .expect("the ack hook never fired")
        .unwrap();
    outputs.recv().guarded().await.unwrap();
    outputs.recv().guarded().await.unwrap();
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();

    assert_eq!(
        *log.lock().unwrap(),
        ["process 0", "finish 0", "process 1", "finish 1", "ack 1"]
    );
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_stops_the_workers_gracefully() {
    let (shut_tx, mut shut) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let node = |name: &'static str| {
        let shut_tx = shut_tx.clone();
        node_fn(move |ctx: Context| {
            let shut_tx = shut_tx.clone();
            async move {
                if ctx.is_shutdown() {
                    let _ = shut_tx.send(name);
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok::<_, NodeError>(ctx.inputs().clone())
            }
        })
    };
    let mut g = Graph::builder();
    let a = g.add("a", node("a"));
    let b = g.add("b", node("b"));
    g.connect(a >> b >> a);
    let graph = g.start(a).build().unwrap();

    // An endless cycle without budget: only dropping the future ends it.
    let run = graph.run(Task::long_running(json!({})));
    assert!(tokio::time::timeout(Duration::from_secs(1), run)
        .await
        .is_err());

    let mut stopped = Vec::new();
    while stopped.len() < 2 {
        let name = tokio::time::timeout(GUARD, shut.recv())
            .await
            .expect("the workers were not stopped after the run future was dropped")
            .unwrap();
        stopped.push(name);
    }
    stopped.sort_unstable();
    assert_eq!(stopped, ["a", "b"]);
}

#[test]
fn spawn_outside_a_tokio_runtime_is_rejected() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let err = graph.spawn(Task::long_running(json!({}))).unwrap_err();

    assert!(matches!(err, RunError::InvalidTask(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Invalid tasks (section 7)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn standard_task_is_rejected_by_spawn() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let err = graph.spawn(Task::new(json!({}))).unwrap_err();

    assert!(matches!(err, RunError::InvalidTask(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Concurrent runs (section 7)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_do_not_share_mailboxes_or_budgets() {
    // run id -> the run tags its activations saw.
    let seen: Arc<Mutex<BTreeMap<u64, Vec<String>>>> = Arc::default();
    let both_started = Arc::new(Barrier::new(2));
    let looper = {
        let (seen, both_started) = (Arc::clone(&seen), Arc::clone(&both_started));
        node_fn(move |ctx: Context| {
            let (seen, both_started) = (Arc::clone(&seen), Arc::clone(&both_started));
            async move {
                if ctx.is_shutdown() {
                    return Ok::<_, NodeError>(json!({}));
                }
                let tag = ctx.inputs().content["run"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                let round = ctx.inputs().content["round"].as_u64().unwrap_or(0);
                if round == 0 {
                    // Both runs are in flight at the same time.
                    both_started.wait().await;
                }
                seen.lock()
                    .unwrap()
                    .entry(ctx.run_id())
                    .or_default()
                    .push(tag.clone());
                ctx.record_tokens(1);
                tokio::task::yield_now().await;
                Ok(json!({ "run": tag, "round": round + 1 }))
            }
        })
    };
    let mut g = Graph::builder();
    let l = g.add("loop", looper);
    g.connect(l >> l);
    let graph = g.start(l).build().unwrap();

    let task_a = Task::long_running(json!({ "run": "A" })).with_budget(Budget::tokens(5).unwrap());
    let task_b = Task::long_running(json!({ "run": "B" })).with_budget(Budget::tokens(40).unwrap());
    let (a, b) = async { tokio::join!(graph.run(task_a), graph.run(task_b)) }
        .guarded()
        .await;
    let (a, b) = (a.unwrap(), b.unwrap());

    for (result, tokens) in [(&a, 5), (&b, 40)] {
        assert_eq!(
            result.metadata.stop_reason,
            StopReason::Budget(BudgetKind::Tokens)
        );
        assert_eq!(result.metadata.tokens_used, tokens);
        assert_eq!(result.metadata.processed_by("loop"), Some(tokens));
        assert_balanced(&result.metadata);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "two runs, two run ids");
    let mut tags: Vec<(String, usize)> = seen
        .values()
        .map(|tags| {
            assert!(
                tags.iter().all(|t| t == &tags[0]),
                "a run saw the other's messages: {tags:?}"
            );
            (tags[0].clone(), tags.len())
        })
        .collect();
    tags.sort();
    assert_eq!(tags, [("A".to_owned(), 5), ("B".to_owned(), 40)]);
}

// ---------------------------------------------------------------------------------------------

// The handle's papercuts (issue 11, item 8): first output, waiting while sending, finished
// ---------------------------------------------------------------------------------------------

/// A graph whose start node `a` returns its input (a sink output).
fn one_pass_node() -> Topology {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    g.start(a).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_spawned_runs_first_output_reaches_a_subscriber_that_subscribes_after_it_was_produced() {
    let graph = one_pass_node();
    let handle = graph.spawn(Task::long_running(json!({ "n": 0 }))).unwrap();
    // The paused clock advances only once every task is idle: the start node has run and its
    // output is a sink output before anyone subscribes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut outputs = handle.subscribe();

    let first = outputs
        .try_recv()
        .expect("the first output was lost to a late subscribe");
    assert_eq!(first.message.content["n"], 0);
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();
    assert_eq!(result.metadata.processed, 1);
    assert_balanced(&result.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_right_after_spawn_never_misses_the_first_output() {
    let graph = one_pass_node();
    for _ in 0..5 {
        let handle = graph.spawn(Task::long_running(json!({ "n": 0 }))).unwrap();
        let mut outputs = handle.subscribe();
        let first = outputs.recv().guarded().await.unwrap();
        assert_eq!(first.message.content["n"], 0);
        handle.shutdown();
        handle.wait().guarded().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_subscriber_sees_every_output_exactly_once_whenever_it_subscribes() {
    const N: u64 = 300;
    let graph = sequence_of(N);
    for delay in [0, 1, 10, 100, 1000] {
        let handle = graph
            .spawn(Task::long_running(json!({})).with_quiescence(true))
            .unwrap();
        // Subscribes at some point of the stream: before, during or after it.
        for _ in 0..delay {
            tokio::task::yield_now().await;
        }
        let mut outputs = handle.subscribe();
        let result = handle.wait().guarded().await.unwrap();

        let mut seen = Vec::new();
        while let Ok(out) = outputs.try_recv() {
            seen.push(out.message.content["seq"].as_u64().unwrap());
        }
        assert_eq!(
            seen,
            (0..N).collect::<Vec<_>>(),
            "subscribed after {delay} yields"
        );
        assert_eq!(result.sink_outputs().len() as u64, N);
    }
}

#[tokio::test(start_paused = true)]
async fn a_late_first_subscriber_gets_what_the_retention_kept_then_the_rest() {
    let graph = one_pass_node();
    let task = Task::long_running(json!({ "n": 0 })).with_sink_retention(SinkRetention::Last(2));
    let handle = graph.spawn(task).unwrap();
    for n in 1..=4 {
        handle.send("a", json!({ "n": n })).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // all five are sink outputs by now
    let mut outputs = handle.subscribe();
    handle.send("a", json!({ "n": 5 })).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(outputs.recv().guarded().await.unwrap().message.content["n"].clone());
    }
    assert_eq!(got, [json!(3), json!(4), json!(5)]);
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();
    assert_eq!(result.metadata.sink_outputs_discarded, 4);
    assert!(outputs.try_recv().is_err(), "an output was delivered twice");
}

#[tokio::test]
async fn a_sender_keeps_sending_while_the_handle_waits_for_the_result() {
    let graph = one_pass_node();
    let handle = graph.spawn(Task::long_running(json!({ "n": 0 }))).unwrap();
    let mut outputs = handle.subscribe();
    let sender: RunSender = handle.sender();
    let feeder = tokio::spawn(async move {
        for n in 1..=3 {
            sender.clone().send("a", json!({ "n": n })).await.unwrap();
        }
        for n in 0..=3 {
            assert_eq!(outputs.recv().await.unwrap().message.content["n"], n);
        }
        sender.shutdown();
        // The run is stopping: a send now hands its message back.
        let refused = sender.send("a", json!({ "n": 4 })).await.unwrap_err();
        assert_eq!(refused.into_message().payload.content["n"], 4);
    });

    let result = handle.wait().guarded().await.unwrap();
    feeder.await.unwrap();
    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_eq!(result.metadata.processed_by("a"), Some(4));
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_sender_does_not_stop_the_run() {
    let graph = one_pass_node();
    let handle = graph.spawn(Task::long_running(json!({}))).unwrap();
    let mut outputs = handle.subscribe();
    drop(handle.sender());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!handle.is_stopping());
    handle.send("a", json!({})).await.unwrap();
    for _ in 0..2 {
        outputs.recv().guarded().await.unwrap();
    }
    handle.shutdown();
    assert_eq!(handle.wait().guarded().await.unwrap().metadata.processed, 2);
}

#[tokio::test(start_paused = true)]
async fn waiting_by_reference_can_be_cancelled_without_stopping_the_run() {
    let graph = one_pass_node();
    let mut handle = graph.spawn(Task::long_running(json!({}))).unwrap();
    let mut outputs = handle.subscribe();

    let cancelled = tokio::time::timeout(Duration::from_secs(1), handle.finished()).await;
    assert!(cancelled.is_err(), "the run ended on its own");
    assert!(!handle.is_stopping());
    handle.send("a", json!({})).await.unwrap();
    for _ in 0..2 {
        outputs.recv().guarded().await.unwrap();
    }
    handle.shutdown();
    let result = handle.finished().guarded().await.unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_eq!(result.metadata.processed, 2);
    assert!(handle.is_finished());
    assert!(matches!(
        handle.finished().await,
        Err(RunError::Internal(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn is_finished_turns_true_only_once_the_run_has_ended() {
    let graph = one_pass_node();
    let handle = graph.spawn(Task::long_running(json!({}))).unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!handle.is_finished());

    handle.shutdown();
    async {
        while !handle.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    .guarded()
    .await;
    let result = handle.wait().await.unwrap();
    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
}

// Run options on the task (issue 11, item 9)
// ---------------------------------------------------------------------------------------------

/// A graph whose `src` emits `n` numbered outputs to the sink `out`.
fn sequence_of(n: u64) -> Topology {
    let mut g = Graph::builder();
    let src = g.add("src", sequence_source(n));
    let out = g.add("out", pass());
    g.connect(src >> out);
    g.connect(src.on("more", true) >> src);
    g.start(src).build().unwrap()
}

#[tokio::test]
async fn a_spawned_run_keeps_the_sink_retention_its_task_sets() {
    const N: u64 = 20;
    let task = Task::long_running(json!({}))
        .with_sink_retention(SinkRetention::Last(3))
        .with_quiescence(true);
    let handle = sequence_of(N).spawn(task).unwrap();
    let result = handle.wait().guarded().await.unwrap();

    let kept: Vec<u64> = result
        .sink_outputs()
        .iter()
        .map(|s| s.message.content["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [N - 3, N - 2, N - 1]);
    assert_eq!(result.metadata.sink_outputs_discarded, N - 3);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn a_spawned_run_keeps_a_bounded_number_of_sink_outputs_by_default() {
    const N: u64 = 1100;
    let handle = sequence_of(N)
        .spawn(Task::long_running(json!({})).with_quiescence(true))
        .unwrap();
    let result = handle.wait().guarded().await.unwrap();

    assert_eq!(result.sink_outputs().len(), 1024);
    assert_eq!(result.metadata.sink_outputs_discarded, N - 1024);
    assert_eq!(result.content()["seq"], N - 1);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn a_run_to_its_end_keeps_every_sink_output_even_past_the_spawn_default() {
    const N: u64 = 1100;
    let result = sequence_of(N)
        .run(Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();
    assert_eq!(result.sink_outputs().len() as u64, N);
    assert_eq!(result.metadata.sink_outputs_discarded, 0);
}

#[tokio::test]
async fn a_spawned_run_ends_at_quiescence_when_its_task_asks() {
    let handle = one_pass_node()
        .spawn(Task::long_running(json!({ "n": 5 })).with_quiescence(true))
        .unwrap();
    let result = handle.wait().guarded().await.unwrap();
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_eq!(result.content(), &json!({ "n": 5 }));
}

#[tokio::test(start_paused = true)]
async fn a_run_to_its_end_whose_task_turns_quiescence_off_ends_only_at_its_budget() {
    let topology = Arc::new(one_pass_node());
    let unbounded = Task::long_running(json!({})).with_quiescence(false);
    let err = LongRunningExecutor::new()
        .run(Arc::clone(&topology), unbounded)
        .guarded()
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::InvalidTask(_)), "{err}");

    let budgeted = Task::long_running(json!({}))
        .with_quiescence(false)
        .with_budget(Budget::seconds(5.0).unwrap());
    let result = LongRunningExecutor::new()
        .run(topology, budgeted)
        .guarded()
        .await
        .unwrap();
    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    assert_eq!(result.metadata.processed, 1);
}

#[tokio::test]
async fn a_run_uses_the_mailbox_capacity_its_task_sets() {
    let started = Arc::new(Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let (s, gt) = (Arc::clone(&started), Arc::clone(&gate));
    let _slow = g.add(
        "slow",
        node_fn(move |ctx: Context| {
            let (started, gate) = (Arc::clone(&s), Arc::clone(&gt));
            async move {
                started.notify_one();
                gate.acquire().await.map(|p| p.forget()).ok();
                Ok::<_, NodeError>(ctx.inputs().clone())
            }
        }),
    );
    let graph = g.start(a).build().unwrap();

    let handle = graph
        .spawn(Task::long_running(json!({})).with_mailbox_capacity(1))
        .unwrap();
    let mut outputs = handle.subscribe();
    handle.send("slow", json!({ "n": 1 })).await.unwrap();
    started.notified().guarded().await; // 1 is being processed, the mailbox is empty
    handle.send("slow", json!({ "n": 2 })).await.unwrap(); // fills the one slot
    let full = handle.try_send("slow", json!({ "n": 3 })).unwrap_err();
    assert!(matches!(full, HandleSendError::Full { .. }), "{full}");

    gate.add_permits(10);
    let mut slow = 0;
    while slow < 2 {
        let out = outputs.recv().guarded().await.unwrap();
        slow += usize::from(out.node.as_ref() == "slow");
    }
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();
    assert_eq!(result.metadata.processed_by("slow"), Some(2));
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn a_task_with_a_mailbox_capacity_of_zero_is_rejected() {
    let err = one_pass_node()
        .spawn(Task::long_running(json!({})).with_mailbox_capacity(0))
        .unwrap_err();
    assert!(matches!(err, RunError::InvalidTask(ref m) if m.contains("mailbox capacity")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_subscriber_after_the_run_ended_still_sees_every_output() {
    const N: u64 = 50;
    let graph = sequence_of(N);
    let mut handle = graph
        .spawn(Task::long_running(json!({})).with_quiescence(true))
        .unwrap();
    let result = handle.finished().guarded().await.unwrap();
    assert_eq!(result.sink_outputs().len() as u64, N);

    let mut outputs = handle.subscribe();
    let mut seen = Vec::new();
    while let Ok(out) = outputs.try_recv() {
        seen.push(out.message.content["seq"].as_u64().unwrap());
    }
    assert_eq!(seen, (0..N).collect::<Vec<_>>());
}
