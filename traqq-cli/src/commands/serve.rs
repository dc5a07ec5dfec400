//! `traqq serve`.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use traqq_server::{shutdown_signal, Metrics, Server};
use traqq_storage::Traqq;

use crate::config::FileConfig;
use crate::UsageError;

pub(super) fn serve(config: FileConfig) -> anyhow::Result<()> {
    // The store is timed per operation for /metrics.
    let metrics = Arc::new(Metrics::default());
    let storage = metrics.instrument(config.open_store()?);
    let traqq = Traqq::with_shared_storage(config.traqq(), storage, &config.prefix)
        .map_err(|e| UsageError(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Handlers first: a SIGTERM right after the announcement below must still be graceful.
        let shutdown = shutdown_signal();
        let server = Server::bind_with(config.server.clone(), Arc::new(traqq), metrics)
            .await
            .map_err(|e| match e {
                traqq_server::Error::Config { .. } | traqq_server::Error::Insecure { .. } => {
                    anyhow::Error::new(UsageError(e.to_string()))
                }
                other => anyhow::Error::new(other),
            })?;
        {
            // A closed stdout (a supervisor that stopped reading) must not stop the server.
            let mut out = std::io::stdout().lock();
            if let Some(addr) = server.tcp_addr() {
                let _ = writeln!(out, "listening: tcp {addr} (JSON lines)");
            }
            if let Some(addr) = server.http_addr() {
                let _ = writeln!(out, "listening: http http://{addr}");
            }
            let _ = writeln!(out, "storage: {}", crate::store::describe(&config.storage));
            let _ = writeln!(out, "stop with Ctrl-C or SIGTERM");
            let _ = out.flush();
        }
        tracing::info!(prefix = %config.prefix, "server started");
        server.run(shutdown).await?;
        anyhow::Ok(())
    })
}
