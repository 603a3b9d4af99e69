//! A 100 MB payload crosses a 10-node graph in both modes without a single per-hop copy:
//! the output shares the input's allocation, and peak RSS grows by about one payload.
//! Kept in its own test binary so no other test allocates while peak RSS is measured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use spark_adk::prelude::*;

const PAYLOAD: usize = 100 * 1024 * 1024;

/// VmHWM (peak resident set) of this process, in bytes, from /proc.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn ten_node_chain() -> Graph {
    let mut g = Graph::builder();
    let nodes: Vec<NodeRef> = (0..10)
        .map(|i| {
            g.add(
                format!("hop{i}"),
                node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) }),
            )
        })
        .collect();
    for pair in nodes.windows(2) {
        g.connect(pair[0] >> pair[1]);
    }
    g.start(nodes[0]).build().unwrap()
}

#[test]
fn hundred_megabyte_payload_crosses_ten_nodes_without_copies_in_both_modes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let graph = ten_node_chain();
    let before = peak_rss();
    // Built by hand: `json!` would serialize (copy) the string.
    let mut content = spark_adk::Map::new();
    content.insert("blob".to_owned(), Value::String("x".repeat(PAYLOAD)));
    let input = NodeMessage::from(content);
    let payload = Arc::clone(&input.content);

    for task in [Task::new(input.clone()), Task::long_running(input)] {
        let mode = task.task_type;
        let result = rt.block_on(graph.run(task)).unwrap();
        let output = result.output().unwrap();
        assert!(
            Arc::ptr_eq(&output.content, &payload),
            "{mode:?}: the payload was copied on its way"
        );
        assert_eq!(result.metadata.processed, 10);
    }

    if let (Some(before), Some(after)) = (before, peak_rss()) {
        let growth = after.saturating_sub(before);
        // One copy per hop would add 100 MB per hop; even one extra copy adds 100 MB.
        assert!(
            growth < (PAYLOAD as u64) * 3 / 2,
            "peak RSS grew by {growth} bytes for a {PAYLOAD}-byte payload"
        );
    }
}
