//! Op generation: turning events into a [`Batch`] of metric operations.
//!
//! Only the configured patterns are evaluated: each pattern knows the slots of its parts, an
//! event's values are looked up once per referenced property, and keys and compound values
//! are written into reused buffers, so an event costs no allocation beyond new batch entries.

use crate::batch::Batch;
use crate::bucket::{BucketKind, Calendar};
use crate::claim::{Claim, IdPolicy};
use crate::config::TraqqConfig;
use crate::event::IncomingEvent;
use crate::key::{extra_zone_prefix, validate_prefix, MetricType};
use crate::pattern::Pattern;
use crate::sanitize::sanitize_value;
use crate::{Error, Result};

mod builder;
mod caches;
mod names;
pub use builder::{BatchBuilder, SpareMaps};

/// The largest `add_value` amount accepted, in magnitude. An event whose amount is larger is
/// rejected: below it, even 2^63 amounts (more than any count can hold) sum to less than
/// `f64::MAX`, so no sum, summary or merge of stored sums can become infinite or NaN, and no
/// event can make a later write fail for someone else.
pub const MAX_AMOUNT: f64 = 1e289;

/// One configured metric, compiled: which slots form its value.
#[derive(Debug, Clone)]
struct CompiledMetric {
    metric: MetricType,
    pattern: String,
    /// Slot of each part, in the pattern's (sorted) part order.
    slots: Vec<usize>,
    /// For `adv`: the summed property; for `dst`: the distributed one.
    add_key: Option<String>,
    /// Storage keys this metric writes per bucket (adv: the sums, the summary, the counts;
    /// dst: the distributions, the summary).
    keys_per_bucket: usize,
    /// Labels a key of this metric keeps per bucket (`[limits] max_labels`); 0 = no cap.
    max_labels: usize,
}

/// Compiles a [`TraqqConfig`] once and turns events into batch operations.
#[derive(Debug, Clone)]
pub struct OpGenerator {
    prefix: String,
    /// Property names referenced by any pattern; a slot is an index into this list.
    names: Vec<String>,
    /// The slot of each name: an event's properties find their slots in one pass.
    slot_by_name: names::NameSlots,
    metrics: Vec<CompiledMetric>,
    calendar: Calendar,
    /// `time.extra_zones`: each zone's calendar and the prefix its days are stored under.
    extra_zones: Vec<(Calendar, String)>,
    hourly: bool,
    quarterly: bool,
    max_value_length: usize,
    max_ops: usize,
    time_field: String,
    /// `[event] id_field` and `dedup_days`, compiled.
    ids: Option<IdPolicy>,
    /// `[event] max_past_days` in seconds (0: no limit) and `max_future_secs`.
    max_past_secs: i64,
    max_future_secs: i64,
}

impl OpGenerator {
    /// Validates `config` and compiles it for keys under `prefix`.
    pub fn new(config: &TraqqConfig, prefix: &str) -> Result<Self> {
        config.validate()?;
        validate_prefix(prefix)?;
        let mut names: Vec<String> = Vec::new();
        let mut slot_of = |name: &str| -> usize {
            match names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    names.push(name.to_owned());
                    names.len() - 1
                }
            }
        };
        let mut metrics = Vec::new();
        let m = &config.mapping;
        let lists = [
            (MetricType::Bmp, &m.bitmap),
            (MetricType::Add, &m.add),
            (MetricType::Top, &m.top),
        ];
        let limits = &config.limits;
        let labels_cap = |metric: MetricType, pattern: &Pattern| -> usize {
            if metric == MetricType::Bmp {
                return 0;
            }
            limits
                .max_labels_by_pattern
                .iter()
                .find(|(text, _)| Pattern::parse(text).is_ok_and(|p| p == *pattern))
                .map_or(limits.max_labels, |(_, cap)| *cap)
        };
        for (metric, list) in lists {
            for text in list {
                let pattern = Pattern::parse(text).map_err(|r| Error::config("mapping", r))?;
                metrics.push(CompiledMetric {
                    metric,
                    slots: pattern.parts().map(&mut slot_of).collect(),
                    pattern: pattern.as_str().to_owned(),
                    add_key: None,
                    keys_per_bucket: 1,
                    max_labels: labels_cap(metric, &pattern),
                });
            }
        }
        let valued = m
            .add_value
            .iter()
            .map(|av| (MetricType::Adv, &av.key, &av.add_key, 3))
            .chain(
                m.distribution
                    .iter()
                    .map(|d| (MetricType::Dst, &d.key, &d.value_key, 2)),
            );
        for (metric, key, value_key, keys_per_bucket) in valued {
            let pattern = Pattern::parse(key).map_err(|r| Error::config("mapping", r))?;
            metrics.push(CompiledMetric {
                metric,
                slots: pattern.parts().map(&mut slot_of).collect(),
                pattern: pattern.as_str().to_owned(),
                add_key: Some(value_key.clone()),
                keys_per_bucket,
                max_labels: labels_cap(metric, &pattern),
            });
        }
        Ok(OpGenerator {
            prefix: prefix.to_owned(),
            slot_by_name: names::NameSlots::new(&names),
            names,
            metrics,
            calendar: Calendar::new(config.time.zone()?),
            extra_zones: config
                .time
                .extra_zones()?
                .into_iter()
                .map(|zone| (Calendar::new(zone), extra_zone_prefix(prefix, zone)))
                .collect(),
            hourly: config.time.store_hourly,
            quarterly: config.time.store_quarter_hours,
            max_value_length: config.limits.max_value_length,
            max_ops: config.limits.max_metrics_per_event,
            time_field: config.event.time_field.clone(),
            ids: IdPolicy::new(config),
            max_past_secs: i64::from(config.event.max_past_days) * 86_400,
            max_future_secs: i64::try_from(config.event.max_future_secs).unwrap_or(i64::MAX),
        })
    }

    /// `ts` when it lies in the accepted window around `now`, else an error naming the setting.
    fn check_window(&self, ts: i64, now: i64) -> Result<i64> {
        let off = |reason: String| Error::EventTimeWindow {
            field: self.time_field.clone(),
            value: ts,
            reason,
        };
        if self.max_past_secs > 0 && ts < now.saturating_sub(self.max_past_secs) {
            return Err(off(format!(
                "more than event.max_past_days = {} days before now",
                self.max_past_secs / 86_400
            )));
        }
        if ts > now.saturating_add(self.max_future_secs) {
            return Err(off(format!(
                "more than event.max_future_secs = {} s after now",
                self.max_future_secs
            )));
        }
        Ok(ts)
    }

    /// When `event` happened: its event-time field (checked against the accepted window
    /// around `now`), else `now`.
    pub fn event_time(&self, event: &IncomingEvent<'_>, now: i64) -> Result<i64> {
        match event.timestamp(&self.time_field)? {
            Some(ts) => self.check_window(ts, now),
            None => Ok(now),
        }
    }

    /// The id `event` claims (`[event] id_field`), or `None` when ids are off, the event has
    /// none, or its day is older than `dedup_days` (see [`crate::claim`]).
    pub fn claim(&self, event: &IncomingEvent<'_>, now: i64) -> Result<Option<Claim>> {
        self.claim_in(event, now, &mut ClaimDays::default())
    }

    /// [`OpGenerator::claim`] for many events: `days` keeps the days seen (so events of a day
    /// already seen cost no calendar arithmetic).
    pub fn claim_in(
        &self,
        event: &IncomingEvent<'_>,
        now: i64,
        days: &mut ClaimDays,
    ) -> Result<Option<Claim>> {
        let Some(ids) = &self.ids else {
            return Ok(None);
        };
        let Some(id) = ids.event_id(event)? else {
            return Ok(None);
        };
        let ts = self.event_time(event, now)?;
        let known = days
            .0
            .iter()
            .find(|(start, next, _)| (*start..*next).contains(&ts));
        let (start, remembered) = match known {
            Some(&(start, _, remembered)) => (start, remembered),
            None => {
                let start = self.calendar.bucket_start(BucketKind::Day, ts);
                let remembered = ids.remembers(&self.calendar, start, now);
                let next = self.calendar.next_bucket_start(BucketKind::Day, start);
                if days.0.len() >= 32 {
                    days.0.clear();
                }
                days.0.push((start, next, remembered));
                (start, remembered)
            }
        };
        Ok(remembered.then_some(Claim { day: start, id }))
    }

    /// Whether `[event] id_field` is set.
    pub fn claims_ids(&self) -> bool {
        self.ids.is_some()
    }

    /// The ids policy (`[event] id_field`), if set.
    pub fn id_policy(&self) -> Option<&IdPolicy> {
        self.ids.as_ref()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The calendar of the configured zone.
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// The zones of `time.extra_zones` and the prefix each one's days are stored under.
    pub fn extra_zones(&self) -> impl ExactSizeIterator<Item = (&Calendar, &str)> {
        self.extra_zones.iter().map(|(c, p)| (c, p.as_str()))
    }

    /// The key prefix of calendar number `index` of a batch: the store's own (0), else that of
    /// extra zone `index - 1`.
    fn prefix_of(&self, index: u8) -> &str {
        match index.checked_sub(1) {
            Some(i) => self
                .extra_zones
                .get(usize::from(i))
                .map_or(&self.prefix, |(_, p)| p),
            None => &self.prefix,
        }
    }

    /// Starts a batch. Add events with [`BatchBuilder::add`], then call [`BatchBuilder::finish`].
    pub fn batch(&self) -> BatchBuilder<'_> {
        BatchBuilder::new(self, SpareMaps::default())
    }

    /// [`OpGenerator::batch`] whose slots take their maps from `spare` (what
    /// [`BatchBuilder::finish_keeping`] gave back for an earlier batch) before growing new ones.
    pub fn batch_reusing(&self, spare: SpareMaps) -> BatchBuilder<'_> {
        BatchBuilder::new(self, spare)
    }

    /// The batch of a single event (convenience for one-off records and tests).
    pub fn event_batch(&self, event: &IncomingEvent<'_>, now: i64) -> Result<Batch> {
        let mut b = self.batch();
        b.add(event, now)?;
        Ok(b.finish())
    }

    /// Appends the sanitized value of every property slot the event has to `values`, and sets
    /// `spans[slot]` to where it lies (`None`: absent, or nothing left after sanitizing). One
    /// pass over the event; a name given twice counts once, its last value (as
    /// [`IncomingEvent::get`]).
    fn write_values(
        &self,
        event: &IncomingEvent<'_>,
        values: &mut String,
        spans: &mut Vec<Option<(u32, u32)>>,
    ) {
        // Decided but absent, so an earlier duplicate of the name cannot take the slot.
        const ABSENT: Option<(u32, u32)> = Some((u32::MAX, u32::MAX));
        spans.clear();
        spans.resize(self.names.len(), None);
        for (name, value) in event.properties().rev() {
            let Some(span) = self.slot_by_name.get(name).and_then(|slot| spans.get_mut(slot)) else {
                continue;
            };
            if span.is_some() {
                continue;
            }
            let from = values.len();
            *span = match sanitize_value(&value.as_text(), self.max_value_length) {
                Some(v) => {
                    values.push_str(&v);
                    Some((from as u32, values.len() as u32))
                }
                None => ABSENT,
            };
        }
        for span in spans.iter_mut().filter(|s| **s == ABSENT) {
            *span = None;
        }
    }
}

/// The days [`OpGenerator::claim_in`] has placed events in: start, next day's start, whether
/// its ids are remembered.
#[derive(Debug, Clone, Default)]
pub struct ClaimDays(Vec<(i64, i64, bool)>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::KeyOps;

    /// The `add:geo` fields one event writes.
    fn geo_fields(json: &str) -> Vec<String> {
        let mut config = TraqqConfig::default();
        config.mapping.add = vec!["geo".into()];
        let generator = OpGenerator::new(&config, "t").unwrap();
        let event = IncomingEvent::parse_str(json).unwrap();
        let batch = generator.event_batch(&event, 1_764_288_000).unwrap();
        let mut fields: Vec<String> = batch
            .iter()
            .filter_map(|(_, entry)| match &entry.ops {
                KeyOps::Hash(h) => Some(h.keys().map(str::to_owned).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        fields.sort();
        fields
    }

    /// A batch whose slots reuse an earlier batch's maps (every metric type, distributions
    /// included) is the batch a fresh builder makes of the same events.
    #[test]
    fn a_batch_on_spare_maps_is_the_batch_a_fresh_builder_makes() {
        let mut config = TraqqConfig::default();
        config.mapping.bitmap = vec!["ip".into()];
        config.mapping.add = vec!["event".into(), "event~geo".into()];
        config.mapping.add_value = vec![crate::config::AddValueConfig {
            key: "geo".into(),
            add_key: "amount".into(),
        }];
        config.mapping.top = vec!["geo~page".into()];
        config.mapping.distribution = vec![crate::config::DistributionConfig {
            key: "geo".into(),
            value_key: "amount".into(),
        }];
        config.time.store_hourly = true;
        let generator = OpGenerator::new(&config, "t").unwrap();
        let now = 1_764_288_000;
        let lines = |seed: i64, n: i64| -> Vec<String> {
            (0..n)
                .map(|i| {
                    let x = seed * 1_000 + i;
                    format!(
                        r#"{{"event":"e{}","geo":"g{}","page":"p{}","ip":"10.0.0.{}","amount":{},"ts":{}}}"#,
                        x % 3,
                        x % 7,
                        x % 11,
                        x % 200,
                        x % 50 + 1,
                        now - (x % 40) * 3_600
                    )
                })
                .collect()
        };
        let build = |builder: &mut BatchBuilder<'_>, lines: &[String]| {
            for line in lines {
                builder
                    .add(&IncomingEvent::parse_str(line).unwrap(), now)
                    .unwrap();
            }
        };
        // A first batch leaves maps of every kind, many of them grown.
        let mut first = generator.batch();
        build(&mut first, &lines(1, 500));
        let (_, spare) = first.finish_keeping();
        assert!(spare.kinds_held() == [true; 3], "{spare:?}");
        let second = lines(2, 300);
        let mut reusing = generator.batch_reusing(spare);
        build(&mut reusing, &second);
        let mut fresh = generator.batch();
        build(&mut fresh, &second);
        let (reused, fresh) = (reusing.finish(), fresh.finish());
        assert!(fresh.iter().count() > 10);
        assert_eq!(reused, fresh);
    }

    #[test]
    fn extra_zones_write_their_days_under_their_own_prefix() {
        let mut config = TraqqConfig::default();
        config.mapping.add = vec!["geo".into()];
        config.mapping.add_value = vec![crate::config::AddValueConfig {
            key: "geo".into(),
            add_key: "amount".into(),
        }];
        config.time.extra_zones = vec!["Asia/Tokyo".into(), "America/Los_Angeles".into()];
        let generator = OpGenerator::new(&config, "t").unwrap();
        // 2025-11-28T20:00:00Z: the 28th in UTC and Los Angeles, the 29th in Tokyo.
        let ts = 1_764_360_000;
        let json = format!(r#"{{"event":"buy","geo":"JP","amount":2,"ts":{ts}}}"#);
        let event = IncomingEvent::parse_str(&json).unwrap();
        // Recorded a day later: the event's own time places it.
        let batch = generator.event_batch(&event, ts + 86_400).unwrap();
        let tokyo = 1_764_342_000; // 2025-11-29T00:00 +09:00
        let los_angeles = 1_764_316_800; // 2025-11-28T00:00 -08:00
        let utc = 1_764_288_000;
        for (prefix, day) in [
            ("t", utc),
            ("t@Asia/Tokyo", tokyo),
            ("t@America/Los_Angeles", los_angeles),
        ] {
            let key = format!("{prefix}:add:d:{day}:geo");
            let entry = batch.get(&key).unwrap_or_else(|| panic!("{key} missing"));
            assert_eq!((entry.bucket, entry.bucket_start), (BucketKind::Day, day));
            match &entry.ops {
                KeyOps::Hash(h) => assert_eq!(h.get("JP"), Some(&crate::batch::Number::Int(1))),
                other => panic!("{other:?}"),
            }
            for suffix in ["", ":i", ":c"] {
                assert!(batch
                    .get(&format!("{prefix}:adv:d:{day}:amount:geo{suffix}"))
                    .is_some());
            }
            let set = format!("{prefix}:k:d:{day}");
            match &batch.get(&set).unwrap().ops {
                KeyOps::Members(m) => assert!(m.contains(&key)),
                other => panic!("{other:?}"),
            }
            match &batch.get(&format!("{prefix}:k:buckets")).unwrap().ops {
                KeyOps::Members(m) => assert_eq!(m.iter().collect::<Vec<_>>(), [&set]),
                other => panic!("{other:?}"),
            }
        }
        // Extra zones store days only, and count against the per-event cap like any bucket.
        assert!(batch
            .iter()
            .all(|(k, e)| !k.starts_with("t@") || e.bucket == BucketKind::Day));
        config.limits.max_metrics_per_event = 11;
        let generator = OpGenerator::new(&config, "t").unwrap();
        let err = generator.event_batch(&event, ts + 86_400).unwrap_err();
        assert!(matches!(err, Error::TooManyMetrics { count: 12, .. }), "{err}");
    }

    #[test]
    fn extra_zones_are_checked() {
        let mut config = TraqqConfig::default();
        for (zones, fault) in [
            (vec!["Mars/Olympus"], "time.extra_zones[0]"),
            (vec!["Asia/Tokyo", "UTC"], "time.extra_zones[1]"),
            (vec!["Asia/Tokyo", "Asia/Tokyo"], "time.extra_zones[1]"),
        ] {
            config.time.extra_zones = zones.iter().map(|z| z.to_string()).collect();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(fault), "{err}");
        }
        let many = chrono_tz::TZ_VARIANTS
            .iter()
            .filter(|z| z.name().starts_with("Europe/"));
        config.time.extra_zones = many
            .take(crate::config::MAX_EXTRA_ZONES + 1)
            .map(|z| z.name().into())
            .collect();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("more than the 8 allowed"));
        config.time.extra_zones.pop();
        config.validate().unwrap();
    }

    #[test]
    fn a_repeated_property_counts_once_with_its_last_value() {
        assert_eq!(geo_fields(r#"{"event":"e","geo":"US","geo":"DE"}"#), ["DE"]);
        assert_eq!(geo_fields(r#"{"event":"e","geo":"  ","geo":" DE "}"#), ["DE"]);
        // The last value sanitizes to nothing: the property is absent, not the earlier value.
        assert!(geo_fields(r#"{"event":"e","geo":"US","geo":" :~ "}"#).is_empty());
        assert_eq!(geo_fields(r#"{"event":"e","geo":7}"#), ["7"]);
        assert_eq!(geo_fields(r#"{"event":"e","other":"x","geo":"a:b"}"#), ["a_b"]);
    }
}
