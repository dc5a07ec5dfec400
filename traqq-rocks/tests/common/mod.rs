//! Helpers shared by this crate's tests; the only backend-specific part is the first lines.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use traqq_storage::prelude::*;

pub(crate) use traqq_rocks::{RocksConfig as StoreConfig, RocksStorage as Store};

/// Opens the store at `path` with durability `sync`.
pub(crate) fn open(path: &Path, sync: Durability) -> traqq_storage::Result<Store> {
    Store::open(path, StoreConfig::with_sync(sync))
}

/// A Monday midnight UTC, three days after the first test event day.
pub(crate) const NOW: i64 = 1_700_006_400 + 3 * 86_400;

/// A mapping touching every metric type, with hourly buckets.
pub(crate) fn config() -> TraqqConfig {
    TraqqConfig {
        time: TimeConfig {
            store_hourly: true,
            ..TimeConfig::default()
        },
        mapping: MappingConfig {
            bitmap: vec!["ip".into(), "geo".into()],
            add: vec!["event".into(), "event~geo".into()],
            add_value: vec![AddValueConfig {
                key: "event".into(),
                add_key: "amount".into(),
            }],
            top: vec!["geo".into(), "event~ip".into()],
        },
        ..TraqqConfig::default()
    }
}

/// `n` deterministic JSON events spread over the three days before [`NOW`], named `name`.
pub(crate) fn events(name: &str, seed: u64, n: usize) -> Vec<String> {
    let geos = ["US", "DE", "FR", "BR", "JP", "IN"];
    (0..n as u64)
        .map(|i| {
            let x = (seed.wrapping_mul(6_364_136_223_846_793_005))
                .wrapping_add(i.wrapping_mul(1_442_695_040_888_963_407));
            let ts = NOW - 3 * 86_400 + (x % (3 * 86_400)) as i64;
            format!(
                r#"{{"event":"{name}","ip":"10.{}.{}.{}","geo":"{}","amount":{}.25,"ts":{ts}}}"#,
                (x >> 8) % 4,
                (x >> 16) % 256,
                (x >> 24) % 256,
                geos[((x >> 32) % 6) as usize],
                (x >> 40) % 100,
            )
        })
        .collect()
}

/// An engine over `store` under prefix `app`, its clock at [`NOW`].
pub(crate) fn engine(store: Store) -> Traqq {
    Traqq::new(config(), store, "app")
        .unwrap()
        .with_clock(ManualClock::new(NOW))
}

/// The whole three-day query, daily and hourly.
pub(crate) fn everything(traqq: &Traqq) -> (QueryResult, QueryResult) {
    (
        traqq.query(NOW - 3 * 86_400, NOW).unwrap(),
        traqq.query_hourly(NOW - 3 * 86_400, NOW - 1).unwrap(),
    )
}

/// The merged count of `add/event` field `name` (0 when absent).
pub(crate) fn event_count(traqq: &Traqq, name: &str) -> i64 {
    let r = traqq.query(NOW - 3 * 86_400, NOW).unwrap();
    r.find_str("add/event")
        .first()
        .and_then(|m| match &m.result {
            MetricData::Hash(h) => h.get(name).copied(),
            _ => None,
        })
        .unwrap_or(0)
}
