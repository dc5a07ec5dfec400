//! A throwaway `redis-server` for benchmarks: no persistence, a free loopback port, stopped
//! on drop. Benchmarks use `TRAQQ_REDIS_URL` instead when it is set.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `redis-server` child process (killed on drop), or `None` for a server the user
/// named in `TRAQQ_REDIS_URL`.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    url: String,
}

impl RedisServer {
    /// `TRAQQ_REDIS_URL` when set, else a fresh `redis-server` from `PATH`; `None` when
    /// neither is available (the caller skips its Redis figures and says so).
    pub fn start() -> Option<RedisServer> {
        if let Ok(url) = std::env::var("TRAQQ_REDIS_URL") {
            return Some(RedisServer { child: None, url });
        }
        let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let port = port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let server = RedisServer {
            child: Some(child),
            url: format!("redis://127.0.0.1:{port}/"),
        };
        // Ready once it accepts connections (a PING-less check keeps this crate free of a
        // Redis client).
        for _ in 0..100 {
            if std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id, when this process started it (for its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
