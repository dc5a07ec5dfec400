//! Op generation: turning events into a [`Batch`] of metric operations.
//!
//! Only the configured patterns are evaluated: each pattern knows the slots of its parts, an
//! event's values are looked up once per referenced property, and keys and compound values
//! are written into reused buffers, so an event costs no allocation beyond new batch entries.

use std::borrow::Cow;

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use crate::batch::{Batch, KeyEntry, KeyOps, Number};
use crate::bucket::{BucketKind, Calendar};
use crate::config::TraqqConfig;
use crate::event::{IncomingEvent, Scalar};
use crate::key::{bucket_registry_key, key_set_key, validate_prefix, AdvPart, KeyRef, MetricType};
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
    /// Storage keys this metric writes per bucket (adv: the sums, the summary, the counts).
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
                keys_per_bucket: 3,
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
            slots: HashMap::new(),
            value: String::with_capacity(96),
            interners: vec![Interner::default(); self.names.len()],
            event_ids: Vec::with_capacity(self.names.len()),
            hasher: DefaultHashBuilder::default(),
            days: BucketCache::default(),
            hours: BucketCache::default(),
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
///
/// Operations are gathered per (metric, bucket) slot, found by a small integer key; the
/// storage key text of a slot is written once, in [`BatchBuilder::finish`], not per event.
/// Counter, sum and leaderboard fields are keyed by the batch-local ids of their parts' values
/// packed into a `u64`, so coalescing compares integers, not strings; field text is written
/// once per distinct field in `finish`.
#[derive(Debug)]
pub struct BatchBuilder<'g> {
    generator: &'g OpGenerator,
    slots: HashMap<(usize, BucketKind, i64), Slot>,
    value: String,
    /// Per property slot: the values seen in this batch, numbered.
    interners: Vec<Interner>,
    /// Per property slot: the current event's value id (`NO_ID` until looked up).
    event_ids: Vec<u32>,
    hasher: DefaultHashBuilder,
    /// Recently seen day and hour buckets as `[start, end)`: events of a batch mostly share a few.
    days: BucketCache,
    hours: BucketCache,
    events: usize,
}

/// Bits per value id in a packed field; fields of more parts, or ids past this, use text.
const PACK_BITS: u32 = 21;
const MAX_PACKED_PARTS: usize = 3;
const NO_ID: u32 = u32::MAX;

/// The distinct values of one property within a batch, numbered in order of arrival.
#[derive(Debug, Clone, Default)]
struct Interner {
    table: HashTable<u32>,
    texts: Vec<Box<str>>,
}

impl Interner {
    fn id(&mut self, hasher: &DefaultHashBuilder, value: &str) -> u32 {
        let hash = hasher.hash_one(value);
        let texts = &self.texts;
        if let Some(&id) = self.table.find(hash, |&id| &*texts[id as usize] == value) {
            return id;
        }
        let id = u32::try_from(self.texts.len()).unwrap_or(NO_ID);
        self.texts.push(value.into());
        let texts = &self.texts;
        self.table
            .insert_unique(hash, id, |&id| hasher.hash_one(&*texts[id as usize]));
        id
    }

    fn text(&self, id: u64) -> &str {
        self.texts.get(id as usize).map_or("", |t| t)
    }
}

/// The operations of one metric in one bucket.
#[derive(Debug)]
struct Slot {
    /// Text-keyed operations: `bmp` values, and fields that could not be packed.
    ops: KeyOps,
    /// Increments of packed fields (counts for `add`, sums for `adv`, scores for `top`).
    packed: HashMap<u64, Increment>,
    /// For `adv`: per-label counts of fields that could not be packed (the `:c` key).
    label_counts: KeyOps,
    /// For `adv`: the `:i` summary's sum and count.
    summary: Increment,
}

/// What one field (or an `adv` summary) gathered in a batch.
#[derive(Debug, Clone, Copy, Default)]
struct Increment {
    /// Count (`add`), sum (`adv`) or score (`top`).
    by: f64,
    /// Events that contributed: an `adv` label's count.
    events: i64,
}

impl Increment {
    fn add(&mut self, by: f64) {
        self.by += by;
        self.events += 1;
    }
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

        let day = self.days.start(&g.calendar, BucketKind::Day, ts);
        let hour = g
            .hourly
            .then(|| self.hours.start(&g.calendar, BucketKind::Hour, ts));
        self.event_ids.clear();
        self.event_ids.resize(g.names.len(), NO_ID);
        for (index, m) in g.metrics.iter().enumerate().filter(|(_, m)| applies(m)) {
            let packed = if m.metric != MetricType::Bmp && m.slots.len() <= MAX_PACKED_PARTS {
                self.pack(m, &values)
            } else {
                None
            };
            if packed.is_none() {
                self.value.clear();
                for (i, &slot) in m.slots.iter().enumerate() {
                    if i > 0 {
                        self.value.push('~');
                    }
                    if let Some(v) = &values[slot] {
                        self.value.push_str(v);
                    }
                }
            }
            let amount = amount(m).unwrap_or(0.0);
            for bucket in std::iter::once((BucketKind::Day, day)).chain(hour.map(|h| (BucketKind::Hour, h))) {
                let slot = self
                    .slots
                    .entry((index, bucket.0, bucket.1))
                    .or_insert_with(|| Slot {
                        ops: match m.metric {
                            MetricType::Bmp => KeyOps::Hll(Default::default()),
                            MetricType::Add | MetricType::Adv => KeyOps::Hash(Default::default()),
                            MetricType::Top => KeyOps::Scores(Default::default()),
                        },
                        packed: HashMap::new(),
                        label_counts: KeyOps::Hash(Default::default()),
                        summary: Increment::default(),
                    });
                let by = match m.metric {
                    MetricType::Adv => {
                        slot.summary.add(amount);
                        amount
                    }
                    _ => 1.0,
                };
                match (m.metric, packed) {
                    (MetricType::Bmp, _) => slot.ops.insert(&self.value),
                    (_, Some(field)) => slot.packed.entry(field).or_default().add(by),
                    (MetricType::Add, None) => slot.ops.incr(&self.value, Number::Int(1)),
                    (MetricType::Top, None) => slot.ops.zincr(&self.value, by),
                    (MetricType::Adv, None) => {
                        slot.ops.incr(&self.value, Number::Float(by));
                        slot.label_counts.incr(&self.value, Number::Int(1));
                    }
                }
            }
        }
        self.events += 1;
        Ok(())
    }

    /// The field of metric `m` for the current event as packed value ids, or `None` when an id
    /// does not fit (then the field is keyed by its text).
    fn pack(&mut self, m: &CompiledMetric, values: &[Option<Cow<'_, str>>]) -> Option<u64> {
        let mut packed = 0u64;
        for &slot in &m.slots {
            let id = match self.event_ids[slot] {
                NO_ID => {
                    let value = values.get(slot)?.as_deref()?;
                    let id = self.interners.get_mut(slot)?.id(&self.hasher, value);
                    self.event_ids[slot] = id;
                    id
                }
                id => id,
            };
            if id >= 1 << PACK_BITS {
                return None;
            }
            packed = (packed << PACK_BITS) | u64::from(id);
        }
        Some(packed)
    }

    /// Events added so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Writes each slot under its storage key, adds every key to its bucket's key set,
    /// registers each bucket's key set in the prefix's bucket registry
    /// ([`bucket_registry_key`], read by retention), and returns the batch.
    pub fn finish(self) -> Batch {
        let g = self.generator;
        let mut batch = Batch::new();
        let mut key = String::with_capacity(96);
        let mut field = String::with_capacity(96);
        let mut buckets: Vec<(i64, BucketKind)> = Vec::new();
        for ((index, bucket, start), mut slot) in self.slots {
            if !buckets.contains(&(start, bucket)) {
                buckets.push((start, bucket));
            }
            let Some(m) = g.metrics.get(index) else { continue };
            for (packed, inc) in slot.packed.drain() {
                field.clear();
                for (i, &part) in m.slots.iter().enumerate() {
                    if i > 0 {
                        field.push('~');
                    }
                    let shift = PACK_BITS as usize * (m.slots.len() - 1 - i);
                    let id = (packed >> shift) & ((1 << PACK_BITS) - 1);
                    field.push_str(self.interners.get(part).map_or("", |t| t.text(id)));
                }
                match m.metric {
                    MetricType::Add => slot.ops.incr(&field, Number::Int(inc.events)),
                    MetricType::Top => slot.ops.zincr(&field, inc.by),
                    _ => {
                        slot.ops.incr(&field, Number::Float(inc.by));
                        slot.label_counts.incr(&field, Number::Int(inc.events));
                    }
                }
            }
            let b = (bucket, start);
            let mut key_ref = KeyRef {
                metric: m.metric,
                bucket,
                timestamp: start,
                pattern: &m.pattern,
                add_key: m.add_key.as_deref(),
                part: AdvPart::Sums,
            };
            key_ref.write_to(&g.prefix, &mut key);
            let set = key_set_key(&g.prefix, bucket, start);
            batch.sadd(&set, b, &key);
            batch.put(
                &key,
                KeyEntry {
                    bucket,
                    bucket_start: start,
                    ops: slot.ops,
                },
            );
            if m.metric == MetricType::Adv {
                key_ref.part = AdvPart::Summary;
                key_ref.write_to(&g.prefix, &mut key);
                batch.sadd(&set, b, &key);
                batch.incr(&key, b, "sum", Number::Float(slot.summary.by));
                batch.incr(&key, b, "count", Number::Int(slot.summary.events));
                key_ref.part = AdvPart::Counts;
                key_ref.write_to(&g.prefix, &mut key);
                batch.sadd(&set, b, &key);
                batch.put(
                    &key,
                    KeyEntry {
                        bucket,
                        bucket_start: start,
                        ops: slot.label_counts,
                    },
                );
            }
        }
        register_buckets(&mut batch, &g.prefix, buckets);
        batch
    }
}

/// Adds each bucket's key set to the registry. The newest bucket goes first, so the registry
/// entry carries the newest bucket (a backend that expires keys by bucket keeps it longest).
fn register_buckets(batch: &mut Batch, prefix: &str, mut buckets: Vec<(i64, BucketKind)>) {
    if buckets.is_empty() {
        return;
    }
    buckets.sort_by_key(|b| std::cmp::Reverse(b.0));
    let registry = bucket_registry_key(prefix);
    for (start, kind) in buckets {
        batch.sadd(&registry, (kind, start), &key_set_key(prefix, kind, start));
    }
}

/// The last few buckets looked up, so most events skip the time-zone arithmetic.
#[derive(Debug, Default)]
struct BucketCache {
    entries: [(i64, i64); 8],
    next: usize,
}

impl BucketCache {
    fn start(&mut self, calendar: &Calendar, kind: BucketKind, ts: i64) -> i64 {
        if let Some((start, _)) = self.entries.iter().find(|(s, e)| *s <= ts && ts < *e) {
            return *start;
        }
        let start = calendar.bucket_start(kind, ts);
        self.entries[self.next] = (start, calendar.next_bucket_start(kind, start));
        self.next = (self.next + 1) % self.entries.len();
        start
    }
}
