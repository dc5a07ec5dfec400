//! [`Faulty`]: a real store behind switches that make it fail or slow down, with counters —
//! the one fault injector of the test suites (outages, refused writes, slow stores).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use traqq_core::batch::Batch;
use traqq_core::claim::{Claims, Seen};
use traqq_core::read::{Read, ReadResult};
use traqq_core::sketch::{KeySketch, RawSketch};

use crate::{Capabilities, Error, MemoryStorage, Result, Storage};

/// `inner` (the memory store by default) with faults switched on and off by the test:
///
/// - `down`: every call fails with [`Error::Unavailable`] (the store is unreachable);
/// - `deletes_down`: only deletes fail that way;
/// - `refuse`: a batch touching a key that contains this text fails with [`Error::Backend`]
///   (the store refuses its contents, as Redis refuses a value);
/// - `apply_delay_ms` / `read_delay_ms`: every write / read sleeps that long first (a slow
///   store).
///
/// It counts write attempts (`applies`, failed ones included), set-member reads (how the
/// engine reads its bucket registry, so: prunes), deletes and flushes.
#[derive(Debug, Default)]
pub struct Faulty<S = MemoryStorage> {
    /// The real store.
    pub inner: S,
    /// Every call fails as unreachable while set.
    pub down: AtomicBool,
    /// Deletes fail as unreachable while set.
    pub deletes_down: AtomicBool,
    /// A batch touching a key containing this text is refused.
    pub refuse: Mutex<Option<String>>,
    /// Milliseconds each `apply` sleeps first.
    pub apply_delay_ms: AtomicU64,
    /// Milliseconds each `read` sleeps first.
    pub read_delay_ms: AtomicU64,
    /// `apply` calls, failed ones included.
    pub applies: AtomicUsize,
    /// `read` calls that asked for a set's members.
    pub member_reads: AtomicUsize,
    /// `delete` calls that reached the store.
    pub deletes: AtomicUsize,
    /// `flush` calls that reached the store.
    pub flushes: AtomicUsize,
}

impl<S> Faulty<S> {
    /// `inner` with every fault off.
    pub fn new(inner: S) -> Self {
        Faulty {
            inner,
            down: AtomicBool::new(false),
            deletes_down: AtomicBool::new(false),
            refuse: Mutex::new(None),
            apply_delay_ms: AtomicU64::new(0),
            read_delay_ms: AtomicU64::new(0),
            applies: AtomicUsize::new(0),
            member_reads: AtomicUsize::new(0),
            deletes: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
        }
    }

    /// Switches the outage on or off.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Refuses batches touching keys that contain `text` (`None`: refuse nothing).
    pub fn refuse_keys_containing(&self, text: Option<&str>) {
        if let Ok(mut refuse) = self.refuse.lock() {
            *refuse = text.map(str::to_owned);
        }
    }

    /// What every write goes through: counted, then failed or slowed as switched.
    fn before_apply(&self, batch: &Batch) -> Result<()> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.check(&self.down)?;
        let refused = self.refuse.lock().ok().and_then(|r| r.clone());
        if let Some(text) = refused {
            if batch.iter().any(|(key, _)| key.contains(&text)) {
                return Err(Error::backend(
                    "faulty",
                    "ERR value is NaN or Infinity (injected)",
                ));
            }
        }
        pause(&self.apply_delay_ms);
        Ok(())
    }

    fn check(&self, flag: &AtomicBool) -> Result<()> {
        if flag.load(Ordering::SeqCst) {
            return Err(Error::unavailable("faulty", "injected outage"));
        }
        Ok(())
    }
}

impl<S: Storage> Storage for Faulty<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        self.before_apply(batch)?;
        self.inner.apply(batch)
    }

    fn apply_claimed(&self, batch: &Batch, claims: &Claims) -> Result<Vec<Seen>> {
        self.before_apply(batch)?;
        self.inner.apply_claimed(batch, claims)
    }

    fn labels_overflowed(&self) -> u64 {
        self.inner.labels_overflowed()
    }

    fn buffer(&self) -> Option<crate::BufferStats> {
        self.inner.buffer()
    }

    fn key_sets(&self, prefix: &str) -> Result<Option<Vec<String>>> {
        self.check(&self.down)?;
        self.inner.key_sets(prefix)
    }

    fn read(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
        self.check(&self.down)?;
        if reads.iter().any(|r| matches!(r, Read::Members(_))) {
            self.member_reads.fetch_add(1, Ordering::SeqCst);
        }
        pause(&self.read_delay_ms);
        self.inner.read(reads)
    }

    fn read_sketches(&self, keys: &[String]) -> Result<Vec<Option<RawSketch>>> {
        self.check(&self.down)?;
        self.inner.read_sketches(keys)
    }

    fn write_sketches(&self, sketches: &[KeySketch]) -> Result<()> {
        self.check(&self.down)?;
        self.inner.write_sketches(sketches)
    }

    fn read_ids(&self, set_keys: &[String]) -> Result<Vec<Vec<u128>>> {
        self.check(&self.down)?;
        self.inner.read_ids(set_keys)
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        self.check(&self.down)?;
        self.check(&self.deletes_down)?;
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(keys)
    }

    fn remove_members(&self, key: &str, members: &[String]) -> Result<()> {
        self.check(&self.down)?;
        self.inner.remove_members(key, members)
    }

    fn flush(&self) -> Result<()> {
        self.check(&self.down)?;
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.inner.flush()
    }
}

/// Sleeps for the milliseconds in `delay_ms`, if any.
fn pause(delay_ms: &AtomicU64) {
    let delay = delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
}
