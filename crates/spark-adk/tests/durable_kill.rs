//! A real crash: a child process (this test binary, re-run on one test with an environment
//! variable) runs a durable long-running graph on the embedded SQLite store and is killed with
//! SIGKILL at random moments, a bounded number of times; the parent then resumes the run to its
//! end and checks what the log and the outside effects say: every accepted message processed at
//! least once, each committed once, and `accepted == processed + unprocessed`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spark_adk::durable::Record;
use spark_adk::prelude::*;
use spark_adk::{Durability, DurableOptions, RunId, SqliteStore, Store, StoreExt};

const DB: &str = "SPARK_KILL_CHILD_DB";
const ROUND: &str = "SPARK_KILL_CHILD_ROUND";
const RUN: &str = "killed";
const MESSAGES: i64 = 60;
const ROUNDS: u32 = 5;

/// `work` appends its activation id to the effects file (an outside effect, at least once),
/// waits a little, and passes the message on to `done`, whose output is the sink output (the
/// committed effect).
fn graph(effects: PathBuf) -> Graph {
    let mut g = Graph::builder();
    let work = g.add(
        "work",
        node_fn(move |ctx| {
            let effects = effects.clone();
            async move {
                if ctx.is_shutdown() {
                    return Ok(json!({}));
                }
                let id = ctx.activation_id().unwrap_or(u64::MAX);
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&effects)
                    .map_err(|e| NodeError::new(e.to_string()))?;
                writeln!(file, "{id}").map_err(|e| NodeError::new(e.to_string()))?;
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(json!({ "n": ctx.inputs().content["n"].clone() }))
            }
        }),
    );
    let done = g.add(
        "done",
        node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().content.clone()) }),
    );
    g.connect(work >> done);
    g.start(work).build().unwrap()
}

fn options(db: &Path) -> DurableOptions {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db).unwrap());
    // One owner for every process: a killed process's lease does not lock its successors out.
    DurableOptions::new(store, RUN)
        .with_durability(Durability::Sync)
        .with_owner("kill-test")
}

fn effects_of(db: &Path) -> PathBuf {
    db.with_extension("effects")
}

/// The child's side: round 0 starts the run and sends the messages through the handle; later
/// rounds resume it. Without the environment variable (a normal test run) it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_entry_runs_or_resumes_the_killable_run() {
    let (Ok(db), Ok(round)) = (std::env::var(DB), std::env::var(ROUND)) else {
        return;
    };
    let db = PathBuf::from(db);
    let g = graph(effects_of(&db));
    if round == "0" {
        let handle = g
            .spawn_durable(Task::long_running(json!({ "n": 0 })), options(&db))
            .await
            .unwrap();
        for n in 1..=MESSAGES {
            handle.send("work", json!({ "n": n })).await.unwrap();
        }
        handle.shutdown();
        handle.wait().await.unwrap();
    } else {
        g.resume(options(&db)).await.unwrap();
    }
}

/// A small random number from the clock (no extra dependency).
fn random_below(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos.wrapping_mul(2_654_435_761)) % n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_with_sigkill_at_random_moments_resumes_processing_every_accepted_message() {
    let dir = std::env::temp_dir().join(format!("spark-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("runs.sqlite");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut killed = 0;
    let mut round = 0;
    let mut attempts = 0;
    while round < ROUNDS {
        attempts += 1;
        assert!(attempts < 20, "the child never got its run started");
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_process_entry_runs_or_resumes_the_killable_run",
                "--test-threads=1",
                "--quiet",
            ])
            .env(DB, &db)
            .env(ROUND, round.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(20 + random_below(400));
        let mut exited = false;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                // A child that ended on its own finished its part of the run.
                assert!(
                    status.success(),
                    "round {round}: the child failed: {status}"
                );
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if !exited {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        if round == 0
            && SqliteStore::open(&db)
                .unwrap()
                .load(&RunId::new(RUN))
                .await
                .is_err()
        {
            // Killed before the run's header was written: start over.
            std::fs::remove_dir_all(&dir).ok();
            std::fs::create_dir_all(&dir).unwrap();
            continue;
        }
        round += 1;
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    // The work left after the sends takes longer than the longest wait: a child was killed.
    assert!(killed >= 1);

    // The parent finishes the run.
    let g = graph(effects_of(&db));
    let result = g.resume(options(&db)).await.unwrap();
    let m = &result.metadata;
    assert_eq!(m.stop_reason, StopReason::Completed);
    assert_eq!(m.accepted, m.processed + m.unprocessed, "{m:?}");

    let store = SqliteStore::open(&db).unwrap();
    let loaded = store.load_run(&RunId::new(RUN)).await.unwrap();
    let image = loaded.replay().unwrap();
    assert_eq!(image.pending_count(), 0);
    assert!(image.counts_balance());
    // Every accepted message id: the input, the handle's sends, every routed message.
    let mut accepted = BTreeSet::from([0u64]);
    let mut committed: BTreeMap<u64, u32> = BTreeMap::new();
    for (_, record) in &loaded.records {
        match record {
            Record::Accepted(a) => {
                accepted.insert(a.message.id.0);
            }
            Record::Activation(a) => {
                *committed.entry(a.activation.0).or_default() += 1;
                accepted.extend(a.routed.iter().map(|r| r.id.0));
            }
            _ => {}
        }
    }
    // Each accepted message's activation committed exactly once.
    assert_eq!(committed.keys().copied().collect::<BTreeSet<_>>(), accepted);
    assert!(committed.values().all(|&n| n == 1), "{committed:?}");
    // Every message `work` was given was processed at least once (the outside effect).
    let lines: Vec<u64> = std::fs::read_to_string(effects_of(&db))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let effects: BTreeSet<u64> = lines.iter().copied().collect();
    let for_work: BTreeSet<u64> = loaded
        .records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Activation(a) if a.node == "work" => Some(a.activation.0),
            _ => None,
        })
        .collect();
    assert!(for_work.is_subset(&effects));
    // Each sink output once: one per message `done` consumed, none twice.
    let sinks: Vec<i64> = image
        .sinks()
        .iter()
        .map(|s| s.output.content["n"].as_i64().unwrap())
        .collect();
    let distinct: BTreeSet<i64> = sinks.iter().copied().collect();
    assert_eq!(distinct.len(), sinks.len(), "a sink output committed twice");
    let sent = loaded
        .records
        .iter()
        .filter(|(_, r)| matches!(r, Record::Accepted(_)))
        .count() as u64;
    assert_eq!(
        sinks.len() as u64,
        sent + 1,
        "the input and every logged send"
    );
    eprintln!(
        "killed {killed} of {ROUNDS} child processes; {sent} sends logged; {} outside effects for {} messages",
        lines.len(),
        effects.len()
    );
    std::fs::remove_dir_all(&dir).ok();
}
