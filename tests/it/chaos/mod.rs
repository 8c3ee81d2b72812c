//! The chaos suite: the real binary as separate replica processes, driven
//! with paced load while faults are injected (SIGKILL, a cut Postgres, a
//! killed Redis, hostile messages, Postgres connections severed or
//! black-holed), then checked against the invariants.

mod halts;
pub mod harness;
mod hostile;
mod live;
mod orphans;
mod scenarios;
