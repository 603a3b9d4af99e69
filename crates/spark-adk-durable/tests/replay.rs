//! Replay: random logs replay to what a naive model of the run computes, record by record;
//! a snapshot plus the later records replays to the same image; bad logs are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use spark_adk_core::NodeMessage;
use spark_adk_durable::*;

const NODES: [&str; 4] = ["a", "b", "c", "d"];

fn header() -> RunHeader {
    let shape = TopologyShape {
        nodes: NODES.iter().map(|n| (*n).to_owned()).collect(),
        edges: vec![EdgeShape::new("a", "b", "always")],
        start: "a".into(),
    };
    let mut h = RunHeader::new(
        "prop",
        Fingerprint::of(shape),
        RunMode::LongRunning,
        json!({"in": 1}).into(),
    );
    h.initial_state.insert("seed".into(), json!(0));
    h
}

/// A choice made by the generator; turned into a valid record against the model's state.
#[derive(Clone, Debug)]
enum Op {
    Activate {
        pick: usize,
        routes: Vec<usize>,
        sets: Vec<(u8, i64)>,
        removes: Vec<u8>,
        sink: bool,
        tokens: u64,
    },
    Accept {
        target: usize,
    },
    Interrupt {
        pick: usize,
    },
    Resume {
        pick: usize,
        value: i64,
    },
    Stop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<usize>(), prop::collection::vec(0usize..4, 0..3), prop::collection::vec((0u8..6, any::<i64>()), 0..3),
              prop::collection::vec(0u8..6, 0..2), any::<bool>(), 0u64..50)
            .prop_map(|(pick, routes, sets, removes, sink, tokens)| Op::Activate { pick, routes, sets, removes, sink, tokens }),
        2 => (0usize..4).prop_map(|target| Op::Accept { target }),
        1 => any::<usize>().prop_map(|pick| Op::Interrupt { pick }),
        1 => (any::<usize>(), any::<i64>()).prop_map(|(pick, value)| Op::Resume { pick, value }),
        1 => Just(Op::Stop),
    ]
}

/// The naive model: what a live run holds, kept the obvious way.
#[derive(Default)]
struct Model {
    pending: Vec<(MessageId, Option<String>, String, NodeMessage)>,
    interrupted: Vec<MessageId>,
    resumed: BTreeMap<MessageId, Value>,
    state: Map<String, Value>,
    tokens: u64,
    steps: u64,
    accepted: u64,
    processed: BTreeMap<String, u64>,
    sinks: Vec<(MessageId, String, NodeMessage)>,
    next_id: u64,
}

/// Builds a valid log from the ops, updating the model as a live run would.
fn build(ops: &[Op]) -> (Vec<(u64, Record)>, Model) {
    let h = header();
    let mut m = Model {
        state: h.initial_state.clone(),
        accepted: 1,
        next_id: 1,
        ..Model::default()
    };
    m.pending
        .push((MessageId::INPUT, None, "a".into(), h.inputs.clone()));
    let mut log = Vec::new();
    for op in ops {
        let runnable: Vec<usize> = (0..m.pending.len())
            .filter(|i| !m.interrupted.contains(&m.pending[*i].0))
            .collect();
        let record = match op {
            Op::Activate {
                pick,
                routes,
                sets,
                removes,
                sink,
                tokens,
            } => {
                if runnable.is_empty() {
                    continue;
                }
                let (id, _, node, _) = m.pending.remove(runnable[pick % runnable.len()]);
                m.resumed.remove(&id);
                let mut routed = Vec::new();
                for t in routes {
                    let msg = RoutedMessage {
                        id: MessageId(m.next_id),
                        target: NODES[*t].into(),
                        message: json!({"from": id.0}).into(),
                    };
                    m.next_id += 1;
                    m.pending.push((
                        msg.id,
                        Some(node.clone()),
                        msg.target.clone(),
                        msg.message.clone(),
                    ));
                    m.accepted += 1;
                    routed.push(msg);
                }
                let mut state = Vec::new();
                for (k, v) in sets {
                    state.push(StateChange::Set {
                        key: format!("k{k}"),
                        value: json!(v),
                    });
                    m.state.insert(format!("k{k}"), json!(v));
                }
                for k in removes {
                    state.push(StateChange::Removed {
                        key: format!("k{k}"),
                    });
                    m.state.remove(&format!("k{k}"));
                }
                let sink = sink.then(|| NodeMessage::from(json!({"sink": id.0})));
                if let Some(s) = &sink {
                    m.sinks.push((id, node.clone(), s.clone()));
                }
                m.tokens += tokens;
                m.steps += 1;
                *m.processed.entry(node.clone()).or_default() += 1;
                Record::Activation(ActivationRecord {
                    activation: id,
                    node,
                    attempt: 1,
                    routed,
                    sink,
                    state,
                    tokens: *tokens,
                })
            }
            Op::Accept { target } => {
                let msg = RoutedMessage {
                    id: MessageId(m.next_id),
                    target: NODES[*target].into(),
                    message: json!({"outside": m.next_id}).into(),
                };
                m.next_id += 1;
                m.accepted += 1;
                m.pending
                    .push((msg.id, None, msg.target.clone(), msg.message.clone()));
                Record::Accepted(AcceptedRecord {
                    sender: Some("handle".into()),
                    message: msg,
                })
            }
            Op::Interrupt { pick } => {
                if runnable.is_empty() {
                    continue;
                }
                let (id, _, node, _) = m.pending[runnable[pick % runnable.len()]].clone();
                m.interrupted.push(id);
                m.resumed.remove(&id);
                Record::Interrupt(InterruptRecord {
                    activation: id,
                    node,
                    payload: json!({"ask": id.0}),
                    tokens: 1,
                })
                .tap(|| m.tokens += 1)
            }
            Op::Resume { pick, value } => {
                if m.interrupted.is_empty() {
                    continue;
                }
                let id = m.interrupted.remove(pick % m.interrupted.len());
                m.resumed.insert(id, json!(value));
                Record::Resume(ResumeRecord {
                    activation: Some(id),
                    value: Some(json!(value)),
                    owner: None,
                })
            }
            Op::Stop => Record::Stop(StopRecord::TimeBudget),
        };
        log.push((log.len() as u64 + 1, record));
    }
    (log, m)
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce()) -> Self {
        f();
        self
    }
}
impl Tap for Record {}

fn assert_matches_model(image: &RunImage, m: &Model) {
    let pending: Vec<_> = image
        .pending()
        .map(|p| (p.id, p.from.clone(), p.to.clone(), p.message.clone()))
        .collect();
    assert_eq!(pending, m.pending, "pending messages in log order");
    assert_eq!(image.state(), &m.state);
    assert_eq!(image.tokens(), m.tokens);
    assert_eq!(image.steps(), m.steps);
    assert_eq!(image.accepted(), m.accepted);
    assert_eq!(image.processed(), &m.processed);
    let sinks: Vec<_> = image
        .sinks()
        .iter()
        .map(|s| (s.activation, s.node.clone(), s.output.clone()))
        .collect();
    assert_eq!(sinks, m.sinks);
    let interrupted: Vec<_> = image.interrupts().iter().map(|i| i.activation).collect();
    assert_eq!(interrupted, m.interrupted);
    for (id, v) in &m.resumed {
        assert_eq!(image.resume_value(*id), Some(v));
    }
    assert_eq!(image.next_message_id(), MessageId(m.next_id));
    assert!(image.counts_balance());
}

/// Encodes and decodes every record, as a store round trip would.
fn through_bytes(log: &[(u64, Record)]) -> Vec<(u64, Record)> {
    let run = RunId::new("prop");
    log.iter()
        .map(|(s, r)| (*s, decode(&run, *s, &encode(&run, *s, r).unwrap()).unwrap()))
        .collect()
}

proptest! {
    #[test]
    fn replaying_a_random_log_equals_the_run_applied_record_by_record(ops in prop::collection::vec(op(), 0..60)) {
        let (log, model) = build(&ops);
        let image = replay(&header(), None, &through_bytes(&log)).unwrap();
        assert_matches_model(&image, &model);
        // Applying one by one gives the same image as replay.
        let mut stepwise = RunImage::new(&header());
        for (seq, r) in &log {
            stepwise.apply(*seq, r).unwrap();
        }
        prop_assert_eq!(stepwise, image);
    }

    #[test]
    fn a_snapshot_then_the_later_records_replays_to_the_same_image(
        ops in prop::collection::vec(op(), 0..60),
        cut in any::<prop::sample::Index>(),
    ) {
        let (log, _) = build(&ops);
        let full = replay(&header(), None, &log).unwrap();
        let k = cut.index(log.len() + 1);
        let upto = replay(&header(), None, &log[..k]).unwrap();
        let snap = upto.snapshot();
        let run = RunId::new("prop");
        let stored: Snapshot = decode(&run, snap.at, &encode(&run, snap.at, &snap).unwrap()).unwrap();
        prop_assert_eq!(&stored, &snap);
        let resumed = replay(&header(), Some(&stored), &log[k..]).unwrap();
        prop_assert_eq!(resumed, full);
    }
}

fn interrupted_log() -> Vec<(u64, Record)> {
    vec![
        (
            1,
            Record::Interrupt(InterruptRecord {
                activation: MessageId::INPUT,
                node: "a".into(),
                payload: json!("ok?"),
                tokens: 0,
            }),
        ),
        (
            2,
            Record::Resume(ResumeRecord {
                activation: Some(MessageId::INPUT),
                value: Some(json!("yes")),
                owner: None,
            }),
        ),
    ]
}

#[test]
fn an_answered_interrupt_gives_its_value_to_the_re_run_activation() {
    let image = replay(&header(), None, &interrupted_log()).unwrap();
    assert!(image.interrupts().is_empty());
    assert_eq!(image.resume_value(MessageId::INPUT), Some(&json!("yes")));
    assert_eq!(image.pending().next().map(|m| m.id), Some(MessageId::INPUT));
}

#[test]
fn resuming_the_same_interrupt_twice_is_a_conflict() {
    let mut log = interrupted_log();
    log.push((
        3,
        Record::Resume(ResumeRecord {
            activation: Some(MessageId::INPUT),
            value: Some(json!("again")),
            owner: None,
        }),
    ));
    let err = replay(&header(), None, &log).unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(err.seq(), Some(3));
}

#[test]
fn an_interrupted_activation_cannot_commit_before_its_resume() {
    let log = vec![
        (
            1,
            Record::Interrupt(InterruptRecord {
                activation: MessageId::INPUT,
                node: "a".into(),
                payload: json!(null),
                tokens: 0,
            }),
        ),
        (
            2,
            Record::Activation(ActivationRecord {
                activation: MessageId::INPUT,
                node: "a".into(),
                attempt: 2,
                routed: vec![],
                sink: None,
                state: vec![],
                tokens: 0,
            }),
        ),
    ];
    let err = replay(&header(), None, &log).unwrap_err();
    assert!(
        matches!(err, DurableError::Corrupt { seq: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn consuming_a_message_that_is_not_pending_is_corrupt() {
    let act = |id| {
        Record::Activation(ActivationRecord {
            activation: MessageId(id),
            node: "a".into(),
            attempt: 1,
            routed: vec![],
            sink: None,
            state: vec![],
            tokens: 0,
        })
    };
    let err = replay(&header(), None, &[(1, act(0)), (2, act(0))]).unwrap_err();
    assert!(
        matches!(err, DurableError::Corrupt { seq: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("not pending"), "{err}");
}

#[test]
fn a_gap_in_sequence_numbers_is_a_truncated_log() {
    let err = replay(&header(), None, &[(2, Record::Stop(StopRecord::Completed))]).unwrap_err();
    assert!(
        matches!(err, DurableError::Truncated { seq: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn a_routed_message_reusing_a_pending_id_is_corrupt() {
    let rec = Record::Accepted(AcceptedRecord {
        sender: None,
        message: RoutedMessage {
            id: MessageId::INPUT,
            target: "b".into(),
            message: json!({}).into(),
        },
    });
    let err = replay(&header(), None, &[(1, rec)]).unwrap_err();
    assert!(
        matches!(err, DurableError::Corrupt { seq: 1, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn resuming_with_another_topology_is_refused_saying_what_differs() {
    let store = MemoryStore::new();
    store.create(&header()).await.unwrap();
    let other = Fingerprint::of(TopologyShape {
        nodes: vec!["a".into(), "b".into()],
        edges: vec![],
        start: "a".into(),
    });
    let err = store
        .resume_image(&RunId::new("prop"), &other)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, DurableError::FingerprintMismatch { .. }),
        "{err:?}"
    );
    assert!(
        text.contains("node `c` is missing") && text.contains("edge `a` -> `b`"),
        "{text}"
    );
}

#[test]
fn a_mailbox_keeps_each_senders_messages_in_send_order() {
    let route = |act: u64, ids: &[(u64, &str)]| {
        Record::Activation(ActivationRecord {
            activation: MessageId(act),
            node: if act == 0 { "a".into() } else { "b".into() },
            attempt: 1,
            routed: ids
                .iter()
                .map(|(id, to)| RoutedMessage {
                    id: MessageId(*id),
                    target: (*to).into(),
                    message: json!({"id": id}).into(),
                })
                .collect(),
            sink: None,
            state: vec![],
            tokens: 0,
        })
    };
    // a routes 1, 2 to b and 3 to c; b (consuming 1) routes 4 to c; outside sends 5 to c.
    let log = vec![
        (1, route(0, &[(1, "b"), (2, "b"), (3, "c")])),
        (2, route(1, &[(4, "c")])),
        (
            3,
            Record::Accepted(AcceptedRecord {
                sender: None,
                message: RoutedMessage {
                    id: MessageId(5),
                    target: "c".into(),
                    message: json!({}).into(),
                },
            }),
        ),
    ];
    let image = replay(&header(), None, &log).unwrap();
    let c: Vec<_> = image
        .mailbox("c")
        .map(|m| (m.id.0, m.from.clone()))
        .collect();
    assert_eq!(
        c,
        vec![(3, Some("a".into())), (4, Some("b".into())), (5, None)]
    );
    let b: Vec<_> = image.mailbox("b").map(|m| m.id.0).collect();
    assert_eq!(b, vec![2]);
    assert_eq!(image.next_message_id(), MessageId(6));
    assert!(image.counts_balance());
}
