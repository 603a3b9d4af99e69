//! One call of a node's `process`, guarded: every panic on the node's behalf (making the
//! future, polling it, dropping it, dropping a panic payload) becomes [`Ran::Panicked`], and
//! the activation is dropped at once when the grace period of a stop ends ([`Ran::Dropped`]).
//!
//! While a worker's task is polled (and so its node's future), this thread records which worker
//! of which run it is ([`Polling`], [`current_worker`]), so a send the node makes through a
//! `RunHandle` of its own run takes part in deadlock detection as that worker.

use std::cell::Cell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::Poll;

use spark_adk_core::{Context, DynNode, NodeResult};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::catch::{call_caught, drop_caught, payload_message};
use crate::stop::StopSignal;

/// How an activation (or a shutdown delivery) ended.
pub(crate) enum Ran {
    /// `process` returned.
    Done(NodeResult),
    /// Something on the node's behalf panicked; the message says what.
    Panicked(String),
    /// The grace period ended first: the future was dropped unfinished. Carries the message of
    /// a panic of that drop.
    Dropped(Option<String>),
}

thread_local! {
    /// `(run id, worker index)` of the activation being polled on this thread; run id 0: none.
    static CURRENT: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

/// The worker of run `run_id` whose node is being polled on this thread, if any: a handle
/// send made from inside a node's `process` is that worker's send.
pub(crate) fn current_worker(run_id: u64) -> Option<usize> {
    let (run, worker) = CURRENT.with(Cell::get);
    (run == run_id && run != 0).then_some(worker)
}

/// Marks this thread as polling worker `worker` of run `run` until dropped (restoring what was
/// there: a node may poll another run inline). Set once per poll of the worker's task, not per
/// activation.
pub(crate) struct Polling((u64, usize));

impl Polling {
    pub(crate) fn enter(run: u64, worker: usize) -> Self {
        Self(CURRENT.with(|c| c.replace((run, worker))))
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Who runs the activation, and when it must give up.
pub(crate) struct Runner<'a> {
    /// Fired when the grace period ends: this worker's own child of the run's token (waiting
    /// on it locks nothing other workers touch), made when one of its activations first waits.
    pub(crate) abandon: OnceLock<CancellationToken>,
    /// The run's stop, checked before every poll: once the grace period is over, the node is
    /// not polled again (not even if the cancellation token made it ready).
    pub(crate) stop: &'a StopSignal,
}

impl<'r> Runner<'r> {
    /// Calls `node.process_dyn(ctx)` (when first polled) and awaits it, inside `span` (entered
    /// for each poll) if given; `on_first_pending` runs the first time the node's future
    /// returns `Pending` (the worker is about to wait; see `Deferred`).
    ///
    /// A future of its own rather than an `async fn`: it holds only what it needs (no copies
    /// of its arguments for a closure), which keeps every worker's task small.
    pub(crate) fn run<'n, F: FnMut() + Unpin>(
        &'n self,
        node: &'n dyn DynNode,
        ctx: &'n Context,
        span: Option<tracing::Span>,
        on_first_pending: F,
    ) -> Activation<'n, F> {
        Activation {
            stop: self.stop,
            abandon: &self.abandon,
            node,
            ctx,
            span,
            on_first_pending,
            future: None,
            abandoned: None,
            started: false,
            pended: false,
        }
    }
}

/// The future of one activation (see [`Runner::run`]).
pub(crate) struct Activation<'n, F> {
    stop: &'n StopSignal,
    abandon: &'n OnceLock<CancellationToken>,
    node: &'n dyn DynNode,
    ctx: &'n Context,
    span: Option<tracing::Span>,
    on_first_pending: F,
    /// The node's future, once made; `None` again once it finished or was dropped.
    future: Option<Pin<Box<dyn Future<Output = NodeResult> + Send + 'n>>>,
    /// Made (and boxed) only once the node waits: quick activations never touch the token.
    abandoned: Option<Pin<Box<WaitForCancellationFuture<'n>>>>,
    started: bool,
    pended: bool,
}

impl<F: FnMut() + Unpin> Future for Activation<'_, F> {
    type Output = Ran;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Ran> {
        let this = self.get_mut();
        let _entered = this.span.as_ref().map(tracing::Span::enter);
        if !this.started {
            this.started = true;
            let (node, ctx) = (this.node, this.ctx);
            match call_caught(|| node.process_dyn(ctx)) {
                Ok(future) => this.future = Some(future),
                Err(message) => return Poll::Ready(Ran::Panicked(message)),
            }
        }
        let Some(running) = this.future.as_mut() else {
            return Poll::Ready(Ran::Dropped(None));
        };
        if this.stop.is_abandoned() {
            return Poll::Ready(Ran::Dropped(drop_caught(this.future.take()).err()));
        }
        let polled = catch_unwind(AssertUnwindSafe(|| running.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Ready(result)) => Poll::Ready(match drop_caught(this.future.take()) {
                Ok(()) => Ran::Done(result),
                Err(message) => Ran::Panicked(message),
            }),
            Err(payload) => {
                let message = payload_message(payload);
                if let Err(again) = drop_caught(this.future.take()) {
                    tracing::warn!(message = %again, "dropping a panicked node future panicked");
                }
                Poll::Ready(Ran::Panicked(message))
            }
            Ok(Poll::Pending) => {
                if !this.pended {
                    this.pended = true;
                    (this.on_first_pending)();
                }
                // Only a node that waits registers for the end of the grace period (and,
                // once the stop began, makes sure the grace period is kept).
                if this.stop.is_stopping() {
                    this.stop.need_grace();
                }
                if this.abandoned.is_none() {
                    let stop = this.stop;
                    let token = this.abandon.get_or_init(|| stop.abandon_token());
                    this.abandoned = Some(Box::pin(token.cancelled()));
                }
                let grace_over = this
                    .abandoned
                    .as_mut()
                    .is_none_or(|f| f.as_mut().poll(cx).is_ready());
                if !grace_over {
                    return Poll::Pending;
                }
                Poll::Ready(Ran::Dropped(drop_caught(this.future.take()).err()))
            }
        }
    }
}
