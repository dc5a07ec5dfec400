//! `SSL_CERT_FILE`, the OpenSSL convention, names the CA for programs that build their own
//! `RedisConfig` without `tls_ca_file` (the CLI's `[storage]` table). Its own test binary,
//! because it changes the process environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use traqq_redis::{RedisConfig, RedisStorage};
use traqq_storage::prelude::*;

#[test]
fn ssl_cert_file_names_the_trusted_ca() {
    let (Some(url), Some(ca)) = (
        common::env_or_skip("TRAQQ_REDIS_TLS_URL"),
        common::env_or_skip("TRAQQ_REDIS_TLS_CA"),
    ) else {
        return;
    };
    std::env::set_var("SSL_CERT_FILE", &ca);
    let storage = RedisStorage::connect(RedisConfig::single(url.as_str())).unwrap();
    let key = format!("tlsenv{}:add:d:1700006400:event", std::process::id());
    let mut b = Batch::new();
    b.incr(&key, (BucketKind::Day, 1_700_006_400), "x", Number::Int(7));
    storage.apply(&b).unwrap();
    assert_eq!(
        storage.read_hash(&key).unwrap(),
        vec![("x".to_owned(), Number::Int(7))]
    );
    storage.delete(&[key]).unwrap();
}
