//! Value encodings and the merge operator.
//!
//! Storage layout (format 4) in the default column family, one RocksDB key per traqq key:
//!
//! | traqq value | RocksDB value |
//! |---|---|
//! | hash (`add`, `adv`), leaderboard (`top`), set (key sets) | `M` + packed map |
//! | HyperLogLog (`bmp`) | `S` + serialized [`Sketch`] |
//!
//! Packed maps are the layout of [`traqq_storage::packed`] (shared with traqq-sled), their
//! entries sorted by field bytes in stored values; this module adds the HyperLogLog values and
//! the merge operator.
//!
//! Writes never read: a `Storage` batch writes **one merge operand per key**, a packed map of
//! all the increments (or set members) the batch has for that key, or `H` (`R` in a store of
//! Redis's sketch family) + the 64-bit hashes of the values a batch inserts into a HyperLogLog. The merge operator folds operands into the
//! map (numbers add, integers stay integers, a float makes the sum a float; set members union)
//! or into the sketch.
//!
//! A reserved key ([`FORMAT_KEY`], starting with a NUL byte, which traqq keys never contain)
//! records the layout, so a store written with another layout is refused on open instead of
//! being misread.

use hashbrown::HashMap;
use traqq_core::sketch::{Sketch, SketchFamily};
use traqq_storage::packed::{self, push_entry, DecodeError, Entries, Entry, MAP};

/// Name of the merge operator. RocksDB refuses to read merge operands without an operator
/// registered; the name itself is kept from format 1 ([`FORMAT_KEY`] guards the layout).
pub(crate) const MERGE_OPERATOR: &str = "traqq.merge.v1";

/// The reserved key holding the layout version.
pub(crate) const FORMAT_KEY: &[u8] = b"\0traqq\0format";
/// The layout this version writes and reads: format 2's keys and values, with sketches in
/// traqq's own encoding (`traqq_core::sketch`) and the family they keep marked (a format-4
/// store of Redis's family holds values a format-3 build would drop, so it must refuse it).
pub(crate) const FORMAT: &[u8] = b"4";
/// A layout this version opens and marks as [`FORMAT`]: the same keys and values, its sketches
/// (the encoding `hyperloglogplus` serialized) still read and union with new ones.
/// Format 3 wrote the same, before the sketch family marker (`traqq_storage::format`): a store
/// without one keeps traqq's first family.
pub(crate) const UPGRADES_IN_PLACE: [&[u8]; 2] = [b"2", b"3"];

const SKETCH: u8 = b'S';
/// Value hashes to insert into a sketch of [`SketchFamily::Traqq`] ...
const HASHES: u8 = b'H';
/// ... and of [`SketchFamily::Redis`].
const REDIS_HASHES: u8 = b'R';

fn hashes_tag(family: SketchFamily) -> u8 {
    match family {
        SketchFamily::Traqq => HASHES,
        SketchFamily::Redis => REDIS_HASHES,
    }
}

/// Past this many pending hashes, a partial merge folds them into a sketch.
const MAX_PENDING_HASHES: usize = 4_096;

/// Reads a stored packed map, or says why it is not one.
pub(crate) fn entries(value: &[u8]) -> Result<Entries<'_>, &'static str> {
    match value.first() {
        Some(&SKETCH | &HASHES | &REDIS_HASHES) => Err("holds a HyperLogLog sketch, not a map"),
        _ => packed::entries(value).map_err(DecodeError::message),
    }
}

/// Encodes the value hashes of one batch as an HLL operand, for a sketch of `family`.
pub(crate) fn encode_hashes<S: AsRef<str>>(
    family: SketchFamily,
    values: impl ExactSizeIterator<Item = S>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + values.len() * 8);
    out.push(hashes_tag(family));
    for v in values {
        out.extend_from_slice(&family.hash(v.as_ref()).to_le_bytes());
    }
    out
}

/// The stored value of a sketch serialized by [`Sketch::to_bytes`].
pub(crate) fn encode_sketch(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(SKETCH);
    out.extend_from_slice(body);
    out
}

/// Decodes a stored HyperLogLog value.
/// Unions the stored HyperLogLog value `bytes` into `union` (a sketch, or hashes still to
/// insert): a read of several keys decodes each sketch once.
pub(crate) fn merge_sketch_into(union: &mut Sketch, bytes: &[u8]) -> Result<(), String> {
    match bytes.split_first() {
        Some((&SKETCH, sketch)) => union.merge_bytes(sketch).map_err(|e| e.to_string()),
        _ => decode_sketch(bytes).and_then(|s| union.merge(&s).map_err(|e| e.to_string())),
    }
}

pub(crate) fn decode_sketch(bytes: &[u8]) -> Result<Sketch, String> {
    let mut acc = Acc::Empty;
    acc.fold(bytes).map_err(str::to_owned)?;
    match acc {
        Acc::Empty => Ok(Sketch::new()),
        Acc::Sketch(s) => Ok(s),
        hashes @ Acc::Hashes(..) => match hashes.into_sketch() {
            Acc::Sketch(s) => Ok(s),
            _ => Err("pending hashes did not make a sketch".into()),
        },
        Acc::Map(_) => Err("holds a map, not a HyperLogLog sketch".into()),
    }
}

/// A value being merged; map fields borrow from the merged inputs.
enum Acc<'a> {
    Empty,
    Map(HashMap<&'a [u8], Entry>),
    Sketch(Sketch),
    Hashes(SketchFamily, Vec<u64>),
}

impl<'a> Acc<'a> {
    /// Folds one encoded value or operand in. Errors on bytes that are not a valid encoding or
    /// do not fit the accumulated type; a map operand's entries before a malformed one count.
    fn fold(&mut self, bytes: &'a [u8]) -> Result<(), &'static str> {
        let Some(&tag) = bytes.first() else {
            return Err("empty value");
        };
        match tag {
            MAP => {
                if matches!(self, Acc::Empty) {
                    *self = Acc::Map(HashMap::new());
                }
                let Acc::Map(map) = self else {
                    return Err("map merged into a sketch");
                };
                for item in entries(bytes)? {
                    let (field, entry) = item.map_err(DecodeError::message)?;
                    match map.entry(field) {
                        hashbrown::hash_map::Entry::Occupied(mut o) => {
                            // A misfit (number vs member) is dropped; the stored entry stays.
                            if let Some(sum) = o.get().plus(entry) {
                                *o.get_mut() = sum;
                            }
                        }
                        hashbrown::hash_map::Entry::Vacant(v) => {
                            v.insert(entry);
                        }
                    }
                }
            }
            HASHES | REDIS_HASHES => {
                let family = if tag == HASHES {
                    SketchFamily::Traqq
                } else {
                    SketchFamily::Redis
                };
                let raw = &bytes[1..];
                if raw.len() % 8 != 0 {
                    return Err("malformed hash list");
                }
                let hashes = raw
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()));
                match self {
                    Acc::Empty => *self = Acc::Hashes(family, hashes.collect()),
                    Acc::Hashes(held, h) if *held == family => h.extend(hashes),
                    Acc::Sketch(s) if s.family() == family => hashes.for_each(|x| s.insert_hash(x)),
                    Acc::Hashes(..) | Acc::Sketch(_) => return Err("hashes of another sketch family"),
                    Acc::Map(_) => return Err("sketch merged into a map"),
                }
            }
            SKETCH => {
                // Decoded whole before merging (not `Sketch::merge_bytes`): a malformed operand
                // is dropped without touching what was accumulated.
                let other = Sketch::from_bytes(&bytes[1..]).map_err(|_| "malformed sketch")?;
                match self {
                    Acc::Empty => *self = Acc::Sketch(other),
                    Acc::Sketch(s) => s.merge(&other).map_err(|_| "a sketch of another family")?,
                    Acc::Hashes(family, h) if *family == other.family() => {
                        let mut s = other;
                        h.iter().for_each(|x| s.insert_hash(*x));
                        *self = Acc::Sketch(s);
                    }
                    Acc::Hashes(..) => return Err("a sketch of another family"),
                    Acc::Map(_) => return Err("sketch merged into a map"),
                }
            }
            _ => return Err("unknown value tag"),
        }
        Ok(())
    }

    fn into_sketch(self) -> Acc<'a> {
        match self {
            Acc::Hashes(family, h) => {
                let mut s = Sketch::new_in(family);
                h.into_iter().for_each(|x| s.insert_hash(x));
                Acc::Sketch(s)
            }
            other => other,
        }
    }

    fn encode(self) -> Vec<u8> {
        match self {
            Acc::Empty => Vec::new(),
            Acc::Map(map) => {
                let mut sorted: Vec<(&[u8], Entry)> = map.into_iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let size: usize = sorted.iter().map(|(f, _)| f.len() + 11).sum();
                let mut out = Vec::with_capacity(1 + size);
                out.push(MAP);
                for (field, entry) in sorted {
                    push_entry(&mut out, field, entry);
                }
                out
            }
            Acc::Sketch(s) => encode_sketch(&s.to_bytes()),
            Acc::Hashes(family, h) => {
                let mut out = Vec::with_capacity(1 + h.len() * 8);
                out.push(hashes_tag(family));
                h.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
                out
            }
        }
    }
}

/// Merges `existing` and `operands` into one value. `full`: the result is a stored value (a
/// sketch, never a pending hash list); otherwise a combined operand.
///
/// Runs inside RocksDB (flushes, compactions, reads), so it must never panic or fail: an
/// operand that does not fit is dropped, and an undecodable existing value is kept as it is
/// (reads then report it as corrupt, naming the key).
pub(crate) fn merge<'a>(
    existing: Option<&'a [u8]>,
    operands: impl Iterator<Item = &'a [u8]>,
    full: bool,
) -> Vec<u8> {
    let operands: Vec<&[u8]> = operands.collect();
    let (first, rest) = match existing {
        Some(stored) => (Some(stored), &operands[..]),
        None => match operands.split_first() {
            Some((&first, rest)) => (Some(first), rest),
            None => (None, &operands[..]),
        },
    };
    if let Some(merged) = first.and_then(|first| merge_into_sorted_map(first, rest)) {
        return merged;
    }
    fold_one_at_a_time(existing, &operands, full)
}

/// [`merge`] the general way: every input folded into an [`Acc`] in turn.
fn fold_one_at_a_time(existing: Option<&[u8]>, operands: &[&[u8]], full: bool) -> Vec<u8> {
    let mut acc = Acc::Empty;
    if let Some(bytes) = existing {
        if acc.fold(bytes).is_err() {
            return bytes.to_vec();
        }
    }
    for op in operands {
        // A misfit operand is dropped; the rest still count.
        let _ = acc.fold(op);
    }
    let acc = match acc {
        Acc::Hashes(family, h) if !full && h.len() <= MAX_PENDING_HASHES => Acc::Hashes(family, h),
        other => other.into_sketch(),
    };
    acc.encode()
}

/// The merge of maps whose first one is sorted by field (every stored value and combined
/// operand is: [`Acc::encode`] writes them so): the later maps' entries are added up by field,
/// and [`packed::fold_sorted`] sorts only those and merges them into the first in one pass. A
/// read of a key with pending operands used to hash and then sort every field of its stored
/// value (thousands, for an hour of a leaderboard) to add a few hundred.
///
/// `None` for anything else, which [`merge`] then folds one input at a time: a first input
/// that is not a map or not sorted, a malformed entry, operands holding both a number and a set
/// member for one field (the first one seen must stay, as there). Otherwise the result is the
/// one-at-a-time fold's, except that the later maps' floats are added up before they are
/// added to the first's (as RocksDB's partial merges of operands do).
fn merge_into_sorted_map<'a>(first: &'a [u8], rest: &[&'a [u8]]) -> Option<Vec<u8>> {
    if first.first() != Some(&MAP) {
        return None;
    }
    let mut last: Option<&[u8]> = None;
    for item in entries(first).ok()? {
        let (field, _) = item.ok()?;
        if last.is_some_and(|last| last >= field) {
            return None;
        }
        last = Some(field);
    }
    let mut later: HashMap<&[u8], Entry> = HashMap::new();
    for bytes in rest {
        for item in entries(bytes).ok()? {
            let (field, entry) = item.ok()?;
            match later.entry(field) {
                hashbrown::hash_map::Entry::Occupied(mut o) => *o.get_mut() = o.get().plus(entry)?,
                hashbrown::hash_map::Entry::Vacant(v) => {
                    v.insert(entry);
                }
            }
        }
    }
    let mut later: Vec<(&[u8], Entry)> = later.into_iter().collect();
    packed::fold_sorted(Some(first), &mut later).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use traqq_core::batch::Number;
    use traqq_storage::packed::MapWriter;

    fn map(v: &[u8]) -> Vec<(String, Entry)> {
        entries(v)
            .unwrap()
            .map(|e| {
                let (f, e) = e.unwrap();
                (String::from_utf8(f.to_vec()).unwrap(), e)
            })
            .collect()
    }

    #[test]
    fn maps_add_by_field_and_type_sorted() {
        let mut w = MapWriter::default();
        w.start();
        w.number("b", Number::Int(2));
        w.number("a", Number::Int(3));
        let one = w.bytes().to_vec();
        w.start();
        w.number("b", Number::Float(0.5));
        let long = "x".repeat(300);
        w.number(&long, Number::Int(1));
        let two = w.bytes().to_vec();
        let v = merge(None, [&one[..], &two[..], &one[..]].into_iter(), true);
        assert_eq!(
            map(&v),
            vec![
                ("a".into(), Entry::Number(Number::Int(6))),
                ("b".into(), Entry::Number(Number::Float(4.5))),
                (long.clone(), Entry::Number(Number::Int(1))),
            ]
        );
        // Partial merges fold the same way, and a stored value merges with new operands.
        let partial = merge(None, [&one[..], &two[..]].into_iter(), false);
        let v2 = merge(Some(&partial), std::iter::once(&one[..]), true);
        assert_eq!(v2, v);
    }

    #[test]
    fn members_union_and_misfits_are_dropped() {
        let mut w = MapWriter::default();
        w.start();
        w.member("k1");
        w.member("k2");
        let a = w.bytes().to_vec();
        w.start();
        w.member("k2");
        w.number("k1", Number::Int(1));
        w.member("k3");
        let b = w.bytes().to_vec();
        let v = merge(None, [&a[..], &b[..]].into_iter(), true);
        assert_eq!(
            map(&v),
            vec![
                ("k1".into(), Entry::Member),
                ("k2".into(), Entry::Member),
                ("k3".into(), Entry::Member),
            ]
        );
    }

    #[test]
    fn hashes_become_sketches_and_misfits_are_dropped() {
        let vals: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
        let op = encode_hashes(SketchFamily::Traqq, vals.iter());
        let partial = merge(None, [&op[..], &op[..]].into_iter(), false);
        assert_eq!(partial[0], HASHES);
        // Hashes of the other family are a misfit: dropped, not inserted.
        let other = encode_hashes(SketchFamily::Redis, vals.iter());
        assert_eq!(other[0], REDIS_HASHES);
        assert_eq!(
            merge(None, [&op[..], &op[..], &other[..]].into_iter(), false),
            partial
        );
        let redis = merge(None, [&other[..]].into_iter(), true);
        let redis = decode_sketch(&redis).unwrap();
        assert_eq!(redis.family(), SketchFamily::Redis);
        assert_eq!(redis.count(), 100);
        let mut w = MapWriter::default();
        w.start();
        w.number("n", Number::Int(1));
        let full = merge(None, [&partial[..], w.bytes()].into_iter(), true);
        assert_eq!(full[0], SKETCH);
        assert_eq!(decode_sketch(&full).unwrap().count(), 100);
        assert!(decode_sketch(b"Sgarbage").is_err());
        let kept = merge(Some(b"?junk"), std::iter::once(&op[..]), true);
        assert_eq!(kept, b"?junk");
    }

    #[test]
    fn sketches_are_not_maps_and_malformed_maps_are_errors_not_panics() {
        assert_eq!(
            entries(b"Sxyz").err(),
            Some("holds a HyperLogLog sketch, not a map")
        );
        assert_eq!(
            entries(b"Hxyz").err(),
            Some("holds a HyperLogLog sketch, not a map")
        );
        assert_eq!(entries(b"xyz").err(), Some("is not a packed map"));
        assert!(entries(b"M\x05ab").unwrap().any(|e| e.is_err()));
    }

    #[test]
    fn merged_maps_are_stored_byte_for_byte() {
        let long = "x".repeat(200);
        // The stored value: entries sorted by field, in the layout `traqq_storage::packed` pins.
        let mut w = MapWriter::default();
        w.start();
        w.number("a", Number::Float(0.5));
        w.number("b", Number::Int(3));
        w.number(&long, Number::Int(-1));
        let want = w.bytes().to_vec();
        w.start();
        w.number(&long, Number::Int(-1));
        w.number("b", Number::Int(1));
        w.number("a", Number::Float(0.5));
        let one = w.bytes().to_vec();
        w.start();
        w.number("b", Number::Int(2));
        let two = w.bytes().to_vec();
        assert_eq!(merge(None, [&one[..], &two[..]].into_iter(), true), want);
        assert_eq!(merge(None, [&one[..], &two[..]].into_iter(), false), want);
    }

    /// A packed map of `entries` in the order given (an entry of kind 2 is a set member).
    fn packed(entries: &[(String, u8, i64)]) -> Vec<u8> {
        let mut w = MapWriter::default();
        w.start();
        for (field, kind, n) in entries {
            match kind {
                0 => w.number(field, Number::Int(*n)),
                // Quarters add up exactly in any order, so results compare byte for byte.
                1 => w.number(field, Number::Float(*n as f64 / 4.0)),
                _ => w.member(field),
            }
        }
        w.bytes().to_vec()
    }

    /// A map's entries: few fields, so maps share them; mostly numbers, sometimes a member.
    fn map_entries() -> impl proptest::strategy::Strategy<Value = Vec<(String, u8, i64)>> {
        use proptest::prelude::*;
        let kind = prop_oneof![6 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8)];
        proptest::collection::vec(("[a-f]{1,3}", kind, -1_000_000i64..1_000_000), 0..40)
    }

    /// An input to merge: a map, sorted or as generated, sometimes cut short (malformed), or
    /// now and then pending sketch hashes (a misfit among maps).
    fn input() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        (map_entries(), 0u8..10, any::<prop::sample::Index>()).prop_map(|(mut m, how, cut)| {
            if how < 5 {
                m.sort_by(|a, b| a.0.cmp(&b.0));
                m.dedup_by(|a, b| a.0 == b.0);
            }
            let mut bytes = packed(&m);
            match how {
                8 => bytes.truncate(1 + cut.index(bytes.len())),
                9 => bytes = encode_hashes(SketchFamily::Traqq, [String::from("x")].iter()),
                _ => {}
            }
            bytes
        })
    }

    proptest::proptest! {
        /// Merging into a sorted map gives the bytes folding one input at a time gives, for a
        /// stored value with operands or operands alone, misfits and malformed maps included.
        #[test]
        fn merged_maps_equal_the_one_at_a_time_fold(
            stored in proptest::option::of(input()),
            operands in proptest::collection::vec(input(), 0..8),
        ) {
            let operands: Vec<&[u8]> = operands.iter().map(Vec::as_slice).collect();
            for full in [true, false] {
                proptest::prop_assert_eq!(
                    merge(stored.as_deref(), operands.iter().copied(), full),
                    fold_one_at_a_time(stored.as_deref(), &operands, full)
                );
            }
        }
    }

    #[test]
    fn a_stored_map_merges_with_operands_in_one_pass() {
        let stored = merge(
            None,
            std::iter::once(&packed(&[("b".into(), 0, 2), ("a".into(), 1, 2), ("d".into(), 0, 1)])[..]),
            true,
        );
        let op = packed(&[("c".into(), 0, 5), ("b".into(), 0, 1), ("a".into(), 0, 3)]);
        let members = packed(&[("e".into(), 2, 0)]);
        let merged = merge_into_sorted_map(&stored, &[&op[..], &members[..]]).unwrap();
        assert_eq!(
            map(&merged),
            vec![
                ("a".into(), Entry::Number(Number::Float(3.5))),
                ("b".into(), Entry::Number(Number::Int(3))),
                ("c".into(), Entry::Number(Number::Int(5))),
                ("d".into(), Entry::Number(Number::Int(1))),
                ("e".into(), Entry::Member),
            ]
        );
        // A member where the stored value has a number is dropped, as folding one at a time
        // drops it; members and numbers for one field among the operands take that fold.
        let misfit = packed(&[("b".into(), 2, 0)]);
        let kept = merge_into_sorted_map(&stored, &[&misfit[..]]).unwrap();
        assert_eq!(kept, stored);
        assert_eq!(kept, fold_one_at_a_time(Some(&stored), &[&misfit[..]], true));
        assert!(merge_into_sorted_map(&stored, &[&misfit[..], &op[..]]).is_none());
        // So do a first map out of order, a sketch, a stored value cut short.
        assert!(merge_into_sorted_map(&op, &[&stored[..]]).is_none());
        let hashes = encode_hashes(SketchFamily::Traqq, [String::from("x")].iter());
        assert!(merge_into_sorted_map(&hashes, &[&op[..]]).is_none());
        let cut = &stored[..stored.len() - 3];
        assert!(merge_into_sorted_map(cut, &[&op[..]]).is_none());
        assert_eq!(merge(Some(cut), std::iter::once(&op[..]), true), cut);
    }

    /// Stored values written by this version (`tests/golden/*.bin`, written once with
    /// `TRAQQ_WRITE_GOLDEN=1`) keep decoding to the same data, and the format marker stays:
    /// a store written by one version must open and read the same in the next.
    #[test]
    fn committed_values_decode_to_the_same_data() {
        assert_eq!((FORMAT_KEY, FORMAT), (&b"\0traqq\0format"[..], &b"4"[..]));
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let write = std::env::var("TRAQQ_WRITE_GOLDEN").as_deref() == Ok("1");
        let golden = |name: &str, bytes: &[u8]| {
            if write {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
            std::fs::read(dir.join(name)).unwrap()
        };
        // A HyperLogLog key: pending hashes folded into a stored sketch by a full merge.
        let values: Vec<String> = (0..5_000)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250))
            .collect();
        let operand = encode_hashes(SketchFamily::Traqq, values.iter());
        let written = merge(None, std::iter::once(&operand[..]), true);
        let stored = golden("hll_value.bin", &written);
        assert_eq!(written, stored, "this version stores the same sketch differently");
        let sketch = decode_sketch(&stored).unwrap();
        let count = sketch.count();
        assert!((count as f64 - 5_000.0).abs() < 100.0, "{count}");
        // The same key as a format-2 store holds it (the sketch encoding before traqq's own):
        // the same registers.
        let format2 = std::fs::read(dir.join("hll_value_format2.bin")).unwrap();
        assert_eq!(decode_sketch(&format2).unwrap(), sketch);
        // The same values in a store of Redis's family (what new stores keep).
        let operand = encode_hashes(SketchFamily::Redis, values.iter());
        let written = merge(None, std::iter::once(&operand[..]), true);
        let stored = golden("hll_value_redis.bin", &written);
        assert_eq!(written, stored, "this version stores the same sketch differently");
        let sketch = decode_sketch(&stored).unwrap();
        assert_eq!(sketch.family(), SketchFamily::Redis);
        assert!(
            (sketch.count() as f64 - 5_000.0).abs() < 100.0,
            "{}",
            sketch.count()
        );
        // A hash key: integer and float fields in the packed map layout.
        let mut w = MapWriter::default();
        w.start();
        w.number("click", Number::Int(42));
        w.number("sum", Number::Float(12.75));
        let stored_map = golden("map_value.bin", w.bytes());
        let fields = map(&stored_map);
        assert_eq!(
            fields,
            [
                ("click".to_string(), Entry::Number(Number::Int(42))),
                ("sum".to_string(), Entry::Number(Number::Float(12.75)))
            ]
        );
    }
}
