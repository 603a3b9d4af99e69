//! Catching panics of user code that the runtime calls outside a node's future: drops (of a
//! node's future, of a panic payload, of an unprocessed message's acknowledgement hook) and
//! plain calls (an acknowledgement hook, making a node's future). A leaf module: it imports
//! nothing of this crate.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use spark_adk_core::panic::panic_message;

/// The text of a panic payload; the payload is dropped with its own panic caught (a payload
/// whose `Drop` panics is leaked instead of unwinding through the runtime).
pub(crate) fn payload_message(payload: Box<dyn Any + Send>) -> String {
    let message = panic_message(payload.as_ref());
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
    message
}

/// Drops `value`, catching a panic of its `Drop`.
pub(crate) fn drop_caught<T>(value: T) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(move || drop(value))).map_err(payload_message)
}

/// Runs `f`, catching a panic.
pub(crate) fn call_caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(payload_message)
}
