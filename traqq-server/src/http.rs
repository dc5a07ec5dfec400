//! The HTTP API: the same requests as TCP, built from paths, query strings and bodies, then
//! answered by the same [`Dispatcher`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use serde::de::DeserializeSeed;
use traqq_core::event::IncomingEvent;

use crate::dispatch::{
    batch_too_long, describe_json_error, error_reply, parse_fields, BadRequest, Command, Dispatcher,
    EventsSeed, Fields, Reply, Request, RequestLimits, Session, Status,
};
use crate::metrics::Metrics;

#[derive(Debug)]
struct HttpState {
    dispatcher: Arc<Dispatcher>,
    max_body_bytes: usize,
}

type Shared = State<Arc<HttpState>>;
type Params = Vec<(String, String)>;

/// The router: `POST /v1/events`, `GET /v1/query`, `GET /v1/find`, `GET /healthz`, `GET /metrics`.
///
/// The API routes sit behind [`require_token`], which runs before any body is read.
pub(crate) fn router(dispatcher: Arc<Dispatcher>, max_body_bytes: usize) -> Router {
    let state = Arc::new(HttpState {
        dispatcher,
        max_body_bytes,
    });
    let api = Router::new()
        .route("/v1/events", post(events))
        .route("/v1/query", get(query))
        .route("/v1/find", get(find))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ));
    Router::new()
        // The dashboard page (traqq-dashboard): static, reads the API below like any client.
        .route(
            "/",
            get(|| async { axum::response::Html(traqq_dashboard::INDEX_HTML) }),
        )
        .route("/healthz", get(healthz))
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The one auth check of the HTTP API, before the body is read: without the token a request
/// costs its head only, whatever body it announces.
async fn require_token(
    State(state): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !state.dispatcher.auth_required() || session(&state, request.headers()).authed {
        return next.run(request).await;
    }
    let command = match request.uri().path() {
        "/v1/events" => Command::RecordBatch,
        "/v1/query" => Command::Query,
        "/v1/find" => Command::Find,
        _ => Command::Invalid,
    };
    let reply = error_reply(
        command,
        Status::Unauthorized,
        "unauthorized: send Authorization: Bearer <server.auth_token>",
    );
    state
        .dispatcher
        .metrics()
        .request(command, Status::Unauthorized, Duration::ZERO);
    let mut response = respond(reply);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"traqq\""),
    );
    response
}

fn session(state: &HttpState, headers: &HeaderMap) -> Session {
    let authed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && state.dispatcher.token_matches(token.trim())
        });
    Session {
        authed,
        ..Session::default()
    }
}

fn respond(reply: Reply) -> Response {
    let code = StatusCode::from_u16(reply.status.http_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [(header::CONTENT_TYPE, "application/json")], reply.body).into_response()
}

fn bad(command: Command, message: String) -> Response {
    respond(error_reply(command, Status::BadRequest, &message))
}

/// Runs the dispatch on the blocking pool and turns its reply into a response. The request
/// has been read in full: until the reply is ready the connection is busy, not idle.
async fn dispatch_blocking<F>(state: &HttpState, conn: &Conn, command: Command, work: F) -> Response
where
    F: FnOnce(&Dispatcher) -> Reply + Send + 'static,
{
    let _busy = BusyGuard::new(conn);
    let d = Arc::clone(&state.dispatcher);
    match tokio::task::spawn_blocking(move || work(&d)).await {
        Ok(reply) => respond(reply),
        Err(e) => {
            tracing::error!(error = %e, "request handler failed");
            respond(error_reply(command, Status::Internal, "internal error"))
        }
    }
}

async fn events(
    State(state): Shared,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let reply = error_reply(
                Command::RecordBatch,
                Status::BadRequest,
                &format!(
                    "request body larger than server.max_body_bytes = {} bytes",
                    state.max_body_bytes
                ),
            );
            let mut response = respond(reply);
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return response;
        }
        Err(rejection) => return bad(Command::RecordBatch, rejection.body_text()),
    };
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson") || v.contains("jsonlines") || v.contains("json-seq"));
    let mut session = session(&state, &headers);
    dispatch_blocking(&state, &conn, Command::RecordBatch, move |d| {
        d.handle(events_request(&body, ndjson, d.limits()), &mut session)
    })
    .await
}

/// Parses a `POST /v1/events` body: one object, an array of objects, or NDJSON (`ndjson`: the
/// content type said so), within `limits`. Never panics, whatever the bytes.
pub fn events_request(body: &[u8], ndjson: bool, limits: RequestLimits) -> Result<Request<'_>, BadRequest> {
    let fail = |command, message| BadRequest { command, message };
    let text = std::str::from_utf8(body).map_err(|e| {
        fail(
            Command::RecordBatch,
            format!(
                "request body is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    // NDJSON: lines are parsed one by one and counted as they go; one line past the limit
    // stops the request before anything past it is read.
    let lines = || -> Result<Request<'_>, BadRequest> {
        let mut events = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if events.len() == limits.max_batch_events {
                return Err(fail(
                    Command::RecordBatch,
                    batch_too_long(limits.max_batch_events),
                ));
            }
            events.push(IncomingEvent::parse_str_with(line, limits.event));
        }
        Ok(Request::RecordBatch(events))
    };
    if ndjson {
        return lines();
    }
    match text.trim_start().as_bytes().first() {
        Some(b'{') => match IncomingEvent::parse_str_with(text.trim(), limits.event) {
            // Several objects one per line without the NDJSON content type: still NDJSON.
            Err(traqq_core::Error::Json(m)) if m.contains("trailing characters") => lines(),
            // Anything else is this one event's verdict (a parse error counts as a rejected event).
            parsed => Ok(Request::Record(parsed)),
        },
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_str(text);
            let list = EventsSeed(limits)
                .deserialize(&mut de)
                .and_then(|list| de.end().map(|()| list))
                .map_err(|e| {
                    fail(
                        Command::RecordBatch,
                        describe_json_error(text, "request body", &e),
                    )
                })?
                .map_err(|kind| fail(Command::RecordBatch, format!("request body is {kind}")))?;
            Ok(Request::RecordBatch(list))
        }
        _ => Err(fail(
            Command::RecordBatch,
            "request body must be a JSON event object, a JSON array of event objects, or NDJSON \
             (Content-Type: application/x-ndjson)"
                .into(),
        )),
    }
}

async fn query(
    State(state): Shared,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(rejection) => return bad(Command::Query, rejection.body_text()),
    };
    let command = if params.iter().any(|(n, v)| n == "days" && !v.is_empty()) {
        Command::QueryDays
    } else {
        Command::Query
    };
    run_params(&state, &conn, &headers, command, params).await
}

async fn find(
    State(state): Shared,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(rejection) => return bad(Command::Find, rejection.body_text()),
    };
    run_params(&state, &conn, &headers, Command::Find, params).await
}

async fn run_params(
    state: &HttpState,
    conn: &Conn,
    headers: &HeaderMap,
    command: Command,
    params: Params,
) -> Response {
    let mut session = session(state, headers);
    dispatch_blocking(state, conn, command, move |d| {
        let request = parse_fields(command, &Fields::Params(&params))
            .map_err(|message| BadRequest { command, message });
        d.handle(request, &mut session)
    })
    .await
}

/// Liveness plus a storage round trip: 503 when the store is down. Needs no token.
async fn healthz(State(state): Shared, ConnectInfo(conn): ConnectInfo<Conn>) -> Response {
    let mut session = Session {
        authed: true,
        ..Session::default()
    };
    dispatch_blocking(&state, &conn, Command::Health, move |d| {
        d.handle(Ok(Request::Health), &mut session)
    })
    .await
}

async fn metrics(State(state): Shared) -> Response {
    let d = &state.dispatcher;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        d.metrics().render(),
    )
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let mut response = respond(error_reply(
        Command::Invalid,
        Status::BadRequest,
        &format!(
            "no route {method} {}; the API is POST /v1/events, GET /v1/query, GET /v1/find, GET /healthz, GET /metrics",
            uri.path()
        ),
    ));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// The HTTP listener, holding at most `server.max_connections` connections open: past that,
/// accepting waits until one closes (the kernel's backlog queues the rest).
pub(crate) struct LimitedListener {
    listener: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
    idle_timeout: Option<Duration>,
    metrics: Arc<Metrics>,
}

impl LimitedListener {
    pub(crate) fn new(
        listener: tokio::net::TcpListener,
        max_connections: usize,
        idle_timeout: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> Self {
        LimitedListener {
            listener,
            permits: Arc::new(tokio::sync::Semaphore::new(max_connections)),
            idle_timeout,
            metrics,
        }
    }
}

/// What a connection's handlers tell its stream: while a reply is being computed the
/// connection is busy, not idle (hyper keeps a read pending then, to notice a hang-up).
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// Requests read in full whose reply is being computed.
    busy: AtomicUsize,
    /// Set when a reply is ready: counts as activity, so a reply that took longer than the
    /// idle limit is still written.
    touched: AtomicBool,
    /// The connection task, parked on a read while busy: woken when the reply is ready so
    /// the idle timer starts again (hyper would not poll the read otherwise).
    parked: std::sync::Mutex<Option<std::task::Waker>>,
}

/// A connection's [`ConnState`], handed to the handlers as `ConnectInfo`.
#[derive(Debug, Clone)]
pub(crate) struct Conn(Arc<ConnState>);

impl Connected<IncomingStream<'_, LimitedListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, LimitedListener>) -> Self {
        Conn(Arc::clone(&stream.io().conn))
    }
}

/// Marks the connection busy until dropped.
struct BusyGuard(Arc<ConnState>);

impl BusyGuard {
    fn new(conn: &Conn) -> Self {
        conn.0.busy.fetch_add(1, Ordering::Relaxed);
        BusyGuard(Arc::clone(&conn.0))
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touched.store(true, Ordering::Relaxed);
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(waker) = self.0.parked.lock().ok().and_then(|mut w| w.take()) {
                waker.wake();
            }
        }
    }
}

/// `server.idle_timeout_secs` on one connection: the time of its last read or write and a
/// timer that fires that long after it.
struct Idle {
    timeout: Duration,
    last: tokio::time::Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// A connection and its slot; the slot frees (and the open-connections gauge drops) when the
/// connection is dropped.
///
/// With an idle limit, a read that waits longer than the limit since the connection last
/// moved a byte fails with `TimedOut` and hyper closes the connection: this covers a
/// keep-alive connection with no next request, and a client that stalls inside its request
/// headers or body. While a handler computes a reply the timer is held off.
pub(crate) struct LimitedStream {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
    conn: Arc<ConnState>,
    idle: Option<Idle>,
    metrics: Arc<Metrics>,
}

impl Drop for LimitedStream {
    fn drop(&mut self) {
        self.metrics.http_connection_closed();
    }
}

impl LimitedStream {
    fn moved(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.last = tokio::time::Instant::now();
        }
    }

    /// For a write that cannot go on (the client reads nothing): an error once the
    /// connection has moved no byte for the idle limit.
    fn write_stalled(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        let idle = self.idle.as_mut()?;
        let deadline = idle.last + idle.timeout;
        if idle.sleep.deadline() != deadline {
            idle.sleep.as_mut().reset(deadline);
        }
        idle.sleep.as_mut().poll(cx).is_ready().then(|| {
            tracing::debug!(
                secs = idle.timeout.as_secs_f64(),
                "HTTP client reads nothing: closing"
            );
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client read nothing for server.idle_timeout_secs",
            )
        })
    }

    /// The outcome of a write: progress counts as activity, a stall past the idle limit fails.
    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<T>>,
        moved: bool,
    ) -> Poll<std::io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                if moved {
                    self.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.write_stalled(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                // The semaphore is never closed; wait forever rather than spin if it were.
                std::future::pending::<()>().await;
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let idle = self.idle_timeout.map(|timeout| {
                        let now = tokio::time::Instant::now();
                        Idle {
                            timeout,
                            last: now,
                            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
                        }
                    });
                    self.metrics.http_connection_opened();
                    return (
                        LimitedStream {
                            stream,
                            _permit: permit,
                            conn: Arc::default(),
                            idle,
                            metrics: Arc::clone(&self.metrics),
                        },
                        addr,
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if this.conn.touched.swap(false, Ordering::Relaxed) {
                    this.moved();
                }
                let Some(idle) = &mut this.idle else {
                    return Poll::Pending;
                };
                if this.conn.busy.load(Ordering::Acquire) > 0 {
                    if let Ok(mut parked) = this.conn.parked.lock() {
                        *parked = Some(cx.waker().clone());
                    }
                    // The reply may have become ready before the waker was stored.
                    if this.conn.busy.load(Ordering::Acquire) > 0 {
                        return Poll::Pending;
                    }
                    idle.last = tokio::time::Instant::now();
                }
                let deadline = idle.last + idle.timeout;
                if idle.sleep.deadline() != deadline {
                    idle.sleep.as_mut().reset(deadline);
                }
                match idle.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::debug!(
                            secs = idle.timeout.as_secs_f64(),
                            "HTTP connection idle: closing it"
                        );
                        Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "idle longer than server.idle_timeout_secs",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        let moved = matches!(result, Poll::Ready(Ok(n)) if n > 0);
        this.after_write(cx, result, moved)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        this.after_write(cx, result, false)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        let moved = matches!(result, Poll::Ready(Ok(n)) if n > 0);
        this.after_write(cx, result, moved)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
