//! [`RedisConfig`]: where Redis is and how long to wait for it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use traqq_core::config::RetentionConfig;

/// The default single-node URL.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Connection settings of the Redis backend (the `[storage]` table of a config file).
///
/// Either one node (`url`) or a Redis Cluster (`cluster_urls`, any reachable nodes of it).
/// URLs follow redis-rs: `redis://[user][:password@]host[:port][/db]`, and `rediss://…` for
/// TLS (rustls). A TLS server's certificate is checked against `tls_ca_file` when given, else
/// against the system's roots (or the PEM file named by the `SSL_CERT_FILE` environment
/// variable, the usual OpenSSL convention, which also serves programs that do not expose
/// `tls_ca_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Single-node URL; [`DEFAULT_URL`] when neither this nor `cluster_urls` is given.
    pub url: Option<String>,
    /// Seed nodes of a Redis Cluster. Non-empty selects cluster mode (and the hash-tagged key
    /// layout, see [`crate::keys`]).
    pub cluster_urls: Vec<String>,
    /// Keys expire this long after their bucket starts (plus one day of slack); 0 keeps them.
    pub retention: RetentionConfig,
    /// Longest wait for a TCP connection to a node, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest wait for the answer to one batch or read, in milliseconds. While Redis is down,
    /// operations fail with `Error::Unavailable` after at most about this plus
    /// `connect_timeout_ms`.
    pub response_timeout_ms: u64,
    /// PEM file of the CA certificate(s) that signed the servers' certificates, for `rediss://`
    /// URLs: only these are trusted then (not the system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), for servers that check clients
    /// (`tls-auth-clients yes`); needs `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Replicas that must hold a batch before it is acknowledged (`WAIT N` on the node the
    /// batch went to, after each write); 0 (the default) acknowledges once the master has it.
    /// Redis replicates asynchronously: without this, a master that dies before its replica got
    /// the last batches loses them on failover.
    pub replicas_ack: u32,
    /// How long a batch waits for `replicas_ack` replicas, in milliseconds; past it the batch
    /// fails (it is on the master, not yet on enough replicas).
    pub replicas_ack_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            cluster_urls: Vec::new(),
            retention: RetentionConfig::default(),
            connect_timeout_ms: 1_000,
            response_timeout_ms: 3_000,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            replicas_ack: 0,
            replicas_ack_timeout_ms: 1_000,
        }
    }
}

impl RedisConfig {
    /// One Redis node at `url`.
    pub fn single(url: impl Into<String>) -> Self {
        RedisConfig {
            url: Some(url.into()),
            ..RedisConfig::default()
        }
    }

    /// A Redis Cluster reached through any of `urls`.
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisConfig {
            cluster_urls: urls.into_iter().map(Into::into).collect(),
            ..RedisConfig::default()
        }
    }

    /// Sets the retention (builder style).
    pub fn with_retention(mut self, retention: RetentionConfig) -> Self {
        self.retention = retention;
        self
    }

    /// Trusts only the CA certificate(s) in the PEM file `path` for `rediss://` (builder style).
    pub fn with_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// True when the connections use TLS (`rediss://` URLs).
    pub fn is_tls(&self) -> bool {
        self.urls().iter().any(|u| is_tls_url(u))
    }

    /// True in cluster mode.
    pub fn is_cluster(&self) -> bool {
        !self.cluster_urls.is_empty()
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }

    pub(crate) fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms.max(1))
    }

    /// Checks the settings; the error names the field at fault.
    pub fn validate(&self) -> traqq_core::Result<()> {
        if self.replicas_ack > 0 && self.replicas_ack_timeout_ms == 0 {
            return Err(config_error(
                "storage.redis_replicas_ack_timeout_ms",
                "must be at least 1 when redis_replicas_ack is set (WAIT 0 would wait forever)",
            ));
        }
        if self.url.is_some() && self.is_cluster() {
            return Err(config_error(
                "storage.url",
                "give either url (one node) or cluster_urls (a cluster), not both",
            ));
        }
        for (field, url) in self
            .url
            .iter()
            .map(|u| ("storage.url", u))
            .chain(self.cluster_urls.iter().map(|u| ("storage.cluster_urls", u)))
        {
            check_url(url).map_err(|reason| config_error(field, reason))?;
        }
        let urls = self.urls();
        let tls = urls.iter().filter(|u| is_tls_url(u)).count();
        if tls != 0 && tls != urls.len() {
            return Err(config_error(
                "storage.cluster_urls",
                "mixes rediss:// (TLS) and redis:// URLs: the nodes of one cluster use one or the other",
            ));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(config_error(
                    "storage.tls_key_file",
                    "tls_cert_file is set: give the client certificate's private key too",
                ))
            }
            (None, Some(_)) => {
                return Err(config_error(
                    "storage.tls_cert_file",
                    "tls_key_file is set: give the client certificate too",
                ))
            }
            _ => {}
        }
        if tls == 0 {
            let set = [
                ("storage.tls_ca_file", &self.tls_ca_file),
                ("storage.tls_cert_file", &self.tls_cert_file),
            ];
            if let Some((field, _)) = set.iter().find(|(_, v)| v.is_some()) {
                return Err(config_error(
                    field,
                    "is set, but no URL uses TLS: write rediss://… to connect with TLS",
                ));
            }
        }
        if self.connect_timeout_ms == 0 || self.response_timeout_ms == 0 {
            return Err(config_error(
                "storage.connect_timeout_ms",
                "timeouts must be at least 1 ms",
            ));
        }
        Ok(())
    }

    /// The URLs to connect to, in order.
    pub(crate) fn urls(&self) -> Vec<String> {
        if self.is_cluster() {
            self.cluster_urls.clone()
        } else {
            vec![self.url.clone().unwrap_or_else(|| DEFAULT_URL.to_owned())]
        }
    }

    /// Seconds until a key of a bucket starting at `bucket_start` expires, as an absolute unix
    /// time for `EXPIREAT`, or `None` when that bucket kind is kept forever.
    pub(crate) fn expire_at(&self, bucket: traqq_core::bucket::BucketKind, bucket_start: i64) -> Option<i64> {
        let days = match bucket {
            traqq_core::bucket::BucketKind::Day => self.retention.daily_days,
            traqq_core::bucket::BucketKind::Hour | traqq_core::bucket::BucketKind::Quarter => {
                self.retention.hourly_days
            }
        };
        (days > 0).then(|| bucket_start.saturating_add((i64::from(days) + 1) * 86_400))
    }
}

fn config_error(field: &str, reason: impl Into<String>) -> traqq_core::Error {
    traqq_core::Error::Config {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("redis") | Some("valkey") | Some("rediss") | Some("valkeys") => Ok(()),
        _ => Err(format!(
            "{} is not a redis:// or rediss:// URL (redis://[user][:password@]host[:port][/db])",
            redact(url)
        )),
    }
}

fn is_tls_url(url: &str) -> bool {
    matches!(
        url.split_once("://").map(|(s, _)| s),
        Some("rediss") | Some("valkeys")
    )
}

/// `url` with any password replaced by `***`, for error messages and logs.
pub fn redact(url: &str) -> String {
    const HIDDEN: &str = "***";
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some(HIDDEN));
            }
            // `redis+unix:///run/redis.sock?pass=...` carries the password in the query.
            if parsed.query_pairs().any(|(k, _)| is_secret(&k)) {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if is_secret(&k) {
                            HIDDEN.into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        // Unparsable (e.g. a password holding '/'): show nothing between the scheme and the
        // last '@', and no query.
        Err(_) => {
            let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
            let rest = match url.rfind('@') {
                Some(at) => format!("{scheme}://{HIDDEN}@{}", &url[at + 1..]),
                None => url.to_owned(),
            };
            rest.split(['?', '#']).next().unwrap_or_default().to_owned()
        }
    }
}

fn is_secret(query_key: &str) -> bool {
    matches!(query_key, "pass" | "password")
}

#[cfg(test)]
mod tests {
    use super::*;
    use traqq_core::bucket::BucketKind;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://:s3cret@h:1/2"), "redis://:***@h:1/2");
        assert_eq!(redact("redis://u:p@w@h"), "redis://u:***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("nonsense"), "nonsense");
        // Passwords the old hand-written parser leaked (issue 14).
        for (url, secret) in [
            ("redis://:pa/ss@h", "pa/ss"),
            ("redis://:pa?ss@h:1/0", "pa?ss"),
            ("redis+unix:///run/redis.sock?db=1&pass=x5ecret", "x5ecret"),
            ("redis+unix:///s?password=x5ecret", "x5ecret"),
            ("rediss://user:p%40ss@h:6380/0", "p%40ss"),
        ] {
            let shown = redact(url);
            assert!(!shown.contains(secret), "{url} -> {shown}");
            assert!(shown.contains("***"), "{url} -> {shown}");
        }
        assert!(redact("redis+unix:///s?db=1&pass=x").contains("db=1"));
    }

    #[test]
    fn validates_urls_and_modes() {
        assert!(RedisConfig::single("redis://:pw@127.0.0.1:6379/3")
            .validate()
            .is_ok());
        assert!(RedisConfig::default().validate().is_ok());
        assert!(RedisConfig::single("rediss://:pw@host").validate().is_ok());
        let mixed = RedisConfig::cluster(["rediss://a:1", "redis://b:2"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            mixed.contains("storage.cluster_urls") && mixed.contains("mixes"),
            "{mixed}"
        );
        let plain_with_ca = RedisConfig::single("redis://h").with_tls_ca_file("ca.pem");
        let e = plain_with_ca.validate().unwrap_err().to_string();
        assert!(
            e.contains("storage.tls_ca_file") && e.contains("rediss://"),
            "{e}"
        );
        let half = RedisConfig {
            tls_cert_file: Some("client.pem".into()),
            ..RedisConfig::single("rediss://h")
        };
        let e = half.validate().unwrap_err().to_string();
        assert!(e.contains("storage.tls_key_file"), "{e}");
        let both = RedisConfig {
            url: Some("redis://a".into()),
            ..RedisConfig::cluster(["redis://b"])
        };
        assert!(both.validate().unwrap_err().to_string().contains("not both"));
        let bad = RedisConfig::cluster(["http://x"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(bad.contains("storage.cluster_urls"), "{bad}");
    }

    #[test]
    fn expiry_follows_retention() {
        let mut c = RedisConfig::default();
        assert_eq!(c.expire_at(BucketKind::Day, 1_000), None);
        c.retention.daily_days = 30;
        c.retention.hourly_days = 2;
        assert_eq!(c.expire_at(BucketKind::Day, 1_000), Some(1_000 + 31 * 86_400));
        assert_eq!(c.expire_at(BucketKind::Hour, 1_000), Some(1_000 + 3 * 86_400));
    }
}
