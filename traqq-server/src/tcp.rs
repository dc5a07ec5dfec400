//! The TCP JSON-lines transport: capped line reading, in-order replies, pipelining.
//!
//! Lines are read in chunks; every complete line in the buffer is answered by one blocking
//! task (so a slow store never stalls the reactor, and pipelined requests share the hop).
//! A line longer than `max_line_bytes` is dropped as it streams in, never buffered whole.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::dispatch::Dispatcher;
use crate::protocol::{error_reply, Command, Session, Status};
use crate::slots::{ByteBudget, RateLimitedLog, Reservation, Slots};
use crate::tls::{handshake, MaybeTls};

/// First read size of a connection; it doubles, up to `MAX_READ_CHUNK`, while reads come back
/// full (a pipelining client), so a busy connection is answered in fewer, larger rounds (one
/// task hop and one group commit each) and a quiet one holds little memory.
const READ_CHUNK: usize = 16 * 1024;
const MAX_READ_CHUNK: usize = 1 << 20;
/// Replies held before they are written (pipelined requests are answered in rounds).
const MAX_PENDING_REPLY: usize = 1 << 20;
/// Most events of one group commit: pipelined `record_batch`es of 1,000 events are recorded
/// ten at a time (the engine merges a bigger batch's operations better: ~1.3x the events per
/// CPU-second of batches of 1,000), and a group's replies wait at most for this many.
const GROUP_EVENTS: usize = 10_000;

/// Limits of the TCP side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLimits {
    pub(crate) max_line_bytes: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) idle_timeout: Option<Duration>,
    /// From a line's first byte to its newline.
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) shutdown_grace: Duration,
}

/// A connection's read buffer, its capacity paid for from the server's [`ByteBudget`].
struct Buffer {
    bytes: Vec<u8>,
    held: Vec<Reservation>,
    held_bytes: usize,
}

impl Buffer {
    /// Room for `more` bytes past the data, or `false` when the budget has not that much.
    fn make_room(&mut self, budget: &ByteBudget, more: usize) -> bool {
        let wanted = self.bytes.len() + more;
        if self.bytes.capacity() >= wanted {
            return true;
        }
        if wanted > self.held_bytes {
            let Some(r) = budget.try_reserve(wanted - self.held_bytes) else {
                return false;
            };
            self.held_bytes += r.bytes();
            self.held.push(r);
        }
        // Exact: the capacity is what the budget paid for, not twice that.
        self.bytes.reserve_exact(wanted - self.bytes.len());
        true
    }
}

/// One unit of work found in the read buffer.
#[derive(Debug, Clone, Copy)]
enum Item {
    /// A complete line: `buf[start..end]`, newline excluded.
    Line(usize, usize),
    /// A line that went past `max_line_bytes` and was discarded.
    TooLong,
}

/// Accepts connections until `shutdown` turns true, then waits up to the shutdown grace period
/// for open connections to finish their current requests, and closes the rest.
pub(crate) async fn serve(
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    limits: TcpLimits,
    budget: ByteBudget,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Slots::new(limits.max_connections, limits.max_connections_per_ip);
    let accept_errors = RateLimitedLog::new(Duration::from_secs(10));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        if let Some(suppressed) = accept_errors.allow() {
                            tracing::warn!(error = %e, suppressed, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let dispatcher = Arc::clone(&dispatcher);
                match slots.take(peer.ip()) {
                    Ok(permit) => {
                        let shutdown = shutdown.clone();
                        let budget = budget.clone();
                        let tls = tls.clone();
                        tasks.spawn(async move {
                            let _ = stream.set_nodelay(true);
                            let stream = match &tls {
                                None => MaybeTls::Plain(stream),
                                Some(acceptor) => match handshake(acceptor, stream, limits.request_timeout).await {
                                    Some(stream) => stream,
                                    None => return,
                                },
                            };
                            tracing::debug!(%peer, "connection opened");
                            dispatcher.metrics().connection_opened();
                            connection(stream, &dispatcher, limits, &budget, shutdown).await;
                            dispatcher.metrics().connection_closed();
                            tracing::debug!(%peer, "connection closed");
                            drop(permit);
                        });
                    }
                    Err(refused) => {
                        dispatcher.metrics().connection_rejected();
                        tasks.spawn(async move {
                            let reply = error_reply(Command::Invalid, Status::Unavailable, &refused.0);
                            let mut stream = stream;
                            let mut body = reply.body;
                            body.push(b'\n');
                            // A client that reads nothing gets a second, not a slot.
                            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                                let _ = stream.write_all(&body).await;
                                let _ = stream.shutdown().await;
                            })
                            .await;
                        });
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            "TCP connections still busy after server.shutdown_grace_secs: closing them"
        );
        tasks.shutdown().await;
    }
}

async fn connection(
    mut stream: MaybeTls,
    dispatcher: &Arc<Dispatcher>,
    limits: TcpLimits,
    budget: &ByteBudget,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = limits.max_line_bytes;
    let mut chunk = READ_CHUNK;
    let mut buffer = Buffer {
        bytes: Vec::new(),
        held: Vec::new(),
        held_bytes: 0,
    };
    // Bytes at the start of `buf` already known to hold no newline.
    let mut scanned = 0;
    let mut discarding = false;
    let mut session = Session::default();
    let mut out: Vec<u8> = Vec::new();
    // When the first byte of the line still incomplete in `buf` arrived (for the request
    // deadline; trickling bytes resets the idle timer, not this).
    let mut line_started: Option<tokio::time::Instant> = None;
    loop {
        if buffer.bytes.capacity() - buffer.bytes.len() < chunk / 2 && !buffer.make_room(budget, chunk) {
            let mut body = error_reply(Command::Invalid, Status::Unavailable, &budget.busy_message()).body;
            body.push(b'\n');
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&body)).await;
            break;
        }
        let mut buf = std::mem::take(&mut buffer.bytes);
        let spare = buf.capacity() - buf.len();
        let line_deadline = line_started.zip(limits.request_timeout).map(|(t, d)| t + d);
        let read = tokio::select! {
            r = read_some(&mut stream, &mut buf, limits.idle_timeout, line_deadline) => r,
            _ = shutdown.changed() => break,
        };
        let n = match read {
            Ok(n) => n,
            Err(ReadError::LineTooSlow) => {
                let secs = limits.request_timeout.map_or(0.0, |d| d.as_secs_f64());
                let mut body = error_reply(
                    Command::Invalid,
                    Status::BadRequest,
                    &format!(
                        "request line not complete after {secs} s (server.request_timeout_secs); closing the connection"
                    ),
                )
                .body;
                body.push(b'\n');
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&body)).await;
                break;
            }
            Err(ReadError::Idle) => {
                let secs = limits.idle_timeout.map_or(0.0, |d| d.as_secs_f64());
                let mut body = error_reply(
                    Command::Invalid,
                    Status::BadRequest,
                    &format!("idle for {secs} s (server.idle_timeout_secs); closing the connection"),
                )
                .body;
                body.push(b'\n');
                let _ = stream.write_all(&body).await;
                break;
            }
            Err(ReadError::Io) => break,
        };
        let eof = n == 0;
        if n == spare {
            chunk = (chunk * 2).min(MAX_READ_CHUNK);
        }

        let mut items = Vec::new();
        let mut pos = 0;
        if discarding {
            match memchr(&buf) {
                Some(i) => {
                    pos = i + 1;
                    discarding = false;
                    items.push(Item::TooLong);
                }
                None => {
                    buf.clear();
                    if eof {
                        items.push(Item::TooLong);
                    }
                }
            }
            scanned = 0;
        }
        if !discarding {
            let mut from = pos + scanned;
            while let Some(i) = memchr(&buf[from..]) {
                let end = from + i;
                items.push(if end - pos > max {
                    Item::TooLong
                } else {
                    Item::Line(pos, end)
                });
                pos = end + 1;
                from = pos;
            }
            let rest = buf.len() - pos;
            if rest > max {
                discarding = true;
                buf.truncate(pos);
                scanned = 0;
            } else if eof && rest > 0 {
                items.push(Item::Line(pos, buf.len()));
                pos = buf.len();
            } else {
                scanned = rest;
            }
        }

        // Answer the items in rounds whose replies fit in MAX_PENDING_REPLY bytes, so pipelined
        // queries with large answers cannot pile up replies in memory.
        let mut next = 0;
        let mut failed = false;
        while next < items.len() {
            let d = Arc::clone(dispatcher);
            let work_items = std::mem::take(&mut items);
            let work = tokio::task::spawn_blocking(move || {
                // Replies of a round go out together, so each request's latency counts from here.
                let round_started = std::time::Instant::now();
                out.clear();
                let mut i = next;
                // Consecutive `record` and `record_batch` lines share one storage batch (group
                // commit), of up to GROUP_EVENTS events.
                let mut group = Vec::new();
                let mut group_events = 0;
                let flush = |group: &mut Vec<crate::dispatch::Pending<'_>>, out: &mut Vec<u8>| {
                    if group.is_empty() {
                        return;
                    }
                    d.answer_group(std::mem::take(group), out);
                };
                while i < work_items.len() && out.len() < MAX_PENDING_REPLY {
                    let reply = match work_items[i] {
                        Item::Line(start, end) => {
                            let line = trim_line(&buf[start..end]);
                            i += 1;
                            if line.is_empty() {
                                continue;
                            }
                            let pending = d.parse_at(line, &session, round_started);
                            if let Some(events) = d.groupable_events(&pending, &session) {
                                if group_events + events > GROUP_EVENTS {
                                    flush(&mut group, &mut out);
                                    group_events = 0;
                                }
                                group_events += events;
                                group.push(pending);
                                continue;
                            }
                            flush(&mut group, &mut out);
                            group_events = 0;
                            d.answer(pending, &mut session)
                        }
                        Item::TooLong => {
                            i += 1;
                            flush(&mut group, &mut out);
                            group_events = 0;
                            let reply = error_reply(
                                Command::Invalid,
                                Status::BadRequest,
                                &format!(
                                    "request line longer than server.max_line_bytes = {max} bytes; it was discarded"
                                ),
                            );
                            d.metrics().request(reply.command, reply.status, Duration::ZERO);
                            reply
                        }
                    };
                    out.extend_from_slice(&reply.body);
                    out.push(b'\n');
                    if session.should_close() {
                        // Too many wrong tokens: answer this one, read no more.
                        i = work_items.len();
                    }
                }
                flush(&mut group, &mut out);
                (buf, out, session, work_items, i)
            });
            match work.await {
                Ok((b, o, s, w, i)) => {
                    (buf, out, session, items, next) = (b, o, s, w, i);
                }
                Err(e) => {
                    // A panic below the dispatch: report it and close this connection only.
                    tracing::error!(error = %e, "request handler failed");
                    return;
                }
            }
            if !out.is_empty() && !write_within(&mut stream, &out, limits.idle_timeout).await {
                failed = true;
                break;
            }
            if session.should_close() {
                tracing::debug!("closing a connection after too many wrong tokens");
                failed = true;
                break;
            }
            // Keep the reply buffer from pinning a huge allocation after one big answer.
            if out.capacity() > 2 * MAX_PENDING_REPLY {
                out = Vec::new();
            }
        }
        if failed {
            break;
        }
        buf.drain(..pos);
        if eof {
            break;
        }
        // A partial line (or one being discarded) is a request in progress.
        if buf.is_empty() && !discarding {
            line_started = None;
        } else if line_started.is_none() || pos > 0 {
            line_started = Some(tokio::time::Instant::now());
        }
        buffer.bytes = buf;
    }
    let _ = stream.shutdown().await;
}

enum ReadError {
    Idle,
    LineTooSlow,
    Io,
}

/// One read, ending at the idle limit or at the current line's deadline, whichever is first.
async fn read_some(
    stream: &mut MaybeTls,
    buf: &mut Vec<u8>,
    idle: Option<Duration>,
    line_deadline: Option<tokio::time::Instant>,
) -> Result<usize, ReadError> {
    let idle_deadline = idle.map(|d| tokio::time::Instant::now() + d);
    let (deadline, error) = match (idle_deadline, line_deadline) {
        (Some(i), Some(l)) if l < i => (Some(l), ReadError::LineTooSlow),
        (Some(i), _) => (Some(i), ReadError::Idle),
        (None, Some(l)) => (Some(l), ReadError::LineTooSlow),
        (None, None) => (None, ReadError::Idle),
    };
    let read = stream.read_buf(buf);
    let result = match deadline {
        Some(at) => tokio::time::timeout_at(at, read).await.map_err(|_| error)?,
        None => read.await,
    };
    result.map_err(|_| ReadError::Io)
}

/// Writes `data`; false when the connection failed or, with an idle limit, the client read
/// none of it for that long (it stopped reading its replies: the connection is closed).
async fn write_within(stream: &mut MaybeTls, data: &[u8], idle: Option<Duration>) -> bool {
    match idle {
        Some(d) => matches!(tokio::time::timeout(d, stream.write_all(data)).await, Ok(Ok(()))),
        None => stream.write_all(data).await.is_ok(),
    }
}

fn memchr(hay: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', hay)
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.trim_ascii()
}
