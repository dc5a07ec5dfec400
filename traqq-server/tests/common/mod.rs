//! Shared set-up: a mapping, a server on free loopback ports, a fault-injecting store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use traqq_server::{RunningServer, ServerConfig};
use traqq_storage::prelude::*;
use traqq_storage::traqq_core::batch::Batch;
use traqq_storage::Error;

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

/// The real memory store, failing with `Error::Unavailable` while `down` is set (a fault
/// injector for outage tests; real Redis outages are tested by traqq-redis).
#[derive(Debug, Default)]
pub struct Flaky {
    pub inner: MemoryStorage,
    pub down: AtomicBool,
    pub flushes: AtomicUsize,
    /// Milliseconds each `apply` sleeps (a slow store).
    pub apply_delay_ms: AtomicUsize,
}

impl Flaky {
    fn check(&self) -> traqq_storage::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable {
                backend: "flaky",
                message: "injected outage".into(),
            });
        }
        Ok(())
    }
}

impl Storage for Flaky {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn apply(&self, batch: &Batch) -> traqq_storage::Result<()> {
        self.check()?;
        let delay = self.apply_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay as u64));
        }
        self.inner.apply(batch)
    }
    fn read(&self, reads: &[Read]) -> traqq_storage::Result<Vec<ReadResult>> {
        self.check()?;
        self.inner.read(reads)
    }
    fn delete(&self, keys: &[String]) -> traqq_storage::Result<()> {
        self.check()?;
        self.inner.delete(keys)
    }
    fn flush(&self) -> traqq_storage::Result<()> {
        self.check()?;
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
