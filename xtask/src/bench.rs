//! `cargo xtask bench`: run the criterion benches of `spark-adk-benches`, then report each median
//! against `benches/targets.toml`.
//!
//! - Every bench target of the package runs in turn (`cargo bench -p spark-adk-benches --bench
//!   NAME -- <criterion args>`), so the progress line names the target.
//! - The report reads `<target>/criterion/<criterion_id>/new/estimates.json` (median point
//!   estimate, ns) for every row, divides it by the row's `divide_by`, and prints one table:
//!   seed figure, best peer, target, measured median, speed-up over the seed and the peer,
//!   ratio to the target, PASS/MISS. A row without a result from this run (no file, or one left
//!   by an earlier run) is "not measured": a miss only with `--strict`.
//! - The report is also written to `<target>/bench-report.md` and `<target>/bench-report.json`.
//! - Exit status 1 when a measured median misses its target, naming the rows.
//!
//! - After the criterion targets, the memory benches run as release child processes (see
//!   [`crate::mem`]) and write `<target>/bench-mem/<id>.json`, which the report reads for the
//!   `source = "memory"` rows. They take a second or two, so they also run with `--smoke`.
//!
//! `--smoke` runs each benchmark once (criterion's `--test`) and reports nothing: it proves the
//! benches run, as CI needs. `--quick` shortens criterion's warm-up and measurement.

use std::time::{Instant, SystemTime};

use crate::report::{Locations, Report};
use crate::targets;
use crate::workspace::{run_step, Workspace};
use crate::{Context, Error, Result};

/// The package that holds the benches.
pub const PACKAGE: &str = "spark-adk-benches";

/// Criterion arguments of `--quick`: about 4 s per benchmark instead of about 8 s.
const QUICK: [&str; 4] = ["--warm-up-time", "1", "--measurement-time", "3"];

/// The options of `cargo xtask bench`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Shorter criterion runs.
    pub quick: bool,
    /// Run every benchmark once; no report, no thresholds.
    pub smoke: bool,
    /// Rows without a measurement count as missed.
    pub strict: bool,
    /// Save the results as this criterion baseline.
    pub save: Option<String>,
    /// Compare with this criterion baseline.
    pub compare: Option<String>,
    /// Run nothing; report the results already on disk.
    pub report_only: bool,
    /// Extra criterion arguments (after `--`).
    pub criterion: Vec<String>,
}

impl Options {
    /// The options of the CI smoke run.
    pub fn smoke() -> Self {
        Self {
            smoke: true,
            ..Self::default()
        }
    }

    /// Parses the arguments after `bench`.
    ///
    /// # Errors
    /// A usage error for an unknown option, a missing baseline name, or options that exclude
    /// each other.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = |name: &str| -> Result<String> {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .filter(|v| !v.is_empty() && !v.starts_with('-'))
                    .ok_or_else(|| Error::usage(format!("`{name}` needs a baseline name")))
            };
            match flag {
                "--quick" => o.quick = true,
                "--smoke" => o.smoke = true,
                "--strict" => o.strict = true,
                "--report-only" => o.report_only = true,
                "--save" => o.save = Some(value("--save")?),
                "--compare" => o.compare = Some(value("--compare")?),
                "--" => {
                    o.criterion = it.by_ref().cloned().collect();
                }
                other => return Err(Error::usage(format!("unknown `bench` option `{other}`"))),
            }
        }
        if o.smoke && (o.save.is_some() || o.compare.is_some() || o.report_only || o.strict) {
            return Err(Error::usage(
                "`--smoke` runs each bench once and reports nothing: it takes no \
                 --save/--compare/--report-only/--strict",
            ));
        }
        if o.save.is_some() && o.compare.is_some() {
            return Err(Error::usage(
                "use either `--save NAME` or `--compare NAME`, not both",
            ));
        }
        if o.report_only && (o.save.is_some() || o.quick || !o.criterion.is_empty()) {
            return Err(Error::usage(
                "`--report-only` runs nothing: it takes no --save/--quick/criterion arguments",
            ));
        }
        Ok(o)
    }

    /// The arguments passed to every bench binary (after `cargo bench ... --`).
    pub fn criterion_args(&self) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        if self.smoke {
            args.push("--test".to_owned());
        } else {
            args.push("--noplot".to_owned());
            if self.quick {
                args.extend(QUICK.iter().map(|s| (*s).to_owned()));
            }
            if let Some(name) = &self.save {
                args.extend(["--save-baseline".to_owned(), name.clone()]);
            }
            if let Some(name) = &self.compare {
                args.extend(["--baseline".to_owned(), name.clone()]);
            }
        }
        args.extend(self.criterion.iter().cloned());
        args
    }
}

/// Runs the benches (unless `--report-only`), then reports (unless `--smoke`).
///
/// # Errors
/// A bench target that fails, an unreadable table or result, or missed targets.
pub fn run(ws: &Workspace, options: &Options) -> Result<()> {
    // Read the table first: a broken table fails before minutes of benchmarking.
    let table = targets::load(&ws.targets_file())?;
    let since = if options.report_only {
        None
    } else {
        let started = SystemTime::now();
        run_bench_targets(ws, options)?;
        crate::mem::run(ws)?;
        Some(started)
    };
    if options.smoke {
        println!(
            "bench smoke passed: every benchmark ran once, the memory bench too (no thresholds)"
        );
        return Ok(());
    }

    let at = Locations {
        criterion_dir: ws.criterion_dir(),
        target_dir: ws.target_dir.clone(),
        since,
    };
    let mut report = Report::gather(&table, &at, options.strict)?;
    if let Some(name) = &options.compare {
        report.compare_with(name, &at)?;
    }
    println!();
    print!("{}", report.to_text());

    std::fs::create_dir_all(&ws.target_dir)
        .context(|| format!("creating {}", ws.target_dir.display()))?;
    let md = ws.target_dir.join("bench-report.md");
    let json = ws.target_dir.join("bench-report.json");
    std::fs::write(&md, report.to_markdown()).context(|| format!("writing {}", md.display()))?;
    std::fs::write(&json, report.to_json()?).context(|| format!("writing {}", json.display()))?;
    println!("reports: {} and {}", md.display(), json.display());
    report.verdict()
}

fn run_bench_targets(ws: &Workspace, options: &Options) -> Result<()> {
    let names = ws.bench_targets(PACKAGE)?;
    if names.is_empty() {
        return Err(Error::fail(format!("`{PACKAGE}` has no bench targets")));
    }
    let args = options.criterion_args();
    let mode = if options.smoke {
        "smoke: each benchmark once"
    } else if options.quick {
        "quick"
    } else {
        "full"
    };
    for (i, name) in names.iter().enumerate() {
        println!(
            "==> [{}/{}] bench target `{name}` ({mode})",
            i + 1,
            names.len()
        );
        let started = Instant::now();
        let mut cmd = ws.cargo(["bench", "-p", PACKAGE, "--bench", name.as_str(), "--"]);
        cmd.args(&args);
        run_step(&format!("bench target `{name}`"), &mut cmd)?;
        println!(
            "==> bench target `{name}` done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn args(o: &Result<Options>) -> Vec<String> {
        o.as_ref().map(Options::criterion_args).unwrap_or_default()
    }

    #[test]
    fn the_default_run_is_a_full_criterion_run() {
        assert_eq!(args(&parse(&[])), ["--noplot"]);
    }

    #[test]
    fn quick_save_compare_and_passthrough_map_to_criterion() {
        assert_eq!(
            args(&parse(&["--quick", "--save", "main"])),
            [
                "--noplot",
                "--warm-up-time",
                "1",
                "--measurement-time",
                "3",
                "--save-baseline",
                "main"
            ]
        );
        assert_eq!(
            args(&parse(&["--compare=main", "--", "std_flow"])),
            ["--noplot", "--baseline", "main", "std_flow"]
        );
        assert_eq!(args(&parse(&["--smoke"])), ["--test"]);
        let strict = parse(&["--strict", "--report-only"]).ok();
        assert_eq!(
            strict,
            Some(Options {
                strict: true,
                report_only: true,
                ..Options::default()
            })
        );
    }

    #[test]
    fn bad_options_are_usage_errors() {
        for bad in [
            &["--fast"][..],
            &["--save"],
            &["--save", "--quick"],
            &["--compare="],
            &["--smoke", "--strict"],
            &["--save", "a", "--compare", "b"],
            &["--report-only", "--quick"],
            &["extra"],
        ] {
            let err = parse(bad).err();
            assert!(
                matches!(&err, Some(e) if e.to_string().len() > 10 && format!("{e:?}").contains("code: 2")),
                "{bad:?}: {err:?}"
            );
        }
    }
}
