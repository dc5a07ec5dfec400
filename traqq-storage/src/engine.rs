//! [`Traqq`]: the engine that applies core's operations to a [`Storage`] and answers queries.

use std::sync::Arc;

use hashbrown::HashSet;
use traqq_core::bucket::BucketKind;
use traqq_core::bucket::Calendar;
use traqq_core::bucket::Tz;
use traqq_core::claim::{Claim, Claims};
use traqq_core::config::TraqqConfig;
use traqq_core::event::IncomingEvent;
use traqq_core::group::{group_days, Group, GroupResult};
use traqq_core::key::id_registry_key;
use traqq_core::ops::{ClaimDays, OpGenerator};
use traqq_core::plan::{QueryOptions, QueryPlan, QueryRange};
use traqq_core::regroup::{Regroup, Span};
use traqq_core::result::DayResult;
use traqq_core::result::QueryResult;

use crate::clock::{Clock, SystemClock};
use crate::outcome::{BatchOutcome, Recorded, Rejected};
use crate::retention::{AutoPrune, AutoPruneStatus, PruneReport};
use crate::storage::Storage;
use crate::{Error, Result};

/// The traqq engine: records events into a store and queries it.
///
/// With `retention` configured, the engine deletes expired buckets by itself: the first write
/// (a `record*` call that records something) after it is built prunes once, by its clock at that moment, and then the first
/// write after the clock enters a new calendar day prunes again (see [`crate::retention`]).
/// Queries never prune. [`Traqq::without_auto_prune`] turns this off; [`Traqq::prune`] prunes
/// on demand.
#[derive(Debug)]
pub struct Traqq {
    config: TraqqConfig,
    generator: OpGenerator,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    auto_prune: AutoPrune,
}

impl Traqq {
    /// An engine over `storage`, writing keys under `prefix`. Fails on an invalid config or prefix.
    pub fn new(config: TraqqConfig, storage: impl Storage + 'static, prefix: &str) -> Result<Self> {
        Self::with_shared_storage(config, Arc::new(storage), prefix)
    }

    /// An engine over a store shared with others (several prefixes, or a server and a pruner).
    pub fn with_shared_storage(config: TraqqConfig, storage: Arc<dyn Storage>, prefix: &str) -> Result<Self> {
        let generator = OpGenerator::new(&config, prefix)?;
        Ok(Traqq {
            auto_prune: AutoPrune::new(&config.retention, config.event.id_field.is_some()),
            config,
            generator,
            storage,
            clock: Arc::new(SystemClock),
        })
    }

    /// Turns automatic pruning off: expired buckets stay until [`Traqq::prune`] is called (for
    /// an engine sharing a store with another that prunes, or a read-only tool).
    pub fn without_auto_prune(self) -> Self {
        self.auto_prune.turn_off();
        self
    }

    /// The last automatic prune this engine ran, if any (what it deleted, or why it failed).
    pub fn last_auto_prune(&self) -> Option<AutoPruneStatus> {
        self.auto_prune.last()
    }

    /// Prunes first when automatic pruning is due at `now` (one atomic load when it is not).
    #[inline]
    fn prune_if_due(&self, now: i64) {
        if self.auto_prune.due(now) {
            self.auto_prune
                .run(now, self.generator.calendar(), || self.prune(now));
        }
    }

    /// Replaces the clock (tests, backfills).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TraqqConfig {
        &self.config
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.generator.prefix()
    }

    /// The store.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The compiled mapping (for callers that build batches themselves).
    pub fn generator(&self) -> &OpGenerator {
        &self.generator
    }

    /// The parser's caps from `[limits]` (`max_properties`, `max_field_length`): for callers
    /// that parse events themselves before recording them.
    pub fn event_limits(&self) -> traqq_core::event::EventLimits {
        self.config.limits.event_limits()
    }

    /// Now, by the engine's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Records one event; with `[event] id_field` set, says whether its id was already
    /// recorded (then nothing was counted again).
    pub fn record(&self, event: IncomingEvent<'_>) -> Result<Recorded> {
        let now = self.now();
        if self.generator.claims_ids() {
            let mut outcome = self.record_claimed(std::iter::once(Ok(event)), now)?;
            return match outcome.rejected.pop() {
                Some(rejected) => Err(rejected.error),
                None if !outcome.duplicates.is_empty() => Ok(Recorded::Duplicate),
                None => Ok(Recorded::Counted),
            };
        }
        let batch = self.generator.event_batch(&event, now)?;
        self.prune_if_due(now);
        self.storage.apply(&batch)?;
        Ok(Recorded::Counted)
    }

    /// Parses and records one JSON line.
    pub fn record_json(&self, line: &str) -> Result<Recorded> {
        self.record(IncomingEvent::parse_str_with(line, self.event_limits())?)
    }

    /// Records many events as one storage batch. A bad event is reported in the outcome and
    /// the others still count; a storage failure fails the whole batch (nothing is recorded
    /// where the backend applies batches atomically).
    pub fn record_batch<'a, I>(&self, events: I) -> Result<BatchOutcome>
    where
        I: IntoIterator<Item = IncomingEvent<'a>>,
    {
        self.record_results(events.into_iter().map(Ok))
    }

    /// Parses and records many JSON lines as one storage batch; unparsable lines are rejected
    /// with their index, like bad events.
    pub fn record_json_lines<'a, I>(&self, lines: I) -> Result<BatchOutcome>
    where
        I: IntoIterator<Item = &'a str>,
    {
        self.record_results(
            lines
                .into_iter()
                .map(|l| IncomingEvent::parse_str_with(l, self.event_limits()).map_err(Error::from)),
        )
    }

    /// Records pre-parsed events, some of which may already have failed to parse.
    pub fn record_results<'a, I>(&self, events: I) -> Result<BatchOutcome>
    where
        I: IntoIterator<Item = Result<IncomingEvent<'a>>>,
    {
        let now = self.now();
        if self.generator.claims_ids() {
            return self.record_claimed(events.into_iter(), now);
        }
        let mut builder = self.generator.batch();
        let mut outcome = BatchOutcome::default();
        for (index, event) in events.into_iter().enumerate() {
            match event.and_then(|e| builder.add(&e, now).map_err(Error::from)) {
                Ok(()) => outcome.recorded += 1,
                Err(error) => outcome.rejected.push(Rejected { index, error }),
            }
        }
        if outcome.recorded > 0 {
            self.prune_if_due(now);
            self.storage.apply(&builder.finish())?;
        }
        Ok(outcome)
    }

    /// [`Traqq::record_results`] with `[event] id_field` set: each id is recorded once (see
    /// [`traqq_core::claim`]). Events whose ids the store has already seen are dropped and the
    /// batch is built again without them, until the store takes it; each round drops at least
    /// one event, so this ends.
    fn record_claimed<'a>(
        &self,
        events: impl Iterator<Item = Result<IncomingEvent<'a>>>,
        now: i64,
    ) -> Result<BatchOutcome> {
        let Some(ids) = self.generator.id_policy() else {
            return Err(Error::Unsupported {
                what: "claims without event.id_field",
            });
        };
        let mut outcome = BatchOutcome::default();
        let (prefix, calendar) = (self.prefix(), self.generator.calendar());
        // The first round's claims are made while parsing: a repeat within the batch is a
        // duplicate at once.
        let mut claims = Claims::new();
        // Events still to record: index, event, claim.
        let mut pending: Vec<(usize, IncomingEvent<'a>, Option<Claim>)> = Vec::new();
        let mut days = ClaimDays::default();
        for (index, event) in events.enumerate() {
            let claim = event.and_then(|e| Ok((self.generator.claim_in(&e, now, &mut days)?, e)));
            match claim {
                Err(error) => outcome.rejected.push(Rejected { index, error }),
                Ok((Some(c), _)) if !ids.add(&mut claims, prefix, calendar, c) => {
                    outcome.duplicates.push(index)
                }
                Ok((c, e)) => pending.push((index, e, c)),
            }
        }
        let mut first_round = true;
        loop {
            let mut builder = self.generator.batch();
            if !first_round {
                claims = Claims::new();
                for c in pending.iter().filter_map(|p| p.2) {
                    ids.add(&mut claims, prefix, calendar, c);
                }
            }
            pending.retain(|(index, event, claim)| match builder.add(event, now) {
                Ok(()) => true,
                Err(error) => {
                    // An event fails the same way every round; only the first sees it.
                    if first_round {
                        let error = Error::from(error);
                        outcome.rejected.push(Rejected { index: *index, error });
                        if let Some(c) = claim {
                            claims.remove(*c);
                        }
                    }
                    false
                }
            });
            first_round = false;
            outcome.recorded = pending.len();
            if pending.is_empty() {
                break;
            }
            self.prune_if_due(now);
            let mut batch = builder.finish();
            if claims.is_empty() {
                self.storage.apply(&batch)?;
                break;
            }
            let registry = id_registry_key(prefix);
            for set in claims.sets() {
                batch.sadd(&registry, (BucketKind::Day, set.day), &set.key);
            }
            let seen = self.storage.apply_claimed(&batch, &claims)?;
            if seen.is_empty() {
                break;
            }
            let seen: HashSet<Claim> = seen.into_iter().filter_map(|s| claims.claim_of(s)).collect();
            let before = pending.len();
            pending.retain(|(index, _, claim)| {
                let duplicate = claim.is_some_and(|c| seen.contains(&c));
                if duplicate {
                    outcome.duplicates.push(*index);
                }
                !duplicate
            });
            if before == pending.len() {
                // The store named ids this batch did not claim: never loop on that.
                return Err(Error::backend(
                    "storage",
                    "apply_claimed reported ids the batch did not claim",
                ));
            }
        }
        outcome.rejected.sort_by_key(|r| r.index);
        outcome.duplicates.sort_unstable();
        Ok(outcome)
    }

    /// Daily buckets from the day holding `min` to the day holding `max`.
    pub fn query(&self, min: i64, max: i64) -> Result<QueryResult> {
        self.query_with(&QueryOptions {
            min,
            max,
            ..QueryOptions::default()
        })
    }

    /// Hourly buckets from the hour holding `min` to the hour holding `max` (needs
    /// `time.store_hourly` at record time).
    pub fn query_hourly(&self, min: i64, max: i64) -> Result<QueryResult> {
        self.query_with(&QueryOptions {
            min,
            max,
            bucket: BucketKind::Hour,
            ..QueryOptions::default()
        })
    }

    /// Today and the `days` previous calendar days.
    pub fn query_days(&self, days: u32) -> Result<QueryResult> {
        let (min, max) = self.days_range(days);
        self.query(min, max)
    }

    /// The `(min, max)` of today and the `days` previous calendar days.
    pub fn days_range(&self, days: u32) -> (i64, i64) {
        let now = self.now();
        (self.generator.calendar().days_back(now, days), now)
    }

    /// A query over `range` (a `Days` range ends now, by the engine's clock) with the bucket
    /// size, limit and filters of `opts` (its `min`/`max` are replaced). A `Days` range of more
    /// than `query.max_buckets` days is an error naming the setting, as any other range is.
    pub fn query_range(&self, range: QueryRange, mut opts: QueryOptions) -> Result<QueryResult> {
        (opts.min, opts.max) = self.resolve(range)?;
        self.query_with(&opts)
    }

    /// [`Traqq::resolve`] with the days of `calendar`.
    fn resolve_in(&self, range: QueryRange, calendar: &Calendar) -> Result<(i64, i64)> {
        let (min, max) = self.resolve(range)?;
        Ok(match range {
            QueryRange::Days(days) => (calendar.days_back(max, days), max),
            QueryRange::MinMax(..) => (min, max),
        })
    }

    /// The `(min, max)` of `range`: a `Days` range ends now, by the engine's clock, and may
    /// not ask for more than `query.max_buckets` days.
    fn resolve(&self, range: QueryRange) -> Result<(i64, i64)> {
        Ok(match range {
            QueryRange::MinMax(min, max) => (min, max),
            QueryRange::Days(days) => {
                let max_buckets = self.config.query.max_buckets;
                if days as usize >= max_buckets {
                    return Err(traqq_core::Error::Query(format!(
                        "days = {days} asks for {} daily buckets, more than query.max_buckets = {max_buckets}",
                        u64::from(days) + 1
                    ))
                    .into());
                }
                self.days_range(days)
            }
        })
    }

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
        let (fine, days) = self.days_of(range, opts, &calendar)?;
        let spans: Vec<(Span, i64)> = group_days(&calendar, group, &days)
            .into_iter()
            .map(|(first, last)| {
                let span = Span {
                    start: first,
                    end: calendar.next_bucket_start(BucketKind::Day, last),
                    label: calendar.label(BucketKind::Day, first),
                };
                (span, last)
            })
            .collect();
        let lasts: Vec<String> = spans
            .iter()
            .map(|(_, last)| calendar.label(BucketKind::Day, *last))
            .collect();
        let day_counts: Vec<usize> = spans
            .iter()
            .map(|(span, _)| days.iter().filter(|d| (span.start..span.end).contains(d)).count())
            .collect();
        let merged = self.regroup(&fine, spans.into_iter().map(|(span, _)| span).collect())?;
        Ok(merged
            .into_iter()
            .zip(lasts)
            .zip(day_counts)
            .map(|((day, last_date), days)| GroupResult {
                group,
                date: day.date,
                last_date,
                timestamp: day.timestamp,
                days,
                results: day.results,
            })
            .collect())
    }

    /// A query whose days are the calendar days of `zone` rather than the store's
    /// (`time.timezone`): each day assembled from the stored hour buckets inside it (23, 24 or
    /// 25), counters and sums added, unique counts and leaderboards as the store's unions of
    /// those hours. Needs `time.store_hourly`, and `zone` whole hours apart from the store's
    /// zone at every day boundary of the range; hours deleted by `retention.hourly_days` are an
    /// error naming the dates. With `bucket = "h"` the hours are labelled in `zone`. A `Days`
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
        let (fine, days) = self.days_of(range, opts, &calendar)?;
        let spans = days
            .iter()
            .map(|&start| Span {
                start,
                end: calendar.next_bucket_start(BucketKind::Day, start),
                label: calendar.label(BucketKind::Day, start),
            })
            .collect();
        let days = self.regroup(&fine, spans)?;
        Ok(QueryResult {
            days,
            bucket: BucketKind::Day,
            ..fine
        })
    }

    /// The day starts of `range` in `calendar`, and the query their metrics come from: the
    /// days themselves in the store's own zone, else the stored hours of those days.
    fn days_of(
        &self,
        range: QueryRange,
        opts: QueryOptions,
        calendar: &Calendar,
    ) -> Result<(QueryResult, Vec<i64>)> {
        let (min, max) = self.resolve_in(range, calendar)?;
        let days = calendar.buckets(BucketKind::Day, min, max, self.config.query.max_buckets)?;
        let (Some(&first), Some(&last)) = (days.first(), days.last()) else {
            return Ok((self.query_with(&QueryOptions { min, max, ..opts })?, days));
        };
        let end = calendar.next_bucket_start(BucketKind::Day, last);
        let own = *self.generator.calendar();
        if calendar.zone() == own.zone() {
            let fine = self.query_with(&QueryOptions {
                min: first,
                max: last,
                ..opts
            })?;
            return Ok((fine, days));
        }
        let kind = self.fine_buckets(calendar, &days, end)?;
        let fine = self.query_with(&QueryOptions {
            min: first,
            max: end - 1,
            bucket: kind,
            ..opts
        })?;
        Ok((fine, days))
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

    /// Merges `fine`'s buckets into `spans` (one more round of reads for the unions).
    fn regroup(&self, fine: &QueryResult, spans: Vec<Span>) -> Result<Vec<DayResult>> {
        let (plan, reads) = Regroup::new(fine, spans)?;
        let answers = if reads.is_empty() {
            Vec::new()
        } else {
            self.storage.read(&reads)?
        };
        Ok(plan.assemble(answers)?)
    }

    /// Any query: range, bucket size, leaderboard limit, accept/ignore globs.
    pub fn query_with(&self, opts: &QueryOptions) -> Result<QueryResult> {
        let mut plan = QueryPlan::new(
            self.prefix(),
            *self.generator.calendar(),
            &self.config.query,
            opts,
        )?;
        let key_sets = self.storage.read(&plan.key_set_reads())?;
        let reads = plan.data_reads(key_sets)?;
        let answers = if reads.is_empty() {
            Vec::new()
        } else {
            self.storage.read(&reads)?
        };
        Ok(plan.assemble(answers)?)
    }

    /// Deletes the buckets that `retention` (`daily_days`, `hourly_days`) no longer keeps at
    /// `now` (see [`crate::retention`]). Writes already do this once a day by themselves (see
    /// [`Traqq`]); call it for a store nothing writes to. With both set to 0 it does nothing.
    pub fn prune(&self, now: i64) -> Result<PruneReport> {
        let calendar = self.generator.calendar();
        let mut report = crate::retention::prune(
            &*self.storage,
            self.prefix(),
            calendar,
            &self.config.retention,
            now,
        )?;
        if let Some(ids) = self.generator.id_policy() {
            report.id_sets =
                crate::retention::prune_id_sets(&*self.storage, self.prefix(), calendar, ids, now)?;
        }
        Ok(report)
    }

    /// Registers the buckets of data written without the bucket registry (traqq 0.2, trk2) so
    /// retention covers them: the key sets the store finds by scanning ([`Storage::key_sets`])
    /// go into `prefix:k:buckets`. Returns how many, or `None` when the store keeps the registry
    /// itself (nothing to do). Idempotent.
    pub fn register_buckets(&self) -> Result<Option<usize>> {
        let Some(sets) = self.storage.key_sets(self.prefix())? else {
            return Ok(None);
        };
        let registry = traqq_core::key::bucket_registry_key(self.prefix());
        let mut batch = traqq_core::batch::Batch::new();
        // The registry entry carries today's bucket: a store that expires keys by bucket
        // (Redis) must keep the registry, not drop it with the old buckets it lists.
        let today = (BucketKind::Day, self.generator.calendar().day_start(self.now()));
        let mut registered = 0;
        for set in &sets {
            if traqq_core::key::decode_key_set_key(self.prefix(), set).is_some() {
                batch.sadd(&registry, today, set);
                registered += 1;
            }
        }
        if !batch.is_empty() {
            self.storage.apply(&batch)?;
        }
        Ok(Some(registered))
    }

    /// Makes everything recorded so far durable per the backend's mode.
    pub fn flush(&self) -> Result<()> {
        self.storage.flush()
    }
}
