//! Dumps: a store's metrics as NDJSON, written by [`export`] and read back by [`restore`]
//! (`traqq export` / `traqq restore`), to back a store up or move it to another backend.
//!
//! ```text
//! {"traqq_dump":1,"prefix":"myapp","sketches":"traqq"}
//! {"bucket":"d","start":1764201600,"key":"myapp:add:d:1764201600:event","hash":{"buy":2,"view":9}}
//! {"bucket":"d","start":1764201600,"key":"myapp:adv:d:1764201600:amount:event","hash":{"buy":19.5}}
//! {"bucket":"d","start":1764201600,"key":"myapp:top:d:1764201600:geo","top":{"US":5.0,"DE":4.0}}
//! {"bucket":"d","start":1764201600,"key":"myapp:bmp:d:1764201600:ip","sketch":"AQ4..."}
//! {"bucket":"d","start":1764201600,"key":"myapp:ids:d:1764201600","ids":"3q2+7..."}
//! ```
//!
//! The first line names the dump format, the prefix and the family of the unique-count
//! sketches ([`SketchFamily`]); then one line per stored key, buckets oldest first, then the
//! id sets of exactly-once ingest (`[event] id_field`, [`traqq_core::claim`]), oldest first,
//! their ids as 16 big-endian bytes each, in order, in base64. Counters
//! are JSON integers and sums JSON numbers with a fraction or exponent (`5.0`), written and
//! read back exactly (shortest round-trip form; infinities as `"inf"`/`"-inf"`); leaderboards
//! list members best first; sketches are the stored bytes in base64. Exporting a store and
//! restoring the dump into an empty one gives a store whose own export is the same text.
//!
//! Sketches move only between stores of the same family: Redis's HyperLogLogs and traqq's
//! hash values differently, and the values themselves are not kept. [`RestoreOptions`] can
//! leave them out to move everything else.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, Write};

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use traqq_core::batch::{Batch, Number};
use traqq_core::bucket::{BucketKind, Calendar};
use traqq_core::claim::{decode_ids, encode_ids, Claim, Claims, IdPolicy};
use traqq_core::key::{
    bucket_registry_key, decode_id_set_key, decode_key_set_key, id_registry_key, key_set_key,
    register_buckets, MetricKey, MetricType,
};
use traqq_core::read::{Read, ReadResult};
use traqq_core::sketch::{KeySketch, RawSketch, SketchFamily};

use crate::{Error, Result, Storage};

/// The dump format this version writes and reads.
pub const DUMP_FORMAT: u32 = 1;

/// Keys read from the store in one call while exporting.
const READ_CHUNK: usize = 256;
/// Operations restored in one batch.
const RESTORE_OPS: usize = 20_000;
/// Sketches restored in one call.
const RESTORE_SKETCHES: usize = 256;

/// What an export or a restore moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Buckets (days, hours, quarter hours).
    pub buckets: usize,
    /// Keys, sketches included.
    pub keys: usize,
    /// Of those, unique-count sketches.
    pub sketches: usize,
    /// Sketches a restore left out ([`RestoreOptions::skip_sketches`]).
    pub skipped_sketches: usize,
    /// Id sets of exactly-once ingest (one per day).
    pub id_sets: usize,
    /// The ids in them.
    pub ids: usize,
    /// Id sets a restore left out (no [`RestoreOptions::ids`]: the target does not dedupe).
    pub skipped_id_sets: usize,
}

/// Which buckets [`export`] writes: those starting within `from..=to` (unix seconds; `None`:
/// unbounded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportRange {
    /// Earliest bucket start.
    pub from: Option<i64>,
    /// Latest bucket start.
    pub to: Option<i64>,
}

impl ExportRange {
    fn holds(self, start: i64) -> bool {
        self.from.is_none_or(|f| start >= f) && self.to.is_none_or(|t| start <= t)
    }
}

/// How [`restore`] treats what it cannot restore exactly, and how it claims event ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Restore everything but the unique-count sketches when the dump's sketches are of
    /// another family than the store's (otherwise that is an error before anything is
    /// written).
    pub skip_sketches: bool,
    /// The target's `[event] id_field` policy and its calendar: the dump's id sets are claimed
    /// under them (kept, and on Redis expiring, as `dedup_days` says). `None` (no `id_field`):
    /// they are left out and counted in [`DumpSummary::skipped_id_sets`].
    pub ids: Option<(IdPolicy, Calendar)>,
}

fn dump_error(message: impl Into<String>) -> Error {
    Error::Dump(message.into())
}

fn write_error(e: std::io::Error) -> Error {
    dump_error(format!("writing the dump: {e}"))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header<'a> {
    traqq_dump: u32,
    #[serde(borrow)]
    prefix: Cow<'a, str>,
    sketches: Option<SketchFamily>,
}

/// A counter or sum as the dump writes it: integers as integers, floats with a fraction or
/// exponent, non-finite floats as strings (JSON has no number for them).
struct DumpNumber(Number);

impl Serialize for DumpNumber {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Number::Int(n) => s.serialize_i64(n),
            Number::Float(x) if x.is_finite() => s.serialize_f64(x),
            Number::Float(x) if x.is_nan() => s.serialize_str("nan"),
            Number::Float(x) if x > 0.0 => s.serialize_str("inf"),
            Number::Float(_) => s.serialize_str("-inf"),
        }
    }
}

/// Fields and their numbers, written in the given order.
struct Fields<'a>(&'a [(String, Number)]);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (field, n) in self.0 {
            map.serialize_entry(field, &DumpNumber(*n))?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct KeyLineOut<'a> {
    bucket: &'a str,
    start: i64,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<Fields<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top: Option<Fields<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sketch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ids: Option<String>,
}

impl<'a> KeyLineOut<'a> {
    fn new(kind: BucketKind, start: i64, key: &'a str) -> Self {
        KeyLineOut {
            bucket: kind.as_str(),
            start,
            key,
            hash: None,
            top: None,
            sketch: None,
            ids: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyLineIn<'a> {
    #[serde(borrow)]
    bucket: Cow<'a, str>,
    start: i64,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default, borrow)]
    hash: Option<HashMap<Cow<'a, str>, &'a RawValue>>,
    #[serde(default, borrow)]
    top: Option<HashMap<Cow<'a, str>, &'a RawValue>>,
    #[serde(default, borrow)]
    sketch: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    ids: Option<Cow<'a, str>>,
}

/// Writes the metrics of `prefix` in `storage`, buckets within `range`, to `out` as a dump
/// (see the module docs). Reads through the bucket registry, as retention does: data of traqq
/// 0.2 or trk2 is included once `traqq migrate` has registered its buckets.
pub fn export(
    storage: &dyn Storage,
    prefix: &str,
    range: ExportRange,
    out: &mut dyn Write,
) -> Result<DumpSummary> {
    traqq_core::key::validate_prefix(prefix)?;
    let family = storage.capabilities().sketches;
    let header = Header {
        traqq_dump: DUMP_FORMAT,
        prefix: Cow::Borrowed(prefix),
        sketches: family,
    };
    write_line(out, &header)?;
    let mut buckets: Vec<(i64, BucketKind, String)> = members(storage, &bucket_registry_key(prefix))?
        .into_iter()
        .filter_map(|set| decode_key_set_key(prefix, &set).map(|(kind, start)| (start, kind, set)))
        .filter(|(start, _, _)| range.holds(*start))
        .collect();
    buckets.sort();
    let mut summary = DumpSummary::default();
    for (start, kind, set) in &buckets {
        let mut keys = members(storage, set)?;
        keys.sort();
        let mut exported = false;
        for chunk in keys.chunks(READ_CHUNK) {
            let n = export_keys(storage, prefix, (*kind, *start), chunk, family, out, &mut summary)?;
            exported |= n > 0;
        }
        summary.buckets += usize::from(exported);
    }
    export_id_sets(storage, prefix, range, out, &mut summary)?;
    out.flush().map_err(write_error)?;
    Ok(summary)
}

/// Exports the id sets of `prefix` whose days are within `range` (listed in the id registry;
/// a set gone, e.g. expired on Redis, is left out). Ids are sorted so that every store writes
/// the same text.
fn export_id_sets(
    storage: &dyn Storage,
    prefix: &str,
    range: ExportRange,
    out: &mut dyn Write,
    summary: &mut DumpSummary,
) -> Result<()> {
    let mut sets: Vec<(i64, String)> = members(storage, &id_registry_key(prefix))?
        .into_iter()
        .filter_map(|set| decode_id_set_key(prefix, &set).map(|day| (day, set)))
        .filter(|(day, _)| range.holds(*day))
        .collect();
    sets.sort();
    for chunk in sets.chunks(READ_CHUNK) {
        let keys: Vec<String> = chunk.iter().map(|(_, key)| key.clone()).collect();
        for ((day, key), mut ids) in chunk.iter().zip(storage.read_ids(&keys)?) {
            if ids.is_empty() {
                continue;
            }
            ids.sort_unstable();
            write_line(
                out,
                &KeyLineOut {
                    ids: Some(data_encoding::BASE64.encode(&encode_ids(&ids))),
                    ..KeyLineOut::new(BucketKind::Day, *day, key)
                },
            )?;
            summary.id_sets += 1;
            summary.ids += ids.len();
        }
    }
    Ok(())
}

/// Exports one bucket's `keys` (those still held; a key listed but gone is left out).
fn export_keys(
    storage: &dyn Storage,
    prefix: &str,
    (kind, start): (BucketKind, i64),
    keys: &[String],
    family: Option<SketchFamily>,
    out: &mut dyn Write,
    summary: &mut DumpSummary,
) -> Result<usize> {
    let mut reads = Vec::new();
    let mut sketch_keys = Vec::new();
    for key in keys {
        let metric = MetricKey::decode(prefix, key)
            .map_err(|e| {
                dump_error(format!(
                    "key {key:?} of bucket {kind}:{start} is not a metric key: {e}"
                ))
            })?
            .metric;
        match metric {
            MetricType::Bmp => sketch_keys.push(key.clone()),
            MetricType::Top => reads.push(Read::Top {
                keys: vec![key.clone()],
                limit: usize::MAX,
            }),
            MetricType::Add | MetricType::Adv | MetricType::Dst => reads.push(Read::Hash(key.clone())),
        }
    }
    let answers = storage.read(&reads)?;
    let sketches = if sketch_keys.is_empty() {
        Vec::new()
    } else if family.is_none() {
        return Err(dump_error(format!(
            "key {:?}: this store cannot export its unique-count sketches",
            sketch_keys[0]
        )));
    } else {
        storage.read_sketches(&sketch_keys)?
    };
    let mut written = 0;
    let line = |key| KeyLineOut::new(kind, start, key);
    for (read, answer) in reads.iter().zip(answers) {
        match (read, answer) {
            (Read::Hash(key), ReadResult::Hash(mut fields)) => {
                if fields.is_empty() {
                    continue;
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                write_line(
                    out,
                    &KeyLineOut {
                        hash: Some(Fields(&fields)),
                        ..line(key)
                    },
                )?;
            }
            (Read::Top { keys, .. }, ReadResult::Top(members)) => {
                let Some(key) = keys.first().filter(|_| !members.is_empty()) else {
                    continue;
                };
                let fields: Vec<(String, Number)> =
                    members.into_iter().map(|(m, s)| (m, Number::Float(s))).collect();
                write_line(
                    out,
                    &KeyLineOut {
                        top: Some(Fields(&fields)),
                        ..line(key)
                    },
                )?;
            }
            (_, other) => {
                return Err(dump_error(format!(
                    "the store answered a read of {:?} with a {} answer",
                    read,
                    other.kind()
                )))
            }
        }
        written += 1;
    }
    for (key, sketch) in sketch_keys.iter().zip(sketches) {
        let Some(sketch) = sketch else { continue };
        let text = data_encoding::BASE64.encode(&sketch.bytes);
        write_line(
            out,
            &KeyLineOut {
                sketch: Some(text),
                ..line(key)
            },
        )?;
        summary.sketches += 1;
        written += 1;
    }
    summary.keys += written;
    Ok(written)
}

fn write_line(out: &mut dyn Write, value: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(|e| dump_error(format!("writing the dump: {e}")))?;
    out.write_all(b"\n").map_err(write_error)
}

fn members(storage: &dyn Storage, key: &str) -> Result<Vec<String>> {
    match storage.read(&[Read::Members(key.to_owned())])?.pop() {
        Some(ReadResult::Members(m)) => Ok(m),
        other => Err(dump_error(format!(
            "the store answered the set {key:?} with a {} answer",
            other.as_ref().map_or("missing", ReadResult::kind)
        ))),
    }
}

/// Restores a dump written by [`export`] into `storage` under `prefix` (the dump's keys move
/// from its prefix to this one). The store must hold nothing under `prefix` yet: counters add,
/// so restoring into data would count twice. Errors name the dump's line.
pub fn restore(
    storage: &dyn Storage,
    prefix: &str,
    input: &mut dyn BufRead,
    options: RestoreOptions,
) -> Result<DumpSummary> {
    traqq_core::key::validate_prefix(prefix)?;
    let held = members(storage, &bucket_registry_key(prefix))?;
    if !held.is_empty() {
        return Err(dump_error(format!(
            "the store already holds {} buckets under prefix {prefix:?}: restore into an empty store or another prefix \
             (counters would add up to the data already there)",
            held.len()
        )));
    }
    let held = members(storage, &id_registry_key(prefix))?;
    if !held.is_empty() {
        return Err(dump_error(format!(
            "the store already holds {} id sets under prefix {prefix:?}: restore into an empty store or another prefix",
            held.len()
        )));
    }
    let mut lines = DumpLines {
        input,
        text: String::new(),
        number: 0,
    };
    let Some((number, first)) = lines.next()? else {
        return Err(dump_error("the dump is empty (no traqq_dump header line)"));
    };
    let header = parse_header(first, number)?;
    let (from, family) = (header.prefix.into_owned(), header.sketches);
    let target_family = storage.capabilities().sketches;
    let keep_sketches = match family {
        Some(family) if Some(family) != target_family => {
            if !options.skip_sketches {
                return Err(dump_error(format!(
                    "the dump's unique-count sketches are {family} sketches and this store keeps {}: they cannot be \
                     converted (the two hash values differently and the values are not kept); restore without them \
                     (`--skip-sketches`) to move everything else",
                    target_family.map_or("none", SketchFamily::as_str)
                )));
            }
            false
        }
        _ => true,
    };
    let mut restorer = Restorer {
        storage,
        from,
        to: prefix,
        keep_sketches,
        ids: options.ids,
        claims: Claims::new(),
        id_days: hashbrown::HashSet::new(),
        batch: Batch::new(),
        sketches: Vec::new(),
        buckets: hashbrown::HashSet::new(),
        new_buckets: Vec::new(),
        summary: DumpSummary::default(),
    };
    while let Some((number, line)) = lines.next()? {
        restorer
            .line(line)
            .map_err(|message| dump_error(format!("dump line {number}: {message}")))?;
        restorer.write_if_full()?;
    }
    restorer.write()?;
    restorer.summary.buckets = restorer.buckets.len();
    Ok(restorer.summary)
}

/// A dump's non-blank lines, read into one reused buffer and numbered from 1.
struct DumpLines<'i> {
    input: &'i mut dyn BufRead,
    text: String,
    number: u64,
}

impl DumpLines<'_> {
    /// The next non-blank line and its number; `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, &str)>> {
        loop {
            self.text.clear();
            let read = self
                .input
                .read_line(&mut self.text)
                .map_err(|e| dump_error(format!("reading the dump: {e}")))?;
            if read == 0 {
                return Ok(None);
            }
            self.number += 1;
            if !self.text.trim().is_empty() {
                return Ok(Some((self.number, &self.text)));
            }
        }
    }
}

fn parse_header(text: &str, line_no: u64) -> Result<Header<'_>> {
    #[derive(Deserialize)]
    struct Version {
        traqq_dump: Option<u32>,
    }
    let version: Version = serde_json::from_str(text)
        .map_err(|e| dump_error(format!("dump line {line_no}: not a traqq dump header: {e}")))?;
    match version.traqq_dump {
        Some(DUMP_FORMAT) => {}
        Some(v) if v > DUMP_FORMAT => {
            return Err(dump_error(format!(
                "dump format {v} was written by a newer traqq; this version reads format {DUMP_FORMAT}"
            )))
        }
        Some(v) => {
            return Err(dump_error(format!(
                "dump format {v} is not one this version reads ({DUMP_FORMAT})"
            )))
        }
        None => {
            return Err(dump_error(format!(
                "dump line {line_no}: not a traqq dump header (no \"traqq_dump\" field)"
            )))
        }
    }
    serde_json::from_str(text).map_err(|e| dump_error(format!("dump line {line_no}: {e}")))
}

/// The state of one restore: what is waiting to be written.
struct Restorer<'s> {
    storage: &'s dyn Storage,
    from: String,
    to: &'s str,
    keep_sketches: bool,
    /// [`RestoreOptions::ids`].
    ids: Option<(IdPolicy, Calendar)>,
    /// Ids waiting to be claimed with the batch.
    claims: Claims,
    /// The days whose id sets were read (a dump holds each once).
    id_days: hashbrown::HashSet<i64>,
    batch: Batch,
    sketches: Vec<KeySketch>,
    buckets: hashbrown::HashSet<(BucketKind, i64)>,
    /// Buckets first seen since the last write: registered with it.
    new_buckets: Vec<(i64, BucketKind)>,
    summary: DumpSummary,
}

impl Restorer<'_> {
    /// Adds one key line to what is waiting; the error is the line's fault.
    fn line(&mut self, text: &str) -> std::result::Result<(), String> {
        let line: KeyLineIn<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let kind = BucketKind::parse(&line.bucket)
            .ok_or_else(|| format!("bucket {:?} is not d, h or q", line.bucket))?;
        let bucket = (kind, line.start);
        let key = match line
            .key
            .strip_prefix(self.from.as_str())
            .and_then(|k| k.strip_prefix(':'))
        {
            Some(rest) => format!("{}:{rest}", self.to),
            None => {
                return Err(format!(
                    "key {:?} is not under the dump's prefix {:?}",
                    line.key, self.from
                ))
            }
        };
        if let Some(day) = decode_id_set_key(self.to, &key) {
            return self.id_line(&line, &key, day);
        }
        let metric = MetricKey::decode(self.to, &key).map_err(|e| format!("key {:?}: {e}", line.key))?;
        if (metric.bucket, metric.timestamp) != bucket {
            return Err(format!(
                "key {:?} is not of bucket {}:{} (the line's bucket and start)",
                line.key, line.bucket, line.start
            ));
        }
        let want = match metric.metric {
            MetricType::Bmp => "sketch",
            MetricType::Top => "top",
            MetricType::Add | MetricType::Adv | MetricType::Dst => "hash",
        };
        let given: Vec<&str> = [
            ("hash", line.hash.is_some()),
            ("top", line.top.is_some()),
            ("sketch", line.sketch.is_some()),
            ("ids", line.ids.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        if given != [want] {
            return Err(format!(
                "key {:?} is a {} metric: its line holds \"{want}\" (and nothing else of hash, top, sketch, ids)",
                line.key, metric.metric
            ));
        }
        if let Some(fields) = &line.hash {
            for (field, raw) in fields {
                let n =
                    number(raw).ok_or_else(|| format!("field {field:?}: {} is not a number", raw.get()))?;
                self.batch.incr(&key, bucket, field, n);
            }
        } else if let Some(members) = &line.top {
            for (member, raw) in members {
                let score =
                    number(raw).ok_or_else(|| format!("member {member:?}: {} is not a score", raw.get()))?;
                self.batch.zincr(&key, bucket, member, score.as_f64());
            }
        } else if let Some(text) = &line.sketch {
            if !self.keep_sketches {
                self.summary.skipped_sketches += 1;
                return Ok(());
            }
            let bytes = data_encoding::BASE64
                .decode(text.as_bytes())
                .map_err(|e| format!("key {:?}: the sketch is not base64: {e}", line.key))?;
            let family = self
                .storage
                .capabilities()
                .sketches
                .unwrap_or(SketchFamily::Traqq);
            self.sketches.push(KeySketch {
                key: key.clone(),
                bucket,
                sketch: RawSketch { family, bytes },
            });
            self.summary.sketches += 1;
        }
        self.batch
            .sadd(&key_set_key(self.to, kind, line.start), bucket, &key);
        if self.buckets.insert(bucket) {
            self.new_buckets.push((line.start, kind));
        }
        self.summary.keys += 1;
        Ok(())
    }

    /// Adds the line of the id set `key` (of the day starting at `day`) to the claims waiting.
    fn id_line(&mut self, line: &KeyLineIn<'_>, key: &str, day: i64) -> std::result::Result<(), String> {
        if (line.bucket.as_ref(), line.start) != ("d", day) {
            return Err(format!(
                "id set {:?} is of day {day}: its line's bucket and start are \"d\" and {day}",
                line.key
            ));
        }
        let text = match (&line.ids, &line.hash, &line.top, &line.sketch) {
            (Some(text), None, None, None) => text,
            _ => {
                return Err(format!(
                    "key {:?} is an id set: its line holds \"ids\" (and nothing else of hash, top, sketch)",
                    line.key
                ))
            }
        };
        if !self.id_days.insert(day) {
            return Err(format!("id set {:?} is in the dump twice", line.key));
        }
        let Some((policy, calendar)) = &self.ids else {
            self.summary.skipped_id_sets += 1;
            return Ok(());
        };
        let bytes = data_encoding::BASE64
            .decode(text.as_bytes())
            .map_err(|e| format!("id set {:?}: the ids are not base64: {e}", line.key))?;
        let ids = decode_ids(&bytes)
            .ok_or_else(|| format!("id set {:?}: {} bytes of ids (16 each)", line.key, bytes.len()))?;
        let mut count = 0;
        for id in ids {
            policy.add(&mut self.claims, self.to, calendar, Claim { day, id });
            count += 1;
        }
        self.batch
            .sadd(&id_registry_key(self.to), (BucketKind::Day, day), key);
        self.summary.id_sets += 1;
        self.summary.ids += count;
        Ok(())
    }

    fn write_if_full(&mut self) -> Result<()> {
        if self.batch.op_count() >= RESTORE_OPS
            || self.sketches.len() >= RESTORE_SKETCHES
            || self.claims.len() >= RESTORE_OPS
        {
            self.write()?;
        }
        Ok(())
    }

    /// Writes what is waiting: sketches first, then the batch that lists their keys in the
    /// key sets, so a key is never registered before it holds its data.
    fn write(&mut self) -> Result<()> {
        if !self.sketches.is_empty() {
            self.storage.write_sketches(&self.sketches)?;
            self.sketches.clear();
        }
        register_buckets(&mut self.batch, self.to, std::mem::take(&mut self.new_buckets));
        let batch = std::mem::take(&mut self.batch);
        let claims = std::mem::take(&mut self.claims);
        if !claims.is_empty() {
            // The store was empty and each set is read once: nothing can have been seen,
            // unless another writer claims ids under this prefix meanwhile.
            if let Some(seen) = self.storage.apply_claimed(&batch, &claims)?.first() {
                return Err(dump_error(format!(
                    "id {:032x} of set {:?} was claimed in the store during the restore (restore before writers start)",
                    seen.id,
                    claims.sets()[seen.set].key
                )));
            }
        } else if !batch.is_empty() {
            self.storage.apply(&batch)?;
        }
        Ok(())
    }
}

/// A dumped number: JSON integers are counters, numbers with a fraction or exponent sums;
/// `"inf"`, `"-inf"` and `"nan"` the floats JSON cannot write. Parsed from the text with the
/// standard library (exact round trip).
fn number(raw: &RawValue) -> Option<Number> {
    let text = raw.get();
    match text {
        "\"inf\"" => Some(Number::Float(f64::INFINITY)),
        "\"-inf\"" => Some(Number::Float(f64::NEG_INFINITY)),
        "\"nan\"" => Some(Number::Float(f64::NAN)),
        _ if text.contains(['.', 'e', 'E']) => text.parse().ok().map(Number::Float),
        _ => text.parse().ok().map(Number::Int),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStorage, StorageExt};

    const HEADER: &str = r#"{"traqq_dump":1,"prefix":"a","sketches":"traqq"}"#;

    fn restore_text(store: &MemoryStorage, text: &str) -> Result<DumpSummary> {
        restore(store, "b", &mut text.as_bytes(), RestoreOptions::default())
    }

    #[test]
    fn restores_numbers_exactly_under_the_new_prefix() {
        let store = MemoryStorage::new();
        let text = format!(
            "{HEADER}\n\n{}\n{}\n",
            r#"{"bucket":"d","start":86400,"key":"a:adv:d:86400:amount:event","hash":{"x":0.1,"y":3.0,"z":"-inf","n":7}}"#,
            r#"{"bucket":"h","start":90000,"key":"a:top:h:90000:geo","top":{"US":2.5,"DE":1}}"#
        );
        let summary = restore_text(&store, &text).unwrap();
        assert_eq!((summary.buckets, summary.keys, summary.sketches), (2, 2, 0));
        let mut h = store.read_hash("b:adv:d:86400:amount:event").unwrap();
        h.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            h,
            vec![
                ("n".to_owned(), Number::Int(7)),
                ("x".to_owned(), Number::Float(0.1)),
                ("y".to_owned(), Number::Float(3.0)),
                ("z".to_owned(), Number::Float(f64::NEG_INFINITY)),
            ]
        );
        assert_eq!(
            store.top("b:top:h:90000:geo", 10).unwrap(),
            vec![("US".to_owned(), 2.5), ("DE".to_owned(), 1.0)]
        );
        let mut out = Vec::new();
        export(&store, "b", ExportRange::default(), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(r#""hash":{"n":7,"x":0.1,"y":3.0,"z":"-inf"}"#),
            "{out}"
        );
    }

    #[test]
    fn a_line_that_does_not_fit_its_key_is_refused_naming_the_line() {
        let bad = [
            (
                r#"{"bucket":"d","start":86400,"key":"a:add:d:86400:geo","top":{"US":1.0}}"#,
                "holds \"hash\"",
            ),
            (
                r#"{"bucket":"d","start":86400,"key":"a:top:d:86400:geo","hash":{"US":1}}"#,
                "holds \"top\"",
            ),
            (
                r#"{"bucket":"d","start":86400,"key":"a:add:d:86400:geo","hash":{"US":1},"top":{}}"#,
                "nothing else",
            ),
            (
                r#"{"bucket":"d","start":86400,"key":"a:add:d:16:geo","hash":{"US":1}}"#,
                "not of bucket",
            ),
            (
                r#"{"bucket":"h","start":86400,"key":"a:add:d:86400:geo","hash":{"US":1}}"#,
                "not of bucket",
            ),
            (
                r#"{"bucket":"d","start":86400,"key":"x:add:d:86400:geo","hash":{"US":1}}"#,
                "prefix",
            ),
            (
                r#"{"bucket":"d","start":86400,"key":"a:add:d:86400:geo","hash":{"US":"1"}}"#,
                "not a number",
            ),
            (
                r#"{"bucket":"d","start":86400,"key":"a:bmp:d:86400:ip","sketch":"%%%"}"#,
                "base64",
            ),
            (
                r#"{"bucket":"d","start":86400,"key":"a:add:d:86400:geo","hash":{"US":1},"extra":1}"#,
                "extra",
            ),
            (
                r#"{"bucket":"h","start":86400,"key":"a:ids:d:86400","ids":""}"#,
                "is of day",
            ),
            (
                r#"{"bucket":"d","start":86400,"key":"a:ids:d:86400","hash":{"x":1}}"#,
                "is an id set",
            ),
            (
                r#"{"bucket":"d","start":86400,"key":"a:add:d:86400:geo","ids":"AAAA"}"#,
                "holds \"hash\"",
            ),
        ];
        for (line, says) in bad {
            let store = MemoryStorage::new();
            let e = restore_text(&store, &format!("{HEADER}\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("dump line 2:") && e.contains(says), "{line}: {e}");
        }
        let with_ids = RestoreOptions {
            ids: Some((
                IdPolicy::new(&traqq_core::config::TraqqConfig {
                    event: traqq_core::config::EventConfig {
                        id_field: Some("id".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                })
                .unwrap(),
                Calendar::new(chrono_tz::UTC),
            )),
            ..RestoreOptions::default()
        };
        let id_line =
            |ids: &str| format!(r#"{{"bucket":"d","start":86400,"key":"a:ids:d:86400","ids":"{ids}"}}"#);
        for (text, says) in [
            (id_line("AAAA"), "3 bytes of ids (16 each)"),
            (id_line("%"), "not base64"),
            (format!("{}\n{}", id_line(""), id_line("")), "in the dump twice"),
        ] {
            let store = MemoryStorage::new();
            let e = restore(
                &store,
                "b",
                &mut format!("{HEADER}\n{text}\n").as_bytes(),
                with_ids.clone(),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let store = MemoryStorage::new();
        for (text, says) in [
            ("", "empty"),
            ("{\"traqq_dump\":2,\"prefix\":\"a\",\"sketches\":null}\n", "newer"),
            ("{\"prefix\":\"a\"}\n", "not a traqq dump header"),
        ] {
            let e = restore_text(&store, text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
