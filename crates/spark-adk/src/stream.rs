//! [`RunStream`]: the `futures::Stream` of a streamed run ([`Graph::stream`](crate::Graph::stream)).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures_util::Stream;
use spark_adk_core::{
    stream_channel, CancellationToken, RunError, RunScope, StreamEvent, StreamOptions,
    StreamReceiver, Task, TaskType,
};
use spark_adk_edges::Topology;
use spark_adk_mailbox::LongRunningExecutor;
use spark_adk_sequential::SequentialExecutor;

/// The events of one streamed run, in order, ending with [`StreamEvent::Finished`] (the
/// result or error); after it the stream ends. Made by [`Graph::stream`](crate::Graph::stream).
///
/// The run works in a task of its own: it goes on while the consumer is not polling, as far
/// as the mode lets it (lossless: until the channel is full; lagging: to its end, dropping
/// what does not fit).
///
/// # Dropping the stream
/// Dropping it before the last item stops the run gracefully:
/// - standard mode: the run's cancellation token is cancelled, so the running node is cut off
///   at its next `.await` and the run ends with [`RunError::Cancelled`];
/// - long-running mode: at the next event a worker sends, the run begins its graceful stop
///   with [`StopReason::HandleDropped`](spark_adk_core::StopReason::HandleDropped) (in-flight
///   activations finish, queued messages are counted unprocessed).
///
/// Either way the run's counts balance and its result is dropped, since nobody is left to
/// receive it; the graph's event bus still gets its `GraphFinished` if anyone subscribed
/// there ([`Graph::events`](crate::Graph::events)).
#[derive(Debug)]
#[must_use = "a stream does nothing unless polled, and dropping it stops the run"]
pub struct RunStream {
    rx: StreamReceiver,
    /// Cancelled when the stream is dropped before its last item (standard mode).
    cancel: Option<CancellationToken>,
    done: bool,
}

impl RunStream {
    /// Starts `task` on `topology` in a task of its own, streamed as `options` say.
    pub(crate) fn start(topology: Arc<Topology>, task: Task, options: StreamOptions) -> Self {
        let (tx, rx) = match stream_channel(options) {
            Ok(channel) => channel,
            Err(error) => return Self::failed(error),
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self::failed(RunError::InvalidTask(
                "Graph::stream must be called from within a tokio runtime; none is running on \
                 this thread"
                    .to_owned(),
            ));
        };
        let cancel = match task.task_type {
            TaskType::Standard => {
                let cancel = CancellationToken::new();
                let scope = RunScope::for_run(
                    task.budget,
                    task.state
                        .unwrap_or_else(|| topology.initial_state().clone()),
                    Arc::clone(topology.names()),
                )
                .with_events(topology.events().clone())
                .with_cancellation_token(cancel.clone())
                .with_stream(tx.clone());
                let (inputs, max_steps) = (task.inputs, task.max_steps);
                runtime.spawn(async move {
                    let outcome = SequentialExecutor::new()
                        .run_scoped(&topology, inputs, max_steps, scope)
                        .await;
                    // Nobody left to receive it when the consumer dropped the stream.
                    let _ = tx.send_last(StreamEvent::Finished(outcome)).await;
                });
                Some(cancel)
            }
            TaskType::LongRunning => {
                runtime.spawn(async move {
                    let outcome = LongRunningExecutor::new()
                        .run_streamed(topology, task, tx.clone())
                        .await;
                    let _ = tx.send_last(StreamEvent::Finished(outcome)).await;
                });
                None
            }
        };
        Self {
            rx,
            cancel,
            done: false,
        }
    }

    /// A stream whose only item is `error`.
    fn failed(error: RunError) -> Self {
        Self {
            rx: StreamReceiver::finished(Err(error)),
            cancel: None,
            done: false,
        }
    }
}

impl Stream for RunStream {
    type Item = StreamEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<StreamEvent>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(StreamEvent::Finished(_)) | None) = &polled {
            self.done = true;
        }
        polled
    }
}

impl Drop for RunStream {
    fn drop(&mut self) {
        if !self.done {
            if let Some(cancel) = &self.cancel {
                cancel.cancel();
            }
        }
    }
}
