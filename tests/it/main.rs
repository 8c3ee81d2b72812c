//! Integration tests of the service against the real Redis and the
//! real Postgres. Every test has its own database, streams and group.

mod fake_mexc;
mod fixtures;
mod helpers;
mod proxy;
mod services;
mod skips;

mod api;
mod bytes;
mod chaos;
mod cli;
mod conflicts;
mod decided_rows;
mod delivery;
mod ha;
mod halts;
mod happy_path;
mod idempotency;
mod identity;
mod keys;
mod live;
mod live_store;
mod local_services;
mod malformed;
mod mexc;
mod operating;
mod rate_limit;
mod redis_memory;
mod replicas;
mod schemathesis;
mod shim;
mod stack;
mod startup;
mod tracing;
mod trimming;
