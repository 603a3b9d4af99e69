//! Catching panics of user code that the runtime calls outside a node's future: drops (of a
//! node's future, of a panic payload, of an unprocessed message's acknowledgement hook) and
//! plain calls (an acknowledgement hook, making a node's future). The helpers are core's
//! ([`spark_adk_core::panic`]); this module names them as the mailbox's call sites use them.

pub(crate) use spark_adk_core::panic::{catch_panic as call_caught, payload_message};

/// Drops `value`, catching a panic of its `Drop`.
pub(crate) fn drop_caught<T>(value: T) -> Result<(), String> {
    call_caught(move || drop(value))
}
