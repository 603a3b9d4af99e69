//! Property: random interleavings of handle sends, try-sends and a shutdown keep the
//! long-running accounting exact: `accepted == processed + unprocessed`, and every accepted
//! message is explained (task input + handle sends that succeeded + outputs routed by processed
//! activations), while every refused send handed its message back. The runtime counts each
//! unprocessed message where it ends, so the identity is a real check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

mod support;

use proptest::prelude::*;
use spark_adk_edges::NodeRef;
use support::*;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

#[derive(Clone, Debug)]
enum Op {
    Send(usize),
    TrySend(usize),
    Yield,
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize).prop_map(Op::Send),
        3 => (0..4usize).prop_map(Op::TrySend),
        2 => Just(Op::Yield),
        1 => Just(Op::Shutdown),
    ]
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// a -> b, a -> c, b -> d, c -> d: out-degrees 2, 1, 1, 0.
const OUT_DEGREE: [u64; 4] = [2, 1, 1, 0];

fn graph(capacity: usize) -> Topology {
    let mut g = Graph::builder();
    let n: Vec<NodeRef> = NAMES
        .iter()
        .map(|name| {
            g.add(
                *name,
                node_fn(|ctx| async move {
                    tokio::task::yield_now().await;
                    Ok::<_, NodeError>(ctx.inputs().clone())
                }),
            )
        })
        .collect();
    g.connect(n[0] >> n[1] >> n[3]);
    g.connect(n[0] >> n[2] >> n[3]);
    g.mailbox_capacity(capacity);
    g.start(n[0]).build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sends_and_shutdown_keep_the_accounting_exact(
        capacity in 1usize..4,
        ops in proptest::collection::vec(op(), 0..40),
    ) {
        let (result, sent_ok, returned, attempted) = runtime().block_on(async {
            let handle = graph(capacity).spawn(Task::long_running(json!({ "seq": -1 }))).unwrap();
            let (mut sent_ok, mut returned, mut attempted) = (0u64, 0u64, 0u64);
            for (seq, op) in ops.iter().enumerate() {
                let payload = json!({ "seq": seq });
                match op {
                    Op::Send(i) => {
                        attempted += 1;
                        match handle.send(NAMES[*i], payload.clone()).await {
                            Ok(()) => sent_ok += 1,
                            Err(e) => {
                                assert_eq!(*e.into_message().payload.content, payload);
                                returned += 1;
                            }
                        }
                    }
                    Op::TrySend(i) => {
                        attempted += 1;
                        match handle.try_send(NAMES[*i], payload.clone()) {
                            Ok(()) => sent_ok += 1,
                            Err(e) => {
                                assert!(matches!(
                                    e,
                                    HandleSendError::Full { .. } | HandleSendError::Stopped(_)
                                ));
                                assert_eq!(*e.into_message().payload.content, payload);
                                returned += 1;
                            }
                        }
                    }
                    Op::Yield => tokio::task::yield_now().await,
                    Op::Shutdown => handle.shutdown(),
                }
            }
            handle.shutdown();
            (handle.wait().await.unwrap(), sent_ok, returned, attempted)
        });
        let meta = &result.metadata;
        prop_assert_eq!(meta.accepted, meta.processed + meta.unprocessed);
        prop_assert_eq!(sent_ok + returned, attempted);
        let routed: u64 = NAMES
            .iter()
            .zip(OUT_DEGREE)
            .map(|(name, degree)| meta.processed_by(name).unwrap() * degree)
            .sum();
        prop_assert_eq!(meta.accepted, 1 + sent_ok + routed, "{:?}", meta);
    }
}
