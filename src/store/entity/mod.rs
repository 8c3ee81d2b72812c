//! SeaORM entities, one per table the migrations create.

pub mod halts;
mod named;
pub mod order_events;
pub mod orders;
pub mod trades;
