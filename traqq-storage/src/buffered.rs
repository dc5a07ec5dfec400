//! [`BufferedStorage`]: a write buffer in front of any store, so many small batches reach it
//! as one.
//!
//! Why: a store's cost grows with the number of distinct (key, field) updates it applies, and
//! batches that arrive close together share most of their keys and fields (the same metrics,
//! the same days, the same top labels). Folding them into one batch before writing turns, for
//! the standard workload, ten 1,000-event batches of ~7,000 updates each into one of ~16,000,
//! which is what lets one Redis node keep up with more than 150,000 events/s (see the README).
//!
//! The price is the one every metrics aggregator (StatsD and its kin) pays: an `apply` that
//! returned `Ok` is in the process's memory, not yet in the store, for up to
//! [`BufferConfig::max_delay`]. A crash loses that much; other processes reading the same store
//! see it that much later. Reads through the buffer flush first, so this process always reads
//! its own writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use traqq_core::batch::Batch;
use traqq_core::claim::{Claims, Seen};
use traqq_core::read::{Read, ReadResult};
use traqq_core::sketch::{KeySketch, RawSketch};

use crate::{Capabilities, Error, Result, Storage};

/// What a write buffer holds at one moment ([`Storage::buffer`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Coalesced operations waiting.
    pub pending_ops: usize,
    /// How long the oldest waiting write has waited (`None`: nothing waits).
    pub oldest: Option<Duration>,
}

/// When a [`BufferedStorage`] writes its buffer to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    /// The longest time an applied batch waits in the buffer (the oldest one decides).
    pub max_delay: Duration,
    /// Write as soon as the buffer holds this many coalesced operations. A writer that finds
    /// twice this many waiting (the store is slower than the input) writes them itself, so the
    /// buffer's memory stays bounded and the input is slowed to the store's pace.
    pub max_ops: usize,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_delay: Duration::from_millis(100),
            max_ops: 50_000,
        }
    }
}

/// A write buffer in front of the store `S` (see the module docs for the trade-off).
///
/// - [`Storage::apply`] folds the batch into the buffer and returns; a background thread
///   writes the buffer as one batch when it is `max_delay` old or holds `max_ops` operations.
/// - [`Storage::read`], [`Storage::delete`] and [`Storage::remove_members`] write the buffer
///   first, and [`Storage::flush`] writes it and then flushes the store, so a flush means what
///   it means for `S`.
/// - Every write carries a new id ([`Storage::apply_once`]). A write that fails because the
///   store is unreachable ([`Error::Unavailable`]) is kept, exactly as it was, and sent again
///   with the same id before anything newer, so a write whose reply was lost (a timeout after
///   the store had applied it) is not counted twice by a store that records ids (Redis); its
///   error is returned by the next `apply`, `read`, `delete` or `flush` (whose own work is
///   then not done): the store is down for every caller alike, and refusing new work is the
///   backpressure.
/// - Any other failure is about the write itself (the store refused its contents): the write
///   is dropped and counted ([`BufferedStorage::dropped_writes`]), and its error is returned by
///   the next [`Storage::flush`] only. It is never handed to the next `apply`: the batches of
///   one client must not make another client's writes fail.
/// - Dropping the buffer writes what is left; call [`Storage::flush`] first to see errors.
///
/// ```
/// use std::time::Duration;
/// use traqq_storage::prelude::*;
/// use traqq_storage::{BufferConfig, BufferedStorage};
///
/// let store = BufferedStorage::new(MemoryStorage::new(), BufferConfig {
///     max_delay: Duration::from_millis(50),
///     max_ops: 10_000,
/// });
/// let config = TraqqConfig {
///     mapping: MappingConfig { add: vec!["event".into()], ..MappingConfig::default() },
///     ..TraqqConfig::default()
/// };
/// let traqq = Traqq::new(config, Box::new(store), "myapp")?;
/// traqq.record(IncomingEvent::from_json(serde_json::json!({ "event": "signup" }))?)?;
/// // Queries write the buffer first: this process reads its own writes.
/// let result = traqq.query_days(1)?;
/// assert_eq!(result.find_str("add/event")[0].result,
///            MetricData::Hash([("signup".to_string(), 1)].into()));
/// # Ok::<(), traqq_storage::Error>(())
/// ```
#[derive(Debug)]
pub struct BufferedStorage<S: Storage> {
    shared: Arc<Shared<S>>,
    writer: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared<S> {
    store: S,
    config: BufferConfig,
    state: Mutex<State>,
    /// Wakes the background writer (buffer full, or stopping).
    wake: Condvar,
    /// Held while a buffer is written to the store: one write at a time, so a `flush` that
    /// returns has seen every write that began before it.
    writing: Mutex<()>,
    /// Write ids: this text (unique per buffer) and a counter.
    id_base: String,
    next_id: AtomicU64,
}

/// One write to the store: a batch and the id it is sent under (again, if it fails).
#[derive(Debug)]
struct Write {
    id: String,
    batch: Batch,
    ops: usize,
}

#[derive(Debug, Default)]
struct State {
    pending: Batch,
    /// `pending.op_count()` (counted per key, so cheap).
    ops: usize,
    /// When the oldest batch in `pending` arrived.
    since: Option<Instant>,
    /// A write that failed while the store was unreachable, to send again first.
    retry: Option<Write>,
    /// A background write's failure while the store was unreachable, for the next caller.
    failure: Option<Error>,
    /// The last write the store refused (dropped), for the next `flush`.
    dropped: Option<Error>,
    /// Writes dropped so far.
    dropped_writes: u64,
    stop: bool,
}

impl<S: Storage + 'static> BufferedStorage<S> {
    /// Buffers writes to `store` as `config` says, with a background thread that writes the
    /// buffer when it is due.
    pub fn new(store: S, config: BufferConfig) -> Self {
        let config = BufferConfig {
            max_delay: config.max_delay,
            max_ops: config.max_ops.max(1),
        };
        let shared = Arc::new(Shared {
            store,
            config,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            writing: Mutex::new(()),
            id_base: id_base(),
            next_id: AtomicU64::new(0),
        });
        let background = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("traqq-write-buffer".into())
            .spawn(move || background.run_writer())
            .ok();
        BufferedStorage { shared, writer }
    }
}

impl<S: Storage> BufferedStorage<S> {
    /// The store behind the buffer.
    pub fn inner(&self) -> &S {
        &self.shared.store
    }

    /// The buffer's settings.
    pub fn config(&self) -> BufferConfig {
        self.shared.config
    }

    /// Writes the store refused (not for being unreachable) and the buffer dropped.
    pub fn dropped_writes(&self) -> u64 {
        self.shared.state.lock().dropped_writes
    }

    /// Coalesced operations waiting in the buffer (a failed write's included).
    pub fn pending_ops(&self) -> usize {
        let state = self.shared.state.lock();
        state.ops + state.retry.as_ref().map_or(0, |r| r.ops)
    }
}

impl<S: Storage> Shared<S> {
    /// The background writer: sleeps until the buffer is due (old or full), writes it, repeats;
    /// writes what is left when told to stop.
    fn run_writer(&self) {
        let mut state = self.state.lock();
        loop {
            if state.stop {
                drop(state);
                let _ = self.write_pending();
                return;
            }
            let due = state.since.map(|t| t + self.config.max_delay);
            match due {
                Some(due) if state.ops >= self.config.max_ops || Instant::now() >= due => {
                    drop(state);
                    let written = self.write_pending();
                    state = self.state.lock();
                    if let Err(e) = written {
                        if e.is_unavailable() {
                            state.failure.get_or_insert(e);
                        }
                        // Wait `max_delay` before trying again, whatever arrives meanwhile: a
                        // store that refuses at once must not make this a busy loop.
                        let until = Instant::now() + self.config.max_delay;
                        while !state.stop && Instant::now() < until {
                            self.wake.wait_until(&mut state, until);
                        }
                    }
                }
                Some(due) => {
                    self.wake.wait_until(&mut state, due);
                }
                None => self.wake.wait(&mut state),
            }
        }
    }

    /// Writes the buffer to the store (waiting for a write in progress first).
    fn write_pending(&self) -> Result<()> {
        let _writing = self.writing.lock();
        // A write that failed earlier goes first, unchanged and under its id.
        let retry = self.state.lock().retry.take();
        if let Some(failed) = retry {
            self.write(failed)?;
        }
        let (batch, ops) = {
            let mut state = self.state.lock();
            state.since = None;
            (std::mem::take(&mut state.pending), std::mem::take(&mut state.ops))
        };
        if batch.is_empty() {
            return Ok(());
        }
        let id = format!(
            "{}-{}",
            self.id_base,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        self.write(Write { id, batch, ops })
    }

    /// One write to the store; kept for the next write when the store is unreachable.
    fn write(&self, write: Write) -> Result<()> {
        let e = match self.store.apply_once(&write.id, &write.batch) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let (ops, kept) = (write.ops, e.is_unavailable());
        let mut state = self.state.lock();
        if kept {
            state.retry = Some(write);
            // Due again after `max_delay`, even when nothing new arrives.
            state.since.get_or_insert_with(Instant::now);
            return Err(annotate(e, ops, kept));
        }
        state.dropped_writes += 1;
        let e = annotate(e, ops, kept);
        let reported = Error::backend("write buffer", e.to_string());
        state.dropped = Some(e);
        Err(reported)
    }

    /// The failure of a background write while the store was unreachable, if any, or else
    /// writes the buffer. A write the store refused for its contents is not this caller's
    /// failure: it is left for `flush`.
    fn take_failure_then_write(&self) -> Result<()> {
        if let Some(e) = self.state.lock().failure.take() {
            return Err(e);
        }
        match self.write_pending() {
            Err(e) if !e.is_unavailable() => Ok(()),
            other => other,
        }
    }
}

/// Text unique to one buffer: process, clock, and a count of the process's buffers.
fn id_base() -> String {
    static BUFFERS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = BUFFERS.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{nanos:x}-{n}", std::process::id())
}

/// Says in `e` that it happened to a buffered write, and what became of its operations (the
/// backend's error stays the source, one level down).
fn annotate(e: Error, ops: usize, kept: bool) -> Error {
    let what = if kept {
        format!("writing {ops} buffered operations (kept in the buffer for the next write)")
    } else {
        format!("writing {ops} buffered operations (dropped)")
    };
    match e {
        Error::Unavailable { backend, source } => Error::Unavailable {
            backend,
            source: Box::new(BufferedWrite { what, source }),
        },
        Error::Backend { backend, source } => Error::Backend {
            backend,
            source: Box::new(BufferedWrite { what, source }),
        },
        other => other,
    }
}

/// A store's error while it wrote the buffer: what was being written, then the cause.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
struct BufferedWrite {
    what: String,
    source: crate::error::Source,
}

impl<S: Storage> Storage for BufferedStorage<S> {
    fn capabilities(&self) -> Capabilities {
        self.shared.store.capabilities()
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let shared = &self.shared;
        let overfull = {
            let mut state = shared.state.lock();
            if let Some(e) = state.failure.take() {
                return Err(e);
            }
            state.pending.merge_from(batch);
            state.ops = state.pending.op_count();
            let first = state.since.is_none();
            let since = *state.since.get_or_insert_with(Instant::now);
            // The writer sleeps without a deadline while the buffer is empty: tell it when one
            // starts, and when the buffer is full.
            if first || state.ops >= shared.config.max_ops {
                shared.wake.notify_one();
            }
            state.ops >= 2 * shared.config.max_ops
                // No background writer (the thread could not be started): writers take turns.
                || (self.writer.is_none() && since.elapsed() >= shared.config.max_delay)
        };
        if overfull {
            // The store is slower than the input (or nobody else writes): this writer waits.
            // Only an unreachable store fails it; a refused write is left for `flush`.
            match shared.write_pending() {
                Err(e) if e.is_unavailable() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// A batch with claims goes to the store at once, past the buffer: the claim check is the
    /// store's, and its answer (which ids were seen) is needed now.
    fn apply_claimed(&self, batch: &Batch, claims: &Claims) -> Result<Vec<Seen>> {
        if let Some(e) = self.shared.state.lock().failure.take() {
            return Err(e);
        }
        self.shared.store.apply_claimed(batch, claims)
    }

    fn labels_overflowed(&self) -> u64 {
        self.shared.store.labels_overflowed()
    }

    fn key_sets(&self, prefix: &str) -> Result<Option<Vec<String>>> {
        self.shared.store.key_sets(prefix)
    }

    fn buffer(&self) -> Option<BufferStats> {
        let state = self.shared.state.lock();
        Some(BufferStats {
            pending_ops: state.ops,
            oldest: state.since.map(|s| s.elapsed()),
        })
    }

    fn read(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
        self.shared.take_failure_then_write()?;
        self.shared.store.read(reads)
    }

    fn read_sketches(&self, keys: &[String]) -> Result<Vec<Option<RawSketch>>> {
        self.shared.take_failure_then_write()?;
        self.shared.store.read_sketches(keys)
    }

    fn write_sketches(&self, sketches: &[KeySketch]) -> Result<()> {
        self.shared.take_failure_then_write()?;
        self.shared.store.write_sketches(sketches)
    }

    fn read_ids(&self, set_keys: &[String]) -> Result<Vec<Vec<u128>>> {
        self.shared.take_failure_then_write()?;
        self.shared.store.read_ids(set_keys)
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        self.shared.take_failure_then_write()?;
        self.shared.store.delete(keys)
    }

    fn remove_members(&self, key: &str, members: &[String]) -> Result<()> {
        self.shared.take_failure_then_write()?;
        self.shared.store.remove_members(key, members)
    }

    fn flush(&self) -> Result<()> {
        self.shared.take_failure_then_write()?;
        if let Some(e) = self.shared.state.lock().dropped.take() {
            return Err(e);
        }
        self.shared.store.flush()
    }
}

impl<S: Storage> Drop for BufferedStorage<S> {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_one();
        match self.writer.take() {
            Some(writer) => {
                let _ = writer.join();
            }
            // No background thread could be started: write what is left here.
            None => {
                let _ = self.shared.write_pending();
            }
        }
    }
}
