//! Messages: what goes into and out of a node, and the envelope used between mailboxes.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::NodeError;

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

    /// A message whose content is `value` serialized to JSON: how a node returns its own
    /// `#[derive(Serialize)]` type.
    ///
    /// # Example
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use spark_adk_core::NodeMessage;
    ///
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// struct Order { id: u32, items: Vec<String> }
    ///
    /// let order = Order { id: 7, items: vec!["tea".into()] };
    /// let msg = NodeMessage::from_serde(&order)?;
    /// assert_eq!(msg.content["items"][0], "tea");
    /// assert_eq!(msg.content_as::<Order>()?, order); // and back
    /// # Ok::<(), spark_adk_core::PayloadError>(())
    /// ```
    ///
    /// # Errors
    /// [`PayloadError::Serialize`] when `value` has no JSON form (for example a map whose keys
    /// are not strings, or a `Serialize` impl that fails).
    pub fn from_serde<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        serde_json::to_value(value)
            .map(Self::new)
            .map_err(|source| PayloadError::Serialize {
                type_name: std::any::type_name::<T>(),
                source,
            })
    }

    /// The content deserialized into `T` (borrowing from the message where `T` can, e.g. `&str`
    /// fields). Inside a node, prefer [`Context::input_as`](crate::Context::input_as), whose
    /// error also names the node.
    ///
    /// # Errors
    /// [`PayloadError::Deserialize`], naming `T` and the path of the field that did not match
    /// (`items[1].price`), with serde's own reason (missing field, invalid type, ...).
    pub fn content_as<'a, T: Deserialize<'a>>(&'a self) -> Result<T, PayloadError> {
        deserialize_content(&self.content, None)
    }
}

/// Deserializes `content` into `T`, naming `node` (if known), `T` and the failing field.
pub(crate) fn deserialize_content<'a, T: Deserialize<'a>>(
    content: &'a Value,
    node: Option<&str>,
) -> Result<T, PayloadError> {
    serde_path_to_error::deserialize(content).map_err(|e| {
        let path = e.path().to_string();
        PayloadError::Deserialize {
            node: node.map(str::to_owned),
            type_name: std::any::type_name::<T>(),
            path,
            source: e.into_inner(),
        }
    })
}

/// A payload that could not be converted between a message and a Rust type (see
/// [`NodeMessage::from_serde`], [`NodeMessage::content_as`], [`Context::input_as`](crate::Context::input_as)).
///
/// Inside a node, `?` turns it into a [`NodeError`] with the same text.
///
/// # Example
///
/// ```
/// use serde::Deserialize;
/// use spark_adk_core::Context;
/// use serde_json::json;
///
/// #[derive(Deserialize)]
/// struct Line { price: f64 }
/// #[derive(Deserialize)]
/// struct Order { lines: Vec<Line> }
///
/// let ctx = Context::detached(json!({ "lines": [{ "price": 1.5 }, { "price": "free" }] }));
/// let err = ctx.input_as::<Order>().err().unwrap();
/// assert!(err.to_string().starts_with("input of node `detached` does not match `"));
/// assert!(err.to_string().contains("Order` at `lines[1].price`: invalid type: string \"free\""));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// A value could not be serialized into a JSON payload.
    #[error("cannot turn a `{type_name}` into a message payload: {source}")]
    Serialize {
        /// The Rust type that was serialized.
        type_name: &'static str,
        /// serde_json's reason.
        #[source]
        source: serde_json::Error,
    },
    /// A payload did not deserialize into the requested type.
    #[error(
        "{} does not match `{type_name}` at `{path}`: {source}",
        node.as_ref().map_or_else(|| "message content".to_owned(), |n| format!("input of node `{n}`"))
    )]
    Deserialize {
        /// The node whose input it was, when known ([`Context::input_as`](crate::Context::input_as)).
        node: Option<String>,
        /// The Rust type requested.
        type_name: &'static str,
        /// Where in the payload it failed, e.g. `lines[1].price` (`.` for the top level).
        path: String,
        /// serde_json's reason (missing field, invalid type, ...).
        #[source]
        source: serde_json::Error,
    },
}

impl From<PayloadError> for NodeError {
    fn from(e: PayloadError) -> Self {
        NodeError::from_error(e)
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

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Line {
        sku: String,
        price: f64,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Order {
        id: u32,
        lines: Vec<Line>,
    }

    #[test]
    fn a_serialize_type_round_trips_through_a_message() {
        let order = Order {
            id: 3,
            lines: vec![Line {
                sku: "tea".into(),
                price: 2.5,
            }],
        };
        let msg = NodeMessage::from_serde(&order).map_err(|e| e.to_string());
        assert_eq!(
            msg.as_ref().map(|m| m.content["lines"][0]["sku"].clone()),
            Ok(json!("tea"))
        );
        let back = msg.and_then(|m| m.content_as::<Order>().map_err(|e| e.to_string()));
        assert_eq!(back, Ok(order));
    }

    #[test]
    fn a_wrongly_typed_field_is_named_by_its_path() {
        let msg = NodeMessage::from(json!({
            "id": 1,
            "lines": [{ "sku": "a", "price": 1.0 }, { "sku": "b", "price": "free" }]
        }));
        let err = msg.content_as::<Order>().err();
        let Some(PayloadError::Deserialize {
            node,
            path,
            type_name,
            ..
        }) = &err
        else {
            unreachable!("expected a deserialize error, got {err:?}");
        };
        assert_eq!(path, "lines[1].price");
        assert_eq!(node, &None);
        assert!(type_name.ends_with("Order"), "{type_name}");
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("message content does not match `")
                && text.contains("Order` at `lines[1].price`: invalid type: string \"free\""),
            "{text}"
        );
    }

    #[test]
    fn input_as_names_the_running_node() {
        let names: Arc<[Arc<str>]> = vec![Arc::from("extract"), Arc::from("load")].into();
        let scope = Arc::new(crate::RunScope::new(None).with_node_names(names));
        let ctx = crate::Context::new(NodeMessage::from(json!({ "id": "x" })), 1, scope);
        let err = ctx.input_as::<Order>().err();
        assert!(
            matches!(&err, Some(PayloadError::Deserialize { node: Some(n), path, .. })
                if n == "load" && path == "id"),
            "{err:?}"
        );
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("input of node `load` does not match"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        let msg = NodeMessage::from(json!({ "id": 1, "lines": [{ "sku": "a" }] }));
        let text = msg
            .content_as::<Order>()
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        assert!(text.contains("missing field `price`"), "{text}");
        assert!(text.contains("at `lines[0]`"), "{text}");
    }

    #[test]
    fn a_value_without_a_json_form_is_a_serialize_error() {
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1_u8], 1);
        let err = NodeMessage::from_serde(&bad).err();
        assert!(
            matches!(err, Some(PayloadError::Serialize { .. })),
            "{err:?}"
        );
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
