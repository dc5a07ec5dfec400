//! Op generation: turning events into a [`Batch`] of metric operations.
//!
//! Only the configured patterns are evaluated: each pattern knows the slots of its parts, an
//! event's values are looked up once per referenced property, and keys and compound values
//! are written into reused buffers, so an event costs no allocation beyond new batch entries.

use hashbrown::{DefaultHashBuilder, HashMap};

use crate::batch::{Batch, KeyEntry, KeyOps, Number};
use crate::bucket::{BucketKind, Calendar};
use crate::claim::{Claim, IdPolicy};
use crate::config::TraqqConfig;
use crate::distribution::{Bin, FIELD_SEPARATOR, SUM_SUFFIX};
use crate::event::{IncomingEvent, Scalar};
use crate::key::{bucket_registry_key, key_set_key, validate_prefix, AdvPart, KeyRef, MetricType};
use crate::pattern::Pattern;
use crate::sanitize::sanitize_value;
use crate::{Error, Result};

mod caches;
use caches::{BucketCache, Interner};

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
    metrics: Vec<CompiledMetric>,
    calendar: Calendar,
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
            names,
            metrics,
            calendar: Calendar::new(config.time.zone()?),
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

    /// Starts a batch. Add events with [`BatchBuilder::add`], then call [`BatchBuilder::finish`].
    pub fn batch(&self) -> BatchBuilder<'_> {
        BatchBuilder {
            generator: self,
            buckets: Vec::new(),
            slots: Vec::new(),
            value: String::with_capacity(96),
            values: String::with_capacity(256),
            spans: Vec::with_capacity(self.names.len()),
            applies: Vec::with_capacity(self.metrics.len()),
            interners: vec![Interner::default(); self.names.len()],
            event_ids: Vec::with_capacity(self.names.len()),
            hasher: DefaultHashBuilder::default(),
            days: BucketCache::default(),
            hours: BucketCache::default(),
            quarters: BucketCache::default(),
            events: 0,
        }
    }

    /// The batch of a single event (convenience for one-off records and tests).
    pub fn event_batch(&self, event: &IncomingEvent<'_>, now: i64) -> Result<Batch> {
        let mut b = self.batch();
        b.add(event, now)?;
        Ok(b.finish())
    }

    /// Appends the sanitized value of property `slot` to `out`; `false` when it has none.
    fn write_value(&self, event: &IncomingEvent<'_>, slot: usize, out: &mut String) -> bool {
        let Some(value) = self.names.get(slot).and_then(|name| event.get(name)) else {
            return false;
        };
        let text = value.as_text();
        match sanitize_value(&text, self.max_value_length) {
            Some(v) => {
                out.push_str(&v);
                true
            }
            None => false,
        }
    }
}

/// The days [`OpGenerator::claim_in`] has placed events in: start, next day's start, whether
/// its ids are remembered.
#[derive(Debug, Clone, Default)]
pub struct ClaimDays(Vec<(i64, i64, bool)>);

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
    /// The batch's buckets, numbered in order of arrival.
    buckets: Vec<(BucketKind, i64)>,
    /// Slot `bucket number * metrics + metric index`: direct indexing, no hashing per op.
    slots: Vec<Option<Slot>>,
    /// Compound-value buffer for fields that are not packed and for `bmp` values.
    value: String,
    /// The current event's sanitized property values, back to back (reused, so an event
    /// allocates nothing here) ...
    values: String,
    /// ... and where each property slot's value lies in it (`None`: absent).
    spans: Vec<Option<(u32, u32)>>,
    /// Per metric, for the current event: `None` when it does not apply, else the amount
    /// (`adv`; 0 for the others).
    applies: Vec<Option<f64>>,
    /// Per property slot: the values seen in this batch, numbered.
    interners: Vec<Interner>,
    /// Per property slot: the current event's value id (`NO_ID` until looked up).
    event_ids: Vec<u32>,
    hasher: DefaultHashBuilder,
    /// Recently seen day and hour buckets: events of a batch mostly share a few.
    days: BucketCache,
    hours: BucketCache,
    quarters: BucketCache,
    events: usize,
}

/// Bits per value id in a packed field; fields of more parts, or ids past this, use text.
const PACK_BITS: u32 = 21;
const MAX_PACKED_PARTS: usize = 3;
const NO_ID: u32 = u32::MAX;

/// The operations of one metric in one bucket.
#[derive(Debug)]
struct Slot {
    /// Text-keyed operations: `bmp` values, and fields that could not be packed.
    ops: KeyOps,
    /// Events per packed field: `add` counts and `top` scores (both +1 per event).
    counts: HashMap<u64, u64>,
    /// Sum and events per packed field (`adv`, and `dst`'s per-label sums).
    sums: HashMap<u64, Increment>,
    /// Values per packed field and bin (`dst`).
    bins: HashMap<(u64, Bin), u64>,
    /// For `adv`: per-label counts of fields that could not be packed (the `:c` key).
    label_counts: KeyOps,
    /// For `adv`: the `:i` summary's sum and count.
    summary: Increment,
}

impl Slot {
    fn new(metric: MetricType) -> Slot {
        Slot {
            ops: match metric {
                MetricType::Bmp => KeyOps::Hll(Default::default()),
                MetricType::Add | MetricType::Adv | MetricType::Dst => KeyOps::Hash(Default::default()),
                MetricType::Top => KeyOps::Scores(Default::default()),
            },
            counts: HashMap::new(),
            sums: HashMap::new(),
            bins: HashMap::new(),
            label_counts: KeyOps::Hash(Default::default()),
            summary: Increment::default(),
        }
    }
}

/// What one `adv` field (or summary) gathered in a batch.
#[derive(Debug, Clone, Copy, Default)]
struct Increment {
    /// Sum of the amounts.
    sum: f64,
    /// Events summed: the label's count.
    events: i64,
}

impl Increment {
    fn add(&mut self, amount: f64) {
        self.sum += amount;
        self.events += 1;
    }
}

impl BatchBuilder<'_> {
    /// Adds one event, timed by its event-time field or else `now`. On error (bad event time,
    /// too many operations) nothing of the event is added.
    pub fn add(&mut self, event: &IncomingEvent<'_>, now: i64) -> Result<()> {
        let g = self.generator;
        let ts = g.event_time(event, now)?;
        self.values.clear();
        self.spans.clear();
        for slot in 0..g.names.len() {
            let from = self.values.len();
            let span = g
                .write_value(event, slot, &mut self.values)
                .then_some((from as u32, self.values.len() as u32));
            self.spans.push(span);
        }
        self.applies.clear();
        let buckets = 1 + usize::from(g.hourly) + usize::from(g.quarterly);
        let mut count = 0;
        for m in &g.metrics {
            let amount = match &m.add_key {
                Some(k) => event.get(k).and_then(Scalar::as_number),
                None => Some(0.0),
            };
            if let (Some(x), Some(field)) = (amount, &m.add_key) {
                if x.abs() > MAX_AMOUNT {
                    return Err(Error::AmountTooLarge {
                        field: field.clone(),
                        value: x,
                        limit: MAX_AMOUNT,
                    });
                }
            }
            let applies = amount.filter(|_| m.slots.iter().all(|&s| self.spans[s].is_some()));
            count += applies.map_or(0, |_| m.keys_per_bucket * buckets);
            self.applies.push(applies);
        }
        if count > g.max_ops {
            return Err(Error::TooManyMetrics {
                count,
                limit: g.max_ops,
            });
        }

        let day = self
            .days
            .number(&g.calendar, BucketKind::Day, ts, &mut self.buckets);
        let hour = g.hourly.then(|| {
            self.hours
                .number(&g.calendar, BucketKind::Hour, ts, &mut self.buckets)
        });
        let quarter = g.quarterly.then(|| {
            self.quarters
                .number(&g.calendar, BucketKind::Quarter, ts, &mut self.buckets)
        });
        let per_bucket = g.metrics.len();
        let needed = self.buckets.len() * per_bucket;
        if self.slots.len() < needed {
            self.slots.resize_with(needed, || None);
        }
        self.event_ids.clear();
        self.event_ids.resize(g.names.len(), NO_ID);
        for (index, m) in g.metrics.iter().enumerate() {
            let Some(amount) = self.applies[index] else {
                continue;
            };
            let packed = if m.metric != MetricType::Bmp && m.slots.len() <= MAX_PACKED_PARTS {
                self.pack(m)
            } else {
                None
            };
            if packed.is_none() {
                self.value.clear();
                for (i, &slot) in m.slots.iter().enumerate() {
                    if i > 0 {
                        self.value.push('~');
                    }
                    self.value.push_str(span_text(&self.values, self.spans[slot]));
                }
            }
            for number in std::iter::once(day).chain(hour).chain(quarter) {
                let Some(slot) = self.slots.get_mut(number * per_bucket + index) else {
                    continue;
                };
                let slot = slot.get_or_insert_with(|| Slot::new(m.metric));
                match (m.metric, packed) {
                    (MetricType::Bmp, _) => slot.ops.insert(&self.value),
                    (MetricType::Adv, Some(field)) => {
                        slot.summary.add(amount);
                        slot.sums.entry(field).or_default().add(amount);
                    }
                    (MetricType::Adv, None) => {
                        slot.summary.add(amount);
                        slot.ops.incr(&self.value, Number::Float(amount));
                        slot.label_counts.incr(&self.value, Number::Int(1));
                    }
                    (MetricType::Dst, Some(field)) => {
                        slot.summary.add(amount);
                        slot.sums.entry(field).or_default().add(amount);
                        if let Some(bin) = Bin::of(amount) {
                            *slot.bins.entry((field, bin)).or_insert(0) += 1;
                        }
                    }
                    (MetricType::Dst, None) => {
                        slot.summary.add(amount);
                        let label = self.value.len();
                        self.value.push(FIELD_SEPARATOR);
                        self.value.push_str(SUM_SUFFIX);
                        slot.ops.incr(&self.value, Number::Float(amount));
                        if let Some(bin) = Bin::of(amount) {
                            self.value.truncate(label + 1);
                            bin.write_suffix(&mut self.value);
                            slot.ops.incr(&self.value, Number::Int(1));
                        }
                        self.value.truncate(label);
                    }
                    (_, Some(field)) => *slot.counts.entry(field).or_insert(0) += 1,
                    (MetricType::Add, None) => slot.ops.incr(&self.value, Number::Int(1)),
                    (MetricType::Top, None) => slot.ops.zincr(&self.value, 1.0),
                }
            }
        }
        self.events += 1;
        Ok(())
    }

    /// The field of metric `m` for the current event as packed value ids, or `None` when an id
    /// does not fit (then the field is keyed by its text).
    fn pack(&mut self, m: &CompiledMetric) -> Option<u64> {
        let mut packed = 0u64;
        for &slot in &m.slots {
            let id = match self.event_ids[slot] {
                NO_ID => {
                    let value = span_text(&self.values, *self.spans.get(slot)?);
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
        // Slots come bucket by bucket: the bucket's key-set key is formatted once per bucket.
        let mut set = (usize::MAX, String::new());
        let per_bucket = g.metrics.len().max(1);
        for (n, slot) in self.slots.into_iter().enumerate() {
            let Some(mut slot) = slot else { continue };
            let (index, number) = (n % per_bucket, n / per_bucket);
            let (Some(m), Some(&(bucket, start))) = (g.metrics.get(index), self.buckets.get(number)) else {
                continue;
            };
            if !buckets.contains(&(start, bucket)) {
                buckets.push((start, bucket));
            }
            let interners = &self.interners;
            let field_text = |packed: u64, field: &mut String| {
                field.clear();
                for (i, &part) in m.slots.iter().enumerate() {
                    if i > 0 {
                        field.push('~');
                    }
                    let shift = PACK_BITS as usize * (m.slots.len() - 1 - i);
                    let id = (packed >> shift) & ((1 << PACK_BITS) - 1);
                    field.push_str(interners.get(part).map_or("", |t| t.text(id)));
                }
            };
            for (packed, events) in slot.counts.drain() {
                field_text(packed, &mut field);
                match m.metric {
                    MetricType::Top => slot.ops.zincr(&field, events as f64),
                    _ => slot.ops.incr(&field, Number::Int(events as i64)),
                }
            }
            let dst = m.metric == MetricType::Dst;
            for (packed, inc) in slot.sums.drain() {
                field_text(packed, &mut field);
                if dst {
                    field.push(FIELD_SEPARATOR);
                    field.push_str(SUM_SUFFIX);
                    slot.ops.incr(&field, Number::Float(inc.sum));
                } else {
                    slot.ops.incr(&field, Number::Float(inc.sum));
                    slot.label_counts.incr(&field, Number::Int(inc.events));
                }
            }
            for ((packed, bin), n) in slot.bins.drain() {
                field_text(packed, &mut field);
                field.push(FIELD_SEPARATOR);
                bin.write_suffix(&mut field);
                slot.ops.incr(&field, Number::Int(n as i64));
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
            if set.0 != number {
                set = (number, key_set_key(&g.prefix, bucket, start));
            }
            let set = set.1.as_str();
            batch.sadd(set, b, &key);
            batch.put(
                &key,
                KeyEntry {
                    bucket,
                    bucket_start: start,
                    ops: slot.ops,
                    max_labels: m.max_labels,
                },
            );
            if m.metric.has_value_key() {
                key_ref.part = AdvPart::Summary;
                key_ref.write_to(&g.prefix, &mut key);
                batch.sadd(set, b, &key);
                batch.incr(&key, b, "sum", Number::Float(slot.summary.sum));
                batch.incr(&key, b, "count", Number::Int(slot.summary.events));
            }
            if m.metric == MetricType::Adv {
                key_ref.part = AdvPart::Counts;
                key_ref.write_to(&g.prefix, &mut key);
                batch.sadd(set, b, &key);
                batch.put(
                    &key,
                    KeyEntry {
                        bucket,
                        bucket_start: start,
                        ops: slot.label_counts,
                        max_labels: m.max_labels,
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
/// The text of a value span in the event's value buffer.
fn span_text(values: &str, span: Option<(u32, u32)>) -> &str {
    span.and_then(|(from, to)| values.get(from as usize..to as usize))
        .unwrap_or("")
}

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
