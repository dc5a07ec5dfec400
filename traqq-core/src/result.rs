//! Query results (the traqq 0.2 shapes), `find`, and type-aware merging.
//!
//! Merging adds `add`, `adv` and `top` per field. `bmp` never sums daily uniques: a merged
//! unique count is the union count computed by the storage over all the buckets' sketches.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bucket::BucketKind;
use crate::distribution::Quantiles;
use crate::key::{AdvPart, MetricType};
use crate::pattern::Pattern;
use crate::read::sort_ranked;
use crate::sketch::CountError;
use crate::{Error, Result};

/// The value of one metric in one bucket (or merged over several).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetricData {
    /// `bmp`: estimated distinct values.
    Count(u64),
    /// `add`: counter per value; `adv` `:c`: number of summed events per label.
    Hash(BTreeMap<String, i64>),
    /// `adv`: float sum per label.
    FloatHash(BTreeMap<String, f64>),
    /// `adv` summary (`:i`): total and number of summed events.
    Summary {
        /// Sum of all amounts.
        sum: f64,
        /// Number of events summed.
        count: i64,
    },
    /// `top`: members by score, descending, ties by member name.
    Ranked(Vec<(String, f64)>),
    /// `dst`: the distribution of each label (count, sum, min, max and quantiles).
    Quantiles(BTreeMap<String, Quantiles>),
}

impl MetricData {
    /// Adds `other` into `self` (per field for hashes and leaderboards).
    ///
    /// `Count` cannot be merged from counts alone (uniques do not add up); merging two counts
    /// is an error, and callers use the storage's union count instead.
    pub fn merge(&mut self, other: &MetricData) -> Result<()> {
        match (self, other) {
            (MetricData::Hash(a), MetricData::Hash(b)) => {
                for (k, v) in b {
                    *a.entry(k.clone()).or_insert(0) += v;
                }
            }
            (MetricData::FloatHash(a), MetricData::FloatHash(b)) => {
                for (k, v) in b {
                    *a.entry(k.clone()).or_insert(0.0) += v;
                }
            }
            (MetricData::Summary { sum, count }, MetricData::Summary { sum: s2, count: c2 }) => {
                *sum += s2;
                *count += c2;
            }
            (MetricData::Ranked(a), MetricData::Ranked(b)) => {
                let mut scores: BTreeMap<String, f64> = a.drain(..).collect();
                for (m, s) in b {
                    *scores.entry(m.clone()).or_insert(0.0) += s;
                }
                a.extend(scores);
                sort_ranked(a);
            }
            (MetricData::Quantiles(a), MetricData::Quantiles(b)) => {
                for (label, q) in b {
                    match a.get_mut(label) {
                        Some(mine) => mine.merge(q)?,
                        None => {
                            a.insert(label.clone(), q.clone());
                        }
                    }
                }
            }
            (MetricData::Count(_), MetricData::Count(_)) => {
                return Err(Error::Query(
                    "unique counts merge by sketch union, not by adding counts".into(),
                ))
            }
            (a, b) => {
                return Err(Error::Query(format!(
                    "cannot merge {} with {}",
                    a.variant_name(),
                    b.variant_name()
                )))
            }
        }
        Ok(())
    }

    fn variant_name(&self) -> &'static str {
        match self {
            MetricData::Count(_) => "Count",
            MetricData::Hash(_) => "Hash",
            MetricData::FloatHash(_) => "FloatHash",
            MetricData::Summary { .. } => "Summary",
            MetricData::Ranked(_) => "Ranked",
            MetricData::Quantiles(_) => "Quantiles",
        }
    }

    /// Reports the quantiles `qs` of every label of a `dst` result (others are left alone).
    pub fn set_quantiles(&mut self, qs: &[f64]) -> Result<()> {
        if let MetricData::Quantiles(labels) = self {
            labels.values_mut().try_for_each(|q| q.set_quantiles(qs))?;
        }
        Ok(())
    }
}

/// One metric of one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    /// `bmp`, `add`, `adv`, `top` or `dst`.
    pub metric_type: MetricType,
    /// The pattern's parts, sorted (`["event", "geo"]`).
    pub key: Vec<String>,
    /// The storage key the data came from (for merged results: the timestamp part is
    /// `first-last`).
    pub location: String,
    /// For `adv`: the summed property; for `dst`: the distributed one.
    pub add_key: Option<String>,
    /// The data.
    pub result: MetricData,
    /// For a `bmp` count: its HyperLogLog error bars (a field beside `result`, so clients that
    /// read `result.Count` are unaffected); `None` for other types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CountError>,
}

impl MetricResult {
    /// A result of `result`, with error bars when it is a count.
    pub fn new(
        metric_type: MetricType,
        key: Vec<String>,
        location: String,
        add_key: Option<String>,
        result: MetricData,
    ) -> Self {
        let error = match result {
            MetricData::Count(n) => Some(CountError::of(n)),
            _ => None,
        };
        MetricResult {
            metric_type,
            key,
            location,
            add_key,
            result,
            error,
        }
    }

    /// The pattern text, parts joined with `~`.
    pub fn pattern(&self) -> String {
        self.key.join("~")
    }

    /// True for an `adv` `:i` summary.
    pub fn is_summary(&self) -> bool {
        matches!(self.result, MetricData::Summary { .. })
    }

    /// For `adv`: which of its keys this came from, told by the data's shape (per-label sums
    /// are floats, per-label counts integers); for `dst`: the distributions or the summary;
    /// [`AdvPart::Sums`] for other types.
    pub fn adv_part(&self) -> AdvPart {
        match (self.metric_type, &self.result) {
            (MetricType::Adv | MetricType::Dst, MetricData::Summary { .. }) => AdvPart::Summary,
            (MetricType::Adv, MetricData::Hash(_)) => AdvPart::Counts,
            _ => AdvPart::Sums,
        }
    }

    /// The `metric_type` that [`FindOptions`] selects this metric by: `bmp`, `add`, `top`,
    /// `adv`, `adv:i`, `adv:c`, `dst` or `dst:i`.
    pub fn find_type(&self) -> &'static str {
        match (self.metric_type, self.adv_part()) {
            (m, AdvPart::Sums) => m.as_str(),
            (MetricType::Dst, _) => "dst:i",
            (_, AdvPart::Summary) => "adv:i",
            (_, AdvPart::Counts) => "adv:c",
        }
    }

    fn group(&self) -> (MetricType, Vec<String>, Option<String>, AdvPart) {
        (
            self.metric_type,
            self.key.clone(),
            self.add_key.clone(),
            self.adv_part(),
        )
    }
}

/// A query's buckets and its totals over the range (the reply to a query with `totals`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryTotals {
    /// One entry per bucket.
    pub days: Vec<DayResult>,
    /// Every metric merged over the range ([`QueryResult::totals`]).
    pub totals: Vec<MetricResult>,
}

/// All metrics of one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayResult {
    /// `2026-11-28` (hourly buckets: `2026-11-28T13:00:00-05:00`), in the configured zone.
    pub date: String,
    /// Bucket start, unix seconds.
    pub timestamp: i64,
    /// Metrics in a stable order: type, pattern, add_key, then (`adv`) sums, summary, counts.
    pub results: Vec<MetricResult>,
}

/// What `find` selects.
///
/// `metric_type` is `bmp`, `add`, `top`, `adv` (the per-label sums), `adv:i` (the
/// `sum`/`count` summary) or `adv:c` (the per-label counts; sum / count is a label's
/// average). The `adv` kinds share a pattern, so the choice is spelled out instead of
/// depending on which came first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FindOptions {
    /// Metric type (see above).
    pub metric_type: String,
    /// Pattern, order-insensitive (`geo~event` finds `event~geo`).
    pub key: String,
    /// For `adv`: only this summed property; `None` matches any.
    pub add_key: Option<String>,
    /// Fold all buckets into one result per metric.
    pub merge: bool,
}

impl FindOptions {
    /// Checks what can be checked without data: the metric type is one `find` knows.
    pub fn validate(&self) -> Result<()> {
        Selector::new(self).map(drop)
    }
}

/// The result of a query: one [`DayResult`] per bucket in the range, oldest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QueryResult {
    /// One entry per bucket, including empty ones.
    pub days: Vec<DayResult>,
    /// Bucket granularity of `days`.
    #[serde(default)]
    pub bucket: BucketKind,
    /// Union counts over the whole range per `bmp` metric, keyed by pattern; what merged
    /// `bmp` results report.
    #[serde(default)]
    pub unions: BTreeMap<String, u64>,
    /// Exact leaderboards over the whole range per `top` metric (the storage's union of the
    /// buckets' sorted sets), keyed by pattern; what merged `top` results report.
    #[serde(default)]
    pub top_unions: BTreeMap<String, Vec<(String, f64)>>,
    /// Leaderboard length applied to merged `top` results.
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    250
}

struct Selector {
    metric: MetricType,
    part: AdvPart,
    pattern: String,
    add_key: Option<String>,
}

impl Selector {
    fn new(opts: &FindOptions) -> Result<Self> {
        let (metric, part) = match opts.metric_type.as_str() {
            "adv:i" | "adv_i" => (MetricType::Adv, AdvPart::Summary),
            "adv:c" | "adv_c" => (MetricType::Adv, AdvPart::Counts),
            "dst:i" | "dst_i" => (MetricType::Dst, AdvPart::Summary),
            other => (
                other.parse::<MetricType>().map_err(|_| {
                    Error::Query(format!(
                        "unknown metric type {other:?} (expected bmp, add, adv, adv:i, adv:c, top, dst or dst:i)"
                    ))
                })?,
                AdvPart::Sums,
            ),
        };
        Ok(Selector {
            metric,
            part,
            pattern: Pattern::normalize(&opts.key),
            add_key: opts.add_key.clone(),
        })
    }

    fn matches(&self, r: &MetricResult) -> bool {
        r.metric_type == self.metric
            && r.adv_part() == self.part
            && r.pattern() == self.pattern
            && (self.add_key.is_none() || self.add_key == r.add_key)
    }
}

impl QueryResult {
    /// Reports the quantiles `qs` (checked: each in `[0, 1]`, at most
    /// [`MAX_QUANTILES`](crate::distribution::MAX_QUANTILES)) for every `dst` result, instead
    /// of the default p50, p90, p95, p99.
    pub fn set_quantiles(&mut self, qs: &[f64]) -> Result<()> {
        crate::distribution::check_quantiles(qs)?;
        self.days
            .iter_mut()
            .flat_map(|d| d.results.iter_mut())
            .try_for_each(|r| r.result.set_quantiles(qs))
    }

    /// The metrics matching `opts`, per bucket in order, or merged into one per metric.
    /// An unknown metric type selects nothing (use [`QueryResult::try_find`] to see why).
    pub fn find(&self, opts: FindOptions) -> Vec<MetricResult> {
        self.try_find(&opts).unwrap_or_default()
    }

    /// Like [`QueryResult::find`], but an unknown metric type is an error.
    pub fn try_find(&self, opts: &FindOptions) -> Result<Vec<MetricResult>> {
        let sel = Selector::new(opts)?;
        let hits = self
            .days
            .iter()
            .flat_map(|d| d.results.iter())
            .filter(|r| sel.matches(r));
        if !opts.merge {
            return Ok(hits.cloned().collect());
        }
        let mut groups: BTreeMap<_, Vec<&MetricResult>> = BTreeMap::new();
        for r in hits {
            groups.entry(r.group()).or_default().push(r);
        }
        groups.into_values().map(|g| self.merge_group(&g)).collect()
    }

    /// Every metric merged over the whole range, one result per metric (unique counts are
    /// the unions, never sums): the range's totals.
    pub fn totals(&self) -> Result<Vec<MetricResult>> {
        let mut groups: BTreeMap<_, Vec<&MetricResult>> = BTreeMap::new();
        for r in self.days.iter().flat_map(|d| d.results.iter()) {
            groups.entry(r.group()).or_default().push(r);
        }
        groups.into_values().map(|g| self.merge_group(&g)).collect()
    }

    /// `find` from a path: `TYPE/PATTERN[/ADD_KEY]`, merged over all buckets,
    /// e.g. `"top/geo"`, `"adv/event~geo/amount"`, `"adv:i/event~geo/amount"`,
    /// `"adv:c/event~geo/amount"`.
    pub fn find_str(&self, path: &str) -> Vec<MetricResult> {
        match parse_find_path(path) {
            Ok(opts) => self.find(opts),
            Err(_) => Vec::new(),
        }
    }

    fn merge_group(&self, group: &[&MetricResult]) -> Result<MetricResult> {
        let (first, last) = match (group.first(), group.last()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => return Err(Error::Query("empty merge group".into())),
        };
        let mut merged = first.clone();
        merged.location = merged_location(first, last);
        if let MetricData::Count(c) = first.result {
            let union = if group.len() == 1 {
                Some(c)
            } else {
                self.unions.get(&first.pattern()).copied()
            };
            let union = union.ok_or_else(|| {
                Error::Query(format!(
                    "no union count for bmp/{} in this result (it was not produced by a query)",
                    first.pattern()
                ))
            })?;
            merged.result = MetricData::Count(union);
            merged.error = Some(CountError::of(union));
            return Ok(merged);
        }
        if let (MetricData::Ranked(list), true) = (&mut merged.result, group.len() > 1) {
            if let Some(exact) = self.top_unions.get(&first.pattern()) {
                // The union read ranks every member of every bucket, not only each bucket's top.
                list.clone_from(exact);
                list.truncate(self.limit);
                return Ok(merged);
            }
        }
        for r in &group[1..] {
            merged.result.merge(&r.result)?;
        }
        if let MetricData::Ranked(list) = &mut merged.result {
            list.truncate(self.limit);
        }
        Ok(merged)
    }
}

/// Parses `TYPE/PATTERN[/ADD_KEY]` into merged [`FindOptions`].
pub fn parse_find_path(path: &str) -> Result<FindOptions> {
    let mut it = path.split('/');
    let (Some(metric_type), Some(key)) = (it.next(), it.next()) else {
        return Err(Error::Query(format!(
            "find path {path:?} is not TYPE/PATTERN[/ADD_KEY]"
        )));
    };
    let add_key = it.next().map(str::to_owned);
    if it.next().is_some() || key.is_empty() {
        return Err(Error::Query(format!(
            "find path {path:?} is not TYPE/PATTERN[/ADD_KEY]"
        )));
    }
    let opts = FindOptions {
        metric_type: metric_type.to_owned(),
        key: key.to_owned(),
        add_key,
        merge: true,
    };
    Selector::new(&opts)?;
    Ok(opts)
}

pub(crate) fn merged_location(first: &MetricResult, last: &MetricResult) -> String {
    location_range(&first.location, &last.location)
}

/// The location of a metric merged from the keys `first` to `last`: the timestamp part is
/// `first-last` (`prefix:type:bucket:FIRST-LAST:rest`).
pub(crate) fn location_range(first: &str, last: &str) -> String {
    if first == last {
        return first.to_owned();
    }
    let ts_of = |loc: &str| loc.split(':').nth(3).map(str::to_owned);
    match (ts_of(first), ts_of(last)) {
        (Some(a), Some(b)) => first.replacen(&format!(":{a}:"), &format!(":{a}-{b}:"), 1),
        _ => first.to_owned(),
    }
}
