//! The benchmark report: measurements read from criterion's estimates (or a child-process
//! bench's result file), judged by the same-run ratios of `benches/targets.toml`, rendered as
//! a terminal table, Markdown and JSON.
//!
//! A row's ratios divide its value by another value of the same run (a peer's median, a
//! floor's); the row passes when each is at most its `max`. "/ target" is the largest
//! ratio / max of the row (at most 1 passes). A row without ratios is judged by its absolute
//! `target_value`; one with neither is information only.

use std::collections::BTreeMap;
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
    /// Cargo's target directory (process benches write `bench-proc/<id>.json` there, the
    /// instruction counts `bench-icount/<id>.json`).
    pub target_dir: PathBuf,
    /// Results written before this instant are stale (from an earlier run) and ignored; `None`
    /// accepts any (`--report-only`).
    pub since: Option<SystemTime>,
    /// With `--rounds N` (N > 1): every round's median of each criterion id of this run; the
    /// report then uses the median of the rounds' medians.
    pub rounds: BTreeMap<String, Vec<f64>>,
    /// Rows this run skipped (a server they need did not answer), with the reason: reported
    /// as skipped, never a failure.
    pub skipped: BTreeMap<String, String>,
}

/// A measurement, or why there is none.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Measurement {
    /// A value in the row's unit, already divided by `divide_by`; `raw` is the undivided one.
    Measured {
        /// The value compared.
        value: f64,
        /// The median before `divide_by`.
        raw: f64,
    },
    /// No result.
    NotMeasured {
        /// Why: no result file, or only one from an earlier run.
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
    /// Every ratio (or the absolute target) holds.
    Pass,
    /// A ratio (or the absolute target) is exceeded.
    Miss,
    /// The row or a figure it is compared with was not measured (a miss only with
    /// `--strict`).
    NotMeasured,
    /// Nothing to judge: reported for information.
    Info,
    /// Not run: a server the row needs did not answer (never a failure).
    Skipped,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Miss => "MISS",
            Self::NotMeasured => "not measured",
            Self::Info => "info",
            Self::Skipped => "SKIPPED",
        }
    }
}

/// One same-run ratio of a row.
#[derive(Clone, Debug, Serialize)]
pub struct RatioResult {
    /// Who the row is compared with.
    pub name: String,
    /// Whether that is a peer.
    pub peer: bool,
    /// The other value (divided like the row).
    pub other: Measurement,
    /// row / other.
    pub ratio: Option<f64>,
    /// The bound, if judged.
    pub max: Option<f64>,
}

/// Instruction counts of a row (`--instructions`), per run.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Instructions {
    /// Ours, per run (divided like the row).
    pub ours: f64,
    /// The peer's, per run, when counted.
    #[serde(default)]
    pub peer: Option<f64>,
    /// Our heap allocations per run (calls to malloc, calloc, realloc).
    #[serde(default)]
    pub ours_allocations: Option<f64>,
    /// The peer's heap allocations per run.
    #[serde(default)]
    pub peer_allocations: Option<f64>,
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The table row it reports on.
    #[serde(flatten)]
    pub target: Target,
    /// What was measured.
    pub measurement: Measurement,
    /// The same-run ratios.
    pub ratio_results: Vec<RatioResult>,
    /// seed figure / measured (how many times faster than the seed).
    pub speedup_vs_seed: Option<f64>,
    /// The largest ratio / max (or measured / target_value without ratios): at most 1 passes.
    pub ratio_to_target: Option<f64>,
    /// Instruction counts, when counted in this run.
    pub instructions: Option<Instructions>,
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
    /// Every number the child-process benches of this run wrote (throughput, latencies, RSS,
    /// the peer's figures), by bench: shown under the table.
    pub process_figures: BTreeMap<String, BTreeMap<String, f64>>,
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

/// Reads a median (ns) from a criterion `estimates.json`; `Ok(None)` when there is no file.
///
/// # Errors
/// "stale" for a file older than `since`; a message when it cannot be read or parsed.
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

/// The result file of child-process bench `process`.
pub fn process_file(target_dir: &Path, process: &str) -> PathBuf {
    target_dir
        .join("bench-proc")
        .join(format!("{process}.json"))
}

/// The instruction counts of row `id`.
pub fn instructions_file(target_dir: &Path, id: &str) -> PathBuf {
    target_dir.join("bench-icount").join(format!("{id}.json"))
}

/// The directory criterion keeps a bench's results in, under its output directory: the group,
/// then the function id with the characters criterion makes file-name safe (`/` among them)
/// replaced by `_` (`durable_append/sqlite/async` is kept in `durable_append/sqlite_async`).
pub fn criterion_directory(criterion_id: &str) -> String {
    match criterion_id.split_once('/') {
        Some((group, function)) => {
            let safe = function.replace(['/', '\\', '?', '"', '*', '<', '>', ':', '|'], "_");
            format!("{group}/{safe}")
        }
        None => criterion_id.to_owned(),
    }
}

impl Locations {
    fn estimates(&self, criterion_id: &str, baseline: &str) -> PathBuf {
        self.criterion_dir
            .join(criterion_directory(criterion_id))
            .join(baseline)
            .join("estimates.json")
    }

    fn since(&self) -> Option<SystemTime> {
        self.since
            .map(|t| t.checked_sub(CLOCK_SLACK).unwrap_or(SystemTime::UNIX_EPOCH))
    }

    /// The measurement of a criterion id (ns, divided), or why there is none.
    fn criterion(&self, criterion_id: &str, divide_by: u64) -> Result<Measurement> {
        if let Some(raw) = self.rounds.get(criterion_id).and_then(|v| median(v)) {
            return Ok(Measurement::Measured {
                value: raw / divide_by as f64,
                raw,
            });
        }
        let path = self.estimates(criterion_id, "new");
        measurement(read_median(&path, self.since()), &path, divide_by)
    }

    /// The median (ns) criterion just wrote for `criterion_id` (after one round's run of it).
    ///
    /// # Errors
    /// When there is no such file or it is malformed.
    pub fn latest_median(&self, criterion_id: &str) -> Result<f64> {
        let path = self.estimates(criterion_id, "new");
        read_median(&path, None)
            .map_err(Error::fail)?
            .ok_or_else(|| Error::fail(format!("no {}", path.display())))
    }

    /// Field `field` of a process bench's result file.
    fn process(&self, process: &str, field: &str, divide_by: u64) -> Result<Measurement> {
        let path = process_file(&self.target_dir, process);
        let mut skipped = None;
        let value = read_value(&path, self.since(), |text| {
            let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let number = v.get(field).and_then(serde_json::Value::as_f64);
            if number.is_none() {
                skipped = skip_note(&v, field);
            }
            number.ok_or_else(|| format!("no number `{field}`"))
        });
        if let Some(reason) = skipped {
            return Ok(Measurement::NotMeasured { reason });
        }
        measurement(value, &path, divide_by)
    }

    /// Every number of a fresh process result file.
    fn process_figures(&self, process: &str) -> Option<BTreeMap<String, f64>> {
        let path = process_file(&self.target_dir, process);
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        if self.since().is_some_and(|since| modified < since) {
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).ok()?;
        Some(
            v.into_iter()
                .filter_map(|(k, v)| v.as_f64().map(|x| (k, x)))
                .collect(),
        )
    }

    fn instructions(&self, id: &str) -> Option<Instructions> {
        let path = instructions_file(&self.target_dir, id);
        let fresh = match (
            self.since(),
            std::fs::metadata(&path).and_then(|m| m.modified()),
        ) {
            (Some(since), Ok(modified)) => modified >= since,
            (None, Ok(_)) => true,
            (_, Err(_)) => false,
        };
        if !fresh {
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Why a process bench left `field` out, when it says so: a string field `<prefix>_skipped`
/// whose prefix starts `field` (`postgres_skipped` for `postgres_commit_p50_ns`: the bench's
/// server did not answer). A field missing without such a note is a malformed result.
fn skip_note(result: &serde_json::Value, field: &str) -> Option<String> {
    let object = result.as_object()?;
    object.iter().find_map(|(key, note)| {
        let prefix = key.strip_suffix("_skipped")?;
        let note = note.as_str()?;
        field
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('_'))
            .then(|| format!("the bench skipped it: {note}"))
    })
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

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

/// The verdict of a row and its "/ target": the largest ratio / max over the judged ratios
/// (without any, measured / `target_value`; without that either, information).
pub fn judge(
    value: Option<f64>,
    ratios: &[RatioResult],
    target_value: Option<f64>,
) -> (Status, Option<f64>) {
    let judged: Vec<(Option<f64>, f64)> = ratios
        .iter()
        .filter_map(|r| r.max.map(|max| (r.ratio, max)))
        .collect();
    let Some(value) = value else {
        let status = if judged.is_empty() && target_value.is_none() {
            Status::Info
        } else {
            Status::NotMeasured
        };
        return (status, None);
    };
    if judged.is_empty() {
        return match target_value {
            Some(t) => {
                let r = value / t;
                (if r <= 1.0 { Status::Pass } else { Status::Miss }, Some(r))
            }
            None => (Status::Info, None),
        };
    }
    let worst = judged
        .iter()
        .filter_map(|(r, max)| r.map(|r| r / max))
        .fold(None, |acc: Option<f64>, x| {
            Some(acc.map_or(x, |a| a.max(x)))
        });
    let any_missing = judged.iter().any(|(r, _)| r.is_none());
    let status = match worst {
        Some(w) if w > 1.0 => Status::Miss,
        _ if any_missing => Status::NotMeasured,
        Some(_) => Status::Pass,
        None => Status::NotMeasured,
    };
    (status, worst)
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
            if let Some(reason) = at.skipped.get(&t.id) {
                rows.push(Row {
                    target: t.clone(),
                    measurement: Measurement::NotMeasured {
                        reason: reason.clone(),
                    },
                    ratio_results: Vec::new(),
                    speedup_vs_seed: None,
                    ratio_to_target: None,
                    instructions: None,
                    status: Status::Skipped,
                });
                continue;
            }
            let measurement = match t.source {
                Source::Criterion => at.criterion(t.criterion_id(), t.divide_by)?,
                Source::Process => at.process(t.process(), t.field(), t.divide_by)?,
            };
            let value = measurement.value();
            let mut ratio_results = Vec::with_capacity(t.ratios.len());
            for r in &t.ratios {
                let other = match (&r.criterion_id, &r.field) {
                    (Some(id), _) => at.criterion(id, t.divide_by)?,
                    (None, Some(field)) => at.process(t.process(), field, t.divide_by)?,
                    (None, None) => Measurement::NotMeasured {
                        reason: "nothing to compare with".to_owned(),
                    },
                };
                let numerator = match &r.of {
                    Some(id) => at.criterion(id, t.divide_by)?.value(),
                    None => value,
                };
                ratio_results.push(RatioResult {
                    name: r.name.clone(),
                    peer: r.peer,
                    ratio: ratio(numerator, other.value()),
                    other,
                    max: r.max,
                });
            }
            let (status, ratio_to_target) = judge(value, &ratio_results, t.target_value);
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
                ratio_to_target,
                instructions: if t.instructions {
                    at.instructions(&t.id)
                } else {
                    None
                },
                target: t.clone(),
                measurement,
                ratio_results,
                status,
            });
        }
        let mut process_figures = BTreeMap::new();
        for t in targets.iter().filter(|t| t.source == Source::Process) {
            if let Some(figures) = at.process_figures(t.process()) {
                process_figures.insert(t.process().to_owned(), figures);
            }
        }
        Ok(Self {
            strict,
            rows,
            related,
            baseline: None,
            comparison: Vec::new(),
            process_figures,
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

    /// The ids of rows that missed their target (with `strict`, also those not measured),
    /// each with the ratio that missed.
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|r| match r.status {
                Status::Miss => Some(format!("{} ({})", r.target.id, miss_reason(r))),
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
            "measured median",
            "peer median",
            "vs peer",
            "other ratio",
            "our target",
            "/ target",
            "result",
            "instructions, allocations per run (ours / peer)",
            "vs seed",
            "absolute",
        ];
        let rows = self
            .rows
            .iter()
            .map(|r| {
                let t = &r.target;
                let value = r.measurement.value();
                let peer_at = r.ratio_results.iter().position(|x| x.peer);
                let peer = peer_at.and_then(|i| r.ratio_results.get(i));
                let others: Vec<String> = r
                    .ratio_results
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != peer_at)
                    .map(|(_, x)| format!("{} vs {}", times(x.ratio), x.name))
                    .collect();
                vec![
                    t.id.clone(),
                    value.map_or_else(|| "-".to_owned(), |v| measured_label(t, Some(v))),
                    peer.map_or_else(
                        || "-".to_owned(),
                        |p| match p.other.value() {
                            Some(v) => format!("{} ({})", measured_label(t, Some(v)), p.name),
                            None => format!("- ({})", p.name),
                        },
                    ),
                    times(peer.and_then(|p| p.ratio)),
                    if others.is_empty() {
                        "-".to_owned()
                    } else {
                        others.join("; ")
                    },
                    t.target.clone(),
                    fixed(r.ratio_to_target),
                    match (&r.status, &r.measurement) {
                        (Status::Skipped, Measurement::NotMeasured { reason }) => {
                            format!("SKIPPED: {reason}")
                        }
                        (status, _) => status.label().to_owned(),
                    },
                    r.instructions.as_ref().map_or_else(
                        || "-".to_owned(),
                        |i| {
                            let ours = with_allocations(i.ours, i.ours_allocations);
                            match i.peer {
                                Some(p) => format!(
                                    "{ours} / {} = {}",
                                    with_allocations(p, i.peer_allocations),
                                    times(ratio(Some(i.ours), Some(p)))
                                ),
                                None => ours,
                            }
                        },
                    ),
                    times(r.speedup_vs_seed),
                    match (t.target_value, t.ratios.iter().any(|x| x.max.is_some())) {
                        (Some(v), true) => {
                            let ok = value.map(|m| if m <= v { " (met)" } else { " (not met)" });
                            format!("<= {}{}", quantity(t.unit, v), ok.unwrap_or(""))
                        }
                        _ => "-".to_owned(),
                    },
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

    fn process_table(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let headers = vec!["child-process bench", "figure", "value"];
        let rows = self
            .process_figures
            .iter()
            .flat_map(|(bench, figures)| {
                figures
                    .iter()
                    .map(move |(name, v)| vec![bench.clone(), name.clone(), figure(name, *v)])
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
        if !self.process_figures.is_empty() {
            out.push_str("\nfigures of the child-process benches:\n");
            let (h, rows) = self.process_table();
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
            "Medians measured by `cargo xtask bench`, judged by `benches/targets.toml`. \
             \"vs peer\" is our median / the peer's median of the same run (below 1: faster); \
             \"/ target\" is the largest same-run ratio / its bound (at most 1 passes); \
             \"absolute\" is DESIGN's earlier absolute target, information only.\n\n",
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
        if !self.process_figures.is_empty() {
            out.push_str("\n## Figures of the child-process benches\n\n");
            let (h, rows) = self.process_table();
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
            "\n{} passed, {} missed, {} not measured, {} skipped{}.\n",
            count(Status::Pass),
            count(Status::Miss),
            count(Status::NotMeasured),
            count(Status::Skipped),
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

/// What missed on a row: each exceeded ratio, or the absolute target.
fn miss_reason(r: &Row) -> String {
    let over: Vec<String> = r
        .ratio_results
        .iter()
        .filter_map(|x| match (x.ratio, x.max) {
            (Some(ratio), Some(max)) if ratio > max => Some(format!(
                "{} vs {} > {}",
                times(Some(ratio)),
                x.name,
                times(Some(max))
            )),
            _ => None,
        })
        .collect();
    if over.is_empty() {
        format!(
            "{} > target {}",
            measured_label(&r.target, r.measurement.value()),
            r.target.target
        )
    } else {
        over.join("; ")
    }
}

/// A child-process figure, by the suffix of its name: `_ns` a duration, `_bytes` a size,
/// anything else the number as written (counts, ratios, rates).
fn figure(name: &str, v: f64) -> String {
    if name.ends_with("_ns") {
        quantity(Unit::Ns, v)
    } else if name.ends_with("_bytes") || name == "bytes" || name == "bytes_per_node" {
        quantity(Unit::Bytes, v)
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        count(v)
    } else {
        format!("{v:.2}")
    }
}

/// Instructions with the allocations beside them: `3,750 (6 alloc)`.
fn with_allocations(instructions: f64, allocations: Option<f64>) -> String {
    match allocations {
        Some(a) if a.fract().abs() < 0.05 => format!("{} ({a:.0} alloc)", count(instructions)),
        Some(a) => format!("{} ({a:.1} alloc)", count(instructions)),
        None => count(instructions),
    }
}

/// An instruction count: `12,345`.
pub fn count(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

        fn process(&self, id: &str, doc: serde_json::Value) {
            self.write(&format!("target/bench-proc/{id}.json"), &doc.to_string());
        }

        /// The results of a run where every row has its figures.
        fn full_run(&self) {
            self.estimates("std_flow_3", "new", 400.0);
            self.estimates("graph_flow/std_flow_3", "new", 1_000.0);
            self.estimates("std_flow_3_mt", "new", 440.0);
            self.estimates("lr_per_message/pipeline_3", "new", 60_000_000.0);
            self.estimates("dagrs/pipeline_3", "new", 100_000_000.0);
            self.estimates("floor/pipeline_3", "new", 70_000_000.0);
            self.estimates("ct/pipeline_3", "new", 80_000_000.0);
            self.estimates("dagrs_ct/pipeline_3", "new", 160_000_000.0);
            self.process(
                "mem_lr_10k",
                serde_json::json!({"bytes": 1, "bytes_per_node": 3_000}),
            );
            self.process(
                "server_10k",
                serde_json::json!({"wall_ns": 70e6, "single_wall_ns": 50e6,
                                   "lr_wall_ns": 40e6, "lr_single_ns": 32e6}),
            );
            self.write(
                "target/bench-icount/std_flow_3.json",
                r#"{"ours": 4321.4, "peer": 12345.0, "ours_allocations": 6.0, "peer_allocations": 11.5}"#,
            );
        }

        fn locations(&self, since: Option<SystemTime>) -> Locations {
            Locations {
                criterion_dir: self.0.join("target/criterion"),
                target_dir: self.0.join("target"),
                since,
                rounds: BTreeMap::new(),
                skipped: BTreeMap::new(),
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

    fn statuses(report: &Report) -> Vec<(&str, Status)> {
        report
            .rows
            .iter()
            .map(|r| (r.target.id.as_str(), r.status))
            .collect()
    }

    #[test]
    fn a_function_id_with_a_slash_is_read_from_criterions_safe_directory() {
        assert_eq!(
            criterion_directory("durable_append/sqlite/async"),
            "durable_append/sqlite_async"
        );
        assert_eq!(
            criterion_directory("std_per_node/chain_1000"),
            "std_per_node/chain_1000"
        );
        assert_eq!(criterion_directory("std_flow_3"), "std_flow_3");
    }

    #[test]
    fn a_skipped_row_is_reported_with_its_reason_and_never_fails() {
        let s = Scratch::new("skipped");
        s.full_run();
        let text = format!("{FIXTURE}{}", crate::targets::tests::NATS_ROW);
        let targets = parse(&text).unwrap_or_default();
        let mut at = s.locations(None);
        at.skipped.insert(
            "nats_hop".to_owned(),
            "the server at 127.0.0.1:4222 does not answer (connection refused)".to_owned(),
        );
        let Ok(report) = Report::gather(&targets, &at, true) else {
            panic!("the report gathers");
        };
        assert_eq!(
            statuses(&report).last(),
            Some(&("nats_hop", Status::Skipped))
        );
        assert!(report.failures().iter().all(|f| !f.contains("nats_hop")));
        assert!(report.related.iter().all(|r| r.of != "nats_hop"));
        let out = report.to_text();
        assert!(
            out.contains("SKIPPED: the server at 127.0.0.1:4222 does not answer"),
            "{out}"
        );
        assert!(out.contains(", 1 skipped"), "{out}");
        at.skipped.clear();
        let Ok(unskipped) = Report::gather(&targets, &at, true) else {
            panic!("the report gathers");
        };
        assert_eq!(
            statuses(&unskipped).last(),
            Some(&("nats_hop", Status::NotMeasured))
        );
    }

    #[test]
    fn rows_are_judged_by_their_same_run_ratios() {
        let s = Scratch::new("verdicts");
        s.full_run();
        let Some(report) = fixture_report(&s, false) else {
            panic!("the report gathers");
        };
        assert_eq!(
            statuses(&report),
            [
                ("std_flow_3", Status::Pass),
                ("lr_per_message", Status::Miss),
                ("mem_lr_10k", Status::Miss),
                ("server_10k", Status::Miss),
                ("server_lr_1k", Status::Info),
            ]
        );
        let flow = &report.rows[0];
        assert_eq!(flow.ratio_results[0].ratio, Some(0.4));
        assert_eq!(flow.ratio_to_target, Some(0.8));
        assert_eq!(flow.speedup_vs_seed, Some(2_500.0));
        // Every median of the per-message row is divided by 100,000 before comparing.
        let per_message = &report.rows[1];
        assert_eq!(per_message.measurement.value(), Some(600.0));
        let ratios: Vec<(&str, Option<f64>)> = per_message
            .ratio_results
            .iter()
            .map(|r| (r.name.as_str(), r.other.value()))
            .collect();
        assert_eq!(
            ratios,
            [
                ("bare tokio", Some(700.0)),
                ("dagrs", Some(1_000.0)),
                ("dagrs, both ct", Some(1_600.0))
            ]
        );
        // A ratio with `of` divides that bench (800 ns/message), not the row, and without a
        // bound it is reported but does not judge.
        assert_eq!(per_message.ratio_results[2].ratio, Some(0.5));
        // 0.6 against dagrs' 0.5 is the worst: 1.2.
        assert!((per_message.ratio_to_target.unwrap_or(0.0) - 1.2).abs() < 1e-9);
        assert_eq!(report.rows[2].ratio_to_target, Some(3_000.0 / 2_048.0));
        assert_eq!(report.rows[3].ratio_to_target, Some(1.4 / 1.25));
        assert_eq!(report.rows[4].ratio_results[0].ratio, Some(1.25));
        assert_eq!(report.related.len(), 1);
        assert_eq!(report.related[0].ratio_to_row, Some(1.1));
        assert_eq!(
            report.failures(),
            [
                "lr_per_message (0.60x vs dagrs > 0.50x)",
                "mem_lr_10k (2.9 KiB > target <= 2 KiB per idle node)",
                "server_10k (1.40x vs one run alone > 1.25x)",
            ]
        );
        assert!(report.verdict().is_err());
    }

    #[test]
    fn a_row_whose_peer_was_not_measured_is_not_measured() {
        let s = Scratch::new("no-peer");
        s.estimates("std_flow_3", "new", 400.0);
        let report = fixture_report(&s, false);
        let flow = report
            .as_ref()
            .map(|r| (r.rows[0].status, r.rows[0].ratio_to_target));
        assert_eq!(flow, Some((Status::NotMeasured, None)));
        assert_eq!(report.map(|r| r.verdict().is_ok()), Some(true));
        let strict = fixture_report(&s, true).map(|r| r.failures());
        assert_eq!(
            strict.as_ref().and_then(|f| f.first()).map(String::as_str),
            Some("std_flow_3 (not measured, --strict)")
        );
    }

    #[test]
    fn a_ratio_over_its_bound_misses_even_when_another_is_not_measured() {
        let over = RatioResult {
            name: "dagrs".to_owned(),
            peer: true,
            other: Measurement::Measured {
                value: 1.0,
                raw: 1.0,
            },
            ratio: Some(0.9),
            max: Some(0.5),
        };
        let missing = RatioResult {
            name: "floor".to_owned(),
            peer: false,
            other: Measurement::NotMeasured {
                reason: "none".to_owned(),
            },
            ratio: None,
            max: Some(1.0),
        };
        let (status, worst) = judge(Some(0.9), &[over.clone(), missing.clone()], None);
        assert_eq!(status, Status::Miss);
        assert!((worst.unwrap_or(0.0) - 1.8).abs() < 1e-9);
        let within = RatioResult {
            ratio: Some(0.4),
            ..over
        };
        assert_eq!(
            judge(Some(0.4), &[within.clone(), missing], None).0,
            Status::NotMeasured
        );
        assert_eq!(
            judge(Some(0.4), std::slice::from_ref(&within), None),
            (Status::Pass, Some(0.8))
        );
        // Without ratios the absolute target decides; with neither, information.
        assert_eq!(judge(Some(3.0), &[], Some(2.0)), (Status::Miss, Some(1.5)));
        assert_eq!(judge(Some(3.0), &[], None), (Status::Info, None));
        assert_eq!(judge(None, &[], None), (Status::Info, None));
        assert_eq!(judge(None, &[within], None), (Status::NotMeasured, None));
    }

    #[test]
    fn with_rounds_each_figure_is_the_median_of_the_rounds() {
        let s = Scratch::new("rounds");
        s.full_run();
        let targets = parse(FIXTURE).unwrap_or_default();
        let mut at = s.locations(None);
        at.rounds
            .insert("std_flow_3".to_owned(), vec![500.0, 380.0, 420.0]);
        at.rounds
            .insert("graph_flow/std_flow_3".to_owned(), vec![900.0, 1_100.0]);
        let report = Report::gather(&targets, &at, false).ok();
        let flow = report.map(|r| r.rows[0].clone());
        assert_eq!(
            flow.as_ref()
                .map(|r| (r.measurement.value(), r.ratio_results[0].other.value())),
            Some((Some(420.0), Some(1_000.0)))
        );
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 4.0]), Some(4.0));
    }

    #[test]
    fn stale_results_do_not_count_as_measured() {
        let s = Scratch::new("stale");
        s.full_run();
        let later = SystemTime::now() + Duration::from_secs(3600);
        let targets = parse(FIXTURE).unwrap_or_default();
        let report = Report::gather(&targets, &s.locations(Some(later)), false).ok();
        let flow = report.as_ref().map(|r| r.rows[0].clone());
        assert!(
            matches!(&flow, Some(Row { status: Status::NotMeasured, measurement: Measurement::NotMeasured { reason }, instructions: None, .. }) if reason.contains("stale")),
            "{flow:?}"
        );
        let mem = report.map(|r| r.rows[2].status);
        assert_eq!(mem, Some(Status::NotMeasured));
    }

    #[test]
    fn a_malformed_result_file_is_an_error() {
        let s = Scratch::new("malformed");
        s.write(
            "target/criterion/std_flow_3/new/estimates.json",
            "{\"mean\": 1}",
        );
        let targets = parse(FIXTURE).unwrap_or_default();
        let err = Report::gather(&targets, &s.locations(None), false).err();
        assert!(err.is_some_and(|e| e.to_string().contains("estimates.json")));
        let s = Scratch::new("malformed-process");
        s.process("mem_lr_10k", serde_json::json!({"bytes": 1}));
        let err = Report::gather(&targets, &s.locations(None), false).err();
        assert!(err.is_some_and(|e| e.to_string().contains("no number `bytes_per_node`")));
        // A note about another figure does not excuse the missing one.
        s.process(
            "mem_lr_10k",
            serde_json::json!({"bytes": 1, "bytes_per_idle_skipped": "no server"}),
        );
        assert!(Report::gather(&targets, &s.locations(None), false).is_err());
    }

    #[test]
    fn a_figure_the_process_bench_skipped_with_a_note_is_not_measured() {
        let s = Scratch::new("skipped-process");
        s.process(
            "mem_lr_10k",
            serde_json::json!({"bytes": 1, "bytes_skipped": "the server did not answer"}),
        );
        let targets = parse(FIXTURE).unwrap_or_default();
        let report = Report::gather(&targets, &s.locations(None), false);
        let row = report.as_ref().ok().map(|r| &r.rows[2]);
        assert_eq!(row.map(|r| r.status), Some(Status::NotMeasured));
        assert!(
            row.is_some_and(
                |r| matches!(&r.measurement, Measurement::NotMeasured { reason }
                if reason.contains("the server did not answer"))
            ),
            "{:?}",
            row.map(|r| &r.measurement)
        );
    }

    #[test]
    fn the_comparison_divides_like_the_row() {
        let s = Scratch::new("compare");
        s.estimates("std_flow_3", "new", 600.0);
        s.estimates("std_flow_3", "main", 800.0);
        s.estimates("lr_per_message/pipeline_3", "new", 45_000_000.0);
        s.estimates("lr_per_message/pipeline_3", "main", 50_000_000.0);
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
                    "lr_per_message".to_owned(),
                    Some(500.0),
                    Some(450.0),
                    Some(0.9)
                ),
            ]
        );
        let text = report.to_text();
        assert!(text.contains("compared with baseline `main`"), "{text}");
        assert!(text.contains("0.75"), "{text}");
    }

    #[test]
    fn the_text_table_shows_the_peer_median_beside_the_ratio() {
        let s = Scratch::new("text");
        s.full_run();
        let text = fixture_report(&s, false)
            .map(|r| r.to_text())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0]
            .split("  ")
            .filter(|c| !c.is_empty())
            .map(str::trim)
            .collect();
        assert_eq!(
            header[..4],
            ["bench id", "measured median", "peer median", "vs peer"],
            "{text}"
        );
        let flow = lines
            .iter()
            .find(|l| l.starts_with("std_flow_3 "))
            .copied()
            .unwrap_or("");
        for cell in [
            "400.0 ns",
            "1.00 us (graph-flow)",
            "0.40x",
            "<= 0.5x graph-flow",
            "0.80",
            "PASS",
            "4,321 (6 alloc) / 12,345 (11.5 alloc) = 0.35x",
            "2500x",
            "<= 800.0 ns (met)",
        ] {
            assert!(flow.contains(cell), "{cell:?} in {flow:?}");
        }
        let per_message = lines
            .iter()
            .find(|l| l.starts_with("lr_per_message "))
            .copied()
            .unwrap_or("");
        for cell in [
            "600.0 ns/message",
            "1.00 us/message (dagrs)",
            "0.60x",
            "0.86x vs bare tokio; 0.50x vs dagrs, both ct",
            "1.20",
            "MISS",
        ] {
            assert!(per_message.contains(cell), "{cell:?} in {per_message:?}");
        }
        assert!(
            text.contains("\n1 passed, 3 missed, 0 not measured"),
            "{text}"
        );
    }

    #[test]
    fn the_markdown_has_scenarios_and_escapes_pipes() {
        let s = Scratch::new("markdown");
        s.full_run();
        let md = fixture_report(&s, false)
            .map(|r| r.to_markdown())
            .unwrap_or_default();
        assert!(md.starts_with("# Benchmark report\n"), "{md}");
        assert!(md.contains(
            "| bench id | scenario | measured median | peer median | vs peer | other ratio | our target | / target | result | instructions, allocations per run (ours / peer) | vs seed | absolute |\n"
        ), "{md}");
        assert!(md.contains(
            "| std_flow_3 | 3-node linear flow, standard | 400.0 ns | 1.00 us (graph-flow) | 0.40x | - | <= 0.5x graph-flow | 0.80 | PASS | 4,321 (6 alloc) / 12,345 (11.5 alloc) = 0.35x | 2500x | <= 800.0 ns (met) |"
        ), "{md}");
        assert!(md.contains("| server_lr_1k | 1,000 long-running runs | 40.00 ms | - | - | 1.25x vs one run alone | - | - | info |"), "{md}");
        assert_eq!(
            markdown_table(&["a"], &[vec!["x | y".to_owned()]]),
            "| a |\n|---|\n| x \\| y |\n"
        );
    }

    #[test]
    fn the_json_report_is_machine_readable() {
        let s = Scratch::new("json");
        s.full_run();
        let json = fixture_report(&s, true)
            .and_then(|r| r.to_json().ok())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(v["strict"], true);
        assert_eq!(v["rows"][0]["id"], "std_flow_3");
        assert_eq!(v["rows"][0]["status"], "pass");
        assert_eq!(v["rows"][0]["measurement"]["value"], 400.0);
        assert_eq!(v["rows"][0]["ratio_results"][0]["name"], "graph-flow");
        assert_eq!(v["rows"][0]["ratio_results"][0]["other"]["value"], 1000.0);
        assert_eq!(v["rows"][0]["instructions"]["peer"], 12345.0);
        assert_eq!(v["rows"][4]["status"], "info");
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
        assert_eq!(count(1_234_567.4), "1,234,567");
        assert_eq!(count(999.0), "999");
    }
}
