//! A long-running agent killed mid-run and resumed from its log.
//!
//! The agent is a long-running graph: `listen` takes the user's messages (sent through the
//! run's handle), `think` answers each one (a stand-in for an LLM call: it waits, records
//! tokens and remembers the question in the graph state), `reply` is the sink. The run is
//! durable: its log is an SQLite file.
//!
//! The example runs itself twice. The child process starts the run and sends ten questions;
//! the parent kills it with SIGKILL while it is answering them, looks at what the log holds,
//! and resumes the run: every question the child accepted is answered, none twice in the log.
//!
//! Run with `cargo run -p spark-adk --example durable_agent`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use spark_adk::prelude::*;
use spark_adk::{Durability, DurableError, DurableOptions, RunId, SqliteStore, Store, StoreExt};

const CHILD: &str = "SPARK_DURABLE_AGENT_DB";
const RUN: &str = "agent-1";
const QUESTIONS: usize = 10;

fn agent() -> Result<Graph, spark_adk::BuildErrors> {
    let mut g = Graph::builder();
    let listen = g.add(
        "listen",
        node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().content.clone()) }),
    );
    let think = g.add(
        "think",
        node_fn(|ctx| async move {
            if ctx.is_shutdown() {
                return Ok(json!({}));
            }
            let question = ctx.inputs().content["q"].as_str().unwrap_or("").to_owned();
            tokio::time::sleep(Duration::from_millis(40)).await; // "the LLM call"
            ctx.record_tokens(question.len() as u64);
            // Keyed by the question: a re-run after a crash writes the same value.
            ctx.state().set(format!("asked:{question}"), true);
            Ok(json!({ "q": question, "a": format!("{} letters", question.len()) }))
        }),
    );
    let reply = g.add(
        "reply",
        node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().content.clone()) }),
    );
    g.connect(listen >> think >> reply);
    g.start(listen).build()
}

fn options(path: &std::path::Path) -> Result<DurableOptions, DurableError> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path)?);
    // Each send is committed before it returns; the owner is the same in both processes so the
    // killed child's lease does not lock the parent out.
    Ok(DurableOptions::new(store, RUN)
        .with_durability(Durability::Sync)
        .with_owner("durable-agent-example"))
}

/// The child: start the run, ask the questions, wait for the answers (it is killed first).
async fn child(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let handle = agent()?
        .spawn_durable(Task::long_running(json!({ "q": "hello" })), options(path)?)
        .await?;
    for i in 0..QUESTIONS {
        handle
            .send("listen", json!({ "q": format!("question number {i}") }))
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(path) = std::env::var(CHILD) {
        return child(std::path::Path::new(&path)).await;
    }
    let dir = std::env::temp_dir().join(format!("spark-durable-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("agent.sqlite");

    let mut process = Command::new(std::env::current_exe()?)
        .env(CHILD, &path)
        .stdout(Stdio::null())
        .spawn()?;
    // Let it accept every question and answer a few, then pull the plug.
    tokio::time::sleep(Duration::from_millis(250)).await;
    process.kill()?; // SIGKILL: no destructor, no flush, nothing
    process.wait()?;
    println!("child killed");

    let options = options(&path)?;
    let loaded = options.store.load_run(&RunId::new(RUN)).await?;
    let image = loaded.replay()?;
    println!(
        "the log holds {} records: {} messages accepted, {} processed, {} pending, {} answers, {} tokens",
        loaded.head,
        image.accepted(),
        image.steps(),
        image.pending_count(),
        image.sinks().len(),
        image.tokens(),
    );
    for m in image.pending() {
        println!("  pending for `{}`: {}", m.to, m.message.content);
    }

    let resumed = agent()?.resume(options).await?;
    let m = &resumed.metadata;
    println!(
        "resumed: {:?}; {} accepted = {} processed + {} unprocessed",
        m.stop_reason, m.accepted, m.processed, m.unprocessed
    );
    let answers: Vec<_> = resumed
        .sink_outputs()
        .iter()
        .filter(|s| s.message.content["a"].is_string())
        .collect();
    println!("{} answers:", answers.len());
    for s in &answers {
        println!("  {} -> {}", s.message.content["q"], s.message.content["a"]);
    }
    println!("remembered {} questions in the state", resumed.state.len());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
