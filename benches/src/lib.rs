//! Shared nodes, graph shapes and runtimes for the criterion benchmarks of Spark for Rust.
//!
//! Every bench target under `benches/benches/` builds its graphs here, so the standard-mode
//! benches (`std_*`) and the long-running ones (`lr_*`) run exactly the same shapes; only the
//! [`Task`] differs (`Task::new(..)` versus `Task::long_running(..)`).
//!
//! The nodes do trivial work, as `DESIGN.md` asks: read `count` from the JSON input and return
//! `{"count": count + 1}`. A graph's result therefore tells how many nodes ran on the way to it
//! (see [`Shape::expected_count`]), which the benches check once before timing anything.
//!
//! The bench ids, the seed's figures and our targets live in `benches/targets.toml`; this crate
//! only knows the shapes.
//!
//! # Example
//!
//! ```
//! use spark_benches::{current_thread_runtime, input, Shape};
//!
//! let rt = current_thread_runtime()?;
//! let graph = Shape::Branching.build()?;
//! let count = rt.block_on(spark_benches::run_standard(&graph, input()))?;
//! assert_eq!(count, Shape::Branching.expected_count());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use spark::prelude::*;
use spark::BuildErrors;

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
        let count = count_of(&ctx.inputs().content);
        Ok(json!({ COUNT: count + 1 }).into())
    }
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
    let mut g = Graph::builder();
    let nodes: Vec<NodeRef> = (0..n).map(|i| g.add(format!("n{i}"), Inc)).collect();
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

/// Runs `inputs` through `graph` in long-running mode and returns the final `count` (for the
/// `lr_*` benches once the mailbox runtime lands).
///
/// # Errors
/// Whatever the run reports (today: long-running mode is not available yet).
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
                .map(|n| n.node.as_ref())
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
    }

    #[test]
    fn multi_thread_runtime_runs_a_graph() {
        let rt = multi_thread_runtime().unwrap();
        let graph = chain(3).unwrap();
        assert_eq!(rt.block_on(run_standard(&graph, input())).unwrap(), 3);
    }
}
