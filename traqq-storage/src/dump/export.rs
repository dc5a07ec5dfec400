//! [`export`]: a store's metrics and id sets as dump lines.

use std::borrow::Cow;
use std::io::Write;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use traqq_core::batch::Number;
use traqq_core::bucket::BucketKind;
use traqq_core::claim::encode_ids;
use traqq_core::key::{
    bucket_registry_key, decode_id_set_key, decode_key_set_key, id_registry_key, MetricKey, MetricType,
};
use traqq_core::read::{Read, ReadResult};
use traqq_core::sketch::SketchFamily;

use super::{
    dump_error, members, write_error, DumpSummary, ExportRange, Header, DUMP_FORMAT, IDS_PER_LINE, READ_CHUNK,
};
use crate::{Result, Storage};

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
    // One set at a time: a busy day's set holds millions of ids.
    for (day, key) in &sets {
        let mut ids = storage
            .read_ids(std::slice::from_ref(key))?
            .pop()
            .unwrap_or_default();
        if ids.is_empty() {
            continue;
        }
        ids.sort_unstable();
        for part in ids.chunks(IDS_PER_LINE) {
            write_line(
                out,
                &KeyLineOut {
                    ids: Some(data_encoding::BASE64.encode(&encode_ids(part))),
                    ..KeyLineOut::new(BucketKind::Day, *day, key)
                },
            )?;
        }
        summary.id_sets += 1;
        summary.ids += ids.len();
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
