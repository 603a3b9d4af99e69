//! The store conformance suite against the in-memory store.

use std::sync::Arc;

use spark_adk_durable::conformance::Harness;
use spark_adk_durable::{BoxFuture, MemoryStore, RunId, Store};

struct Memory(Arc<MemoryStore>);

impl Harness for Memory {
    fn store(&self) -> Arc<dyn Store> {
        self.0.clone()
    }

    fn overwrite_record<'a>(
        &'a self,
        run: &'a RunId,
        seq: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            assert!(self.0.overwrite_record(run, seq, bytes), "no record {seq}");
        })
    }
}

spark_adk_durable::conformance_tests!(Memory(Arc::new(MemoryStore::new())));
