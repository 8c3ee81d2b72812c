// One audited exception: store/nodelay.rs (a workaround for sqlx).
#![deny(unsafe_code)]
//! execution-service: turns approved orders into executions, exactly once.

pub mod allocator;
pub mod app;
pub mod bus;
pub mod cli;
pub mod config;
pub mod domain;
pub mod execution;
pub mod http;
pub mod kill_switch;
pub mod live;
pub mod local;
pub mod propagation;
pub mod retry;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod worker;
