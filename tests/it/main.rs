//! The integration tests: real `redis-server` processes, the proxy in this
//! process, real clients. One module per concern; the harness is `common`.
//!
//! Tests that measure the whole process's memory live in `tests/memory/`, and
//! the benchmark smoke run in `tests/bench_smoke.rs`, each in a binary of its
//! own, so nothing else runs beside them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    missing_docs,
    reason = "test code: a failed unwrap is a failed test, and nothing here is an API"
)]

mod common;

mod acl;
mod auth;
mod book;
mod chaos;
mod cli;
mod clients;
mod clock;
mod cluster;
mod command_table;
mod config;
mod declared;
mod deploy;
mod differential;
mod faults;
mod fencing;
mod frames;
mod fuzz_corpus;
mod introspection;
mod isolation;
mod layers;
mod lock_keys;
mod multiplex;
mod operations;
mod partitions;
mod passthrough;
mod readme;
mod redis_cli;
mod redlock;
mod restart_guard;
mod scripts;
mod sentinel;
mod shared_locks;
mod status_page;
mod tls;
mod truthful;
mod voters;
mod wire_forms;
