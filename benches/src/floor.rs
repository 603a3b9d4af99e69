//! The floor beside `lr_per_message`: what moving the same messages through the same node work
//! costs with no runtime at all, on the same machine.
//!
//! [`bare_pipeline`] joins `stages` tokio tasks with bare `tokio::sync::mpsc` channels (the
//! capacity of a default mailbox), each task taking messages in batches (`recv_many`) and
//! applying [`inc`](crate::inc), the work of the benches' nodes. The caller's task sends the
//! messages into the first channel one by one (as `lr_per_message` sends through its run
//! handle), and the last task keeps every output, as a run's result keeps every sink output.
//!
//! Left out on purpose, so the figure is a floor: accounting, routing and edge conditions,
//! budgets and stop checks, panic capture, boxed node futures, events, exact mailbox capacity
//! and deadlock detection.
//!
//! [`boxed_future_chain`] is the floor beside `std_per_node`: the node work of a standard run
//! through a chain of boxed futures, one call after another, with nothing else (no run scope,
//! no counts, no routing, no panic capture, no result).
//!
//! [`work_only`] is the other end: the same node work and kept outputs on one thread, with no
//! task, channel or concurrency at all. The difference between a pipeline's figure and this one
//! is what moving the messages between tasks (and threads) costs.

use std::future::Future;
use std::pin::Pin;

use spark_adk::prelude::*;
use tokio::sync::mpsc;

/// A node of [`boxed_future_chain`]: an async call through a boxed future, as a runtime that
/// stores nodes as trait objects makes.
pub trait BoxedNode: Send + Sync {
    /// The node's work on `input`, as a boxed future.
    fn call<'a>(
        &'a self,
        input: &'a NodeMessage,
    ) -> Pin<Box<dyn Future<Output = NodeMessage> + Send + 'a>>;
}

/// The benches' node work ([`inc`](crate::inc)) as a [`BoxedNode`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BoxedInc;

impl BoxedNode for BoxedInc {
    fn call<'a>(
        &'a self,
        input: &'a NodeMessage,
    ) -> Pin<Box<dyn Future<Output = NodeMessage> + Send + 'a>> {
        Box::pin(async move { crate::inc(&input.content) })
    }
}

/// `n` [`BoxedInc`] nodes as trait objects.
pub fn boxed_nodes(n: usize) -> Vec<Box<dyn BoxedNode>> {
    (0..n)
        .map(|_| Box::new(BoxedInc) as Box<dyn BoxedNode>)
        .collect()
}

/// Runs `input` through `nodes` one after another (each node's output is the next one's input)
/// and returns the last output: a standard run's node work and nothing else.
pub async fn boxed_future_chain(nodes: &[Box<dyn BoxedNode>], input: &NodeMessage) -> NodeMessage {
    let mut current = input.clone();
    for node in nodes {
        current = node.call(&current).await;
    }
    current
}

/// Sends `messages` clones of `message` through `stages` bare tasks (see the module docs) and
/// returns the outputs of the last one, in order.
///
/// # Errors
/// A message if a stage task failed (a bug of this function, or the runtime shutting down).
pub async fn bare_pipeline(
    messages: u64,
    stages: usize,
    capacity: usize,
    message: &NodeMessage,
) -> Result<Vec<NodeMessage>, String> {
    let capacity = capacity.max(1);
    let (first, mut rx) = mpsc::channel::<NodeMessage>(capacity);
    let mut tasks = Vec::with_capacity(stages);
    for _ in 1..stages.max(1) {
        let (tx, next) = mpsc::channel::<NodeMessage>(capacity);
        let input = std::mem::replace(&mut rx, next);
        tasks.push(tokio::spawn(stage(input, capacity, Some(tx))));
    }
    let last = tokio::spawn(stage(rx, capacity, None));
    for _ in 0..messages {
        first
            .send(message.clone())
            .await
            .map_err(|_| "the first stage stopped early".to_owned())?;
    }
    drop(first);
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    last.await.map_err(|e| e.to_string())
}

/// The node work of [`bare_pipeline`] without any pipeline: each of `messages` clones of
/// `message` goes through `stages` calls of [`inc`](crate::inc) in a plain loop, and the last
/// outputs are kept.
pub fn work_only(messages: u64, stages: usize, message: &NodeMessage) -> Vec<NodeMessage> {
    let mut kept = Vec::new();
    for _ in 0..messages {
        let mut current = message.clone();
        for _ in 0..stages {
            current = crate::inc(&current.content);
        }
        kept.push(current);
    }
    kept
}

/// One stage: `inc` every message, forward it (or keep it, for the last stage).
async fn stage(
    mut input: mpsc::Receiver<NodeMessage>,
    capacity: usize,
    output: Option<mpsc::Sender<NodeMessage>>,
) -> Vec<NodeMessage> {
    let mut batch = Vec::with_capacity(capacity);
    let mut kept = Vec::new();
    while input.recv_many(&mut batch, capacity).await > 0 {
        for message in batch.drain(..) {
            let out = crate::inc(&message.content);
            match &output {
                Some(tx) => {
                    if tx.send(out).await.is_err() {
                        return kept;
                    }
                }
                None => kept.push(out),
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{count_of, current_thread_runtime, input};

    #[test]
    fn work_only_applies_every_stage_to_every_message() {
        let kept = work_only(100, 3, &NodeMessage::from(input()));
        assert_eq!(kept.len(), 100);
        assert!(kept.iter().all(|m| count_of(&m.content) == 3));
    }

    #[test]
    fn the_boxed_future_chain_runs_every_node() {
        let rt = current_thread_runtime().unwrap();
        let nodes = boxed_nodes(1_000);
        let out = rt.block_on(boxed_future_chain(&nodes, &NodeMessage::from(input())));
        assert_eq!(count_of(&out.content), 1_000);
    }

    #[test]
    fn every_message_passes_every_stage_once() {
        let rt = current_thread_runtime().unwrap();
        let message = NodeMessage::from(input());
        let kept = rt.block_on(bare_pipeline(1_000, 3, 8, &message)).unwrap();
        assert_eq!(kept.len(), 1_000);
        assert!(kept.iter().all(|m| count_of(&m.content) == 3));
    }
}
