//! `record` (one event), and the group commit of consecutive pipelined `record`s.

use std::time::Instant;

use traqq_core::event::IncomingEvent;

use super::{Answer, Ctx, Failure};
use crate::protocol::{error_reply, Command, EventResult, Reply, Status};

pub(super) fn run(ctx: Ctx<'_>, event: EventResult<'_>) -> Answer {
    match event {
        Err(e) => {
            ctx.metrics.events(0, 1);
            Err(Failure::Refused(Status::BadRequest, e.to_string()))
        }
        Ok(event) => {
            ctx.traqq.record(event)?;
            ctx.metrics.events(1, 0);
            Ok(None)
        }
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
    let (started, events): (Vec<Instant>, Vec<IncomingEvent<'_>>) = group.into_iter().unzip();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.traqq.record_results(events.into_iter().map(Ok))
    }));
    let failure = match result {
        Ok(Ok(outcome)) => {
            ctx.metrics.events(outcome.recorded, outcome.rejected.len());
            // `rejected` is in index order: walk it alongside.
            let mut rejected = outcome.rejected.into_iter().peekable();
            for (i, started) in started.into_iter().enumerate() {
                match rejected.next_if(|r| r.index == i) {
                    None => {
                        out.extend_from_slice(OK);
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
