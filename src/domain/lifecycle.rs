//! The life of a live order as one state machine: its statuses, what can
//! be observed about it, and every legal transition in one table
//! ([`TRANSITIONS`]). [`next`] is the only way a live order changes status:
//! the store asks it before it writes, and writes only from the state the
//! transition starts from (under the row's lock), so no path can move an
//! order where the table does not lead.
//!
//! ```text
//! PENDING ──claim──▶ SUBMITTED ──report──▶ PARTIALLY_FILLED ──report──▶ FILLED
//!    ▲                 │  │ └──report──▶ FILLED | CANCELED        │
//!    └──not sent───────┘  ├──refused/halted──▶ REJECTED ◀──not placed── UNKNOWN
//!                         └──overdue──▶ UNKNOWN ◀──overdue──────────────┘
//! REJECTED (not placed) ──report (late appearance)──▶ any reported state
//! ```

use super::OrderStatus;

/// What was learnt about a live order, from the service itself or from
/// the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Observation {
    /// This replica committed the intent to send it.
    Claimed,
    /// The exchange certainly did not apply its request (a refused key, an
    /// unmeasurable clock): it waits for a later try.
    NotSent,
    /// Refused before anything could reach the exchange, or refused by the
    /// exchange on its first send: a halt, its age, a pre-trade rule, a
    /// mapped rejection code.
    Refused,
    /// It cannot be sent at all (its stored columns are incomplete, its
    /// timestamp was refused twice).
    Failed,
    /// The exchange described it with this status (`NEW` is SUBMITTED).
    Reported(OrderStatus),
    /// Its outcome could not be learnt by the resolve deadline.
    Overdue,
    /// Independent searches past the absence window agree it was never
    /// placed.
    NotPlaced,
}

impl Observation {
    /// Its name in the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            Observation::Claimed => "claimed",
            Observation::NotSent => "not_sent",
            Observation::Refused => "refused",
            Observation::Failed => "failed",
            Observation::Reported(_) => "reported",
            Observation::Overdue => "overdue",
            Observation::NotPlaced => "not_placed",
        }
    }

    /// Where the observation leads, whatever the state it starts from.
    fn target(self) -> OrderStatus {
        match self {
            Observation::Claimed => OrderStatus::Submitted,
            Observation::NotSent => OrderStatus::Pending,
            Observation::Refused | Observation::NotPlaced => OrderStatus::Rejected,
            Observation::Failed => OrderStatus::Error,
            Observation::Reported(status) => status,
            Observation::Overdue => OrderStatus::Unknown,
        }
    }
}

use OrderStatus::{
    Canceled, Error, Filled, PartiallyFilled, Pending, Rejected, Submitted, Unknown,
};

/// Every legal transition: from, observation, to. A report of the status an
/// order already has is no transition (its filled quantity may still grow).
pub const TRANSITIONS: &[(OrderStatus, KindName, OrderStatus)] = &[
    (Pending, "claimed", Submitted),
    (Pending, "refused", Rejected),
    (Pending, "failed", Error),
    (Submitted, "not_sent", Pending),
    (Submitted, "refused", Rejected),
    (Submitted, "failed", Error),
    (Submitted, "reported", PartiallyFilled),
    (Submitted, "reported", Filled),
    (Submitted, "reported", Canceled),
    (Submitted, "overdue", Unknown),
    (Submitted, "not_placed", Rejected),
    (PartiallyFilled, "reported", Filled),
    (PartiallyFilled, "reported", Canceled),
    (PartiallyFilled, "overdue", Unknown),
    (Unknown, "reported", Submitted),
    (Unknown, "reported", PartiallyFilled),
    (Unknown, "reported", Filled),
    (Unknown, "reported", Canceled),
    (Unknown, "not_placed", Rejected),
    // A late appearance: an order reported not placed turns up after all.
    (Rejected, "reported", Submitted),
    (Rejected, "reported", PartiallyFilled),
    (Rejected, "reported", Filled),
    (Rejected, "reported", Canceled),
];

/// An observation's name, as the table spells it.
pub type KindName = &'static str;

/// A transition the table does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no transition from {} on {} to {}", from.as_str(), observation.name(), to.as_str())]
pub struct Illegal {
    pub from: OrderStatus,
    pub observation: Observation,
    pub to: OrderStatus,
}

/// The state an order in `from` moves to on `observation`, or the refusal.
/// A report of its own status leaves it where it is.
pub fn next(from: OrderStatus, observation: Observation) -> Result<OrderStatus, Illegal> {
    let to = observation.target();
    if matches!(observation, Observation::Reported(_)) && to == from && from != Rejected {
        return Ok(from);
    }
    let legal = TRANSITIONS
        .iter()
        .any(|(start, name, end)| *start == from && *name == observation.name() && *end == to);
    match legal {
        true => Ok(to),
        false => Err(Illegal {
            from,
            observation,
            to,
        }),
    }
}

/// The states `observation` may start from (for the store's guard).
pub fn starts_of(observation: Observation) -> Vec<OrderStatus> {
    ALL.into_iter()
        .filter(|from| next(*from, observation).is_ok())
        .collect()
}

/// Every status, in the order of the state machine.
pub const ALL: [OrderStatus; 8] = [
    Pending,
    Submitted,
    PartiallyFilled,
    Unknown,
    Filled,
    Canceled,
    Rejected,
    Error,
];

/// The states of an order the live path still watches: not finished at
/// the exchange (an UNKNOWN one included).
pub const IN_FLIGHT: [OrderStatus; 3] = [Submitted, PartiallyFilled, Unknown];

/// Whether an order in this state is still the live path's to watch.
pub fn in_flight(status: OrderStatus) -> bool {
    IN_FLIGHT.contains(&status)
}

/// The names of `statuses`, to bind as a text array in SQL.
pub fn names(statuses: &[OrderStatus]) -> Vec<String> {
    statuses.iter().map(|s| s.as_str().to_owned()).collect()
}

#[cfg(test)]
mod tests;
