//! `record_batch` (`POST /v1/events`): many events as one storage batch; bad events are
//! reported by index and the others still count.

use traqq_core::event::EventList;

use super::{Answer, Ctx};

pub(super) fn run(ctx: Ctx<'_>, events: EventList<'_>) -> Answer {
    let outcome = ctx.traqq.record_list(events)?;
    ctx.metrics
        .events(outcome.recorded, outcome.rejected.len(), outcome.duplicates.len());
    Ok(Some(report_data(&outcome)))
}

/// The `data` of a `record_batch` reply: the batch's report.
pub(super) fn report_data(outcome: &traqq_storage::BatchOutcome) -> Vec<u8> {
    // Our own type: serializing cannot fail (string keys, no floats).
    serde_json::to_vec(&outcome.report()).unwrap_or_else(|_| b"null".to_vec())
}
