//! The peers of Spark for Rust's benchmark table, running the table's scenarios: graph-flow 0.8
//! (standard mode's peer: one task after another in the caller's task) in [`gf`], and dagrs 0.9
//! (long-running mode's peer: one tokio task per node, joined by bounded channels) in [`dg`].
//!
//! `cargo xtask bench` builds this crate (its own workspace, never built by the main workspace's
//! `cargo test --workspace`) and runs its criterion bench `peers` row by row, interleaved with
//! ours, so each ratio of the report compares two medians of the same run. `docs/benchmarks.md`
//! shows every scenario beside ours.
//!
//! The work of a node is the same as in our benches: read the counter `count` of the JSON
//! input, return `{"count": count + 1}`. Each peer does it the way its documentation shows:
//! graph-flow tasks read and write the session's `Context` (a map of JSON values); dagrs actions
//! receive a `serde_json::Value` from their input channel and send the new one on.

use serde_json::{json, Value};

/// The key the nodes read and write.
pub const COUNT: &str = "count";

/// The key the branching graph's router sets to pick a branch.
pub const BRANCH: &str = "branch";

/// Branches of the branching graph.
pub const BRANCHES: u64 = 3;

/// Reads the counter of a JSON payload (0 when missing).
pub fn count_of(value: &Value) -> u64 {
    value.get(COUNT).and_then(Value::as_u64).unwrap_or(0)
}

/// The node work: `{"count": count + 1}`.
pub fn inc(input: &Value) -> Value {
    json!({ COUNT: count_of(input) + 1 })
}

/// The input of every run: `{"count": 0}`.
pub fn input() -> Value {
    json!({ COUNT: 0 })
}

/// The CPU time this process has used so far (user + system, all threads), in nanoseconds, at
/// the kernel's 100 Hz clock-tick resolution; `None` off Linux. (Fields 14 and 15 of
/// `/proc/self/stat`, counted after the command name's `)`; our benches' `mem::cpu_time_ns`.)
pub fn cpu_time_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    (utime + stime).checked_mul(10_000_000)
}

/// A current-thread tokio runtime with timers (standard-mode rows).
///
/// # Errors
/// When the OS refuses the runtime's resources.
pub fn current_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
}

/// A multi-thread tokio runtime, one worker per core, with timers (long-running rows).
///
/// # Errors
/// When the OS refuses the runtime's resources.
pub fn multi_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
}

/// graph-flow 0.8: the standard-mode scenarios.
///
/// A run is what graph-flow's docs show for running a whole graph in-process: a new `Session`
/// positioned at the start task, the input set in its `Context`, then
/// `Graph::execute_session`, every task but the last returning `NextAction::ContinueAndExecute`
/// (so the whole graph runs in one call) and the last `NextAction::End`. No session storage: a
/// `FlowRunner` would add a storage load and save per call, which our runs do not do.
pub mod gf {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use graph_flow::{
        Context, ExecutionStatus, Graph, GraphBuilder, NextAction, Session, Task, TaskResult,
    };

    use super::{BRANCH, BRANCHES, COUNT};

    /// The trivial task: `count = count + 1` in the context; optionally awaits a timer first
    /// (`server_10k`).
    pub struct Inc {
        id: String,
        last: bool,
        sleep: Option<Duration>,
    }

    #[async_trait]
    impl Task for Inc {
        fn id(&self) -> &str {
            &self.id
        }

        async fn run(&self, context: Context) -> graph_flow::Result<TaskResult> {
            if let Some(d) = self.sleep {
                tokio::time::sleep(d).await;
            }
            let count: u64 = context.get(COUNT).unwrap_or(0);
            context.set(COUNT, count + 1)?;
            let next = if self.last {
                NextAction::End
            } else {
                NextAction::ContinueAndExecute
            };
            Ok(TaskResult::new(None, next))
        }
    }

    /// The router of the branching graph: like [`Inc`], and sets `branch = (count + 1) % 3`.
    pub struct Router;

    #[async_trait]
    impl Task for Router {
        fn id(&self) -> &str {
            "router"
        }

        async fn run(&self, context: Context) -> graph_flow::Result<TaskResult> {
            let count: u64 = context.get::<u64>(COUNT).unwrap_or(0) + 1;
            context.set(COUNT, count)?;
            context.set(BRANCH, count % BRANCHES)?;
            Ok(TaskResult::new(None, NextAction::ContinueAndExecute))
        }
    }

    fn task(id: String, last: bool, sleep: Option<Duration>) -> Arc<dyn Task> {
        Arc::new(Inc { id, last, sleep })
    }

    /// A chain `n0 -> n1 -> ... -> n{n-1}` of [`Inc`] tasks, each awaiting `sleep` first when
    /// given.
    ///
    /// # Errors
    /// When graph-flow rejects the graph.
    pub fn chain_with_sleep(n: usize, sleep: Option<Duration>) -> graph_flow::Result<Graph> {
        let mut b = GraphBuilder::new("chain");
        for i in 0..n {
            b = b.add_task(task(format!("n{i}"), i + 1 == n, sleep));
        }
        for i in 1..n {
            b = b.add_edge(format!("n{}", i - 1), format!("n{i}"));
        }
        b.set_start_task("n0").build()
    }

    /// A chain of `n` trivial tasks.
    ///
    /// # Errors
    /// When graph-flow rejects the graph.
    pub fn chain(n: usize) -> graph_flow::Result<Graph> {
        chain_with_sleep(n, None)
    }

    /// entry -> router -> one of 3 branches of 2 tasks -> join -> final (10 tasks, 6 run). The
    /// router's three-way choice is two conditional edges (`branch == 0`, `branch == 1`) with
    /// branch 2 as their `else`: graph-flow takes the first matching condition, else the first
    /// unconditional edge.
    ///
    /// # Errors
    /// When graph-flow rejects the graph.
    pub fn branching() -> graph_flow::Result<Graph> {
        let mut b = GraphBuilder::new("branching")
            .add_task(task("entry".into(), false, None))
            .add_task(Arc::new(Router))
            .add_task(task("join".into(), false, None))
            .add_task(task("final".into(), true, None));
        for k in 0..BRANCHES {
            b = b
                .add_task(task(format!("b{k}_0"), false, None))
                .add_task(task(format!("b{k}_1"), false, None))
                .add_edge(format!("b{k}_0"), format!("b{k}_1"))
                .add_edge(format!("b{k}_1"), "join");
        }
        b.add_edge("entry", "router")
            .add_conditional_edge(
                "router",
                |c| c.get::<u64>(BRANCH) == Some(0),
                "b0_0",
                "b2_0",
            )
            .add_conditional_edge(
                "router",
                |c| c.get::<u64>(BRANCH) == Some(1),
                "b1_0",
                "b2_0",
            )
            .add_edge("join", "final")
            .set_start_task("entry")
            .build()
    }

    /// One run from `{"count": 0}`: a new session at `n0` (or `entry`), `execute_session`, the
    /// final `count`.
    ///
    /// # Errors
    /// graph-flow's error, or a run that did not complete.
    pub async fn run(graph: &Graph) -> graph_flow::Result<u64> {
        let start = graph.start_task_id().unwrap_or("n0");
        let mut session = Session::new_from_task("bench".to_owned(), start);
        session.context.set(COUNT, 0u64)?;
        let result = graph.execute_session(&mut session).await?;
        if !matches!(result.status, ExecutionStatus::Completed) {
            return Err(graph_flow::GraphError::TaskExecutionFailed(format!(
                "the run stopped early: {:?}",
                result.status
            )));
        }
        Ok(session.context.get(COUNT).unwrap_or(0))
    }
}

/// dagrs 0.9: the long-running scenarios.
///
/// A dagrs `Graph` spawns one tokio task per node of a block and joins the nodes with bounded
/// channels (capacity 32). Running a graph again takes `reset()` (which re-creates the
/// channels) then `async_start()`; both are timed, as our runs create their mailboxes too.
pub mod dg {
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Instant;

    use async_trait::async_trait;
    use dagrs::node::router_node::{Router, RouterNode};
    use dagrs::{
        Action, Content, DefaultNode, EnvVar, Graph, InChannels, Node, NodeId, NodeTable,
        OutChannels, Output,
    };
    use serde_json::Value;

    use super::{count_of, inc};

    /// The error of these scenarios: dagrs's, or a wrong result.
    pub type Error = Box<dyn std::error::Error + Send + Sync>;

    /// The trivial action: takes the JSON value from its input channel (the first node: from
    /// its `input`), sends `{"count": count + 1}` to its successor and returns it.
    pub struct Inc {
        input: Option<Arc<Value>>,
        stamp: Option<Arc<Mutex<Option<Instant>>>>,
    }

    #[async_trait]
    impl Action for Inc {
        async fn run(
            &self,
            in_channels: &mut InChannels,
            out_channels: &mut OutChannels,
            _env: Arc<EnvVar>,
        ) -> Output {
            if let Some(stamp) = &self.stamp {
                let now = Instant::now();
                stamp
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(now);
            }
            let count = match &self.input {
                Some(v) => count_of(v),
                None => match in_channels.recv_any().await {
                    Ok((_, content)) => content.get::<Value>().map_or(0, count_of),
                    Err(e) => return Output::error(e),
                },
            };
            let content = Content::new(serde_json::json!({ super::COUNT: count + 1 }));
            for r in out_channels.broadcast(content.clone()).await {
                if let Err(e) = r {
                    return Output::error(e);
                }
            }
            Output::Out(Some(content))
        }
    }

    /// A dagrs graph of one scenario and the node whose output is the result.
    pub struct Flow {
        graph: Graph,
        last: NodeId,
        stamp: Arc<Mutex<Option<Instant>>>,
    }

    fn dagrs_err(e: impl std::fmt::Display) -> Error {
        e.to_string().into()
    }

    /// A chain of `n` [`Inc`] nodes, the first fed `{"count": 0}`.
    ///
    /// # Errors
    /// When dagrs rejects the graph.
    pub fn chain(n: usize) -> Result<Flow, Error> {
        let mut table = NodeTable::new();
        let stamp = Arc::new(Mutex::new(None));
        let mut graph = Graph::new();
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let action = Inc {
                input: (i == 0).then(|| Arc::new(super::input())),
                stamp: (i == 0).then(|| Arc::clone(&stamp)),
            };
            let node = DefaultNode::with_action(format!("n{i}"), action, &mut table);
            ids.push(graph.add_node(node).map_err(dagrs_err)?);
        }
        for pair in ids.windows(2) {
            graph.add_edge(pair[0], vec![pair[1]]).map_err(dagrs_err)?;
        }
        graph.set_env(EnvVar::new(table));
        let last = *ids.last().ok_or("an empty chain")?;
        Ok(Flow { graph, last, stamp })
    }

    impl Flow {
        /// Runs the graph again (`reset`, `async_start`) and returns the last node's `count`.
        ///
        /// # Errors
        /// dagrs's error, or no result from the last node.
        pub async fn run(&mut self) -> Result<u64, Error> {
            self.graph.reset().await.map_err(dagrs_err)?;
            self.graph.async_start().await.map_err(dagrs_err)?;
            let results = self.graph.get_results::<Value>();
            let out = results
                .get(&self.last)
                .and_then(Clone::clone)
                .ok_or("no output from the last node")?;
            Ok(count_of(&out))
        }

        /// Takes the instant the first node's action began in the last run.
        pub fn take_stamp(&self) -> Option<Instant> {
            self.stamp
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        }
    }

    /// The router of the branching graph: receives the input, sends `{"count": count + 1,
    /// "branch": (count + 1) % 3}` to the first node of that branch and tells dagrs to run only
    /// that branch (`FlowControl::Branch`, the others are pruned).
    struct BranchRouter {
        branches: Vec<NodeId>,
    }

    #[async_trait]
    impl Router for BranchRouter {
        async fn route(
            &self,
            in_channels: &mut InChannels,
            out_channels: &OutChannels,
            _env: Arc<EnvVar>,
        ) -> Vec<usize> {
            let count = match in_channels.recv_any().await {
                Ok((_, content)) => content.get::<Value>().map_or(0, count_of) + 1,
                Err(_) => return Vec::new(),
            };
            let k = (count % super::BRANCHES) as usize;
            let Some(target) = self.branches.get(k) else {
                return Vec::new();
            };
            let content =
                Content::new(serde_json::json!({ super::COUNT: count, super::BRANCH: k }));
            if out_channels.send_to(target, content).await.is_err() {
                return Vec::new();
            }
            vec![target.as_usize()]
        }
    }

    /// entry -> router -> one of 3 branches of 2 nodes -> join -> final (10 nodes, 6 run): the
    /// router is a dagrs `RouterNode`, which prunes the branches it does not pick.
    ///
    /// # Errors
    /// When dagrs rejects the graph.
    pub fn branching() -> Result<Flow, Error> {
        let mut table = NodeTable::new();
        let stamp = Arc::new(Mutex::new(None));
        let mut graph = Graph::new();
        let inc = |first: bool| Inc {
            input: first.then(|| Arc::new(super::input())),
            stamp: None,
        };
        let entry = DefaultNode::with_action("entry".to_owned(), inc(true), &mut table);
        let join = DefaultNode::with_action("join".to_owned(), inc(false), &mut table);
        let last = DefaultNode::with_action("final".to_owned(), inc(false), &mut table);
        let mut firsts = Vec::new();
        let mut seconds = Vec::new();
        for k in 0..super::BRANCHES {
            firsts.push(DefaultNode::with_action(
                format!("b{k}_0"),
                inc(false),
                &mut table,
            ));
            seconds.push(DefaultNode::with_action(
                format!("b{k}_1"),
                inc(false),
                &mut table,
            ));
        }
        let branches: Vec<NodeId> = firsts.iter().map(Node::id).collect();
        let router = RouterNode::new(
            "router".to_owned(),
            BranchRouter {
                branches: branches.clone(),
            },
            &mut table,
        );
        let (entry_id, router_id, join_id, last_id) =
            (entry.id(), router.id(), join.id(), last.id());
        let second_ids: Vec<NodeId> = seconds.iter().map(Node::id).collect();
        graph.add_node(entry).map_err(dagrs_err)?;
        graph.add_node(router).map_err(dagrs_err)?;
        graph.add_node(join).map_err(dagrs_err)?;
        graph.add_node(last).map_err(dagrs_err)?;
        for node in firsts.into_iter().chain(seconds) {
            graph.add_node(node).map_err(dagrs_err)?;
        }
        graph
            .add_edge(entry_id, vec![router_id])
            .map_err(dagrs_err)?;
        graph
            .add_edge(router_id, branches.clone())
            .map_err(dagrs_err)?;
        for (first, second) in branches.iter().zip(&second_ids) {
            graph.add_edge(*first, vec![*second]).map_err(dagrs_err)?;
            graph.add_edge(*second, vec![join_id]).map_err(dagrs_err)?;
        }
        graph.add_edge(join_id, vec![last_id]).map_err(dagrs_err)?;
        graph.set_env(EnvVar::new(table));
        Ok(Flow {
            graph,
            last: last_id,
            stamp,
        })
    }

    /// The source of [`Pipeline`]: sends `messages` clones of the shared input (an `Arc`, as
    /// our handle's sends share the payload) to its successor, then closes its channel.
    struct Source {
        messages: u64,
        input: Arc<Value>,
    }

    #[async_trait]
    impl Action for Source {
        async fn run(
            &self,
            _in_channels: &mut InChannels,
            out_channels: &mut OutChannels,
            _env: Arc<EnvVar>,
        ) -> Output {
            let Some(next) = out_channels.get_receiver_ids().first().copied() else {
                return Output::execution_failed("the source has no successor");
            };
            for _ in 0..self.messages {
                let content = Content::from_arc(Arc::clone(&self.input));
                if let Err(e) = out_channels.send_to(&next, content).await {
                    return Output::error(e);
                }
            }
            out_channels.close(&next).await;
            Output::empty()
        }
    }

    /// A stage of [`Pipeline`]: `inc` every value until its input closes; forwards each (or,
    /// the last stage, keeps them all, as a run's result keeps its sink outputs).
    struct Stage {
        last: bool,
    }

    #[async_trait]
    impl Action for Stage {
        async fn run(
            &self,
            in_channels: &mut InChannels,
            out_channels: &mut OutChannels,
            _env: Arc<EnvVar>,
        ) -> Output {
            let Some(from) = in_channels.get_sender_ids().first().copied() else {
                return Output::execution_failed("a stage has no predecessor");
            };
            let next = out_channels.get_receiver_ids().first().copied();
            let mut kept: Vec<Value> = Vec::new();
            while let Ok(content) = in_channels.recv_from(&from).await {
                let out = content
                    .get::<Value>()
                    .map_or_else(|| inc(&Value::Null), inc);
                match (&next, self.last) {
                    (Some(next), false) => {
                        if let Err(e) = out_channels.send_to(next, Content::new(out)).await {
                            return Output::error(e);
                        }
                    }
                    _ => kept.push(out),
                }
            }
            if let Some(next) = next {
                out_channels.close(&next).await;
            }
            Output::new(kept)
        }
    }

    /// `lr_per_message`: a source node and `stages` stages in a line, moving `messages`
    /// values per run.
    pub struct Pipeline {
        graph: Graph,
        last: NodeId,
        messages: u64,
    }

    /// Builds the pipeline.
    ///
    /// # Errors
    /// When dagrs rejects the graph.
    pub fn pipeline(messages: u64, stages: usize) -> Result<Pipeline, Error> {
        let mut table = NodeTable::new();
        let mut graph = Graph::new();
        let source = Source {
            messages,
            input: Arc::new(super::input()),
        };
        let mut ids = vec![graph
            .add_node(DefaultNode::with_action(
                "source".to_owned(),
                source,
                &mut table,
            ))
            .map_err(dagrs_err)?];
        for i in 0..stages {
            let stage = Stage {
                last: i + 1 == stages,
            };
            let node = DefaultNode::with_action(format!("n{i}"), stage, &mut table);
            ids.push(graph.add_node(node).map_err(dagrs_err)?);
        }
        for pair in ids.windows(2) {
            graph.add_edge(pair[0], vec![pair[1]]).map_err(dagrs_err)?;
        }
        graph.set_env(EnvVar::new(table));
        let last = *ids.last().ok_or("no stages")?;
        Ok(Pipeline {
            graph,
            last,
            messages,
        })
    }

    impl Pipeline {
        /// One pass: every message through every stage; returns how many the last one kept.
        ///
        /// # Errors
        /// dagrs's error, or a wrong number of outputs.
        pub async fn run(&mut self) -> Result<usize, Error> {
            self.graph.reset().await.map_err(dagrs_err)?;
            self.graph.async_start().await.map_err(dagrs_err)?;
            let results = self.graph.get_results::<Vec<Value>>();
            let kept = results
                .get(&self.last)
                .and_then(Clone::clone)
                .ok_or("no output from the last stage")?;
            if kept.len() as u64 != self.messages {
                return Err(format!("{} outputs, not {}", kept.len(), self.messages).into());
            }
            Ok(kept.len())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn graph_flow_runs_every_task_of_a_chain() {
        let rt = current_thread_runtime().unwrap();
        for n in [1, 3, 10, 1_000] {
            let g = gf::chain(n).unwrap();
            assert_eq!(rt.block_on(gf::run(&g)).unwrap(), n as u64, "{n}");
        }
    }

    #[test]
    fn graph_flow_branching_runs_six_tasks() {
        let rt = current_thread_runtime().unwrap();
        let g = gf::branching().unwrap();
        assert_eq!(rt.block_on(gf::run(&g)).unwrap(), 6);
    }

    #[test]
    fn dagrs_chains_run_again_and_again() {
        let rt = multi_thread_runtime().unwrap();
        for n in [3, 10] {
            let mut flow = dg::chain(n).unwrap();
            for _ in 0..3 {
                assert_eq!(rt.block_on(flow.run()).unwrap(), n as u64);
                assert!(flow.take_stamp().is_some());
            }
        }
    }

    #[test]
    fn dagrs_branching_runs_six_nodes_again_and_again() {
        let rt = multi_thread_runtime().unwrap();
        let mut flow = dg::branching().unwrap();
        for _ in 0..3 {
            assert_eq!(rt.block_on(flow.run()).unwrap(), 6);
        }
    }

    #[test]
    fn dagrs_pipeline_moves_every_message() {
        let rt = multi_thread_runtime().unwrap();
        let mut p = dg::pipeline(1_000, 3).unwrap();
        for _ in 0..2 {
            assert_eq!(rt.block_on(p.run()).unwrap(), 1_000);
        }
    }
}
