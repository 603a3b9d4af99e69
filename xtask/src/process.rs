//! The child-process benches of `cargo xtask bench`: release binaries run as child processes,
//! so that nothing else shares their address space or their runtime.
//!
//! - `mem_lr_10k` (benches/src/bin): the RSS of an idle 10,000-node long-running graph.
//! - `server_10k` (benches/src/bin): 10,000 concurrent standard runs, and 1,000 spawned
//!   long-running runs, of graphs whose nodes await 10 ms; then, unless `--no-peers`,
//!   `server_10k_graph_flow` (benches/peers) runs the same standard scenario with graph-flow,
//!   and its figures join the result as `graph_flow_<name>`.
//! - `durable_figures` (benches/src/bin): commit latency p50/p99 per durable store (PostgreSQL
//!   only when it answers) and bytes per step of a durable run.
//!
//! Each binary prints one JSON object on its last such line; the xtask writes it to
//! `<target>/bench-proc/<id>.json`, where the report reads the rows' fields (the
//! `source = "process"` rows of `benches/targets.toml`).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::bench::PACKAGE;
use crate::report::process_file;
use crate::workspace::{describe, Workspace};
use crate::{Context, Error, Result};

/// The child-process benches of `spark-adk-benches`: the binary (and result file) names.
pub const PROCESS_BENCHES: [&str; 3] = ["mem_lr_10k", "server_10k", "durable_figures"];

/// The peer binary of `server_10k` in benches/peers.
pub const SERVER_PEER: &str = "server_10k_graph_flow";

/// The result in a bench's standard output: its last line that is a JSON object.
///
/// # Errors
/// When no line parses as a JSON object.
pub fn parse_output(stdout: &str) -> Result<Map<String, Value>> {
    stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<Map<String, Value>>(l).ok())
        .ok_or_else(|| {
            Error::fail(format!(
                "no JSON object line in the bench's output: {:?}",
                stdout.trim()
            ))
        })
}

/// Adds a peer's figures to `ours` as `<prefix>_<name>`.
pub fn merge_peer(ours: &mut Map<String, Value>, prefix: &str, peer: Map<String, Value>) {
    for (k, v) in peer {
        ours.insert(format!("{prefix}_{k}"), v);
    }
}

/// One line for the progress output: the numeric fields, as written.
pub fn summary(result: &Map<String, Value>) -> String {
    result
        .iter()
        .filter(|(_, v)| v.is_number())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_exe(exe: &Path, root: &Path, what: &str) -> Result<Map<String, Value>> {
    let mut cmd = Command::new(exe);
    cmd.current_dir(root);
    println!("$ {}", describe(&cmd));
    let output = cmd
        .output()
        .context(|| format!("could not start `{}`", exe.display()))?;
    if !output.status.success() {
        return Err(Error::fail(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    parse_output(&String::from_utf8_lossy(&output.stdout))
}

/// Builds and runs every child-process bench (with `peers`, also the peer of `server_10k`),
/// writing each result file.
///
/// # Errors
/// A bench that fails to build, fails, or prints no result; an unwritable result file.
pub fn run(ws: &Workspace, peers: bool) -> Result<()> {
    for id in PROCESS_BENCHES {
        println!("==> process bench `{id}` (release binary, child process)");
        let started = Instant::now();
        let exe = ws.build_release_bin(PACKAGE, id)?;
        let mut result = run_exe(&exe, &ws.root, &format!("process bench `{id}`"))?;
        if id == "server_10k" && peers {
            let peer = ws.build_peer_release_bin(SERVER_PEER)?;
            let theirs = run_exe(&peer, &ws.root, &format!("peer bench `{SERVER_PEER}`"))?;
            merge_peer(&mut result, "graph_flow", theirs);
        }
        let file = process_file(&ws.target_dir, id);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(&result).context(|| "serialising the result")?;
        std::fs::write(&file, json + "\n").context(|| format!("writing {}", file.display()))?;
        println!(
            "==> process bench `{id}`: {} -> {} ({:.1} s)",
            summary(&result),
            file.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_is_the_last_json_object_line() {
        let out =
            "warming up\n{\"bytes\": 1}\n{\"baseline_bytes\":2756608,\"bytes\":96210944}\n[1]\n\n";
        let r = parse_output(out).ok();
        assert_eq!(
            r.as_ref()
                .and_then(|m| m.get("bytes"))
                .and_then(Value::as_u64),
            Some(96_210_944)
        );
        assert_eq!(
            r.map(|m| summary(&m)).as_deref(),
            Some("baseline_bytes=2756608 bytes=96210944")
        );
    }

    #[test]
    fn output_without_a_json_object_is_an_error() {
        for bad in ["", "nothing\n", "[1, 2]", "{not json"] {
            assert!(parse_output(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_peers_figures_join_ours_under_a_prefix() {
        let mut ours =
            parse_output("{\"wall_ns\": 70, \"single_wall_ns\": 55}").unwrap_or_default();
        let theirs = parse_output("{\"wall_ns\": 110, \"runs_per_s\": 9.5}").unwrap_or_default();
        merge_peer(&mut ours, "graph_flow", theirs);
        let keys: Vec<&str> = ours.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "graph_flow_runs_per_s",
                "graph_flow_wall_ns",
                "single_wall_ns",
                "wall_ns"
            ]
        );
        assert_eq!(ours["graph_flow_wall_ns"], 110);
    }
}
