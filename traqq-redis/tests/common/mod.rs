//! Shared helpers: the servers `scripts/test` started, found through environment variables.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use traqq_redis::{RedisConfig, RedisStorage};

/// The value of `var`, or `None` after saying why the test skips. Under `CI=true` a missing
/// server fails the test instead.
pub fn env_or_skip(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{var} is not set: scripts/test starts Redis and sets it (CI=true, so this fails)")
        }
        _ => {
            eprintln!("skipping: {var} is not set (run ./scripts/test, which starts Redis)");
            None
        }
    }
}

/// The single node's URL.
pub fn single_url() -> Option<String> {
    env_or_skip("TRAQQ_REDIS_URL")
}

/// The cluster's node URLs.
pub fn cluster_urls() -> Option<Vec<String>> {
    env_or_skip("TRAQQ_REDIS_CLUSTER_URLS").map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

/// A store on the single node.
pub fn single() -> Option<RedisStorage> {
    single_url().map(|u| RedisStorage::connect(RedisConfig::single(u)).unwrap())
}

/// A store on the cluster.
pub fn cluster() -> Option<RedisStorage> {
    cluster_urls().map(|u| RedisStorage::connect(RedisConfig::cluster(u)).unwrap())
}

#[allow(unused_imports)] // Not every test file starts its own server.
pub use traqq_redis::testing::OwnServer;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    traqq_redis::testing::free_port().unwrap()
}
