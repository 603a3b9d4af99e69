//! Helpers shared by the standard-mode test files.
#![allow(dead_code, clippy::panic)]

/// Panics with its message when dropped (unless the thread is already panicking).
pub struct PanicOnDrop(pub &'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{}", self.0);
        }
    }
}
