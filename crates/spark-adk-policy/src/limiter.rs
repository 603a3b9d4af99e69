//! [`Limiter`]: a named cap on concurrent activations shared by several nodes.

use std::fmt;
use std::sync::Arc;

use spark_adk_core::{Context, Node, NodeError, NodeMessage};
use tokio::sync::Semaphore;

use crate::PolicyError;

/// A named cap on how many activations run at once, shared by every node wrapped with it
/// (e.g. one LLM provider's rate limit across the planner, the writer and the critic).
///
/// Cheap to clone (shared): clones are the same limiter. It works across runs, graphs and
/// modes: every activation of a wrapped node waits for a free slot before the node runs and
/// frees it when the node's future finishes or is dropped. Waiting is FIFO (tokio's fair
/// semaphore). A run that is cancelled while a node waits drops the wait like any other.
///
/// # Example
///
/// ```
/// use spark_adk_policy::{Limiter, PolicyError};
///
/// let llm = Limiter::new("llm", 4)?;
/// assert_eq!((llm.name(), llm.capacity(), llm.available()), ("llm", 4, 4));
/// assert!(matches!(Limiter::new("none", 0), Err(PolicyError::ZeroCapacity { .. })));
/// # Ok::<(), PolicyError>(())
/// ```
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    capacity: usize,
    slots: Semaphore,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.inner.name)
            .field("capacity", &self.inner.capacity)
            .field("available", &self.available())
            .finish()
    }
}

impl Limiter {
    /// A limiter called `name` letting at most `capacity` activations run at once.
    ///
    /// # Errors
    /// [`PolicyError::ZeroCapacity`] for 0 (every node would wait forever);
    /// [`PolicyError::CapacityTooLarge`] above what the semaphore can count.
    pub fn new(name: impl Into<Arc<str>>, capacity: usize) -> Result<Self, PolicyError> {
        let name = name.into();
        if capacity == 0 {
            return Err(PolicyError::ZeroCapacity {
                name: name.to_string(),
            });
        }
        if capacity > Semaphore::MAX_PERMITS {
            return Err(PolicyError::CapacityTooLarge {
                name: name.to_string(),
                capacity,
                max: Semaphore::MAX_PERMITS,
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                capacity,
                slots: Semaphore::new(capacity),
            }),
        })
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How many activations may run at once.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// How many slots are free now.
    pub fn available(&self) -> usize {
        self.inner.slots.available_permits()
    }
}

/// A node that runs only while it holds a slot of a [`Limiter`]; made by
/// [`NodeExt::with_limiter`](crate::NodeExt::with_limiter).
#[derive(Clone, Debug)]
pub struct Limited<N> {
    inner: N,
    limiter: Limiter,
}

impl<N> Limited<N> {
    /// Wraps `inner` so that it runs only while holding a slot of `limiter`.
    pub fn new(inner: N, limiter: Limiter) -> Self {
        Self { inner, limiter }
    }

    /// The wrapped node.
    pub fn inner(&self) -> &N {
        &self.inner
    }

    /// The limiter.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }
}

impl<N: Node> Node for Limited<N> {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let Ok(_slot) = self.limiter.inner.slots.acquire().await else {
            // The semaphore is never closed; say so rather than panic if that changes.
            return Err(NodeError::new(format!(
                "node `{}`: limiter `{}` is closed",
                ctx.node_name(),
                self.limiter.name()
            )));
        };
        self.inner.process(ctx).await
    }
}
