//! Schema migrations of the execution service, applied in file-name order.
//!
//! Each change is one file `mYYYYMMDD_HHMMSS_verb_noun.rs` with `up` and
//! `down`; a file that has shipped is never edited, a new one is added.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_orders;
mod m20261126_000002_create_trades;
mod m20261126_000003_record_every_rejection;
mod m20261126_000004_create_halts;
mod m20261126_000005_add_live_order_state;
mod m20261207_000006_add_order_lifecycle;
mod m20261207_000007_key_halt_entries_by_content;
mod m20261207_000008_create_exchange_orphans;
mod m20261207_000009_index_orders_by_update;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_orders::Migration),
            Box::new(m20261126_000002_create_trades::Migration),
            Box::new(m20261126_000003_record_every_rejection::Migration),
            Box::new(m20261126_000004_create_halts::Migration),
            Box::new(m20261126_000005_add_live_order_state::Migration),
            Box::new(m20261207_000006_add_order_lifecycle::Migration),
            Box::new(m20261207_000007_key_halt_entries_by_content::Migration),
            Box::new(m20261207_000008_create_exchange_orphans::Migration),
            Box::new(m20261207_000009_index_orders_by_update::Migration),
        ]
    }
}
