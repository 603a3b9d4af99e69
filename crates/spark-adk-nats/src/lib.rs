//! Long-running Spark graphs spread over several processes, with mailboxes on NATS JetStream.
//!
//! Every process builds the same graph from the same code (a [`Topology`] from
//! `spark-adk-edges`' `GraphBuilder`), wraps it in a [`DistributedGraph`] with a shared run id,
//! and says which nodes it serves ([`Serve`], all by default). One process is the
//! **coordinator** ([`DistributedGraph::run`] or [`DistributedGraph::start`]): it creates the
//! run's streams, publishes the task input, decides quiescence, budgets and the stop, collects
//! every worker's report and assembles the [`RunResult`](spark_adk_core::RunResult). Any process
//! may host workers ([`DistributedGraph::serve`]). Node code does not change: a node gets the
//! same [`Context`](spark_adk_core::Context) as in memory.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use serde_json::json;
//! use spark_adk_core::{node_fn, NodeError, Task};
//! use spark_adk_edges::GraphBuilder;
//! use spark_adk_nats::{connect, DistributedGraph, Serve};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The same code in every process: the graph...
//! let mut g = GraphBuilder::new();
//! let sensor = g.add("sensor", node_fn(|_| async { Ok::<_, NodeError>(json!({ "value": 93 })) }));
//! let analyzer = g.add("analyzer", node_fn(|ctx| async move {
//!     let value = ctx.inputs().content["value"].as_i64().unwrap_or(0);
//!     Ok::<_, NodeError>(json!({ "anomaly": value > 70 }))
//! }));
//! g.connect(sensor >> analyzer);
//! let topology = Arc::new(g.start(sensor).build()?);
//!
//! // ...on a broker, under a run id every process of the run shares.
//! let client = connect("127.0.0.1:4222", Duration::from_secs(10)).await?;
//! let graph = DistributedGraph::new(client, topology, "sensors-1")?;
//!
//! if std::env::args().any(|a| a == "worker") {
//!     // A worker process: serves the analyzer until the coordinator stops the run.
//!     graph.serve(Serve::nodes(["analyzer"])).await?;
//! } else {
//!     // The coordinator: serves the sensor, runs until quiescence.
//!     let result = graph.run(Task::long_running(json!({})), Serve::nodes(["sensor"])).await?;
//!     assert_eq!(result.content()["anomaly"], true);
//!     let m = &result.metadata;
//!     assert_eq!(m.accepted, m.processed + m.unprocessed);
//! }
//! # Ok(()) }
//! ```
//!
//! The `distributed_pipeline` example runs the seed's sensor -> analyzer -> actuator agent with
//! the analyzer on a second process (see the crate's README for the three commands).
//!
//! # On the broker
//!
//! A run `R` owns (and the coordinator deletes at its end, unless
//! [`Options::keep_streams`]; starting a run whose streams exist is refused, so a run id is
//! never shared by two runs):
//!
//! - **Mailboxes**: a work-queue stream `SPARK_R_MB_<capacity>` with one subject per node
//!   (`spark.R.mb.<index>`): one stream per run when every node has the graph's mailbox
//!   capacity, one per distinct capacity otherwise (JetStream bounds messages per subject
//!   stream-wide). One durable pull consumer per node (`node<index>`), explicit acks,
//!   `max_ack_pending = 1`: a node processes one message at a time across every process
//!   serving it, in stream order, so **per sender->receiver order holds** (a sender publishes
//!   its outputs one after the other and awaits each publish ack).
//! - **Records**: a work-queue stream `SPARK_R_REC` the coordinator reads. Every mailbox
//!   message has a logical id, its `Nats-Msg-Id`: `R.input` for the task input, `R.h.<n>` for
//!   a handle send, and for output `k` of the activation that consumed message `m`,
//!   `R.<128-bit hash of (m, k)>`: the same whenever that activation runs again. An activation
//!   is **settled** by (1) publishing each routed output with its id, awaiting each publish
//!   ack; (2) publishing its record (the message it consumed, which node ran, outputs stored,
//!   outputs not delivered, its sink output, its error, tokens recorded, a shutdown request)
//!   with id `<m>.rec`; (3) acking the input (`double_ack`, confirmed by the server). A process
//!   that dies before (3) gets its message delivered again after `ack_wait`; the re-run's
//!   publishes carry the same ids and JetStream drops them as duplicates (within
//!   [`Options::duplicate_window`], 2 min), and the coordinator counts one record per message
//!   id whatever the broker let through, so **each settled activation's effect on the run
//!   (messages, counts, sink outputs) happens once**; the node's own code runs at least once.
//!   An activation that outlives `ack_wait` keeps its message with a progress ack
//!   (`AckKind::Progress`) every `ack_wait / 3`.
//! - **Control** (core NATS): `spark.R.ctl.hello` (worker heartbeats), `.lease` (token
//!   leases), `.stop` (the coordinator's stop broadcast, repeated until every worker reported),
//!   `.final` (each worker's last report).
//! - **State** (`ctx.state()`, and [`DistributedState`] outside the nodes): a key-value
//!   bucket `SPARK_R_STATE` (one entry per key; keys outside `A-Za-z0-9_-` are stored as `=`
//!   and their hex) and the run's **state lock**, a key in a bucket `SPARK_R_LOCK` whose
//!   stream has a `max_age` of [`Options::state_lock_ttl`]. The coordinator writes the initial
//!   state (the task's, else the graph's) before the task input, reads the final state into
//!   the result, and deletes both buckets with the streams.
//!
//! What each choice costs, measured by the `nats_hop` bench (docs/benchmarks.md): one hop is a
//! pull request, a publish with its ack per output, a record publish with its ack and a
//! confirmed ack: about four round trips to the broker per activation.
//!
//! # Semantics, and how they differ from memory
//!
//! The promises of the in-memory long-running runtime (`spark-adk-mailbox`,
//! docs/runtime-semantics.md) hold, with these differences:
//!
//! - **Delivery** is at-least-once across a process crash, with de-duplication: see above. A
//!   node that routes differently when it runs again (it is not deterministic) may leave the
//!   first attempt's extra outputs in the mailboxes; counts stay exact for nodes that route the
//!   same way each time.
//! - **Mailbox bounds** are enforced by the broker: `max_messages_per_subject = capacity + 1`
//!   with discard-new-per-subject (nats-server 2.9 and later). The broker counts the message a
//!   node is processing (it stays in the stream until acked), hence the `+ 1`: while the node
//!   is busy, `capacity` messages wait behind it, exactly as in memory; while it is idle,
//!   `capacity + 1` may wait (in memory the slot of a message is freed when it starts, so
//!   memory admits one fewer at that moment). A sender that finds the mailbox full (JetStream
//!   error 10077) waits and retries with exponential backoff (1 ms to 100 ms), so it may
//!   start up to 100 ms after room appeared. Nothing is dropped.
//! - **Deadlock** of full mailboxes on a cycle is detected by timeout
//!   ([`Options::deadlock_timeout`], 5 s): when no activation settled for that long, some
//!   workers (they say so in their heartbeats) waited for room all that time, and every node
//!   with a message pending or in flight is one of them, the run ends with
//!   `RunError::Deadlock` naming the waiting nodes. Not exact as in memory: a send through the
//!   coordinator's handle into a full mailbox is not part of it, and a blocked node is only
//!   named once it waited `deadlock_timeout`.
//! - **Quiescence** is decided by the coordinator from the broker: no message waits in any
//!   mailbox and none is in flight (in a work-queue stream a message stays until acked, and an
//!   activation publishes its outputs before it acks its input, so "nothing pending, nothing
//!   awaiting an ack" means no queued message and no activation in flight), seen twice in a
//!   row [`Options::poll`] apart with the streams' last sequence unchanged, and no handle send
//!   in flight. It reads the streams' message counts (one request per stream) and, when those
//!   are not zero but nothing was published since the last look, the node consumers'
//!   `num_pending + num_ack_pending`. It is never early; its delay is one to two polls plus
//!   the info round trips.
//! - **Counts** come from the activation records (one per message id) and the broker:
//!   `accepted` = task input + handle sends + outputs stored + outputs not delivered,
//!   `processed` = records, `unprocessed` = what the node consumers still hold at the end
//!   (`num_pending + num_ack_pending`, counted by the broker) + outputs not delivered.
//!   `accepted == processed + unprocessed` is checked at the end (a mismatch is logged at
//!   ERROR), never computed as a difference.
//! - **Time budget**: the coordinator begins the stop at the deadline; workers finish their
//!   in-flight activation (within the grace period), get their shutdown delivery, report.
//! - **Token budget**: tokens are recorded per worker and reported in the records. A process
//!   leases tokens from the coordinator in chunks ([`Options::token_chunk`], default a
//!   sixteenth of the budget) and starts an activation only while its recorded tokens are
//!   below its lease; the coordinator grants no more than the budget in total and begins the
//!   stop (`Budget(Tokens)`) when it cannot grant, or when the records reach the budget. The
//!   **overshoot** is what the activations in flight at that moment record, at most one per
//!   worker (as in memory, where it is one per node); the **undershoot** (the run stops with
//!   tokens unspent) is at most one chunk per other process (leases are not taken back).
//! - **Shutdown delivery**: on every graceful end each worker (one per node per process
//!   serving it) gets exactly one call with `metadata["shutdown"] == true` after its
//!   in-flight message; a worker whose node failed gets none. Workers learn of the stop from
//!   the coordinator's broadcast, or by finding the run's streams deleted.
//! - **A node that requests shutdown** (`ctx.request_shutdown()`): its process begins the stop
//!   as soon as that activation is settled; the other processes learn of it from the
//!   coordinator (record, then broadcast: about a millisecond on one host), and may settle one
//!   more activation each meanwhile.
//! - **Node errors** and panics are recorded; the coordinator returns the first as
//!   [`RunError`](spark_adk_core::RunError) (`NodeFailed`, `NodePanicked`,
//!   `ConditionPanicked`) naming the node, with the run's counts.
//! - **Payloads** above the broker's `max_payload` (1 MiB by default, minus 256 bytes kept for
//!   headers) are refused, never split: an output is a node error
//!   ("... above the broker's max_payload ..." naming the node), a task input or a handle send
//!   is a [`NatsError::PayloadTooLarge`] / [`SendError`] naming the node.
//! - **Context**: `ctx.tokens_used()` is the tokens of this worker (node in this process), not
//!   of the whole run. `ctx.state()` is **one graph state for the whole run**, on the broker,
//!   with node code unchanged: core's `GraphState` is given a `StateBackend`
//!   (`GraphState::with_backend`). Its methods stay synchronous: each process runs a state
//!   thread (started on first use) with its own current-thread tokio runtime and its own
//!   connection to the servers the process's client was given (the client's other
//!   `ConnectOptions`, such as credentials, are not copied: give them in the URL), and a state
//!   call sends its request there and blocks the calling thread on the answer (a few broker
//!   round trips), so it works on any runtime flavour and never waits on the caller's runtime.
//!   **Atomicity**: every write (`set`, `remove`, `update`, `update_with`, `transaction`)
//!   holds the run's state lock (a key-value `create` of the lock key, retried with backoff;
//!   within a process writers queue on a local mutex first) from its read to its write, so
//!   `update_with`'s `FnOnce` runs exactly once on the current value; the write is a
//!   compare-and-set on the revision read, so a lock that expired under a holder slower than
//!   `state_lock_ttl` makes that write fail, never lose an update. One lock per run: writers
//!   of different keys wait for each other (a transaction may touch any key). `get` takes no
//!   lock; `snapshot` takes it (a consistent copy). A write costs four round trips (take the
//!   lock, read, compare-and-set, release by deleting the lock's message) plus two hand-offs to
//!   the state thread; a `get` one round trip. Measured once on the shared 2-core test
//!   machine, loaded: `get` 0.3 to 0.7 ms, `update_with` and `set` 2 to 4 ms. State calls
//!   block the node's thread: an activation that spends longer than [`Options::ack_wait`] in
//!   them without an `.await` in between gets no progress ack meanwhile and is delivered again. **Errors**: `GraphState` returns no `Result`; a broker
//!   failure makes the method return `None` (`get`, `set`, `remove`), an empty map
//!   (`snapshot`), or run the closure on `null` / an empty map and write nothing
//!   (`update_with` / `transaction`), and fails the activation when it returns (its outputs are
//!   not routed): `RunError::NodeFailed` naming the node, "the graph state failed during an
//!   activation of `node`: ...". In a shutdown delivery it is logged at ERROR.
//!   `ctx.is_stopping()` turns true when the process learns of the stop.
//! - **Events**: each process publishes on its own graph's `EventBus` (the `Topology`'s; every
//!   process builds its own graph, so its own bus) the events of **the nodes it hosts**, as
//!   the in-memory runtime does: `NodeStarted`, `NodeFinished` (with the activation's
//!   duration), `NodeFailed` (also for a graph state failure), `MessageSent` per output stored
//!   in a mailbox, in that order per activation; and what nodes publish through their context
//!   (`NodeRetrying`, `NodeEmitted`). The coordinator's bus also gets the run's
//!   `GraphStarted`, `BudgetExhausted` (when a budget begins the stop) and `GraphFinished`
//!   (stop reason or error). Nothing crosses the broker for events, and nothing is built while
//!   a bus has no subscriber (one check per event). To watch a whole run from one place,
//!   subscribe in every process, or serve every node in the coordinator. `Event::run_id` is the
//!   same in every process (a 64-bit hash of the run id) for what the runtime publishes;
//!   `NodeRetrying` / `NodeEmitted` carry the worker's own scope id (core gives no way to set
//!   it), and `elapsed` counts from the moment the publishing process joined the run. Sink
//!   outputs reach [`DistributedRunHandle::subscribe`]. Shutdown deliveries publish no events.
//!
//! # Faults
//!
//! - **A worker process dies** (even SIGKILL): its unacked message is delivered again after
//!   [`Options::ack_wait`] (default 5 s: the redelivery delay after a crash, against the
//!   cost of a progress ack every `ack_wait / 3` for long activations) to another process
//!   serving the node, and nothing is lost. If no other process serves that node, its mailbox
//!   waits until one does (start a replacement with the same run id) or the run's budget ends
//!   it (counted unprocessed).
//! - **The broker is down or unreachable**: [`connect`] retries with backoff (10 ms to 1 s)
//!   within its timeout, then returns [`NatsError::Connect`] naming the address; a worker
//!   joining a run retries for [`Options::join_timeout`]; publishes retry with backoff until the
//!   run stops; the coordinator gives every broker operation at its end `join_timeout` and
//!   returns [`NatsError::Timeout`] naming the operation rather than hanging. The client
//!   reconnects by itself when the broker comes back, and the run goes on (tested with a
//!   private nats-server killed and restarted mid-run: every message counted once).
//! - **A broker restart** (nats-server 2.9): the broker forgets the de-duplication ids of
//!   messages already deleted, so an activation whose ack was lost may publish its outputs
//!   again and they may run again (node code runs at least once); the coordinator still counts
//!   each message once. The restarted server may also keep some acked messages in the
//!   work-queue stream that no consumer delivers again: they are not counted as work, but they
//!   take room under the per-subject bound (with the default capacity of 1024 this is a few
//!   messages per restart).
//! - **The coordinator dies**: a limit for now. Workers keep serving (their messages stay in
//!   the broker), but nobody decides the end; the run's streams stay on the broker
//!   (`SPARK_<run>_*`, delete them with `nats stream rm`). Resuming a coordinator from a
//!   durable log is the durable-runs issue's work.
//!
//! # Versions
//!
//! Built on `async-nats` 0.50 (the newest whose MSRV, Rust 1.88, is the team's; hence this
//! crate's `rust-version = "1.88"`) with default features off (`jetstream`, `kv`, `ring`):
//! the `server_2_10`+ features would use API fields nats-server 2.9 does not know. Tested
//! against nats-server 2.9.10 with JetStream. async-nats 0.50's `create_key_value` cannot read
//! nats-server 2.9's answer, so the state and lock buckets' streams are created by this crate.
//!
//! **Layering**: depends on `spark-adk-core`, `spark-adk-edges`, async-nats, tokio and
//! serde; never on an executor (`spark-adk-mailbox`, `spark-adk-sequential`) or the facade
//! (checked by the workspace's layering test, `crates/spark-adk/tests/layering.rs`).
//!
//! [`Topology`]: spark_adk_edges::Topology

mod coordinator;
mod error;
mod graph;
mod state;
mod wire;
mod worker;

pub use coordinator::DistributedRunHandle;
pub use error::{DistributedError, NatsError, SendError};
pub use graph::{connect, DistributedGraph, Options, Serve};
pub use state::DistributedState;
pub use worker::WorkerSummary;

/// The NATS client crate (async-nats 0.50), re-exported so users need not name it.
pub use async_nats;
