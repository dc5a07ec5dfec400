//! What both transports, the commands and the metrics share: commands, statuses, replies,
//! parsed requests, and the limits and per-connection state a request is read with.

use serde::Serialize;
use traqq_core::bucket::Tz;
use traqq_core::event::{EventLimits, IncomingEvent};
use traqq_core::group::Group;
use traqq_core::plan::QueryOptions;
use traqq_core::result::FindOptions;

/// A request's command (also the `command` label of `traqq_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `record`: one event.
    Record,
    /// `record_batch`: many events, one storage batch.
    RecordBatch,
    /// `query`: a `min`/`max` range.
    Query,
    /// `query_days`: today and `days` days back.
    QueryDays,
    /// `find`: a query filtered to one metric.
    Find,
    /// `ping`.
    Ping,
    /// `auth`: present the token once per connection.
    Auth,
    /// `GET /healthz`: a storage round trip.
    Health,
    /// A request whose command could not be read.
    Invalid,
}

impl Command {
    /// Every command, in label order.
    pub const ALL: [Command; 9] = [
        Command::Record,
        Command::RecordBatch,
        Command::Query,
        Command::QueryDays,
        Command::Find,
        Command::Ping,
        Command::Auth,
        Command::Health,
        Command::Invalid,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Record => "record",
            Command::RecordBatch => "record_batch",
            Command::Query => "query",
            Command::QueryDays => "query_days",
            Command::Find => "find",
            Command::Ping => "ping",
            Command::Auth => "auth",
            Command::Health => "health",
            Command::Invalid => "invalid",
        }
    }

    /// The command a TCP line names (`health` and `invalid` are not requests).
    pub(crate) fn parse(name: &str) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|c| c.as_str() == name && !matches!(c, Command::Health | Command::Invalid))
    }
}

/// How a request ended (also the `outcome` label of `traqq_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Answered with `success: true`.
    Ok,
    /// The request was invalid (HTTP 400).
    BadRequest,
    /// No valid token (HTTP 401).
    Unauthorized,
    /// The store is unreachable (HTTP 503).
    Unavailable,
    /// The store failed otherwise (HTTP 500).
    Internal,
}

impl Status {
    /// Every status, in label order.
    pub const ALL: [Status; 5] = [
        Status::Ok,
        Status::BadRequest,
        Status::Unauthorized,
        Status::Unavailable,
        Status::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::BadRequest => "bad_request",
            Status::Unauthorized => "unauthorized",
            Status::Unavailable => "unavailable",
            Status::Internal => "error",
        }
    }

    /// The HTTP status code.
    pub fn http_code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Unavailable => 503,
            Status::Internal => 500,
        }
    }
}

/// A reply: its JSON body (no trailing newline) and how the request ended.
#[derive(Debug)]
pub struct Reply {
    /// The command answered.
    pub command: Command,
    /// How it ended.
    pub status: Status,
    /// `{"success":...}` JSON.
    pub body: Vec<u8>,
}

/// What a request may hold: events per batch and each event's caps. Checked while parsing, so
/// an oversized request is refused before it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// `server.max_batch_events`.
    pub max_batch_events: usize,
    /// `[limits] max_properties` and `max_field_length`.
    pub event: EventLimits,
}

/// Per-connection state: whether the connection has presented the token.
#[derive(Debug, Default, Clone, Copy)]
pub struct Session {
    /// True once `{"cmd":"auth"}` succeeded (HTTP: a valid `Authorization` header).
    pub authed: bool,
    /// Failed `auth` commands on this connection; at [`MAX_AUTH_FAILURES`] it is closed.
    pub auth_failures: u32,
}

impl Session {
    /// True when the transport should close the connection (too many wrong tokens).
    pub fn should_close(&self) -> bool {
        self.auth_failures >= MAX_AUTH_FAILURES
    }
}

/// Wrong `auth` commands one TCP connection may send before it is closed: guessing a token
/// costs a new connection every few tries, not 200,000 tries a second on one.
pub const MAX_AUTH_FAILURES: u32 = 5;

/// An event parsed from a request (its strings borrowed from the input), or why it is invalid.
pub type EventResult<'a> = std::result::Result<IncomingEvent<'a>, traqq_core::Error>;

/// A parsed request. Events are parsed straight from the request text in the same pass as the
/// envelope, borrowing their strings (no `Value` tree, no second scan).
#[derive(Debug)]
pub enum Request<'a> {
    /// `ping`.
    Ping,
    /// `auth`.
    Auth {
        /// The presented token.
        token: String,
    },
    /// `GET /healthz`.
    Health,
    /// `record`: the event, or why it is not one.
    Record(EventResult<'a>),
    /// `record_batch`: each event, or why it is not one.
    RecordBatch(Vec<EventResult<'a>>),
    /// `query` / `query_days`.
    Query {
        /// Which of the two.
        command: Command,
        /// The range.
        range: Range,
        /// Bucket, limit, filters and quantiles (`min`/`max` are set from `range`); boxed, so a
        /// request stays small beside the others.
        opts: Box<QueryOptions>,
        /// `"totals": true`: the reply is `{"days": [...], "totals": [...]}`, the totals being
        /// every metric merged over the range (unique counts as unions).
        totals: bool,
        /// `"group": "week" | "month"`: one result per ISO week or calendar month, each the
        /// group's days merged (`"day"`, the default: one per bucket, the traqq 0.2 reply).
        group: Group,
        /// `"tz"`: the time zone whose days (and weeks, months) the reply uses; `None`, the
        /// store's own (`time.timezone`).
        zone: Option<Tz>,
    },
    /// `find`.
    Find {
        /// The range.
        range: Range,
        /// Bucket, limit, filters and quantiles (boxed, as for `Query`).
        opts: Box<QueryOptions>,
        /// The selector.
        find: FindOptions,
        /// `"tz"`, as for `query`.
        zone: Option<Tz>,
    },
}

impl Request<'_> {
    /// The command of this request.
    pub fn command(&self) -> Command {
        match self {
            Request::Ping => Command::Ping,
            Request::Auth { .. } => Command::Auth,
            Request::Health => Command::Health,
            Request::Record(_) => Command::Record,
            Request::RecordBatch(_) => Command::RecordBatch,
            Request::Query { command, .. } => *command,
            Request::Find { .. } => Command::Find,
        }
    }
}

/// A query range: explicit or the last `days` days (the engine's [`QueryRange`](traqq_storage::prelude::QueryRange)).
pub use traqq_core::plan::QueryRange as Range;

/// A request that could not be parsed: the command (if known) and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// The command, or [`Command::Invalid`].
    pub command: Command,
    /// What is wrong.
    pub message: String,
}

/// `{"success":true}`, with `"data":...` when there is some.
pub(crate) fn success(command: Command, data: Option<Vec<u8>>) -> Reply {
    let mut body = Vec::with_capacity(32 + data.as_ref().map_or(0, Vec::len));
    body.extend_from_slice(br#"{"success":true"#);
    if let Some(data) = data {
        body.extend_from_slice(br#","data":"#);
        body.extend_from_slice(&data);
    }
    body.push(b'}');
    Reply {
        command,
        status: Status::Ok,
        body,
    }
}

/// `{"success":false,"error":message}`.
pub fn error_reply(command: Command, status: Status, message: &str) -> Reply {
    #[derive(Serialize)]
    struct E<'m> {
        success: bool,
        error: &'m str,
    }
    let body = serde_json::to_vec(&E {
        success: false,
        error: message,
    })
    .unwrap_or_else(|_| br#"{"success":false,"error":"internal error"}"#.to_vec());
    Reply {
        command,
        status,
        body,
    }
}

/// The reply to a request without a valid token.
pub(crate) fn unauthorized(command: Command) -> Reply {
    error_reply(
        command,
        Status::Unauthorized,
        "unauthorized: this server needs a token (TCP: send {\"cmd\":\"auth\",\"token\":\"...\"} first \
         or add a \"token\" field; HTTP: Authorization: Bearer ...)",
    )
}

/// The commands a TCP line may name, for error messages.
pub(crate) const COMMAND_LIST: &str = "record, record_batch, query, query_days, find, ping, auth";

/// The message for a batch with more than `max` events (it was not read past the limit).
pub fn batch_too_long(max: usize) -> String {
    format!("batch holds more than {max} events (server.max_batch_events = {max})")
}
