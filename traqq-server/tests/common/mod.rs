//! Shared set-up: a mapping, a server on free loopback ports, a fault-injecting store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

pub mod wire;

use std::sync::Arc;

use traqq_server::{RunningServer, ServerConfig};
use traqq_storage::prelude::*;

pub fn mapping() -> TraqqConfig {
    TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into(), "event~geo".into()],
            add_value: vec![AddValueConfig {
                key: "event".into(),
                add_key: "amount".into(),
            }],
            top: vec!["geo".into()],
            distribution: Vec::new(),
        },
        ..TraqqConfig::default()
    }
}

pub fn loopback() -> ServerConfig {
    ServerConfig {
        tcp: "127.0.0.1:0".into(),
        http: "127.0.0.1:0".into(),
        ..ServerConfig::default()
    }
}

/// A server over `storage` with the test mapping.
pub fn start_with(
    config: ServerConfig,
    traqq_config: TraqqConfig,
    storage: Arc<dyn Storage>,
) -> RunningServer {
    let traqq = Traqq::with_shared_storage(traqq_config, storage, "t").unwrap();
    RunningServer::start(config, Arc::new(traqq)).unwrap()
}

pub fn start(config: ServerConfig) -> (RunningServer, Arc<MemoryStorage>) {
    let store = Arc::new(MemoryStorage::new());
    (start_with(config, mapping(), store.clone()), store)
}

/// The real memory store behind fault switches (outage, slow writes) and counters: the one
/// fault injector of the test suites (real Redis outages are tested by traqq-redis).
pub type Flaky = traqq_storage::conformance::Faulty;

/// Writes `request` over and over on `stream` and never reads a reply, until a write fails
/// (the server closed the connection) or `cap` bytes went out; returns the bytes sent.
pub fn flood_without_reading(stream: &std::net::TcpStream, request: &[u8], cap: usize) -> usize {
    use std::io::Write;
    let mut writer = stream.try_clone().unwrap();
    let chunk = request.repeat((64 * 1024 / request.len()).max(1));
    let mut sent = 0;
    while sent < cap && writer.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    sent
}

/// Waits up to `limit` for `done`; true when it came.
pub fn eventually(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}
