//! Dispatch of long-running tasks to `spark-adk-mailbox`.

use std::sync::Arc;

use spark_adk_core::{RunError, RunResult, Task};
use spark_adk_edges::Topology;
use spark_adk_mailbox::LongRunningExecutor;

pub(crate) async fn run(topology: &Arc<Topology>, task: Task) -> Result<RunResult, RunError> {
    LongRunningExecutor::new()
        .run(Arc::clone(topology), task)
        .await
}
