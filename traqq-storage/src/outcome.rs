//! What recording a batch did: [`BatchOutcome`] with typed errors for library callers, and
//! [`BatchReport`], the same as data — what the server answers `record_batch` with, the client
//! reads back and the CLI reports.

use serde::{Deserialize, Serialize};

use crate::Error;

/// One event of a batch that was not recorded, and why.
#[derive(Debug)]
pub struct Rejected {
    /// Position of the event in the batch (0-based).
    pub index: usize,
    /// Why it was rejected.
    pub error: Error,
}

/// What recording one event did ([`crate::Traqq::record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The event was counted.
    Counted,
    /// Its id (`[event] id_field`) was recorded before: nothing was counted again.
    Duplicate,
}

/// What `record_batch` did: events recorded, duplicates skipped and events rejected.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Events recorded.
    pub recorded: usize,
    /// Indexes (in order) of the events not counted again because their id
    /// (`[event] id_field`) was recorded before.
    pub duplicates: Vec<usize>,
    /// Events rejected, in order.
    pub rejected: Vec<Rejected>,
}

impl BatchOutcome {
    /// The outcome as data (errors as their messages).
    pub fn report(&self) -> BatchReport {
        BatchReport {
            recorded: self.recorded,
            duplicates: self.duplicates.len(),
            rejected: self
                .rejected
                .iter()
                .map(|r| RejectedEvent {
                    index: r.index,
                    error: r.error.to_string(),
                })
                .collect(),
        }
    }
}

/// A batch outcome as data: `{"recorded":N,"rejected":[{"index":i,"error":"..."}]}`, with
/// `"duplicates":N` when events were skipped as already recorded (`[event] id_field`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    /// Events recorded.
    pub recorded: usize,
    /// Events skipped because their id was recorded before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicates: usize,
    /// Events rejected, in index order.
    pub rejected: Vec<RejectedEvent>,
}

/// One rejected event of a [`BatchReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedEvent {
    /// Index in the batch (0-based).
    pub index: usize,
    /// Why.
    pub error: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
