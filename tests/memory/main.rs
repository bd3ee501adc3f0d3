//! Tests that measure the process's resident memory while hostile or careless
//! clients do their worst. They run in a binary of their own, so no other
//! test's allocations count.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    missing_docs,
    dead_code,
    reason = "test code: a failed unwrap is a failed test; the shared harness has more than these tests use"
)]

#[path = "../it/common/mod.rs"]
mod common;

mod backpressure;
mod hostile;
mod limits;
mod process;
