//! The group commit: consecutive pipelined `record` and `record_batch` requests of one
//! connection recorded as one storage batch. Each request still gets its own reply, in order,
//! the same as if it had been recorded alone; none is acknowledged before the batch is applied,
//! and if the store fails, every request of the group gets the error.

use std::time::Instant;

use traqq_core::event::IncomingEvent;
use traqq_storage::BatchOutcome;

use super::record::DUPLICATE_DATA;
use super::record_batch::report_data;
use super::Ctx;
use crate::protocol::{error_reply, success, Command, EventResult, Reply, Status};

/// One request of a group.
#[derive(Debug)]
pub(crate) enum Grouped<'a> {
    /// A `record` of a valid event.
    Record(IncomingEvent<'a>),
    /// A `record_batch`: its events, or why each is not one.
    Batch(Vec<EventResult<'a>>),
}

impl Grouped<'_> {
    /// Events the request carries.
    pub(crate) fn len(&self) -> usize {
        match self {
            Grouped::Record(_) => 1,
            Grouped::Batch(events) => events.len(),
        }
    }

    fn command(&self) -> Command {
        match self {
            Grouped::Record(_) => Command::Record,
            Grouped::Batch(_) => Command::RecordBatch,
        }
    }
}

/// Records the events of `group` in one call and appends each request's reply, with its
/// newline, to `out`. `failed` is the reply of a request whose group the store refused.
pub(crate) fn record_group(
    ctx: Ctx<'_>,
    group: Vec<(Instant, Grouped<'_>)>,
    out: &mut Vec<u8>,
    failed: impl Fn(Command, &traqq_storage::Error) -> Reply,
) {
    let lens: Vec<usize> = group.iter().map(|(_, g)| g.len()).collect();
    let mut requests = Vec::with_capacity(group.len());
    let mut events = Vec::with_capacity(lens.iter().sum());
    for (started, grouped) in group {
        requests.push((started, grouped.command()));
        match grouped {
            Grouped::Record(event) => events.push(Ok(event)),
            Grouped::Batch(batch) => {
                events.extend(batch.into_iter().map(|e| e.map_err(traqq_storage::Error::from)));
            }
        }
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.traqq.record_results(events)));
    let outcome = match result {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => return answer_all(ctx, &requests, out, |command| failed(command, &e)),
        Err(_) => {
            tracing::error!("record group panicked");
            return answer_all(ctx, &requests, out, |command| {
                error_reply(
                    command,
                    Status::Internal,
                    "internal error while handling this request (a bug, logged by the server)",
                )
            });
        }
    };
    ctx.metrics
        .events(outcome.recorded, outcome.rejected.len(), outcome.duplicates.len());
    for ((started, command), part) in requests.into_iter().zip(outcome.split(&lens)) {
        let reply = reply_of(command, &part);
        out.extend_from_slice(&reply.body);
        out.push(b'\n');
        ctx.metrics.request(command, reply.status, started.elapsed());
    }
}

/// What one request of the group is answered, as if it had been recorded alone.
fn reply_of(command: Command, part: &BatchOutcome) -> Reply {
    match command {
        Command::RecordBatch => success(command, Some(report_data(part))),
        _ => match part.rejected.first() {
            Some(r) => error_reply(command, Status::BadRequest, &r.error.to_string()),
            None if !part.duplicates.is_empty() => success(command, Some(DUPLICATE_DATA.to_vec())),
            None => success(command, None),
        },
    }
}

/// Appends the same kind of reply to every request of a group that failed as a whole.
fn answer_all(
    ctx: Ctx<'_>,
    requests: &[(Instant, Command)],
    out: &mut Vec<u8>,
    reply: impl Fn(Command) -> Reply,
) {
    for &(started, command) in requests {
        let reply = reply(command);
        out.extend_from_slice(&reply.body);
        out.push(b'\n');
        ctx.metrics.request(command, reply.status, started.elapsed());
    }
}
