//! Project automation (placeholder until `cargo xtask` lands).
fn main() {}
