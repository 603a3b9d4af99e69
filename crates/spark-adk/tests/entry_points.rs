//! The facade's entry points in standard mode: `Graph::run` with a time budget outside a tokio
//! runtime is an `InvalidTask`, never a panic (docs/runtime-semantics.md, "Standard mode"). The
//! executor's own cases are in `crates/spark-adk-sequential/tests/faults.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use spark_adk::prelude::*;

/// Polls `future` to completion on this thread, outside any tokio runtime (what
/// `futures::executor::block_on` does).
fn block_on_without_tokio<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(output) => return output,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

#[test]
fn graph_run_with_a_time_budget_outside_a_tokio_runtime_is_an_invalid_task() {
    let mut g = Graph::builder();
    let waits = g.add(
        "waits",
        node_fn(|_| async {
            let mut first = true;
            std::future::poll_fn(|cx| {
                if std::mem::take(&mut first) {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(())
                }
            })
            .await;
            Ok::<_, NodeError>(json!({}))
        }),
    );
    let graph = g.start(waits).build().unwrap();
    let task = Task::new(json!({})).with_budget(Budget::seconds(5.0).unwrap());

    let err = block_on_without_tokio(graph.run(task)).unwrap_err();

    assert!(
        matches!(&err, RunError::InvalidTask(why) if why.contains("no tokio runtime")),
        "{err:?}"
    );
}

#[test]
fn graph_run_with_and_run_default_have_no_time_budget_and_need_no_tokio_runtime() {
    let mut g = Graph::builder();
    let echo = g.add(
        "echo",
        node_fn(|ctx: Context| async move { Ok::<_, NodeError>(ctx.inputs().clone()) }),
    );
    let graph = g.start(echo).build().unwrap();

    let with = block_on_without_tokio(graph.run_with(json!({ "n": 1 }))).unwrap();
    let default = block_on_without_tokio(graph.run_default()).unwrap();

    assert_eq!(with.content()["n"], 1);
    assert_eq!(*default.content(), json!({}));
}
