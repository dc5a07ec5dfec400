//! `record` (one event; pipelined ones are group-committed by `group`).

use traqq_storage::Recorded;

use super::{Answer, Ctx, Failure};
use crate::protocol::{EventResult, Status};

/// The `data` of a `record` whose event id was recorded before (success: the event is in).
pub(super) const DUPLICATE_DATA: &[u8] = br#"{"duplicate":true}"#;

pub(super) fn run(ctx: Ctx<'_>, event: EventResult<'_>) -> Answer {
    match event {
        Err(e) => {
            ctx.metrics.events(0, 1, 0);
            Err(Failure::Refused(Status::BadRequest, e.to_string()))
        }
        Ok(event) => match ctx.traqq.record(event)? {
            Recorded::Counted => {
                ctx.metrics.events(1, 0, 0);
                Ok(None)
            }
            Recorded::Duplicate => {
                ctx.metrics.events(0, 0, 1);
                Ok(Some(DUPLICATE_DATA.to_vec()))
            }
        },
    }
}
