//! The store conformance suite against the machine's PostgreSQL server, one schema per test.

mod common;

spark_adk_durable::conformance_tests!(common::harness().await);
