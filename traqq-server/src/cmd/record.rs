//! `record` (one event), and the group commit of consecutive pipelined `record`s.

use std::time::Instant;

use traqq_core::event::IncomingEvent;

use traqq_storage::Recorded;

use super::{Answer, Ctx, Failure};
use crate::protocol::{error_reply, Command, EventResult, Reply, Status};

/// The `data` of a `record` whose event id was recorded before (success: the event is in).
const DUPLICATE_DATA: &[u8] = br#"{"duplicate":true}"#;

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

/// Records consecutive pipelined `record` events as one storage batch (a group commit). Each
/// request still gets its own reply, in order, appended to `out` with its newline; none is
/// acknowledged before the batch is applied, and if the store fails, every request of the
/// group gets the same reply, `failed(error)`.
pub(crate) fn record_group(
    ctx: Ctx<'_>,
    group: Vec<(Instant, IncomingEvent<'_>)>,
    out: &mut Vec<u8>,
    failed: impl FnOnce(&traqq_storage::Error) -> Reply,
) {
    const OK: &[u8] = b"{\"success\":true}\n";
    const OK_DUPLICATE: &[u8] = b"{\"success\":true,\"data\":{\"duplicate\":true}}\n";
    let (started, events): (Vec<Instant>, Vec<IncomingEvent<'_>>) = group.into_iter().unzip();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.traqq.record_results(events.into_iter().map(Ok))
    }));
    let failure = match result {
        Ok(Ok(outcome)) => {
            ctx.metrics
                .events(outcome.recorded, outcome.rejected.len(), outcome.duplicates.len());
            // `rejected` and `duplicates` are in index order: walk them alongside.
            let mut rejected = outcome.rejected.into_iter().peekable();
            let mut duplicates = outcome.duplicates.into_iter().peekable();
            for (i, started) in started.into_iter().enumerate() {
                match rejected.next_if(|r| r.index == i) {
                    None => {
                        let duplicate = duplicates.next_if_eq(&i).is_some();
                        out.extend_from_slice(if duplicate { OK_DUPLICATE } else { OK });
                        ctx.metrics
                            .request(Command::Record, Status::Ok, started.elapsed());
                    }
                    Some(r) => {
                        let reply = error_reply(Command::Record, Status::BadRequest, &r.error.to_string());
                        out.extend_from_slice(&reply.body);
                        out.push(b'\n');
                        ctx.metrics
                            .request(Command::Record, Status::BadRequest, started.elapsed());
                    }
                }
            }
            return;
        }
        Ok(Err(e)) => failed(&e),
        Err(_) => {
            tracing::error!("record group panicked");
            error_reply(
                Command::Record,
                Status::Internal,
                "internal error while handling this request (a bug, logged by the server)",
            )
        }
    };
    for started in started {
        out.extend_from_slice(&failure.body);
        out.push(b'\n');
        ctx.metrics
            .request(failure.command, failure.status, started.elapsed());
    }
}
