//! [`Durability`]: when a persistent backend acknowledges a batch, and what it then survives.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How durable an applied batch is when `Storage::apply` returns. One option shared by every
/// embedded backend; in TOML it is `sync = "always" | "batch" | "none"`.
///
/// | mode | survives a process crash (`kill -9`) | survives power loss / OS crash |
/// |---|---|---|
/// | `always` | yes | yes (fsync before acknowledging; concurrent writers share one fsync) |
/// | `batch` (default) | yes | no: the last moments may be lost |
/// | `none` | no: the last moments may be lost | no |
///
/// In every mode a batch is applied atomically: after a crash it is there entirely or not at
/// all. Each backend documents how it implements the modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Synced to disk before the batch is acknowledged.
    Always,
    /// Handed to the operating system before the batch is acknowledged.
    #[default]
    Batch,
    /// Acknowledged at once; written out shortly after.
    None,
}

impl Durability {
    /// The TOML name: `always`, `batch`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Always => "always",
            Durability::Batch => "batch",
            Durability::None => "none",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Durability {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "always" => Ok(Durability::Always),
            "batch" => Ok(Durability::Batch),
            "none" => Ok(Durability::None),
            other => Err(crate::Error::Core(traqq_core::Error::Config {
                field: "storage.sync".into(),
                reason: format!("{other:?} is not a durability mode (expected always, batch or none)"),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for d in [Durability::Always, Durability::Batch, Durability::None] {
            assert_eq!(d.as_str().parse::<Durability>().unwrap(), d);
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
        }
        assert_eq!(Durability::default(), Durability::Batch);
        let err = "fsync".parse::<Durability>().unwrap_err().to_string();
        assert!(err.contains("fsync"), "{err}");
    }
}
