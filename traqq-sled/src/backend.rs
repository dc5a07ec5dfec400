//! [`SledStorage`]: the [`Storage`] implementation over sled.

use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::RwLock;
use traqq_core::batch::{Batch, KeyOps, Number};
use traqq_core::read::{top_ranked, Read, ReadResult};
use traqq_core::sketch::Sketch;
use traqq_storage::{Capabilities, Durability, Error, Result, Storage};

use crate::codec::{compose, decode_number, encode_number, field_range};
use crate::config::SledConfig;
use crate::flush::GroupFlush;

const BACKEND: &str = "sled";
/// How long `open` waits for the lock of a store that is being closed.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// A traqq store in a sled directory. `Send + Sync`: share it with an `Arc`.
///
/// sled's merge operators cannot take part in an atomic batch (sled issue #1175), so a batch
/// is applied as one read-modify-write: under a write lock, each coalesced (key, field) is read,
/// added to, and written back in one `sled::Batch`, which sled applies atomically (also across
/// a crash). Readers take the lock shared, so they never see half a batch. Coalescing keeps
/// the work per batch proportional to distinct (key, field) pairs, not events.
pub struct SledStorage {
    db: sled::Db,
    path: PathBuf,
    config: SledConfig,
    /// Writers exclusive (read-modify-write), readers shared.
    lock: RwLock<()>,
    group: GroupFlush,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStorage")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The one place sled errors become traqq errors.
fn backend_error(e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) => Error::Unavailable {
            backend: BACKEND,
            message: io.to_string(),
        },
        other => Error::Backend {
            backend: BACKEND,
            message: other.to_string(),
        },
    }
}

fn corrupt(key: &str, message: impl Into<String>) -> Error {
    Error::Corrupt {
        backend: BACKEND,
        key: key.to_owned(),
        message: message.into(),
    }
}

impl SledStorage {
    /// Opens the store at `path`, creating it when missing. Any store written by traqq opens,
    /// whatever prefixes or options it was written with. A locked (already open) or corrupt
    /// store is an [`Error::Open`] naming the path.
    pub fn open(path: impl AsRef<Path>, config: SledConfig) -> Result<SledStorage> {
        let path = path.as_ref().to_path_buf();
        let open_error = |message: String| Error::Open {
            backend: BACKEND,
            path: path.display().to_string(),
            message,
        };
        let sled_config = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_mib.saturating_mul(1 << 20))
            .flush_every_ms(Some(config.flush_every_ms.max(1)));
        // sled releases its file lock from background threads a moment after the last handle
        // is dropped, so a store closed just now may still look locked: retry briefly.
        let deadline = Instant::now() + LOCK_WAIT;
        let db = loop {
            // sled can panic on some damaged files instead of returning an error.
            match catch_unwind(AssertUnwindSafe(|| sled_config.open())) {
                Err(_) => {
                    return Err(open_error(
                        "sled panicked while reading the store (damaged files?)".into(),
                    ))
                }
                Ok(Ok(db)) => break db,
                Ok(Err(sled::Error::Io(e)))
                    if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(Err(e)) => return Err(open_error(e.to_string())),
            }
        };
        Ok(SledStorage {
            db,
            path,
            config,
            lock: RwLock::new(()),
            group: GroupFlush::default(),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options it was opened with.
    pub fn config(&self) -> &SledConfig {
        &self.config
    }

    /// Bytes sled reports on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.db.size_on_disk().map_err(backend_error)
    }

    fn durable(&self) -> Result<()> {
        match self.config.sync {
            Durability::None => Ok(()),
            Durability::Batch | Durability::Always => self.flush(),
        }
    }

    /// Calls `f(field, value)` for every field of `key`, in byte order.
    fn scan(&self, key: &str, mut f: impl FnMut(&str, &[u8]) -> Result<()>) -> Result<()> {
        let (start, end) = field_range(key);
        for item in self.db.range(start.as_slice()..end.as_slice()) {
            let (k, v) = item.map_err(backend_error)?;
            let field = k
                .get(start.len()..)
                .and_then(|f| std::str::from_utf8(f).ok())
                .ok_or_else(|| corrupt(key, "a field name is not UTF-8"))?;
            f(field, &v)?;
        }
        Ok(())
    }

    fn read_sketch(&self, key: &str) -> Result<Option<Sketch>> {
        match self.db.get(key.as_bytes()).map_err(backend_error)? {
            None => Ok(None),
            Some(bytes) => Sketch::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| corrupt(key, e.to_string())),
        }
    }

    fn read_one(&self, read: &Read) -> Result<ReadResult> {
        Ok(match read {
            Read::Hash(key) => {
                let mut fields = Vec::new();
                self.scan(key, |field, value| {
                    let n = decode_number(value)
                        .ok_or_else(|| corrupt(key, format!("field {field:?} is not a number")))?;
                    fields.push((field.to_owned(), n));
                    Ok(())
                })?;
                ReadResult::Hash(fields)
            }
            Read::Count(keys) => {
                let mut union = Sketch::new();
                for key in keys {
                    if let Some(s) = self.read_sketch(key)? {
                        union.merge(&s);
                    }
                }
                ReadResult::Count(union.count())
            }
            Read::Top { keys, limit } => {
                // Leaderboards are read whole and cut to the top `limit` by partial selection
                // (per bucket they hold at most a few thousand members; a score index would
                // need a read-modify-write per increment). Several keys add up per member.
                let mut scores: HashMap<String, f64> = HashMap::new();
                for key in keys {
                    self.scan(key, |member, value| {
                        let score = decode_number(value)
                            .ok_or_else(|| corrupt(key, format!("member {member:?} has no score")))?;
                        *scores.entry_ref(member).or_insert(0.0) += score.as_f64();
                        Ok(())
                    })?;
                }
                let mut members: Vec<(String, f64)> = scores.into_iter().collect();
                top_ranked(&mut members, *limit);
                ReadResult::Top(members)
            }
            Read::Members(key) => {
                let mut members = Vec::new();
                self.scan(key, |member, _| {
                    members.push(member.to_owned());
                    Ok(())
                })?;
                ReadResult::Members(members)
            }
        })
    }

    /// Adds `by` to the number stored under `k`, into `out`.
    fn add_to(&self, k: &[u8], by: Number, key: &str, out: &mut sled::Batch) -> Result<()> {
        let sum = match self.db.get(k).map_err(backend_error)? {
            None => by,
            Some(old) => decode_number(&old)
                .ok_or_else(|| corrupt(key, "a field is not a number"))?
                .plus(by),
        };
        out.insert(k, &encode_number(sum)[..]);
        Ok(())
    }
}

impl Storage for SledStorage {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(true, true)
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        {
            let _writer = self.lock.write();
            let mut out = sled::Batch::default();
            let mut buf = Vec::with_capacity(128);
            for (key, entry) in batch.iter() {
                match &entry.ops {
                    KeyOps::Hash(fields) => {
                        for (field, by) in fields {
                            compose(key, field, &mut buf);
                            self.add_to(&buf, *by, key, &mut out)?;
                        }
                    }
                    KeyOps::Scores(members) => {
                        for (member, by) in members {
                            compose(key, member, &mut buf);
                            self.add_to(&buf, Number::Float(*by), key, &mut out)?;
                        }
                    }
                    KeyOps::Members(members) => {
                        for member in members {
                            compose(key, member, &mut buf);
                            out.insert(buf.as_slice(), &[][..]);
                        }
                    }
                    KeyOps::Hll(values) => {
                        let mut sketch = self.read_sketch(key)?.unwrap_or_default();
                        values.iter().for_each(|v| sketch.insert(v));
                        out.insert(key.as_bytes(), sketch.to_bytes());
                    }
                }
            }
            self.db.apply_batch(out).map_err(backend_error)?;
        }
        // Outside the lock: the next writers proceed while this one waits for the disk, and
        // writers waiting together share one flush.
        self.durable()
    }

    fn read(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
        let _reader = self.lock.read();
        reads.iter().map(|r| self.read_one(r)).collect()
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        {
            let _writer = self.lock.write();
            let mut out = sled::Batch::default();
            for key in keys {
                out.remove(key.as_bytes());
                let (start, end) = field_range(key);
                for item in self.db.range(start.as_slice()..end.as_slice()) {
                    let (k, _) = item.map_err(backend_error)?;
                    out.remove(k);
                }
            }
            self.db.apply_batch(out).map_err(backend_error)?;
        }
        self.durable()
    }

    /// Flushes sled's buffers and fsyncs, shared with concurrent callers.
    fn flush(&self) -> Result<()> {
        self.group
            .flush(|| self.db.flush().map(drop).map_err(backend_error))
    }
}
