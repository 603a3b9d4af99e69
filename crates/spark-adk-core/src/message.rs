//! Messages: what goes into and out of a node, and the envelope used between mailboxes.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What goes into and out of a node.
///
/// `content` is shared behind an [`Arc`]: cloning a message (fan-out, mailboxes, results) never
/// copies the payload. A node that wants to change a payload it received calls
/// [`NodeMessage::content_mut`], which copies on write, so no branch ever observes another
/// branch's mutation.
///
/// # Example
///
/// ```
/// use spark_adk_core::NodeMessage;
/// use serde_json::json;
///
/// let msg = NodeMessage::from(json!({ "data": [1, 2, 3] }));
/// let copy = msg.clone(); // shares the payload
/// assert_eq!(copy.content["data"][1], 2);
/// assert!(std::sync::Arc::ptr_eq(&msg.content, &copy.content));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeMessage {
    /// The payload, usually a JSON object. Shared, not copied, when the message is cloned.
    pub content: Arc<Value>,
    /// Free-form metadata. In long-running mode a shutdown delivery carries `"shutdown": true`.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// An optional identifier chosen by the sender.
    #[serde(default)]
    pub id: Option<String>,
}

impl NodeMessage {
    /// A message with the given content, no metadata and no id.
    pub fn new(content: impl Into<Value>) -> Self {
        Self {
            content: Arc::new(content.into()),
            metadata: Map::new(),
            id: None,
        }
    }

    /// A message whose content is an empty JSON object (what "returning nothing" means).
    /// All empty messages share one payload, so making one does not allocate.
    pub fn empty() -> Self {
        static EMPTY: OnceLock<Arc<Value>> = OnceLock::new();
        Self::from(Arc::clone(
            EMPTY.get_or_init(|| Arc::new(Value::Object(Map::new()))),
        ))
    }

    /// Adds one metadata entry and returns the message (builder style).
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the id and returns the message (builder style).
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The content as a JSON value.
    pub fn content(&self) -> &Value {
        &self.content
    }

    /// Mutable access to the content; copies the payload first if another clone shares it.
    pub fn content_mut(&mut self) -> &mut Value {
        Arc::make_mut(&mut self.content)
    }

    /// The value at `key` of an object content, or `None` (also when the content is no object).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.get(key)
    }

    /// `true` when the metadata carries `"shutdown": true` (a shutdown delivery, long-running mode).
    pub fn is_shutdown(&self) -> bool {
        matches!(self.metadata.get("shutdown"), Some(Value::Bool(true)))
    }
}

impl Default for NodeMessage {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Value> for NodeMessage {
    fn from(content: Value) -> Self {
        Self::new(content)
    }
}

impl From<Arc<Value>> for NodeMessage {
    fn from(content: Arc<Value>) -> Self {
        Self {
            content,
            metadata: Map::new(),
            id: None,
        }
    }
}

impl From<Map<String, Value>> for NodeMessage {
    fn from(content: Map<String, Value>) -> Self {
        Self::new(Value::Object(content))
    }
}

impl From<()> for NodeMessage {
    fn from((): ()) -> Self {
        Self::empty()
    }
}

/// A hook called once, when the receiver of a [`ChannelMessage`] has finished processing it.
///
/// Cloning an `AckHook` shares it: whichever clone fires first runs the callback, later calls do
/// nothing.
#[derive(Clone)]
pub struct AckHook(Arc<Mutex<Option<AckCallback>>>);

type AckCallback = Box<dyn FnOnce() + Send>;

impl AckHook {
    /// Wraps a callback.
    pub fn new(callback: impl FnOnce() + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Some(Box::new(callback)))))
    }

    /// Runs the callback if no clone ran it before. Never panics, even if the lock was poisoned.
    pub fn fire(&self) {
        let callback = match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(callback) = callback {
            callback();
        }
    }
}

impl fmt::Debug for AckHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AckHook")
    }
}

/// A [`NodeMessage`] in an envelope, as it is sent into a long-running run (`RunHandle::send_channel`)
/// or through the long-running runtime's public channels: metadata, a shutdown flag and an
/// acknowledgement hook. (Inside the runtime, mailboxes hold a smaller envelope of their own.)
///
/// # Example
///
/// ```
/// use spark_adk_core::{ChannelMessage, NodeMessage};
///
/// let stop = ChannelMessage::shutdown();
/// assert!(stop.shutdown);
/// let data = ChannelMessage::new(NodeMessage::from(serde_json::json!({ "x": 1 })))
///     .with_metadata("source", "sensor");
/// assert_eq!(data.metadata["source"], "sensor");
/// ```
#[derive(Clone, Debug, Default)]
pub struct ChannelMessage {
    /// The message for the receiving node.
    pub payload: NodeMessage,
    /// Envelope metadata (routing information, sender, ...).
    pub metadata: Map<String, Value>,
    /// `true` asks the receiving side to shut down gracefully.
    pub shutdown: bool,
    /// Called once the receiver finished processing this message, if set.
    pub ack: Option<AckHook>,
}

impl ChannelMessage {
    /// An envelope around `payload` with no metadata.
    pub fn new(payload: impl Into<NodeMessage>) -> Self {
        Self {
            payload: payload.into(),
            metadata: Map::new(),
            shutdown: false,
            ack: None,
        }
    }

    /// A shutdown signal with an empty payload (the seed's `ChannelMessage(payload={}, shutdown=True)`).
    pub fn shutdown() -> Self {
        Self {
            shutdown: true,
            ..Self::default()
        }
    }

    /// Adds one metadata entry and returns the envelope.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Attaches an acknowledgement hook.
    #[must_use]
    pub fn with_ack(mut self, ack: AckHook) -> Self {
        self.ack = Some(ack);
        self
    }
}

impl From<NodeMessage> for ChannelMessage {
    fn from(payload: NodeMessage) -> Self {
        Self::new(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn cloning_a_message_shares_the_payload() {
        let a = NodeMessage::from(json!({"big": "x".repeat(1000)}));
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.content, &b.content));
    }

    #[test]
    fn mutating_a_clone_does_not_change_the_original() {
        let a = NodeMessage::from(json!({"n": 1}));
        let mut b = a.clone();
        b.content_mut()["n"] = json!(2);
        assert_eq!(a.content["n"], 1);
        assert_eq!(b.content["n"], 2);
    }

    #[test]
    fn returning_nothing_means_an_empty_object() {
        assert_eq!(*NodeMessage::from(()).content, json!({}));
        assert_eq!(*NodeMessage::default().content, json!({}));
    }

    #[test]
    fn shutdown_metadata_is_recognised() {
        assert!(NodeMessage::empty()
            .with_metadata("shutdown", true)
            .is_shutdown());
        assert!(!NodeMessage::empty()
            .with_metadata("shutdown", 1)
            .is_shutdown());
    }

    #[test]
    fn ack_hook_fires_once_across_clones() {
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        let hook = AckHook::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        let other = hook.clone();
        hook.fire();
        other.fire();
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
