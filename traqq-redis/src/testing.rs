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

/// A free loopback port whose cluster bus port (port + 10000) is free too.
pub fn free_cluster_port() -> Option<u16> {
    (0..50).find_map(|_| {
        let port = free_port()?;
        let bus = port.checked_add(10_000)?;
        TcpListener::bind(("127.0.0.1", bus)).ok().map(|_| port)
    })
}

/// Joins `nodes` into one Redis Cluster with `replicas` replicas per master
/// (`redis-cli --cluster create`), and waits until every node reports `cluster_state:ok` and
/// every replica's link to its master is up.
pub fn create_cluster(nodes: &[OwnServer], replicas: usize) {
    let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&o.stdout)
        ),
        Err(e) => panic!("cannot run redis-cli: {e}"),
    }
    let start = Instant::now();
    for node in nodes {
        loop {
            if node.cluster_ready() {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!("cluster node on port {} not ready within 30 s", node.port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
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

    /// A Redis Cluster node without persistence: its cluster state in `dir`, failing over a
    /// master that has been silent for `node_timeout_ms`. Join nodes with [`create_cluster`].
    pub fn cluster_node(port: u16, dir: &Path, node_timeout_ms: u64) -> Option<OwnServer> {
        let dir = dir.to_string_lossy();
        let conf = format!("nodes-{port}.conf");
        let timeout = node_timeout_ms.to_string();
        Self::start(
            port,
            &[
                "--appendonly",
                "no",
                "--dir",
                &dir,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--cluster-node-timeout",
                &timeout,
            ],
        )
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

    /// `cluster_state:ok`, and for a replica a replication link that is up.
    pub fn cluster_ready(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
            return false;
        };
        let state: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut c)
            .unwrap_or_default();
        let replication: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut c)
            .unwrap_or_default();
        state.contains("cluster_state:ok")
            && (replication.contains("role:master") || replication.contains("master_link_status:up"))
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
