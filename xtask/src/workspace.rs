//! Where things are (workspace root, target directory, criterion's output) and how to run
//! cargo from the xtask.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Context, Error, Result};

/// The workspace the xtask works on.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The workspace root (where the root `Cargo.toml` is).
    pub root: PathBuf,
    /// Cargo's target directory (honours `CARGO_TARGET_DIR`).
    pub target_dir: PathBuf,
    /// The cargo executable that runs the xtask (`$CARGO`), or `cargo`.
    pub cargo: PathBuf,
}

impl Workspace {
    /// The workspace of this xtask crate, with its target directory from `cargo metadata`.
    ///
    /// # Errors
    /// When `cargo metadata` fails or prints something unexpected.
    pub fn locate() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .ok_or_else(|| Error::fail("the xtask crate has no parent directory"))?
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
        let output = Command::new(&cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(&root)
            .output()
            .context(|| format!("running `{} metadata`", cargo.display()))?;
        if !output.status.success() {
            return Err(Error::fail(format!(
                "`cargo metadata` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).context(|| "parsing `cargo metadata`")?;
        let target_dir = metadata
            .get("target_directory")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| root.join("target"), PathBuf::from);
        Ok(Self {
            root,
            target_dir,
            cargo,
        })
    }

    /// Where criterion writes its results: `$CRITERION_HOME`, else `<target>/criterion` (the
    /// same rule criterion follows).
    pub fn criterion_dir(&self) -> PathBuf {
        std::env::var_os("CRITERION_HOME")
            .map_or_else(|| self.target_dir.join("criterion"), PathBuf::from)
    }

    /// The benchmark table.
    pub fn targets_file(&self) -> PathBuf {
        self.root.join("benches").join("targets.toml")
    }

    /// A `cargo` command run from the workspace root.
    pub fn cargo<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.cargo);
        cmd.args(args).current_dir(&self.root);
        cmd
    }

    /// The names of the bench targets of `package` (from `cargo metadata`), in manifest order.
    ///
    /// # Errors
    /// When `cargo metadata` fails or the package does not exist.
    pub fn bench_targets(&self, package: &str) -> Result<Vec<String>> {
        let output = self
            .cargo(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .context(|| "running `cargo metadata`")?;
        if !output.status.success() {
            return Err(Error::fail(format!(
                "`cargo metadata` failed ({})",
                output.status
            )));
        }
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).context(|| "parsing `cargo metadata`")?;
        bench_targets_of(&metadata, package)
    }
}

impl Workspace {
    /// The manifest of the peers' crate (a workspace of its own).
    pub fn peers_manifest(&self) -> PathBuf {
        self.root.join("benches").join("peers").join("Cargo.toml")
    }

    /// Builds the bench targets `names` of `package` (`cargo bench --no-run`, echoed), or with
    /// `manifest` those of that crate, and returns each one's executable, in `names` order.
    ///
    /// # Errors
    /// When the build fails or cargo reports no executable for a name.
    pub fn build_benches(
        &self,
        package: Option<&str>,
        manifest: Option<&Path>,
        names: &[String],
    ) -> Result<Vec<PathBuf>> {
        let mut cmd = self.cargo(["bench", "--no-run"]);
        if let Some(p) = package {
            cmd.args(["-p", p]);
        }
        if let Some(m) = manifest {
            // Another workspace: share ours's target directory (not benches/peers/target).
            cmd.arg("--manifest-path")
                .arg(m)
                .arg("--target-dir")
                .arg(&self.target_dir);
        }
        for n in names {
            cmd.args(["--bench", n.as_str()]);
        }
        cmd.arg("--message-format=json-render-diagnostics");
        let out = self.build_with(&mut cmd, "the benches")?;
        names
            .iter()
            .map(|n| {
                executable_of(&out, n).ok_or_else(|| {
                    Error::fail(format!(
                        "`cargo bench --no-run` reported no executable for `{n}`"
                    ))
                })
            })
            .collect()
    }

    /// Builds binary `bin` of the peers' crate in release mode and returns its executable.
    ///
    /// # Errors
    /// When the build fails or cargo reports no executable for `bin`.
    pub fn build_peer_release_bin(&self, bin: &str) -> Result<PathBuf> {
        let mut cmd = self.cargo(["build", "--release", "--manifest-path"]);
        cmd.arg(self.peers_manifest())
            .arg("--target-dir")
            .arg(&self.target_dir)
            .args(["--bin", bin, "--message-format=json-render-diagnostics"]);
        let out = self.build_with(&mut cmd, bin)?;
        executable_of(&out, bin).ok_or_else(|| {
            Error::fail(format!(
                "`cargo build` reported no executable for the binary `{bin}`"
            ))
        })
    }

    /// Runs a cargo build command (echoed, diagnostics to stderr) and returns its JSON messages.
    fn build_with(&self, cmd: &mut Command, what: &str) -> Result<String> {
        println!("$ {}", describe(cmd));
        let output = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .context(|| format!("could not start `{}`", describe(cmd)))?;
        if !output.status.success() {
            return Err(Error::fail(format!(
                "building {what} failed: `{}` exited with {}",
                describe(cmd),
                output.status
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Builds binary `bin` of `package` in release mode (`cargo build --release`, echoed) and
    /// returns the path of the executable, as cargo reports it.
    ///
    /// # Errors
    /// When the build fails or cargo reports no executable for `bin`.
    pub fn build_release_bin(&self, package: &str, bin: &str) -> Result<PathBuf> {
        let mut cmd = self.cargo([
            "build",
            "--release",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json-render-diagnostics",
        ]);
        println!("$ {}", describe(&cmd));
        let output = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .context(|| format!("could not start `{}`", describe(&cmd)))?;
        if !output.status.success() {
            return Err(Error::fail(format!(
                "building `{bin}` failed: `{}` exited with {}",
                describe(&cmd),
                output.status
            )));
        }
        executable_of(&String::from_utf8_lossy(&output.stdout), bin).ok_or_else(|| {
            Error::fail(format!(
                "`cargo build` reported no executable for the binary `{bin}`"
            ))
        })
    }
}

/// The executable of binary `bin` in cargo's JSON messages (`--message-format=json`).
fn executable_of(messages: &str, bin: &str) -> Option<PathBuf> {
    messages
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| {
            m.get("reason").and_then(serde_json::Value::as_str) == Some("compiler-artifact")
        })
        .filter(|m| {
            m.pointer("/target/name")
                .and_then(serde_json::Value::as_str)
                == Some(bin)
        })
        .filter_map(|m| {
            m.get("executable")
                .and_then(serde_json::Value::as_str)
                .map(PathBuf::from)
        })
        .next()
}

/// The bench targets of `package` in a `cargo metadata` document.
fn bench_targets_of(metadata: &serde_json::Value, package: &str) -> Result<Vec<String>> {
    let packages = metadata
        .get("packages")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| Error::fail("`cargo metadata` lists no packages"))?;
    let pkg = packages
        .iter()
        .find(|p| p.get("name").and_then(serde_json::Value::as_str) == Some(package))
        .ok_or_else(|| Error::fail(format!("package `{package}` is not in the workspace")))?;
    let targets = pkg
        .get("targets")
        .and_then(serde_json::Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    Ok(targets
        .iter()
        .filter(|t| {
            t.get("kind")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bench"))
        })
        .filter_map(|t| t.get("name").and_then(serde_json::Value::as_str))
        .map(str::to_owned)
        .collect())
}

/// Runs `cmd`, echoing it first; fails naming `what` when it does not succeed.
///
/// # Errors
/// When the command cannot start or exits unsuccessfully.
pub fn run_step(what: &str, cmd: &mut Command) -> Result<()> {
    println!("$ {}", describe(cmd));
    let status = cmd
        .status()
        .context(|| format!("{what}: could not start `{}`", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::fail(format!(
            "{what} failed: `{}` exited with {status}",
            describe(cmd)
        )))
    }
}

/// The command line of `cmd`, with its environment overrides, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| {
            v.map(|v| format!("{}={:?}", k.to_string_lossy(), v.to_string_lossy()))
        })
        .collect();
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or_else(|| cmd.get_program())
        .to_string_lossy()
        .into_owned();
    parts.push(program);
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_targets_come_from_metadata() {
        let metadata = serde_json::json!({
            "packages": [
                { "name": "other", "targets": [{ "name": "x", "kind": ["bench"] }] },
                { "name": "spark-adk-benches", "targets": [
                    { "name": "spark_adk_benches", "kind": ["lib"] },
                    { "name": "standard", "kind": ["bench"] },
                    { "name": "long_running", "kind": ["bench"] }
                ] }
            ]
        });
        let names = bench_targets_of(&metadata, "spark-adk-benches").ok();
        assert_eq!(
            names,
            Some(vec!["standard".to_owned(), "long_running".to_owned()])
        );
        assert!(bench_targets_of(&metadata, "missing").is_err());
    }

    #[test]
    fn the_executable_comes_from_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"spark","kind":["lib"]},"executable":null}"#,
            "\n",
            "not json\n",
            r#"{"reason":"compiler-artifact","target":{"name":"stress","kind":["bin"]},"executable":"/t/release/stress"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            executable_of(messages, "stress"),
            Some(PathBuf::from("/t/release/stress"))
        );
        assert_eq!(executable_of(messages, "spark"), None);
        assert_eq!(executable_of(messages, "mem_lr_10k"), None);
    }

    #[test]
    fn the_peers_crate_is_left_out_of_the_workspace() {
        // `cargo test --workspace`, `cargo clippy --workspace` and `cargo fetch --locked` must
        // never build or fetch graph-flow and dagrs: only `cargo xtask bench` does.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
        let manifest: toml::Value = toml::from_str(&text).unwrap_or(toml::Value::Integer(0));
        let list = |key: &str| -> Vec<String> {
            manifest
                .get("workspace")
                .and_then(|w| w.get(key))
                .and_then(toml::Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert!(list("exclude").contains(&"benches/peers".to_owned()));
        assert!(!list("members").iter().any(|m| m.contains("peers")));
        let peers =
            std::fs::read_to_string(root.join("benches/peers/Cargo.toml")).unwrap_or_default();
        assert!(
            peers.contains("\n[workspace]\n"),
            "the peers' crate is its own workspace"
        );
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
        assert!(!lock.contains("name = \"graph-flow\"") && !lock.contains("name = \"dagrs\""));
    }

    #[test]
    fn describe_shows_env_and_args() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.args(["doc", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings");
        assert_eq!(
            describe(&cmd),
            "RUSTDOCFLAGS=\"-D warnings\" cargo doc --no-deps"
        );
    }
}
