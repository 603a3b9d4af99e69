//! The repository's README repeats the facade README's quick start (the one compiled and run as
//! a doctest, see `ReadmeDoctests` in `src/lib.rs`); this keeps the two copies equal. Not in the
//! published package (`exclude` in Cargo.toml): the repository's README is outside it.
#![allow(clippy::panic)]

use std::path::Path;

/// The ```rust code blocks of a Markdown file, in order.
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_repository_readme_shows_the_doctested_quick_start() {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let facade = rust_blocks(&read(&package.join("README.md")));
    let root = rust_blocks(&read(&package.join("../../README.md")));
    assert!(!facade.is_empty(), "the facade README has no rust block");
    assert_eq!(
        root, facade,
        "README.md and crates/spark-adk/README.md differ"
    );
}
