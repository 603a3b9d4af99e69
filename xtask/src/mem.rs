//! The memory benches of `cargo xtask bench`: binaries of `spark-adk-benches` run as child
//! processes (release build), so that nothing else shares their address space.
//!
//! Each prints one JSON line `{"bytes": N, "peak_bytes": N, "baseline_bytes": N, ...}`:
//! `bytes` is the process's RSS once the graph is idle (the figure the table compares with its
//! target), `peak_bytes` its high-water mark (`VmHWM`), `baseline_bytes` the RSS before the
//! graph was built. The xtask writes the figures to `<target>/bench-mem/<id>.json`, where the
//! report reads `bytes` (the `source = "memory"` rows of `benches/targets.toml`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::bench::PACKAGE;
use crate::workspace::{describe, Workspace};
use crate::{Context, Error, Result};

/// The memory benches: the row id, which is also the binary's name.
pub const MEMORY_BENCHES: [&str; 1] = ["mem_lr_10k"];

/// What a memory bench prints.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct MemoryResult {
    /// RSS with the graph idle, in bytes (compared with the target).
    pub bytes: u64,
    /// Peak RSS (`VmHWM`), in bytes.
    pub peak_bytes: u64,
    /// RSS before the graph was built, in bytes.
    pub baseline_bytes: u64,
    /// Nodes of the graph, when the bench says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u64>,
}

impl MemoryResult {
    /// One line for the progress output.
    pub fn summary(&self) -> String {
        format!(
            "idle RSS {} (peak {}, before the graph {})",
            mib(self.bytes),
            mib(self.peak_bytes),
            mib(self.baseline_bytes)
        )
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The result in a memory bench's standard output: its last line that is a JSON object.
///
/// # Errors
/// When no line parses as a result.
pub fn parse_output(stdout: &str) -> Result<MemoryResult> {
    stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<MemoryResult>(l).ok())
        .ok_or_else(|| {
            Error::fail(format!(
                "no `{{\"bytes\": ..}}` line in the memory bench's output: {:?}",
                stdout.trim()
            ))
        })
}

/// Where the result of `id` goes.
pub fn result_file(target_dir: &Path, id: &str) -> PathBuf {
    target_dir.join("bench-mem").join(format!("{id}.json"))
}

/// Builds and runs every memory bench, writing each result file.
///
/// # Errors
/// A bench that fails to build, fails, or prints no result; an unwritable result file.
pub fn run(ws: &Workspace) -> Result<()> {
    for id in MEMORY_BENCHES {
        println!("==> memory bench `{id}` (release binary, child process)");
        let started = Instant::now();
        let exe = ws.build_release_bin(PACKAGE, id)?;
        let mut cmd = Command::new(&exe);
        cmd.current_dir(&ws.root);
        println!("$ {}", describe(&cmd));
        let output = cmd
            .output()
            .context(|| format!("could not start `{}`", exe.display()))?;
        if !output.status.success() {
            return Err(Error::fail(format!(
                "memory bench `{id}` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let result = parse_output(&String::from_utf8_lossy(&output.stdout))?;
        let file = result_file(&ws.target_dir, id);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(&result).context(|| "serialising the result")?;
        std::fs::write(&file, json + "\n").context(|| format!("writing {}", file.display()))?;
        println!(
            "==> memory bench `{id}`: {} -> {} ({:.1} s)",
            result.summary(),
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
    fn the_result_is_the_last_json_line() {
        let out = "warming up\n{\"bytes\": 1}\n{\"baseline_bytes\":2756608,\"bytes\":96210944,\
                   \"nodes\":10000,\"peak_bytes\":96210944}\n\n";
        let r = parse_output(out).ok();
        assert_eq!(
            r,
            Some(MemoryResult {
                bytes: 96_210_944,
                peak_bytes: 96_210_944,
                baseline_bytes: 2_756_608,
                nodes: Some(10_000),
            })
        );
        assert_eq!(
            r.map(|r| r.summary()).as_deref(),
            Some("idle RSS 91.8 MiB (peak 91.8 MiB, before the graph 2.6 MiB)")
        );
    }

    #[test]
    fn output_without_a_result_is_an_error() {
        for bad in [
            "",
            "nothing\n",
            "{\"bytes\": \"many\"}",
            "{\"peak_bytes\": 1}",
        ] {
            assert!(parse_output(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_written_file_is_what_the_report_reads() {
        let r = MemoryResult {
            bytes: 50_331_648,
            peak_bytes: 60_000_000,
            baseline_bytes: 3_000_000,
            nodes: None,
        };
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"bytes":50331648,"peak_bytes":60000000,"baseline_bytes":3000000}"#
        );
        assert_eq!(
            result_file(Path::new("target"), "mem_lr_10k"),
            Path::new("target/bench-mem/mem_lr_10k.json")
        );
    }
}
