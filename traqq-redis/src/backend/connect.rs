//! Connecting to a node or a cluster (TLS, timeouts, the first round trip).

use super::*;

impl RedisStorage {
    /// Connects to the node or cluster of `config`. Fails with `Error::Open` when it cannot be
    /// reached within the connect timeout, and with `Error::Core` naming the field when the
    /// config is invalid.
    pub fn connect(config: RedisConfig) -> Result<Self> {
        config.validate()?;
        let urls = config.urls();
        let target = urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(",");
        let open_err = {
            let path = target.clone();
            move |message: String| Error::open(BACKEND, path.clone(), message)
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("traqq-redis")
            .enable_all()
            .build()
            .map_err(|e| open_err(format!("cannot start the client runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let certs = tls_certificates(&config)?;
        if config.is_tls() {
            // rustls needs a process-wide crypto provider; one installed earlier (by the
            // application) is kept.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let (connect_timeout, response_timeout) = (config.connect_timeout(), config.response_timeout());
        let op_timeout = connect_timeout + response_timeout;
        let cluster = config.is_cluster();
        let conn = run_on(&handle, op_timeout, &target, async move {
            if cluster {
                let client = |retries: u32| {
                    let builder = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                        .connection_timeout(connect_timeout)
                        .response_timeout(response_timeout)
                        .retries(retries);
                    match &certs {
                        Some(certs) => builder.certs(certs.clone()).build(),
                        None => builder.build(),
                    }
                };
                let writes = client(0)?.get_async_connection().await?;
                let reads = client(2)?.get_async_connection().await?;
                Ok(Conn::Cluster { writes, reads })
            } else {
                let url = urls.first().map_or(crate::config::DEFAULT_URL, String::as_str);
                let client = match certs {
                    Some(certs) => redis::Client::build_with_tls(url, certs)?,
                    None => redis::Client::open(url)?,
                };
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(100))
                    .set_max_delay(Duration::from_secs(1));
                Ok(Conn::Single(
                    ConnectionManager::new_with_config(client, manager_config).await?,
                ))
            }
        })
        .map_err(|e| open_err(e.to_string()))?;
        // Ping once so a wrong password or db fails here, not at the first batch.
        let storage = RedisStorage {
            runtime: Some(runtime),
            handle,
            conn,
            layout: if cluster {
                KeyLayout::ClusterTagged
            } else {
                KeyLayout::Plain
            },
            config,
            target,
            op_timeout,
            union_counter: AtomicU64::new(0),
            labels_overflowed: AtomicU64::new(0),
            script_sha: script::sha(),
        };
        storage
            .exec(false, vec![(0, redis::cmd("PING"), "PING".to_owned())])
            .map_err(|e| open_err(e.to_string()))?;
        Ok(storage)
    }
}

/// The CA and client certificates named in `config`, read from their files; `None` when no
/// file is named (then `rediss://` trusts the system's roots).
fn tls_certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>> {
    let read = |field: &str, path: &Path| {
        std::fs::read(path).map_err(|e| {
            let shown = path.display();
            Error::open(
                BACKEND,
                shown.to_string(),
                format!("{field}: cannot read {shown}: {e}"),
            )
        })
    };
    let root_cert = match &config.tls_ca_file {
        Some(path) => Some(read("storage.tls_ca_file", path)?),
        None => None,
    };
    let client_tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("storage.tls_cert_file", cert)?,
            client_key: read("storage.tls_key_file", key)?,
        }),
        _ => None,
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}
