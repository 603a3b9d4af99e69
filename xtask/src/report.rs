//! The benchmark report: measurements read from criterion's estimates (or the memory bench's
//! file), compared with the table of `benches/targets.toml`, rendered as a terminal table,
//! Markdown and JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::targets::{Source, Target, Unit};
use crate::{Context, Error, Result};

/// Where to find results.
#[derive(Clone, Debug)]
pub struct Locations {
    /// Criterion's output directory (`target/criterion`).
    pub criterion_dir: PathBuf,
    /// Cargo's target directory (the memory bench writes `bench-mem/<id>.json` there).
    pub target_dir: PathBuf,
    /// Results written before this instant are stale (from an earlier run) and ignored; `None`
    /// accepts any (`--report-only`).
    pub since: Option<SystemTime>,
}

/// A measurement, or why there is none.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Measurement {
    /// A value in the row's unit, already divided by `divide_by`; `raw` is the undivided one.
    Measured {
        /// The value compared with the target.
        value: f64,
        /// The median before `divide_by`.
        raw: f64,
    },
    /// No result for this row.
    NotMeasured {
        /// Why: no estimates file, or only one from an earlier run.
        reason: String,
    },
}

impl Measurement {
    /// The value, when there is one.
    pub fn value(&self) -> Option<f64> {
        match self {
            Self::Measured { value, .. } => Some(*value),
            Self::NotMeasured { .. } => None,
        }
    }
}

/// A row's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Measured at or below the target.
    Pass,
    /// Measured above the target.
    Miss,
    /// No measurement (a miss only with `--strict`).
    NotMeasured,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Miss => "MISS",
            Self::NotMeasured => "not measured",
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The table row it reports on.
    #[serde(flatten)]
    pub target: Target,
    /// What was measured.
    pub measurement: Measurement,
    /// seed figure / measured (how many times faster than the seed).
    pub speedup_vs_seed: Option<f64>,
    /// peer figure / measured (above 1: faster than the best peer).
    pub speedup_vs_peer: Option<f64>,
    /// measured / target (at most 1 passes).
    pub ratio_to_target: Option<f64>,
    /// The verdict.
    pub status: Status,
}

/// A bench reported beside a row, without a target.
#[derive(Clone, Debug, Serialize)]
pub struct Related {
    /// The bench's criterion id.
    pub id: String,
    /// The row it belongs to.
    pub of: String,
    /// What was measured (divided like its row).
    pub measurement: Measurement,
    /// measured / the row's measured value.
    pub ratio_to_row: Option<f64>,
}

/// One line of a baseline comparison (`--compare NAME`).
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The bench id (criterion id for related benches).
    pub id: String,
    /// The unit of `base` and `new`.
    pub unit: Unit,
    /// The baseline's median (divided like its row), if there is one.
    pub base: Option<f64>,
    /// This run's median (divided like its row), if there is one.
    pub new: Option<f64>,
    /// new / base.
    pub ratio: Option<f64>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Whether rows without a measurement count as missed.
    pub strict: bool,
    /// One per table row, in table order.
    pub rows: Vec<Row>,
    /// Extra benches (for example the multi-thread runs of the standard benches).
    pub related: Vec<Related>,
    /// The baseline compared with, if any.
    pub baseline: Option<String>,
    /// The comparison with that baseline.
    pub comparison: Vec<Comparison>,
}

/// Criterion's `estimates.json`, the part we read.
#[derive(serde::Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(serde::Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// The memory bench's file.
#[derive(serde::Deserialize)]
struct MemoryFile {
    bytes: f64,
}

/// Reads a median (ns) from a criterion `estimates.json`; `Ok(None)` when there is no file or
/// it is older than `since`.
///
/// # Errors
/// When the file exists but cannot be read or parsed.
fn read_median(path: &Path, since: Option<SystemTime>) -> Result<Option<f64>, String> {
    read_value(path, since, |text| {
        serde_json::from_str::<Estimates>(text).map(|e| e.median.point_estimate)
    })
}

fn read_value<E: std::fmt::Display>(
    path: &Path,
    since: Option<SystemTime>,
    parse: impl FnOnce(&str) -> Result<f64, E>,
) -> Result<Option<f64>, String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if let (Some(since), Ok(modified)) = (since, meta.modified()) {
        if modified < since {
            return Err("stale".to_owned());
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// How long before the run's start a result may have been written and still count as fresh
/// (file-system timestamps can be coarse).
const CLOCK_SLACK: Duration = Duration::from_secs(2);

impl Locations {
    fn estimates(&self, criterion_id: &str, baseline: &str) -> PathBuf {
        self.criterion_dir
            .join(criterion_id)
            .join(baseline)
            .join("estimates.json")
    }

    fn since(&self) -> Option<SystemTime> {
        self.since
            .map(|t| t.checked_sub(CLOCK_SLACK).unwrap_or(SystemTime::UNIX_EPOCH))
    }

    /// The raw measurement of a criterion id (ns), or why there is none.
    fn criterion(&self, criterion_id: &str, divide_by: u64) -> Result<Measurement> {
        let path = self.estimates(criterion_id, "new");
        measurement(read_median(&path, self.since()), &path, divide_by)
    }

    fn memory(&self, id: &str) -> Result<Measurement> {
        let path = self.target_dir.join("bench-mem").join(format!("{id}.json"));
        let value = read_value(&path, self.since(), |text| {
            serde_json::from_str::<MemoryFile>(text).map(|m| m.bytes)
        });
        measurement(value, &path, 1)
    }
}

fn measurement(
    value: Result<Option<f64>, String>,
    path: &Path,
    divide_by: u64,
) -> Result<Measurement> {
    match value {
        Ok(Some(raw)) => Ok(Measurement::Measured {
            value: raw / divide_by as f64,
            raw,
        }),
        Ok(None) => Ok(Measurement::NotMeasured {
            reason: format!("no {}", path.display()),
        }),
        Err(e) if e == "stale" => Ok(Measurement::NotMeasured {
            reason: format!("only a stale {} from an earlier run", path.display()),
        }),
        Err(e) => Err(Error::fail(format!("bad result file: {e}"))),
    }
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

impl Report {
    /// Reads every row's measurement and judges it.
    ///
    /// # Errors
    /// When a result file exists but is unreadable or malformed.
    pub fn gather(targets: &[Target], at: &Locations, strict: bool) -> Result<Self> {
        let mut rows = Vec::with_capacity(targets.len());
        let mut related = Vec::new();
        for t in targets {
            let measurement = match t.source {
                Source::Criterion => at.criterion(t.criterion_id(), t.divide_by)?,
                Source::Memory => at.memory(&t.id)?,
            };
            let value = measurement.value();
            let status = match value {
                Some(v) if v <= t.target_value => Status::Pass,
                Some(_) => Status::Miss,
                None => Status::NotMeasured,
            };
            for id in &t.related {
                let m = at.criterion(id, t.divide_by)?;
                related.push(Related {
                    ratio_to_row: ratio(m.value(), value),
                    id: id.clone(),
                    of: t.id.clone(),
                    measurement: m,
                });
            }
            rows.push(Row {
                speedup_vs_seed: ratio(t.seed_value, value),
                speedup_vs_peer: ratio(t.peer_value, value),
                ratio_to_target: ratio(value, Some(t.target_value)),
                target: t.clone(),
                measurement,
                status,
            });
        }
        Ok(Self {
            strict,
            rows,
            related,
            baseline: None,
            comparison: Vec::new(),
        })
    }

    /// Adds the comparison with criterion baseline `name` (ratio new / base per bench).
    ///
    /// # Errors
    /// When a result file exists but is unreadable or malformed.
    pub fn compare_with(&mut self, name: &str, at: &Locations) -> Result<()> {
        let mut lines = Vec::new();
        for row in &self.rows {
            let t = &row.target;
            if t.source != Source::Criterion {
                continue;
            }
            let ids = std::iter::once(t.criterion_id()).chain(t.related.iter().map(String::as_str));
            for id in ids {
                let div = t.divide_by as f64;
                let base_path = at.estimates(id, name);
                let base = read_median(&base_path, None)
                    .map_err(|e| Error::fail(format!("bad baseline file: {e}")))?
                    .map(|v| v / div);
                let new = at.criterion(id, t.divide_by)?.value();
                lines.push(Comparison {
                    id: if id == t.criterion_id() {
                        t.id.clone()
                    } else {
                        id.to_owned()
                    },
                    unit: t.unit,
                    ratio: ratio(new, base),
                    base,
                    new,
                });
            }
        }
        self.baseline = Some(name.to_owned());
        self.comparison = lines;
        Ok(())
    }

    /// The ids of rows that missed their target: measured above it, or, with `strict`, not
    /// measured.
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|r| match r.status {
                Status::Miss => Some(format!(
                    "{} ({} > target {})",
                    r.target.id,
                    measured_label(&r.target, r.measurement.value()),
                    r.target.target
                )),
                Status::NotMeasured if self.strict => {
                    Some(format!("{} (not measured, --strict)", r.target.id))
                }
                _ => None,
            })
            .collect()
    }

    /// Ok when no target was missed, else a failure naming the rows.
    ///
    /// # Errors
    /// The missed targets, one per line.
    pub fn verdict(&self) -> Result<()> {
        let failures = self.failures();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::fail(format!(
                "{} benchmark target(s) missed:\n  {}",
                failures.len(),
                failures.join("\n  ")
            )))
        }
    }

    fn main_table(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let headers = vec![
            "bench id",
            "seed figure",
            "best peer",
            "our target",
            "measured median",
            "vs seed",
            "vs peer",
            "/ target",
            "result",
        ];
        let rows = self
            .rows
            .iter()
            .map(|r| {
                let value = r.measurement.value();
                vec![
                    r.target.id.clone(),
                    r.target.seed.clone(),
                    r.target.peer_label(),
                    r.target.target.clone(),
                    value.map_or_else(|| "-".to_owned(), |v| measured_label(&r.target, Some(v))),
                    times(r.speedup_vs_seed),
                    times(r.speedup_vs_peer),
                    fixed(r.ratio_to_target),
                    r.status.label().to_owned(),
                ]
            })
            .collect();
        (headers, rows)
    }

    fn related_table(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let headers = vec!["bench id", "beside", "measured median", "/ beside"];
        let rows = self
            .related
            .iter()
            .map(|r| {
                let target = self.rows.iter().find(|row| row.target.id == r.of);
                vec![
                    r.id.clone(),
                    r.of.clone(),
                    match (target, r.measurement.value()) {
                        (Some(row), Some(v)) => measured_label(&row.target, Some(v)),
                        _ => "not measured".to_owned(),
                    },
                    fixed(r.ratio_to_row),
                ]
            })
            .collect();
        (headers, rows)
    }

    fn comparison_table(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let headers = vec!["bench id", "baseline median", "new median", "new / base"];
        let rows = self
            .comparison
            .iter()
            .map(|c| {
                vec![
                    c.id.clone(),
                    c.base
                        .map_or_else(|| "-".to_owned(), |v| quantity(c.unit, v)),
                    c.new
                        .map_or_else(|| "-".to_owned(), |v| quantity(c.unit, v)),
                    fixed(c.ratio),
                ]
            })
            .collect();
        (headers, rows)
    }

    /// The report for the terminal: aligned columns.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let (h, rows) = self.main_table();
        out.push_str(&text_table(&h, &rows));
        if !self.related.is_empty() {
            out.push_str("\nbeside the table (no target):\n");
            let (h, rows) = self.related_table();
            out.push_str(&text_table(&h, &rows));
        }
        if let Some(name) = &self.baseline {
            let _ = writeln!(out, "\ncompared with baseline `{name}`:");
            let (h, rows) = self.comparison_table();
            out.push_str(&text_table(&h, &rows));
        }
        out.push_str(&self.summary());
        out
    }

    /// The report as Markdown (`target/bench-report.md`).
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# Benchmark report\n\n");
        out.push_str(
            "Medians measured by `cargo xtask bench`, compared with `benches/targets.toml`. \
             \"vs seed\" and \"vs peer\" are how many times faster than that figure; \
             \"/ target\" is measured / target (at most 1 passes).\n\n",
        );
        let (mut h, mut rows) = self.main_table();
        h.insert(1, "scenario");
        for (row, r) in rows.iter_mut().zip(&self.rows) {
            row.insert(1, r.target.scenario.clone());
        }
        out.push_str(&markdown_table(&h, &rows));
        if !self.related.is_empty() {
            out.push_str("\n## Beside the table (no target)\n\n");
            let (h, rows) = self.related_table();
            out.push_str(&markdown_table(&h, &rows));
        }
        if let Some(name) = &self.baseline {
            let _ = write!(out, "\n## Compared with baseline `{name}`\n\n");
            let (h, rows) = self.comparison_table();
            out.push_str(&markdown_table(&h, &rows));
        }
        out.push_str(&self.summary());
        out
    }

    /// The report as pretty JSON (`target/bench-report.json`).
    ///
    /// # Errors
    /// Only if serialization fails (it does not for this data).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).context(|| "serializing the report")
    }

    fn summary(&self) -> String {
        let count = |s: Status| self.rows.iter().filter(|r| r.status == s).count();
        let mut line = format!(
            "\n{} passed, {} missed, {} not measured{}.\n",
            count(Status::Pass),
            count(Status::Miss),
            count(Status::NotMeasured),
            if self.strict {
                " (--strict: not measured counts as missed)"
            } else {
                " (not measured rows are not failures without --strict)"
            }
        );
        let failures = self.failures();
        if !failures.is_empty() {
            let _ = writeln!(line, "missed: {}", failures.join(", "));
        }
        line
    }
}

/// A measured value with its unit, and "/node" style suffix for divided rows.
fn measured_label(t: &Target, value: Option<f64>) -> String {
    let Some(v) = value else {
        return "not measured".to_owned();
    };
    let mut s = quantity(t.unit, v);
    if let Some(per) = &t.per {
        let _ = write!(s, "/{per}");
    }
    s
}

/// A figure in its unit: `412 ns`, `1.23 us`, `2.50 ms`, `48.0 MiB`.
pub fn quantity(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Ns => {
            if v < 1e3 {
                format!("{v:.1} ns")
            } else if v < 1e6 {
                format!("{:.2} us", v / 1e3)
            } else if v < 1e9 {
                format!("{:.2} ms", v / 1e6)
            } else {
                format!("{:.2} s", v / 1e9)
            }
        }
        Unit::Bytes => {
            if v < 1024.0 * 1024.0 {
                format!("{:.1} KiB", v / 1024.0)
            } else {
                format!("{:.1} MiB", v / (1024.0 * 1024.0))
            }
        }
    }
}

/// A speed-up: `5400x`, `12.3x`, `0.85x`, or `-`.
fn times(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}x"),
        Some(v) if v >= 10.0 => format!("{v:.1}x"),
        Some(v) => format!("{v:.2}x"),
        None => "-".to_owned(),
    }
}

/// A ratio with two decimals, or `-`.
fn fixed(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// A table with aligned columns (text left-aligned, a rule under the header).
pub fn text_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(&mut headers.iter().copied());
    out.push_str(&line(
        &mut widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    ));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A GitHub-flavoured Markdown table (`|` in cells escaped).
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!(
        "| {} |\n|{}|\n",
        headers
            .iter()
            .map(|h| esc(h))
            .collect::<Vec<_>>()
            .join(" | "),
        headers.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} |",
            row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]

    use super::*;
    use crate::targets::{parse, tests::FIXTURE};

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "xtask-report-{}-{name}-{:?}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }

        fn write(&self, rel: &str, text: &str) {
            let path = self.0.join(rel);
            if let Some(parent) = path.parent() {
                assert!(std::fs::create_dir_all(parent).is_ok());
            }
            assert!(std::fs::write(path, text).is_ok());
        }

        fn estimates(&self, criterion_id: &str, baseline: &str, median_ns: f64) {
            // The shape criterion writes (fields we ignore included).
            let est = |v: f64| {
                serde_json::json!({
                    "confidence_interval": {
                        "confidence_level": 0.95, "lower_bound": v * 0.9, "upper_bound": v * 1.1
                    },
                    "point_estimate": v,
                    "standard_error": v * 0.01
                })
            };
            let doc = serde_json::json!({
                "mean": est(median_ns * 1.05),
                "median": est(median_ns),
                "median_abs_dev": est(median_ns * 0.02),
                "slope": est(median_ns * 1.01),
                "std_dev": est(median_ns * 0.03),
            });
            self.write(
                &format!("target/criterion/{criterion_id}/{baseline}/estimates.json"),
                &doc.to_string(),
            );
        }

        fn locations(&self, since: Option<SystemTime>) -> Locations {
            Locations {
                criterion_dir: self.0.join("target/criterion"),
                target_dir: self.0.join("target"),
                since,
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fixture_report(scratch: &Scratch, strict: bool) -> Option<Report> {
        let targets = parse(FIXTURE).ok()?;
        Report::gather(&targets, &scratch.locations(None), strict).ok()
    }

    #[test]
    fn measured_rows_pass_or_miss_and_absent_ones_are_not_measured() {
        let s = Scratch::new("verdicts");
        s.estimates("std_flow_3", "new", 650.0);
        s.estimates("std_flow_3_mt", "new", 1300.0);
        s.estimates("std_per_node/chain_1000", "new", 250_000.0);
        let Some(report) = fixture_report(&s, false) else {
            panic!("the report gathers");
        };
        let statuses: Vec<(&str, Status)> = report
            .rows
            .iter()
            .map(|r| (r.target.id.as_str(), r.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("std_flow_3", Status::Pass),
                ("std_per_node", Status::Miss),
                ("lr_flow_3", Status::NotMeasured),
                ("mem_lr_10k", Status::NotMeasured),
            ]
        );
        let flow = &report.rows[0];
        assert_eq!(flow.speedup_vs_seed, Some(1_000_000.0 / 650.0));
        assert_eq!(flow.ratio_to_target, Some(650.0 / 800.0));
        // The per-node median is divided by 1,000 before anything else.
        let per_node = &report.rows[1];
        assert_eq!(
            per_node.measurement,
            Measurement::Measured {
                value: 250.0,
                raw: 250_000.0
            }
        );
        assert_eq!(per_node.speedup_vs_peer, Some(1.0));
        assert_eq!(report.related.len(), 1);
        assert_eq!(report.related[0].ratio_to_row, Some(2.0));

        let failures = report.failures();
        assert_eq!(
            failures,
            ["std_per_node (250.0 ns/node > target <= 0.2 us)"]
        );
        assert!(report.verdict().is_err());
    }

    #[test]
    fn strict_turns_not_measured_into_failures() {
        let s = Scratch::new("strict");
        s.estimates("std_flow_3", "new", 700.0);
        s.estimates("std_per_node/chain_1000", "new", 150_000.0);
        let lenient = fixture_report(&s, false).map(|r| r.verdict().is_ok());
        assert_eq!(lenient, Some(true));
        let strict = fixture_report(&s, true).map(|r| r.failures());
        assert_eq!(
            strict,
            Some(vec![
                "lr_flow_3 (not measured, --strict)".to_owned(),
                "mem_lr_10k (not measured, --strict)".to_owned(),
            ])
        );
    }

    #[test]
    fn the_memory_hook_reads_bytes() {
        let s = Scratch::new("memory");
        s.write("target/bench-mem/mem_lr_10k.json", r#"{"bytes": 50331648}"#);
        let mem = fixture_report(&s, false).and_then(|r| r.rows.into_iter().nth(3));
        let mem = mem.map(|r| (r.status, r.measurement.value()));
        assert_eq!(mem, Some((Status::Pass, Some(48.0 * 1024.0 * 1024.0))));
    }

    #[test]
    fn stale_results_do_not_count_as_measured() {
        let s = Scratch::new("stale");
        s.estimates("std_flow_3", "new", 650.0);
        let later = SystemTime::now() + Duration::from_secs(3600);
        let targets = parse(FIXTURE).unwrap_or_default();
        let report = Report::gather(&targets, &s.locations(Some(later)), false).ok();
        let flow = report.map(|r| r.rows[0].clone());
        assert!(
            matches!(&flow, Some(Row { status: Status::NotMeasured, measurement: Measurement::NotMeasured { reason }, .. }) if reason.contains("stale")),
            "{flow:?}"
        );
    }

    #[test]
    fn a_malformed_estimates_file_is_an_error() {
        let s = Scratch::new("malformed");
        s.write(
            "target/criterion/std_flow_3/new/estimates.json",
            "{\"mean\": 1}",
        );
        let targets = parse(FIXTURE).unwrap_or_default();
        let err = Report::gather(&targets, &s.locations(None), false).err();
        assert!(err.is_some_and(|e| e.to_string().contains("estimates.json")));
    }

    #[test]
    fn the_comparison_divides_like_the_row() {
        let s = Scratch::new("compare");
        s.estimates("std_flow_3", "new", 600.0);
        s.estimates("std_flow_3", "main", 800.0);
        s.estimates("std_per_node/chain_1000", "new", 180_000.0);
        s.estimates("std_per_node/chain_1000", "main", 200_000.0);
        let targets = parse(FIXTURE).unwrap_or_default();
        let at = s.locations(None);
        let Ok(mut report) = Report::gather(&targets, &at, false) else {
            panic!("the report gathers");
        };
        assert!(report.compare_with("main", &at).is_ok());
        type Line = (String, Option<f64>, Option<f64>, Option<f64>);
        let lines: Vec<Line> = report
            .comparison
            .iter()
            .map(|c| (c.id.clone(), c.base, c.new, c.ratio))
            .collect();
        assert_eq!(
            lines,
            [
                (
                    "std_flow_3".to_owned(),
                    Some(800.0),
                    Some(600.0),
                    Some(0.75)
                ),
                ("std_flow_3_mt".to_owned(), None, None, None),
                (
                    "std_per_node".to_owned(),
                    Some(200.0),
                    Some(180.0),
                    Some(0.9)
                ),
                ("lr_flow_3".to_owned(), None, None, None),
            ]
        );
        let text = report.to_text();
        assert!(text.contains("compared with baseline `main`"), "{text}");
        assert!(text.contains("0.75"), "{text}");
    }

    #[test]
    fn the_text_table_is_aligned() {
        let s = Scratch::new("text");
        s.estimates("std_flow_3", "new", 650.0);
        s.estimates("std_flow_3_mt", "new", 975.0);
        s.estimates("std_per_node/chain_1000", "new", 180_000.0);
        let text = fixture_report(&s, false)
            .map(|r| r.to_text())
            .unwrap_or_default();
        let expected = "\
bench id      seed figure  best peer             our target  measured median  vs seed  vs peer  / target  result
------------  -----------  --------------------  ----------  ---------------  -------  -------  --------  ------------
std_flow_3    ~1 ms        0.9 us (graph-flow)   <= 0.8 us   650.0 ns         1538x    1.38x    0.81      PASS
std_per_node  ~0.1 ms      0.25 us (graph-flow)  <= 0.2 us   180.0 ns/node    556x     1.39x    0.90      PASS
lr_flow_3     10-50 ms     -                     <= 25 us    -                -        -        -         not measured
mem_lr_10k    (higher)     -                     <= 64 MiB   -                -        -        -         not measured

beside the table (no target):
bench id       beside      measured median  / beside
-------------  ----------  ---------------  --------
std_flow_3_mt  std_flow_3  975.0 ns         1.50

2 passed, 0 missed, 2 not measured (not measured rows are not failures without --strict).
";
        assert_eq!(text, expected);
    }

    #[test]
    fn the_markdown_has_scenarios_and_escapes_pipes() {
        let s = Scratch::new("markdown");
        s.estimates("std_flow_3", "new", 900.0);
        let md = fixture_report(&s, false)
            .map(|r| r.to_markdown())
            .unwrap_or_default();
        assert!(md.starts_with("# Benchmark report\n"), "{md}");
        assert!(md.contains(
            "| bench id | scenario | seed figure | best peer | our target | measured median | vs seed | vs peer | / target | result |\n|---|---|---|---|---|---|---|---|---|---|\n"
        ), "{md}");
        assert!(md.contains(
            "| std_flow_3 | 3-node linear flow, standard | ~1 ms | 0.9 us (graph-flow) | <= 0.8 us | 900.0 ns | 1111x | 1.00x | 1.12 | MISS |"
        ), "{md}");
        assert!(md.contains("| mem_lr_10k | RSS of an idle 10,000-node long-running graph | (higher) | - | <= 64 MiB | - | - | - | - | not measured |"), "{md}");
        assert!(
            md.contains("missed: std_flow_3 (900.0 ns > target <= 0.8 us)"),
            "{md}"
        );
        assert_eq!(
            markdown_table(&["a"], &[vec!["x | y".to_owned()]]),
            "| a |\n|---|\n| x \\| y |\n"
        );
    }

    #[test]
    fn the_json_report_is_machine_readable() {
        let s = Scratch::new("json");
        s.estimates("std_flow_3", "new", 650.0);
        let json = fixture_report(&s, true)
            .and_then(|r| r.to_json().ok())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(v["strict"], true);
        assert_eq!(v["rows"][0]["id"], "std_flow_3");
        assert_eq!(v["rows"][0]["status"], "pass");
        assert_eq!(v["rows"][0]["measurement"]["kind"], "measured");
        assert_eq!(v["rows"][0]["measurement"]["value"], 650.0);
        assert_eq!(v["rows"][0]["target_value"], 800.0);
        assert_eq!(v["rows"][3]["status"], "not_measured");
        assert_eq!(v["related"][0]["id"], "std_flow_3_mt");
    }

    #[test]
    fn quantities_pick_a_readable_unit() {
        assert_eq!(quantity(Unit::Ns, 412.34), "412.3 ns");
        assert_eq!(quantity(Unit::Ns, 1_234.0), "1.23 us");
        assert_eq!(quantity(Unit::Ns, 2_500_000.0), "2.50 ms");
        assert_eq!(quantity(Unit::Ns, 3e9), "3.00 s");
        assert_eq!(quantity(Unit::Bytes, 64.0 * 1024.0 * 1024.0), "64.0 MiB");
        assert_eq!(times(Some(1538.46)), "1538x");
        assert_eq!(times(Some(12.34)), "12.3x");
        assert_eq!(times(Some(0.85)), "0.85x");
        assert_eq!(times(None), "-");
    }
}
