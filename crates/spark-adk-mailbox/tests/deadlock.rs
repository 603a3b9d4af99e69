//! Bounded mailboxes never hang a run silently: a deadlock of full mailboxes ends the run with
//! `RunError::Deadlock` naming every node blocked on a send, also when a node sends through a
//! run handle it captured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use spark_adk_core::{node_fn, Context, NodeError, RunError};
use spark_adk_mailbox::{HandleSendError, LongRunningExecutor, RunHandle};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_one_cycle_never_hangs() {
    for _ in 0..20 {
        let mut g = Graph::builder();
        let a = g.add("a", pass());
        let b = g.add("b", pass());
        let _bystander = g.add("bystander", pass());
        // `b` doubles every message: the cycle fills up.
        g.connect(a >> b);
        g.connect(b >> a);
        g.connect(b >> a);
        g.mailbox_capacity(1);
        let graph = g.start(a).build().unwrap();

        let outcome = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
            .await
            .expect("a full cycle of capacity-1 mailboxes hung the run");

        match outcome {
            Err(RunError::Deadlock { mut blocked, .. }) => {
                blocked.sort();
                assert_eq!(blocked, ["a", "b"]);
            }
            other => panic!("expected Deadlock, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_names_every_node_blocked_on_a_send_not_only_the_cycle() {
    for _ in 0..10 {
        let topology = topology(|g| {
            let a = g.add("a", pass());
            let b = g.add("b", pass());
            let c = g.add("c", pass());
            g.connect(a >> b);
            g.connect(b >> a);
            for _ in 0..5 {
                g.connect(c >> a);
            }
            g.mailbox_capacity(1);
            g.start(c);
        });
        let error = run(&topology, task()).await.unwrap_err();
        match &error {
            RunError::Deadlock { blocked, .. } => {
                let mut blocked = blocked.clone();
                blocked.sort();
                assert_eq!(blocked, ["a", "b", "c"]);
            }
            other => panic!("expected Deadlock, got {other:?}"),
        }
        assert_counts_balanced(&counts_of(&error));
    }
}

#[tokio::test]
async fn a_node_overfilling_its_own_mailbox_is_a_deadlock() {
    let topology = topology(|g| {
        let a = g.add("a", pass());
        g.connect(a >> a);
        g.connect(a >> a);
        g.mailbox_capacity(1);
        g.start(a);
    });
    let error = run(&topology, task()).await.unwrap_err();
    match &error {
        RunError::Deadlock { blocked, .. } => assert_eq!(blocked, &["a"]),
        other => panic!("expected Deadlock, got {other:?}"),
    }
    assert_counts_balanced(&counts_of(&error));
}

type Slot = Arc<Mutex<Option<Arc<RunHandle>>>>;

#[tokio::test]
async fn a_node_sending_into_its_own_full_mailbox_through_a_handle_never_hangs() {
    let slot: Slot = Arc::default();
    let sends: Arc<Mutex<Vec<Result<(), String>>>> = Arc::default();
    let topology = {
        let slot = Arc::clone(&slot);
        let sends = Arc::clone(&sends);
        topology(move |g| {
            let a = g.add(
                "a",
                node_fn(move |ctx: Context| {
                    let slot = Arc::clone(&slot);
                    let sends = Arc::clone(&sends);
                    async move {
                        if ctx.is_shutdown() || ctx.inputs().content.get("echo").is_some() {
                            return Ok::<_, NodeError>(json!({}));
                        }
                        let handle = slot.lock().unwrap().clone().expect("the handle is set");
                        // Capacity 1: the first send fills the mailbox, the second can never
                        // find room while this activation waits for it.
                        for n in 0..2 {
                            let sent = handle.send("a", json!({ "echo": n })).await;
                            let failed = sent.is_err();
                            sends
                                .lock()
                                .unwrap()
                                .push(sent.map_err(|e: HandleSendError| e.to_string()));
                            if failed {
                                break;
                            }
                        }
                        Ok(json!({}))
                    }
                }),
            );
            g.mailbox_capacity(1);
            g.start(a);
        })
    };
    let handle = Arc::new(LongRunningExecutor::new().spawn(topology, task()).unwrap());
    *slot.lock().unwrap() = Some(Arc::clone(&handle));

    // The run ends by itself: the blocked send is found stuck, not left waiting.
    let handle = async {
        let mut handle = handle;
        loop {
            tokio::task::yield_now().await;
            if handle.is_stopping() {
                slot.lock().unwrap().take();
                match Arc::try_unwrap(handle) {
                    Ok(h) => break h,
                    Err(h) => handle = h,
                }
            }
        }
    }
    .guarded()
    .await;
    let error = handle.wait().guarded().await.unwrap_err();
    match &error {
        RunError::Deadlock { blocked, .. } => assert_eq!(blocked, &["a"]),
        other => panic!("expected Deadlock naming `a`, got {other:?}"),
    }
    let sends = sends.lock().unwrap().clone();
    assert_eq!(sends.len(), 2, "{sends:?}");
    assert!(sends[0].is_ok() && sends[1].is_err(), "{sends:?}");
    assert_counts_balanced(&counts_of(&error));
}
