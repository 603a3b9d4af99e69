//! Mode equivalence (docs/runtime-semantics.md, "Long-running mode"): for an acyclic graph of deterministic, stateless
//! nodes, standard and long-running mode produce the same multiset of sink outputs, and the
//! same result when the run has a single sink activation. A long-running run that ends at
//! quiescence has processed everything it accepted.
//!
//! Graphs are random: edges go from a lower to a higher node index (so they are acyclic), with
//! random conditions (always, equality on a key of the output, fallback, an expression),
//! duplicate edges, fan-out and merges, and random mailbox capacities (down to 1, so
//! backpressure is exercised too).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use proptest::prelude::*;
use spark_adk::prelude::*;
use spark_adk::RunMetadata;

mod support;
use support::random_graphs::{multiset, runtime, spec, Spec};

/// Node `i`: a deterministic function of its input and its index.
fn node(i: usize) -> impl Node {
    node_fn(move |ctx: Context| async move {
        let h = ctx.inputs().content["h"].as_i64().unwrap_or(0);
        let next = (h * 31 + 7 * (i as i64 + 1)) % 1009;
        Ok::<_, NodeError>(json!({ "h": next, "k": next % 3, "by": i }))
    })
}

struct Both {
    standard: RunResult,
    long: RunResult,
}

fn run_both(spec: &Spec) -> Both {
    let graph = support::random_graphs::build(spec, node);
    let input = json!({ "h": spec.input });
    runtime().block_on(async {
        let both = async {
            let standard = graph.run(Task::new(input.clone())).await.unwrap();
            let long = graph.run(Task::long_running(input)).await.unwrap();
            Both { standard, long }
        };
        // A run that never ends fails the case instead of hanging the test.
        tokio::time::timeout(Duration::from_secs(30), both)
            .await
            .expect("a run did not finish within 30 s")
    })
}

fn balanced(m: &RunMetadata) -> bool {
    m.accepted == m.processed + m.unprocessed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn both_modes_produce_the_same_sink_outputs(spec in spec(8, 10)) {
        let Both { standard, long } = run_both(&spec);

        prop_assert_eq!(multiset(&standard), multiset(&long));
        prop_assert_eq!(standard.metadata.steps, long.metadata.processed);
        prop_assert!(balanced(&long.metadata), "{:?}", long.metadata);
        prop_assert_eq!(long.metadata.unprocessed, 0);
        prop_assert_eq!(long.metadata.stop_reason, StopReason::Completed);
        if standard.sink_outputs().len() == 1 {
            prop_assert_eq!(standard.content(), long.content());
            prop_assert_eq!(standard.output_node(), long.output_node());
        }
    }
}
