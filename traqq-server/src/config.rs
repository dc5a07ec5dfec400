//! `[server]`: listen addresses, the auth token and the limits that protect the server.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The server's configuration (the `[server]` table of the config file).
///
/// Every field has a default; unknown fields are rejected so a typo is an error.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// TCP JSON-lines address (`""` or `"off"` disables it).
    pub tcp: String,
    /// HTTP API address (`""` or `"off"` disables it).
    pub http: String,
    /// When set, every request must carry this token (TCP: `{"cmd":"auth"}` or a `token`
    /// field; HTTP: `Authorization: Bearer ...`).
    pub auth_token: Option<String>,
    /// Longest TCP request line in bytes; a longer line is discarded unread with an error.
    pub max_line_bytes: usize,
    /// Largest HTTP request body in bytes.
    pub max_body_bytes: usize,
    /// Most events one `record_batch` (or one HTTP POST) may carry.
    pub max_batch_events: usize,
    /// Request bytes the whole server may hold while reading and parsing them (HTTP bodies,
    /// TCP read buffers); past it a request is refused at once (HTTP 503 + `Retry-After`).
    pub max_inflight_bytes: usize,
    /// Largest query answer in bytes; a larger one is refused with an error saying how to
    /// narrow the query.
    pub max_reply_bytes: usize,
    /// Most connections open at once, per listener (TCP, HTTP); more are answered with an
    /// error at once and closed.
    pub max_connections: usize,
    /// Most connections open at once from one peer address, per listener (0 = no cap). Behind
    /// a reverse proxy every client has the proxy's address: raise it or set 0 there.
    pub max_connections_per_ip: usize,
    /// A connection (TCP or HTTP) that sends nothing for this many seconds while the server
    /// waits for its next request, or for the rest of a request, is closed (0 = never;
    /// fractions allowed). Time spent computing a reply does not count.
    pub idle_timeout_secs: f64,
    /// The longest a client may take to send one request, from its first byte to its last
    /// (TCP: a line; HTTP: the head and the body), however it trickles them (0 = no limit).
    /// Independent of the idle limit, which any byte resets.
    pub request_timeout_secs: f64,
    /// On shutdown, how long open requests may take to finish before their connections are
    /// closed and the store is flushed.
    pub shutdown_grace_secs: f64,
    /// Web origins (`https://app.example.com`) whose pages may call the HTTP API from a browser
    /// (CORS); `["*"]` allows any. Empty (the default): no CORS headers, same-origin only.
    pub cors_origins: Vec<String>,
    /// PEM certificate chain: with `tls_key_file`, both listeners (TCP and HTTP) speak TLS
    /// only (rustls), so tokens and events do not cross a network in clear.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Allow a non-loopback address without `auth_token` (the CLI's `--insecure`; never read
    /// from a file).
    #[serde(skip)]
    pub insecure: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tcp: "127.0.0.1:9876".into(),
            http: "127.0.0.1:9877".into(),
            auth_token: None,
            max_line_bytes: 1 << 20,
            max_body_bytes: 16 << 20,
            max_batch_events: 10_000,
            max_reply_bytes: 64 << 20,
            max_inflight_bytes: 256 << 20,
            max_connections: 1024,
            max_connections_per_ip: 256,
            idle_timeout_secs: 300.0,
            request_timeout_secs: 30.0,
            shutdown_grace_secs: 10.0,
            cors_origins: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            insecure: false,
        }
    }
}

// Hand-written so the token never reaches a log line through `{:?}`.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("tcp", &self.tcp)
            .field("http", &self.http)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<redacted>"))
            .field("max_line_bytes", &self.max_line_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_batch_events", &self.max_batch_events)
            .field("max_reply_bytes", &self.max_reply_bytes)
            .field("max_inflight_bytes", &self.max_inflight_bytes)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("cors_origins", &self.cors_origins)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl ServerConfig {
    /// The TCP address, `None` when disabled; an error names `server.tcp`.
    pub fn tcp_addr(&self) -> Result<Option<SocketAddr>> {
        parse_addr("server.tcp", &self.tcp)
    }

    /// The HTTP address, `None` when disabled; an error names `server.http`.
    pub fn http_addr(&self) -> Result<Option<SocketAddr>> {
        parse_addr("server.http", &self.http)
    }

    /// The idle limit, `None` when disabled (`idle_timeout_secs = 0`); an error names
    /// `server.idle_timeout_secs` when it is negative, not a number or too large.
    pub fn idle_timeout(&self) -> Result<Option<Duration>> {
        seconds("server.idle_timeout_secs", self.idle_timeout_secs)
    }

    /// The per-request deadline, `None` when disabled (`request_timeout_secs = 0`).
    pub fn request_timeout(&self) -> Result<Option<Duration>> {
        seconds("server.request_timeout_secs", self.request_timeout_secs)
    }

    /// The shutdown grace period (`0`: close open connections at once).
    pub fn shutdown_grace(&self) -> Result<Duration> {
        Ok(seconds("server.shutdown_grace_secs", self.shutdown_grace_secs)?.unwrap_or_default())
    }

    /// Checks addresses, limits and the loopback-without-token rule.
    pub fn validate(&self) -> Result<()> {
        let tcp = self.tcp_addr()?;
        let http = self.http_addr()?;
        self.idle_timeout()?;
        self.request_timeout()?;
        self.shutdown_grace()?;
        for (field, value) in [
            ("server.max_line_bytes", self.max_line_bytes),
            ("server.max_body_bytes", self.max_body_bytes),
            ("server.max_batch_events", self.max_batch_events),
            ("server.max_reply_bytes", self.max_reply_bytes),
            ("server.max_connections", self.max_connections),
        ] {
            if value == 0 {
                return Err(Error::Config {
                    field: field.into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        for (i, origin) in self.cors_origins.iter().enumerate() {
            let scheme_ok = origin.starts_with("http://") || origin.starts_with("https://");
            let bad = origin != "*"
                && (!scheme_ok
                    || origin.ends_with('/')
                    || origin.chars().any(|c| c.is_whitespace() || c.is_control()));
            if bad {
                return Err(Error::Config {
                    field: format!("server.cors_origins[{i}]"),
                    reason: format!(
                        "{origin:?} is not an origin: scheme://host[:port] without a path, e.g. \"https://app.example.com\", or \"*\""
                    ),
                });
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(Error::Config {
                field: "server.tls_cert_file".into(),
                reason:
                    "server.tls_cert_file and server.tls_key_file go together: set both for TLS, or neither"
                        .into(),
            });
        }
        if self.max_inflight_bytes < self.max_body_bytes {
            return Err(Error::Config {
                field: "server.max_inflight_bytes".into(),
                reason: format!(
                    "{} is less than server.max_body_bytes = {}: a full-size request could never be read",
                    self.max_inflight_bytes, self.max_body_bytes
                ),
            });
        }
        if let Some(token) = &self.auth_token {
            if token.trim().is_empty() {
                return Err(Error::Config {
                    field: "server.auth_token".into(),
                    reason: "is empty (remove it to run without a token)".into(),
                });
            }
            // HTTP trims the header value, and a token with spaces or control characters
            // cannot be sent in one: such a token could never match.
            if token.trim() != token || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::Config {
                    field: "server.auth_token".into(),
                    reason: "holds whitespace or control characters (an HTTP client could never send it)"
                        .into(),
                });
            }
        }
        if self.auth_token.is_none() && !self.insecure {
            for (field, addr) in [("server.tcp", tcp), ("server.http", http)] {
                if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                    return Err(Error::Insecure {
                        field,
                        addr: addr.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A duration setting in seconds: 0 = none, fractions allowed; an error names `field`.
fn seconds(field: &str, secs: f64) -> Result<Option<Duration>> {
    if secs == 0.0 {
        return Ok(None);
    }
    if secs.is_nan() || secs < 0.0 {
        return Err(Error::Config {
            field: field.into(),
            reason: format!("must be 0 (never) or a positive number of seconds, found {secs}"),
        });
    }
    // Past ~31 years a limit means "never" in practice; refuse it rather than overflow timers.
    if secs > 1e9 {
        return Err(Error::Config {
            field: field.into(),
            reason: format!("{secs} s is too large (use 0 for never)"),
        });
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

fn parse_addr(field: &'static str, text: &str) -> Result<Option<SocketAddr>> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let text = text
        .strip_prefix("localhost:")
        .map_or_else(|| text.to_owned(), |port| format!("127.0.0.1:{port}"));
    text.parse().map(Some).map_err(|_| Error::Config {
        field: field.into(),
        reason: format!("{text:?} is not an IP:PORT address (e.g. \"127.0.0.1:9876\"), nor \"off\""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_valid() {
        let c = ServerConfig::default();
        c.validate().unwrap();
        assert!(c.tcp_addr().unwrap().unwrap().ip().is_loopback());
    }

    #[test]
    fn public_address_needs_token_or_insecure() {
        let mut c = ServerConfig {
            tcp: "0.0.0.0:9876".into(),
            ..ServerConfig::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("server.tcp") && err.contains("--insecure"), "{err}");
        c.insecure = true;
        c.validate().unwrap();
        c.insecure = false;
        c.auth_token = Some("secret".into());
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn bad_values_name_the_field() {
        let c = ServerConfig {
            http: "nope".into(),
            ..ServerConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("server.http"));
        let c = ServerConfig {
            max_line_bytes: 0,
            ..ServerConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("server.max_line_bytes"));
        let c = ServerConfig {
            tcp: "off".into(),
            ..ServerConfig::default()
        };
        assert_eq!(c.tcp_addr().unwrap(), None);
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e12] {
            let c = ServerConfig {
                idle_timeout_secs: bad,
                ..ServerConfig::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("server.idle_timeout_secs"), "{bad}: {err}");
            let c = ServerConfig {
                request_timeout_secs: bad,
                ..ServerConfig::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("server.request_timeout_secs"), "{bad}: {err}");
            let c = ServerConfig {
                shutdown_grace_secs: bad,
                ..ServerConfig::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("server.shutdown_grace_secs"), "{bad}: {err}");
        }
        // A token that an HTTP header cannot carry (the value is trimmed) is refused.
        for bad in [" tok", "tok ", "to k", "tok\n", "t\u{1b}k"] {
            let c = ServerConfig {
                auth_token: Some(bad.into()),
                ..ServerConfig::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(
                err.contains("server.auth_token") && err.contains("whitespace"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn idle_timeout_takes_whole_and_fractional_seconds() {
        let parse = |text: &str| {
            serde_json::from_str::<ServerConfig>(text)
                .unwrap()
                .idle_timeout()
                .unwrap()
        };
        assert_eq!(
            parse(r#"{"idle_timeout_secs":300}"#),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse(r#"{"idle_timeout_secs":0.25}"#),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse(r#"{"idle_timeout_secs":0}"#), None);
        assert_eq!(parse("{}"), Some(Duration::from_secs(300)));
        // The config file is TOML, where `300` is an integer and `0.3` a float.
        for (text, want) in [
            ("idle_timeout_secs = 300", 300_000),
            ("idle_timeout_secs = 0.3", 300),
        ] {
            let c: ServerConfig = toml::from_str(text).unwrap();
            assert_eq!(c.idle_timeout().unwrap(), Some(Duration::from_millis(want)));
        }
    }
}
