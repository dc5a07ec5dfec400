//! The config file: the library's `TraqqConfig` sections plus `prefix`, `[storage]` and `[server]`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use traqq_core::config::{
    AddValueConfig, EventConfig, LimitsConfig, MappingConfig, QueryConfig, RetentionConfig, TimeConfig,
    TraqqConfig,
};
use traqq_server::ServerConfig;

use crate::args::StoreArgs;
use crate::store::StorageConfig;
use crate::UsageError;

/// Everything a config file can hold. Unknown keys are errors (every table denies them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Key prefix.
    pub(crate) prefix: String,
    pub(crate) time: TimeConfig,
    pub(crate) mapping: MappingConfig,
    pub(crate) limits: LimitsConfig,
    pub(crate) event: EventConfig,
    pub(crate) retention: RetentionConfig,
    pub(crate) query: QueryConfig,
    pub(crate) storage: StorageConfig,
    pub(crate) server: ServerConfig,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            prefix: "traqq".into(),
            time: TimeConfig::default(),
            mapping: default_mapping(),
            limits: LimitsConfig::default(),
            event: EventConfig::default(),
            retention: RetentionConfig::default(),
            query: QueryConfig::default(),
            storage: StorageConfig::default(),
            server: ServerConfig::default(),
        }
    }
}

/// The mapping used without a config file (and when a file has no `[mapping]`).
fn default_mapping() -> MappingConfig {
    MappingConfig {
        bitmap: vec!["ip".into()],
        add: vec!["event".into(), "event~geo".into()],
        add_value: vec![AddValueConfig {
            key: "event".into(),
            add_key: "amount".into(),
        }],
        top: vec!["geo".into()],
        distribution: Vec::new(),
    }
}

impl FileConfig {
    /// Reads and validates `path`; errors name the file, and the line and key at fault.
    pub(crate) fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read config file {}: {e}", path.display())))?;
        let config = Self::parse(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub(crate) fn parse(text: &str) -> Result<FileConfig, String> {
        let config: FileConfig = toml::from_str(text).map_err(|e| {
            // toml's message spans several lines (a source excerpt); keep it readable on one.
            let msg = e.message().trim().replace('\n', "; ");
            match e.span().map(|s| line_of(text, s.start)) {
                Some(line) => match key_at(text, line) {
                    Some(key) => format!("line {line}: {key}: {msg}"),
                    None => format!("line {line}: {msg}"),
                },
                None => msg,
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the library part, the prefix and the server part.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.traqq().validate().map_err(|e| e.to_string())?;
        traqq_core::key::validate_prefix(&self.prefix).map_err(|e| e.to_string())?;
        self.server.validate().map_err(|e| e.to_string())?;
        crate::store::check_backend(&self.storage).map_err(|e| e.0)?;
        Ok(())
    }

    /// The library configuration.
    pub(crate) fn traqq(&self) -> TraqqConfig {
        TraqqConfig {
            time: self.time.clone(),
            mapping: self.mapping.clone(),
            limits: self.limits.clone(),
            event: self.event.clone(),
            retention: self.retention,
            query: self.query,
        }
    }

    /// The effective config as TOML, the token redacted.
    pub(crate) fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.server.auth_token.is_some() {
            shown.server.auth_token = Some("<redacted>".into());
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// The dotted key assigned on `line` (1-based), e.g. `query.max_buckets`.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let (key, _) = lines.get(line.checked_sub(1)?)?.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let table = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    })
}

/// The example config file (`traqq config example`), naming the default backend of this build
/// (the file in the repository names RocksDB, which a build without it cannot open).
pub(crate) fn example() -> String {
    const EXAMPLE: &str = include_str!("../../traqq.example.toml");
    EXAMPLE.replacen(
        "backend = \"rocksdb\"",
        &format!("backend = \"{}\"", crate::store::DEFAULT_BACKEND),
        1,
    )
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

impl FileConfig {
    /// Opens the configured store (see [`crate::store::open`]).
    pub(crate) fn open_store(&self) -> anyhow::Result<std::sync::Arc<dyn traqq_storage::Storage>> {
        crate::store::open(&self.storage, self.retention)
    }
}

/// Loads the config file (or defaults) and applies the store flags.
pub(crate) fn load(path: Option<&Path>, store: &StoreArgs) -> anyhow::Result<FileConfig> {
    let mut config = match path {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    if let Some(backend) = store.storage {
        config.storage.backend = backend.name().into();
    }
    if let Some(dir) = &store.data {
        config.storage.path = dir.clone();
        // --data alone means the embedded default backend.
        if store.storage.is_none() && config.storage.backend == "memory" {
            config.storage.backend = crate::store::DEFAULT_BACKEND.into();
        }
    }
    if let Some(url) = &store.redis_url {
        config.storage.url = url.clone();
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_valid_and_matches_the_defaults_where_it_should() {
        let example = FileConfig::parse(&example()).unwrap();
        let defaults = FileConfig::default();
        assert_eq!(example.mapping, defaults.mapping);
        assert_eq!(example.limits, defaults.limits);
        assert_eq!(example.query, defaults.query);
        assert_eq!(example.server, defaults.server);
        assert_eq!(example.prefix, defaults.prefix);
        assert_eq!(example.storage.backend, defaults.storage.backend);
        assert_eq!(example.storage.path, defaults.storage.path);
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let err = FileConfig::parse("prefix = \"a\"\n[time]\ntimezon = \"UTC\"\n").unwrap_err();
        assert!(err.contains("line 3") && err.contains("timezon"), "{err}");
        let err = FileConfig::parse("[server]\nmax_lines = 3\n").unwrap_err();
        assert!(err.contains("max_lines"), "{err}");
        let err = FileConfig::parse("[time]\ntimezone = \"Mars/Base\"\n").unwrap_err();
        assert!(err.contains("time.timezone"), "{err}");
        let err = FileConfig::parse("prefix = \"a:b\"\n").unwrap_err();
        assert!(err.contains("prefix"), "{err}");
    }

    #[test]
    fn round_trips_through_to_toml() {
        let mut c = FileConfig::default();
        c.server.auth_token = Some("secret".into());
        let text = c.to_toml();
        assert!(!text.contains("secret"));
        let back = FileConfig::parse(&text).unwrap();
        assert_eq!(back.mapping, c.mapping);
    }
}
