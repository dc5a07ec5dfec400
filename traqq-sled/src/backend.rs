//! [`SledStorage`]: the [`Storage`] implementation over sled.

use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};
use parking_lot::RwLock;
use traqq_core::batch::{Batch, KeyOps, Number};
use traqq_core::claim::{id_range, is_id_set_key, Claims, Seen};
use traqq_core::read::{top_ranked, FieldSums, Read, ReadResult};
use traqq_core::sketch::{KeySketch, RawSketch, Sketch, SketchFamily};
use traqq_storage::claim_index::decode_chunks;
use traqq_storage::packed::{self, Entry};
use traqq_storage::{
    decode_sketch, Capabilities, ClaimIndex, Durability, Error, LabelIndex, Result, Storage,
};

use crate::codec::{FORMAT, FORMAT_KEY, UPGRADES_IN_PLACE};
use crate::config::SledConfig;
use crate::flush::GroupFlush;
use crate::log::{self, log_key, parse_log_key, LOG};
use crate::overlay::Overlay;
use traqq_storage::format::{sketch_family, NEW_STORE_SKETCHES, SKETCH_FAMILY_KEY};

const BACKEND: &str = "sled";
/// How long `open` waits for the lock of a store that is being closed.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// The log is folded into the data once it holds this many batches ...
const FOLD_BATCHES: usize = 64;
/// ... or this many distinct (key, field) operations.
const FOLD_OPS: usize = 200_000;

/// Batches logged but not yet folded into the data, and their sum.
#[derive(Debug, Default)]
struct Pending {
    /// The logged batches, coalesced: what reads add to the folded data.
    overlay: Overlay,
    /// `(seq, chunks)` of each logged batch.
    logged: Vec<(u64, u32)>,
    next_seq: u64,
}

/// A traqq store in a sled directory. `Send + Sync`: share it with an `Arc`.
///
/// sled's merge operators cannot take part in an atomic batch (sled issue #1175), and a
/// read-modify-write of every (key, field) of every batch costs ~7 µs each. So a batch is
/// written as one **log record** (one atomic `sled::Batch` of a few chunks, no reads) and
/// folded into an in-memory overlay that reads add in. Every 64 batches the overlay, coalesced
/// across all of them, is folded into the data with one read-modify-write pass that also
/// removes the folded log records, in one atomic `sled::Batch`. After a crash, reopening replays
/// the log records left: a batch is counted exactly once, whole or not at all.
pub struct SledStorage {
    db: sled::Db,
    path: PathBuf,
    config: SledConfig,
    /// Writers exclusive, readers shared: reads see the data and overlay of the same batches.
    pending: RwLock<Pending>,
    group: GroupFlush,
    /// The labels of the capped keys written (`[limits] max_labels`).
    labels: LabelIndex,
    /// The claimed event ids of the sets this process touched (`apply_claimed`).
    claims: ClaimIndex,
    /// The sketch family the store keeps (its marker).
    sketches: SketchFamily,
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
        sled::Error::Io(io) => Error::unavailable(BACKEND, io),
        other => Error::backend(BACKEND, other),
    }
}

/// Calls `f` with each field of the packed map `value` of `key` (borrowed from `value`).
fn each_entry<'v>(key: &str, value: &'v [u8], f: impl FnMut(&'v str, Entry) -> Result<()>) -> Result<()> {
    packed::each_field(value, f, |m| corrupt(key, m))
}

fn corrupt(key: &str, message: impl Into<String>) -> Error {
    Error::corrupt(BACKEND, key, message.into())
}

impl SledStorage {
    /// Opens the store at `path`, creating it when missing, and replays batches logged but not
    /// yet folded. Any store written by traqq opens, whatever prefixes or options it was
    /// written with. A locked (already open) or corrupt store is an [`Error::Open`] naming the
    /// path. sled releases its lock from background threads shortly after a store is dropped,
    /// so a store that stays locked is reported after waiting up to 10 seconds.
    pub fn open(path: impl AsRef<Path>, config: SledConfig) -> Result<SledStorage> {
        let path = path.as_ref().to_path_buf();
        let open_error = |message: String| Error::open(BACKEND, path.display().to_string(), message);
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
                // sled reports the lock as an `Other` I/O error whose text names it.
                Ok(Err(sled::Error::Io(e)))
                    if (e.kind() == ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock"))
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(Err(e)) => return Err(open_error(e.to_string())),
            }
        };
        let sketches = check_format(&db).map_err(open_error)?;
        let pending = replay(&db).map_err(open_error)?;
        Ok(SledStorage {
            db,
            path,
            config,
            pending: RwLock::new(pending),
            group: GroupFlush::default(),
            labels: LabelIndex::new(),
            claims: ClaimIndex::new(),
            sketches,
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

    /// Folds every logged batch into the data now (it happens by itself every 64 batches).
    pub fn fold(&self) -> Result<()> {
        self.fold_locked(&mut self.pending.write())
    }

    /// Logs `batch` as one record (see [`SledStorage`]). With `claims`, under the same writer
    /// lock: when a claimed id is already stored nothing is written and the ids are returned;
    /// otherwise the ids go into the record's atomic `sled::Batch` as one chunk per day (see
    /// [`ClaimIndex`]), so after a crash the ids and the operations are both there or neither is.
    fn log_batch(&self, batch: &Batch, claims: Option<&Claims>) -> Result<Vec<Seen>> {
        if batch.is_empty() && claims.is_none_or(Claims::is_empty) {
            return Ok(Vec::new());
        }
        let batch = self.labels.apply_caps(batch, |reads| self.read(reads))?;
        let batch = batch.as_ref();
        let chunks = log::encode(batch);
        {
            let mut pending = self.pending.write();
            let mut out = sled::Batch::default();
            // Held from the check to the write: no other batch takes the same id in between.
            let mut index = claims.map(|_| self.claims.lock());
            if let (Some(claims), Some(index)) = (claims, index.as_mut()) {
                let seen = index.seen(claims, |set| self.id_chunks(set))?;
                if !seen.is_empty() {
                    return Ok(seen);
                }
                for (key, value) in index.chunks(claims) {
                    out.insert(key, value);
                }
            }
            let seq = pending.next_seq;
            for (i, chunk) in chunks.iter().enumerate() {
                out.insert(&log_key(seq, i as u32)[..], chunk.as_slice());
            }
            // One atomic sled batch: the whole record is logged or none of it.
            self.db.apply_batch(out).map_err(backend_error)?;
            if let (Some(claims), Some(index)) = (claims, index.as_mut()) {
                index.commit(claims);
            }
            pending.next_seq += 1;
            pending.logged.push((seq, chunks.len() as u32));
            pending.overlay.add(batch);
            if pending.logged.len() >= FOLD_BATCHES || pending.overlay.op_count() >= FOLD_OPS {
                self.fold_locked(&mut pending)?;
            }
        }
        // Outside the lock: the next writers proceed while this one waits for the disk, and
        // writers waiting together share one flush.
        self.durable()?;
        Ok(Vec::new())
    }

    /// The values of the stored chunks of the id set `set` (see [`ClaimIndex`]).
    fn id_chunks(&self, set: &str) -> Result<Vec<Vec<u8>>> {
        let (start, end) = id_range(set);
        self.db
            .range(start..end)
            .map(|item| item.map(|(_, value)| value.to_vec()).map_err(backend_error))
            .collect()
    }

    fn durable(&self) -> Result<()> {
        match self.config.sync {
            Durability::None => Ok(()),
            Durability::Batch | Durability::Always => self.flush(),
        }
    }

    /// Folds the overlay into the data and drops the folded log records, atomically.
    fn fold_locked(&self, pending: &mut Pending) -> Result<()> {
        if pending.logged.is_empty() {
            return Ok(());
        }
        let mut out = sled::Batch::default();
        // One read and one write per key: its stored map merged with the coalesced updates.
        for (key, ops) in pending.overlay.iter() {
            let mut updates: Vec<(&[u8], Entry)> = match ops {
                KeyOps::Hash(fields) => fields
                    .iter()
                    .map(|(f, n)| (f.as_bytes(), Entry::Number(*n)))
                    .collect(),
                KeyOps::Scores(members) => members
                    .iter()
                    .map(|(m, by)| (m.as_bytes(), Entry::Number(Number::Float(*by))))
                    .collect(),
                KeyOps::Members(members) => members.iter().map(|m| (m.as_bytes(), Entry::Member)).collect(),
                KeyOps::Hll(values) => {
                    let mut sketch = self
                        .read_sketch(key)?
                        .unwrap_or_else(|| Sketch::new_in(self.sketches));
                    values.iter().for_each(|v| sketch.insert(v));
                    out.insert(key.as_bytes(), sketch.to_bytes());
                    continue;
                }
            };
            let stored = self.db.get(key.as_bytes()).map_err(backend_error)?;
            let folded = packed::fold_sorted(stored.as_deref(), &mut updates)
                .map_err(|m| corrupt(key, m.message()))?;
            out.insert(key.as_bytes(), folded);
        }
        for (seq, chunks) in &pending.logged {
            for chunk in 0..*chunks {
                out.remove(&log_key(*seq, chunk)[..]);
            }
        }
        self.db.apply_batch(out).map_err(backend_error)?;
        pending.overlay = Overlay::default();
        pending.logged.clear();
        Ok(())
    }

    /// Calls `f(field, entry)` for every folded entry of the map at `key`, in byte order.
    fn entries(&self, key: &str, f: impl FnMut(&str, Entry) -> Result<()>) -> Result<()> {
        match self.db.get(key.as_bytes()).map_err(backend_error)? {
            Some(value) => each_entry(key, &value, f),
            None => Ok(()),
        }
    }

    fn read_sketch(&self, key: &str) -> Result<Option<Sketch>> {
        match self.db.get(key.as_bytes()).map_err(backend_error)? {
            None => Ok(None),
            Some(bytes) => Sketch::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| corrupt(key, e.to_string())),
        }
    }

    fn read_one(&self, overlay: &Overlay, read: &Read) -> Result<ReadResult> {
        let pending = |key: &str| overlay.get(key);
        Ok(match read {
            Read::Hash(key) => self.read_one(overlay, &Read::Sum(vec![key.clone()]))?,
            Read::Sum(keys) => {
                let mut sums = FieldSums::default();
                for key in keys {
                    self.entries(key, |field, entry| match entry {
                        Entry::Number(n) => {
                            sums.add(field, n);
                            Ok(())
                        }
                        Entry::Member => Err(corrupt(key, format!("field {field:?} is not a number"))),
                    })?;
                    if let Some(KeyOps::Hash(more)) = pending(key) {
                        more.iter().for_each(|(field, by)| sums.add(field, *by));
                    }
                }
                sums.into_result()
            }
            Read::Count(keys) => {
                let mut union = Sketch::new_in(self.sketches);
                for key in keys {
                    if let Some(bytes) = self.db.get(key.as_bytes()).map_err(backend_error)? {
                        union
                            .merge_bytes(&bytes)
                            .map_err(|e| corrupt(key, e.to_string()))?;
                    }
                    if let Some(KeyOps::Hll(values)) = pending(key) {
                        values.iter().for_each(|v| union.insert(v));
                    }
                }
                ReadResult::Count(union.count())
            }
            Read::Top { keys, limit } => {
                // Leaderboards are read whole and cut to the top `limit` by partial selection
                // (per bucket they hold at most a few thousand members). Keys add up per member,
                // borrowed from the values read (kept until the end) and the log's overlay: only
                // the `limit` returned are copied.
                let mut values = Vec::with_capacity(keys.len());
                for key in keys {
                    if let Some(value) = self.db.get(key.as_bytes()).map_err(backend_error)? {
                        values.push((key, value));
                    }
                }
                let mut scores: HashMap<&str, f64> = HashMap::new();
                for (key, value) in &values {
                    each_entry(key, value, |member, entry| match entry {
                        Entry::Number(n) => {
                            *scores.entry(member).or_insert(0.0) += n.as_f64();
                            Ok(())
                        }
                        Entry::Member => Err(corrupt(key, format!("member {member:?} has no score"))),
                    })?;
                }
                for key in keys {
                    if let Some(KeyOps::Scores(more)) = pending(key) {
                        for (member, by) in more {
                            *scores.entry(member).or_insert(0.0) += by;
                        }
                    }
                }
                let mut members: Vec<(&str, f64)> = scores.into_iter().collect();
                top_ranked(&mut members, *limit);
                ReadResult::Top(members.into_iter().map(|(m, s)| (m.to_owned(), s)).collect())
            }
            Read::Members(key) => {
                let mut members: HashSet<String> = HashSet::new();
                self.entries(key, |member, entry| match entry {
                    Entry::Member => {
                        members.insert(member.to_owned());
                        Ok(())
                    }
                    Entry::Number(_) => Err(corrupt(key, format!("{member:?} is not a set member"))),
                })?;
                if let Some(KeyOps::Members(more)) = pending(key) {
                    members.extend(more.iter().map(str::to_owned));
                }
                ReadResult::Members(members.into_iter().collect())
            }
        })
    }
}

/// Refuses a store written with another layout; marks a new (empty) store, or one of a layout
/// this version reads as its own ([`UPGRADES_IN_PLACE`]), with this one. Then the sketch family
/// the store keeps: its marker's, or for a new store [`NEW_STORE_SKETCHES`] (marked).
fn check_format(db: &sled::Db) -> std::result::Result<SketchFamily, String> {
    let created = check_layout(db)?;
    let marker = db.get(SKETCH_FAMILY_KEY).map_err(|e| e.to_string())?;
    if marker.is_none() && created {
        db.insert(SKETCH_FAMILY_KEY, NEW_STORE_SKETCHES.as_str())
            .map_err(|e| e.to_string())?;
        db.flush().map_err(|e| e.to_string())?;
        return Ok(NEW_STORE_SKETCHES);
    }
    sketch_family(marker.as_deref())
}

/// The layout half of [`check_format`]; whether the store was created by this open.
fn check_layout(db: &sled::Db) -> std::result::Result<bool, String> {
    match db.get(FORMAT_KEY).map_err(|e| e.to_string())? {
        Some(v) if v == FORMAT => Ok(false),
        Some(v) if UPGRADES_IN_PLACE.contains(&&*v) => mark(db).map(|()| false),
        Some(v) => Err(traqq_storage::format::other_format_message(
            "traqq-sled",
            &v,
            FORMAT,
        )),
        None if db.first().map_err(|e| e.to_string())?.is_some() => Err(
            "written with traqq-sled store format 1 (one key per field); this version reads \
             formats 2 to 4 only: record the data again into a new store"
                .into(),
        ),
        None => mark(db).map(|()| true),
    }
}

fn mark(db: &sled::Db) -> std::result::Result<(), String> {
    db.insert(FORMAT_KEY, FORMAT).map_err(|e| e.to_string())?;
    db.flush().map(drop).map_err(|e| e.to_string())
}

/// Reads the log records left by the last run into a fresh overlay.
fn replay(db: &sled::Db) -> std::result::Result<Pending, String> {
    type Record = Option<(u64, u32, Vec<u8>)>;
    fn finish(p: &mut Pending, done: Record) -> std::result::Result<(), String> {
        if let Some((seq, chunks, bytes)) = done {
            log::decode_into(&bytes, &mut p.overlay)
                .ok_or_else(|| format!("logged batch {seq} is damaged"))?;
            p.logged.push((seq, chunks));
            p.next_seq = seq + 1;
        }
        Ok(())
    }
    let mut pending = Pending::default();
    let mut current: Record = None;
    for item in db.range(&[LOG][..]..) {
        let (k, v) = item.map_err(|e| e.to_string())?;
        let (seq, chunk) = parse_log_key(&k).ok_or("a log key is damaged")?;
        match &mut current {
            Some((s, chunks, bytes)) if *s == seq && *chunks == chunk => {
                bytes.extend_from_slice(&v);
                *chunks += 1;
            }
            _ if chunk == 0 => {
                let done = current.replace((seq, 1, v.to_vec()));
                finish(&mut pending, done)?;
            }
            _ => return Err(format!("logged batch {seq} misses chunks")),
        }
    }
    finish(&mut pending, current)?;
    Ok(pending)
}

impl Storage for SledStorage {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(true, true).with_sketches(self.sketches)
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        self.log_batch(batch, None).map(drop)
    }

    fn apply_claimed(&self, batch: &Batch, claims: &Claims) -> Result<Vec<Seen>> {
        self.log_batch(batch, Some(claims))
    }

    fn read(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
        let pending = self.pending.read();
        reads.iter().map(|r| self.read_one(&pending.overlay, r)).collect()
    }

    fn labels_overflowed(&self) -> u64 {
        self.labels.overflowed()
    }

    fn read_sketches(&self, keys: &[String]) -> Result<Vec<Option<RawSketch>>> {
        let pending = self.pending.read();
        keys.iter()
            .map(|key| {
                let stored = self.read_sketch(key)?;
                let logged = match pending.overlay.get(key) {
                    Some(KeyOps::Hll(values)) => Some(values),
                    _ => None,
                };
                if stored.is_none() && logged.is_none() {
                    return Ok(None);
                }
                let mut sketch = stored.unwrap_or_else(|| Sketch::new_in(self.sketches));
                logged.into_iter().flatten().for_each(|v| sketch.insert(v));
                Ok(Some(sketch.to_raw()))
            })
            .collect()
    }

    fn read_ids(&self, set_keys: &[String]) -> Result<Vec<Vec<u128>>> {
        set_keys
            .iter()
            .map(|key| decode_chunks(key, &self.id_chunks(key)?))
            .collect()
    }

    fn write_sketches(&self, sketches: &[KeySketch]) -> Result<()> {
        let decoded = sketches
            .iter()
            .map(|entry| decode_sketch(BACKEND, self.sketches, entry).map(|s| s.to_bytes()))
            .collect::<Result<Vec<Vec<u8>>>>()?;
        {
            let mut pending = self.pending.write();
            // Fold first: no logged insert may land on a replaced sketch at replay.
            self.fold_locked(&mut pending)?;
            let mut out = sled::Batch::default();
            for (entry, bytes) in sketches.iter().zip(decoded) {
                if let Some(held) = self.db.get(entry.key.as_bytes()).map_err(backend_error)? {
                    Sketch::from_bytes(&held).map_err(|_| {
                        Error::backend(
                            BACKEND,
                            format!("key {:?} cannot take a sketch: it holds another type", entry.key),
                        )
                    })?;
                }
                out.insert(entry.key.as_bytes(), bytes);
            }
            self.db.apply_batch(out).map_err(backend_error)?;
        }
        self.durable()
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        self.labels.forget(keys);
        self.claims.forget(keys);
        {
            let mut pending = self.pending.write();
            // Fold first, so no logged operation revives a deleted key on replay.
            self.fold_locked(&mut pending)?;
            let mut out = sled::Batch::default();
            for key in keys {
                out.remove(key.as_bytes());
                // A day's id set is one key per id (see `log_batch`).
                if is_id_set_key(key) {
                    let (start, end) = id_range(key);
                    for entry in self.db.range(start..end) {
                        let (id_key, _) = entry.map_err(backend_error)?;
                        out.remove(id_key);
                    }
                }
            }
            self.db.apply_batch(out).map_err(backend_error)?;
        }
        self.durable()
    }

    fn remove_members(&self, key: &str, members: &[String]) -> Result<()> {
        {
            // Writers are exclusive: no batch adds a member in between the read and the write.
            let mut pending = self.pending.write();
            self.fold_locked(&mut pending)?;
            let Some(value) = self.db.get(key.as_bytes()).map_err(backend_error)? else {
                return Ok(());
            };
            let kept = packed::without_fields(&value, members).map_err(|m| corrupt(key, m.message()))?;
            match kept {
                Some(map) => self.db.insert(key.as_bytes(), map).map(drop),
                None => self.db.remove(key.as_bytes()).map(drop),
            }
            .map_err(backend_error)?;
        }
        self.durable()
    }

    /// Flushes sled's buffers and fsyncs, shared with concurrent callers.
    fn flush(&self) -> Result<()> {
        self.group
            .flush(|| self.db.flush().map(drop).map_err(backend_error))
    }
}

impl Drop for SledStorage {
    fn drop(&mut self) {
        // Best effort: leave the data folded and on disk. Anything not folded is replayed.
        let mut pending = std::mem::take(self.pending.get_mut());
        let _ = self.fold_locked(&mut pending);
        let _ = self.db.flush();
    }
}
