//! What the shim mirrored that fewer replicas than `WAIT` asks for have
//! confirmed yet.

use std::time::Instant;

use super::RETRY_CAP;

/// Messages mirrored into a primary whose replicas (fewer than `WAIT`
/// asks for) have not confirmed them yet. They are in its orders stream
/// and are executed from there; kept only to be mirrored again should the
/// primary move before a later `WAIT` on it succeeds (its replication
/// stream is ordered, so a later confirmation covers them). While any are
/// kept, chunks go out without `WAIT` and a probe asks every 500 ms.
#[derive(Default)]
pub(super) struct Unconfirmed {
    pub(super) messages: Vec<redis::Msg>,
    /// Their payloads' size in all.
    bytes: usize,
    /// The generation of the primary they were last written to.
    pub(super) generation: u64,
    since: Option<Instant>,
    /// When they were last asked about.
    pub(super) checked: Option<Instant>,
}

impl Unconfirmed {
    /// Whether it is time to ask again (a probe write and a `WAIT`).
    pub(super) fn due(&self) -> bool {
        !self.messages.is_empty() && self.checked.is_none_or(|at| at.elapsed() >= RETRY_CAP)
    }

    /// Whether they were written to a primary that is not the current one.
    pub(super) fn stranded(&self, generation: u64) -> bool {
        !self.messages.is_empty() && self.generation != generation
    }

    /// Keeps `messages`, written to `generation`'s primary.
    pub(super) fn keep(&mut self, messages: &[redis::Msg], generation: u64) {
        if self.messages.is_empty() {
            self.generation = generation;
            self.since = Some(Instant::now());
            tracing::warn!(
                "fewer replicas than REDIS_WAIT_REPLICAS confirmed mirrored messages; they are kept, to be mirrored again should the primary move"
            );
        } else {
            // The older: a move since either write re-sends all.
            self.generation = self.generation.min(generation);
        }
        self.bytes += messages
            .iter()
            .map(|m| m.get_payload_bytes().len())
            .sum::<usize>();
        self.messages.extend(messages.iter().cloned());
        let mut excess = 0;
        while self.messages.len() - excess > MAX_UNCONFIRMED
            || (self.bytes > MAX_UNCONFIRMED_BYTES && excess < self.messages.len())
        {
            self.bytes -= self.messages[excess].get_payload_bytes().len();
            excess += 1;
        }
        if excess > 0 {
            self.messages.drain(..excess);
            tracing::error!(
                let_go = excess,
                "too many mirrored messages wait for a replica's confirmation; the oldest are let go of (a failover now could lose them)"
            );
        }
    }

    pub(super) fn clear(&mut self) {
        if let Some(since) = self.since.take()
            && !self.messages.is_empty()
        {
            tracing::info!(
                messages = self.messages.len(),
                after_ms = since.elapsed().as_millis() as u64,
                "replicas confirmed the messages mirrored meanwhile"
            );
        }
        self.messages.clear();
        self.bytes = 0;
    }
}

/// Most unconfirmed messages kept, by count and by size; the oldest beyond
/// are let go of (they are in the primary's stream, most of them executed
/// long since).
const MAX_UNCONFIRMED: usize = 100_000;
const MAX_UNCONFIRMED_BYTES: usize = 64 * 1024 * 1024;
