//! [`BatchBuilder`]: events gathered into one coalesced [`Batch`], per (metric, bucket) slot.

use hashbrown::{DefaultHashBuilder, HashMap};

use super::caches::{BucketCache, BucketId, Interner, NO_ID};
use super::{CompiledMetric, OpGenerator, MAX_AMOUNT};
use crate::batch::{Batch, KeyEntry, KeyOps, Number};
use crate::bucket::BucketKind;
use crate::distribution::{Bin, FIELD_SEPARATOR, SUM_SUFFIX};
use crate::event::{IncomingEvent, Scalar};
use crate::key::{key_set_key, register_buckets, AdvPart, KeyRef, MetricType};
use crate::{Error, Result};

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
    buckets: Vec<BucketId>,
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
    /// Per extra zone (`time.extra_zones`), its recent days.
    zone_days: Vec<BucketCache>,
    /// The current event's buckets: its day, hour and quarter where stored, its day in each
    /// extra zone (found once per event, not once per metric).
    numbers: Vec<usize>,
    events: usize,
    /// Emptied maps of an earlier batch's slots, for this batch's new slots.
    spare: SpareMaps,
}

/// The packed-field maps of a finished batch's slots, emptied with their room kept: a
/// recorder that hands them to its next batch ([`OpGenerator::batch_reusing`],
/// [`BatchBuilder::finish_keeping`]) grows no map from empty again.
#[derive(Debug, Default)]
pub struct SpareMaps {
    counts: Vec<HashMap<u64, u64>>,
    sums: Vec<HashMap<u64, Increment>>,
    bins: Vec<HashMap<(u64, Bin), u64>>,
}

impl SpareMaps {
    /// Whether it holds count, sum and bin maps (for tests).
    #[cfg(test)]
    pub(super) fn kinds_held(&self) -> [bool; 3] {
        [
            !self.counts.is_empty(),
            !self.sums.is_empty(),
            !self.bins.is_empty(),
        ]
    }

    /// Keeps `map`, emptied, unless it never held anything.
    fn keep<K, V>(list: &mut Vec<HashMap<K, V>>, mut map: HashMap<K, V>) {
        if map.capacity() > 0 {
            map.clear();
            list.push(map);
        }
    }
}

/// Bits per value id in a packed field; fields of more parts, or ids past this, use text.
const PACK_BITS: u32 = 21;
const MAX_PACKED_PARTS: usize = 3;

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
    /// A slot for `metric`, its maps taken from `spare` where the metric uses them.
    fn new(metric: MetricType, spare: &mut SpareMaps) -> Slot {
        let counting = matches!(metric, MetricType::Add | MetricType::Top);
        let summing = matches!(metric, MetricType::Adv | MetricType::Dst);
        Slot {
            ops: match metric {
                MetricType::Bmp => KeyOps::Hll(Default::default()),
                MetricType::Add | MetricType::Adv | MetricType::Dst => KeyOps::Hash(Default::default()),
                MetricType::Top => KeyOps::Scores(Default::default()),
            },
            counts: counting.then(|| spare.counts.pop()).flatten().unwrap_or_default(),
            sums: summing.then(|| spare.sums.pop()).flatten().unwrap_or_default(),
            bins: (metric == MetricType::Dst)
                .then(|| spare.bins.pop())
                .flatten()
                .unwrap_or_default(),
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

impl<'g> BatchBuilder<'g> {
    pub(super) fn new(generator: &'g OpGenerator, spare: SpareMaps) -> Self {
        BatchBuilder {
            generator,
            buckets: Vec::new(),
            slots: Vec::new(),
            value: String::with_capacity(96),
            values: String::with_capacity(256),
            spans: Vec::with_capacity(generator.names.len()),
            applies: Vec::with_capacity(generator.metrics.len()),
            interners: vec![Interner::default(); generator.names.len()],
            event_ids: Vec::with_capacity(generator.names.len()),
            hasher: DefaultHashBuilder::default(),
            days: BucketCache::default(),
            hours: BucketCache::default(),
            quarters: BucketCache::default(),
            zone_days: generator
                .extra_zones
                .iter()
                .map(|_| BucketCache::default())
                .collect(),
            numbers: Vec::with_capacity(3 + generator.extra_zones.len()),
            events: 0,
            spare,
        }
    }
}

impl BatchBuilder<'_> {
    /// Adds one event, timed by its event-time field or else `now`. On error (bad event time,
    /// too many operations) nothing of the event is added.
    pub fn add(&mut self, event: &IncomingEvent<'_>, now: i64) -> Result<()> {
        let g = self.generator;
        let ts = g.event_time(event, now)?;
        self.values.clear();
        g.write_values(event, &mut self.values, &mut self.spans);
        self.applies.clear();
        let buckets = 1 + usize::from(g.hourly) + usize::from(g.quarterly) + g.extra_zones.len();
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

        let own = (0, &g.calendar);
        self.numbers.clear();
        let day = self.days.number(own, BucketKind::Day, ts, &mut self.buckets);
        self.numbers.push(day);
        if g.hourly {
            let hour = self.hours.number(own, BucketKind::Hour, ts, &mut self.buckets);
            self.numbers.push(hour);
        }
        if g.quarterly {
            let quarter = self
                .quarters
                .number(own, BucketKind::Quarter, ts, &mut self.buckets);
            self.numbers.push(quarter);
        }
        for (i, ((calendar, _), cache)) in g.extra_zones.iter().zip(&mut self.zone_days).enumerate() {
            let index = u8::try_from(i + 1).unwrap_or(u8::MAX);
            let number = cache.number((index, calendar), BucketKind::Day, ts, &mut self.buckets);
            self.numbers.push(number);
        }
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
            // Once per event and distribution, and only for distributions: left inside the
            // loop below, the logarithm was computed for every metric.
            let bin = if m.metric == MetricType::Dst {
                Bin::of(amount)
            } else {
                None
            };
            for &number in &self.numbers {
                let Some(slot) = self.slots.get_mut(number * per_bucket + index) else {
                    continue;
                };
                let slot = slot.get_or_insert_with(|| Slot::new(m.metric, &mut self.spare));
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
                        if let Some(bin) = bin {
                            *slot.bins.entry((field, bin)).or_insert(0) += 1;
                        }
                    }
                    (MetricType::Dst, None) => {
                        slot.summary.add(amount);
                        let label = self.value.len();
                        self.value.push(FIELD_SEPARATOR);
                        self.value.push_str(SUM_SUFFIX);
                        slot.ops.incr(&self.value, Number::Float(amount));
                        if let Some(bin) = bin {
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
    /// ([`bucket_registry_key`](crate::key::bucket_registry_key), read by retention), and returns the batch.
    pub fn finish(self) -> Batch {
        self.finish_keeping().0
    }

    /// [`BatchBuilder::finish`], also giving back the slots' emptied maps for the next batch
    /// ([`OpGenerator::batch_reusing`]).
    pub fn finish_keeping(mut self) -> (Batch, SpareMaps) {
        let g = self.generator;
        let mut spare = std::mem::take(&mut self.spare);
        let mut batch = Batch::new();
        let mut key = String::with_capacity(96);
        let mut field = String::with_capacity(96);
        // Per calendar (the store's own, then each extra zone): the buckets to register.
        let mut buckets: Vec<Vec<(i64, BucketKind)>> = vec![Vec::new(); 1 + g.extra_zones.len()];
        // Slots come bucket by bucket: the bucket's key-set key is formatted once per bucket.
        let mut set = (usize::MAX, String::new());
        let per_bucket = g.metrics.len().max(1);
        for (n, slot) in self.slots.into_iter().enumerate() {
            let Some(mut slot) = slot else { continue };
            let (index, number) = (n % per_bucket, n / per_bucket);
            let (Some(m), Some(&(bucket, start, zone))) = (g.metrics.get(index), self.buckets.get(number))
            else {
                continue;
            };
            let prefix = g.prefix_of(zone);
            if let Some(list) = buckets.get_mut(usize::from(zone)) {
                if !list.contains(&(start, bucket)) {
                    list.push((start, bucket));
                }
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
            // Every packed field becomes a text field here: room for all of them at once, not
            // a rehash of the fields so far at each doubling.
            let dst_bins = if m.metric == MetricType::Dst {
                slot.bins.len()
            } else {
                0
            };
            // Packed fields are distinct, so while the slot holds no text field (a field whose
            // ids did not fit) each is added without a lookup.
            let fresh = slot.ops.is_empty() && slot.label_counts.is_empty();
            let reserve = |ops: &mut KeyOps, more: usize| {
                if fresh {
                    ops.reserve_new(more)
                } else {
                    ops.reserve(more)
                }
            };
            reserve(&mut slot.ops, slot.counts.len() + slot.sums.len() + dst_bins);
            if m.metric == MetricType::Adv {
                reserve(&mut slot.label_counts, slot.sums.len());
            }
            let add = |ops: &mut KeyOps, field: &str, n: Number| match (fresh, &*ops) {
                (true, _) => ops.add_new(field, n),
                (false, KeyOps::Scores(_)) => ops.zincr(field, n.as_f64()),
                (false, _) => ops.incr(field, n),
            };
            for (packed, events) in slot.counts.drain() {
                field_text(packed, &mut field);
                add(&mut slot.ops, &field, Number::Int(events as i64));
            }
            let dst = m.metric == MetricType::Dst;
            for (packed, inc) in slot.sums.drain() {
                field_text(packed, &mut field);
                if dst {
                    field.push(FIELD_SEPARATOR);
                    field.push_str(SUM_SUFFIX);
                    add(&mut slot.ops, &field, Number::Float(inc.sum));
                } else {
                    add(&mut slot.ops, &field, Number::Float(inc.sum));
                    add(&mut slot.label_counts, &field, Number::Int(inc.events));
                }
            }
            for ((packed, bin), n) in slot.bins.drain() {
                field_text(packed, &mut field);
                field.push(FIELD_SEPARATOR);
                bin.write_suffix(&mut field);
                add(&mut slot.ops, &field, Number::Int(n as i64));
            }
            SpareMaps::keep(&mut spare.counts, slot.counts);
            SpareMaps::keep(&mut spare.sums, slot.sums);
            SpareMaps::keep(&mut spare.bins, slot.bins);
            let b = (bucket, start);
            let mut key_ref = KeyRef {
                metric: m.metric,
                bucket,
                timestamp: start,
                pattern: &m.pattern,
                add_key: m.add_key.as_deref(),
                part: AdvPart::Sums,
            };
            key_ref.write_to(prefix, &mut key);
            if set.0 != number {
                set = (number, key_set_key(prefix, bucket, start));
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
                key_ref.write_to(prefix, &mut key);
                batch.sadd(set, b, &key);
                batch.incr(&key, b, "sum", Number::Float(slot.summary.sum));
                batch.incr(&key, b, "count", Number::Int(slot.summary.events));
            }
            if m.metric == MetricType::Adv {
                key_ref.part = AdvPart::Counts;
                key_ref.write_to(prefix, &mut key);
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
        for (zone, list) in buckets.into_iter().enumerate() {
            let zone = u8::try_from(zone).unwrap_or(u8::MAX);
            register_buckets(&mut batch, g.prefix_of(zone), list);
        }
        (batch, spare)
    }
}

/// The text of a value span in the event's value buffer.
fn span_text(values: &str, span: Option<(u32, u32)>) -> &str {
    span.and_then(|(from, to)| values.get(from as usize..to as usize))
        .unwrap_or("")
}
