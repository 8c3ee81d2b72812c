//! High availability: the service behind Redis Sentinels, and behind a
//! Postgres switchover.

mod cluster;
mod failover;
mod sentinels;
mod standby;
mod switchover;
mod wait;
