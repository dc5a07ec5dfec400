//! Query planning: which reads answer a query, and how their answers become a [`QueryResult`].
//!
//! A query takes two rounds of reads: first the key sets of the buckets in the range, then the
//! data of the keys they list (plus one union count per `bmp` metric over the whole range).
//! The engine only carries reads to the storage and answers back.

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::batch::Number;
use crate::bucket::{BucketKind, Calendar};
use crate::config::QueryConfig;
use crate::distribution::{check_quantiles, sketches_from_fields, Quantiles, DEFAULT_QUANTILES};
use crate::key::{key_set_key, AdvPart, MetricKey, MetricType};
use crate::read::{Read, ReadResult};
use crate::result::{location_range, DayResult, MetricData, MetricResult, QueryResult};
use crate::{Error, Result};

/// What to query.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryOptions {
    /// Any instant in the first bucket (unix seconds).
    pub min: i64,
    /// Any instant in the last bucket (unix seconds).
    pub max: i64,
    /// Daily or hourly buckets.
    pub bucket: BucketKind,
    /// Leaderboard length (default `query.default_top_limit`).
    pub limit: Option<usize>,
    /// Only metrics whose `type:pattern` matches one of these globs (empty: all).
    pub accept: Vec<String>,
    /// Drop metrics whose `type:pattern` matches one of these globs.
    pub ignore: Vec<String>,
    /// The quantiles `dst` results report (each in `[0, 1]`); `None`: p50, p90, p95, p99.
    pub quantiles: Option<Vec<f64>>,
}

/// A query range: explicit instants, or today and `n` days back by the engine's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryRange {
    /// `min` / `max`, unix seconds (any instants in the first and last bucket).
    MinMax(i64, i64),
    /// Today and `n` previous calendar days.
    Days(u32),
}

/// `accept`/`ignore` globs over `type:pattern` (e.g. `top:*~*`), from trk2.
#[derive(Debug, Clone)]
pub struct KeyFilter {
    accept: Option<GlobSet>,
    ignore: Option<GlobSet>,
}

/// Most globs one `accept` or `ignore` list may hold: compiling them is the cost of a query
/// before any data is read (20,000 globs took 1.3 s and 240 MB), and a mapping has far fewer
/// metrics than this to tell apart.
pub const MAX_FILTER_GLOBS: usize = 64;
/// Longest glob accepted, in bytes (a `type:pattern` name is shorter).
pub const MAX_GLOB_LENGTH: usize = 512;

impl KeyFilter {
    /// Compiles the globs; an invalid glob, or more than [`MAX_FILTER_GLOBS`] of them, or one
    /// longer than [`MAX_GLOB_LENGTH`], is an error naming it.
    pub fn new(accept: &[String], ignore: &[String]) -> Result<Self> {
        fn build(list: &[String], what: &str) -> Result<Option<GlobSet>> {
            if list.is_empty() {
                return Ok(None);
            }
            if list.len() > MAX_FILTER_GLOBS {
                return Err(Error::Query(format!(
                    "{} {what} globs, more than the {MAX_FILTER_GLOBS} allowed",
                    list.len()
                )));
            }
            if let Some(g) = list.iter().find(|g| g.len() > MAX_GLOB_LENGTH) {
                return Err(Error::Query(format!(
                    "{what} glob of {} bytes, longer than the {MAX_GLOB_LENGTH} allowed",
                    g.len()
                )));
            }
            let mut b = GlobSetBuilder::new();
            for g in list {
                b.add(Glob::new(g).map_err(|e| Error::Query(format!("invalid {what} glob {g:?}: {e}")))?);
            }
            b.build()
                .map(Some)
                .map_err(|e| Error::Query(format!("invalid {what} globs: {e}")))
        }
        Ok(KeyFilter {
            accept: build(accept, "accept")?,
            ignore: build(ignore, "ignore")?,
        })
    }

    /// True when a metric named `type:pattern` passes both lists.
    pub fn allows(&self, name: &str) -> bool {
        self.accept.as_ref().is_none_or(|a| a.is_match(name))
            && !self.ignore.as_ref().is_some_and(|i| i.is_match(name))
    }
}

/// What one data read is for.
#[derive(Debug, Clone)]
enum Slot {
    Metric {
        span: usize,
        key: MetricKey,
        location: String,
    },
    Union {
        pattern: String,
    },
    TopUnion {
        pattern: String,
    },
}

/// One bucket of a result: the stored buckets starting in `[start, end)`, reported as `label`.
/// A plain query has one span per stored bucket; a day of another time zone spans the hours
/// (or quarter hours) inside it, and a week or a month its days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// First instant.
    pub start: i64,
    /// First instant after it.
    pub end: i64,
    /// The date reported for it (`2026-11-28`).
    pub label: String,
}

/// A query in progress. See the module docs for the two rounds.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    prefix: String,
    kind: BucketKind,
    buckets: Vec<i64>,
    spans: Vec<Span>,
    /// Coarser stored buckets read instead of the fine ones inside them for the whole-range
    /// unions: their kind and `(start, end)`s.
    cover: Option<(BucketKind, Vec<(i64, i64)>)>,
    /// Buckets of another source read after `buckets`, all later than them: another prefix's
    /// buckets of a kind (an extra zone's stored days, from the day they are complete on).
    tail: Option<(String, BucketKind, Vec<i64>)>,
    limit: usize,
    filter: KeyFilter,
    quantiles: Vec<f64>,
    slots: Vec<Slot>,
}

/// A metric of one span, whatever bucket it was stored in.
type SpanMetric = (usize, MetricType, String, Option<String>, AdvPart);

impl QueryPlan {
    /// Plans a query of `opts` over keys under `prefix`: one result bucket per stored bucket.
    pub fn new(prefix: &str, calendar: Calendar, config: &QueryConfig, opts: &QueryOptions) -> Result<Self> {
        let buckets = calendar.buckets(opts.bucket, opts.min, opts.max, config.max_buckets)?;
        let spans = buckets
            .iter()
            .map(|&ts| Span {
                start: ts,
                end: calendar.next_bucket_start(opts.bucket, ts),
                label: calendar.label(opts.bucket, ts),
            })
            .collect();
        Self::spanning(prefix, calendar, config, opts, spans)
    }

    /// Plans a query of the stored `opts.bucket` buckets from `opts.min` to `opts.max`, each
    /// result bucket one of `spans` (in order, not overlapping): what adds up is added by the
    /// store ([`Read::Sum`]), unique counts and leaderboards are the store's unions of the
    /// span's keys ([`Read::Count`], [`Read::Top`]). Stored buckets outside every span are not
    /// read.
    pub fn spanning(
        prefix: &str,
        calendar: Calendar,
        config: &QueryConfig,
        opts: &QueryOptions,
        spans: Vec<Span>,
    ) -> Result<Self> {
        let limit = opts.limit.unwrap_or(config.default_top_limit);
        if limit == 0 {
            return Err(Error::Query("limit must be at least 1".into()));
        }
        let quantiles = match &opts.quantiles {
            Some(qs) => {
                check_quantiles(qs)?;
                qs.clone()
            }
            None => DEFAULT_QUANTILES.to_vec(),
        };
        Ok(QueryPlan {
            prefix: prefix.to_owned(),
            kind: opts.bucket,
            buckets: calendar.buckets(opts.bucket, opts.min, opts.max, config.max_buckets)?,
            spans,
            cover: None,
            tail: None,
            limit,
            filter: KeyFilter::new(&opts.accept, &opts.ignore)?,
            quantiles,
            slots: Vec::new(),
        })
    }

    /// Lets the whole-range unique counts and leaderboards read the stored buckets of a coarser
    /// `kind` (the store's days under another zone's hours) given by their `(start, end)`:
    /// each holds every event of the fine buckets inside it, so one coarse key stands for up to
    /// 24 fine ones. Only buckets lying wholly inside the range belong here.
    pub fn with_cover(mut self, kind: BucketKind, buckets: Vec<(i64, i64)>) -> Self {
        self.cover = (!buckets.is_empty()).then_some((kind, buckets));
        self
    }

    /// Reads the `kind` buckets of `prefix` starting at `buckets` (oldest first) instead of the
    /// plan's own from the first of them on: a range whose later days are stored as they are
    /// (an extra zone's days) and whose earlier ones are assembled. Whole-range unions may take
    /// a [`QueryPlan::with_cover`] only before the first of them.
    pub fn with_tail(mut self, prefix: &str, kind: BucketKind, buckets: Vec<i64>) -> Self {
        if let Some(&from) = buckets.first() {
            self.buckets.retain(|&ts| ts < from);
            self.tail = Some((prefix.to_owned(), kind, buckets));
        }
        self
    }

    /// Stored bucket starts covered, oldest first.
    pub fn buckets(&self) -> &[i64] {
        &self.buckets
    }

    /// Every bucket read, oldest first: its prefix, kind and start.
    fn stored(&self) -> impl Iterator<Item = (&str, BucketKind, i64)> {
        let own = self
            .buckets
            .iter()
            .map(|&ts| (self.prefix.as_str(), self.kind, ts));
        let tail = self
            .tail
            .iter()
            .flat_map(|(prefix, kind, buckets)| buckets.iter().map(move |&ts| (prefix.as_str(), *kind, ts)));
        own.chain(tail)
    }

    /// Round one: the key set of every bucket (and of every covering one).
    pub fn key_set_reads(&self) -> Vec<Read> {
        let cover = self.cover.iter().flat_map(|(kind, buckets)| {
            buckets
                .iter()
                .map(move |&(start, _)| (self.prefix.as_str(), *kind, start))
        });
        self.stored()
            .chain(cover)
            .map(|(prefix, kind, ts)| Read::Members(key_set_key(prefix, kind, ts)))
            .collect()
    }

    /// Decodes a listed key of bucket `(kind, ts)` under `prefix`, or `None` for a key this
    /// query skips.
    fn accept(&self, location: &str, (prefix, kind, ts): (&str, BucketKind, i64)) -> Option<MetricKey> {
        // Keys from other prefixes or older formats are skipped, not fatal.
        let key = MetricKey::decode(prefix, location).ok()?;
        (key.bucket == kind && key.timestamp == ts && self.filter.allows(&key.filter_name())).then_some(key)
    }

    /// The span holding each stored bucket (`None` outside every span).
    fn span_of_buckets(&self) -> Vec<Option<usize>> {
        let mut s = 0;
        self.stored()
            .map(|(_, _, ts)| {
                while self.spans.get(s).is_some_and(|span| span.end <= ts) {
                    s += 1;
                }
                self.spans.get(s).filter(|span| span.start <= ts).map(|_| s)
            })
            .collect()
    }

    /// Round two: reads for every listed key that passes the filters, given round one's answers.
    pub fn data_reads(&mut self, key_sets: Vec<ReadResult>) -> Result<Vec<Read>> {
        let cover = self.cover.take().unwrap_or((self.kind, Vec::new()));
        let stored: Vec<(&str, BucketKind, i64)> = self.stored().collect();
        check_len(key_sets.len(), stored.len() + cover.1.len())?;
        let span_of = self.span_of_buckets();
        let covered = |ts: i64| cover.1.iter().any(|&(start, end)| (start..end).contains(&ts));
        // Per span and metric: the key of its first bucket and every location, oldest first.
        let mut metrics: BTreeMap<SpanMetric, (MetricKey, Vec<String>)> = BTreeMap::new();
        // Per bmp and top pattern: the covering keys the whole-range union reads.
        let mut covering: BTreeMap<(MetricType, String), Vec<String>> = BTreeMap::new();
        let mut key_sets = key_sets.into_iter();
        // Round one answered in order: the stored buckets' sets, then the covering ones'.
        let mut members_of = || match key_sets.next() {
            Some(ReadResult::Members(members)) => Ok(members),
            Some(other) => Err(mismatch("members", &other)),
            None => Ok(Vec::new()),
        };
        for (&bucket, span) in stored.iter().zip(span_of) {
            let members = members_of()?;
            let Some(span) = span else {
                continue;
            };
            for location in members {
                let Some(key) = self.accept(&location, bucket) else {
                    continue;
                };
                let id = (
                    span,
                    key.metric,
                    key.pattern.clone(),
                    key.add_key.clone(),
                    key.part,
                );
                metrics
                    .entry(id)
                    .or_insert_with(|| (key, Vec::new()))
                    .1
                    .push(location);
            }
        }
        for &(start, _) in &cover.1 {
            for location in members_of()? {
                if let Some(key) = self.accept(&location, (&self.prefix, cover.0, start)) {
                    if matches!(key.metric, MetricType::Bmp | MetricType::Top) {
                        covering
                            .entry((key.metric, key.pattern))
                            .or_default()
                            .push(location);
                    }
                }
            }
        }
        let mut reads = Vec::with_capacity(metrics.len());
        let mut slots = Vec::with_capacity(metrics.len());
        // Per bmp and top pattern: every location, and how many spans hold it.
        let mut bmp_keys: BTreeMap<String, (Vec<String>, usize)> = BTreeMap::new();
        let mut top_keys: BTreeMap<String, (Vec<String>, usize)> = BTreeMap::new();
        for ((span, ..), (key, locations)) in metrics {
            let location = match (locations.first(), locations.last()) {
                (Some(first), Some(last)) if locations.len() > 1 => location_range(first, last),
                _ => locations.first().cloned().unwrap_or_default(),
            };
            let whole_range = |all: &mut BTreeMap<String, (Vec<String>, usize)>| {
                let (keys, spans) = all.entry(key.pattern.clone()).or_default();
                let outside = locations
                    .iter()
                    .filter(|loc| !MetricKey::decode(&self.prefix, loc).is_ok_and(|k| covered(k.timestamp)));
                keys.extend(outside.cloned());
                *spans += 1;
            };
            reads.push(match key.metric {
                MetricType::Bmp => {
                    whole_range(&mut bmp_keys);
                    Read::Count(locations)
                }
                MetricType::Add | MetricType::Adv | MetricType::Dst if locations.len() == 1 => {
                    Read::Hash(location.clone())
                }
                MetricType::Add | MetricType::Adv | MetricType::Dst => Read::Sum(locations),
                MetricType::Top => {
                    whole_range(&mut top_keys);
                    Read::Top {
                        keys: locations,
                        limit: self.limit,
                    }
                }
            });
            slots.push(Slot::Metric { span, key, location });
        }
        // A pattern held by one span only needs no union over the range: its span's read is it.
        let mut with_covering = |metric: MetricType, pattern: &str, keys: &mut Vec<String>| {
            if let Some(more) = covering.remove(&(metric, pattern.to_owned())) {
                keys.extend(more);
            }
        };
        for (pattern, (mut keys, spans)) in bmp_keys {
            if spans > 1 {
                with_covering(MetricType::Bmp, &pattern, &mut keys);
                reads.push(Read::Count(keys));
                slots.push(Slot::Union { pattern });
            }
        }
        for (pattern, (mut keys, spans)) in top_keys {
            if spans > 1 {
                with_covering(MetricType::Top, &pattern, &mut keys);
                reads.push(Read::Top {
                    keys,
                    limit: self.limit,
                });
                slots.push(Slot::TopUnion { pattern });
            }
        }
        self.slots = slots;
        Ok(reads)
    }

    /// Builds the result from round two's answers.
    pub fn assemble(self, answers: Vec<ReadResult>) -> Result<QueryResult> {
        check_len(answers.len(), self.slots.len())?;
        let mut days: Vec<DayResult> = self
            .spans
            .into_iter()
            .map(|span| DayResult {
                date: span.label,
                timestamp: span.start,
                results: Vec::new(),
            })
            .collect();
        let mut unions = BTreeMap::new();
        let mut single_counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut top_unions = BTreeMap::new();
        for (slot, answer) in self.slots.into_iter().zip(answers) {
            match slot {
                Slot::Union { pattern } => {
                    let ReadResult::Count(n) = answer else {
                        return Err(mismatch("count", &answer));
                    };
                    unions.insert(pattern, n);
                }
                Slot::TopUnion { pattern } => {
                    let ReadResult::Top(list) = answer else {
                        return Err(mismatch("top", &answer));
                    };
                    top_unions.insert(pattern, list);
                }
                Slot::Metric { span, key, location } => {
                    let result = to_data(&key, answer, &self.quantiles)?;
                    if let MetricData::Count(n) = result {
                        single_counts.insert(key.pattern.clone(), n);
                    }
                    if let Some(day) = days.get_mut(span) {
                        day.results.push(MetricResult::new(
                            key.metric,
                            key.pattern.split('~').map(str::to_owned).collect(),
                            location,
                            key.add_key,
                            result,
                        ));
                    }
                }
            }
        }
        // A metric present in one span only has no union read: its count is the union.
        for (pattern, n) in single_counts {
            unions.entry(pattern).or_insert(n);
        }
        for day in &mut days {
            day.results.sort_by(|a, b| {
                (a.metric_type, &a.key, &a.add_key, a.adv_part()).cmp(&(
                    b.metric_type,
                    &b.key,
                    &b.add_key,
                    b.adv_part(),
                ))
            });
        }
        Ok(QueryResult {
            days,
            bucket: self.kind,
            unions,
            top_unions,
            limit: self.limit,
        })
    }
}

fn to_data(key: &MetricKey, answer: ReadResult, quantiles: &[f64]) -> Result<MetricData> {
    Ok(match (key.metric, answer) {
        (MetricType::Bmp, ReadResult::Count(n)) => MetricData::Count(n),
        (MetricType::Add, ReadResult::Hash(fields)) => {
            MetricData::Hash(fields.into_iter().map(|(f, n)| (f, n.as_i64())).collect())
        }
        (MetricType::Adv | MetricType::Dst, ReadResult::Hash(fields)) if key.part == AdvPart::Summary => {
            let get = |name: &str| fields.iter().find(|(f, _)| f == name).map(|(_, n)| *n);
            MetricData::Summary {
                sum: get("sum").map_or(0.0, Number::as_f64),
                count: get("count").map_or(0, Number::as_i64),
            }
        }
        (MetricType::Adv, ReadResult::Hash(fields)) if key.part == AdvPart::Counts => {
            MetricData::Hash(fields.into_iter().map(|(f, n)| (f, n.as_i64())).collect())
        }
        (MetricType::Adv, ReadResult::Hash(fields)) => {
            MetricData::FloatHash(fields.into_iter().map(|(f, n)| (f, n.as_f64())).collect())
        }
        (MetricType::Top, ReadResult::Top(list)) => MetricData::Ranked(list),
        (MetricType::Dst, ReadResult::Hash(fields)) => MetricData::Quantiles(
            sketches_from_fields(fields)?
                .into_iter()
                .map(|(label, sketch)| (label, Quantiles::of(sketch, quantiles)))
                .collect(),
        ),
        (_, other) => return Err(mismatch(key.metric.as_str(), &other)),
    })
}

fn check_len(got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Query(format!(
            "storage answered {got} reads, expected {want}"
        )));
    }
    Ok(())
}

fn mismatch(want: &str, got: &ReadResult) -> Error {
    Error::Query(format!(
        "storage answered a {} read where a {want} read was expected",
        got.kind()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_lists_are_capped_one_past_the_limit() {
        let globs = |n: usize| (0..n).map(|i| format!("add:g{i}*")).collect::<Vec<_>>();
        let at = KeyFilter::new(&globs(MAX_FILTER_GLOBS), &[]).unwrap();
        assert!(at.allows("add:g7x"));
        assert!(!at.allows("top:geo"));
        let err = KeyFilter::new(&[], &globs(MAX_FILTER_GLOBS + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("65 ignore globs") && err.contains("64"), "{err}");
        let long = "a".repeat(MAX_GLOB_LENGTH);
        KeyFilter::new(std::slice::from_ref(&long), &[]).unwrap();
        let err = KeyFilter::new(&[format!("{long}a")], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("accept glob of 513 bytes"), "{err}");
    }
}
