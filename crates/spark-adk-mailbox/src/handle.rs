//! [`RunHandle`]: talk to a spawned long-running run; [`RunSender`]: a cloneable sender into it.

use std::sync::Arc;

use spark_adk_core::{ChannelMessage, NodeMessage, RunError, RunResult, SinkOutput, StopReason};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::activation::current_worker;
use crate::envelope::Envelope;
use crate::mailbox::{Mailbox, Permit};
use crate::mailboxes::{Sender, Undelivered};
use crate::shared::Shared;

/// A message sent through a [`RunHandle`] was not delivered; the message is handed back.
#[derive(Debug, thiserror::Error)]
pub enum HandleSendError {
    /// No node has that name.
    #[error("no node named `{node}` in this graph; the message was not delivered")]
    UnknownNode {
        /// The name that was asked for.
        node: String,
        /// The message.
        message: ChannelMessage,
    },
    /// The run is stopping or has stopped (shutdown, budget, error).
    #[error("the run is stopping or has stopped; the message was not delivered")]
    Stopped(ChannelMessage),
    /// A durable run's log failed to record the message as accepted (the run stops with the
    /// log's error). The message was queued and may be processed before the run stops; it is
    /// not handed back.
    #[error("the run's log failed to record the message: {error}")]
    NotLogged {
        /// The log's error, naming the run and the record.
        error: spark_adk_durable::DurableError,
    },
    /// The node's mailbox is full (only from [`RunHandle::try_send`]).
    #[error("the mailbox of `{node}` is full; the message was not delivered")]
    Full {
        /// The node.
        node: String,
        /// The message.
        message: ChannelMessage,
    },
}

impl HandleSendError {
    /// The message that was not delivered (an empty one for [`HandleSendError::NotLogged`],
    /// whose message was queued).
    pub fn into_message(self) -> ChannelMessage {
        match self {
            HandleSendError::UnknownNode { message, .. }
            | HandleSendError::Stopped(message)
            | HandleSendError::Full { message, .. } => message,
            HandleSendError::NotLogged { .. } => ChannelMessage::new(NodeMessage::empty()),
        }
    }
}

/// A handle to a spawned long-running run (see `LongRunningExecutor::spawn`).
///
/// Dropping the handle begins a graceful stop ([`StopReason::HandleDropped`]) unless
/// [`detach`](Self::detach) was called: workers never keep running forever by accident.
///
/// To send while waiting for the result, take a [`RunSender`] with [`sender`](Self::sender)
/// (cloneable, and dropping it stops nothing), or wait by reference with
/// [`finished`](Self::finished).
#[derive(Debug)]
pub struct RunHandle {
    sender: RunSender,
    driver: Option<JoinHandle<Result<RunResult, RunError>>>,
}

/// A cloneable sender into a spawned run (from [`RunHandle::sender`]): send messages into
/// nodes, request a shutdown, ask whether the run is stopping.
///
/// Unlike the [`RunHandle`], dropping a `RunSender` stops nothing, and it does not keep the
/// run alive either: the run still stops when its handle is dropped. Its sends fail with
/// [`HandleSendError::Stopped`] once the run is stopping.
#[derive(Clone, Debug)]
pub struct RunSender {
    shared: Arc<Shared>,
}

impl RunHandle {
    pub(crate) fn new(
        shared: Arc<Shared>,
        driver: JoinHandle<Result<RunResult, RunError>>,
    ) -> Self {
        Self {
            sender: RunSender { shared },
            driver: Some(driver),
        }
    }

    /// A cloneable [`RunSender`] into this run, to keep sending while this handle
    /// [waits](Self::wait) for the result (e.g. from another task).
    pub fn sender(&self) -> RunSender {
        self.sender.clone()
    }

    /// Sends a message into the mailbox of `node`, waiting while it is full (backpressure).
    /// See [`RunSender::send`].
    ///
    /// # Errors
    /// [`HandleSendError::UnknownNode`] or [`HandleSendError::Stopped`], with the message.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`RunSender::send`].
    pub async fn send(
        &self,
        node: &str,
        message: impl Into<NodeMessage>,
    ) -> Result<(), HandleSendError> {
        // `send_channel` directly: one nested future less per send.
        self.sender
            .send_channel(node, ChannelMessage::new(message))
            .await
    }

    /// Sends an envelope into the mailbox of `node`. See [`RunSender::send_channel`].
    ///
    /// # Errors
    /// As [`RunSender::send`].
    ///
    /// # Cancel safety
    /// Cancel safe, as [`RunSender::send`].
    pub async fn send_channel(
        &self,
        node: &str,
        message: ChannelMessage,
    ) -> Result<(), HandleSendError> {
        self.sender.send_channel(node, message).await
    }

    /// Sends a message into `node`'s mailbox if it has room now.
    ///
    /// # Errors
    /// [`HandleSendError::Full`], [`HandleSendError::UnknownNode`] or
    /// [`HandleSendError::Stopped`], with the message.
    pub fn try_send(
        &self,
        node: &str,
        message: impl Into<NodeMessage>,
    ) -> Result<(), HandleSendError> {
        self.sender.try_send(node, message)
    }

    /// Subscribes to the run's sink outputs (outputs that matched no edge).
    ///
    /// The **first** call does not miss what the run produced before it (section 11 of the
    /// spec): it first receives, oldest first, the outputs the run has kept for its result so
    /// far (as many as its sink retention keeps, at most the last 1,024), then every output
    /// from the call on, each exactly once. So a first subscriber sees every output from the
    /// first one unless it came so late that the retention (a spawned run keeps the last 1,024
    /// by default) no longer holds them. Until the first call nothing is broadcast, so a run
    /// nobody subscribes to pays nothing and holds no extra memory. Later calls see the outputs
    /// from the call on.
    ///
    /// A subscriber that falls more than 1,024 outputs behind gets `RecvError::Lagged` and
    /// loses the oldest; it never slows the run down.
    pub fn subscribe(&self) -> broadcast::Receiver<SinkOutput> {
        self.sender.shared.sinks().subscribe()
    }

    /// Asks the run to stop gracefully ([`StopReason::Shutdown`]): every worker finishes its
    /// in-flight message, gets its shutdown delivery and exits. Await [`wait`](Self::wait) or
    /// [`finished`](Self::finished) for the result.
    pub fn shutdown(&self) {
        self.sender.shutdown();
    }

    /// `true` once the run is stopping or stopped.
    pub fn is_stopping(&self) -> bool {
        self.sender.is_stopping()
    }

    /// `true` once the run has ended: its result is ready, and [`wait`](Self::wait) or
    /// [`finished`](Self::finished) returns without waiting. Also `true` after `finished`
    /// returned the result.
    pub fn is_finished(&self) -> bool {
        self.driver.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Tokens recorded so far.
    pub fn tokens_used(&self) -> u64 {
        self.sender.shared.scope().tokens_used()
    }

    /// Waits for the run to end and returns its result, consuming the handle.
    ///
    /// # Errors
    /// As `LongRunningExecutor::run`; [`RunError::Internal`] if [`finished`](Self::finished)
    /// already returned the result.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping this future drops the handle, which begins a graceful stop.
    /// To wait in a `select!` and keep the run, use [`finished`](Self::finished).
    pub async fn wait(mut self) -> Result<RunResult, RunError> {
        let Some(driver) = self.driver.take() else {
            return Err(RunError::Internal("the run was already awaited".to_owned()));
        };
        let shared = Arc::clone(&self.sender.shared);
        let _stop_if_dropped = StopGuard(shared);
        joined(driver.await)
    }

    /// Waits for the run to end and returns its result, by reference: the handle stays
    /// usable meanwhile (e.g. in a `select!` beside other work), and its drop still stops the
    /// run if it has not ended. The result is returned once: a later call, or
    /// [`wait`](Self::wait), returns [`RunError::Internal`].
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// # Cancel safety
    /// Cancel safe: dropping this future neither stops the run nor loses its result; call
    /// `finished` again to go on waiting.
    pub async fn finished(&mut self) -> Result<RunResult, RunError> {
        let Some(driver) = self.driver.as_mut() else {
            return Err(RunError::Internal("the run was already awaited".to_owned()));
        };
        let outcome = driver.await;
        self.driver = None;
        joined(outcome)
    }

    /// Lets the run go on after the handle is dropped; it then ends only by a budget, a
    /// shutdown requested by a node, an error, or quiescence if enabled. Returns the driver's
    /// join handle, to await the result later.
    pub fn detach(mut self) -> JoinHandle<Result<RunResult, RunError>> {
        match self.driver.take() {
            Some(driver) => driver,
            None => tokio::spawn(async { Err(RunError::Internal("already awaited".to_owned())) }),
        }
    }
}

/// The error of a send to a node the graph does not have.
#[cold]
fn unknown_node(node: &str, message: ChannelMessage) -> HandleSendError {
    HandleSendError::UnknownNode {
        node: node.to_owned(),
        message,
    }
}

impl RunSender {
    /// The index of `node` (the message is not moved through a `Result` per send: it is
    /// large).
    #[inline]
    fn target(&self, node: &str) -> Option<usize> {
        self.shared.topology().index_of(node)
    }

    /// Sends a message into the mailbox of `node`, waiting while it is full (backpressure).
    ///
    /// A node of this run may send through a handle or sender it holds: its send then waits as that
    /// node's worker, so a wait that could never end (for example into its own full mailbox)
    /// ends the run with `RunError::Deadlock` and returns [`HandleSendError::Stopped`] instead
    /// of hanging.
    ///
    /// # Errors
    /// [`HandleSendError::UnknownNode`] or [`HandleSendError::Stopped`], with the message.
    ///
    /// In a durable run (`LongRunningExecutor::spawn_durable`), the message gets an id and is
    /// recorded as accepted in the run's log in the same breath as it is queued; in `Sync`
    /// durability the send returns once that record is committed. A failed commit is
    /// [`HandleSendError::NotLogged`].
    ///
    /// # Cancel safety
    /// Cancel safe: the message is queued only once a slot is reserved (in a durable run, a
    /// slot in the mailbox and one in the log's queue), and nothing is reserved while it waits.
    /// A cancelled send did not deliver; its message is dropped with the future (as with
    /// `tokio::sync::mpsc::Sender::send`). In a durable run with `Sync` durability, a send
    /// cancelled while it waits for the commit has delivered its message and queued its record
    /// (the record is committed, or the run stops with the log's error): only the wait is
    /// given up.
    pub async fn send(
        &self,
        node: &str,
        message: impl Into<NodeMessage>,
    ) -> Result<(), HandleSendError> {
        self.send_channel(node, ChannelMessage::new(message)).await
    }

    /// Sends an envelope into the mailbox of `node`. An envelope with `shutdown: true` is not
    /// delivered as data: it asks the whole run to stop gracefully ([`StopReason::Shutdown`]).
    /// The envelope's metadata is merged into the payload's metadata (keys the payload already
    /// has keep their value), so the node sees it in `ctx.inputs().metadata`; its ack hook fires
    /// once the node has processed the message.
    ///
    /// # Errors
    /// As [`RunSender::send`].
    ///
    /// # Cancel safety
    /// As [`RunSender::send`].
    pub async fn send_channel(
        &self,
        node: &str,
        message: ChannelMessage,
    ) -> Result<(), HandleSendError> {
        let Some(index) = self.target(node) else {
            return Err(unknown_node(node, message));
        };
        let stop = self.shared.stop();
        if stop.is_stopping() {
            return Err(HandleSendError::Stopped(message));
        }
        if message.shutdown {
            stop.request(StopReason::Shutdown);
            return Ok(());
        }
        // A free slot is taken at once; only a full mailbox makes the waiting future.
        let free = self
            .shared
            .mailboxes()
            .get(index)
            .and_then(Mailbox::try_reserve);
        let permit = match free {
            Some(permit) => permit,
            None => match self.reserve(index).await {
                Ok(permit) => permit,
                Err(()) => return Err(HandleSendError::Stopped(message)),
            },
        };
        match self.shared.durable() {
            None => self
                .push_reserved(permit, message)
                .map_err(HandleSendError::Stopped),
            Some(durable) => durable.accept(&self.shared, index, permit, message).await,
        }
    }

    /// A slot in mailbox `index`, waiting while it is full; `Err` once the run stops (or a
    /// deadlock ends it). Cancel safe.
    async fn reserve(&self, index: usize) -> Result<Permit<'_>, ()> {
        let mailboxes = self.shared.mailboxes();
        let stop = self.shared.stop();
        let permit = match mailboxes.get(index).and_then(|m| m.try_reserve()) {
            Some(permit) => permit,
            None => {
                let sender = match current_worker(self.shared.scope().run_id()) {
                    Some(worker) => {
                        // Sent from inside a node of this run: let its worker hand on what it
                        // batched (it does when the node first waits) before waiting as it.
                        tokio::task::yield_now().await;
                        Sender::Worker(worker)
                    }
                    None => Sender::Outside,
                };
                match mailboxes.reserve(index, sender, stop.token()).await {
                    Ok(permit) => permit,
                    Err(undelivered) => {
                        if matches!(undelivered, Undelivered::Deadlock) {
                            stop.fail(RunError::Deadlock {
                                blocked: Vec::new(), // named when the run ends
                                counts: spark_adk_core::RunCounts::default(),
                            });
                        }
                        return Err(());
                    }
                }
            }
        };
        Ok(permit)
    }

    /// Queues `message` into the slot of `permit`, counting it accepted; hands it back if the
    /// run is stopping.
    #[inline]
    fn push_reserved(
        &self,
        permit: Permit<'_>,
        message: ChannelMessage,
    ) -> Result<(), ChannelMessage> {
        if self.shared.stop().is_stopping() {
            return Err(message);
        }
        // Counted accepted under the mailbox's lock, before the worker can see it (so the
        // in-flight count cannot reach zero early), and only if the mailbox is open.
        permit
            .push_with(message, |message| {
                self.shared.accounting().accept_outside();
                Envelope::from_channel(message)
            })
            .map_err(|closed| closed.0)
    }

    /// Sends a message into `node`'s mailbox if it has room now. In a durable run its accepted
    /// record is queued with it (and `Full` is also returned when the log's queue is full), but
    /// not waited for, even in `Sync` durability: use [`send`](Self::send) to know it is
    /// committed.
    ///
    /// # Errors
    /// [`HandleSendError::Full`], [`HandleSendError::UnknownNode`] or
    /// [`HandleSendError::Stopped`], with the message.
    pub fn try_send(
        &self,
        node: &str,
        message: impl Into<NodeMessage>,
    ) -> Result<(), HandleSendError> {
        let message = ChannelMessage::new(message);
        let Some(index) = self.target(node) else {
            return Err(unknown_node(node, message));
        };
        if self.shared.stop().is_stopping() {
            return Err(HandleSendError::Stopped(message));
        }
        let Some(mailbox) = self.shared.mailboxes().get(index) else {
            return Err(HandleSendError::Stopped(message));
        };
        let Some(permit) = mailbox.try_reserve() else {
            if mailbox.is_closed() {
                return Err(HandleSendError::Stopped(message));
            }
            return Err(HandleSendError::Full {
                node: node.to_owned(),
                message,
            });
        };
        if let Some(durable) = self.shared.durable() {
            return durable.try_accept(&self.shared, index, node, permit, message);
        }
        self.push_reserved(permit, message)
            .map_err(HandleSendError::Stopped)
    }

    /// Asks the run to stop gracefully ([`StopReason::Shutdown`]), as
    /// [`RunHandle::shutdown`].
    pub fn shutdown(&self) {
        self.shared.stop().request(StopReason::Shutdown);
    }

    /// `true` once the run is stopping or stopped.
    pub fn is_stopping(&self) -> bool {
        self.shared.stop().is_stopping()
    }
}

/// The result of a driver's join.
fn joined(
    outcome: Result<Result<RunResult, RunError>, tokio::task::JoinError>,
) -> Result<RunResult, RunError> {
    match outcome {
        Ok(result) => result,
        Err(e) => Err(RunError::Internal(format!(
            "the run's driver task failed: {e}"
        ))),
    }
}

struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        if !self.0.stop().is_stopping() {
            self.0.stop().request(StopReason::HandleDropped);
        }
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        let stop = self.sender.shared.stop();
        if self.driver.is_some() && !stop.is_stopping() {
            stop.request(StopReason::HandleDropped);
        }
    }
}
