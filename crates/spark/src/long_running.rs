//! Dispatch of long-running tasks (the mailbox runtime arrives with `spark-mailbox`).

use spark_core::{RunError, RunResult, Task};
use spark_edges::Topology;

pub(crate) async fn run(_topology: &Topology, _task: Task) -> Result<RunResult, RunError> {
    Err(RunError::InvalidTask(
        "long-running mode is not available yet".to_owned(),
    ))
}
