//! What a mailbox holds: the message for the node and its acknowledgement hook.

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
