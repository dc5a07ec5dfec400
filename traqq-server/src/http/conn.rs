//! HTTP connections: the listener that caps them (answering the ones past a cap with a 503
//! at once), and the stream that enforces the idle limit and the per-request deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::metrics::Metrics;
use crate::slots::{RateLimitedLog, Slot, Slots};
use crate::tls::{handshake, MaybeTls};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// The time limits of one HTTP connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// `server.idle_timeout_secs`: no byte moved for this long closes the connection.
    pub(crate) idle: Option<Duration>,
    /// `server.request_timeout_secs`: a request's head and body, from its first byte.
    pub(crate) request: Option<Duration>,
}

/// The HTTP listener, holding at most `server.max_connections` connections open (and
/// `server.max_connections_per_ip` per peer): a connection past a cap is accepted, answered
/// `503` with `Retry-After` and closed at once, so a full server still answers quickly.
pub(crate) struct LimitedListener {
    listener: tokio::net::TcpListener,
    slots: Slots,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    accept_errors: RateLimitedLog,
    /// With `tls_cert_file`: connections are handed on once their handshake is done, each
    /// handshake in a task of its own (a slow one holds up no other).
    tls: Option<TlsAcceptor>,
    handshakes: JoinSet<Option<(LimitedStream, std::net::SocketAddr)>>,
}

impl LimitedListener {
    pub(crate) fn new(
        listener: tokio::net::TcpListener,
        slots: Slots,
        limits: ConnLimits,
        metrics: Arc<Metrics>,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        LimitedListener {
            listener,
            slots,
            limits,
            metrics,
            accept_errors: RateLimitedLog::new(Duration::from_secs(10)),
            tls,
            handshakes: JoinSet::new(),
        }
    }
}

/// The stream of a connection that holds `slot`, counted as open from now.
fn limited(stream: MaybeTls, slot: Slot, limits: ConnLimits, metrics: &Arc<Metrics>) -> LimitedStream {
    let idle = limits.idle.map(|timeout| {
        let now = tokio::time::Instant::now();
        Idle {
            timeout,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    });
    metrics.http_connection_opened();
    LimitedStream {
        stream,
        _slot: slot,
        conn: Arc::default(),
        idle,
        request_timeout: limits.request,
        request_started: None,
        request_timer: None,
        head: HeadScan::default(),
        metrics: Arc::clone(metrics),
    }
}

/// Answers a connection refused for want of a slot: a 503 without reading the request, then
/// a short drain (closing with unread input would reset the connection before the client
/// reads the answer). A second at most.
async fn refuse(mut stream: tokio::net::TcpStream, message: String) {
    let body = crate::protocol::error_reply(
        crate::protocol::Command::Invalid,
        crate::protocol::Status::Unavailable,
        &message,
    )
    .body;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        if stream.write_all(head.as_bytes()).await.is_ok() && stream.write_all(&body).await.is_ok() {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < (64 << 10) {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        }
    })
    .await;
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
    /// Set when a request's head and body have been read in full: its deadline is over.
    request_read: AtomicBool,
}

impl Conn {
    /// The current request has been read in full (its deadline no longer applies).
    pub(crate) fn request_read(&self) {
        self.0.request_read.store(true, Ordering::Release);
    }
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
pub(crate) struct BusyGuard(Arc<ConnState>);

impl BusyGuard {
    pub(crate) fn new(conn: &Conn) -> Self {
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
///
/// With a request deadline, a request whose head and body are not all in by
/// `server.request_timeout_secs` after its first byte fails the same way, however steadily
/// its bytes trickle in (each of which resets the idle timer).
pub(crate) struct LimitedStream {
    stream: MaybeTls,
    _slot: Slot,
    conn: Arc<ConnState>,
    idle: Option<Idle>,
    request_timeout: Option<Duration>,
    /// When the first byte of the request being read arrived.
    request_started: Option<tokio::time::Instant>,
    request_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Line endings of the request head being read.
    head: HeadScan,
    metrics: Arc<Metrics>,
}

/// Checks that every line of a request head ends with CRLF: hyper accepts a bare LF, and a
/// proxy in front that does not could be made to see other requests than traqq does (request
/// smuggling). The scan ends at the head's blank line; bodies are not looked at.
#[derive(Debug, Default)]
struct HeadScan {
    /// The head's end (`\r\n\r\n`) was seen: the rest is body.
    done: bool,
    /// The last bytes seen, for a CRLF or a blank line split across reads.
    tail: u32,
}

impl HeadScan {
    /// Scans `bytes`; false at a bare LF in the head.
    fn scan(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.done {
                return true;
            }
            if b == b'\n' && self.tail & 0xff != u32::from(b'\r') {
                return false;
            }
            self.tail = (self.tail << 8) | u32::from(b);
            self.done = self.tail == u32::from_be_bytes(*b"\r\n\r\n");
        }
        true
    }
}

impl Drop for LimitedStream {
    fn drop(&mut self) {
        self.metrics.http_connection_closed();
    }
}

impl LimitedStream {
    /// An error once the request being read is past its deadline (never while a reply is
    /// being computed: the request is in by then).
    fn request_overdue(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        let (Some(started), Some(limit)) = (self.request_started, self.request_timeout) else {
            return None;
        };
        if self.conn.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let deadline = started + limit;
        let timer = self
            .request_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready().then(|| {
            tracing::debug!(secs = limit.as_secs_f64(), "HTTP request too slow: closing");
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request not complete within server.request_timeout_secs",
            )
        })
    }

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
            let accepted = tokio::select! {
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                    continue;
                }
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, addr)) => {
                    let slot = match self.slots.take(addr.ip()) {
                        Ok(slot) => slot,
                        Err(refused) => {
                            self.metrics.connection_rejected();
                            tokio::spawn(refuse(stream, refused.0));
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let Some(acceptor) = self.tls.clone() else {
                        return (
                            limited(MaybeTls::Plain(stream), slot, self.limits, &self.metrics),
                            addr,
                        );
                    };
                    let (limits, metrics) = (self.limits, Arc::clone(&self.metrics));
                    self.handshakes.spawn(async move {
                        let stream = handshake(&acceptor, stream, limits.request).await?;
                        Some((limited(stream, slot, limits, &metrics), addr))
                    });
                }
                Err(e) => {
                    if let Some(suppressed) = self.accept_errors.allow() {
                        tracing::warn!(error = %e, suppressed, "HTTP accept failed");
                    }
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
        if this.conn.request_read.swap(false, Ordering::AcqRel) {
            this.request_started = None;
        }
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.moved();
                    if this.request_started.is_none() && this.conn.busy.load(Ordering::Acquire) == 0 {
                        this.request_started = Some(tokio::time::Instant::now());
                        this.head = HeadScan::default();
                    }
                    if !this.head.scan(&buf.filled()[before..]) {
                        tracing::debug!("HTTP request head with a bare LF: closing");
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "request head line ended by a bare LF (CRLF required)",
                        )));
                    }
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if this.conn.touched.swap(false, Ordering::Relaxed) {
                    this.moved();
                }
                if let Some(e) = this.request_overdue(cx) {
                    return Poll::Ready(Err(e));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_need_crlf_and_bodies_are_not_scanned() {
        let mut ok = HeadScan::default();
        assert!(ok.scan(b"GET / HTTP/1.1\r\nHost: x\r"));
        assert!(ok.scan(b"\n\r\nbody\nwith\nbare\nLFs"), "split CRLF, then a body");
        for bad in [
            &b"GET / HTTP/1.1\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\n\r\n",
            b"\n",
        ] {
            assert!(
                !HeadScan::default().scan(bad),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
