//! Tracing: one span per run and one per node activation, with the node name and the mode.
//! Kept in its own test binary: tracing caches callsite interest per process, so a test that
//! installs a subscriber must not race with tests that run without one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use spark_adk::prelude::*;

fn two_node_graph() -> Graph {
    let mut g = Graph::builder();
    let a = g.add("a", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    let b = g.add("b", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    g.connect(a >> b);
    g.start(a).build().unwrap()
}

type SpanRecord = (String, HashMap<String, String>);

#[derive(Default, Clone)]
struct SpanLog(Arc<Mutex<Vec<SpanRecord>>>);

struct Recorder(SpanLog);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct V<'a>(&'a mut HashMap<String, String>);
        impl tracing::field::Visit for V<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.insert(
                    f.name().to_owned(),
                    format!("{v:?}").trim_matches('"').to_owned(),
                );
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                self.0.insert(f.name().to_owned(), v.to_owned());
            }
        }
        let mut fields = HashMap::new();
        attrs.record(&mut V(&mut fields));
        self.0
             .0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), fields));
    }
}

#[test]
fn one_span_per_run_and_one_per_activation_with_node_and_mode_in_both_modes() {
    use tracing_subscriber::layer::SubscriberExt;
    let log = SpanLog::default();
    let subscriber = tracing_subscriber::registry().with(Recorder(log.clone()));
    let graph = two_node_graph();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(subscriber);
    tracing::dispatcher::with_default(&dispatch, || {
        rt.block_on(graph.run_default()).unwrap();
    });
    let spans = log.0.lock().unwrap().clone();
    let runs: Vec<_> = spans.iter().filter(|(n, _)| n == "spark.run").collect();
    let nodes: Vec<_> = spans.iter().filter(|(n, _)| n == "spark.node").collect();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1["mode"], "standard");
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].1["node"], "a");
    assert_eq!(nodes[1].1["node"], "b");
    assert!(nodes.iter().all(|(_, f)| f["mode"] == "standard"));

    // Long-running mode: the workers run on the runtime's threads, so the subscriber is set
    // globally for this binary (it holds no other test).
    log.0.lock().unwrap().clear();
    tracing::dispatcher::set_global_default(dispatch).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(graph.run(Task::long_running(json!({}))))
        .unwrap();
    let spans = log.0.lock().unwrap().clone();
    let runs: Vec<_> = spans.iter().filter(|(n, _)| n == "spark.run").collect();
    let mut nodes: Vec<_> = spans
        .iter()
        .filter(|(n, _)| n == "spark.node")
        .map(|(_, f)| (f["node"].clone(), f["mode"].clone()))
        .collect();
    nodes.sort();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1["mode"], "long_running");
    // Two data activations; shutdown deliveries are not activations and get no span.
    assert_eq!(
        nodes,
        [
            ("a".to_owned(), "long_running".to_owned()),
            ("b".to_owned(), "long_running".to_owned())
        ]
    );
}
