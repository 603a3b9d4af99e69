//! Instruction counts of the standard-mode rows, with valgrind's callgrind (`cargo xtask bench
//! --instructions`).
//!
//! For each row with `instructions = true` in `benches/targets.toml`, the release binary
//! `icount` (benches/src/bin/icount.rs; the peer's: `peers_icount` in benches/peers) runs the
//! row's scenario `n` times on a current-thread runtime. It runs twice under
//! `valgrind --tool=callgrind`, with `n1` and `n2` iterations; the count per run is
//! `(total(n2) - total(n1)) / (n2 - n1)`, divided like the row (per node for `std_per_node`).
//! Everything done once per process (loading, building the runtime and the graph, the first
//! run's lazy initialisations) cancels out; what is left is every instruction executed in user
//! space for one run: the runtime, the node work (JSON in and out), the allocator (glibc
//! malloc/free) and tokio's scheduling of the one task. Not counted: the kernel (there are no
//! system calls in a warm standard run), and cache or branch-prediction effects (instructions,
//! not cycles). The figures are deterministic up to a few instructions (hash seeds).
//!
//! The same two runs count the calls to `malloc`, `calloc` and `realloc` (heap allocations per
//! run, shown beside the instructions).
//!
//! The counts go to `<target>/bench-icount/<id>.json`, where the report reads them. `--check`
//! compares ours with `benches/instructions-baseline.json` and fails when one is more than
//! [`THRESHOLD`] above it; `--bless` writes this run's counts as the new baseline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{count, instructions_file, Instructions};
use crate::targets::Target;
use crate::workspace::{describe, Workspace};
use crate::{bench::PACKAGE, Context, Error, Result};

/// How far above the baseline a count may be before `--check` fails (10%).
pub const THRESHOLD: f64 = 0.10;

/// The committed baseline, relative to the workspace root.
pub const BASELINE: &str = "benches/instructions-baseline.json";

/// The iterations of the two callgrind runs of a row: fewer for the long chain.
pub fn iterations(divide_by: u64) -> (u64, u64) {
    if divide_by >= 100 {
        (4, 12)
    } else {
        (200, 600)
    }
}

/// The total instruction count in a callgrind output file (its `summary:` or `totals:` line).
pub fn total_of(callgrind_out: &str) -> Option<u64> {
    callgrind_out.lines().find_map(|l| {
        let rest = l
            .strip_prefix("summary:")
            .or_else(|| l.strip_prefix("totals:"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The functions whose calls count as heap allocations.
const ALLOCATORS: [&str; 3] = ["malloc", "calloc", "realloc"];

/// How many times the program called `malloc`, `calloc` or `realloc`, from the call records
/// of a callgrind output file (`cfn=` names the callee, the next `calls=` line says how many
/// times it was called from there). Names are compressed: `(id) name` the first time, `(id)`
/// after.
pub fn allocations_of(callgrind_out: &str) -> u64 {
    let mut names: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut callee: Option<&str> = None;
    let mut total = 0;
    for line in callgrind_out.lines() {
        if let Some(rest) = line
            .strip_prefix("cfn=")
            .or_else(|| line.strip_prefix("fn="))
        {
            let is_call = line.starts_with("cfn=");
            let (id, name) = match rest.split_once(' ') {
                Some((id, name)) => {
                    names.insert(id, name);
                    (id, Some(name))
                }
                None => (rest, None),
            };
            if is_call {
                callee = name.or_else(|| names.get(id).copied());
            }
        } else if let Some(rest) = line.strip_prefix("calls=") {
            if callee.is_some_and(|c| ALLOCATORS.contains(&c)) {
                total += rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            callee = None;
        }
    }
    total
}

/// Instructions per run (divided by `divide_by`) from the totals of two runs.
pub fn per_run(total1: u64, total2: u64, n1: u64, n2: u64, divide_by: u64) -> Option<f64> {
    if n2 <= n1 || total2 < total1 || divide_by == 0 {
        return None;
    }
    Some((total2 - total1) as f64 / (n2 - n1) as f64 / divide_by as f64)
}

/// The rows whose count is more than `threshold` above the baseline, with both figures. Rows
/// missing from the baseline or from `counts` are not compared.
pub fn regressions(
    baseline: &BTreeMap<String, f64>,
    counts: &BTreeMap<String, f64>,
    threshold: f64,
) -> Vec<String> {
    counts
        .iter()
        .filter_map(|(id, now)| {
            let base = *baseline.get(id)?;
            (*now > base * (1.0 + threshold)).then(|| {
                format!(
                    "{id}: {} instructions per run, baseline {} (+{:.1}%, limit +{:.0}%)",
                    count(*now),
                    count(base),
                    (now / base - 1.0) * 100.0,
                    threshold * 100.0
                )
            })
        })
        .collect()
}

/// Runs `exe id n` under callgrind; returns the instruction total and the allocation calls.
fn callgrind_total(exe: &Path, id: &str, n: u64, out_dir: &Path, who: &str) -> Result<(u64, u64)> {
    let out = out_dir.join(format!("{id}.{who}.{n}.callgrind"));
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .arg(id)
        .arg(n.to_string());
    println!("$ {}", describe(&cmd));
    let output = cmd
        .output()
        .context(|| "could not start valgrind (is it installed? `apt-get install valgrind`)")?;
    if !output.status.success() {
        return Err(Error::fail(format!(
            "`{}` failed ({}): {}",
            describe(&cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = std::fs::read_to_string(&out).context(|| format!("reading {}", out.display()))?;
    let total =
        total_of(&text).ok_or_else(|| Error::fail(format!("no total in {}", out.display())))?;
    Ok((total, allocations_of(&text)))
}

/// Instructions and allocations per run of one row.
fn count_row(exe: &Path, t: &Target, out_dir: &Path, who: &str) -> Result<(f64, f64)> {
    let (n1, n2) = iterations(t.divide_by);
    let (i1, a1) = callgrind_total(exe, &t.id, n1, out_dir, who)?;
    let (i2, a2) = callgrind_total(exe, &t.id, n2, out_dir, who)?;
    let instructions = per_run(i1, i2, n1, n2, t.divide_by).ok_or_else(|| {
        Error::fail(format!(
            "{}: {who}'s count fell from {i1} to {i2} with more iterations",
            t.id
        ))
    })?;
    Ok((
        instructions,
        per_run(a1, a2, n1, n2, t.divide_by).unwrap_or(0.0),
    ))
}

/// Counts every `instructions = true` row (ours, and with `peers` the peer's), writes the
/// result files and returns our counts by row id.
///
/// # Errors
/// A build or a valgrind run that fails.
pub fn run(ws: &Workspace, table: &[Target], peers: bool) -> Result<BTreeMap<String, f64>> {
    let ours = ws.build_release_bin(PACKAGE, "icount")?;
    let theirs = if peers {
        Some(ws.build_peer_release_bin("peers_icount")?)
    } else {
        None
    };
    let out_dir: PathBuf = ws.target_dir.join("bench-icount").join("callgrind");
    std::fs::create_dir_all(&out_dir).context(|| format!("creating {}", out_dir.display()))?;
    let mut counts = BTreeMap::new();
    for t in table.iter().filter(|t| t.instructions) {
        let (mine, mine_allocs) = count_row(&ours, t, &out_dir, "ours")?;
        let (peer, peer_allocs) = match &theirs {
            Some(exe) => {
                let (i, a) = count_row(exe, t, &out_dir, "peer")?;
                (Some(i), Some(a))
            }
            None => (None, None),
        };
        let result = Instructions {
            ours: mine,
            peer,
            ours_allocations: Some(mine_allocs),
            peer_allocations: peer_allocs,
        };
        println!(
            "==> instructions of `{}`: {} per run, {mine_allocs:.1} allocations{}",
            t.id,
            count(mine),
            peer.map_or_else(String::new, |p| format!(
                " (peer: {}, {:.1} allocations)",
                count(p),
                peer_allocs.unwrap_or(0.0)
            ))
        );
        let file = instructions_file(&ws.target_dir, &t.id);
        let json = serde_json::to_string(&result).context(|| "serialising counts")?;
        std::fs::write(&file, json + "\n").context(|| format!("writing {}", file.display()))?;
        counts.insert(t.id.clone(), mine);
    }
    Ok(counts)
}

/// Reads the committed baseline.
///
/// # Errors
/// When the file is missing or malformed.
pub fn load_baseline(path: &Path) -> Result<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).context(|| format!("parsing {}", path.display()))
}

/// Writes `counts` (rounded) as the baseline.
///
/// # Errors
/// When the file cannot be written.
pub fn save_baseline(path: &Path, counts: &BTreeMap<String, f64>) -> Result<()> {
    let rounded: BTreeMap<&String, u64> =
        counts.iter().map(|(k, v)| (k, v.round() as u64)).collect();
    let json = serde_json::to_string_pretty(&rounded).context(|| "serialising the baseline")?;
    std::fs::write(path, json + "\n").context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_comes_from_the_summary_line() {
        let out = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 123456\n\nfn=main\n1 10\ntotals: 123456\n";
        assert_eq!(total_of(out), Some(123_456));
        assert_eq!(total_of("totals: 77\n"), Some(77));
        assert_eq!(total_of("events: Ir\n"), None);
    }

    #[test]
    fn allocations_are_the_calls_to_the_allocator() {
        let out = "\
fn=(1) main
cfn=(2) malloc
calls=5 0x1
0x1 10
cfn=(3) free
calls=5 0x2
0x2 10
fn=(4) run
cfn=(2)
calls=7 0x3
0x3 10
cfn=(5) calloc
calls=1 0x4
0x4 3
cfn=(6) malloc_consolidate
calls=9 0x5
0x5 1
";
        assert_eq!(allocations_of(out), 13);
        assert_eq!(allocations_of("summary: 5\n"), 0);
    }

    #[test]
    fn the_count_per_run_leaves_setup_out() {
        // 1,000,000 instructions of setup, 2,500 per run.
        let total = |n: u64| 1_000_000 + 2_500 * n;
        assert_eq!(per_run(total(200), total(600), 200, 600, 1), Some(2_500.0));
        // Per node of a 1,000-node chain.
        assert_eq!(per_run(total(4), total(12), 4, 12, 1_000), Some(2.5));
        assert_eq!(per_run(10, 5, 200, 600, 1), None);
        assert_eq!(per_run(5, 10, 600, 200, 1), None);
    }

    #[test]
    fn only_counts_beyond_the_threshold_are_regressions() {
        let baseline: BTreeMap<String, f64> =
            [("a".to_owned(), 1_000.0), ("b".to_owned(), 1_000.0)].into();
        let counts: BTreeMap<String, f64> = [
            ("a".to_owned(), 1_100.0),
            ("b".to_owned(), 1_101.0),
            ("new".to_owned(), 9e9),
        ]
        .into();
        assert_eq!(
            regressions(&baseline, &counts, THRESHOLD),
            ["b: 1,101 instructions per run, baseline 1,000 (+10.1%, limit +10%)"]
        );
    }

    #[test]
    fn the_committed_baseline_covers_every_counted_row() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let baseline = load_baseline(&root.join(BASELINE)).unwrap_or_default();
        let table = crate::targets::load(&root.join("benches/targets.toml")).unwrap_or_default();
        let counted: Vec<&str> = table
            .iter()
            .filter(|t| t.instructions)
            .map(|t| t.id.as_str())
            .collect();
        let based: Vec<&str> = baseline.keys().map(String::as_str).collect();
        let mut counted_sorted = counted.clone();
        counted_sorted.sort_unstable();
        assert_eq!(based, counted_sorted);
        assert!(baseline.values().all(|v| *v > 0.0));
    }
}
