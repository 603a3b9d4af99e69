//! Dispatch of long-running tasks to `spark-mailbox`.

use std::sync::Arc;

use spark_core::{RunError, RunResult, Task};
use spark_edges::Topology;
use spark_mailbox::LongRunningExecutor;

pub(crate) async fn run(topology: &Arc<Topology>, task: Task) -> Result<RunResult, RunError> {
    LongRunningExecutor::new()
        .run(Arc::clone(topology), task)
        .await
}
