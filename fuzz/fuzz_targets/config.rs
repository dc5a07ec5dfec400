//! The TOML config file: `TraqqConfig` and `ServerConfig` alone, and the whole file as the CLI
//! reads it (the library sections plus `prefix`, `[storage]`, `[server]`; the CLI is a binary
//! crate, so its `FileConfig` is mirrored here). Valid configs compile into an `OpGenerator`,
//! turn an event that sets every mapped property into a batch, and survive a TOML round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use traqq_core::config::{
    EventConfig, LimitsConfig, MappingConfig, QueryConfig, RetentionConfig, TimeConfig, TraqqConfig,
};
use traqq_core::event::IncomingEvent;
use traqq_core::ops::OpGenerator;
use traqq_server::ServerConfig;

/// `traqq-cli/src/config.rs` `FileConfig`, field for field.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    prefix: String,
    time: TimeConfig,
    mapping: MappingConfig,
    limits: LimitsConfig,
    event: EventConfig,
    retention: RetentionConfig,
    query: QueryConfig,
    storage: StorageConfig,
    server: ServerConfig,
}

/// `traqq-cli/src/config.rs` `StorageConfig`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StorageConfig {
    backend: String,
    path: std::path::PathBuf,
    url: String,
    cluster_urls: Vec<String>,
    sync: Option<String>,
    tls_ca_file: Option<std::path::PathBuf>,
    tls_cert_file: Option<std::path::PathBuf>,
    tls_key_file: Option<std::path::PathBuf>,
    write_buffer_ms: u64,
    write_buffer_ops: usize,
}

/// Times that stress the calendar: the supported range's ends, DST edges, the epoch.
const TIMES: [i64; 6] = [
    traqq_core::bucket::MIN_TIMESTAMP,
    traqq_core::bucket::MAX_TIMESTAMP,
    0,
    1_700_000_000,
    1_711_846_800, // 2024-03-31 01:00 UTC (EU DST starts)
    1_730_599_200, // 2024-11-03 02:00 UTC (US DST ends)
];

fn check_library(config: &TraqqConfig, prefix: &str) {
    if config.validate().is_err() {
        assert!(
            OpGenerator::new(config, prefix).is_err(),
            "OpGenerator accepted an invalid config"
        );
        return;
    }
    let Ok(generator) = OpGenerator::new(config, prefix) else {
        return; // the prefix
    };
    // An event that sets every property the mapping names, at each of TIMES.
    let m = &config.mapping;
    let mut props = serde_json::Map::new();
    let parts = m
        .bitmap
        .iter()
        .chain(&m.add)
        .chain(&m.top)
        .chain(m.add_value.iter().map(|a| &a.key));
    for (i, pattern) in parts.enumerate() {
        for part in pattern.split('~') {
            props.insert(
                part.trim().to_owned(),
                serde_json::Value::String(format!("v{i}:x~y")),
            );
        }
    }
    for av in &m.add_value {
        props.insert(av.add_key.clone(), serde_json::json!(1.5));
    }
    props.insert("event".into(), serde_json::Value::String("e".into()));
    for ts in TIMES {
        props.insert(config.event.time_field.clone(), serde_json::json!(ts));
        let Ok(event) = IncomingEvent::from_json(serde_json::Value::Object(props.clone())) else {
            continue;
        };
        if let Ok(batch) = generator.event_batch(&event, 1_700_000_000) {
            traqq_fuzz::check_batch(prefix, &batch);
        }
    }
    // What `traqq config` prints reads back as the same config.
    if let Ok(text) = toml::to_string(config) {
        let back: TraqqConfig =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{text}\n does not read back: {e}"));
        assert_eq!(&back, config, "TOML round trip changed the config:\n{text}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = toml::from_str::<TraqqConfig>(text) {
        check_library(&config, traqq_fuzz::PREFIX);
    }
    if let Ok(server) = toml::from_str::<ServerConfig>(text) {
        if server.validate().is_ok() {
            let _ = (
                server.tcp_addr(),
                server.http_addr(),
                server.idle_timeout(),
                server.request_timeout(),
            );
            server
                .shutdown_grace()
                .expect("a valid config has a shutdown grace");
        }
    }
    if let Ok(file) = toml::from_str::<FileConfig>(text) {
        let library = TraqqConfig {
            time: file.time.clone(),
            mapping: file.mapping.clone(),
            limits: file.limits.clone(),
            event: file.event.clone(),
            retention: file.retention,
            query: file.query,
        };
        check_library(&library, &file.prefix);
        let _ = traqq_core::key::validate_prefix(&file.prefix);
        let _ = file.server.validate();
        // `traqq config show` prints the file back as TOML.
        let _ = toml::to_string_pretty(&file);
    }
});
