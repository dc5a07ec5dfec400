//! TLS on both listeners (`[server] tls_cert_file`, `tls_key_file`) with a throwaway
//! certificate made by `openssl`: a rustls client talks to the TCP and the HTTP side, a client
//! in clear gets nothing and the server keeps serving, and a bad file is an error naming it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use traqq_server::ServerConfig;

use common::*;

/// A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost, as PEM files
/// in `dir`: (CA, certificate, key).
fn certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let [ca, ca_key, cert, key, csr, ext] =
        ["ca.pem", "ca.key", "cert.pem", "key.pem", "leaf.csr", "leaf.ext"].map(|f| dir.join(f));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl (scripts/test installs it)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    openssl(&[
        os("req"),
        os("-x509"),
        os("-newkey"),
        os("rsa:2048"),
        os("-nodes"),
        os("-days"),
        os("1"),
        os("-subj"),
        os("/CN=traqq-test-ca"),
        os("-keyout"),
        ca_key.as_os_str(),
        os("-out"),
        ca.as_os_str(),
    ]);
    openssl(&[
        os("req"),
        os("-newkey"),
        os("rsa:2048"),
        os("-nodes"),
        os("-subj"),
        os("/CN=localhost"),
        os("-keyout"),
        key.as_os_str(),
        os("-out"),
        csr.as_os_str(),
    ]);
    openssl(&[
        os("x509"),
        os("-req"),
        os("-in"),
        csr.as_os_str(),
        os("-CA"),
        ca.as_os_str(),
        os("-CAkey"),
        ca_key.as_os_str(),
        os("-CAcreateserial"),
        os("-days"),
        os("1"),
        os("-extfile"),
        ext.as_os_str(),
        os("-out"),
        cert.as_os_str(),
    ]);
    (ca, cert, key)
}

/// A TLS connection to `addr` trusting only the CA `ca`.
fn connect(
    addr: SocketAddr,
    ca: &Path,
    alpn: &[&[u8]],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn both_listeners_speak_tls_and_clients_in_clear_get_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(dir.path());
    let (server, _) = start(ServerConfig {
        tls_cert_file: Some(cert),
        tls_key_file: Some(key),
        ..loopback()
    });
    let (tcp, http) = (server.tcp_addr().unwrap(), server.http_addr().unwrap());

    // TCP JSON lines over TLS.
    let mut stream = connect(tcp, &ca, &[]);
    stream
        .write_all(
            b"{\"cmd\":\"record\",\"event\":{\"event\":\"secure\",\"ts\":1700000000}}\n{\"cmd\":\"ping\"}\n",
        )
        .unwrap();
    let mut lines = BufReader::new(stream);
    let reply = |lines: &mut BufReader<_>| {
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    assert_eq!(reply(&mut lines), json!({"success": true}));
    assert_eq!(reply(&mut lines), json!({"success": true, "data": "pong"}));

    // HTTP over TLS (HTTP/1.1 by ALPN).
    let mut https = connect(http, &ca, &[b"http/1.1"]);
    https
        .write_all(b"GET /v1/find?min=1700000000&max=1700000000&metric_type=add&key=event&merge=true HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = https.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""Hash":{"secure":1}"#), "{response}");

    // A client in clear: no JSON comes back, the connection closes, and others are served.
    for addr in [tcp, http] {
        let mut plain = TcpStream::connect(addr).unwrap();
        plain.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = plain.write_all(b"{\"cmd\":\"ping\"}\nGET /healthz HTTP/1.1\r\n\r\n");
        let mut got = Vec::new();
        let _ = plain.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(!text.contains("pong") && !text.contains("HTTP/1.1 200"), "{text}");
    }
    let mut again = connect(tcp, &ca, &[]);
    again.write_all(b"{\"cmd\":\"ping\"}\n").unwrap();
    let mut lines = BufReader::new(again);
    assert_eq!(reply(&mut lines), json!({"success": true, "data": "pong"}));
    server.stop().unwrap();
}

#[test]
fn unusable_certificate_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificate(dir.path());
    let missing = dir.path().join("nope.pem");
    let traqq =
        || Arc::new(traqq_storage::Traqq::new(mapping(), traqq_storage::MemoryStorage::new(), "t").unwrap());
    for (c, k, want) in [
        (missing.clone(), key.clone(), "nope.pem"),
        (cert.clone(), cert.clone(), "server.tls_key_file"),
        (key.clone(), key.clone(), "server.tls_cert_file"),
    ] {
        let config = ServerConfig {
            tls_cert_file: Some(c),
            tls_key_file: Some(k),
            ..loopback()
        };
        let error = traqq_server::RunningServer::start(config, traqq())
            .unwrap_err()
            .to_string();
        assert!(error.contains(want), "{error}");
    }
    let half = ServerConfig {
        tls_cert_file: Some(cert),
        ..loopback()
    };
    let error = traqq_server::RunningServer::start(half, traqq())
        .unwrap_err()
        .to_string();
    assert!(error.contains("go together"), "{error}");
}
