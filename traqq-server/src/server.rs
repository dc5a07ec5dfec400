//! Binding, running and stopping the server: TCP and HTTP over one [`Dispatcher`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use traqq_storage::Traqq;

use crate::config::ServerConfig;
use crate::dispatch::Dispatcher;
use crate::http::{Conn, ConnLimits, LimitedListener};
use crate::metrics::Metrics;
use crate::slots::{ByteBudget, Slots};
use crate::tcp::{self, TcpLimits};
use crate::tls;
use crate::{Error, Result};

/// A bound server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    tcp: Option<TcpListener>,
    http: Option<TcpListener>,
    /// TLS for the TCP and the HTTP listener (`tls_cert_file`), the latter offering HTTP/1.1.
    tls: Option<tls::Acceptors>,
    dispatcher: Arc<Dispatcher>,
    config: ServerConfig,
}

impl Server {
    /// Validates `config` (including the loopback-without-token rule) and binds the listeners.
    /// Port 0 picks a free port; see [`Server::tcp_addr`].
    pub async fn bind(config: ServerConfig, traqq: Arc<Traqq>) -> Result<Server> {
        Server::bind_with(config, traqq, Arc::new(Metrics::default())).await
    }

    /// [`Server::bind`] reporting into `metrics`: pass the metrics whose
    /// [`Metrics::instrument`] wraps the engine's store, so `/metrics` also shows the store's
    /// latency and errors per operation.
    pub async fn bind_with(config: ServerConfig, traqq: Arc<Traqq>, metrics: Arc<Metrics>) -> Result<Server> {
        config.validate()?;
        // Read the certificate before binding: a bad file is an error naming it, not a server
        // that refuses every connection.
        let tls = tls::acceptors(&config)?;
        let bind = |field: &'static str, addr: Option<SocketAddr>| async move {
            match addr {
                None => Ok(None),
                Some(addr) => TcpListener::bind(addr)
                    .await
                    .map(Some)
                    .map_err(|error| Error::Bind {
                        field,
                        addr: addr.to_string(),
                        error,
                    }),
            }
        };
        let tcp = bind("server.tcp", config.tcp_addr()?).await?;
        let http = bind("server.http", config.http_addr()?).await?;
        let dispatcher = Arc::new(
            Dispatcher::new(traqq, metrics, config.auth_token.clone(), config.max_batch_events)
                .with_max_reply_bytes(config.max_reply_bytes),
        );
        Ok(Server {
            tcp,
            http,
            tls,
            dispatcher,
            config,
        })
    }

    /// The bound TCP address, if TCP is enabled.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound HTTP address, if HTTP is enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(self.dispatcher.metrics())
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open requests finish,
    /// flushes the store and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let idle_timeout = self.config.idle_timeout()?;
        let request_timeout = self.config.request_timeout()?;
        let grace = self.config.shutdown_grace()?;
        let budget = ByteBudget::new(self.config.max_inflight_bytes);
        if let Some(listener) = self.tcp {
            let limits = TcpLimits {
                max_line_bytes: self.config.max_line_bytes,
                max_connections: self.config.max_connections,
                max_connections_per_ip: self.config.max_connections_per_ip,
                idle_timeout,
                request_timeout,
                shutdown_grace: grace,
            };
            tasks.spawn(tcp::serve(
                listener,
                Arc::clone(&self.dispatcher),
                limits,
                budget.clone(),
                self.tls.as_ref().map(|t| t.tcp.clone()),
                stop_rx.clone(),
            ));
        }
        if let Some(listener) = self.http {
            let router = crate::http::router(
                Arc::clone(&self.dispatcher),
                self.config.max_body_bytes,
                budget,
                &self.config.cors_origins,
            );
            let mut stop = stop_rx.clone();
            let slots = Slots::new(self.config.max_connections, self.config.max_connections_per_ip);
            let metrics = Arc::clone(self.dispatcher.metrics());
            let limits = ConnLimits {
                idle: idle_timeout,
                request: request_timeout,
            };
            let tls = self.tls.as_ref().map(|t| t.http.clone());
            tasks.spawn(async move {
                let signal = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                let listener = LimitedListener::new(listener, slots, limits, metrics, tls);
                let service = router.into_make_service_with_connect_info::<Conn>();
                if let Err(e) = axum::serve(listener, service)
                    .with_graceful_shutdown(signal)
                    .await
                {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            });
        }
        shutdown.await;
        tracing::info!(
            grace_secs = grace.as_secs_f64(),
            "shutting down: no new connections, finishing open requests"
        );
        let _ = stop_tx.send(true);
        // Each listener waits `grace` for its connections; past that (plus a moment for
        // them to close) what is left is dropped, so a client that never finishes its request
        // cannot hold the shutdown.
        let drained = tokio::time::timeout(grace + Duration::from_secs(1), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections still open after server.shutdown_grace_secs: closing them");
            tasks.shutdown().await;
        }
        let traqq = Arc::clone(self.dispatcher.traqq());
        tokio::task::spawn_blocking(move || traqq.flush())
            .await
            .map_err(|e| Error::Internal(format!("flush task failed: {e}")))??;
        tracing::info!("store flushed; bye");
        Ok(())
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
///
/// The handlers are installed when this is called (inside a Tokio runtime), not when the
/// future is first polled: call it before announcing the server, so a signal sent right after
/// the announcement still shuts it down gracefully.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A server running on its own thread and runtime (tests, embedding in blocking programs).
#[derive(Debug)]
pub struct RunningServer {
    tcp: Option<SocketAddr>,
    http: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl RunningServer {
    /// Binds and starts serving on a background thread; returns once the listeners are bound.
    pub fn start(config: ServerConfig, traqq: Arc<Traqq>) -> Result<RunningServer> {
        RunningServer::start_with(config, traqq, Arc::new(Metrics::default()))
    }

    /// [`RunningServer::start`] reporting into `metrics` (see [`Server::bind_with`]).
    pub fn start_with(
        config: ServerConfig,
        traqq: Arc<Traqq>,
        metrics: Arc<Metrics>,
    ) -> Result<RunningServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the server runtime", e))?;
        let server = runtime.block_on(Server::bind_with(config, traqq, metrics))?;
        let (tcp, http, metrics) = (server.tcp_addr(), server.http_addr(), server.metrics());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("traqq-server".into())
            .spawn(move || {
                runtime.block_on(server.run(async move {
                    let _ = stopped.await;
                }))
            })
            .map_err(|e| Error::io("starting the server thread", e))?;
        Ok(RunningServer {
            tcp,
            http,
            metrics,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The TCP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Shuts down gracefully and waits for it (flushes the store).
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Internal("server thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}
