//! The soak behind `cargo xtask stress`: a long-running graph under load, with bad input and
//! injected faults, checked for "nothing lost".
//!
//! # Shape
//! `nodes` nodes: a [`Gate`] called `gate` (the start node, no edges) and `(nodes - 1) /
//! chain_len` independent chains `c{k}_0 >> c{k}_1 >> ... >> c{k}_{chain_len-1}` of
//! [`StressNode`]s. The driver sends each message through the run handle into a node of the
//! chains picked with a seeded [`XorShift64`]; the message then travels to the end of its chain
//! (a sink output). So every mailbox gets messages from its upstream worker and from the handle.
//!
//! # Batches
//! A node error or panic ends the whole run, so the soak runs in batches. Each batch spawns the
//! graph with `stop_on_quiescence(true)` and the task input `{"epoch": b}`, which the gate holds
//! until the driver has sent the batch's share (or the run stopped): the run cannot end between
//! two sends, and ends exactly when its last message is done. Then the driver releases the gate
//! and awaits the result or the error. The next batch goes on with the next message.
//!
//! # Faults and bad input
//! - `faulty_nodes` nodes of the chains (a seeded choice) fail on the messages whose id `i`
//!   satisfies `mix64(seed ^ mix64(node) ^ i) % fault_one_in == 0` (a known fraction,
//!   `1 / fault_one_in`, of their messages): alternately a `NodeError` and a panic, half of
//!   each before and half after an `.await`.
//! - One message in `bad_input_one_in` has bad content (a counter that is a string, negative,
//!   an array, a float, or content that is not an object at all); nodes must treat it as 0.
//!
//! # Checks, per batch
//! - the runtime's own counters: `accepted - processed - unprocessed == 0` ("lost");
//! - against what the nodes and the driver saw (independent bookkeeping):
//!   `accepted == 1 + sent_ok + emitted` (the task input, the handle's accepted sends, and one
//!   routed message per successful non-tail activation) and `processed == calls` (activations
//!   that began, shutdown deliveries excluded);
//! - every attempted send was accepted or handed back (`sent_ok + returned == attempted`), and a
//!   handed-back message is the very message that was sent;
//! - a completed batch has no unprocessed message and one sink output per tail activation (plus
//!   the gate's); a failed batch failed with an injected fault;
//! - no batch takes longer than `batch_timeout` (a hang).
//!
//! After the last batch: RSS after the last batch minus RSS after the first must stay within
//! `rss_growth_bound`.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spark_adk::crates::core::RunCounts;
use spark_adk::prelude::*;
use spark_adk::LongRunningExecutor;

use crate::{mem, Gate, GateRelease, COUNT, EPOCH, GATE};

/// The key of a stress message's id.
pub const ID: &str = "id";

/// How an injected panic's message starts (a quiet panic hook recognises them by it).
pub const INJECTED_PANIC: &str = "stress: injected panic";

/// How an injected error's message starts.
pub const INJECTED_ERROR: &str = "stress: injected error";

/// `true` when a panic payload is one of the soak's injected panics.
pub fn is_injected_panic(payload: &(dyn Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    text.is_some_and(|t| t.starts_with(INJECTED_PANIC))
}

/// The tiny xorshift64 generator (Marsaglia): deterministic, seeded, no dependency.
#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator; a zero seed (the one fixed point) is replaced by a constant.
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// The splitmix64 finaliser: a well-mixed hash of one `u64`.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The runtime's message counts summed over batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Messages accepted by the runtime.
    pub accepted: u64,
    /// Messages whose `process` call finished.
    pub processed: u64,
    /// Messages accepted and never processed.
    pub unprocessed: u64,
}

impl Totals {
    /// Adds one run's counts.
    pub fn add(&mut self, counts: &RunCounts) {
        self.accepted += counts.accepted;
        self.processed += counts.processed;
        self.unprocessed += counts.unprocessed;
    }

    /// `accepted - processed - unprocessed`: messages neither processed nor counted (must be 0;
    /// negative when more were counted than accepted).
    pub fn lost(&self) -> i128 {
        i128::from(self.accepted) - i128::from(self.processed) - i128::from(self.unprocessed)
    }
}

impl From<&RunCounts> for Totals {
    fn from(c: &RunCounts) -> Self {
        Self {
            accepted: c.accepted,
            processed: c.processed,
            unprocessed: c.unprocessed,
        }
    }
}

/// The closing line: `accepted=N processed=N unprocessed=N lost=N`.
impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} processed={} unprocessed={} lost={}",
            self.accepted,
            self.processed,
            self.unprocessed,
            self.lost()
        )
    }
}

/// Parses a closing line back: `(totals, lost)`; `None` when the line is not one.
pub fn parse_closing_line(line: &str) -> Option<(Totals, i128)> {
    let mut fields = line.trim().split(' ');
    let mut field =
        |name: &str| -> Option<&str> { fields.next()?.strip_prefix(name)?.strip_prefix('=') };
    let accepted = field("accepted")?.parse().ok()?;
    let processed = field("processed")?.parse().ok()?;
    let unprocessed = field("unprocessed")?.parse().ok()?;
    let lost = field("lost")?.parse().ok()?;
    if fields.next().is_some() {
        return None;
    }
    Some((
        Totals {
            accepted,
            processed,
            unprocessed,
        },
        lost,
    ))
}

/// The soak's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Nodes of the graph, the gate included: `1 + chains * chain_len`.
    pub nodes: usize,
    /// Nodes per chain.
    pub chain_len: usize,
    /// Messages the driver sends in all (attempted sends).
    pub messages: u64,
    /// Messages per batch (a batch that fails early sends fewer; the next goes on).
    pub batch: u64,
    /// How many nodes of the chains inject faults.
    pub faulty_nodes: usize,
    /// A faulty node fails on one message in this many.
    pub fault_one_in: u64,
    /// One message in this many has bad content.
    pub bad_input_one_in: u64,
    /// The seed of every choice.
    pub seed: u64,
    /// The bound on RSS growth from after the first batch to after the last, in bytes.
    pub rss_growth_bound: u64,
    /// A batch that takes longer is reported as a hang.
    pub batch_timeout: Duration,
}

impl Config {
    /// The full soak: 1,000 nodes (the gate and 37 chains of 27), 1,000,000 messages in batches
    /// of 50,000; 10 faulty nodes (1%) failing on 1 in 10,000 of their messages.
    pub fn full() -> Self {
        Self {
            nodes: 1_000,
            chain_len: 27,
            messages: 1_000_000,
            batch: 50_000,
            faulty_nodes: 10,
            fault_one_in: 10_000,
            bad_input_one_in: 1_000,
            seed: 0x5EED_5A4C,
            rss_growth_bound: 64 * 1024 * 1024,
            batch_timeout: Duration::from_secs(120),
        }
    }

    /// The CI variant: 100 nodes (the gate and 11 chains of 9), 20,000 messages in batches of
    /// 2,000; 1 faulty node (1%) failing on 1 in 50 of its messages.
    pub fn quick() -> Self {
        Self {
            nodes: 100,
            chain_len: 9,
            messages: 20_000,
            batch: 2_000,
            faulty_nodes: 1,
            fault_one_in: 50,
            bad_input_one_in: 500,
            ..Self::full()
        }
    }

    /// How many chains the graph has.
    pub fn chains(&self) -> usize {
        self.nodes.saturating_sub(1) / self.chain_len.max(1)
    }

    fn validate(&self) -> Result<(), String> {
        if self.chain_len == 0 || self.nodes < 2 || !(self.nodes - 1).is_multiple_of(self.chain_len)
        {
            return Err(format!(
                "{} nodes are not the gate plus whole chains of {}",
                self.nodes, self.chain_len
            ));
        }
        if self.faulty_nodes > self.nodes - 1 {
            return Err(format!(
                "{} faulty nodes in {} chain nodes",
                self.faulty_nodes,
                self.nodes - 1
            ));
        }
        if self.batch == 0 || self.fault_one_in == 0 || self.bad_input_one_in == 0 {
            return Err("batch, fault_one_in and bad_input_one_in must be at least 1".to_owned());
        }
        Ok(())
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} nodes (the gate and {} chains of {}), {} messages in batches of {}; {} faulty \
             node(s) ({:.1}%) failing on 1 in {} of their messages (error and panic in turn); \
             bad input in 1 of {} messages; seed {:#x}",
            self.nodes,
            self.chains(),
            self.chain_len,
            self.messages,
            self.batch,
            self.faulty_nodes,
            100.0 * self.faulty_nodes as f64 / self.nodes as f64,
            self.fault_one_in,
            self.bad_input_one_in,
            self.seed
        )
    }
}

/// What the nodes saw, counted by the nodes themselves (shutdown deliveries excluded).
#[derive(Debug, Default)]
struct Stats {
    gate_calls: AtomicU64,
    calls: AtomicU64,
    emitted: AtomicU64,
    sinks: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    bad_inputs: AtomicU64,
}

/// A snapshot of the nodes' own counts (or the difference of two).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Activations of the gate that began (the task input; 1 per batch unless a fault stopped
    /// the run before the gate's worker took it).
    pub gate_calls: u64,
    /// Activations of the chain nodes that began.
    pub calls: u64,
    /// Messages the activations routed onward (one per successful non-tail activation).
    pub emitted: u64,
    /// Successful activations of chain tails (their output is a sink output).
    pub sinks: u64,
    /// Injected errors.
    pub errors: u64,
    /// Injected panics.
    pub panics: u64,
    /// Activations whose input had bad content.
    pub bad_inputs: u64,
}

impl Stats {
    fn snapshot(&self) -> NodeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Acquire);
        NodeStats {
            gate_calls: get(&self.gate_calls),
            calls: get(&self.calls),
            emitted: get(&self.emitted),
            sinks: get(&self.sinks),
            errors: get(&self.errors),
            panics: get(&self.panics),
            bad_inputs: get(&self.bad_inputs),
        }
    }
}

impl std::ops::Sub for NodeStats {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            gate_calls: self.gate_calls - o.gate_calls,
            calls: self.calls - o.calls,
            emitted: self.emitted - o.emitted,
            sinks: self.sinks - o.sinks,
            errors: self.errors - o.errors,
            panics: self.panics - o.panics,
            bad_inputs: self.bad_inputs - o.bad_inputs,
        }
    }
}

/// The node of the chains: like [`crate::Inc`] (`{"id": i, "count": n}` in, `{"id": i,
/// "count": n + 1}` out), counting what it sees, and failing on its planned messages if faulty.
#[derive(Debug)]
pub struct StressNode {
    index: u64,
    has_next: bool,
    fault: Option<(u64, u64)>,
    faults: AtomicU64,
    stats: Arc<Stats>,
}

impl StressNode {
    fn fails_on(&self, id: u64) -> bool {
        self.fault.is_some_and(|(seed, one_in)| {
            mix64(seed ^ mix64(self.index) ^ id).is_multiple_of(one_in)
        })
    }
}

impl Node for StressNode {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if ctx.is_shutdown() {
            return Ok(NodeMessage::empty());
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let content = ctx.inputs().content();
        let id = content.get(ID).and_then(Value::as_u64);
        let count = content.get(COUNT).and_then(Value::as_u64);
        if id.is_none() || count.is_none() {
            self.stats.bad_inputs.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(id) = id.filter(|&id| self.fails_on(id)) {
            let nth = self.faults.fetch_add(1, Ordering::Relaxed);
            if (nth / 2) % 2 == 1 {
                // Half of the faults happen after an `.await`.
                tokio::task::yield_now().await;
            }
            let at = format!("at node #{} on message {id}", self.index);
            if nth.is_multiple_of(2) {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                return Err(NodeError::new(format!("{INJECTED_ERROR} {at}")));
            }
            self.stats.panics.fetch_add(1, Ordering::Relaxed);
            #[allow(clippy::panic)] // the fault this node exists to inject
            {
                std::panic::panic_any(format!("{INJECTED_PANIC} {at}"));
            }
        }
        if id.is_some_and(|id| id % 61 == 0) {
            tokio::task::yield_now().await;
        }
        if self.has_next {
            self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.sinks.fetch_add(1, Ordering::Relaxed);
        }
        Ok(json!({ ID: id, COUNT: count.unwrap_or(0).saturating_add(1) }).into())
    }
}

/// The [`Gate`] of the soak, counting its activations.
#[derive(Debug)]
struct CountingGate {
    gate: Gate,
    stats: Arc<Stats>,
}

impl Node for CountingGate {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if !ctx.is_shutdown() {
            self.stats.gate_calls.fetch_add(1, Ordering::Relaxed);
        }
        self.gate.process(ctx).await
    }
}

/// The content of message `id`: `{"id": id, "count": 0}`, or bad content for one message in
/// `bad_one_in`.
pub fn payload(id: u64, bad_one_in: u64) -> (Value, bool) {
    if id % bad_one_in.max(1) != bad_one_in.max(1) - 1 {
        return (json!({ ID: id, COUNT: 0 }), false);
    }
    let bad = match (id / bad_one_in.max(1)) % 5 {
        0 => json!({ ID: id, COUNT: "seven" }),
        1 => json!({ ID: id, COUNT: -3 }),
        2 => json!({ ID: id, COUNT: [1, { "x": null }], "padding": "x".repeat(1_000) }),
        3 => json!({ ID: id, COUNT: 1.5e300 }),
        _ => json!(["not", "an", "object", id]),
    };
    (bad, true)
}

/// One batch: what the driver did and what the run reported.
#[derive(Clone, Debug)]
pub struct Batch {
    /// 1-based.
    pub number: u64,
    /// Sends tried.
    pub attempted: u64,
    /// Sends the runtime accepted.
    pub sent_ok: u64,
    /// Sends handed back (`HandleSendError::into_message`).
    pub returned: u64,
    /// Messages with bad content among the attempted ones.
    pub bad_sent: u64,
    /// The runtime's counts (from the result or the error).
    pub counts: RunCounts,
    /// How the run ended: `completed` or the error.
    pub ended: String,
    /// `true` when the run ended with an error.
    pub failed: bool,
    /// What the nodes counted during the batch.
    pub nodes: NodeStats,
    /// How long the batch took.
    pub elapsed: Duration,
    /// RSS after the batch.
    pub rss: Option<u64>,
    /// Every check that failed.
    pub problems: Vec<String>,
}

/// The whole soak.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The runtime's counts, summed over batches.
    pub totals: Totals,
    /// Sends tried.
    pub attempted: u64,
    /// Sends accepted.
    pub sent_ok: u64,
    /// Sends handed back.
    pub returned: u64,
    /// Messages with bad content among the attempted ones.
    pub bad_sent: u64,
    /// Batches run.
    pub batches: u64,
    /// Batches that ended with an error.
    pub failed_batches: u64,
    /// What the nodes counted.
    pub nodes: NodeStats,
    /// RSS after the first batch.
    pub rss_first: Option<u64>,
    /// RSS after the last batch.
    pub rss_last: Option<u64>,
    /// Every check that failed (empty: the soak passed, RSS aside).
    pub problems: Vec<String>,
    /// How long the soak took.
    pub elapsed: Duration,
}

impl Summary {
    /// RSS after the last batch minus after the first (bytes; negative when it shrank).
    pub fn rss_growth(&self) -> Option<i128> {
        Some(i128::from(self.rss_last?) - i128::from(self.rss_first?))
    }
}

/// The graph of a soak and the handles to drive it.
pub struct Soak {
    config: Config,
    graph: Graph,
    release: GateRelease,
    stats: Arc<Stats>,
    entries: Vec<String>,
    faulty: Vec<String>,
    faulty_index: Vec<usize>,
}

impl fmt::Debug for Soak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Soak")
            .field("config", &self.config)
            .field("faulty", &self.faulty)
            .finish_non_exhaustive()
    }
}

impl Soak {
    /// Builds the graph of `config`.
    ///
    /// # Errors
    /// An invalid configuration, or a graph the builder rejects.
    pub fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        let chain_nodes = config.nodes - 1;
        let mut rng = XorShift64::new(mix64(config.seed));
        let mut faulty_index: Vec<usize> = Vec::with_capacity(config.faulty_nodes);
        while faulty_index.len() < config.faulty_nodes {
            let i = rng.below(chain_nodes as u64) as usize;
            if !faulty_index.contains(&i) {
                faulty_index.push(i);
            }
        }
        faulty_index.sort_unstable();

        let stats = Arc::new(Stats::default());
        let (gate, release) = Gate::new();
        let mut g = Graph::builder();
        let start = g.add(
            GATE,
            CountingGate {
                gate,
                stats: Arc::clone(&stats),
            },
        );
        let mut entries = Vec::with_capacity(chain_nodes);
        for k in 0..config.chains() {
            let mut previous: Option<NodeRef> = None;
            for p in 0..config.chain_len {
                let index = k * config.chain_len + p;
                let name = format!("c{k}_{p}");
                let node = StressNode {
                    index: index as u64,
                    has_next: p + 1 < config.chain_len,
                    fault: faulty_index
                        .contains(&index)
                        .then_some((config.seed, config.fault_one_in)),
                    faults: AtomicU64::new(0),
                    stats: Arc::clone(&stats),
                };
                let this = g.add(name.clone(), node);
                if let Some(prev) = previous {
                    g.connect(prev >> this);
                }
                previous = Some(this);
                entries.push(name);
            }
        }
        g.start(start);
        let graph = g.build().map_err(|e| e.to_string())?;
        let faulty = faulty_index.iter().map(|&i| entries[i].clone()).collect();
        Ok(Self {
            config,
            graph,
            release,
            stats,
            entries,
            faulty,
            faulty_index,
        })
    }

    /// The names of the faulty nodes.
    pub fn faulty_nodes(&self) -> &[String] {
        &self.faulty
    }

    /// How many faults the plan holds for all messages, were each processed: a message entering
    /// chain position `p` passes positions `p..chain_len`, so a node at depth `d` sees a fraction
    /// `(d + 1) / (nodes - 1)` of the messages, and fails on `1 / fault_one_in` of them. (A
    /// fault ends its batch, and messages in flight then are not processed: fewer happen.)
    pub fn planned_faults(&self) -> f64 {
        let c = &self.config;
        let chain_nodes = (c.nodes - 1) as f64;
        self.faulty_index
            .iter()
            .map(|&i| {
                let depth = (i % c.chain_len) as f64;
                c.messages as f64 * (depth + 1.0) / chain_nodes / c.fault_one_in as f64
            })
            .sum()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs every batch (calling `progress` after each) and sums up. Stops early at a hang.
    /// Call from within a tokio runtime.
    pub async fn run(&self, mut progress: impl FnMut(&Batch)) -> Summary {
        let started = Instant::now();
        let mut summary = Summary::default();
        let mut rng = XorShift64::new(self.config.seed);
        let mut next_id = 0_u64;
        let before_all = self.stats.snapshot();
        while next_id < self.config.messages {
            let share = self.config.batch.min(self.config.messages - next_id);
            let batch = self
                .run_batch(summary.batches + 1, share, &mut next_id, &mut rng)
                .await;
            summary.batches += 1;
            summary.failed_batches += u64::from(batch.failed);
            summary.attempted += batch.attempted;
            summary.sent_ok += batch.sent_ok;
            summary.returned += batch.returned;
            summary.bad_sent += batch.bad_sent;
            summary.totals.add(&batch.counts);
            if summary.batches == 1 {
                summary.rss_first = batch.rss;
            }
            summary.rss_last = batch.rss;
            summary.problems.extend(
                batch
                    .problems
                    .iter()
                    .map(|p| format!("batch {}: {p}", batch.number)),
            );
            progress(&batch);
            if batch.problems.iter().any(|p| p.contains("hung")) {
                break;
            }
        }
        summary.nodes = self.stats.snapshot() - before_all;
        if summary.sent_ok + summary.returned != summary.attempted {
            summary.problems.push(format!(
                "sent_ok {} + returned {} != attempted {}",
                summary.sent_ok, summary.returned, summary.attempted
            ));
        }
        if summary.totals.lost() != 0 {
            summary
                .problems
                .push(format!("{} message(s) lost", summary.totals.lost()));
        }
        summary.elapsed = started.elapsed();
        summary
    }

    async fn run_batch(
        &self,
        number: u64,
        share: u64,
        next_id: &mut u64,
        rng: &mut XorShift64,
    ) -> Batch {
        let started = Instant::now();
        let before = self.stats.snapshot();
        let mut batch = Batch {
            number,
            attempted: 0,
            sent_ok: 0,
            returned: 0,
            bad_sent: 0,
            counts: RunCounts::default(),
            ended: String::new(),
            failed: false,
            nodes: NodeStats::default(),
            elapsed: Duration::ZERO,
            rss: None,
            problems: Vec::new(),
        };
        // Every sink output is counted below: keep them all (a spawn keeps the last 1,024).
        let spawned = LongRunningExecutor::new()
            .stop_on_quiescence(true)
            .sink_retention(spark_adk::SinkRetention::All)
            .spawn(
                Arc::clone(self.graph.topology()),
                Task::long_running(json!({ EPOCH: number })),
            );
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                batch.problems.push(format!("spawn failed: {e}"));
                return batch;
            }
        };

        let entries = self.entries.len() as u64;
        let send_all = async {
            for _ in 0..share {
                let id = *next_id;
                *next_id += 1;
                let entry = &self.entries[rng.below(entries) as usize];
                let (content, bad) = payload(id, self.config.bad_input_one_in);
                let message = NodeMessage::from(content);
                batch.attempted += 1;
                batch.bad_sent += u64::from(bad);
                match handle.send(entry, message.clone()).await {
                    Ok(()) => batch.sent_ok += 1,
                    Err(e) => {
                        batch.returned += 1;
                        let back = e.into_message();
                        if !Arc::ptr_eq(&back.payload.content, &message.content) {
                            batch
                                .problems
                                .push(format!("send of message {id} handed back another message"));
                        }
                        break; // the run stopped
                    }
                }
            }
        };
        if tokio::time::timeout(self.config.batch_timeout, send_all)
            .await
            .is_err()
        {
            batch.problems.push(format!(
                "hung: sending did not finish within {:?} (after {} sends)",
                self.config.batch_timeout, batch.attempted
            ));
        }
        self.release.release(number);
        let outcome = tokio::time::timeout(self.config.batch_timeout, handle.wait()).await;
        let nodes = self.stats.snapshot() - before;
        batch.nodes = nodes;
        match outcome {
            Err(_) => batch.problems.push(format!(
                "hung: the run did not end within {:?} of the gate's release",
                self.config.batch_timeout
            )),
            Ok(Ok(result)) => {
                batch.counts = result.metadata.counts();
                batch.ended = format!("{:?}", result.metadata.stop_reason).to_lowercase();
                if result.metadata.stop_reason != StopReason::Completed {
                    batch
                        .problems
                        .push(format!("stopped with {:?}", result.metadata.stop_reason));
                }
                if batch.counts.unprocessed != 0 {
                    batch.problems.push(format!(
                        "completed with {} unprocessed",
                        batch.counts.unprocessed
                    ));
                }
                let sinks = result.sink_outputs().len() as u64;
                if sinks != nodes.sinks + 1 {
                    batch.problems.push(format!(
                        "{sinks} sink outputs, but the tails finished {} (+1 gate)",
                        nodes.sinks
                    ));
                }
                if nodes.errors + nodes.panics != 0 {
                    batch
                        .problems
                        .push("completed although a fault was injected".to_owned());
                }
            }
            Ok(Err(error)) => {
                batch.failed = true;
                batch.ended = error.to_string();
                match error.counts() {
                    Some(counts) => batch.counts = *counts,
                    None => batch
                        .problems
                        .push(format!("error without counts: {error}")),
                }
                let injected = match &error {
                    RunError::NodeFailed { source, .. } => {
                        source.message().starts_with(INJECTED_ERROR)
                    }
                    RunError::NodePanicked { message, .. } => message.starts_with(INJECTED_PANIC),
                    _ => false,
                };
                if !injected || nodes.errors + nodes.panics == 0 {
                    batch
                        .problems
                        .push(format!("failed, but not with an injected fault: {error}"));
                }
            }
        }
        let c = batch.counts;
        let lost = Totals::from(&c).lost();
        if lost != 0 {
            batch.problems.push(format!(
                "lost {lost}: accepted {} != processed {} + unprocessed {}",
                c.accepted, c.processed, c.unprocessed
            ));
        }
        if outcome_is_known(&batch) {
            let expected = 1 + batch.sent_ok + nodes.emitted;
            if c.accepted != expected {
                batch.problems.push(format!(
                    "runtime accepted {} but the task input, {} handle sends and {} routed \
                     outputs make {expected}",
                    c.accepted, batch.sent_ok, nodes.emitted
                ));
            }
            if c.processed != nodes.gate_calls + nodes.calls {
                batch.problems.push(format!(
                    "runtime processed {} but the gate and the nodes began {} + {} activations",
                    c.processed, nodes.gate_calls, nodes.calls
                ));
            }
        }
        if batch.sent_ok + batch.returned != batch.attempted {
            batch.problems.push(format!(
                "sent_ok {} + returned {} != attempted {}",
                batch.sent_ok, batch.returned, batch.attempted
            ));
        }
        batch.rss = mem::rss_bytes();
        batch.elapsed = started.elapsed();
        batch
    }
}

/// The cross-checks with the nodes' counts need the run to be over (not hung).
fn outcome_is_known(batch: &Batch) -> bool {
    !batch.problems.iter().any(|p| p.contains("hung"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_closing_line_round_trips() {
        let t = Totals {
            accepted: 14_000_123,
            processed: 14_000_100,
            unprocessed: 23,
        };
        let line = t.to_string();
        assert_eq!(
            line,
            "accepted=14000123 processed=14000100 unprocessed=23 lost=0"
        );
        assert_eq!(parse_closing_line(&line), Some((t, 0)));
        let lossy = Totals {
            accepted: 10,
            processed: 7,
            unprocessed: 1,
        };
        assert_eq!(
            lossy.to_string(),
            "accepted=10 processed=7 unprocessed=1 lost=2"
        );
        assert_eq!(parse_closing_line(&lossy.to_string()).map(|p| p.1), Some(2));
        let over = Totals {
            accepted: 1,
            processed: 2,
            unprocessed: 0,
        };
        assert_eq!(parse_closing_line(&over.to_string()).map(|p| p.1), Some(-1));
        for bad in [
            "",
            "accepted=1 processed=1 unprocessed=0",
            "accepted=1 processed=1 unprocessed=0 lost=0 extra=1",
            "accepted=x processed=1 unprocessed=0 lost=0",
            "processed=1 accepted=1 unprocessed=0 lost=0",
        ] {
            assert_eq!(parse_closing_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn xorshift_and_mix_are_deterministic() {
        let mut a = XorShift64::new(42);
        let mut b = XorShift64::new(42);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert!(xs.windows(2).all(|w| w[0] != w[1]));
        assert_ne!(XorShift64::new(0).next_u64(), 0);
        assert!((0..1_000).all(|_| a.below(7) < 7));
        assert_eq!(a.below(0), 0);
        assert_ne!(mix64(1), mix64(2));
        // About 1 in 100 ids hit a 1-in-100 plan.
        let hits = (0..100_000_u64)
            .filter(|&i| mix64(7 ^ i).is_multiple_of(100))
            .count();
        assert!((800..1_200).contains(&hits), "{hits}");
    }

    #[test]
    fn one_payload_in_n_is_bad() {
        let bad = (0..5_000).filter(|&i| payload(i, 500).1).count();
        assert_eq!(bad, 10);
        assert_eq!(payload(3, 500).0, json!({ ID: 3, COUNT: 0 }));
        assert!(!payload(499, 500).0[COUNT].is_u64());
    }

    #[test]
    fn injected_panics_are_recognised() {
        let p: Box<dyn Any + Send> = Box::new(format!("{INJECTED_PANIC} at node #3"));
        assert!(is_injected_panic(p.as_ref()));
        let q: Box<dyn Any + Send> = Box::new("index out of bounds");
        assert!(!is_injected_panic(q.as_ref()));
    }

    #[test]
    fn a_bad_config_is_rejected() {
        let c = Config {
            nodes: 100,
            chain_len: 7,
            ..Config::quick()
        };
        assert!(Soak::new(c).is_err());
        assert_eq!(Config::full().chains(), 37);
        assert_eq!(Config::quick().chains(), 11);
    }

    #[test]
    fn a_small_soak_loses_nothing() {
        let config = Config {
            nodes: 31,
            chain_len: 5,
            messages: 6_000,
            batch: 1_000,
            faulty_nodes: 2,
            fault_one_in: 300,
            bad_input_one_in: 100,
            ..Config::quick()
        };
        let soak = Soak::new(config).unwrap();
        assert_eq!(soak.faulty_nodes().len(), 2);
        let rt = crate::multi_thread_runtime().unwrap();
        let mut batches = Vec::new();
        let summary = rt.block_on(soak.run(|b| batches.push(b.clone())));
        assert!(summary.problems.is_empty(), "{:?}", summary.problems);
        assert_eq!(summary.totals.lost(), 0);
        assert_eq!(summary.attempted, 6_000);
        assert_eq!(summary.sent_ok + summary.returned, summary.attempted);
        assert!(summary.batches >= 6);
        assert_eq!(
            summary.failed_batches,
            batches.iter().filter(|b| b.failed).count() as u64
        );
        assert!(summary.nodes.bad_inputs > 0);
        assert!(summary.totals.processed > summary.sent_ok);
    }
}
