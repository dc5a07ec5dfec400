//! The HTTP API: the same requests as TCP, built from paths, query strings and bodies, then
//! answered by the same [`Dispatcher`].

mod conn;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::cmd::{parse_fields, Fields};
use crate::dispatch::Dispatcher;
use crate::protocol::{error_reply, BadRequest, Command, Reply, Request, Session, Status};
use crate::slots::ByteBudget;
use crate::wire::parse_events_body;
use conn::BusyGuard;
pub(crate) use conn::{Conn, ConnLimits, LimitedListener};

#[derive(Debug)]
struct HttpState {
    dispatcher: Arc<Dispatcher>,
    max_body_bytes: usize,
    budget: ByteBudget,
}

type Shared = State<Arc<HttpState>>;
type Params = Vec<(String, String)>;

/// The router: `POST /v1/events`, `GET /v1/query`, `GET /v1/find`, `GET /healthz`, `GET /metrics`.
///
/// The API routes sit behind [`require_token`], which runs before any body is read.
pub(crate) fn router(
    dispatcher: Arc<Dispatcher>,
    max_body_bytes: usize,
    budget: ByteBudget,
    cors_origins: &[String],
) -> Router {
    let state = Arc::new(HttpState {
        dispatcher,
        max_body_bytes,
        budget,
    });
    let api = Router::new()
        .route("/v1/events", post(events))
        .route("/v1/query", get(query))
        .route("/v1/find", get(find))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            reserve_body,
        ))
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
        // Orchestrators' habits: liveness (the process answers) apart from readiness (the
        // store answers too); `/healthz` stays what it was, readiness.
        .route("/livez", get(livez))
        .route("/readyz", get(healthz))
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(end_bodiless_request))
        // gzip and zstd request bodies are inflated as they are read, so the body limit and
        // the parsers see the inflated bytes (a small bomb is refused like a large body).
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(axum::middleware::map_response(json_method_not_allowed))
        .layer(axum::middleware::map_response(security_headers))
        .layer(cors(cors_origins))
        .with_state(state)
}

/// `server.cors_origins` as a CORS layer (answers preflights itself; no headers at all when
/// the list is empty). Origins were checked by the config's validation.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return CorsLayer::new();
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| header::HeaderValue::from_str(o).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
        ])
        .max_age(Duration::from_secs(600))
}

/// Headers every answer carries: the dashboard may not be framed by another site
/// (clickjacking), and no answer is sniffed as another content type.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A request without a body has been read in full once its head is: its deadline is over.
/// (A body is read by its handler, which says so: [`events`].)
async fn end_bodiless_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let headers = request.headers();
    let bodiless = !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    if bodiless {
        if let Some(ConnectInfo(conn)) = request.extensions().get::<ConnectInfo<Conn>>() {
            conn.request_read();
        }
    }
    next.run(request).await
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

/// Takes the request's body size from the server's budget of bytes being read and parsed
/// (after the token check, before the body is read); `503` + `Retry-After` when the budget is
/// spent. A body of unknown size is counted at `server.max_body_bytes`.
async fn reserve_body(
    State(state): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    // A compressed body's inflated size is unknown until it is read: count the most it may be.
    let chunked =
        headers.contains_key(header::TRANSFER_ENCODING) || headers.contains_key(header::CONTENT_ENCODING);
    let bytes = match (length, chunked) {
        (_, true) | (None, _) if request.method() == Method::POST => state.max_body_bytes,
        (Some(n), _) => n.min(state.max_body_bytes),
        _ => 0,
    };
    let Some(_held) = state.budget.try_reserve(bytes) else {
        let mut response = respond(error_reply(
            Command::RecordBatch,
            Status::Unavailable,
            &state.budget.busy_message(),
        ));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    };
    next.run(request).await
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
    conn.request_read();
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson") || v.contains("jsonlines") || v.contains("json-seq"));
    let mut session = session(&state, &headers);
    dispatch_blocking(&state, &conn, Command::RecordBatch, move |d| {
        d.handle(parse_events_body(&body, ndjson, d.limits()), &mut session)
    })
    .await
}

async fn query(
    State(state): Shared,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    // `days=` makes it a `query_days`.
    let command = |p: &Params| {
        if p.iter().any(|(n, v)| n == "days" && !v.is_empty()) {
            Command::QueryDays
        } else {
            Command::Query
        }
    };
    read_request(&state, &conn, &headers, params, Command::Query, command).await
}

async fn find(
    State(state): Shared,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    read_request(&state, &conn, &headers, params, Command::Find, |_| Command::Find).await
}

/// A `GET` of the API: its query string is the request's fields.
async fn read_request(
    state: &HttpState,
    conn: &Conn,
    headers: &HeaderMap,
    params: Result<Query<Params>, QueryRejection>,
    unreadable: Command,
    command: impl FnOnce(&Params) -> Command,
) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(rejection) => return bad(unreadable, rejection.body_text()),
    };
    let command = command(&params);
    run_params(state, conn, headers, command, params).await
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

/// Liveness: the process is up and answering (no storage round trip). Needs no token.
async fn livez() -> Response {
    respond(Reply {
        command: Command::Health,
        status: Status::Ok,
        body: br#"{"success":true,"data":"live"}"#.to_vec(),
    })
}

/// A `405` in the API's JSON shape. axum adds the `Allow` header (the methods the path takes)
/// around this layer, so the message points to it.
async fn json_method_not_allowed(method: Method, response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let body = error_reply(
        Command::Invalid,
        Status::BadRequest,
        &format!("method {method} is not allowed on this path; the Allow header lists the ones it takes"),
    )
    .body;
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Readiness: a storage round trip, 503 when the store is down. Needs no token.
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

/// `GET /metrics`: OpenMetrics when the scraper asks for it (`Accept:
/// application/openmetrics-text`, as Prometheus does), else the Prometheus text format.
async fn metrics(State(state): Shared, headers: HeaderMap) -> Response {
    let d = &state.dispatcher;
    let store = d.traqq().storage().as_ref();
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            d.metrics().render(store),
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            d.metrics().render_prometheus(store),
        )
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let mut response = respond(error_reply(
        Command::Invalid,
        Status::BadRequest,
        &format!(
            "no route {method} {}; the API is POST /v1/events, GET /v1/query, GET /v1/find, GET /healthz \
             (= /readyz), GET /livez, GET /metrics",
            uri.path()
        ),
    ));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
