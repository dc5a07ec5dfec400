//! Regrouping a query's buckets into coarser spans: the hours of a range into the days of
//! another time zone, or days into weeks and months.
//!
//! Counters, sums, `adv` summaries and per-label counts add up from the finer buckets. Unique
//! counts and leaderboards do not (a union is not a sum, and each bucket keeps only its own top
//! members), so they take one more round of reads: the store's union of the span's keys
//! ([`Read::Count`], [`Read::Top`]), exactly as a whole-range merge does.

use std::collections::BTreeMap;

use crate::key::{AdvPart, MetricType};
use crate::read::{Read, ReadResult};
use crate::result::{merged_location, DayResult, MetricData, MetricResult, QueryResult};
use crate::sketch::CountError;
use crate::{Error, Result};

/// One coarse bucket: the finer buckets starting in `[start, end)`, reported as `label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// First instant.
    pub start: i64,
    /// First instant after it.
    pub end: i64,
    /// The date reported for it (`2026-11-28`).
    pub label: String,
}

/// Which metric of which span a union read is for.
#[derive(Debug, Clone)]
struct UnionSlot {
    span: usize,
    metric: usize,
}

/// A regrouping in progress: the spans' merged metrics, waiting for their union reads.
#[derive(Debug, Clone)]
pub struct Regroup {
    spans: Vec<Span>,
    /// Per span: its metrics merged (bmp and top still holding a finer bucket's value), and how
    /// many finer buckets it holds.
    merged: Vec<(Vec<MetricResult>, usize)>,
    slots: Vec<UnionSlot>,
    limit: usize,
}

impl Regroup {
    /// Plans the regrouping of `fine` into `spans` (in order, not overlapping): merges what adds
    /// up and returns the union reads the rest needs.
    pub fn new(fine: &QueryResult, spans: Vec<Span>) -> Result<(Regroup, Vec<Read>)> {
        let mut merged = Vec::with_capacity(spans.len());
        let mut slots = Vec::new();
        let mut reads = Vec::new();
        for (s, span) in spans.iter().enumerate() {
            let buckets: Vec<&DayResult> = fine
                .days
                .iter()
                .filter(|d| (span.start..span.end).contains(&d.timestamp))
                .collect();
            type Group = (MetricType, Vec<String>, Option<String>, AdvPart);
            let mut groups: BTreeMap<Group, (MetricResult, Vec<String>, String)> = BTreeMap::new();
            for r in buckets.iter().flat_map(|d| d.results.iter()) {
                let key = (r.metric_type, r.key.clone(), r.add_key.clone(), r.adv_part());
                match groups.get_mut(&key) {
                    None => {
                        groups.insert(key, (r.clone(), vec![r.location.clone()], r.location.clone()));
                    }
                    Some((first, locations, last)) => {
                        locations.push(r.location.clone());
                        last.clone_from(&r.location);
                        if !matches!(r.metric_type, MetricType::Bmp | MetricType::Top) {
                            first.result.merge(&r.result)?;
                        }
                    }
                }
            }
            let mut metrics = Vec::with_capacity(groups.len());
            for (_, (mut m, locations, last)) in groups {
                if locations.len() > 1 {
                    let last_bucket = MetricResult {
                        location: last,
                        ..m.clone()
                    };
                    m.location = merged_location(&m, &last_bucket);
                    match m.metric_type {
                        MetricType::Bmp => reads.push(Read::Count(locations)),
                        MetricType::Top => reads.push(Read::Top {
                            keys: locations,
                            limit: fine.limit,
                        }),
                        _ => {}
                    }
                    if matches!(m.metric_type, MetricType::Bmp | MetricType::Top) {
                        slots.push(UnionSlot {
                            span: s,
                            metric: metrics.len(),
                        });
                    }
                }
                metrics.push(m);
            }
            merged.push((metrics, buckets.len()));
        }
        Ok((
            Regroup {
                spans,
                merged,
                slots,
                limit: fine.limit,
            },
            reads,
        ))
    }

    /// The spans planned.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// How many finer buckets each span holds, in order.
    pub fn bucket_counts(&self) -> Vec<usize> {
        self.merged.iter().map(|(_, n)| *n).collect()
    }

    /// One [`DayResult`] per span, given the answers to the reads [`Regroup::new`] returned.
    pub fn assemble(mut self, answers: Vec<ReadResult>) -> Result<Vec<DayResult>> {
        if answers.len() != self.slots.len() {
            return Err(Error::Query(format!(
                "{} union reads answered, {} expected",
                answers.len(),
                self.slots.len()
            )));
        }
        for (slot, answer) in self.slots.iter().zip(answers) {
            let Some(m) = self
                .merged
                .get_mut(slot.span)
                .and_then(|(metrics, _)| metrics.get_mut(slot.metric))
            else {
                continue;
            };
            match answer {
                ReadResult::Count(n) => {
                    m.result = MetricData::Count(n);
                    m.error = Some(CountError::of(n));
                }
                ReadResult::Top(mut list) => {
                    list.truncate(self.limit);
                    m.result = MetricData::Ranked(list);
                }
                other => {
                    return Err(Error::Query(format!(
                        "a union read was answered with a {} result",
                        other.kind()
                    )))
                }
            }
        }
        Ok(self
            .spans
            .into_iter()
            .zip(self.merged)
            .map(|(span, (results, _))| DayResult {
                date: span.label,
                timestamp: span.start,
                results,
            })
            .collect())
    }
}
