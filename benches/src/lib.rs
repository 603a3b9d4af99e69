//! Shared nodes, graph shapes and runtimes for the criterion benchmarks of Spark for Rust.
//!
//! Every bench target under `benches/benches/` builds its graphs here, so the standard-mode
//! benches (`std_*`) and the long-running ones (`lr_*`) run exactly the same shapes; only the
//! [`Task`] differs (`Task::new(..)` versus `Task::long_running(..)`).
//!
//! The nodes do trivial work, so that the figures measure the runtime, not the nodes: read `count` from the JSON input and return
//! `{"count": count + 1}`. A graph's result therefore tells how many nodes ran on the way to it
//! (see [`Shape::expected_count`]), which the benches check once before timing anything.
//!
//! The bench ids, the seed's figures and our targets live in `benches/targets.toml`; this crate
//! only knows the shapes.
//!
//! [`floor`] is the reference beside `lr_per_message`: the same messages and node work through
//! bare tokio channels, without any runtime.
//!
//! Beside the criterion benches, two binaries run as child processes of `cargo xtask`:
//! `mem_lr_10k` (the memory row, figures from [`mem`]) and `stress` (the soak of
//! `cargo xtask stress`, built from [`stress`]).
//!
//! # Example
//!
//! ```
//! use spark_adk_benches::{current_thread_runtime, input, Shape};
//!
//! let rt = current_thread_runtime()?;
//! let graph = Shape::Branching.build()?;
//! let count = rt.block_on(spark_adk_benches::run_standard(&graph, input()))?;
//! assert_eq!(count, Shape::Branching.expected_count());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use spark_adk::prelude::*;
use spark_adk::BuildErrors;
use tokio::sync::watch;

pub mod floor;
pub mod mem;
pub mod stress;

/// The key the nodes read and write.
pub const COUNT: &str = "count";

/// The key the branching graph's router sets to pick a branch.
pub const BRANCH: &str = "branch";

/// How many branches the branching graph has.
pub const BRANCHES: u64 = 3;

/// Nodes per branch of the branching graph.
pub const BRANCH_LEN: usize = 2;

/// The length of the chain behind `std_per_node` (the per-node figure is the median divided by
/// this; `benches/targets.toml` says the same with `divide_by`).
pub const PER_NODE_CHAIN: usize = 1_000;

/// Reads the counter of a JSON payload (0 when missing or not an unsigned integer).
pub fn count_of(value: &Value) -> u64 {
    value.get(COUNT).and_then(Value::as_u64).unwrap_or(0)
}

/// The trivial node: reads `count` from its input and returns `{"count": count + 1}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inc;

impl Node for Inc {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        Ok(inc(&ctx.inputs().content))
    }
}

/// What [`Inc`] computes: `{"count": count + 1}` for an input with `count`.
pub fn inc(input: &Value) -> NodeMessage {
    json!({ COUNT: count_of(input) + 1 }).into()
}

/// The router of the branching graph: like [`Inc`], and also sets `branch` to
/// `(count + 1) % 3`, which the router's `on("branch", k)` edges match.
#[derive(Clone, Copy, Debug, Default)]
pub struct Router;

impl Node for Router {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let count = count_of(&ctx.inputs().content) + 1;
        Ok(json!({ COUNT: count, BRANCH: count % BRANCHES }).into())
    }
}

/// Like [`Inc`], and also records when its first `process` call of a run began (`lr_startup`).
///
/// The stamp is kept until [`FirstCall::take`]; later calls (and the shutdown delivery) leave it
/// alone, so one stamp per run is "the first `process` call".
#[derive(Clone, Debug, Default)]
pub struct FirstCall {
    stamp: Arc<Mutex<Option<Instant>>>,
}

impl FirstCall {
    /// A node with an empty stamp.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the stamp of the first call since the last `take` (`None` if there was none).
    pub fn take(&self) -> Option<Instant> {
        self.stamp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Node for FirstCall {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let now = Instant::now();
        if !ctx.is_shutdown() {
            self.stamp
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(now);
        }
        let count = count_of(&ctx.inputs().content);
        Ok(json!({ COUNT: count + 1 }).into())
    }
}

/// The key of a [`Gate`]'s input: the epoch it waits for.
pub const EPOCH: &str = "epoch";

/// A node that holds a long-running run open: on an input `{"epoch": e}` it waits until its
/// [`GateRelease`] has released epoch `e` (or a later one), then returns an empty message.
///
/// Made the start node of a run that also has other nodes, it keeps the run's in-flight count
/// above zero while a driver sends messages through a handle, so a run spawned with
/// `stop_on_quiescence(true)` cannot end between two sends; once released, the run ends exactly
/// when the last message is done. The shutdown delivery never waits.
#[derive(Clone, Debug)]
pub struct Gate {
    released: watch::Receiver<u64>,
}

/// Opens a [`Gate`] for an epoch.
#[derive(Debug)]
pub struct GateRelease {
    released: watch::Sender<u64>,
}

impl Gate {
    /// A gate and its release; nothing is released yet (epoch 0 passes at once).
    pub fn new() -> (Self, GateRelease) {
        let (tx, rx) = watch::channel(0);
        (Self { released: rx }, GateRelease { released: tx })
    }
}

impl GateRelease {
    /// Lets every gate input with an epoch up to `epoch` pass (now or when it arrives).
    pub fn release(&self, epoch: u64) {
        self.released.send_modify(|v| *v = (*v).max(epoch));
    }
}

impl Node for Gate {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if !ctx.is_shutdown() {
            let epoch = ctx.inputs().content.get(EPOCH).and_then(Value::as_u64);
            if let Some(epoch) = epoch {
                // An error means the release was dropped: nobody can open the gate, pass.
                let _ = self.released.clone().wait_for(|v| *v >= epoch).await;
            }
        }
        Ok(NodeMessage::empty())
    }
}

/// The graph shapes of the latency table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A single node (`std_startup`).
    Single,
    /// A linear chain of `n` nodes (`std_flow_3`: 3, `std_pipeline_10` and `lr_startup`: 10,
    /// `std_per_node`: [`PER_NODE_CHAIN`]).
    Chain(usize),
    /// entry -> router -> one of 3 branches of 2 nodes -> join -> final: 10 nodes, 6 of which run
    /// (`std_branching`, `lr_branching`).
    Branching,
}

impl Shape {
    /// Builds the graph.
    ///
    /// # Errors
    /// Only if the graph builder rejects the shape (a chain of zero nodes, or a library bug).
    pub fn build(self) -> Result<Graph, BuildErrors> {
        match self {
            Self::Single => chain(1),
            Self::Chain(n) => chain(n),
            Self::Branching => branching(),
        }
    }

    /// How many nodes the shape has.
    pub fn nodes(self) -> usize {
        match self {
            Self::Single => 1,
            Self::Chain(n) => n,
            Self::Branching => 4 + BRANCHES as usize * BRANCH_LEN,
        }
    }

    /// The `count` a run started from [`input`] ends with: the number of nodes that ran.
    pub fn expected_count(self) -> u64 {
        match self {
            Self::Single => 1,
            Self::Chain(n) => n as u64,
            Self::Branching => 4 + BRANCH_LEN as u64,
        }
    }
}

/// A linear chain `n0 >> n1 >> ... >> n{n-1}` of [`Inc`] nodes starting at `n0`.
///
/// # Errors
/// When `n` is zero (an empty graph).
pub fn chain(n: usize) -> Result<Graph, BuildErrors> {
    chain_with_first(Inc, n)
}

/// A linear chain of `n` nodes whose first node is `first` (started there), the others [`Inc`]:
/// `n0 >> n1 >> ... >> n{n-1}`, as [`chain`].
///
/// # Errors
/// When `n` is zero (an empty graph).
pub fn chain_with_first(first: impl Node, n: usize) -> Result<Graph, BuildErrors> {
    let mut g = Graph::builder();
    let mut nodes: Vec<NodeRef> = Vec::with_capacity(n);
    if n > 0 {
        nodes.push(g.add("n0", first));
    }
    nodes.extend((1..n).map(|i| g.add(format!("n{i}"), Inc)));
    for pair in nodes.windows(2) {
        if let [from, to] = *pair {
            g.connect(from >> to);
        }
    }
    if let Some(&first) = nodes.first() {
        g.start(first);
    }
    g.build()
}

/// A linear chain `n0 >> n1 >> ... >> n{n-1}` starting at `n0`, node `i` made by `node(i)`:
/// [`chain`] with other nodes, e.g. each [`Inc`] wrapped in a policy.
///
/// # Errors
/// When `n` is zero (an empty graph).
pub fn chain_of<N: Node>(n: usize, mut node: impl FnMut(usize) -> N) -> Result<Graph, BuildErrors> {
    let mut g = Graph::builder();
    let nodes: Vec<NodeRef> = (0..n).map(|i| g.add(format!("n{i}"), node(i))).collect();
    for pair in nodes.windows(2) {
        if let [from, to] = *pair {
            g.connect(from >> to);
        }
    }
    if let Some(&first) = nodes.first() {
        g.start(first);
    }
    g.build()
}

/// The name of the gate node of [`gated_chain`].
pub const GATE: &str = "gate";

/// A [`Gate`] called `gate` (the start node, with no edges) beside an independent chain
/// `n0 >> ... >> n{n-1}` of [`Inc`] nodes that a driver feeds through a run handle.
///
/// # Errors
/// Only on a library bug.
pub fn gated_chain(n: usize) -> Result<(Graph, GateRelease), BuildErrors> {
    let (gate, release) = Gate::new();
    let mut g = Graph::builder();
    let start = g.add(GATE, gate);
    let nodes: Vec<NodeRef> = (0..n).map(|i| g.add(format!("n{i}"), Inc)).collect();
    for pair in nodes.windows(2) {
        if let [from, to] = *pair {
            g.connect(from >> to);
        }
    }
    g.start(start);
    Ok((g.build()?, release))
}

/// The branching graph: `entry >> router`, then `router.on("branch", k) >> b{k}_0 >> b{k}_1 >>
/// join` for k in 0..3, then `join >> final`. Ten nodes; a run activates six of them.
///
/// # Errors
/// Only on a library bug (the shape is valid).
pub fn branching() -> Result<Graph, BuildErrors> {
    let mut g = Graph::builder();
    let entry = g.add("entry", Inc);
    let router = g.add("router", Router);
    let join = g.add("join", Inc);
    let last = g.add("final", Inc);
    g.connect(entry >> router);
    for k in 0..BRANCHES {
        let first = g.add(format!("b{k}_0"), Inc);
        let second = g.add(format!("b{k}_1"), Inc);
        g.connect(router.on(BRANCH, k) >> first >> second >> join);
    }
    g.connect(join >> last);
    g.start(entry).build()
}

/// The input every bench run starts from: `{"count": 0}`.
pub fn input() -> Value {
    json!({ COUNT: 0 })
}

/// Runs `inputs` through `graph` in standard mode and returns the final `count`.
///
/// # Errors
/// Whatever the run reports.
pub async fn run_standard(graph: &Graph, inputs: Value) -> Result<u64, RunError> {
    let result = graph.run(Task::new(inputs)).await?;
    Ok(count_of(result.content()))
}

/// Runs `inputs` through `graph` in long-running mode (to quiescence) and returns the final
/// `count`.
///
/// # Errors
/// Whatever the run reports.
pub async fn run_long_running(graph: &Graph, inputs: Value) -> Result<u64, RunError> {
    let result = graph.run(Task::long_running(inputs)).await?;
    Ok(count_of(result.content()))
}

/// A current-thread tokio runtime with timers (what the `std_*` benches use).
///
/// # Errors
/// When the OS refuses the runtime's resources.
pub fn current_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
}

/// A multi-thread tokio runtime with one worker per core and timers (what `#[tokio::main]`
/// gives users; the `lr_*` benches use it).
///
/// # Errors
/// When the OS refuses the runtime's resources.
pub fn multi_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn check(shape: Shape) {
        let rt = current_thread_runtime().unwrap();
        let graph = shape.build().unwrap();
        assert_eq!(graph.topology().len(), shape.nodes(), "{shape:?}");
        let count = rt.block_on(run_standard(&graph, input())).unwrap();
        assert_eq!(count, shape.expected_count(), "{shape:?}");
    }

    #[test]
    fn every_shape_runs_every_node_it_should() {
        for shape in [
            Shape::Single,
            Shape::Chain(3),
            Shape::Chain(10),
            Shape::Chain(PER_NODE_CHAIN),
            Shape::Branching,
        ] {
            check(shape);
        }
    }

    #[test]
    fn the_router_picks_each_branch() {
        let rt = current_thread_runtime().unwrap();
        let graph = branching().unwrap();
        for start in 0..BRANCHES {
            // entry adds 1 and the router adds 1, then picks branch (start + 2) % 3.
            let result = rt
                .block_on(graph.run(Task::new(json!({ COUNT: start }))))
                .unwrap();
            assert_eq!(count_of(result.content()), start + 6);
            let ran: Vec<&str> = result
                .metadata
                .per_node
                .iter()
                .filter(|n| n.processed > 0)
                .map(|n| n.node)
                .collect();
            let k = (start + 2) % BRANCHES;
            let b0 = format!("b{k}_0");
            let b1 = format!("b{k}_1");
            assert_eq!(
                ran,
                ["entry", "router", "join", "final", b0.as_str(), b1.as_str()]
            );
        }
    }

    #[test]
    fn an_empty_chain_is_rejected() {
        assert!(chain(0).is_err());
        assert!(chain_of(0, |_| Inc).is_err());
    }

    #[test]
    fn chain_of_runs_every_node_it_made_in_order() {
        let rt = current_thread_runtime().unwrap();
        let mut made = Vec::new();
        let graph = chain_of(4, |i| {
            made.push(i);
            Inc
        })
        .unwrap();
        assert_eq!(made, [0, 1, 2, 3]);
        assert_eq!(graph.topology().len(), 4);
        assert_eq!(rt.block_on(run_standard(&graph, input())).unwrap(), 4);
    }

    #[test]
    fn first_call_stamps_the_first_call_of_a_long_running_run() {
        let rt = multi_thread_runtime().unwrap();
        let first = FirstCall::new();
        let graph = chain_with_first(first.clone(), 10).unwrap();
        let before = Instant::now();
        let count = rt.block_on(run_long_running(&graph, input())).unwrap();
        let after = Instant::now();
        assert_eq!(count, 10);
        let stamp = first.take().unwrap();
        assert!(before <= stamp && stamp <= after);
        assert!(first.take().is_none(), "one stamp per run");
    }

    #[test]
    fn a_gate_holds_a_spawned_run_open_until_released() {
        let rt = multi_thread_runtime().unwrap();
        let (graph, release) = gated_chain(3).unwrap();
        let result = rt.block_on(async {
            let handle = spark_adk::LongRunningExecutor::new()
                .stop_on_quiescence(true)
                .spawn(
                    Arc::clone(graph.topology()),
                    Task::long_running(json!({ EPOCH: 1 })),
                )
                .unwrap();
            for _ in 0..1_000 {
                handle.send("n0", input()).await.unwrap();
            }
            release.release(1);
            handle.wait().await.unwrap()
        });
        let counts = result.metadata.counts();
        assert_eq!(counts.accepted, 3_001);
        assert_eq!(counts.processed, 3_001);
        assert_eq!(counts.unprocessed, 0);
        assert_eq!(result.metadata.processed_by("n2"), Some(1_000));
    }

    #[test]
    fn multi_thread_runtime_runs_a_graph() {
        let rt = multi_thread_runtime().unwrap();
        let graph = chain(3).unwrap();
        assert_eq!(rt.block_on(run_standard(&graph, input())).unwrap(), 3);
    }
}
