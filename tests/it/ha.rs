//! High availability: the service behind Redis Sentinels, and behind a
//! Postgres switchover.

mod failover;
mod sentinels;
mod standby;
mod switchover;
mod wait;
