//! The storage key format (unchanged from trk2 and traqq 0.2, readable with `redis-cli`):
//!
//! ```text
//! prefix:type:bucket:timestamp:pattern
//! myapp:bmp:d:1700000000:ip
//! myapp:add:d:1700000000:event~geo
//! myapp:adv:d:1700000000:amount:event~geo        per-label sums
//! myapp:adv:d:1700000000:amount:event~geo:i      summary: sum + count
//! myapp:adv:d:1700000000:amount:event~geo:c      per-label counts (for averages)
//! myapp:top:d:1700000000:geo
//! myapp:dst:d:1700000000:latency_ms:event~geo   per-label distributions (bins and sums)
//! myapp:dst:d:1700000000:latency_ms:event~geo:i summary: sum + count
//! myapp:k:d:1700000000                           set of keys written in the bucket
//! ```

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bucket::BucketKind;
use crate::{Error, Result};

/// The five metric types, named as in keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// Unique count (HyperLogLog).
    Bmp,
    /// Counter per value.
    Add,
    /// Float sum per label, plus a `sum`/`count` summary.
    Adv,
    /// Leaderboard.
    Top,
    /// Distribution of a numeric property per label (quantile sketches, see
    /// [`crate::distribution`]), plus a `sum`/`count` summary.
    Dst,
}

impl MetricType {
    /// All types, in result order.
    pub const ALL: [MetricType; 5] = [
        MetricType::Bmp,
        MetricType::Add,
        MetricType::Adv,
        MetricType::Top,
        MetricType::Dst,
    ];

    /// The key name: `bmp`, `add`, `adv`, `top`, `dst`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Bmp => "bmp",
            MetricType::Add => "add",
            MetricType::Adv => "adv",
            MetricType::Top => "top",
            MetricType::Dst => "dst",
        }
    }

    /// Whether keys of this type carry a value property (`adv`'s `add_key`, `dst`'s
    /// `value_key`) before the pattern, and a `:i` summary beside them.
    pub fn has_value_key(self) -> bool {
        matches!(self, MetricType::Adv | MetricType::Dst)
    }
}

impl FromStr for MetricType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bmp" => Ok(MetricType::Bmp),
            "add" => Ok(MetricType::Add),
            "adv" => Ok(MetricType::Adv),
            "top" => Ok(MetricType::Top),
            "dst" => Ok(MetricType::Dst),
            other => Err(Error::Query(format!(
                "unknown metric type {other:?} (expected bmp, add, adv, top or dst)"
            ))),
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for MetricType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Which of an `adv` metric's three keys a key is. Other metric types use [`AdvPart::Sums`]
/// (no suffix).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvPart {
    /// Per-label float sums (no suffix).
    #[default]
    Sums,
    /// The `:i` summary: `sum` and `count` over all labels.
    Summary,
    /// The `:c` per-label counts: how many events each label's sum holds, so that
    /// sum / count is the label's average.
    Counts,
}

impl AdvPart {
    /// The key suffix: none, `:i` or `:c`.
    pub fn suffix(self) -> &'static str {
        match self {
            AdvPart::Sums => "",
            AdvPart::Summary => ":i",
            AdvPart::Counts => ":c",
        }
    }
}

/// A decoded metric key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey {
    /// Metric type.
    pub metric: MetricType,
    /// Bucket granularity.
    pub bucket: BucketKind,
    /// Bucket start, unix seconds.
    pub timestamp: i64,
    /// Normalized pattern, e.g. `event~geo`.
    pub pattern: String,
    /// For `adv`: the summed property; for `dst`: the distributed one.
    pub add_key: Option<String>,
    /// For `adv`: which of its keys this is (per-label sums, `:i` summary, `:c` counts);
    /// for `dst`: the distributions or the `:i` summary.
    pub part: AdvPart,
}

impl MetricKey {
    /// The full key under `prefix`.
    pub fn encode(&self, prefix: &str) -> String {
        let mut out = String::with_capacity(prefix.len() + self.pattern.len() + 24);
        self.as_ref().write_to(prefix, &mut out);
        out
    }

    /// A borrowed view, for writing the key without copying.
    pub fn as_ref(&self) -> KeyRef<'_> {
        KeyRef {
            metric: self.metric,
            bucket: self.bucket,
            timestamp: self.timestamp,
            pattern: &self.pattern,
            add_key: self.add_key.as_deref(),
            part: self.part,
        }
    }

    /// The `type:pattern` part that `accept`/`ignore` globs match: `add:event~geo`,
    /// `adv:amount:event~geo`, `adv:amount:event~geo:i`, `adv:amount:event~geo:c`.
    pub fn filter_name(&self) -> String {
        let mut s = String::with_capacity(self.pattern.len() + 16);
        s.push_str(self.metric.as_str());
        s.push(':');
        if let Some(k) = &self.add_key {
            s.push_str(k);
            s.push(':');
        }
        s.push_str(&self.pattern);
        s.push_str(self.part.suffix());
        s
    }

    /// Decodes `key`, which must start with `prefix:`.
    pub fn decode(prefix: &str, key: &str) -> Result<MetricKey> {
        let bad = |reason| Error::Key {
            key: key.to_owned(),
            reason,
        };
        let rest = key
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(':'))
            .ok_or_else(|| bad("does not start with the prefix"))?;
        let mut it = rest.splitn(4, ':');
        let metric = it
            .next()
            .and_then(|t| t.parse::<MetricType>().ok())
            .ok_or_else(|| bad("unknown metric type"))?;
        let bucket = it
            .next()
            .and_then(BucketKind::parse)
            .ok_or_else(|| bad("unknown bucket"))?;
        let timestamp = it
            .next()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| bad("bad timestamp"))?;
        let tail = it.next().ok_or_else(|| bad("missing pattern"))?;
        let (add_key, pattern, part) = if metric.has_value_key() {
            let (add_key, rest) = tail
                .split_once(':')
                .ok_or_else(|| bad("adv or dst key without its value property"))?;
            match rest.split_once(':') {
                None => (Some(add_key), rest, AdvPart::Sums),
                Some((pattern, "i")) => (Some(add_key), pattern, AdvPart::Summary),
                Some((pattern, "c")) if metric == MetricType::Adv => {
                    (Some(add_key), pattern, AdvPart::Counts)
                }
                Some(_) => return Err(bad("unexpected suffix")),
            }
        } else {
            (None, tail, AdvPart::Sums)
        };
        if pattern.is_empty() || pattern.contains(':') || add_key.is_some_and(str::is_empty) {
            return Err(bad("empty or malformed pattern"));
        }
        Ok(MetricKey {
            metric,
            bucket,
            timestamp,
            pattern: pattern.to_owned(),
            add_key: add_key.map(str::to_owned),
            part,
        })
    }
}

/// A metric key with borrowed parts: what the op generator writes for each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef<'a> {
    /// Metric type.
    pub metric: MetricType,
    /// Bucket granularity.
    pub bucket: BucketKind,
    /// Bucket start, unix seconds.
    pub timestamp: i64,
    /// Normalized pattern.
    pub pattern: &'a str,
    /// For `adv`: the summed property.
    pub add_key: Option<&'a str>,
    /// For `adv`: which of its keys.
    pub part: AdvPart,
}

impl KeyRef<'_> {
    /// Writes the full key into `out` (cleared first), so hot paths can reuse one buffer.
    pub fn write_to(&self, prefix: &str, out: &mut String) {
        out.clear();
        out.push_str(prefix);
        out.push(':');
        out.push_str(self.metric.as_str());
        out.push(':');
        out.push_str(self.bucket.as_str());
        out.push(':');
        let _ = write!(out, "{}", self.timestamp);
        out.push(':');
        if let Some(k) = self.add_key {
            out.push_str(k);
            out.push(':');
        }
        out.push_str(self.pattern);
        out.push_str(self.part.suffix());
    }
}

/// The key of the set of keys written in a bucket: `prefix:k:d:timestamp`.
pub fn key_set_key(prefix: &str, bucket: BucketKind, timestamp: i64) -> String {
    format!("{prefix}:k:{bucket}:{timestamp}")
}

/// The prefix the days of extra zone `zone` (`time.extra_zones`) are stored under:
/// `prefix@Asia/Tokyo`, so `myapp@Asia/Tokyo:add:d:1764255600:event` is the Tokyo day of
/// `myapp:add:…:event`. Zone names hold no `:`, `~` or whitespace, so this is a valid prefix
/// that cannot be confused with the store's own keys.
pub fn extra_zone_prefix(prefix: &str, zone: chrono_tz::Tz) -> String {
    format!("{prefix}@{}", zone.name())
}

/// The key of the set that says since when each extra zone's days are complete:
/// `prefix:k:zones`, members `Asia/Tokyo=1764255600` (see the storage engine).
pub fn extra_zones_key(prefix: &str) -> String {
    format!("{prefix}:k:zones")
}

/// Adds each bucket's key set to the prefix's bucket registry ([`bucket_registry_key`], read
/// by retention). The newest bucket goes first, so the registry entry carries the newest
/// bucket (a backend that expires keys by bucket keeps it longest).
pub fn register_buckets(batch: &mut crate::batch::Batch, prefix: &str, mut buckets: Vec<(i64, BucketKind)>) {
    if buckets.is_empty() {
        return;
    }
    buckets.sort_by_key(|b| std::cmp::Reverse(b.0));
    let registry = bucket_registry_key(prefix);
    for (start, kind) in buckets {
        batch.sadd(&registry, (kind, start), &key_set_key(prefix, kind, start));
    }
}

/// The key of the set of key-set keys (one per bucket ever written) under `prefix`:
/// `prefix:k:buckets`. Retention reads it to find old buckets without scanning the store.
pub fn bucket_registry_key(prefix: &str) -> String {
    format!("{prefix}:k:buckets")
}

/// The key of the set of event ids claimed on the day starting at `day_start`:
/// `prefix:ids:d:day_start` (see the `claim` module).
pub fn id_set_key(prefix: &str, day_start: i64) -> String {
    format!("{prefix}:ids:d:{day_start}")
}

/// The key of the set of id-set keys under `prefix` (`prefix:k:ids`): the engine's prune reads
/// it to drop the id sets of days past `[event] dedup_days`.
pub fn id_registry_key(prefix: &str) -> String {
    format!("{prefix}:k:ids")
}

/// Decodes an id-set key into its day start, or `None` when `key` is not one under `prefix`.
pub fn decode_id_set_key(prefix: &str, key: &str) -> Option<i64> {
    key.strip_prefix(prefix)?.strip_prefix(":ids:d:")?.parse().ok()
}

/// Decodes a key-set key into its bucket, or `None` when `key` is not one under `prefix`.
pub fn decode_key_set_key(prefix: &str, key: &str) -> Option<(BucketKind, i64)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":k:")?;
    let (bucket, ts) = rest.split_once(':')?;
    Some((BucketKind::parse(bucket)?, ts.parse().ok()?))
}

/// Checks a key prefix: non-empty, no `:`, `~` or whitespace.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() || prefix.contains([':', '~']) || prefix.contains(char::is_whitespace) {
        return Err(Error::config(
            "prefix",
            format!("{prefix:?} must be non-empty and hold no ':', '~' or whitespace"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_examples_decode() {
        let k = MetricKey::decode("myapp", "myapp:adv:d:1700000000:amount:event~geo:i").unwrap();
        assert_eq!(k.metric, MetricType::Adv);
        assert_eq!(k.add_key.as_deref(), Some("amount"));
        assert_eq!(k.pattern, "event~geo");
        assert_eq!(k.part, AdvPart::Summary);
        assert_eq!(k.encode("myapp"), "myapp:adv:d:1700000000:amount:event~geo:i");
        assert_eq!(k.filter_name(), "adv:amount:event~geo:i");
        let k = MetricKey::decode("myapp", "myapp:adv:d:1700000000:amount:event~geo:c").unwrap();
        assert_eq!((k.part, k.pattern.as_str()), (AdvPart::Counts, "event~geo"));
        assert_eq!(k.encode("myapp"), "myapp:adv:d:1700000000:amount:event~geo:c");
        assert!(MetricKey::decode("myapp", "myapp:adv:d:1:amount:ip:x").is_err());
        let k = MetricKey::decode("myapp", "myapp:bmp:h:1700000000:ip").unwrap();
        assert_eq!(
            (k.metric, k.bucket, k.timestamp),
            (MetricType::Bmp, BucketKind::Hour, 1_700_000_000)
        );
        assert!(MetricKey::decode("myapp", "other:bmp:d:1:ip").is_err());
        assert!(MetricKey::decode("myapp", "myapp:xyz:d:1:ip").is_err());
        assert!(MetricKey::decode("myapp", "myapp:add:d:x:ip").is_err());
        assert!(MetricKey::decode("myapp", "myapp:adv:d:1:ip").is_err());
        let k = MetricKey::decode("myapp", "myapp:dst:h:1700000000:latency_ms:event~geo:i").unwrap();
        assert_eq!(
            (
                k.metric,
                k.bucket,
                k.add_key.as_deref(),
                k.pattern.as_str(),
                k.part
            ),
            (
                MetricType::Dst,
                BucketKind::Hour,
                Some("latency_ms"),
                "event~geo",
                AdvPart::Summary
            )
        );
        assert_eq!(k.encode("myapp"), "myapp:dst:h:1700000000:latency_ms:event~geo:i");
        assert!(MetricKey::decode("myapp", "myapp:dst:d:1:latency_ms:geo:c").is_err());
        assert!(MetricKey::decode("myapp", "myapp:dst:d:1:geo").is_err());
        assert_eq!(
            decode_key_set_key("myapp", "myapp:k:d:17"),
            Some((BucketKind::Day, 17))
        );
        assert_eq!(key_set_key("myapp", BucketKind::Hour, 5), "myapp:k:h:5");
    }
}
