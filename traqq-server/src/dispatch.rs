//! The one dispatch behind both transports: a request (parsed from a TCP line or built from an
//! HTTP call) goes through one token check, its command (`cmd/`) and the same JSON
//! reply, and is counted in the metrics.

use std::sync::Arc;
use std::time::Instant;

use traqq_storage::Traqq;

use crate::cmd::{self, Ctx, Failure, Grouped};
use crate::metrics::Metrics;
use crate::protocol::{
    error_reply, success, unauthorized, BadRequest, Command, Reply, Request, RequestLimits, Session, Status,
};
use crate::wire::{parse_line, peek_auth};

/// Everything the dispatch needs: the engine, metrics, the token and limits.
#[derive(Debug)]
pub struct Dispatcher {
    traqq: Arc<Traqq>,
    metrics: Arc<Metrics>,
    token: Option<String>,
    limits: RequestLimits,
    max_reply_bytes: usize,
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

    /// True when requests need a token.
    pub fn auth_required(&self) -> bool {
        self.token.is_some()
    }

    /// True when `presented` is the configured token (compared in constant time).
    pub fn token_matches(&self, presented: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| cmd::token_matches(t, presented))
    }

    /// The one auth rule: no token configured, a connection that authenticated, or a request
    /// carrying the token.
    fn authorized(&self, session: &Session, token: Option<&str>) -> bool {
        !self.auth_required() || session.authed || token.is_some_and(|t| self.token_matches(t))
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            traqq: &self.traqq,
            metrics: &self.metrics,
            token: self.token.as_deref(),
            max_reply_bytes: self.max_reply_bytes,
        }
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
        if !self.authorized(session, None) {
            let (command, token) = peek_auth(line);
            if command != Some(Command::Auth) && !self.authorized(session, token.as_deref()) {
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

    /// The events of `pending` when it is an authorized `record` of a valid event or
    /// `record_batch`, which may share a storage batch with its neighbours
    /// ([`Dispatcher::answer_group`]); `None` for anything else.
    pub fn groupable_events(&self, pending: &Pending<'_>, session: &Session) -> Option<usize> {
        match &pending.parsed {
            Parse::Request(Request::Record(Ok(_)), token) if self.authorized(session, token.as_deref()) => {
                Some(1)
            }
            Parse::Request(Request::RecordBatch(events), token)
                if self.authorized(session, token.as_deref()) =>
            {
                Some(events.len())
            }
            _ => None,
        }
    }

    /// Answers one parsed line.
    pub fn answer(&self, pending: Pending<'_>, session: &mut Session) -> Reply {
        let Pending { started, parsed } = pending;
        let reply = match parsed {
            Parse::Bad(bad) => error_reply(bad.command, Status::BadRequest, &bad.message),
            Parse::Unauthorized(command) => unauthorized(command),
            Parse::Request(request, token) => {
                let is_auth = matches!(request, Request::Auth { .. });
                if is_auth || self.authorized(session, token.as_deref()) {
                    self.run_guarded(request, session)
                } else {
                    unauthorized(request.command())
                }
            }
        };
        self.metrics
            .request(reply.command, reply.status, started.elapsed());
        reply
    }

    /// Answers consecutive pipelined `record` and `record_batch` requests (each passed
    /// [`Dispatcher::groupable_events`]) with one storage batch: a group commit. Each request
    /// still gets its own reply, in order, appended to `out` with its newline, the same as if
    /// it had been recorded alone; none is acknowledged before the batch is applied, and if the
    /// store fails, every request of the group gets the error.
    pub fn answer_group(&self, group: Vec<Pending<'_>>, out: &mut Vec<u8>) {
        let requests = group
            .into_iter()
            .filter_map(|p| match p.parsed {
                Parse::Request(Request::Record(Ok(event)), _) => Some((p.started, Grouped::Record(event))),
                Parse::Request(Request::RecordBatch(events), _) => Some((p.started, Grouped::Batch(events))),
                _ => None,
            })
            .collect();
        cmd::record_group(self.ctx(), requests, out, |command, e| {
            self.storage_failure(command, e)
        });
    }

    /// Answers a request built by a transport (HTTP), after the transport's auth check.
    pub fn handle(&self, request: Result<Request<'_>, BadRequest>, session: &mut Session) -> Reply {
        let started = Instant::now();
        let reply = match request {
            Err(bad) => error_reply(bad.command, Status::BadRequest, &bad.message),
            Ok(request) if !self.authorized(session, None) => unauthorized(request.command()),
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
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cmd::run(self.ctx(), request, session)
        }));
        match answer {
            Ok(Ok(data)) => success(command, data),
            Ok(Err(Failure::Refused(status, message))) => error_reply(command, status, &message),
            Ok(Err(Failure::Store(e))) => self.storage_failure(command, &e),
            Err(_) => {
                tracing::error!(command = command.as_str(), "request handler panicked");
                error_reply(
                    command,
                    Status::Internal,
                    "internal error while handling this request (a bug, logged by the server); other requests are unaffected",
                )
            }
        }
    }

    /// The reply for a store failure: a bad query or event (from the core) is the client's
    /// (400); an unreachable store is 503, anything else 500, logged and counted.
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
}
