//! Shared helpers: the servers `scripts/test` started, found through environment variables.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server process this test owns; killed when dropped.
pub struct OwnServer {
    pub port: u16,
    child: Option<Child>,
}

impl OwnServer {
    /// Starts `redis-server` on `port` with an append-only file in `dir` (so a kill -9 loses
    /// nothing acknowledged), or `None` when `redis-server` is missing (a failure under CI).
    pub fn start(port: u16, dir: &Path) -> Option<OwnServer> {
        Self::start_with(port, dir, &[])
    }

    /// [`OwnServer::start`] with extra `redis-server` arguments (e.g. `--requirepass x`).
    pub fn start_with(port: u16, dir: &Path, extra: &[&str]) -> Option<OwnServer> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("cannot start redis-server (CI=true, so this fails): {e}")
            }
            Err(e) => {
                eprintln!("skipping: cannot start redis-server: {e}");
                return None;
            }
        };
        let server = OwnServer {
            port,
            child: Some(child),
        };
        server.wait_ready(extra.windows(2).find(|w| w[0] == "--requirepass").map(|w| w[1]));
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn wait_ready(&self, password: Option<&str>) {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => self.url(),
        };
        let client = redis::Client::open(url).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not answer within 10 s", self.port);
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}
