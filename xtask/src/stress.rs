//! `cargo xtask stress`: the long-running soak ("faults, bad input and load, with nothing
//! lost"), run as a release child process: the `stress` binary of `spark-adk-benches` (see
//! `benches/src/stress.rs` for the graph, the faults and the checks).
//!
//! - `cargo xtask stress`: 1,000 nodes, 1,000,000 messages, injected errors and panics in 1% of
//!   the nodes, bad input.
//! - `cargo xtask stress --quick`: the CI variant (100 nodes, 20,000 messages).
//!
//! The binary's output is echoed line by line. Its last line is the closing line
//! `accepted=N processed=N unprocessed=N lost=N` (the runtime's own counters, summed over the
//! batches). The task fails when the binary exits non-zero (a lost message, a failed check, RSS
//! growth beyond the bound), prints no closing line, or reports `lost` other than 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::bench::PACKAGE;
use crate::workspace::{describe, Workspace};
use crate::{Context, Error, Result};

/// The binary of `spark-adk-benches` that runs the soak.
pub const BINARY: &str = "stress";

/// The options of `cargo xtask stress`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The small CI variant.
    pub quick: bool,
}

impl Options {
    /// Parses the arguments after `stress`.
    ///
    /// # Errors
    /// A usage error for anything but `--quick`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self::default();
        for arg in args {
            match arg.as_str() {
                "--quick" => o.quick = true,
                other => {
                    return Err(Error::usage(format!("unknown `stress` option `{other}`")));
                }
            }
        }
        Ok(o)
    }

    /// The arguments of the binary.
    pub fn binary_args(self) -> Vec<&'static str> {
        if self.quick {
            vec!["--quick"]
        } else {
            Vec::new()
        }
    }
}

/// The runtime's counts from the closing line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closing {
    /// Messages accepted.
    pub accepted: u64,
    /// Messages processed.
    pub processed: u64,
    /// Messages unprocessed.
    pub unprocessed: u64,
    /// `accepted - processed - unprocessed`, as printed.
    pub lost: i128,
}

/// Parses `accepted=N processed=N unprocessed=N lost=N`; `None` for any other line.
pub fn parse_closing_line(line: &str) -> Option<Closing> {
    let mut fields = line.trim().split(' ');
    let mut field =
        |name: &str| -> Option<&str> { fields.next()?.strip_prefix(name)?.strip_prefix('=') };
    let closing = Closing {
        accepted: field("accepted")?.parse().ok()?,
        processed: field("processed")?.parse().ok()?,
        unprocessed: field("unprocessed")?.parse().ok()?,
        lost: field("lost")?.parse().ok()?,
    };
    fields.next().is_none().then_some(closing)
}

/// Checks the closing line against its own arithmetic and for loss.
///
/// # Errors
/// When `lost` is not 0 or does not equal `accepted - processed - unprocessed`.
pub fn check(closing: &Closing) -> Result<()> {
    let computed = i128::from(closing.accepted)
        - i128::from(closing.processed)
        - i128::from(closing.unprocessed);
    if computed != closing.lost {
        return Err(Error::fail(format!(
            "the closing line says lost={} but accepted - processed - unprocessed = {computed}",
            closing.lost
        )));
    }
    if closing.lost != 0 {
        return Err(Error::fail(format!(
            "{} message(s) lost: accepted={} processed={} unprocessed={}",
            closing.lost, closing.accepted, closing.processed, closing.unprocessed
        )));
    }
    Ok(())
}

/// Builds the binary, runs the soak, checks the closing line.
///
/// # Errors
/// A failed build, a failing soak, a missing closing line or a loss.
pub fn run(ws: &Workspace, options: Options) -> Result<()> {
    let started = Instant::now();
    let exe = ws.build_release_bin(PACKAGE, BINARY)?;
    let built = started.elapsed();
    let mut cmd = Command::new(&exe);
    cmd.args(options.binary_args())
        .current_dir(&ws.root)
        .stdout(Stdio::piped());
    println!("$ {}", describe(&cmd));
    let soak_started = Instant::now();
    let mut child = cmd
        .spawn()
        .context(|| format!("could not start `{}`", exe.display()))?;
    let mut closing = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context(|| "reading the soak's output")?;
            println!("{line}");
            if let Some(c) = parse_closing_line(&line) {
                closing = Some(c);
            }
        }
    }
    let status = child.wait().context(|| "waiting for the soak")?;
    let took = soak_started.elapsed().as_secs_f64();
    let closing = closing.ok_or_else(|| {
        Error::fail(format!(
            "the soak printed no closing line `accepted=.. processed=.. unprocessed=.. lost=..` \
             ({status}, after {took:.1} s)"
        ))
    })?;
    check(&closing)?;
    if !status.success() {
        return Err(Error::fail(format!(
            "the soak failed ({status}, after {took:.1} s): see its FAILED lines above"
        )));
    }
    println!(
        "stress passed in {took:.2} s (build {:.1} s): {} messages accepted, {} processed, {} \
         unprocessed, none lost",
        built.as_secs_f64(),
        closing.accepted,
        closing.processed,
        closing.unprocessed
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options_are_quick_or_nothing() {
        assert_eq!(parse(&[]).ok(), Some(Options { quick: false }));
        assert_eq!(parse(&["--quick"]).ok(), Some(Options { quick: true }));
        assert_eq!(
            parse(&["--quick"]).ok().map(Options::binary_args),
            Some(vec!["--quick"])
        );
        for bad in [&["--full"][..], &["quick"], &["--quick", "--smoke"]] {
            let err = parse(bad).err();
            assert!(
                matches!(&err, Some(e) if format!("{e:?}").contains("code: 2")),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn the_closing_line_is_parsed_and_checked() {
        // As `spark_adk_benches::stress::Totals` prints it.
        let line = "accepted=13626884 processed=13581304 unprocessed=45580 lost=0";
        let c = parse_closing_line(line);
        assert_eq!(
            c,
            Some(Closing {
                accepted: 13_626_884,
                processed: 13_581_304,
                unprocessed: 45_580,
                lost: 0,
            })
        );
        assert!(c.is_some_and(|c| check(&c).is_ok()));

        let lossy = parse_closing_line("accepted=10 processed=7 unprocessed=1 lost=2");
        assert!(lossy.is_some_and(|c| check(&c).is_err()));
        let lying = parse_closing_line("accepted=10 processed=7 unprocessed=1 lost=0");
        assert!(lying.is_some_and(|c| check(&c).is_err()));
        let over = parse_closing_line("accepted=1 processed=2 unprocessed=0 lost=-1");
        assert_eq!(over.map(|c| c.lost), Some(-1));

        for other in [
            "",
            "batch 1/~20: sent 50000 returned 0 | accepted=1 processed=1 unprocessed=0 | ok",
            "returned=11 attempted=1000000 sent_ok=999989",
            "accepted=1 processed=1 unprocessed=0",
            "accepted=1 processed=1 unprocessed=0 lost=0 more=1",
            "accepted=one processed=1 unprocessed=0 lost=0",
        ] {
            assert_eq!(parse_closing_line(other), None, "{other}");
        }
    }
}
