//! Budgets: the time and token limits of a run.

use std::time::Duration;

use serde::Serialize;

/// Resource limits of a run: wall-clock time and LLM tokens.
///
/// A budget is validated when it is made: zero, negative, NaN and infinite limits are rejected
/// with a [`BudgetError`], so a `Budget` value always holds usable limits.
///
/// # Example
///
/// ```
/// use spark_adk_core::Budget;
///
/// let b = Budget::seconds(120)?.with_max_tokens(25_000)?;
/// assert_eq!(b.max_tokens(), Some(25_000));
/// assert!(Budget::seconds(-1.0).is_err());
/// assert!(Budget::seconds(f64::NAN).is_err());
/// assert!(Budget::tokens(0).is_err());
/// # Ok::<(), spark_adk_core::BudgetError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Budget {
    max_time: Option<Duration>,
    max_tokens: Option<u64>,
}

/// Which limit of a [`Budget`] ended a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum BudgetKind {
    /// The time limit (`max_seconds`).
    Time,
    /// The token limit (`max_tokens`).
    Tokens,
}

/// A budget limit that cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// `max_seconds` was zero, negative, NaN or infinite.
    #[error("invalid max_seconds {0}: a time budget must be positive and finite")]
    InvalidSeconds(f64),
    /// A time budget of zero duration.
    #[error("invalid time budget {0:?}: a time budget must be longer than zero")]
    ZeroDuration(Duration),
    /// `max_tokens` was zero.
    #[error("invalid max_tokens 0: a token budget must be at least 1")]
    ZeroTokens,
}

impl Budget {
    /// No limits at all (the same as having no budget).
    pub const UNLIMITED: Budget = Budget {
        max_time: None,
        max_tokens: None,
    };

    /// A time budget of `max_seconds` seconds (the seed's `Budget(max_seconds=...)`).
    ///
    /// Takes whole or fractional seconds: any number that converts to `f64` without loss
    /// (`60`, `2.5`, `30_u32`, ...). For a `u64` or a [`Duration`], use [`Budget::duration`].
    ///
    /// ```
    /// use spark_adk_core::Budget;
    ///
    /// assert_eq!(Budget::seconds(60)?.max_seconds(), Some(60.0));
    /// assert_eq!(Budget::seconds(0.25)?.max_seconds(), Some(0.25));
    /// assert!(Budget::seconds(0).is_err());
    /// # Ok::<(), spark_adk_core::BudgetError>(())
    /// ```
    ///
    /// # Errors
    /// [`BudgetError::InvalidSeconds`] for zero, negative, NaN or infinite values.
    pub fn seconds(max_seconds: impl Into<f64>) -> Result<Self, BudgetError> {
        Self::UNLIMITED.with_max_seconds(max_seconds)
    }

    /// A time budget given as a [`Duration`].
    ///
    /// # Errors
    /// [`BudgetError::ZeroDuration`] for a zero duration.
    pub fn duration(max_time: Duration) -> Result<Self, BudgetError> {
        Self::UNLIMITED.with_max_time(max_time)
    }

    /// A token budget (the seed's `Budget(max_tokens=...)`).
    ///
    /// # Errors
    /// [`BudgetError::ZeroTokens`] for zero.
    pub fn tokens(max_tokens: u64) -> Result<Self, BudgetError> {
        Self::UNLIMITED.with_max_tokens(max_tokens)
    }

    /// Both limits at once, each optional (the seed's `Budget(max_seconds=None, max_tokens=None)`).
    ///
    /// # Errors
    /// As [`Budget::seconds`] and [`Budget::tokens`].
    pub fn new(max_seconds: Option<f64>, max_tokens: Option<u64>) -> Result<Self, BudgetError> {
        let mut budget = Self::UNLIMITED;
        if let Some(s) = max_seconds {
            budget = budget.with_max_seconds(s)?;
        }
        if let Some(t) = max_tokens {
            budget = budget.with_max_tokens(t)?;
        }
        Ok(budget)
    }

    /// Returns this budget with its time limit set to `max_seconds`.
    ///
    /// # Errors
    /// [`BudgetError::InvalidSeconds`] for zero, negative, NaN or infinite values (also for values
    /// too large to be a [`Duration`]).
    pub fn with_max_seconds(self, max_seconds: impl Into<f64>) -> Result<Self, BudgetError> {
        let max_seconds: f64 = max_seconds.into();
        if !(max_seconds.is_finite() && max_seconds > 0.0) {
            return Err(BudgetError::InvalidSeconds(max_seconds));
        }
        let time = Duration::try_from_secs_f64(max_seconds)
            .map_err(|_| BudgetError::InvalidSeconds(max_seconds))?;
        if time.is_zero() {
            return Err(BudgetError::InvalidSeconds(max_seconds));
        }
        Ok(Self {
            max_time: Some(time),
            ..self
        })
    }

    /// Returns this budget with its time limit set to `max_time`.
    ///
    /// # Errors
    /// [`BudgetError::ZeroDuration`] for a zero duration.
    pub fn with_max_time(self, max_time: Duration) -> Result<Self, BudgetError> {
        if max_time.is_zero() {
            return Err(BudgetError::ZeroDuration(max_time));
        }
        Ok(Self {
            max_time: Some(max_time),
            ..self
        })
    }

    /// Returns this budget with its token limit set to `max_tokens`.
    ///
    /// # Errors
    /// [`BudgetError::ZeroTokens`] for zero.
    pub fn with_max_tokens(self, max_tokens: u64) -> Result<Self, BudgetError> {
        if max_tokens == 0 {
            return Err(BudgetError::ZeroTokens);
        }
        Ok(Self {
            max_tokens: Some(max_tokens),
            ..self
        })
    }

    /// The time limit, if any.
    pub fn max_time(&self) -> Option<Duration> {
        self.max_time
    }

    /// The time limit in seconds, if any.
    pub fn max_seconds(&self) -> Option<f64> {
        self.max_time.map(|d| d.as_secs_f64())
    }

    /// The token limit, if any.
    #[inline]
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }

    /// `true` when neither limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.max_time.is_none() && self.max_tokens.is_none()
    }

    /// The tighter of two budgets, limit by limit (used to give a subgraph what is left).
    #[must_use]
    pub fn tightest(self, other: Budget) -> Budget {
        fn min<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, None) => a,
                (None, b) => b,
            }
        }
        Budget {
            max_time: min(self.max_time, other.max_time),
            max_tokens: min(self.max_tokens, other.max_tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_negative_nan_and_infinite_seconds_are_rejected() {
        for bad in [
            0.0,
            -0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
        ] {
            assert!(Budget::seconds(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn whole_seconds_are_accepted_as_integers() {
        assert_eq!(
            Budget::seconds(60).map(|b| b.max_time()),
            Ok(Some(Duration::from_secs(60)))
        );
        assert_eq!(
            Budget::UNLIMITED
                .with_max_seconds(3_u32)
                .map(|b| b.max_time()),
            Ok(Some(Duration::from_secs(3)))
        );
    }

    #[test]
    fn zero_and_negative_integer_seconds_are_rejected() {
        assert_eq!(Budget::seconds(0), Err(BudgetError::InvalidSeconds(0.0)));
        assert_eq!(Budget::seconds(-5), Err(BudgetError::InvalidSeconds(-5.0)));
    }

    #[test]
    fn zero_tokens_and_zero_duration_are_rejected() {
        assert_eq!(Budget::tokens(0), Err(BudgetError::ZeroTokens));
        assert!(Budget::duration(Duration::ZERO).is_err());
    }

    #[test]
    fn combined_budget_keeps_both_limits() {
        let b = Budget::new(Some(1.5), Some(10)).unwrap_or_default();
        assert_eq!(b.max_time(), Some(Duration::from_millis(1500)));
        assert_eq!(b.max_tokens(), Some(10));
    }

    #[test]
    fn tightest_takes_the_smaller_limit_of_each_kind() {
        let a = Budget::new(Some(10.0), None).unwrap_or_default();
        let b = Budget::new(Some(5.0), Some(7)).unwrap_or_default();
        let t = a.tightest(b);
        assert_eq!(t.max_seconds(), Some(5.0));
        assert_eq!(t.max_tokens(), Some(7));
    }
}
