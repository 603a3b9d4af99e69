//! [`DistributedGraph`]: one graph, one run id, one broker; the entry point of every process.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use spark_adk_edges::Topology;

use crate::error::NatsError;
use crate::wire::{check_run_id, Names};

/// Settings of a distributed run. Every process of a run should use the same values.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long the broker waits for a worker's ack before it delivers the message again
    /// (JetStream `ack_wait`). A worker killed mid-activation delays its message by at most
    /// this; a live activation keeps its message with a progress ack every `ack_wait / 3`.
    /// Default 5 s.
    pub ack_wait: Duration,
    /// How often the coordinator looks at the mailboxes for quiescence (two looks in a row
    /// must agree). Default 20 ms.
    pub poll: Duration,
    /// How long an idle worker's pull request waits on the broker before it asks again.
    /// Default 1 s.
    pub fetch_wait: Duration,
    /// Grace period of a graceful stop (as in memory): after it, in-flight activations are
    /// dropped and counted unprocessed. Default 30 s.
    pub grace: Duration,
    /// Tokens a process leases from the coordinator at a time under a token budget. `None`:
    /// a sixteenth of the budget (at least 1).
    pub token_chunk: Option<u64>,
    /// How long a process retries reaching the run's streams, and a broker operation, before it
    /// gives up with an error. Default 30 s.
    pub join_timeout: Duration,
    /// How often a worker process says it is alive. The coordinator waits two of these after
    /// the stop began for workers it has not heard of yet. Default 100 ms.
    pub heartbeat: Duration,
    /// Whether the run ends at quiescence; `None`: yes for [`DistributedGraph::run`], no for
    /// [`DistributedGraph::start`] (as in memory).
    pub stop_on_quiescence: Option<bool>,
    /// JetStream de-duplication window of the run's streams: a re-run activation's outputs are
    /// dropped as duplicates within it. Default 2 min (must exceed `ack_wait`).
    pub duplicate_window: Duration,
    /// Deadlock detection by timeout: when no activation settled for this long, some workers
    /// have waited for room in a full mailbox all that time and every node with work is one of
    /// them, the run ends with `RunError::Deadlock` naming them. `None`: never (a blocked run
    /// then ends with its budget). Default 5 s.
    pub deadlock_timeout: Option<Duration>,
    /// How long the run's graph state lock lives when its holder does not release it (the
    /// process died mid-write): the `max_age` of the lock bucket. A writer holds the lock for a
    /// few broker round trips plus its closure's run; a closure running longer than this lets
    /// another writer in, and then its own write fails with an error (compare-and-set), never
    /// a lost update. Default 10 s.
    pub state_lock_ttl: Duration,
    /// Keep the run's streams after the run (for inspection); by default the coordinator
    /// deletes them.
    pub keep_streams: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(5),
            poll: Duration::from_millis(20),
            fetch_wait: Duration::from_secs(1),
            grace: Duration::from_secs(30),
            token_chunk: None,
            join_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_millis(100),
            stop_on_quiescence: None,
            duplicate_window: Duration::from_secs(120),
            deadlock_timeout: Some(Duration::from_secs(5)),
            state_lock_ttl: Duration::from_secs(10),
            keep_streams: false,
        }
    }
}

/// Which nodes a process serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Serve {
    /// Every node of the graph (the default).
    #[default]
    All,
    /// Only these nodes, by name.
    Nodes(Vec<String>),
    /// No node (a coordinator that only coordinates).
    Nothing,
}

impl Serve {
    /// Only the nodes named.
    pub fn nodes<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Serve::Nodes(names.into_iter().map(Into::into).collect())
    }

    pub(crate) fn indices(&self, topology: &Topology) -> Result<Vec<usize>, NatsError> {
        match self {
            Serve::All => Ok((0..topology.len()).collect()),
            Serve::Nothing => Ok(Vec::new()),
            Serve::Nodes(names) => names
                .iter()
                .map(|n| {
                    topology.index_of(n).ok_or_else(|| {
                        NatsError::Invalid(format!("no node named `{n}` in the graph"))
                    })
                })
                .collect(),
        }
    }
}

/// A graph, a run id and a broker connection: what every process of a distributed run makes
/// (from the same code), then either [`start`](Self::start)s the run (the coordinator) or
/// [`serve`](Self::serve)s some of its nodes (a worker process).
#[derive(Clone, Debug)]
pub struct DistributedGraph {
    pub(crate) client: Client,
    pub(crate) topology: Arc<Topology>,
    pub(crate) names: Names,
    pub(crate) options: Options,
}

impl DistributedGraph {
    /// The graph `topology` as run `run_id` on the broker `client` is connected to.
    ///
    /// # Errors
    /// [`NatsError::Invalid`] when the run id is not 1 to 64 characters of `A-Za-z0-9_-`.
    pub fn new(
        client: Client,
        topology: Arc<Topology>,
        run_id: impl AsRef<str>,
    ) -> Result<Self, NatsError> {
        check_run_id(run_id.as_ref())?;
        Ok(Self {
            client,
            topology,
            names: Names::new(run_id.as_ref()),
            options: Options::default(),
        })
    }

    /// Returns the graph with these settings.
    #[must_use]
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.names.run
    }

    /// The graph.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// The settings.
    pub fn options(&self) -> &Options {
        &self.options
    }
}

/// Connects to a NATS server, retrying with exponential backoff (10 ms to 1 s) for at most
/// `within`.
///
/// # Errors
/// [`NatsError::Connect`] naming the address and the last error when no attempt succeeded.
pub async fn connect(url: &str, within: Duration) -> Result<Client, NatsError> {
    let deadline = tokio::time::Instant::now() + within;
    let mut backoff = crate::wire::Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let attempt = async_nats::ConnectOptions::new()
            .connection_timeout(left.max(Duration::from_millis(10)))
            .connect(url);
        let error = match tokio::time::timeout(left.max(Duration::from_millis(10)), attempt).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(NatsError::Connect {
                url: url.to_owned(),
                attempts,
                reason: error,
            });
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
