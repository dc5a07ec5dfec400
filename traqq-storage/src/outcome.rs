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
    /// Counts event `index` as recorded, or as rejected with its error.
    pub(crate) fn count(&mut self, index: usize, added: crate::Result<()>) {
        match added {
            Ok(()) => self.recorded += 1,
            Err(error) => self.rejected.push(Rejected { index, error }),
        }
    }

    /// The outcomes of consecutive parts of the batch, `lens` events each (they should add up
    /// to the batch; events past them are dropped): indexes become relative to their part, and
    /// a part's recorded events are those neither rejected nor duplicates. For a server that
    /// records several requests' events in one call.
    pub fn split(self, lens: &[usize]) -> Vec<BatchOutcome> {
        let mut rejected = self.rejected.into_iter().peekable();
        let mut duplicates = self.duplicates.into_iter().peekable();
        let mut start = 0;
        lens.iter()
            .map(|&len| {
                let end = start + len;
                let mut part = BatchOutcome::default();
                while let Some(r) = rejected.next_if(|r| r.index < end) {
                    part.rejected.push(Rejected {
                        index: r.index - start,
                        error: r.error,
                    });
                }
                while let Some(d) = duplicates.next_if(|&d| d < end) {
                    part.duplicates.push(d - start);
                }
                part.recorded = len - part.rejected.len() - part.duplicates.len();
                start = end;
                part
            })
            .collect()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_gives_each_part_its_own_indexes_and_counts() {
        let outcome = BatchOutcome {
            recorded: 3,
            duplicates: vec![1, 6],
            rejected: [0, 4, 7]
                .map(|index| Rejected {
                    index,
                    error: Error::Dump(format!("event {index}")),
                })
                .into(),
        };
        let parts = outcome.split(&[2, 1, 4, 1]);
        let got: Vec<(usize, Vec<usize>, Vec<usize>)> = parts
            .iter()
            .map(|p| {
                (
                    p.recorded,
                    p.duplicates.clone(),
                    p.rejected.iter().map(|r| r.index).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, vec![1], vec![0]),
                (1, vec![], vec![]),
                (2, vec![3], vec![1]),
                (0, vec![], vec![0]),
            ]
        );
        assert_eq!(
            parts[2].rejected[0].error.to_string(),
            Error::Dump("event 4".into()).to_string()
        );
        assert_eq!(parts.iter().map(|p| p.recorded).sum::<usize>(), 3);
    }
}
