//! `stress`: the long-running soak of `cargo xtask stress` (see `spark_adk_benches::stress` for the
//! graph, the faults and every check).
//!
//! `stress` runs the full soak (1,000 nodes, 1,000,000 messages); `stress --quick` the CI
//! variant (100 nodes, 20,000 messages); `--messages N` changes the number of messages (for a
//! longer soak by hand). It prints one progress line per batch, then a line
//! with the driver's and the nodes' figures and RSS, then the closing line
//! `accepted=N processed=N unprocessed=N lost=N` (the runtime's own counters summed over the
//! batches). Exit status 0 when nothing was lost, every check held and RSS grew by no more
//! than the bound; 1 otherwise; 2 for a usage error.
//!
//! Injected panics would each print a message through the default panic hook: a quiet hook
//! counts them instead (and still prints any other panic).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use spark_adk_benches::mem::{mib, peak_rss_bytes};
use spark_adk_benches::multi_thread_runtime;
use spark_adk_benches::stress::{is_injected_panic, Batch, Config, Soak, Summary};

fn install_quiet_panic_hook() -> Arc<AtomicU64> {
    let injected = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&injected);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_injected_panic(info.payload()) {
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            default(info);
        }
    }));
    injected
}

fn progress(batch: &Batch, attempted_so_far: u64, messages: u64) {
    let c = &batch.counts;
    let ended = if batch.failed {
        format!("failed: {}", batch.ended)
    } else {
        batch.ended.clone()
    };
    println!(
        "batch {:>3} ({attempted_so_far}/{messages} messages): sent {:>6} returned {} | \
         accepted={} processed={} unprocessed={} | {ended} | {:.2} s, rss {}{}",
        batch.number,
        batch.sent_ok,
        batch.returned,
        c.accepted,
        c.processed,
        c.unprocessed,
        batch.elapsed.as_secs_f64(),
        batch.rss.map_or_else(|| "?".to_owned(), mib),
        if batch.problems.is_empty() {
            String::new()
        } else {
            format!(" | PROBLEMS: {}", batch.problems.join("; "))
        }
    );
}

fn signed_mib(bytes: i128) -> String {
    format!("{:+.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The figures line, then the closing line; returns every failed check.
fn report(summary: &Summary, config: &Config, hook_panics: u64) -> Vec<String> {
    let mut problems = summary.problems.clone();
    if hook_panics != summary.nodes.panics {
        problems.push(format!(
            "the panic hook saw {hook_panics} injected panics, the nodes injected {}",
            summary.nodes.panics
        ));
    }
    let growth = summary.rss_growth();
    match growth {
        Some(g) if g > i128::from(config.rss_growth_bound) => problems.push(format!(
            "RSS grew by {} from the first batch to the last (bound {})",
            signed_mib(g),
            mib(config.rss_growth_bound)
        )),
        Some(_) => {}
        None => problems.push("no RSS figures (/proc/self/status)".to_owned()),
    }
    let n = &summary.nodes;
    println!(
        "returned={} attempted={} sent_ok={} bad_input_sent={} batches={} ended_by_fault={} \
         faults: errors={} panics={} (quiet hook counted {hook_panics}) | nodes: activations={} \
         bad_inputs_handled={} | rss: after first batch {}, after last {}, growth {} (bound \
         {}), peak {} | {:.1} s, {:.0} activations/s",
        summary.returned,
        summary.attempted,
        summary.sent_ok,
        summary.bad_sent,
        summary.batches,
        summary.failed_batches,
        n.errors,
        n.panics,
        n.calls,
        n.bad_inputs,
        summary.rss_first.map_or_else(|| "?".to_owned(), mib),
        summary.rss_last.map_or_else(|| "?".to_owned(), mib),
        growth.map_or_else(|| "?".to_owned(), signed_mib),
        mib(config.rss_growth_bound),
        peak_rss_bytes().map_or_else(|| "?".to_owned(), mib),
        summary.elapsed.as_secs_f64(),
        summary.totals.processed as f64 / summary.elapsed.as_secs_f64().max(1e-9),
    );
    println!("{}", summary.totals);
    problems
}

fn main() -> ExitCode {
    let mut config = Config::full();
    let mut messages = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => config = Config::quick(),
            "--messages" => match args.next().and_then(|n| n.replace('_', "").parse().ok()) {
                Some(n) => messages = Some(n),
                None => {
                    eprintln!("stress: `--messages` needs a number");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!(
                    "stress: unknown argument `{other}` (usage: stress [--quick] [--messages N])"
                );
                return ExitCode::from(2);
            }
        }
    }
    if let Some(n) = messages {
        config.messages = n;
    }
    let hook_panics = install_quiet_panic_hook();
    let soak = match Soak::new(config.clone()) {
        Ok(soak) => soak,
        Err(e) => {
            eprintln!("stress: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match multi_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stress: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("stress: {config}");
    println!(
        "stress: faulty nodes: {} (about {:.0} faults planned over all messages); runtime: \
         multi-thread, one worker per core",
        soak.faulty_nodes().join(", "),
        soak.planned_faults()
    );
    let mut attempted = 0;
    let summary = rt.block_on(soak.run(|b| {
        attempted += b.attempted;
        progress(b, attempted, config.messages);
    }));
    let problems = report(&summary, &config, hook_panics.load(Ordering::Relaxed));
    if problems.is_empty() {
        return ExitCode::SUCCESS;
    }
    for p in &problems {
        eprintln!("stress: FAILED: {p}");
    }
    // A hung run may have left tasks behind: do not wait for them.
    rt.shutdown_background();
    ExitCode::FAILURE
}
