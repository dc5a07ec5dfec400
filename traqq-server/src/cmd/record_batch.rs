//! `record_batch` (`POST /v1/events`): many events as one storage batch; bad events are
//! reported by index and the others still count.

use super::{Answer, Ctx};
use crate::protocol::EventResult;

pub(super) fn run(ctx: Ctx<'_>, events: Vec<EventResult<'_>>) -> Answer {
    let outcome = ctx
        .traqq
        .record_results(events.into_iter().map(|e| e.map_err(traqq_storage::Error::from)))?;
    ctx.metrics
        .events(outcome.recorded, outcome.rejected.len(), outcome.duplicates.len());
    Ok(Some(report_data(&outcome)))
}

/// The `data` of a `record_batch` reply: the batch's report.
pub(super) fn report_data(outcome: &traqq_storage::BatchOutcome) -> Vec<u8> {
    // Our own type: serializing cannot fail (string keys, no floats).
    serde_json::to_vec(&outcome.report()).unwrap_or_else(|_| b"null".to_vec())
}
