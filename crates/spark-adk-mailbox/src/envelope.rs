//! What a mailbox holds (the long-running envelope): the message for the node and its
//! acknowledgement hook.

use spark_adk_core::{AckHook, ChannelMessage, NodeMessage};

/// A mailbox entry. Smaller than a [`ChannelMessage`] (the shutdown flag is control handled
/// before anything is queued, and envelope metadata is merged into the payload), so a mailbox
/// costs less memory per slot.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) payload: NodeMessage,
    pub(crate) ack: Option<AckHook>,
}

impl Envelope {
    /// A routed output.
    pub(crate) fn routed(payload: NodeMessage) -> Self {
        Self { payload, ack: None }
    }

    /// A message sent through a handle. Envelope metadata is merged into the payload's metadata
    /// (keys the payload already has keep their value), so the node sees it.
    #[inline]
    pub(crate) fn from_channel(message: ChannelMessage) -> Self {
        let ChannelMessage {
            mut payload,
            metadata,
            ack,
            ..
        } = message;
        if !metadata.is_empty() {
            for (k, v) in metadata {
                payload.metadata.entry(k).or_insert(v);
            }
        }
        Self { payload, ack }
    }
}

/// Drops `envelopes` (messages that will not be processed) and returns how many there were. A
/// panic in a drop (user code: the values an acknowledgement hook captured) is caught and
/// logged, so it never unwinds through the runtime.
pub(crate) fn drop_all(envelopes: impl IntoIterator<Item = Envelope>) -> usize {
    let mut n = 0;
    for envelope in envelopes {
        n += 1;
        if let Err(message) = crate::catch::drop_caught(envelope) {
            tracing::warn!(%message, "dropping an unprocessed message panicked");
        }
    }
    n
}
