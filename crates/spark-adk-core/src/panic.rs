//! Catching panics of user code (nodes, predicates) so that they become typed errors.
//!
//! Both executors use these helpers; a panic never unwinds through the runtime, also when it
//! happens while dropping something user code made: a node's future (finished, panicked, or cut
//! off at a deadline), or a panic payload whose own `Drop` panics. A payload that panics again
//! while being dropped is leaked (`std::mem::forget`), never re-raised. Note that a binary built
//! with `panic = "abort"` cannot catch panics at all: the process aborts.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The text of a panic payload: the `&str` or `String` it carried, or a generic description.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// The message of a caught panic, consuming its payload: the payload is dropped without letting
/// a panic of its own `Drop` escape (such a second payload is leaked instead of unwinding).
pub fn payload_message(payload: Box<dyn Any + Send>) -> String {
    let message = panic_message(payload.as_ref());
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
    message
}

/// Runs `f`, turning a panic into `Err(message)`.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(payload_message)
}

/// Drops `value`, turning a panic of its `Drop` into `Some(message)`.
pub fn drop_caught<T>(value: T) -> Option<String> {
    catch_panic(move || drop(value)).err()
}

/// A future that resolves to `Err(message)` if polling the inner future panics, or if
/// dropping it panics.
///
/// The inner future is dropped as soon as it has finished or panicked, inside this future's
/// `poll`, so a panic in its `Drop` is reported like a panic of `poll`. When this wrapper is
/// dropped before that (a run cut off at its deadline, or cancelled), a panic while dropping the
/// inner future is caught and discarded: the run reports why it stopped, and the wrapper's
/// owner is never unwound. [`CatchUnwind::cancel`] drops it early and returns that panic's
/// message instead.
#[derive(Debug)]
pub struct CatchUnwind<F> {
    inner: Option<F>,
}

impl<F> CatchUnwind<F> {
    /// Wraps a future.
    pub fn new(inner: F) -> Self {
        Self { inner: Some(inner) }
    }
}

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err("future polled after it panicked".to_owned()));
        };
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => match self.cancel() {
                None => Poll::Ready(Ok(v)),
                Some(message) => {
                    // The output of a future whose drop panicked is not used.
                    let _ = drop_caught(v);
                    Poll::Ready(Err(message))
                }
            },
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                let message = payload_message(payload);
                let _ = self.cancel();
                Poll::Ready(Err(message))
            }
        }
    }
}

impl<F> CatchUnwind<F> {
    /// Drops the inner future now, if it is still there; returns the message of a panic its
    /// `Drop` raised.
    pub fn cancel(&mut self) -> Option<String> {
        self.inner.take().and_then(drop_caught)
    }
}

impl<F> Drop for CatchUnwind<F> {
    fn drop(&mut self) {
        let _ = self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::panic)]
    fn catch_panic_returns_the_panic_message() {
        assert_eq!(catch_panic(|| 1), Ok(1));
        let r: Result<(), String> = catch_panic(|| panic!("boom {}", 7));
        assert_eq!(r, Err("boom 7".to_owned()));
    }

    /// A panic payload whose `Drop` panics too.
    struct LoudPayload;

    impl Drop for LoudPayload {
        #[allow(clippy::panic)]
        fn drop(&mut self) {
            panic!("payload dropped");
        }
    }

    #[test]
    #[allow(clippy::panic)]
    fn catch_panic_survives_a_payload_whose_drop_panics() {
        let r: Result<(), String> = catch_panic(|| std::panic::panic_any(LoudPayload));
        assert_eq!(r, Err("panic with a non-string payload".to_owned()));
    }

    #[tokio::test]
    #[allow(clippy::panic)]
    async fn catch_unwind_turns_a_panicking_future_into_err() {
        let fut: Pin<Box<dyn Future<Output = u8> + Send>> = Box::pin(async {
            tokio::task::yield_now().await;
            panic!("after await")
        });
        assert_eq!(CatchUnwind::new(fut).await, Err("after await".to_owned()));
    }
}
