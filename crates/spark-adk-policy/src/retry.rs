//! [`RetryPolicy`] and the [`Retry`] wrapper: run a node again after a failed attempt, with
//! exponential backoff and jitter.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use spark_adk_core::{Context, EventKind, Node, NodeError, NodeMessage};

use crate::{GiveUp, PolicyError, RetryError};

type Predicate = Arc<dyn Fn(&NodeError) -> bool + Send + Sync>;

/// When and how often a failed node is run again.
///
/// The delay before retry `k` (`k = 1` before the second attempt) is
/// `initial * factor^(k-1)`, at most [`max_delay`](Self::max_delay). With jitter (the
/// default) the actual delay is drawn uniformly from the upper half of that value
/// ("equal jitter"): retries of many nodes spread out, and the delay still grows.
///
/// Defaults: 3 attempts, factor 2, a maximum delay of 30 s, jitter on, every error retried.
/// Cheap to clone (the predicate is shared).
///
/// # Example
///
/// ```
/// use spark_adk_policy::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::exponential(Duration::from_millis(100))
///     .max_attempts(4)
///     .jitter(false)
///     .retry_if(|e| !e.message().contains("invalid api key"));
/// assert_eq!(policy.delay(1), Duration::from_millis(100));
/// assert_eq!(policy.delay(3), Duration::from_millis(400));
/// assert!(policy.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial: Duration,
    factor: f64,
    max_delay: Duration,
    jitter: bool,
    retry_if: Option<Predicate>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial", &self.initial)
            .field("factor", &self.factor)
            .field("max_delay", &self.max_delay)
            .field("jitter", &self.jitter)
            .field("retry_if", &self.retry_if.is_some())
            .finish()
    }
}

impl RetryPolicy {
    /// Exponential backoff starting at `initial` and doubling per retry (3 attempts in all).
    pub fn exponential(initial: Duration) -> Self {
        Self {
            max_attempts: 3,
            initial,
            factor: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: true,
            retry_if: None,
        }
    }

    /// The same delay before every retry (factor 1, no jitter).
    pub fn fixed(delay: Duration) -> Self {
        Self::exponential(delay).factor(1.0).jitter(false)
    }

    /// How many attempts in all, the first one included (at least 1; 0 is a
    /// [`PolicyError::ZeroAttempts`]).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// What each delay is multiplied by (finite, at least 1; otherwise a
    /// [`PolicyError::InvalidFactor`]).
    #[must_use]
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The longest delay between two attempts.
    #[must_use]
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// Turns jitter on (the default) or off.
    #[must_use]
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Retries only the errors for which `predicate` returns `true` (by default every error is
    /// retried). A panic in the predicate is the node's panic: it is reported, never retried.
    #[must_use]
    pub fn retry_if(
        mut self,
        predicate: impl Fn(&NodeError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Some(Arc::new(predicate));
        self
    }

    /// The number of attempts allowed.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Checks the policy: at least one attempt, a finite factor of at least 1.
    ///
    /// # Errors
    /// [`PolicyError::ZeroAttempts`] or [`PolicyError::InvalidFactor`].
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_attempts == 0 {
            return Err(PolicyError::ZeroAttempts);
        }
        if !self.factor.is_finite() || self.factor < 1.0 {
            return Err(PolicyError::InvalidFactor(self.factor));
        }
        Ok(())
    }

    /// The delay before retry `retry` (1 before the second attempt), without jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.factor.powi(exponent);
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The delay before retry `retry` with the policy's jitter applied.
    fn jittered_delay(&self, retry: u32) -> Duration {
        let base = self.delay(retry);
        if self.jitter {
            base.mul_f64(0.5 + 0.5 * fastrand::f64())
        } else {
            base
        }
    }

    fn retries(&self, error: &NodeError) -> bool {
        self.retry_if.as_ref().is_none_or(|p| p(error))
    }
}

/// A node run again after a failed attempt, as its [`RetryPolicy`] says; made by
/// [`NodeExt::with_retry`](crate::NodeExt::with_retry).
///
/// - Attempt `n` sees [`Context::attempt`] `== n`.
/// - Before each retry a [`EventKind::NodeRetrying`] event is published on the run's bus and a
///   `tracing` event is logged (target `spark_adk_policy`).
/// - **Budgets win**: no retry starts once the run is stopping or cancelled, its token budget is
///   used up or its time budget ran out; a cancellation during the backoff ends it at once.
///   The stop is checked before and after the backoff delay (a graceful stop that begins during
///   the delay is noticed when it ends, or when the grace period cancels the run).
/// - **Panics are never retried**: a panic of the node (or of the predicate) unwinds through
///   the wrapper and the executor reports it as the node's panic.
/// - The final error is a [`RetryError`] (inside the [`NodeError`]) naming the node, the
///   attempts made and why it gave up.
#[derive(Clone, Debug)]
pub struct Retry<N> {
    inner: N,
    policy: RetryPolicy,
}

impl<N> Retry<N> {
    /// Wraps `inner` in `policy`.
    pub fn new(inner: N, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// The wrapped node.
    pub fn inner(&self) -> &N {
        &self.inner
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

/// `true` when no further attempt may start: budgets and stops win over retries.
fn must_stop(ctx: &Context) -> bool {
    let scope = ctx.scope();
    ctx.is_cancelled() || ctx.is_stopping() || scope.tokens_exhausted() || scope.deadline_passed()
}

impl<N: Node> Node for Retry<N> {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if let Err(e) = self.policy.validate() {
            return Err(e.at_node(ctx.node_name()));
        }
        let first = ctx.attempt();
        let mut attempt: u32 = 1;
        loop {
            let outcome = if attempt == 1 && first == 1 {
                self.inner.process(ctx).await
            } else {
                self.inner.process(&ctx.for_attempt(attempt)).await
            };
            let error = match outcome {
                Ok(output) => return Ok(output),
                Err(error) => error,
            };
            let give_up = if !self.policy.retries(&error) {
                Some(GiveUp::NotRetryable)
            } else if attempt >= self.policy.max_attempts {
                Some(GiveUp::AttemptsExhausted)
            } else if must_stop(ctx) {
                Some(GiveUp::RunStopping)
            } else {
                None
            };
            let reason = match give_up {
                Some(reason) => reason,
                None => {
                    let delay = self.policy.jittered_delay(attempt);
                    ctx.scope().publish(|| EventKind::NodeRetrying {
                        node: ctx.node_name().into(),
                        attempt,
                        error: error.to_string(),
                        delay,
                    });
                    tracing::warn!(
                        target: "spark_adk_policy",
                        node = ctx.node_name(),
                        attempt,
                        delay = ?delay,
                        error = %error,
                        "attempt failed, retrying"
                    );
                    // `Ok` when the run was cancelled during the delay.
                    let cancelled =
                        tokio::time::timeout(delay, ctx.cancellation().cancelled()).await;
                    if cancelled.is_ok() || must_stop(ctx) {
                        GiveUp::RunStopping
                    } else {
                        attempt += 1;
                        continue;
                    }
                }
            };
            return Err(NodeError::from_error(RetryError {
                node: ctx.node_name().to_owned(),
                attempts: attempt,
                reason,
                last: error,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_factor_up_to_the_maximum() {
        let policy = RetryPolicy::exponential(Duration::from_millis(100))
            .factor(3.0)
            .max_delay(Duration::from_secs(1));
        let delays: Vec<_> = (1..=4).map(|k| policy.delay(k)).collect();
        assert_eq!(
            delays,
            [100, 300, 900, 1000].map(Duration::from_millis).to_vec()
        );
        assert_eq!(
            policy.delay(u32::MAX),
            Duration::from_secs(1),
            "no overflow"
        );
    }

    #[test]
    fn jittered_delays_stay_in_the_upper_half_of_the_backoff() {
        let policy = RetryPolicy::exponential(Duration::from_millis(200));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = policy.jittered_delay(2);
            assert!(
                d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
                "{d:?}"
            );
            seen.insert(d);
        }
        assert!(seen.len() > 1, "jitter varies the delay");
    }

    #[test]
    fn zero_attempts_and_a_factor_below_one_are_rejected() {
        let base = RetryPolicy::exponential(Duration::from_millis(1));
        assert_eq!(
            base.clone().max_attempts(0).validate(),
            Err(PolicyError::ZeroAttempts)
        );
        assert_eq!(
            base.clone().factor(0.5).validate(),
            Err(PolicyError::InvalidFactor(0.5))
        );
        assert!(matches!(
            base.factor(f64::NAN).validate(),
            Err(PolicyError::InvalidFactor(_))
        ));
    }
}
