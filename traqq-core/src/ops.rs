//! Op generation: turning events into a [`Batch`] of metric operations.
//!
//! Only the configured patterns are evaluated: each pattern knows the slots of its parts, an
//! event's values are looked up once per referenced property, and keys and compound values
//! are written into reused buffers, so an event costs no allocation beyond new batch entries.

use std::borrow::Cow;

use crate::batch::{Batch, Number};
use crate::bucket::{BucketKind, Calendar};
use crate::config::TraqqConfig;
use crate::event::{IncomingEvent, Scalar};
use crate::key::{key_set_key, validate_prefix, KeyRef, MetricType};
use crate::pattern::Pattern;
use crate::sanitize::sanitize_value;
use crate::{Error, Result};

/// One configured metric, compiled: which slots form its value.
#[derive(Debug, Clone)]
struct CompiledMetric {
    metric: MetricType,
    pattern: String,
    /// Slot of each part, in the pattern's (sorted) part order.
    slots: Vec<usize>,
    /// For `adv`: the summed property.
    add_key: Option<String>,
    /// Storage keys this metric writes per bucket (adv writes the labels and the summary).
    keys_per_bucket: usize,
}

/// Compiles a [`TraqqConfig`] once and turns events into batch operations.
#[derive(Debug, Clone)]
pub struct OpGenerator {
    prefix: String,
    /// Property names referenced by any pattern; a slot is an index into this list.
    names: Vec<String>,
    metrics: Vec<CompiledMetric>,
    calendar: Calendar,
    hourly: bool,
    max_value_length: usize,
    max_ops: usize,
    time_field: String,
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
        for (metric, list) in lists {
            for text in list {
                let pattern = Pattern::parse(text).map_err(|r| Error::config("mapping", r))?;
                metrics.push(CompiledMetric {
                    metric,
                    slots: pattern.parts().map(&mut slot_of).collect(),
                    pattern: pattern.as_str().to_owned(),
                    add_key: None,
                    keys_per_bucket: 1,
                });
            }
        }
        for av in &m.add_value {
            let pattern = Pattern::parse(&av.key).map_err(|r| Error::config("mapping", r))?;
            metrics.push(CompiledMetric {
                metric: MetricType::Adv,
                slots: pattern.parts().map(&mut slot_of).collect(),
                pattern: pattern.as_str().to_owned(),
                add_key: Some(av.add_key.clone()),
                keys_per_bucket: 2,
            });
        }
        Ok(OpGenerator {
            prefix: prefix.to_owned(),
            names,
            metrics,
            calendar: Calendar::new(config.time.zone()?),
            hourly: config.time.store_hourly,
            max_value_length: config.limits.max_value_length,
            max_ops: config.limits.max_metrics_per_event,
            time_field: config.event.time_field.clone(),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The calendar of the configured zone.
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Starts a batch. Add events with [`BatchBuilder::add`], then call [`BatchBuilder::finish`].
    pub fn batch(&self) -> BatchBuilder<'_> {
        BatchBuilder {
            generator: self,
            batch: Batch::new(),
            key: String::with_capacity(96),
            value: String::with_capacity(96),
            day: (i64::MAX, i64::MIN),
            hour: (i64::MAX, i64::MIN),
            events: 0,
        }
    }

    /// The batch of a single event (convenience for one-off records and tests).
    pub fn event_batch(&self, event: &IncomingEvent<'_>, now: i64) -> Result<Batch> {
        let mut b = self.batch();
        b.add(event, now)?;
        Ok(b.finish())
    }

    fn value_of<'e>(&self, event: &'e IncomingEvent<'_>, slot: usize) -> Option<Cow<'e, str>> {
        let name = self.names.get(slot)?;
        match event.get(name)? {
            Scalar::Str(s) => sanitize_value(s, self.max_value_length),
            other => {
                sanitize_value(&other.as_text(), self.max_value_length).map(|v| Cow::Owned(v.into_owned()))
            }
        }
    }
}

/// Accumulates events into one coalesced [`Batch`].
#[derive(Debug)]
pub struct BatchBuilder<'g> {
    generator: &'g OpGenerator,
    batch: Batch,
    key: String,
    value: String,
    /// Last day and hour bucket seen, as `[start, end)`: consecutive events mostly share them.
    day: (i64, i64),
    hour: (i64, i64),
    events: usize,
}

impl BatchBuilder<'_> {
    /// Adds one event, timed by its event-time field or else `now`. On error (bad event time,
    /// too many operations) nothing of the event is added.
    pub fn add(&mut self, event: &IncomingEvent<'_>, now: i64) -> Result<()> {
        let g = self.generator;
        let ts = event.timestamp(&g.time_field)?.unwrap_or(now);
        let values: Vec<Option<Cow<'_, str>>> = (0..g.names.len()).map(|s| g.value_of(event, s)).collect();
        let amount = |m: &CompiledMetric| {
            m.add_key
                .as_deref()
                .and_then(|k| event.get(k))
                .and_then(Scalar::as_number)
        };
        let applies = |m: &CompiledMetric| {
            m.slots.iter().all(|&s| values[s].is_some())
                && (m.metric != MetricType::Adv || amount(m).is_some())
        };

        let buckets = 1 + usize::from(g.hourly);
        let count: usize = g
            .metrics
            .iter()
            .filter(|m| applies(m))
            .map(|m| m.keys_per_bucket * buckets)
            .sum();
        if count > g.max_ops {
            return Err(Error::TooManyMetrics {
                count,
                limit: g.max_ops,
            });
        }

        let day = cached_bucket(&g.calendar, BucketKind::Day, ts, &mut self.day);
        let hour = g
            .hourly
            .then(|| cached_bucket(&g.calendar, BucketKind::Hour, ts, &mut self.hour));
        for m in g.metrics.iter().filter(|m| applies(m)) {
            self.value.clear();
            for (i, &slot) in m.slots.iter().enumerate() {
                if i > 0 {
                    self.value.push('~');
                }
                if let Some(v) = &values[slot] {
                    self.value.push_str(v);
                }
            }
            let amount = amount(m);
            for (kind, start) in
                std::iter::once((BucketKind::Day, day)).chain(hour.map(|h| (BucketKind::Hour, h)))
            {
                self.write(m, kind, start, amount);
            }
        }
        self.events += 1;
        Ok(())
    }

    fn write(&mut self, m: &CompiledMetric, bucket: BucketKind, start: i64, amount: Option<f64>) {
        let b = (bucket, start);
        let key = KeyRef {
            metric: m.metric,
            bucket,
            timestamp: start,
            pattern: &m.pattern,
            add_key: m.add_key.as_deref(),
            summary: false,
        };
        key.write_to(&self.generator.prefix, &mut self.key);
        let (k, v, batch) = (&self.key, &self.value, &mut self.batch);
        match m.metric {
            MetricType::Bmp => batch.hll_insert(k, b, v),
            MetricType::Add => batch.incr(k, b, v, Number::Int(1)),
            MetricType::Top => batch.zincr(k, b, v, 1.0),
            MetricType::Adv => {
                let x = amount.unwrap_or(0.0);
                batch.incr(k, b, v, Number::Float(x));
                KeyRef { summary: true, ..key }.write_to(&self.generator.prefix, &mut self.key);
                self.batch.incr(&self.key, b, "sum", Number::Float(x));
                self.batch.incr(&self.key, b, "count", Number::Int(1));
            }
        }
    }

    /// Events added so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Adds each written key to its bucket's key set and returns the batch.
    pub fn finish(mut self) -> Batch {
        let keys: Vec<(String, BucketKind, i64)> = self
            .batch
            .iter()
            .map(|(k, e)| (k.to_owned(), e.bucket, e.bucket_start))
            .collect();
        for (key, kind, start) in keys {
            let set = key_set_key(&self.generator.prefix, kind, start);
            self.batch.sadd(&set, (kind, start), &key);
        }
        self.batch
    }
}

fn cached_bucket(calendar: &Calendar, kind: BucketKind, ts: i64, cache: &mut (i64, i64)) -> i64 {
    if ts < cache.0 || ts >= cache.1 {
        let start = calendar.bucket_start(kind, ts);
        *cache = (start, calendar.next_bucket_start(kind, start));
    }
    cache.0
}
