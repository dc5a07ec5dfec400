//! Query-time calendars: the days of another time zone assembled from stored hours (or
//! quarter hours), and weeks and months, as spans of a query plan
//! ([`traqq_core::plan::QueryPlan::spanning`]).

use traqq_core::bucket::{BucketKind, Calendar, Tz};
use traqq_core::group::{group_days, Group, GroupResult};
use traqq_core::plan::{QueryOptions, QueryPlan, QueryRange, Span};
use traqq_core::result::QueryResult;

use super::Traqq;
use crate::{Error, Result};

impl Traqq {
    /// [`Traqq::query_range`] grouped into weeks or months of the configured zone (see
    /// [`traqq_core::group`]): one result per group, each holding every metric merged over the
    /// group's days in the range (unique counts and leaderboards as the store's unions). Needs
    /// daily buckets. One query of the days, then one round of union reads.
    pub fn query_groups(
        &self,
        range: QueryRange,
        opts: QueryOptions,
        group: Group,
    ) -> Result<Vec<GroupResult>> {
        self.query_groups_in(range, opts, group, None)
    }

    /// [`Traqq::query_groups`] with the weeks or months of `zone` (see [`Traqq::query_in_zone`]).
    pub fn query_groups_in(
        &self,
        range: QueryRange,
        opts: QueryOptions,
        group: Group,
        zone: Option<Tz>,
    ) -> Result<Vec<GroupResult>> {
        if opts.bucket != BucketKind::Day {
            return Err(traqq_core::Error::Query(format!(
                "group = {:?} merges days: it needs daily buckets (bucket = \"d\")",
                group.as_str()
            ))
            .into());
        }
        let calendar = zone.map_or(*self.generator.calendar(), Calendar::new);
        let days = self.days_in(range, &calendar)?;
        let groups = group_days(&calendar, group, &days);
        let spans = groups
            .iter()
            .map(|&(first, last)| Span {
                start: first,
                end: calendar.next_bucket_start(BucketKind::Day, last),
                label: calendar.label(BucketKind::Day, first),
            })
            .collect();
        let merged = self.query_spans(&calendar, &days, opts, spans)?;
        Ok(merged
            .days
            .into_iter()
            .zip(groups)
            .map(|(day, (first, last))| GroupResult {
                group,
                date: day.date,
                last_date: calendar.label(BucketKind::Day, last),
                timestamp: day.timestamp,
                days: days.iter().filter(|&&d| (first..=last).contains(&d)).count(),
                results: day.results,
            })
            .collect())
    }

    /// A query whose days are the calendar days of `zone` rather than the store's
    /// (`time.timezone`). When `zone` is one of `time.extra_zones`, its stored days are read as
    /// they are from the first day they are complete on. Other days are each assembled from the
    /// stored hour buckets inside them (23, 24 or 25), counters and sums added, unique counts
    /// and leaderboards as the store's unions of those hours: that needs `time.store_hourly`,
    /// and `zone` whole hours apart from the store's zone at every day boundary they have;
    /// hours deleted by `retention.hourly_days` are an error naming the dates. With `bucket = "h"` the hours are labelled in `zone`. A `Days`
    /// range counts days back from today in `zone`.
    pub fn query_in_zone(&self, range: QueryRange, opts: QueryOptions, zone: Tz) -> Result<QueryResult> {
        let calendar = Calendar::new(zone);
        if zone == self.generator.calendar().zone() {
            return self.query_range(range, opts);
        }
        if opts.bucket == BucketKind::Hour {
            let (min, max) = self.resolve_in(range, &calendar)?;
            let mut result = self.query_with(&QueryOptions { min, max, ..opts })?;
            for hour in &mut result.days {
                hour.date = calendar.label(BucketKind::Hour, hour.timestamp);
            }
            return Ok(result);
        }
        let days = self.days_in(range, &calendar)?;
        let spans = days
            .iter()
            .map(|&start| Span {
                start,
                end: calendar.next_bucket_start(BucketKind::Day, start),
                label: calendar.label(BucketKind::Day, start),
            })
            .collect();
        let result = self.query_spans(&calendar, &days, opts, spans)?;
        Ok(QueryResult {
            bucket: BucketKind::Day,
            ..result
        })
    }

    /// The day starts of `range` in `calendar`.
    fn days_in(&self, range: QueryRange, calendar: &Calendar) -> Result<Vec<i64>> {
        let (min, max) = self.resolve_in(range, calendar)?;
        Ok(calendar.buckets(BucketKind::Day, min, max, self.config.query.max_buckets)?)
    }

    /// The metrics of `spans` (covering the days `days` of `calendar`), read from the stored
    /// days in the store's own zone or a complete extra zone, else from the stored hours (or
    /// quarter hours) inside them.
    fn query_spans(
        &self,
        calendar: &Calendar,
        days: &[i64],
        opts: QueryOptions,
        spans: Vec<Span>,
    ) -> Result<QueryResult> {
        let own = *self.generator.calendar();
        let (Some(&first), Some(&last)) = (days.first(), days.last()) else {
            return Ok(QueryResult {
                bucket: BucketKind::Day,
                limit: opts.limit.unwrap_or(self.config.query.default_top_limit),
                ..QueryResult::default()
            });
        };
        let end = calendar.next_bucket_start(BucketKind::Day, last);
        // Where the days come from: the store's own days; an extra zone's stored days
        // (`time.extra_zones`) from the day they are complete on; else (and before that day) the
        // hours inside them.
        let stored = match calendar.zone() == own.zone() {
            true => Some((self.prefix(), first)),
            false => self.stored_zone_days(calendar.zone())?,
        };
        let plan = |prefix: &str, store_calendar: Calendar, bucket: BucketKind, spans: Vec<Span>| {
            let opts = QueryOptions {
                min: first,
                max: end - 1,
                bucket,
                ..opts.clone()
            };
            QueryPlan::spanning(prefix, store_calendar, &self.config.query, &opts, spans)
        };
        let plan = match stored {
            // The stored days are the calendar's own (the store's, or the extra zone's).
            Some((prefix, since)) if since <= first => plan(prefix, *calendar, BucketKind::Day, spans)?,
            Some((prefix, since)) if since < end => {
                // Hours before the first complete stored day, stored days from it on.
                let before: Vec<i64> = days.iter().copied().filter(|&d| d < since).collect();
                let fine = self.fine_buckets(calendar, &before, since)?;
                let stored_days =
                    calendar.buckets(BucketKind::Day, since, end - 1, self.config.query.max_buckets)?;
                plan(self.prefix(), own, fine, spans)?
                    .with_cover(BucketKind::Day, self.own_days_within(first, since))
                    .with_tail(prefix, BucketKind::Day, stored_days)
            }
            _ => plan(self.prefix(), own, self.fine_buckets(calendar, days, end)?, spans)?
                .with_cover(BucketKind::Day, self.own_days_within(first, end)),
        };
        self.run(plan)
    }

    /// The store's own days lying wholly inside `[start, end)` and still kept by retention:
    /// what the whole-range unions of another zone's query read instead of their hours.
    fn own_days_within(&self, start: i64, end: i64) -> Vec<(i64, i64)> {
        let own = self.generator.calendar();
        let kept = crate::retention::keep_from(own, &self.config.retention, BucketKind::Day, self.now())
            .unwrap_or(i64::MIN);
        let mut days = Vec::new();
        let mut day = own.day_start(start);
        while day < end {
            let next = own.next_bucket_start(BucketKind::Day, day);
            if day >= start.max(kept) && next <= end {
                days.push((day, next));
            }
            day = next;
        }
        days
    }

    /// The stored buckets that tile the days `days` (and the day ending at `end`) of another
    /// zone: hours when the zones are whole hours apart at every boundary, else quarter hours
    /// (`time.store_quarter_hours`); an error naming the setting or the dates when the store
    /// cannot answer exactly.
    fn fine_buckets(&self, calendar: &Calendar, days: &[i64], end: i64) -> Result<BucketKind> {
        let own = self.generator.calendar();
        let refuse = |reason: String| -> Error { traqq_core::Error::Query(reason).into() };
        let zone = calendar.zone().name();
        let boundaries = || days.iter().copied().chain(std::iter::once(end));
        let odd = boundaries().find(|&b| own.hour_start(b) != b);
        let kind = match odd {
            None if self.config.time.store_hourly => BucketKind::Hour,
            _ if self.config.time.store_quarter_hours => BucketKind::Quarter,
            None => {
                return Err(refuse(format!(
                    "days of time zone {zone} are assembled from hour buckets: they need time.store_hourly = true \
                     (hours are stored for events recorded after it is set); the store's own zone is {}",
                    own.zone().name()
                )))
            }
            Some(boundary) => {
                return Err(refuse(format!(
                    "time zone {zone} is not whole hours apart from the store's zone {} on {}: its days are \
                     assembled from 15-minute buckets, which need time.store_quarter_hours = true (stored \
                     for events recorded after it is set)",
                    own.zone().name(),
                    calendar.label(BucketKind::Day, boundary)
                )))
            }
        };
        if let Some(kept) =
            crate::retention::keep_from(own, &self.config.retention, BucketKind::Hour, self.now())
        {
            if let Some(&first) = days.first().filter(|&&d| d < kept) {
                return Err(refuse(format!(
                    "days of time zone {zone} from {} are assembled from hour buckets, and hours before {} \
                     are deleted by retention.hourly_days = {}",
                    calendar.label(BucketKind::Day, first),
                    own.label(BucketKind::Day, kept),
                    self.config.retention.hourly_days
                )));
            }
        }
        Ok(kind)
    }
}
