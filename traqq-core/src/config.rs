//! The library's configuration: what to derive from events, in which time zone, within which limits.
//!
//! Mirrors the TOML file section by section. Every field has a default and unknown fields are
//! rejected, so a typo in a config file is an error instead of a silently ignored setting.

use serde::{Deserialize, Serialize};

use crate::pattern::Pattern;
use crate::{Error, Result};

/// The whole library configuration (`[time]`, `[mapping]`, `[limits]`, `[event]`,
/// `[retention]`, `[query]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraqqConfig {
    /// Time zone and bucket granularity.
    pub time: TimeConfig,
    /// Which patterns become which metrics.
    pub mapping: MappingConfig,
    /// Caps on names, values and per-event work.
    pub limits: LimitsConfig,
    /// Which event fields have special meaning.
    pub event: EventConfig,
    /// How long buckets are kept (used by backends and `prune`).
    pub retention: RetentionConfig,
    /// Query defaults and caps.
    pub query: QueryConfig,
}

/// `[time]`: bucket granularity and time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeConfig {
    /// Also store hourly buckets (daily buckets are always stored).
    pub store_hourly: bool,
    /// IANA time zone whose calendar days (and hours) are the buckets, e.g. `"America/New_York"`.
    pub timezone: String,
    /// Also store 15-minute buckets: what the days of a zone at :30 or :45 from `timezone`
    /// (Asia/Kolkata, Asia/Kathmandu, America/St_Johns, Australia/Adelaide) are assembled from
    /// at query time. Costs a third bucket per metric and event (see the README).
    pub store_quarter_hours: bool,
    /// Other IANA zones whose calendar days are also stored, each under its own key prefix
    /// (`prefix@Asia/Tokyo`): a query in one of them reads its days directly instead of
    /// assembling them from hours. Costs one more day bucket per metric and event per zone.
    pub extra_zones: Vec<String>,
}

/// Zones `time.extra_zones` may list: each adds a bucket per metric to every event.
pub const MAX_EXTRA_ZONES: usize = 8;

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            store_hourly: false,
            timezone: "UTC".into(),
            store_quarter_hours: false,
            extra_zones: Vec::new(),
        }
    }
}

/// `[mapping]`: the patterns of each metric type. A pattern is `a`, `a~b`, `a~b~c`, …
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MappingConfig {
    /// Unique counts (HyperLogLog) of each pattern's value (`bmp`).
    pub bitmap: Vec<String>,
    /// Per-value counters (`add`).
    pub add: Vec<String>,
    /// Per-label float sums of `add_key`, plus a `sum`/`count` summary (`adv`).
    pub add_value: Vec<AddValueConfig>,
    /// Leaderboards (`top`).
    pub top: Vec<String>,
    /// Distributions of `value_key` per label, with mergeable quantiles (`dst`).
    pub distribution: Vec<DistributionConfig>,
}

/// One `dst` metric: the distribution of the numeric property `value_key` per value of the
/// pattern `key` (p50, p90, p99, … within 1%; see [`crate::distribution`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributionConfig {
    /// The pattern whose value labels the distributions, e.g. `"event~geo"`.
    pub key: String,
    /// The numeric property distributed, e.g. `"latency_ms"`.
    pub value_key: String,
}

/// One `adv` metric: sum the numeric property `add_key` per value of the pattern `key`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddValueConfig {
    /// The pattern whose value labels the sums, e.g. `"event~geo"`.
    pub key: String,
    /// The numeric property summed, e.g. `"amount"`.
    pub add_key: String,
}

/// `[limits]`: caps that keep one event from doing unbounded work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest property name (in bytes) a pattern may use; longer names are rejected in config,
    /// and an event's properties with longer (dotted) names are skipped while parsing.
    pub max_field_length: usize,
    /// Values are cut to this many characters when sanitized.
    pub max_value_length: usize,
    /// Most compound (`a~b…`) patterns the whole mapping may hold.
    pub max_combinations: usize,
    /// Most metric operations one event may produce; an event past it is rejected.
    pub max_metrics_per_event: usize,
    /// Most scalar properties (nested ones included) one event may carry; an event past it
    /// is rejected while it is parsed.
    pub max_properties: usize,
    /// Most distinct labels (hash fields, leaderboard members) one `add`, `adv` or `top`
    /// metric keeps per bucket; a new label past it is counted under `(other)` (see
    /// the `labels` module). `0` = no cap.
    pub max_labels: usize,
    /// [`LimitsConfig::max_labels`] for single patterns (`"event~url" = 500`), overriding it.
    pub max_labels_by_pattern: std::collections::BTreeMap<String, usize>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_field_length: 128,
            max_value_length: 256,
            max_combinations: 1000,
            max_metrics_per_event: 1000,
            max_properties: 1000,
            max_labels: 10_000,
            max_labels_by_pattern: std::collections::BTreeMap::new(),
        }
    }
}

impl LimitsConfig {
    /// The caps the event parser applies ([`EventLimits`](crate::event::EventLimits)).
    pub fn event_limits(&self) -> crate::event::EventLimits {
        crate::event::EventLimits {
            max_properties: self.max_properties,
            max_name_length: self.max_field_length,
        }
    }
}

/// `[event]`: fields with a special meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventConfig {
    /// Field holding the event time (unix seconds or RFC 3339). Without it the clock is used.
    pub time_field: String,
    /// Oldest event time accepted, in days before now (0 = any time from year 1). Each day an
    /// event lands in is a bucket kept and registered, so without a window one writer could
    /// make the store hold millennia of buckets; backfills within the window are accepted.
    pub max_past_days: u32,
    /// Latest event time accepted, in seconds after now (clock skew of the senders).
    pub max_future_secs: u64,
    /// Field holding the event's id (a non-empty string or an integer): an event carrying it is
    /// recorded at most once per event-time day (see the `claim` module). Unset: no deduplication.
    pub id_field: Option<String>,
    /// Days, counted back from today, whose ids are remembered (today and the
    /// `dedup_days - 1` previous days); an event of an older day is recorded without the check.
    pub dedup_days: u32,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            time_field: "ts".into(),
            max_past_days: 3660,
            max_future_secs: 86_400,
            id_field: None,
            dedup_days: 2,
        }
    }
}

/// `[retention]`: how many days of buckets to keep; `0` keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days of daily buckets to keep (0 = forever).
    pub daily_days: u32,
    /// Days of hourly buckets to keep (0 = forever).
    pub hourly_days: u32,
}

/// `[query]`: read-side defaults and caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Members returned per leaderboard when a query gives no `limit` (traqq 0.2: 250).
    pub default_top_limit: usize,
    /// Most buckets one query may span (protects servers from `min=0`).
    pub max_buckets: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            default_top_limit: 250,
            max_buckets: 3700,
        }
    }
}

impl TraqqConfig {
    /// Checks the whole configuration; the error names the first offending field or pattern.
    pub fn validate(&self) -> Result<()> {
        self.time.zone()?;
        self.time.extra_zones()?;
        let limits = &self.limits;
        if limits.max_value_length == 0 {
            return Err(Error::config("limits.max_value_length", "must be at least 1"));
        }
        if limits.max_properties == 0 {
            return Err(Error::config("limits.max_properties", "must be at least 1"));
        }
        if limits.max_metrics_per_event == 0 {
            return Err(Error::config(
                "limits.max_metrics_per_event",
                "must be at least 1",
            ));
        }
        if self.query.default_top_limit == 0 {
            return Err(Error::config("query.default_top_limit", "must be at least 1"));
        }
        if self.query.max_buckets == 0 {
            return Err(Error::config("query.max_buckets", "must be at least 1"));
        }
        check_name("event.time_field", &self.event.time_field, limits)?;
        if let Some(field) = &self.event.id_field {
            check_name("event.id_field", field, limits)?;
            if self.event.dedup_days == 0 {
                return Err(Error::config(
                    "event.dedup_days",
                    "must be at least 1 when event.id_field is set",
                ));
            }
        }

        let m = &self.mapping;
        let mut compound = 0;
        let mut check_list = |section: &str, list: &[String]| -> Result<()> {
            let mut seen: Vec<Pattern> = Vec::with_capacity(list.len());
            for (i, text) in list.iter().enumerate() {
                let field = format!("mapping.{section}[{i}]");
                let pattern = Pattern::parse(text).map_err(|reason| Error::config(&field, reason))?;
                check_parts(&field, &pattern, limits)?;
                if let Some(prev) = seen.iter().find(|p| **p == pattern) {
                    return Err(Error::config(
                        field,
                        format!(
                            "pattern {text:?} duplicates {:?} (parts are order-insensitive)",
                            prev.as_str()
                        ),
                    ));
                }
                compound += usize::from(pattern.arity() > 1);
                seen.push(pattern);
            }
            Ok(())
        };
        check_list("bitmap", &m.bitmap)?;
        check_list("add", &m.add)?;
        check_list("top", &m.top)?;

        let valued = [
            (
                "add_value",
                "add_key",
                m.add_value
                    .iter()
                    .map(|av| (&av.key, &av.add_key))
                    .collect::<Vec<_>>(),
            ),
            (
                "distribution",
                "value_key",
                m.distribution.iter().map(|d| (&d.key, &d.value_key)).collect(),
            ),
        ];
        for (section, value_name, list) in valued {
            let mut seen: Vec<(Pattern, &str)> = Vec::with_capacity(list.len());
            for (i, (key, value_key)) in list.into_iter().enumerate() {
                let field = format!("mapping.{section}[{i}]");
                let pattern =
                    Pattern::parse(key).map_err(|reason| Error::config(format!("{field}.key"), reason))?;
                check_parts(&format!("{field}.key"), &pattern, limits)?;
                check_name(&format!("{field}.{value_name}"), value_key, limits)?;
                if seen.iter().any(|(p, k)| *p == pattern && k == value_key) {
                    return Err(Error::config(
                        field,
                        format!("{{key = {key:?}, {value_name} = {value_key:?}}} is listed twice"),
                    ));
                }
                compound += usize::from(pattern.arity() > 1);
                seen.push((pattern, value_key));
            }
        }
        for name in limits.max_labels_by_pattern.keys() {
            let field = format!("limits.max_labels_by_pattern.{name:?}");
            let pattern = Pattern::parse(name).map_err(|reason| Error::config(&field, reason))?;
            let mapped = m
                .add
                .iter()
                .chain(&m.top)
                .map(String::as_str)
                .chain(m.add_value.iter().map(|av| av.key.as_str()))
                .chain(m.distribution.iter().map(|d| d.key.as_str()))
                .any(|text| Pattern::parse(text).is_ok_and(|p| p == pattern));
            if !mapped {
                return Err(Error::config(
                    field,
                    "no add, add_value, top or distribution pattern of the mapping is this one",
                ));
            }
        }
        if compound > limits.max_combinations {
            return Err(Error::config(
                "mapping",
                format!(
                    "{compound} compound patterns, more than limits.max_combinations = {}",
                    limits.max_combinations
                ),
            ));
        }
        Ok(())
    }
}

impl TimeConfig {
    /// The configured time zone, or an error naming `time.timezone`.
    pub fn zone(&self) -> Result<chrono_tz::Tz> {
        parse_zone("time.timezone", &self.timezone)
    }

    /// The zones of `time.extra_zones`, or an error naming the entry at fault: unknown, the
    /// store's own zone, listed twice, or more than [`MAX_EXTRA_ZONES`].
    pub fn extra_zones(&self) -> Result<Vec<chrono_tz::Tz>> {
        if self.extra_zones.len() > MAX_EXTRA_ZONES {
            return Err(Error::config(
                "time.extra_zones",
                format!(
                    "{} zones, more than the {MAX_EXTRA_ZONES} allowed",
                    self.extra_zones.len()
                ),
            ));
        }
        let own = self.zone()?;
        let mut zones = Vec::with_capacity(self.extra_zones.len());
        for (i, name) in self.extra_zones.iter().enumerate() {
            let field = format!("time.extra_zones[{i}]");
            let zone = parse_zone(&field, name)?;
            if zone == own {
                return Err(Error::config(&field, format!("{name:?} is time.timezone itself")));
            }
            if zones.contains(&zone) {
                return Err(Error::config(&field, format!("{name:?} is listed twice")));
            }
            zones.push(zone);
        }
        Ok(zones)
    }
}

fn parse_zone(field: &str, name: &str) -> Result<chrono_tz::Tz> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        Error::config(
            field,
            format!("unknown time zone {name:?} (expected an IANA name such as \"Europe/Berlin\")"),
        )
    })
}

fn check_parts(field: &str, pattern: &Pattern, limits: &LimitsConfig) -> Result<()> {
    pattern
        .parts()
        .try_for_each(|part| check_name(field, part, limits))
}

/// Property names used by the mapping must be storable in a key: no `:`/`~`, not too long.
fn check_name(field: &str, name: &str, limits: &LimitsConfig) -> Result<()> {
    if name.is_empty() {
        return Err(Error::config(field, "empty property name"));
    }
    if name.contains([':', '~']) {
        return Err(Error::config(
            field,
            format!("property name {name:?} contains ':' or '~'"),
        ));
    }
    if name.len() > limits.max_field_length {
        return Err(Error::config(
            field,
            format!(
                "property name {name:?} is longer than limits.max_field_length = {}",
                limits.max_field_length
            ),
        ));
    }
    Ok(())
}
