//! `cargo xtask bench`: run our criterion benches and the peers' (benches/peers) row by row,
//! the child-process benches, and the instruction counts, then report each row against the
//! same-run ratios of `benches/targets.toml`.
//!
//! - **Interleaved rows.** The bench executables the rows need are built first (`cargo bench
//!   --no-run` per package: `spark-adk-benches` or the row's own `package`, and the peers'
//!   crate), then for each criterion row of the table, in order: our bench of
//!   the row, the peer's bench of the same row, then the row's other ratios (floors) and the
//!   benches beside it, each a run of the executable with `--exact <criterion id>`. So a
//!   row's figures are seconds apart, and the ratio of two medians is not skewed by the
//!   machine's load moving between the start and the end of a run (A B A B, not A A B B).
//! - **Rows that need a server** (`server` in the table, `nats_hop*`): when nothing answers
//!   at that address, the row is not run and is reported as SKIPPED with the reason (never a
//!   failure).
//! - **Child-process benches** ([`crate::process`]): `mem_lr_10k`, `server_10k` (with
//!   graph-flow's `server_10k_graph_flow`).
//! - **Instruction counts** ([`crate::icount`]): the standard-mode rows, ours and graph-flow's,
//!   under callgrind.
//! - **The report** ([`crate::report`]) reads `<target>/criterion/<criterion_id>/new/
//!   estimates.json` (median), the process result files and the counts; it is printed and
//!   written to `<target>/bench-report.md` and `<target>/bench-report.json`. Exit status 1
//!   when a row misses its target. A row without a result from this run is "not measured": a
//!   miss only with `--strict`.
//!
//! `--rounds N` runs the criterion rows N times (round after round, each in the order above)
//! and the report takes, for each bench, the median of its N medians (every round's medians:
//! `<target>/bench-rounds.json`).
//!
//! `--smoke` runs each of our benchmarks once (criterion's `--test`) and the child-process
//! benches, without the peers, and reports nothing: it proves the benches run, as CI needs.
//! Rows whose bench is in another package (`nats_hop*`, `durable_append`) are not run; it says so.
//! `--instructions` only counts instructions (with `--check`: fails when a count is more than
//! 10% above `benches/instructions-baseline.json`; with `--bless`: writes that file).
//! `--no-peers` leaves the peers out (their crate is not built). `--quick` shortens
//! criterion's warm-up and measurement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use crate::report::{count, Locations, Report};
use crate::targets::{self, Source, Target};
use crate::workspace::{run_step, Workspace};
use crate::{icount, Context, Error, Result};

/// The package that holds the benches (a row of `benches/targets.toml` may name another).
pub const PACKAGE: &str = "spark-adk-benches";

/// The package of the peers' crate (benches/peers, a workspace of its own).
pub const PEERS_PACKAGE: &str = "spark-adk-peers";

/// The bench target of the peers' crate.
pub const PEERS_BENCH: &str = "peers";

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
    /// Leave the peers out.
    pub no_peers: bool,
    /// Only count instructions.
    pub instructions: bool,
    /// With `instructions`: fail above the committed baseline.
    pub check: bool,
    /// With `instructions`: write the committed baseline.
    pub bless: bool,
    /// Only the rows whose id contains this (`--rows`).
    pub rows: Option<String>,
    /// How many times the rows run (the report takes the median of the rounds' medians);
    /// 0 means 1.
    pub rounds: u32,
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
                "--no-peers" => o.no_peers = true,
                "--instructions" => o.instructions = true,
                "--check" => o.check = true,
                "--bless" => o.bless = true,
                "--save" => o.save = Some(value("--save")?),
                "--compare" => o.compare = Some(value("--compare")?),
                "--rows" => {
                    let part = inline
                        .clone()
                        .or_else(|| it.next().cloned())
                        .unwrap_or_default();
                    if part.is_empty() || part.starts_with('-') {
                        return Err(Error::usage("`--rows` needs a part of a row id"));
                    }
                    o.rows = Some(part);
                }
                "--rounds" => {
                    let n = inline
                        .clone()
                        .or_else(|| it.next().cloned())
                        .unwrap_or_default();
                    o.rounds = n.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        Error::usage(format!("`--rounds` needs a count, got `{n}`"))
                    })?;
                }
                "--" => {
                    o.criterion = it.by_ref().cloned().collect();
                }
                other => return Err(Error::usage(format!("unknown `bench` option `{other}`"))),
            }
        }
        if o.smoke
            && (o.save.is_some()
                || o.compare.is_some()
                || o.report_only
                || o.strict
                || o.instructions)
        {
            return Err(Error::usage(
                "`--smoke` runs each bench once and reports nothing: it takes no \
                 --save/--compare/--report-only/--strict/--instructions",
            ));
        }
        if o.rounds > 1 && (o.smoke || o.instructions || o.report_only) {
            return Err(Error::usage(
                "`--rounds` repeats the criterion rows of a full or quick run",
            ));
        }
        if (o.check || o.bless) && !o.instructions {
            return Err(Error::usage(
                "`--check` and `--bless` go with `--instructions`",
            ));
        }
        if o.instructions && (o.quick || o.report_only || o.save.is_some() || o.compare.is_some()) {
            return Err(Error::usage(
                "`--instructions` only counts instructions: it takes no \
                 --quick/--report-only/--save/--compare",
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

    /// The arguments passed to every bench executable before the bench's id.
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
                // Lenient: a bench added since the baseline was saved is measured without a
                // comparison instead of failing the whole run.
                args.extend(["--baseline-lenient".to_owned(), name.clone()]);
            }
        }
        args.extend(self.criterion.iter().cloned());
        args
    }
}

/// The rows whose id contains `part`.
pub fn select_rows(table: Vec<Target>, part: &str) -> Vec<Target> {
    table.into_iter().filter(|t| t.id.contains(part)).collect()
}

/// One criterion bench to run: which executable (ours: the row's package and bench target;
/// the peers': [`PEERS_PACKAGE`] and [`PEERS_BENCH`]) and the bench's criterion id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The package of the bench target.
    pub package: String,
    /// The bench target.
    pub bench_target: String,
    /// The criterion id.
    pub id: String,
}

/// The criterion benches of a run, in order: for each criterion row, ours, then the peer's
/// (unless `peers` is false), then the row's other ratios, then the benches beside it.
pub fn plan(table: &[Target], peers: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    for t in table.iter().filter(|t| t.source == Source::Criterion) {
        let ours = t.bench_target.clone().unwrap_or_default();
        let step = |package: &str, bench_target: &str, id: &str| Step {
            package: package.to_owned(),
            bench_target: bench_target.to_owned(),
            id: id.to_owned(),
        };
        steps.push(step(t.package(), &ours, t.criterion_id()));
        let mut ratios: Vec<_> = t.ratios.iter().collect();
        ratios.sort_by_key(|r| !r.peer);
        for r in ratios {
            let Some(id) = &r.criterion_id else { continue };
            if r.peer {
                if peers {
                    steps.push(step(PEERS_PACKAGE, PEERS_BENCH, id));
                }
            } else {
                steps.push(step(t.package(), &ours, id));
            }
        }
        for id in &t.related {
            steps.push(step(t.package(), &ours, id));
        }
        // A ratio's own numerator, unless it already runs as a bench beside the row.
        let compared = t.ratios.iter().filter(|r| peers || !r.peer);
        for of in compared.filter_map(|r| r.of.as_deref()) {
            if !t.related.iter().any(|id| id == of) {
                steps.push(step(t.package(), &ours, of));
            }
        }
    }
    steps
}

/// Runs the benches (unless `--report-only`), then reports (unless `--smoke`).
///
/// # Errors
/// A bench that fails, an unreadable table or result, or missed targets.
pub fn run(ws: &Workspace, options: &Options) -> Result<()> {
    // Read the table first: a broken table fails before minutes of benchmarking.
    let mut table = targets::load(&ws.targets_file())?;
    if let Some(part) = &options.rows {
        table = select_rows(table, part);
        if table.is_empty() {
            return Err(Error::usage(format!("no row id contains `{part}`")));
        }
    }
    let peers = !options.no_peers;
    if options.instructions {
        return instructions_only(ws, &table, options);
    }
    if options.smoke {
        run_smoke(ws, options)?;
        crate::process::run(ws, false)?;
        for t in table
            .iter()
            .filter(|t| t.source == Source::Criterion && t.package() != PACKAGE)
        {
            println!(
                "==> `{}` not in the smoke run: its bench `{}` is in package `{}` (run it with \
                 `cargo xtask bench --rows {}`)",
                t.id,
                t.bench_target.as_deref().unwrap_or("?"),
                t.package(),
                t.id
            );
        }
        println!(
            "bench smoke passed: every benchmark ran once, the child-process benches too; the \
             peers were not built (no thresholds)"
        );
        return Ok(());
    }
    let mut rounds = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    let since = if options.report_only {
        None
    } else {
        let started = SystemTime::now();
        skipped = skipped_rows(&table, server_answers);
        for (id, reason) in &skipped {
            println!("==> `{id}` SKIPPED: {reason}");
        }
        let runnable: Vec<Target> = table
            .iter()
            .filter(|t| !skipped.contains_key(&t.id))
            .cloned()
            .collect();
        rounds = run_rows(ws, &runnable, options, peers)?;
        if table.iter().any(|t| t.source == Source::Process) {
            crate::process::run(ws, peers)?;
        }
        let counted = table.iter().any(|t| t.instructions);
        if counted && valgrind_available() {
            icount::run(ws, &table, peers)?;
        } else if counted {
            println!("==> no valgrind: instruction counts left out");
        }
        Some(started)
    };

    let at = Locations {
        criterion_dir: ws.criterion_dir(),
        target_dir: ws.target_dir.clone(),
        since,
        rounds: if options.rounds > 1 {
            rounds
        } else {
            BTreeMap::new()
        },
        skipped,
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

/// The rows to skip, each with the reason: those whose `server` does not answer `probe` (which
/// returns why not, or `None` when it answers). Each server is probed once.
pub fn skipped_rows(
    table: &[Target],
    probe: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut answers: BTreeMap<&str, Option<String>> = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    for t in table {
        let Some(server) = t.server.as_deref() else {
            continue;
        };
        let answer = answers.entry(server).or_insert_with(|| probe(server));
        if let Some(why) = answer {
            skipped.insert(
                t.id.clone(),
                format!("the server at {server} does not answer ({why})"),
            );
        }
    }
    skipped
}

/// Whether a TCP server answers at `addr` (`host:port`) within 2 s: `None` when it does, else
/// why not.
fn server_answers(addr: &str) -> Option<String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let addrs = match addr.to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return Some(e.to_string()),
    };
    let mut why = format!("`{addr}` resolves to no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)) {
            Ok(_) => return None,
            Err(e) => why = e.to_string(),
        }
    }
    Some(why)
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn instructions_only(ws: &Workspace, table: &[Target], options: &Options) -> Result<()> {
    let counts = icount::run(ws, table, !options.no_peers)?;
    let path = ws.root.join(icount::BASELINE);
    if options.bless {
        icount::save_baseline(&path, &counts)?;
        println!("wrote {}", path.display());
        return Ok(());
    }
    let baseline = icount::load_baseline(&path).unwrap_or_default();
    for (id, now) in &counts {
        let base = baseline.get(id);
        println!(
            "{id:<16} {:>14} per run   baseline {:>14}   {}",
            count(*now),
            base.map_or_else(|| "-".to_owned(), |b| count(*b)),
            base.map_or_else(String::new, |b| format!("{:+.1}%", (now / b - 1.0) * 100.0))
        );
    }
    if options.check {
        if baseline.is_empty() {
            return Err(Error::fail(format!("no baseline in {}", path.display())));
        }
        let over = icount::regressions(&baseline, &counts, icount::THRESHOLD);
        if !over.is_empty() {
            return Err(Error::fail(format!(
                "instruction counts above the baseline:\n  {}",
                over.join("\n  ")
            )));
        }
        println!(
            "instruction counts within {:.0}% of the baseline",
            icount::THRESHOLD * 100.0
        );
    }
    Ok(())
}

/// `--smoke`: each of our bench targets once, through cargo (criterion's `--test`).
fn run_smoke(ws: &Workspace, options: &Options) -> Result<()> {
    let names = ws.bench_targets(PACKAGE)?;
    if names.is_empty() {
        return Err(Error::fail(format!("`{PACKAGE}` has no bench targets")));
    }
    let args = options.criterion_args();
    for (i, name) in names.iter().enumerate() {
        println!(
            "==> [{}/{}] bench target `{name}` (smoke: each benchmark once)",
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

/// The full and quick runs: build the executables, then run the plan's steps in order, once
/// per round; returns every round's median of each criterion id.
fn run_rows(
    ws: &Workspace,
    table: &[Target],
    options: &Options,
    peers: bool,
) -> Result<BTreeMap<String, Vec<f64>>> {
    let steps = plan(table, peers);
    // The executables the steps need, built per package: ((package, bench target), exe).
    let mut executables: Vec<((String, String), PathBuf)> = Vec::new();
    for (package, names) in bench_targets_by_package(&steps) {
        let exes = if package == PEERS_PACKAGE {
            ws.build_benches(None, Some(&ws.peers_manifest()), &names)?
        } else {
            ws.build_benches(Some(&package), None, &names)?
        };
        executables.extend(
            names
                .into_iter()
                .zip(exes)
                .map(|(name, exe)| ((package.clone(), name), exe)),
        );
    }
    let args = options.criterion_args();
    let criterion_dir = ws.criterion_dir();
    let at = Locations {
        criterion_dir: criterion_dir.clone(),
        target_dir: ws.target_dir.clone(),
        since: None,
        rounds: BTreeMap::new(),
        skipped: BTreeMap::new(),
    };
    let total = options.rounds.max(1);
    let mut medians: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for round in 1..=total {
        for (i, step) in steps.iter().enumerate() {
            let exe = executables
                .iter()
                .find(|((package, name), _)| *package == step.package && *name == step.bench_target)
                .map(|(_, exe)| exe)
                .ok_or_else(|| {
                    Error::fail(format!(
                        "no bench target `{}` of `{}` (for `{}`)",
                        step.bench_target, step.package, step.id
                    ))
                })?;
            println!(
                "==> round {round}/{total} [{}/{}] `{}` ({})",
                i + 1,
                steps.len(),
                step.id,
                step.bench_target
            );
            let mut cmd = criterion_command(exe, &args, &step.id, &criterion_dir, &ws.root);
            run_step(&format!("bench `{}`", step.id), &mut cmd)?;
            medians
                .entry(step.id.clone())
                .or_default()
                .push(at.latest_median(&step.id)?);
        }
    }
    if total > 1 {
        let file = ws.target_dir.join("bench-rounds.json");
        let json = serde_json::to_string_pretty(&medians).context(|| "serialising the rounds")?;
        std::fs::write(&file, json + "\n").context(|| format!("writing {}", file.display()))?;
        println!("==> every round's medians: {}", file.display());
    }
    Ok(medians)
}

/// The bench targets the steps run, grouped by package, each package and name once, in the
/// order the steps first name them.
pub fn bench_targets_by_package(steps: &[Step]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for s in steps {
        let at = match out.iter().position(|(p, _)| *p == s.package) {
            Some(i) => i,
            None => {
                out.push((s.package.clone(), Vec::new()));
                out.len() - 1
            }
        };
        let names = &mut out[at].1;
        if !names.contains(&s.bench_target) {
            names.push(s.bench_target.clone());
        }
    }
    out
}

/// The command that runs one criterion bench of `exe` (only the one with id `id`), writing
/// its results under `criterion_dir`.
pub fn criterion_command(
    exe: &Path,
    args: &[String],
    id: &str,
    criterion_dir: &Path,
    root: &Path,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("--bench")
        .args(args)
        .args(["--exact", id])
        .env("CRITERION_HOME", criterion_dir)
        .current_dir(root);
    cmd
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
            ["--noplot", "--baseline-lenient", "main", "std_flow"]
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
            &["--check"],
            &["--bless"],
            &["--instructions", "--quick"],
            &["--smoke", "--instructions"],
            &["extra"],
        ] {
            let err = parse(bad).err();
            assert!(
                matches!(&err, Some(e) if e.to_string().len() > 10 && format!("{e:?}").contains("code: 2")),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn instruction_and_peer_options_parse() {
        let o = parse(&["--instructions", "--check", "--no-peers"]).ok();
        assert_eq!(
            o,
            Some(Options {
                instructions: true,
                check: true,
                no_peers: true,
                ..Options::default()
            })
        );
        assert!(parse(&["--instructions", "--bless"]).is_ok());
        assert_eq!(
            parse(&["--rows", "std_"]).map(|o| o.rows).ok(),
            Some(Some("std_".to_owned()))
        );
        assert!(parse(&["--rows"]).is_err());
        let table = crate::targets::parse(crate::targets::tests::FIXTURE).unwrap_or_default();
        let ids: Vec<String> = select_rows(table, "server")
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["server_10k", "server_lr_1k"]);
        assert_eq!(
            parse(&["--quick", "--rounds", "3"]).map(|o| o.rounds).ok(),
            Some(3)
        );
        assert_eq!(parse(&["--rounds=2"]).map(|o| o.rounds).ok(), Some(2));
        for bad in [
            &["--rounds", "0"][..],
            &["--rounds", "x"],
            &["--rounds"],
            &["--smoke", "--rounds", "2"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    fn steps(peers: bool) -> Vec<(String, String)> {
        let table = crate::targets::parse(crate::targets::tests::FIXTURE).unwrap_or_default();
        plan(&table, peers)
            .into_iter()
            .map(|s| (s.bench_target, s.id))
            .collect()
    }

    #[test]
    fn each_row_runs_ours_then_the_peers_then_the_rest() {
        let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(
            steps(true),
            owned(&[
                ("standard", "std_flow_3"),
                ("peers", "graph_flow/std_flow_3"),
                ("standard", "std_flow_3_mt"),
                ("long_running", "lr_per_message/pipeline_3"),
                ("peers", "dagrs/pipeline_3"),
                ("peers", "dagrs_ct/pipeline_3"),
                ("long_running", "floor/pipeline_3"),
                ("long_running", "ct/pipeline_3"),
            ])
        );
        assert_eq!(
            steps(false),
            owned(&[
                ("standard", "std_flow_3"),
                ("standard", "std_flow_3_mt"),
                ("long_running", "lr_per_message/pipeline_3"),
                ("long_running", "floor/pipeline_3"),
            ])
        );
    }

    fn table_with_nats() -> Vec<Target> {
        let text = format!(
            "{}{}",
            crate::targets::tests::FIXTURE,
            crate::targets::tests::NATS_ROW
        );
        crate::targets::parse(&text).unwrap_or_default()
    }

    #[test]
    fn a_rows_benches_run_from_its_own_package_and_the_peers_from_theirs() {
        let steps: Vec<(String, String, String)> = plan(&table_with_nats(), true)
            .into_iter()
            .map(|s| (s.package, s.bench_target, s.id))
            .collect();
        let nats: Vec<(&str, &str, &str)> = steps
            .iter()
            .filter(|(p, _, _)| p == "spark-adk-nats")
            .map(|(p, b, id)| (p.as_str(), b.as_str(), id.as_str()))
            .collect();
        assert_eq!(
            nats,
            [
                ("spark-adk-nats", "nats_hop", "nats_hop/pipeline_3"),
                ("spark-adk-nats", "nats_hop", "nats_hop/bare"),
                ("spark-adk-nats", "nats_hop", "nats_hop/throughput_1"),
            ]
        );
        for (package, bench_target, id) in &steps {
            let expected = match bench_target.as_str() {
                "peers" => PEERS_PACKAGE,
                "nats_hop" => "spark-adk-nats",
                _ => PACKAGE,
            };
            assert_eq!(package, expected, "{id}");
        }
    }

    #[test]
    fn each_package_builds_only_the_bench_targets_its_steps_run() {
        let groups = bench_targets_by_package(&plan(&table_with_nats(), true));
        let owned = |p: &str, names: &[&str]| {
            (
                p.to_owned(),
                names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            groups,
            [
                owned(PACKAGE, &["standard", "long_running"]),
                owned(PEERS_PACKAGE, &["peers"]),
                owned("spark-adk-nats", &["nats_hop"]),
            ]
        );
        let nats_only = select_rows(table_with_nats(), "nats_hop");
        assert_eq!(
            bench_targets_by_package(&plan(&nats_only, true)),
            [owned("spark-adk-nats", &["nats_hop"])]
        );
    }

    #[test]
    fn rows_whose_server_does_not_answer_are_skipped_with_the_reason() {
        let probed = std::cell::Cell::new(0);
        let refused = |addr: &str| {
            probed.set(probed.get() + 1);
            (addr == "127.0.0.1:4222").then(|| "connection refused".to_owned())
        };
        let mut table = table_with_nats();
        let mut second = table[5].clone();
        second.id = "nats_hop_2".to_owned();
        table.push(second);
        let skipped = skipped_rows(&table, refused);
        assert_eq!(
            skipped.keys().map(String::as_str).collect::<Vec<_>>(),
            ["nats_hop", "nats_hop_2"]
        );
        assert_eq!(
            skipped.get("nats_hop").map(String::as_str),
            Some("the server at 127.0.0.1:4222 does not answer (connection refused)")
        );
        assert_eq!(probed.get(), 1, "each server is probed once");
        assert!(skipped_rows(&table, |_| None).is_empty());
    }

    #[test]
    fn a_server_that_is_not_listening_does_not_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").ok();
        let addr = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default();
        assert!(!addr.is_empty(), "a local port to listen on");
        assert_eq!(server_answers(&addr), None);
        drop(listener);
        assert!(server_answers(&addr).is_some());
        assert!(server_answers("no-such-host.invalid:4222").is_some());
    }

    #[test]
    fn one_bench_runs_alone_and_writes_where_the_report_reads() {
        let args = parse(&["--quick"])
            .map(|o| o.criterion_args())
            .unwrap_or_default();
        let cmd = criterion_command(
            Path::new("/t/release/deps/standard-abc"),
            &args,
            "std_per_node/chain_1000",
            Path::new("/t/criterion"),
            Path::new("/repo"),
        );
        assert_eq!(
            crate::workspace::describe(&cmd),
            "CRITERION_HOME=\"/t/criterion\" standard-abc --bench --noplot --warm-up-time 1 \
             --measurement-time 3 --exact std_per_node/chain_1000"
        );
    }
}
