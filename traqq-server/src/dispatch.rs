//! The one dispatch behind both transports: a request (parsed from a TCP line or built from an
//! HTTP call) goes through the same field checks, the same engine call and the same JSON reply.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::value::RawValue;
use traqq_core::bucket::BucketKind;
use traqq_core::event::{BorrowedStr, EventLimits, IncomingEvent};
use traqq_core::key::key_set_key;
use traqq_core::plan::QueryOptions;
use traqq_core::read::Read;
use traqq_core::result::FindOptions;
use traqq_storage::Traqq;

use crate::metrics::Metrics;

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

    fn parse(name: &str) -> Option<Command> {
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

/// A parsed TCP line waiting for its answer.
#[derive(Debug)]
pub struct Pending<'a> {
    started: Instant,
    parsed: Parse<'a>,
}

/// What reading a TCP line gave.
#[derive(Debug)]
enum Parse<'a> {
    /// A request and its optional per-request `token`.
    Request(Request<'a>, Option<String>),
    /// A request that could not be parsed.
    Bad(BadRequest),
    /// A request without a valid token on a connection that has not authenticated: only its
    /// `cmd` and `token` were looked at, nothing of it was built.
    Unauthorized(Command),
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
        /// Bucket, limit and filters (`min`/`max` are set from `range`).
        opts: QueryOptions,
    },
    /// `find`.
    Find {
        /// The range.
        range: Range,
        /// Bucket, limit and filters.
        opts: QueryOptions,
        /// The selector.
        find: FindOptions,
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

/// A query range: explicit or the last `days` days (resolved by the engine's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `min` / `max`, unix seconds.
    MinMax(i64, i64),
    /// Today and `n` days back.
    Days(u32),
}

/// A request that could not be parsed: the command (if known) and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// The command, or [`Command::Invalid`].
    pub command: Command,
    /// What is wrong.
    pub message: String,
}

type Parsed<T> = std::result::Result<T, String>;

/// Request fields, from a JSON object (TCP, HTTP bodies) or URL query parameters (HTTP GET).
#[derive(Debug)]
pub enum Fields<'a> {
    /// A JSON object's members in order, values unparsed (names borrowed unless escaped; a
    /// repeated name counts once, its last value, as serde does).
    Json(Vec<(Cow<'a, str>, &'a RawValue)>),
    /// `name=value` pairs (a name may repeat, for lists).
    Params(&'a [(String, String)]),
}

fn kind_of(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

impl<'a> Fields<'a> {
    fn raw(&self, name: &str) -> Option<&'a RawValue> {
        match self {
            // `null` counts as absent, as serde's `Option` fields do in traqq 0.2.
            Fields::Json(members) => members
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, raw)| *raw)
                .filter(|r| r.get() != "null"),
            Fields::Params(_) => None,
        }
    }

    fn param(&self, name: &str) -> Option<&'a str> {
        match self {
            Fields::Params(p) => p.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str()),
            Fields::Json(_) => None,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.raw(name).is_some() || self.param(name).is_some_and(|v| !v.is_empty())
    }

    fn int(&self, name: &str) -> Parsed<Option<i64>> {
        if let Some(raw) = self.raw(name) {
            return serde_json::from_str::<i64>(raw.get()).map(Some).map_err(|_| {
                format!(
                    "field {name:?} must be an integer, found {} ({})",
                    kind_of(raw),
                    clip(raw.get())
                )
            });
        }
        match self.param(name).filter(|v| !v.is_empty()) {
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("parameter {name:?} must be an integer, found {:?}", clip(v))),
            None => Ok(None),
        }
    }

    fn timestamp(&self, name: &str) -> Parsed<Option<i64>> {
        let ts = self.int(name)?;
        // The core's range (years 1..=9999), checked here so the message names the field.
        if let Some(t) = ts.filter(|t| !traqq_core::bucket::in_supported_range(*t)) {
            return Err(format!(
                "{name:?} = {t} is out of range (unix seconds between {} and {})",
                traqq_core::bucket::MIN_TIMESTAMP,
                traqq_core::bucket::MAX_TIMESTAMP
            ));
        }
        Ok(ts)
    }

    fn string(&self, name: &str) -> Parsed<Option<String>> {
        if let Some(raw) = self.raw(name) {
            return serde_json::from_str::<String>(raw.get())
                .map(Some)
                .map_err(|_| format!("field {name:?} must be a string, found {}", kind_of(raw)));
        }
        Ok(self.param(name).map(str::to_owned))
    }

    fn boolean(&self, name: &str) -> Parsed<Option<bool>> {
        if let Some(raw) = self.raw(name) {
            return serde_json::from_str::<bool>(raw.get())
                .map(Some)
                .map_err(|_| format!("field {name:?} must be true or false, found {}", kind_of(raw)));
        }
        match self.param(name) {
            None | Some("") => Ok(None),
            Some("true" | "1" | "yes") => Ok(Some(true)),
            Some("false" | "0" | "no") => Ok(Some(false)),
            Some(v) => Err(format!(
                "parameter {name:?} must be true or false, found {:?}",
                clip(v)
            )),
        }
    }

    fn list(&self, name: &str) -> Parsed<Vec<String>> {
        if let Some(raw) = self.raw(name) {
            if let Ok(one) = serde_json::from_str::<String>(raw.get()) {
                return Ok(vec![one]);
            }
            return serde_json::from_str::<Vec<String>>(raw.get()).map_err(|_| {
                format!(
                    "field {name:?} must be a list of glob strings, found {}",
                    kind_of(raw)
                )
            });
        }
        match self {
            Fields::Params(p) => Ok(p
                .iter()
                .filter(|(n, v)| n == name && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect()),
            Fields::Json(_) => Ok(Vec::new()),
        }
    }

    fn required<T>(&self, name: &str, value: Parsed<Option<T>>) -> Parsed<T> {
        value?.ok_or_else(|| format!("missing field {name:?}"))
    }
}

/// At most 60 characters of a value, for error messages.
fn clip(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Everything the dispatch needs: the engine, metrics, the token and limits.
#[derive(Debug)]
pub struct Dispatcher {
    traqq: Arc<Traqq>,
    metrics: Arc<Metrics>,
    token: Option<String>,
    limits: RequestLimits,
    max_reply_bytes: usize,
}

impl Dispatcher {
    /// A dispatcher over `traqq`; events are parsed within the engine's `[limits]`.
    pub fn new(
        traqq: Arc<Traqq>,
        metrics: Arc<Metrics>,
        token: Option<String>,
        max_batch_events: usize,
    ) -> Self {
        let limits = RequestLimits {
            max_batch_events,
            event: traqq.event_limits(),
        };
        Dispatcher {
            traqq,
            metrics,
            token,
            limits,
            max_reply_bytes: usize::MAX,
        }
    }

    /// Caps the size of a query's answer (`server.max_reply_bytes`; unlimited by default).
    pub fn with_max_reply_bytes(mut self, max_reply_bytes: usize) -> Self {
        self.max_reply_bytes = max_reply_bytes;
        self
    }

    /// What one request may hold.
    pub fn limits(&self) -> RequestLimits {
        self.limits
    }

    /// The engine.
    pub fn traqq(&self) -> &Arc<Traqq> {
        &self.traqq
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// True when `presented` is the configured token (compared in constant time).
    pub fn token_matches(&self, presented: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
    }

    /// True when requests need a token.
    pub fn auth_required(&self) -> bool {
        self.token.is_some()
    }

    /// Answers one TCP line (without its newline). Never fails: every problem is a reply.
    pub fn handle_line(&self, line: &[u8], session: &mut Session) -> Reply {
        let pending = self.parse(line, session);
        self.answer(pending, session)
    }

    /// Parses one TCP line (without its newline); [`Dispatcher::answer`] answers it.
    pub fn parse<'l>(&self, line: &'l [u8], session: &Session) -> Pending<'l> {
        self.parse_at(line, session, Instant::now())
    }

    /// [`Dispatcher::parse`] for a line that arrived at `started` (its latency is counted from
    /// there): lines read together share one clock read.
    ///
    /// On a server with a token, a line from a connection that has not authenticated is first
    /// only scanned for its `cmd` and `token` (nothing allocated); unless it is `auth` or
    /// carries the right token, it is refused without being parsed.
    pub fn parse_at<'l>(&self, line: &'l [u8], session: &Session, started: Instant) -> Pending<'l> {
        if self.auth_required() && !session.authed {
            let (command, token) = peek_auth(line);
            let allowed =
                command == Some(Command::Auth) || token.as_deref().is_some_and(|t| self.token_matches(t));
            if !allowed {
                return Pending {
                    started,
                    parsed: Parse::Unauthorized(command.unwrap_or(Command::Invalid)),
                };
            }
        }
        let parsed = match parse_line(line, self.limits) {
            Ok((request, token)) => Parse::Request(request, token),
            Err(bad) => Parse::Bad(bad),
        };
        Pending { started, parsed }
    }

    /// True when `pending` is a valid, authorized `record` that may share a storage batch with
    /// its neighbours ([`Dispatcher::answer_records`]).
    pub fn is_plain_record(&self, pending: &Pending<'_>, session: &Session) -> bool {
        match &pending.parsed {
            Parse::Request(Request::Record(Ok(_)), token) => {
                !self.auth_required()
                    || session.authed
                    || token.as_deref().is_some_and(|t| self.token_matches(t))
            }
            _ => false,
        }
    }

    /// Answers one parsed line.
    pub fn answer(&self, pending: Pending<'_>, session: &mut Session) -> Reply {
        let Pending { started, parsed } = pending;
        let reply = match parsed {
            Parse::Bad(bad) => error_reply(bad.command, Status::BadRequest, &bad.message),
            Parse::Unauthorized(command) => unauthorized(command),
            Parse::Request(request, token) => {
                let command = request.command();
                if !matches!(request, Request::Auth { .. })
                    && self.auth_required()
                    && !session.authed
                    && !token.as_deref().is_some_and(|t| self.token_matches(t))
                {
                    unauthorized(command)
                } else {
                    self.run_guarded(request, session)
                }
            }
        };
        self.metrics
            .request(reply.command, reply.status, started.elapsed());
        reply
    }

    /// Answers consecutive pipelined `record` requests (each passed
    /// [`Dispatcher::is_plain_record`]) with one storage batch: a group commit. Each request
    /// still gets its own reply, in order, appended to `out` with its newline; none is
    /// acknowledged before the batch is applied, and if the store fails, every request of the
    /// group gets the error.
    pub fn answer_records(&self, group: Vec<Pending<'_>>, out: &mut Vec<u8>) {
        const OK: &[u8] = b"{\"success\":true}\n";
        let mut started = Vec::with_capacity(group.len());
        let mut events = Vec::with_capacity(group.len());
        for p in group {
            started.push(p.started);
            if let Parse::Request(Request::Record(Ok(event)), _) = p.parsed {
                events.push(event);
            }
        }
        let n = events.len();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.traqq.record_results(events.into_iter().map(Ok))
        }));
        // The failure shared by the whole group, if any.
        let failed = match result {
            Ok(Ok(outcome)) => {
                self.metrics.events(outcome.recorded, outcome.rejected.len());
                // `rejected` is in index order: walk it alongside.
                let mut rejected = outcome.rejected.into_iter().peekable();
                for (i, started) in started.into_iter().enumerate().take(n) {
                    match rejected.next_if(|r| r.index == i) {
                        None => {
                            out.extend_from_slice(OK);
                            self.metrics
                                .request(Command::Record, Status::Ok, started.elapsed());
                        }
                        Some(r) => {
                            let reply =
                                error_reply(Command::Record, Status::BadRequest, &r.error.to_string());
                            out.extend_from_slice(&reply.body);
                            out.push(b'\n');
                            self.metrics
                                .request(Command::Record, Status::BadRequest, started.elapsed());
                        }
                    }
                }
                return;
            }
            Ok(Err(e)) => self.storage_failure(Command::Record, &e),
            Err(_) => {
                tracing::error!("record group panicked");
                error_reply(
                    Command::Record,
                    Status::Internal,
                    "internal error while handling this request (a bug, logged by the server)",
                )
            }
        };
        for started in started.into_iter().take(n) {
            out.extend_from_slice(&failed.body);
            out.push(b'\n');
            self.metrics
                .request(failed.command, failed.status, started.elapsed());
        }
    }

    fn storage_failure(&self, command: Command, e: &traqq_storage::Error) -> Reply {
        if let traqq_storage::Error::Core(core) = e {
            return error_reply(command, Status::BadRequest, &core.to_string());
        }
        self.metrics.storage_error();
        let status = if e.is_unavailable() {
            Status::Unavailable
        } else {
            Status::Internal
        };
        tracing::warn!(command = command.as_str(), error = %e, "storage error");
        error_reply(command, status, &e.to_string())
    }

    /// Answers a request built by a transport (HTTP), after the transport's auth check.
    pub fn handle(
        &self,
        request: std::result::Result<Request<'_>, BadRequest>,
        session: &mut Session,
    ) -> Reply {
        let started = Instant::now();
        let reply = match request {
            Err(bad) => error_reply(bad.command, Status::BadRequest, &bad.message),
            Ok(request) if self.auth_required() && !session.authed => unauthorized(request.command()),
            Ok(request) => self.run_guarded(request, session),
        };
        self.metrics
            .request(reply.command, reply.status, started.elapsed());
        reply
    }

    /// Runs a request; a panic below (a bug in the engine or a backend) becomes an error
    /// reply for this request instead of taking the connection down.
    fn run_guarded(&self, request: Request<'_>, session: &mut Session) -> Reply {
        let command = request.command();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(request, session))).unwrap_or_else(|_| {
            tracing::error!(command = command.as_str(), "request handler panicked");
            error_reply(
                command,
                Status::Internal,
                "internal error while handling this request (a bug, logged by the server); other requests are unaffected",
            )
        })
    }

    fn run(&self, request: Request<'_>, session: &mut Session) -> Reply {
        let command = request.command();
        let result: std::result::Result<Option<Vec<u8>>, traqq_storage::Error> = match request {
            Request::Ping => Ok(Some(br#""pong""#.to_vec())),
            Request::Auth { token } => {
                if !self.auth_required() {
                    Ok(None)
                } else if self.token_matches(&token) {
                    session.authed = true;
                    session.auth_failures = 0;
                    Ok(None)
                } else {
                    session.authed = false;
                    session.auth_failures = session.auth_failures.saturating_add(1);
                    let message = if session.should_close() {
                        "invalid token; too many wrong tokens on this connection: closing it"
                    } else {
                        "invalid token"
                    };
                    return error_reply(command, Status::Unauthorized, message);
                }
            }
            Request::Health => {
                let probe = key_set_key(self.traqq.prefix(), BucketKind::Day, 0);
                self.traqq
                    .storage()
                    .read(&[Read::Members(probe)])
                    .map(|_| Some(br#""ok""#.to_vec()))
            }
            Request::Record(event) => match event {
                Err(e) => {
                    self.metrics.events(0, 1);
                    return error_reply(command, Status::BadRequest, &e.to_string());
                }
                Ok(event) => self.traqq.record(event).map(|()| {
                    self.metrics.events(1, 0);
                    None
                }),
            },
            Request::RecordBatch(events) => self
                .traqq
                .record_results(events.into_iter().map(|e| e.map_err(traqq_storage::Error::from)))
                .map(|outcome| {
                    self.metrics.events(outcome.recorded, outcome.rejected.len());
                    #[derive(Serialize)]
                    struct Rej {
                        index: usize,
                        error: String,
                    }
                    #[derive(Serialize)]
                    struct Out {
                        recorded: usize,
                        rejected: Vec<Rej>,
                    }
                    to_json(&Out {
                        recorded: outcome.recorded,
                        rejected: outcome
                            .rejected
                            .into_iter()
                            .map(|r| Rej {
                                index: r.index,
                                error: r.error.to_string(),
                            })
                            .collect(),
                    })
                }),
            Request::Query { range, opts, .. } => self
                .query(range, opts)
                .and_then(|result| self.answer_json(&result.days)),
            Request::Find { range, opts, find } => self.query(range, opts).and_then(|result| {
                let found = result.try_find(&find)?;
                self.answer_json(&found)
            }),
        };
        match result {
            Ok(data) => {
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
            Err(e) => self.storage_failure(command, &e),
        }
    }

    /// A query's answer as JSON, or an error once it passes `server.max_reply_bytes`
    /// (serializing stops there: a huge answer never doubles in memory as text).
    fn answer_json<T: Serialize>(&self, value: &T) -> traqq_storage::Result<Option<Vec<u8>>> {
        let limit = self.max_reply_bytes;
        let mut out = CappedWriter {
            buf: Vec::new(),
            limit,
        };
        match serde_json::to_writer(&mut out, value) {
            Ok(()) => Ok(Some(out.buf)),
            Err(_) => Err(traqq_core::Error::Query(format!(
                "the answer is larger than server.max_reply_bytes = {limit} bytes; ask for fewer days, \
                 one metric (find), a lower \"limit\", or accept/ignore filters"
            ))
            .into()),
        }
    }

    fn query(
        &self,
        range: Range,
        mut opts: QueryOptions,
    ) -> traqq_storage::Result<traqq_core::result::QueryResult> {
        match range {
            Range::MinMax(min, max) => {
                opts.min = min;
                opts.max = max;
            }
            Range::Days(days) => {
                let max_buckets = self.traqq.config().query.max_buckets;
                if days as usize >= max_buckets {
                    return Err(traqq_core::Error::Query(format!(
                        "days = {days} asks for {} daily buckets, more than query.max_buckets = {max_buckets}",
                        u64::from(days) + 1
                    ))
                    .into());
                }
                (opts.min, opts.max) = self.traqq.days_range(days);
            }
        }
        self.traqq.query_with(&opts)
    }
}

/// A `Vec` that refuses to grow past `limit` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other("reply too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn to_json<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    // Serializing our own result types cannot fail (string keys, finite or null floats).
    Some(serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec()))
}

fn unauthorized(command: Command) -> Reply {
    error_reply(
        command,
        Status::Unauthorized,
        "unauthorized: this server needs a token (TCP: send {\"cmd\":\"auth\",\"token\":\"...\"} first \
         or add a \"token\" field; HTTP: Authorization: Bearer ...)",
    )
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

/// Compares `presented` with `secret` without an early exit. The loop runs over the presented
/// bytes only, so the time taken depends on what the client sent, never on the secret's length
/// or on how much of a guess was right.
fn constant_time_eq(secret: &[u8], presented: &[u8]) -> bool {
    let mut diff = u8::from(secret.len() != presented.len());
    for (i, &y) in presented.iter().enumerate() {
        // Past the secret's end, compare with a byte of it anyway (the length already differs).
        let x = match secret.len() {
            0 => 0,
            n => secret[i % n],
        };
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The `cmd` and `token` of a request line, found by a scan that builds nothing else (for the
/// auth check before parsing). Unreadable parts count as absent.
fn peek_auth(line: &[u8]) -> (Option<Command>, Option<String>) {
    #[derive(Default)]
    struct AuthFields {
        cmd: Option<Command>,
        token: Option<String>,
    }
    struct Peek;
    impl<'de> Visitor<'de> for Peek {
        type Value = AuthFields;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<AuthFields, A::Error> {
            let mut found = AuthFields::default();
            while let Some(key) = map.next_key_seed(BorrowedStr)? {
                match &*key {
                    "cmd" => {
                        found.cmd = map
                            .next_value_seed(KindOr(BorrowedText))?
                            .ok()
                            .and_then(|c: Cow<'_, str>| Command::parse(&c));
                    }
                    "token" => {
                        found.token = map
                            .next_value_seed(KindOr(BorrowedText))?
                            .ok()
                            .map(Cow::into_owned)
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(line);
    match de.deserialize_map(Peek) {
        Ok(found) => (found.cmd, found.token),
        Err(_) => (None, None),
    }
}

/// A string value borrowed from the input, through [`KindOr`] (other kinds are named).
#[derive(Debug, Clone, Copy)]
struct BorrowedText;

const COMMAND_LIST: &str = "record, record_batch, query, query_days, find, ping, auth";

/// Parses one TCP line: UTF-8, a JSON object, a known `cmd`, well-typed fields, events within
/// `limits`. Returns the request and the optional per-request `token`.
pub fn parse_line(
    line: &[u8],
    limits: RequestLimits,
) -> std::result::Result<(Request<'_>, Option<String>), BadRequest> {
    let bad = |command, message: String| BadRequest { command, message };
    let text = std::str::from_utf8(line).map_err(|e| {
        bad(
            Command::Invalid,
            format!(
                "request is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let envelope = parse_envelope(text, limits).map_err(|m| bad(Command::Invalid, m))?;
    let fields = Fields::Json(envelope.fields);
    let cmd = match fields.raw("cmd") {
        None => {
            return Err(bad(
                Command::Invalid,
                format!("missing field \"cmd\" (one of {COMMAND_LIST})"),
            ))
        }
        Some(raw) => {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            BorrowedStr.deserialize(&mut de).map_err(|_| {
                bad(
                    Command::Invalid,
                    format!("field \"cmd\" must be a string, found {}", kind_of(raw)),
                )
            })?
        }
    };
    let command = Command::parse(&cmd).ok_or_else(|| {
        bad(
            Command::Invalid,
            format!("unknown cmd {:?} (expected one of {COMMAND_LIST})", clip(&cmd)),
        )
    })?;
    let token = fields.string("token").map_err(|m| bad(command, m))?;
    let request = match command {
        Command::Record => match envelope.event {
            None | Some(Err("null")) => Err("missing field \"event\" (the event object)".to_owned()),
            Some(Err(kind)) => Err(format!("field \"event\" must be a JSON object, found {kind}")),
            Some(Ok(event)) => Ok(Request::Record(event.validate())),
        },
        Command::RecordBatch => match envelope.events {
            None | Some(Err("null")) => Err("missing field \"events\" (a list of event objects)".to_owned()),
            Some(Err(kind)) => Err(format!(
                "field \"events\" must be a JSON array of event objects, found {kind}"
            )),
            Some(Ok(list)) => Ok(Request::RecordBatch(list)),
        },
        _ => parse_fields(command, &fields),
    }
    .map_err(|m| bad(command, m))?;
    Ok((request, token))
}

/// Element of a parsed list: the event (validated), or an error naming what it was instead.
pub fn checked_event(parsed: Parsed1<'_>) -> EventResult<'_> {
    match parsed {
        Ok(event) => event.validate(),
        Err(kind) => Err(traqq_core::Error::Json(format!(
            "expected a JSON object, found {kind}"
        ))),
    }
}

/// An event or a list of events as parsed in place: `Err(kind)` when the JSON value was
/// something else (`"a string"`, `"null"`, ...).
pub type Parsed1<'a> = std::result::Result<IncomingEvent<'a>, &'static str>;
/// A list of events, each already through [`checked_event`] (one pass, one vector), or
/// `Err(kind)` when the value was not a list.
pub type ParsedList<'a> = std::result::Result<Vec<EventResult<'a>>, &'static str>;

/// A request line parsed in one pass: plain fields kept as raw JSON, `event`/`events` parsed
/// into events on the way (so a 1,000-event batch is scanned once, not three times).
#[derive(Debug, Default)]
struct Envelope<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    event: Option<Parsed1<'a>>,
    events: Option<ParsedList<'a>>,
}

fn parse_envelope(text: &str, limits: RequestLimits) -> Parsed<Envelope<'_>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de
        .deserialize_map(EnvelopeVisitor(limits))
        .and_then(|env| de.end().map(|()| env));
    parsed.map_err(|e| describe_json_error(text, "request", &e))
}

/// A clear message for a document that did not parse as the object wanted.
pub fn describe_json_error(text: &str, what: &str, e: &serde_json::Error) -> String {
    if e.to_string().contains("recursion limit") {
        return format!("{what} is nested too deeply (serde_json's recursion limit is 128 levels)");
    }
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) if !raw.get().starts_with('{') && !raw.get().starts_with('[') => {
            format!("{what} must be a JSON object, found {}", kind_of(raw))
        }
        Ok(raw) if what == "request" && raw.get().starts_with('[') => {
            format!("{what} must be a JSON object, found an array")
        }
        // A limit met inside the object (too many events or properties): the seeds' message.
        Ok(_) if e.classify() == serde_json::error::Category::Data => format!("{what} refused: {e}"),
        _ => format!("malformed JSON {what}: {e}"),
    }
}

struct EnvelopeVisitor(RequestLimits);

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Envelope<'de>, A::Error> {
        let mut env = Envelope::default();
        while let Some(key) = map.next_key_seed(BorrowedStr)? {
            match &*key {
                "event" => env.event = Some(map.next_value_seed(EventSeed(self.0.event))?),
                "events" => env.events = Some(map.next_value_seed(EventsSeed(self.0))?),
                _ => {
                    let raw: &RawValue = map.next_value()?;
                    env.fields.push((key, raw));
                }
            }
        }
        Ok(env)
    }
}

/// One event within its limits: an object becomes an [`IncomingEvent`]; any other value is
/// consumed and named, so one bad element does not spoil its batch.
#[derive(Debug, Clone, Copy)]
pub struct EventSeed(pub EventLimits);

impl<'de> DeserializeSeed<'de> for EventSeed {
    type Value = Parsed1<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(KindOr(self))
    }
}

/// A list of at most `max_batch_events` events; any other value is consumed and named. One
/// element past the limit stops the parse with an error naming it: the rest of the list is
/// never read, let alone built.
#[derive(Debug, Clone, Copy)]
pub struct EventsSeed(pub RequestLimits);

impl<'de> DeserializeSeed<'de> for EventsSeed {
    type Value = ParsedList<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(KindOr(self))
    }
}

/// Visits any JSON value: the wanted shape goes to the inner seed, other kinds are named.
struct KindOr<S>(S);

impl<'de, S: Wanted<'de>> DeserializeSeed<'de> for KindOr<S> {
    type Value = Kinded<S::Out>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

type Kinded<T> = std::result::Result<T, &'static str>;

trait Wanted<'de>: Sized {
    type Out;
    fn map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Kinded<Self::Out>, A::Error>;
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Kinded<Self::Out>, A::Error>;
    /// A string, when strings are wanted (`None`: named as "a string").
    fn borrowed_str(self, _: &'de str) -> Option<Self::Out> {
        None
    }
    /// An escaped string, when strings are wanted.
    fn owned_str(self, _: &str) -> Option<Self::Out> {
        None
    }
}

impl<'de> Wanted<'de> for EventSeed {
    type Out = IncomingEvent<'de>;
    fn map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        self.0.deserialize(MapAccessDeserializer::new(map)).map(Ok)
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err("an array"))
    }
}

impl<'de> Wanted<'de> for EventsSeed {
    type Out = Vec<EventResult<'de>>;
    fn map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err("an object"))
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        let max = self.0.max_batch_events;
        let mut out = Vec::new();
        while let Some(e) = seq.next_element_seed(EventSeed(self.0.event))? {
            out.push(checked_event(e));
            if out.len() == max {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(batch_too_long(max)));
                }
                break;
            }
        }
        Ok(Ok(out))
    }
}

impl<'de> Wanted<'de> for BorrowedText {
    type Out = Cow<'de, str>;
    fn map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err("an object"))
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err("an array"))
    }
    fn borrowed_str(self, v: &'de str) -> Option<Self::Out> {
        Some(Cow::Borrowed(v))
    }
    fn owned_str(self, v: &str) -> Option<Self::Out> {
        Some(Cow::Owned(v.to_owned()))
    }
}

impl<'de, S: Wanted<'de>> Visitor<'de> for KindOr<S> {
    type Value = Kinded<S::Out>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Value, A::Error> {
        self.0.map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Self::Value, A::Error> {
        self.0.seq(seq)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(Err("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(self.0.borrowed_str(v).ok_or("a string"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(self.0.owned_str(v).ok_or("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(Err("null"))
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(Err("null"))
    }
}

/// Builds a request of `command` from its fields (shared by TCP lines and HTTP calls).
pub fn parse_fields<'a>(command: Command, fields: &Fields<'a>) -> Parsed<Request<'a>> {
    Ok(match command {
        Command::Ping => Request::Ping,
        Command::Health => Request::Health,
        Command::Auth => Request::Auth {
            token: fields.required("token", fields.string("token"))?,
        },
        // Events come from the request body (TCP: parsed with the envelope; HTTP: the POST body).
        Command::Record | Command::RecordBatch => {
            return Err(format!(
                "{} takes its events from the request body",
                command.as_str()
            ))
        }
        Command::Query | Command::QueryDays | Command::Find => {
            let range = if command == Command::QueryDays || (command == Command::Find && fields.has("days")) {
                if fields.has("min") || fields.has("max") {
                    return Err("give either \"days\" or \"min\"/\"max\", not both".into());
                }
                let days = fields.required("days", fields.int("days"))?;
                Range::Days(u32::try_from(days).map_err(|_| {
                    if days < 0 {
                        format!("\"days\" must be 0 or more, found {days}")
                    } else {
                        format!("\"days\" = {days} is too large")
                    }
                })?)
            } else {
                let (min, max) = (fields.timestamp("min")?, fields.timestamp("max")?);
                match (min, max) {
                    (Some(min), Some(max)) if min > max => {
                        return Err(format!("\"min\" ({min}) is after \"max\" ({max})"))
                    }
                    (Some(min), Some(max)) => Range::MinMax(min, max),
                    _ if command == Command::Find => {
                        return Err("find needs either \"days\" or both \"min\" and \"max\"".into())
                    }
                    (None, _) => return Err("missing field \"min\"".into()),
                    (_, None) => return Err("missing field \"max\"".into()),
                }
            };
            let bucket = match fields.string("bucket")? {
                None => BucketKind::Day,
                Some(b) => BucketKind::parse(&b)
                    .ok_or_else(|| format!("\"bucket\" must be \"d\" or \"h\", found {:?}", clip(&b)))?,
            };
            let limit = match fields.int("limit")? {
                None => None,
                Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                Some(n) => return Err(format!("\"limit\" must be at least 1, found {n}")),
            };
            let opts = QueryOptions {
                bucket,
                limit,
                accept: fields.list("accept")?,
                ignore: fields.list("ignore")?,
                ..QueryOptions::default()
            };
            if command != Command::Find {
                return Ok(Request::Query { command, range, opts });
            }
            let metric_type = fields.required("metric_type", fields.string("metric_type"))?;
            FindOptions {
                metric_type: metric_type.clone(),
                ..FindOptions::default()
            }
            .validate()
            .map_err(|e| e.to_string().replace("invalid query: ", ""))?;
            let key = fields.required("key", fields.string("key"))?;
            if key.trim().is_empty() {
                return Err("field \"key\" is empty (a pattern such as \"event~geo\")".into());
            }
            Request::Find {
                range,
                opts,
                find: FindOptions {
                    metric_type,
                    key,
                    add_key: fields.string("add_key")?.filter(|k| !k.is_empty()),
                    merge: fields.boolean("merge")?.unwrap_or(false),
                },
            }
        }
        Command::Invalid => return Err("invalid request".into()),
    })
}

/// The message for a batch with more than `max` events (it was not read past the limit).
pub fn batch_too_long(max: usize) -> String {
    format!("batch holds more than {max} events (server.max_batch_events = {max})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    const LIMITS: RequestLimits = RequestLimits {
        max_batch_events: 10,
        event: EventLimits {
            max_properties: 1000,
            max_name_length: 128,
        },
    };

    fn err(line: &str) -> String {
        parse_line(line.as_bytes(), LIMITS).unwrap_err().message
    }

    #[test]
    fn parse_errors_are_clear() {
        assert!(err("{").starts_with("malformed JSON request"));
        assert_eq!(err("[1]"), "request must be a JSON object, found an array");
        assert_eq!(err("\"x\""), "request must be a JSON object, found a string");
        assert!(err("{}").starts_with("missing field \"cmd\""));
        assert_eq!(
            err(r#"{"cmd":5}"#),
            "field \"cmd\" must be a string, found a number"
        );
        assert!(err(r#"{"cmd":"nope"}"#).starts_with("unknown cmd \"nope\""));
        assert!(err(r#"{"cmd":"record"}"#).starts_with("missing field \"event\""));
        assert_eq!(
            err(r#"{"cmd":"record","event":"x"}"#),
            "field \"event\" must be a JSON object, found a string"
        );
        assert_eq!(
            err(r#"{"cmd":"query","min":5,"max":1}"#),
            "\"min\" (5) is after \"max\" (1)"
        );
        assert_eq!(
            err(r#"{"cmd":"query","min":"a","max":1}"#),
            "field \"min\" must be an integer, found a string (\"a\")"
        );
        assert_eq!(
            err(r#"{"cmd":"query_days","days":-1}"#),
            "\"days\" must be 0 or more, found -1"
        );
        assert!(err(r#"{"cmd":"query","min":1,"max":1e300}"#).contains("must be an integer"));
        assert!(err(r#"{"cmd":"query","min":-9223372036854775808,"max":1}"#).contains("out of range"));
        assert!(
            err(r#"{"cmd":"record_batch","events":[{},{},{},{},{},{},{},{},{},{},{}]}"#)
                .contains("server.max_batch_events = 10")
        );
        assert!(
            err(r#"{"cmd":"find","days":1,"metric_type":"xyz","key":"a"}"#).contains("unknown metric type")
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        // Raw values are skipped without recursion, so depth alone is no problem here; the
        // event parser enforces serde_json's limit (see the integration tests).
        assert_eq!(err(&deep), "request must be a JSON object, found an array");
        assert!(parse_line(b"{\"cmd\":\"ping\",\"x\":\"\xff\"}", LIMITS)
            .unwrap_err()
            .message
            .contains("UTF-8"));
    }

    #[test]
    fn traqq_02_requests_parse() {
        let (r, _) = parse_line(br#"{"cmd":"query","min":1700000000,"max":1700086400}"#, LIMITS).unwrap();
        assert!(matches!(
            r,
            Request::Query {
                range: Range::MinMax(1_700_000_000, 1_700_086_400),
                ..
            }
        ));
        let (r, _) = parse_line(
            br#"{"cmd":"find","min":1,"max":2,"metric_type":"add","key":"event","add_key":null,"merge":true}"#,
            LIMITS,
        )
        .unwrap();
        let Request::Find { find, .. } = r else { panic!() };
        assert!(find.merge && find.add_key.is_none());
        let (r, t) = parse_line(
            br#"{"cmd":"query_days","days":7,"bucket":"h","token":"t","accept":"add:*"}"#,
            LIMITS,
        )
        .unwrap();
        assert_eq!(t.as_deref(), Some("t"));
        let Request::Query { opts, range, .. } = r else {
            panic!()
        };
        assert_eq!(
            (opts.bucket, range, opts.accept),
            (BucketKind::Hour, Range::Days(7), vec!["add:*".to_string()])
        );
    }
}
