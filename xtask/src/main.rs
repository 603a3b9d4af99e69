//! Project automation for Spark for Rust, in the style of rust-analyzer's xtask: plain Rust run
//! through the `cargo xtask` alias (`.cargo/config.toml`: `run --quiet --package xtask --`).
//!
//! - `cargo xtask ci`: the CI steps, in order, stopping at the first failure.
//! - `cargo xtask bench`: runs our criterion benches and the peers' row by row, the
//!   child-process benches and the instruction counts, and judges each row by the same-run
//!   ratios of `benches/targets.toml` (see [`mod@bench`] for the options and the exit status).
//! - `cargo xtask stress`: the long-running soak with injected faults; fails when a message is
//!   lost (see [`mod@stress`]).
//!
//! `cargo xtask` alone lists the tasks. Exit status: 0 on success, 1 when a step fails or a
//! target is missed, 2 for a usage error.

mod bench;
mod ci;
mod icount;
mod process;
mod report;
mod stress;
mod targets;
mod workspace;

use std::fmt;
use std::process::ExitCode;

/// The tasks and options, printed by `cargo xtask` and `cargo xtask help`.
const USAGE: &str = "\
Usage: cargo xtask <task> [options]

Tasks:
  ci       fmt --check, clippy -D warnings, tests, docs (-D warnings), package, bench smoke,
           instruction counts (--check), stress --quick; stops at the first failing step
  bench    run our benchmarks and the peers' (benches/peers) row by row, the child-process
           benches and the instruction counts; judge each row by the same-run ratios of
           benches/targets.toml
  stress   the long-running soak: 1,000 nodes, 1,000,000 messages, injected errors and panics,
           bad input; fails when a message is lost or RSS grows beyond its bound
  help     print this list

Options of `bench`:
  --quick          shorter criterion runs (--warm-up-time 1 --measurement-time 3)
  --smoke          run each of our benchmarks once (criterion --test) and the child-process
                   benches, to prove they execute; no peers, no report
  --no-peers       leave the peers out (their crate is not built)
  --rounds N       run the criterion rows N times; each figure is the median of the rounds
  --rows PART      only the rows whose id contains PART (e.g. `--rows std_`)
  --instructions   only count instructions of the standard-mode rows (callgrind)
  --check          with --instructions: fail when a count is >10% above
                   benches/instructions-baseline.json
  --bless          with --instructions: write that baseline from this run
  --strict         rows without a measurement count as missed targets
  --save NAME      also save the results as criterion baseline NAME (--save-baseline NAME)
  --compare NAME   compare with criterion baseline NAME (--baseline NAME): ratio new/base;
                   `base` is criterion's own default baseline: the previous plain run
  --report-only    run nothing: report the estimates already under target/criterion
  -- ARGS...       pass ARGS to criterion (e.g. `-- --sample-size 20`)

Reports: target/bench-report.md and target/bench-report.json. `bench` exits with 1 when a
measured median misses its target (with --strict also when a row was not measured).

Options of `stress`:
  --quick          the CI variant: 100 nodes, 20,000 messages (well under a minute)";

/// An error that ends the xtask: a message for stderr and the exit status.
#[derive(Debug)]
pub struct Error {
    message: String,
    code: u8,
}

impl Error {
    /// A failure (exit status 1).
    pub fn fail(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    /// A usage error (exit status 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of every fallible xtask function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to an error (like `anyhow::Context`, without the dependency).
pub trait Context<T> {
    /// Turns the error into a failure whose message starts with `what()`.
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::fail(format!("{}: {e}", what().into())))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if e.code == 2 {
                eprintln!("\n{USAGE}");
            }
            ExitCode::from(e.code)
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let Some((task, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match task.as_str() {
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        "ci" => {
            if let Some(extra) = rest.first() {
                return Err(Error::usage(format!(
                    "`ci` takes no arguments, got `{extra}`"
                )));
            }
            ci::run(&workspace::Workspace::locate()?)
        }
        "bench" => {
            let options = bench::Options::parse(rest)?;
            bench::run(&workspace::Workspace::locate()?, &options)
        }
        "stress" => {
            let options = stress::Options::parse(rest)?;
            stress::run(&workspace::Workspace::locate()?, options)
        }
        other => Err(Error::usage(format!("unknown task `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_list_the_tasks() {
        assert!(run(&[]).is_ok());
        assert!(run(&["help".to_owned()]).is_ok());
    }

    #[test]
    fn an_unknown_task_is_a_usage_error() {
        let err = run(&["bnech".to_owned()]).err();
        assert!(matches!(err, Some(Error { code: 2, .. })), "{err:?}");
    }

    #[test]
    fn the_task_list_shows_every_task() {
        for task in ["ci ", "bench ", "stress ", "help "] {
            assert!(USAGE.contains(&format!("\n  {task}")), "{task}");
        }
    }

    #[test]
    fn stress_rejects_unknown_options() {
        let err = run(&["stress".to_owned(), "--fast".to_owned()]).err();
        assert!(matches!(err, Some(Error { code: 2, .. })), "{err:?}");
    }

    #[test]
    fn ci_takes_no_arguments() {
        let err = run(&["ci".to_owned(), "--fast".to_owned()]).err();
        assert!(matches!(err, Some(Error { code: 2, .. })), "{err:?}");
    }

    #[test]
    fn context_prefixes_the_message() {
        let r: std::result::Result<(), &str> = Err("boom");
        let e = r.context(|| "reading x").err();
        assert_eq!(e.map(|e| e.to_string()).as_deref(), Some("reading x: boom"));
    }
}
