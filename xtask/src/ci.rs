//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure: fmt, clippy,
//! tests, docs, the bench smoke run, the instruction counts against their baseline (without
//! the peers), and last the quick soak, `cargo xtask stress --quick`.

use std::process::Command;

use crate::workspace::{run_step, Workspace};
use crate::{bench, stress, Error, Result};

/// One CI step: a name for messages and the command it runs.
struct Step {
    name: &'static str,
    command: Command,
}

fn cargo_steps(ws: &Workspace) -> Vec<Step> {
    let mut doc = ws.cargo(["doc", "--workspace", "--no-deps"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    vec![
        Step {
            name: "fmt",
            command: ws.cargo(["fmt", "--all", "--", "--check"]),
        },
        Step {
            name: "clippy",
            command: ws.cargo([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        },
        Step {
            name: "test",
            command: ws.cargo(["test", "--workspace"]),
        },
        Step {
            name: "doc",
            command: doc,
        },
        // The published crates build from their .crate files alone (`.ci/run` also runs the
        // facade's doctests from its .crate). `--allow-dirty`: run locally, the work tree may
        // have changes not yet committed; they are what is checked.
        Step {
            name: "package",
            command: ws.cargo([
                "package",
                "--workspace",
                "--locked",
                "--allow-dirty",
                "--exclude",
                "spark-adk-benches",
                "--exclude",
                "xtask",
            ]),
        },
    ]
}

/// Runs fmt check, clippy, tests, docs, packaging, the bench smoke run and the quick soak.
///
/// # Errors
/// The first failing step, by name.
pub fn run(ws: &Workspace) -> Result<()> {
    let mut steps = cargo_steps(ws);
    let total = steps.len() + 3;
    for (i, step) in steps.iter_mut().enumerate() {
        println!("==> ci step {}/{total}: {}", i + 1, step.name);
        run_step(step.name, &mut step.command)
            .map_err(|e| Error::fail(format!("ci stopped at step `{}`: {e}", step.name)))?;
    }
    println!("==> ci step {}/{total}: bench smoke", total - 2);
    bench::run(ws, &bench::Options::smoke())
        .map_err(|e| Error::fail(format!("ci stopped at step `bench smoke`: {e}")))?;
    println!("==> ci step {}/{total}: instruction counts", total - 1);
    let counts = bench::Options {
        instructions: true,
        check: true,
        no_peers: true,
        ..bench::Options::default()
    };
    bench::run(ws, &counts)
        .map_err(|e| Error::fail(format!("ci stopped at step `instruction counts`: {e}")))?;
    println!("==> ci step {total}/{total}: stress --quick");
    stress::run(ws, stress::Options { quick: true })
        .map_err(|e| Error::fail(format!("ci stopped at step `stress --quick`: {e}")))?;
    println!("ci passed: fmt, clippy, test, doc, package, bench smoke, instruction counts, stress --quick");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::workspace::describe;

    #[test]
    fn the_steps_run_in_order_with_their_flags() {
        let ws = Workspace {
            root: PathBuf::from("."),
            target_dir: PathBuf::from("target"),
            cargo: PathBuf::from("cargo"),
        };
        let lines: Vec<String> = cargo_steps(&ws)
            .iter()
            .map(|s| format!("{}: {}", s.name, describe(&s.command)))
            .collect();
        assert_eq!(
            lines,
            [
                "fmt: cargo fmt --all -- --check",
                "clippy: cargo clippy --workspace --all-targets -- -D warnings",
                "test: cargo test --workspace",
                "doc: RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps",
                "package: cargo package --workspace --locked --allow-dirty --exclude spark-adk-benches --exclude xtask",
            ]
        );
    }
}
