//! SeaORM entities, one per table the migrations create.

pub mod halts;
pub mod order_events;
pub mod orders;
mod status;
pub mod trades;
