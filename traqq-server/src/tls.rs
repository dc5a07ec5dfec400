//! Optional TLS on both listeners (`[server] tls_cert_file`, `tls_key_file`), with rustls: the
//! acceptor built once from the PEM files, and the stream type that is either plain or TLS.
//! Handshakes run in the connection's own task with a deadline, so a client that stalls in its
//! handshake holds up no one else.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::{Error, Result};

/// The longest a TLS handshake may take (without a request deadline configured).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// The TLS acceptor of `config`, `None` without `tls_cert_file`; an error naming the file
/// that cannot be read or used.
fn acceptor(config: &ServerConfig, alpn: &[&[u8]]) -> Result<Option<TlsAcceptor>> {
    let (Some(cert_file), Some(key_file)) = (&config.tls_cert_file, &config.tls_key_file) else {
        return Ok(None);
    };
    let bad = |field: &str, file: &Path, reason: String| Error::Config {
        field: field.into(),
        reason: format!("{}: {reason}", file.display()),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| bad("server.tls_cert_file", cert_file, e.to_string()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad("server.tls_cert_file", cert_file, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(
            "server.tls_cert_file",
            cert_file,
            "holds no PEM certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| bad("server.tls_key_file", key_file, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("server.tls_cert_file", cert_file, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("server.tls_key_file", key_file, e.to_string()))?;
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}

/// The acceptors of both listeners (the HTTP one offers HTTP/1.1 by ALPN).
#[derive(Clone)]
pub(crate) struct Acceptors {
    pub(crate) tcp: TlsAcceptor,
    pub(crate) http: TlsAcceptor,
}

impl std::fmt::Debug for Acceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptors { .. }")
    }
}

/// The acceptors of `config`, `None` without `tls_cert_file`.
pub(crate) fn acceptors(config: &ServerConfig) -> Result<Option<Acceptors>> {
    Ok(
        match (acceptor(config, &[])?, acceptor(config, &[b"http/1.1"])?) {
            (Some(tcp), Some(http)) => Some(Acceptors { tcp, http }),
            _ => None,
        },
    )
}

/// Completes the TLS handshake on `stream` within `limit` (or 10 s); `None` when the client
/// did not (it is logged at debug level and dropped).
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    limit: Option<Duration>,
) -> Option<MaybeTls> {
    match tokio::time::timeout(limit.unwrap_or(HANDSHAKE_LIMIT), acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(MaybeTls::Tls(Box::new(tls))),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake too slow: closing");
            None
        }
    }
}

/// A connection, in clear or over TLS.
pub(crate) enum MaybeTls {
    /// Without `tls_cert_file`.
    Plain(TcpStream),
    /// With it.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, data),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
}
