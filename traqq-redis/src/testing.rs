//! Throwaway `redis-server` processes for tests and benchmarks (feature `testing`): the one
//! launcher the workspace uses. `scripts/test` starts shared servers and names them in
//! `TRAQQ_REDIS_URL` / `TRAQQ_REDIS_CLUSTER_URLS`; a test that must kill or restart its server
//! starts its own here.

// Test infrastructure: failing loudly (a panic) is how it reports a server that will not start.
#![allow(clippy::panic)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process on a loopback port; killed (like a crash) when dropped.
#[derive(Debug)]
pub struct OwnServer {
    /// The port it listens on.
    pub port: u16,
    child: Option<Child>,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Option<u16> {
    Some(TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port())
}

impl OwnServer {
    /// A server with an append-only file in `dir`, fsynced on every write (a kill -9 loses
    /// nothing acknowledged; restart it on the same `port` and `dir` to get the data back).
    /// `None` when `redis-server` cannot be started; under `CI=true` that panics instead.
    pub fn durable(port: u16, dir: &Path, extra: &[&str]) -> Option<OwnServer> {
        let dir = dir.to_string_lossy();
        let mut args = vec!["--appendonly", "yes", "--appendfsync", "always", "--dir", &*dir];
        args.extend_from_slice(extra);
        Self::start(port, &args)
    }

    /// A server without persistence (benchmarks, tests that only need a server of their own).
    pub fn ephemeral(port: u16) -> Option<OwnServer> {
        Self::start(port, &["--appendonly", "no"])
    }

    /// A replica of `master` without persistence, once its replication link is up.
    pub fn replica_of(port: u16, master: &OwnServer) -> Option<OwnServer> {
        let master_port = master.port.to_string();
        let replica = Self::start(
            port,
            &["--appendonly", "no", "--replicaof", "127.0.0.1", &master_port],
        )?;
        let Ok(client) = redis::Client::open(replica.url()) else {
            panic!("bad test URL for port {port}");
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let info = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("INFO").arg("replication").query::<String>(&mut c));
            if info.is_ok_and(|i| i.contains("master_link_status:up")) {
                return Some(replica);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the replica on port {port} did not reach its master within 10 s");
    }

    fn start(port: u16, args: &[&str]) -> Option<OwnServer> {
        // A replica's full sync writes an RDB file even with `--save ""`: keep it out of the
        // working directory (a later `--dir` in `args` wins).
        let temp_dir = std::env::temp_dir();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(&temp_dir)
            .args(args)
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
        let password = args.windows(2).find(|w| w[0] == "--requirepass").map(|w| w[1]);
        server.wait_ready(password);
        Some(server)
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The process id (for its CPU time in benchmarks), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn wait_ready(&self, password: Option<&str>) {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => self.url(),
        };
        let Ok(client) = redis::Client::open(url) else {
            panic!("bad test URL for port {}", self.port);
        };
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
