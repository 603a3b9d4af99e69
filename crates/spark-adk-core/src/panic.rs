//! Catching panics of user code (nodes, predicates) so that they become typed errors.
//!
//! Both executors use these helpers; a panic never unwinds through the runtime. Note that a
//! binary built with `panic = "abort"` cannot catch panics at all: the process aborts.

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

/// Runs `f`, turning a panic into `Err(message)`.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

/// A future that resolves to `Err(message)` if polling the inner future panics.
///
/// After a panic the inner future is never polled again.
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
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                self.inner = None;
                Poll::Ready(Err(panic_message(payload.as_ref())))
            }
        }
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
