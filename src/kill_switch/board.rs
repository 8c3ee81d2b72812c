//! The board of active halts every batch checks its orders against, and
//! whether it can be trusted: when the kill-switch stream was last read.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::domain::Halt;

/// How long after its last good read the kill-switch stream still counts
/// as read: a replica that has not read it for longer cannot know of a new
/// halt, so it takes no order and is not ready.
pub const READ_FRESHNESS: Duration = Duration::from_secs(3);

/// The active halts, as of the last reload, and whether they can be
/// trusted: when the stream was last read.
#[derive(Debug, Clone, Default)]
pub struct HaltBoard {
    halts: Arc<RwLock<Arc<Vec<Halt>>>>,
    /// `None` while no follower keeps the board (a worker used on its own);
    /// then the follower's last good read of the stream, if any.
    follower: Arc<RwLock<Option<Option<Instant>>>>,
}

impl HaltBoard {
    pub fn snapshot(&self) -> Arc<Vec<Halt>> {
        self.halts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn replace(&self, halts: Vec<Halt>) {
        *self.halts.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(halts);
    }

    /// Whether the halts are known: the follower read the stream within
    /// [`READ_FRESHNESS`] (always, for a board no follower keeps).
    pub fn is_current(&self) -> bool {
        match *self.follower.read().unwrap_or_else(PoisonError::into_inner) {
            None => true,
            Some(read_at) => read_at.is_some_and(|at| at.elapsed() <= READ_FRESHNESS),
        }
    }

    /// A follower keeps the board from now on (nothing read yet).
    pub(super) fn followed(&self) {
        *self
            .follower
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(None);
    }

    /// The follower read the stream (and applied what it found).
    pub(super) fn read_now(&self) {
        *self
            .follower
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Some(Instant::now()));
    }
}
