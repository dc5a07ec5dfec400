//! [`restore`]: dump lines back into a store, under its prefix.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;

use serde::Deserialize;
use serde_json::value::RawValue;
use traqq_core::batch::{Batch, Number};
use traqq_core::bucket::{BucketKind, Calendar};
use traqq_core::claim::{decode_ids, Claim, Claims, IdPolicy};
use traqq_core::key::{
    bucket_registry_key, decode_id_set_key, id_registry_key, key_set_key, register_buckets, MetricKey,
    MetricType,
};
use traqq_core::sketch::{KeySketch, RawSketch, SketchFamily};

use super::{
    dump_error, members, DumpSummary, Header, RestoreOptions, DUMP_FORMAT, RESTORE_OPS, RESTORE_SKETCHES,
};
use crate::{Result, Storage};

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

impl KeyLineIn<'_> {
    /// Ok when the line holds `want` (`hash`, `top`, `sketch` or `ids`) and nothing else of
    /// them; the error names the key as `what`.
    fn holds_only(&self, want: &str, what: &str) -> std::result::Result<(), String> {
        let held = [
            ("hash", self.hash.is_some()),
            ("top", self.top.is_some()),
            ("sketch", self.sketch.is_some()),
            ("ids", self.ids.is_some()),
        ];
        if held.iter().all(|&(name, present)| present == (name == want)) {
            return Ok(());
        }
        Err(format!(
            "key {:?} is {what}: its line holds \"{want}\" (and nothing else of hash, top, sketch, ids)",
            self.key
        ))
    }
}

/// Restores a dump written by [`export`](super::export) into `storage` under `prefix` (the dump's keys move
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
    // The restored buckets are not in any extra zone's stored days: an engine that marked
    // them complete on this empty store must not be believed (see `time.extra_zones`).
    storage.delete(&[traqq_core::key::extra_zones_key(prefix)])?;
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
    // The family the sketches are written as; `None`: they are left out.
    let sketch_family = match family {
        Some(family) if Some(family) != target_family => {
            if !options.skip_sketches {
                return Err(dump_error(format!(
                    "the dump's unique-count sketches are {family} sketches and this store keeps {}: they cannot be \
                     converted (the two hash values differently and the values are not kept); restore without them \
                     (`--skip-sketches`) to move everything else",
                    target_family.map_or("none", SketchFamily::as_str)
                )));
            }
            None
        }
        _ => target_family.or(family),
    };
    let mut restorer = Restorer {
        storage,
        from,
        to: prefix,
        sketch_family,
        ids: options.ids,
        claims: Claims::new(),
        id_days: hashbrown::HashMap::new(),
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
    /// The family restored sketches are stored as; `None`: left out (`skip_sketches`).
    sketch_family: Option<SketchFamily>,
    /// [`RestoreOptions::ids`].
    ids: Option<(IdPolicy, Calendar)>,
    /// Ids waiting to be claimed with the batch.
    claims: Claims,
    /// The days whose id sets were read, and the last id read of each.
    id_days: hashbrown::HashMap<i64, Option<u128>>,
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
        line.holds_only(want, &format!("a {} metric", metric.metric))?;
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
            let Some(family) = self.sketch_family else {
                self.summary.skipped_sketches += 1;
                return Ok(());
            };
            let bytes = data_encoding::BASE64
                .decode(text.as_bytes())
                .map_err(|e| format!("key {:?}: the sketch is not base64: {e}", line.key))?;
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
        line.holds_only("ids", "an id set")?;
        let text = line.ids.as_deref().unwrap_or_default();
        // A set may span several lines (export writes at most IDS_PER_LINE ids a line), its
        // ids sorted and distinct throughout.
        let new_set = !self.id_days.contains_key(&day);
        let last = self.id_days.entry(day).or_insert(None);
        let Some((policy, calendar)) = &self.ids else {
            self.summary.skipped_id_sets += usize::from(new_set);
            return Ok(());
        };
        let bytes = data_encoding::BASE64
            .decode(text.as_bytes())
            .map_err(|e| format!("id set {:?}: the ids are not base64: {e}", line.key))?;
        let ids = decode_ids(&bytes)
            .ok_or_else(|| format!("id set {:?}: {} bytes of ids (16 each)", line.key, bytes.len()))?;
        let mut count = 0;
        for id in ids {
            if last.is_some_and(|l| id <= l) {
                return Err(format!(
                    "id set {:?}: its ids are not sorted and distinct (as traqq export writes them)",
                    line.key
                ));
            }
            *last = Some(id);
            policy.add(&mut self.claims, self.to, calendar, Claim { day, id });
            count += 1;
        }
        if new_set {
            self.batch
                .sadd(&id_registry_key(self.to), (BucketKind::Day, day), key);
            self.summary.id_sets += 1;
        }
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
    use crate::dump::{export, ExportRange};
    use crate::{MemoryStorage, StorageExt};

    const HEADER: &str = r#"{"traqq_dump":1,"prefix":"a","sketches":"traqq"}"#;

    /// A store of the family the dumps here name.
    fn store() -> MemoryStorage {
        MemoryStorage::with_sketches(SketchFamily::Traqq)
    }

    fn restore_text(store: &MemoryStorage, text: &str) -> Result<DumpSummary> {
        restore(store, "b", &mut text.as_bytes(), RestoreOptions::default())
    }

    #[test]
    fn restores_numbers_exactly_under_the_new_prefix() {
        let store = store();
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
            let store = store();
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
        let one = data_encoding::BASE64.encode(&7u128.to_be_bytes());
        let id_line =
            |ids: &str| format!(r#"{{"bucket":"d","start":86400,"key":"a:ids:d:86400","ids":"{ids}"}}"#);
        for (text, says) in [
            (id_line("AAAA"), "3 bytes of ids (16 each)"),
            (id_line("%"), "not base64"),
            (
                format!("{}\n{}", id_line(&one), id_line(&one)),
                "not sorted and distinct",
            ),
        ] {
            let store = store();
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
        let store = store();
        for (text, says) in [
            ("", "empty"),
            ("{\"traqq_dump\":2,\"prefix\":\"a\",\"sketches\":null}\n", "newer"),
            ("{\"prefix\":\"a\"}\n", "not a traqq dump header"),
        ] {
            let e = restore_text(&store, text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    /// A day with more ids than one line holds is written as several lines and restored as
    /// one set.
    #[test]
    fn a_big_id_set_spans_lines_and_comes_back_whole() {
        let mut config = traqq_core::config::TraqqConfig::default();
        config.event.id_field = Some("id".into());
        let policy = IdPolicy::new(&config).unwrap();
        let calendar = Calendar::new(chrono_tz::UTC);
        let day = 86_400;
        let store = store();
        let mut claims = Claims::new();
        let n = super::super::IDS_PER_LINE + 10;
        for i in 0..n as u128 {
            policy.add(&mut claims, "a", &calendar, Claim { day, id: i * 7919 });
        }
        let mut registry = Batch::new();
        registry.sadd(
            &id_registry_key("a"),
            (BucketKind::Day, day),
            &traqq_core::key::id_set_key("a", day),
        );
        assert!(store.apply_claimed(&registry, &claims).unwrap().is_empty());
        let mut dump = Vec::new();
        let exported = export(&store, "a", ExportRange::default(), &mut dump).unwrap();
        assert_eq!((exported.id_sets, exported.ids), (1, n));
        let text = String::from_utf8(dump).unwrap();
        assert_eq!(text.lines().filter(|l| l.contains("\"ids\"")).count(), 2);
        let options = RestoreOptions {
            ids: Some((policy, calendar)),
            ..RestoreOptions::default()
        };
        let restored = restore(&store, "b", &mut text.as_bytes(), options).unwrap();
        assert_eq!((restored.id_sets, restored.ids), (1, n));
        let mut again = Vec::new();
        export(&store, "b", ExportRange::default(), &mut again).unwrap();
        assert_eq!(
            String::from_utf8(again).unwrap(),
            text.replace("\"a:", "\"b:")
                .replacen("\"prefix\":\"a\"", "\"prefix\":\"b\"", 1)
        );
    }
}
