//! SeaORM entities, one per table the migrations create.

pub mod halts;
pub mod orders;
pub mod trades;
