//! [`Traqq`]: the engine that applies core's operations to a [`Storage`] and answers queries.
//! Exactly-once recording is in `claimed`, query-time calendars (other zones, weeks, months) in
//! `zones`.

mod claimed;
mod zone_days;
mod zones;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use traqq_core::bucket::{BucketKind, Calendar};
use traqq_core::config::TraqqConfig;
use traqq_core::event::IncomingEvent;
use traqq_core::ops::{BatchBuilder, OpGenerator, SpareMaps};
use traqq_core::plan::{QueryOptions, QueryPlan, QueryRange};
use traqq_core::result::QueryResult;

use crate::clock::{Clock, SystemClock};
use crate::outcome::{BatchOutcome, Recorded};
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
    /// Whether this engine has said, in the store, which extra zones' days it writes (its
    /// first write does, see `zone_days`).
    zones_marked: AtomicBool,
    /// Maps earlier batches left, for the next ones (one set per recent concurrent recorder).
    spare: Mutex<Vec<SpareMaps>>,
}

/// Sets of spare maps kept: one per recorder that may run at once in a typical server or import
/// (a set holds one batch's maps, a few hundred KiB for 10,000 events).
const SPARE_SETS: usize = 4;

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
            zones_marked: AtomicBool::new(false),
            spare: Mutex::new(Vec::new()),
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

    /// What a write at `now` does first: prune when automatic pruning is due, and on the
    /// engine's first write, mark the extra zones whose days it writes. Two atomic loads after
    /// that.
    #[inline]
    fn before_write(&self, now: i64) -> Result<()> {
        if self.auto_prune.due(now) {
            self.auto_prune
                .run(now, self.generator.calendar(), || self.prune(now));
        }
        if !self.zones_marked.load(Ordering::Acquire) {
            self.mark_extra_zones(now)?;
            self.zones_marked.store(true, Ordering::Release);
        }
        Ok(())
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
        self.before_write(now)?;
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
        let limits = self.event_limits();
        if self.generator.claims_ids() {
            return self.record_results(
                lines
                    .into_iter()
                    .map(|l| IncomingEvent::parse_str_with(l, limits).map_err(Error::from)),
            );
        }
        // One event parsed into over and over: its property list is allocated once per call.
        let now = self.now();
        let mut event = IncomingEvent::default();
        let mut builder = self.builder();
        let mut outcome = BatchOutcome::default();
        for (index, line) in lines.into_iter().enumerate() {
            let added = event
                .reparse_str_with(line, limits)
                .and_then(|()| builder.add(&event, now));
            outcome.count(index, added.map_err(Error::from));
        }
        self.apply_built(builder, outcome, now)
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
        let mut builder = self.builder();
        let mut outcome = BatchOutcome::default();
        for (index, event) in events.into_iter().enumerate() {
            outcome.count(
                index,
                event.and_then(|e| builder.add(&e, now).map_err(Error::from)),
            );
        }
        self.apply_built(builder, outcome, now)
    }

    /// Applies a built batch, unless every event of it was rejected.
    fn apply_built(
        &self,
        builder: BatchBuilder<'_>,
        outcome: BatchOutcome,
        now: i64,
    ) -> Result<BatchOutcome> {
        if outcome.recorded > 0 {
            self.before_write(now)?;
            let (batch, spare) = builder.finish_keeping();
            self.keep_spare(spare);
            self.storage.apply(&batch)?;
        }
        Ok(outcome)
    }

    /// A builder for the next batch, its slots' maps taken from an earlier batch's where
    /// there are some.
    fn builder(&self) -> BatchBuilder<'_> {
        let spare = self.spare.lock().ok().and_then(|mut s| s.pop());
        self.generator.batch_reusing(spare.unwrap_or_default())
    }

    /// Keeps a finished batch's maps for a later one (up to [`SPARE_SETS`] sets).
    fn keep_spare(&self, spare: SpareMaps) {
        if let Ok(mut kept) = self.spare.lock() {
            if kept.len() < SPARE_SETS {
                kept.push(spare);
            }
        }
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

    /// Any query: range, bucket size, leaderboard limit, accept/ignore globs.
    pub fn query_with(&self, opts: &QueryOptions) -> Result<QueryResult> {
        self.run(QueryPlan::new(
            self.prefix(),
            *self.generator.calendar(),
            &self.config.query,
            opts,
        )?)
    }

    /// Carries a plan's two rounds of reads to the store and its answers back.
    fn run(&self, mut plan: QueryPlan) -> Result<QueryResult> {
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
        for (zone_calendar, zone_prefix) in self.generator.extra_zones() {
            let zone = crate::retention::prune(
                &*self.storage,
                zone_prefix,
                zone_calendar,
                &self.config.retention,
                now,
            )?;
            report.buckets += zone.buckets;
            report.keys += zone.keys;
        }
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
