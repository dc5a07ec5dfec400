//! TLS (`rediss://`) for real: scripts/test starts a TLS-only redis-server with a password and
//! a TLS-only 3-master cluster (client and bus), their certificate signed by a throwaway CA,
//! and exports `TRAQQ_REDIS_TLS_URL` (with the password), `TRAQQ_REDIS_TLS_CLUSTER_URLS` and
//! `TRAQQ_REDIS_TLS_CA` (the CA's PEM file).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::Commands;
use traqq_redis::{RedisConfig, RedisStorage};
use traqq_storage::prelude::*;

/// 2023-11-15 00:00 UTC.
const DAY: i64 = 1_700_006_400;

fn tls_env() -> Option<(String, String)> {
    Some((
        common::env_or_skip("TRAQQ_REDIS_TLS_URL")?,
        common::env_or_skip("TRAQQ_REDIS_TLS_CA")?,
    ))
}

fn quick(config: RedisConfig) -> RedisConfig {
    RedisConfig {
        connect_timeout_ms: 1_000,
        response_timeout_ms: 1_000,
        ..config
    }
}

#[test]
fn records_and_queries_over_tls_trusting_the_given_ca() {
    let Some((url, ca)) = tls_env() else { return };
    assert!(url.starts_with("rediss://"), "{url}");
    let p = format!("tls{}", std::process::id());
    let config = TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into()],
            top: vec!["geo".into()],
            ..MappingConfig::default()
        },
        ..TraqqConfig::default()
    };
    let storage = RedisStorage::connect(RedisConfig::single(url.as_str()).with_tls_ca_file(&ca)).unwrap();
    let traqq = Traqq::new(config, storage, &p).unwrap();
    // 300 events over 3 ips and 2 countries, counted here independently.
    let mut lines = Vec::new();
    let mut truth: BTreeMap<&str, i64> = BTreeMap::new();
    for i in 0..300 {
        let event = ["click", "view", "view"][i % 3];
        *truth.entry(event).or_default() += 1;
        lines.push(format!(
            r#"{{"event":"{event}","ip":"10.0.0.{}","geo":"{}","ts":{}}}"#,
            i % 3,
            if i % 4 == 0 { "US" } else { "DE" },
            DAY + 60 + i as i64
        ));
    }
    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!((out.recorded, out.rejected.len()), (300, 0));

    let r = traqq.query(DAY, DAY).unwrap();
    assert_eq!(r.find_str("bmp/ip")[0].result, MetricData::Count(3));
    assert_eq!(
        r.find_str("top/geo")[0].result,
        MetricData::Ranked(vec![("DE".into(), 225.0), ("US".into(), 75.0)])
    );

    // A second, independent TLS connection (redis-rs, same CA) sees the native hash.
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&ca).unwrap()),
        },
    )
    .unwrap();
    let mut conn = client.get_connection().unwrap();
    let hash: BTreeMap<String, i64> = conn.hgetall(format!("{p}:add:d:{DAY}:event")).unwrap();
    let want: BTreeMap<String, i64> = truth.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    assert_eq!(hash, want);
    let keys: Vec<String> = conn.keys(format!("{p}:*")).unwrap();
    let _: () = conn.del(keys).unwrap();
}

#[test]
fn untrusted_certificates_wrong_passwords_and_plain_text_fail_promptly() {
    let Some((url, ca)) = tls_env() else { return };
    let (scheme_less, password) = {
        let rest = url.strip_prefix("rediss://").unwrap();
        let (auth, host) = rest.split_once('@').expect("the TLS URL carries a password");
        (host.to_owned(), auth.trim_start_matches(':').to_owned())
    };
    let cases = [
        // The throwaway CA is not among the system's roots.
        (RedisConfig::single(url.as_str()), "certificate"),
        (
            RedisConfig::single(format!("rediss://:nope-7f3a@{scheme_less}")).with_tls_ca_file(&ca),
            "authentication",
        ),
        // Plain text to a TLS port: the server hangs up (reset, closed or broken pipe).
        (
            RedisConfig::single(format!("redis://:{password}@{scheme_less}")),
            "",
        ),
    ];
    for (config, needle) in cases {
        let start = Instant::now();
        let e = RedisStorage::connect(quick(config)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, traqq_storage::Error::Open { .. }), "{msg}");
        assert!(msg.to_lowercase().contains(needle), "{msg}");
        assert!(!msg.contains("nope-7f3a") && !msg.contains(&password), "{msg}");
        assert!(start.elapsed() < Duration::from_secs(10), "{msg}");
    }
    // A CA file that is not there is an error naming the field and the file.
    let e = RedisStorage::connect(RedisConfig::single(url.as_str()).with_tls_ca_file("/nonexistent/ca.pem"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("storage.tls_ca_file") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
}

#[test]
fn cluster_over_tls_records_and_unions() {
    let (Some(urls), Some(ca)) = (
        common::env_or_skip("TRAQQ_REDIS_TLS_CLUSTER_URLS"),
        common::env_or_skip("TRAQQ_REDIS_TLS_CA"),
    ) else {
        return;
    };
    let urls: Vec<String> = urls.split(',').map(|u| u.trim().to_owned()).collect();
    assert!(urls.iter().all(|u| u.starts_with("rediss://")), "{urls:?}");
    let p = format!("tlsc{}", std::process::id());
    let config = TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into(), "geo".into()],
            top: vec!["geo".into()],
            ..MappingConfig::default()
        },
        ..TraqqConfig::default()
    };
    let storage =
        RedisStorage::connect(RedisConfig::cluster(urls.iter().cloned()).with_tls_ca_file(&ca)).unwrap();
    let traqq = Traqq::new(config, storage, &p).unwrap();
    // Two days, 40 ips, 4 countries; the truth is counted here.
    let mut lines = Vec::new();
    let mut events = 0i64;
    for i in 0..400 {
        events += 1;
        lines.push(format!(
            r#"{{"event":"click","ip":"10.1.0.{}","geo":"G{}","ts":{}}}"#,
            i % 40,
            i % 4,
            DAY + (i as i64 % 2) * 86_400 + 60
        ));
    }
    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!((out.recorded, out.rejected.len()), (400, 0));
    let r = traqq.query(DAY, DAY + 86_400).unwrap();
    assert_eq!(r.find_str("bmp/ip")[0].result, MetricData::Count(40));
    assert_eq!(
        r.find_str("add/event")[0].result,
        MetricData::Hash([("click".into(), events)].into())
    );
    let top = match &r.find_str("top/geo")[0].result {
        MetricData::Ranked(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(top.len(), 4);
    assert!(top.iter().all(|(_, s)| *s == 100.0), "{top:?}");
}
