//! A Redis for benchmarks: the one named in `TRAQQ_REDIS_URL`, else a throwaway
//! `redis-server` without persistence (`traqq_redis::testing::OwnServer`), stopped on drop.

use traqq_redis::testing::{free_port, OwnServer};

/// A Redis to benchmark against.
#[derive(Debug)]
pub struct RedisServer {
    own: Option<OwnServer>,
    url: String,
}

impl RedisServer {
    /// `TRAQQ_REDIS_URL` when set, else a fresh `redis-server` from `PATH`; `None` when
    /// neither is available (the caller skips its Redis figures and says so).
    pub fn start() -> Option<RedisServer> {
        if let Ok(url) = std::env::var("TRAQQ_REDIS_URL") {
            return Some(RedisServer { own: None, url });
        }
        let own = OwnServer::ephemeral(free_port()?)?;
        Some(RedisServer {
            url: own.url(),
            own: Some(own),
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id, when this process started it (for its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.own.as_ref().and_then(OwnServer::pid)
    }
}
