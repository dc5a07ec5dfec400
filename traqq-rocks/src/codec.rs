//! Value encodings and the merge operator.
//!
//! Storage layout (format 2) in the default column family, one RocksDB key per traqq key:
//!
//! | traqq value | RocksDB value |
//! |---|---|
//! | hash (`add`, `adv`), leaderboard (`top`), set (key sets) | `M` + packed map |
//! | HyperLogLog (`bmp`) | `S` + serialized [`Sketch`] |
//!
//! A packed map is a list of entries `varint(len) field kind [payload]`, sorted by field bytes
//! in stored values: kind `i` + i64 LE (counter), `f` + f64 LE (float sum, score), `s` (set
//! member, no payload).
//!
//! Writes never read: a `Storage` batch writes **one merge operand per key**, a packed map of
//! all the increments (or set members) the batch has for that key, or `H` + the 64-bit hashes
//! of the values a batch inserts into a HyperLogLog. The merge operator folds operands into the
//! map (numbers add, integers stay integers, a float makes the sum a float; set members union)
//! or into the sketch.
//!
//! A reserved key ([`FORMAT_KEY`], starting with a NUL byte, which traqq keys never contain)
//! records the layout, so a store written with another layout is refused on open instead of
//! being misread.

use hashbrown::HashMap;
use traqq_core::batch::Number;
use traqq_core::sketch::Sketch;

/// Name of the merge operator. RocksDB refuses to read merge operands without an operator
/// registered; the name itself is kept from format 1 ([`FORMAT_KEY`] guards the layout).
pub(crate) const MERGE_OPERATOR: &str = "traqq.merge.v1";

/// The reserved key holding the layout version.
pub(crate) const FORMAT_KEY: &[u8] = b"\0traqq\0format";
/// The layout this version writes and reads.
pub(crate) const FORMAT: &[u8] = b"2";

const MAP: u8 = b'M';
const INT: u8 = b'i';
const FLOAT: u8 = b'f';
const MEMBER: u8 = b's';
const SKETCH: u8 = b'S';
const HASHES: u8 = b'H';

/// Past this many pending hashes, a partial merge folds them into a sketch.
const MAX_PENDING_HASHES: usize = 4_096;

/// Builds one packed-map operand.
#[derive(Debug, Default)]
pub(crate) struct MapWriter {
    buf: Vec<u8>,
}

impl MapWriter {
    /// Starts a new operand (the buffer is reused).
    pub(crate) fn start(&mut self) {
        self.buf.clear();
        self.buf.push(MAP);
    }

    /// Adds an increment of `field`.
    pub(crate) fn number(&mut self, field: &str, n: Number) {
        push_field(&mut self.buf, field.as_bytes());
        push_number(&mut self.buf, n);
    }

    /// Adds a set member.
    pub(crate) fn member(&mut self, member: &str) {
        push_field(&mut self.buf, member.as_bytes());
        self.buf.push(MEMBER);
    }

    /// The operand built so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    let mut len = field.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(field);
}

fn push_number(out: &mut Vec<u8>, n: Number) {
    match n {
        Number::Int(i) => {
            out.push(INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Number::Float(x) => {
            out.push(FLOAT);
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// One entry of a packed map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Entry {
    /// A number (hash field, leaderboard score).
    Number(Number),
    /// A set member.
    Member,
}

impl Entry {
    /// `self + other`, or `None` when they do not fit (a number and a set member).
    fn add(self, other: Entry) -> Option<Entry> {
        Some(match (self, other) {
            (Entry::Number(Number::Int(a)), Entry::Number(Number::Int(b))) => {
                Entry::Number(Number::Int(a.saturating_add(b)))
            }
            (Entry::Number(a), Entry::Number(b)) => Entry::Number(Number::Float(a.as_f64() + b.as_f64())),
            (Entry::Member, Entry::Member) => Entry::Member,
            _ => return None,
        })
    }
}

/// The entries of a packed map value (`M` + entries), in stored order.
pub(crate) struct Entries<'a> {
    rest: &'a [u8],
}

/// Reads a stored packed map, or says why it is not one.
pub(crate) fn entries(value: &[u8]) -> Result<Entries<'_>, &'static str> {
    match value.split_first() {
        Some((&MAP, rest)) => Ok(Entries { rest }),
        Some((&SKETCH | &HASHES, _)) => Err("holds a HyperLogLog sketch, not a map"),
        _ => Err("is not a packed map"),
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(&'a [u8], Entry), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.read();
        if item.is_err() {
            // Stop after the first malformed entry.
            self.rest = &[];
        }
        Some(item)
    }
}

impl<'a> Entries<'a> {
    fn read(&mut self) -> Result<(&'a [u8], Entry), &'static str> {
        const MALFORMED: &str = "malformed map entry";
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let (&b, rest) = self.rest.split_first().ok_or(MALFORMED)?;
            self.rest = rest;
            len |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err(MALFORMED);
            }
        }
        let field = self.rest.get(..len).ok_or(MALFORMED)?;
        let (&kind, rest) = self
            .rest
            .get(len..)
            .and_then(<[u8]>::split_first)
            .ok_or(MALFORMED)?;
        let (entry, rest) = match kind {
            MEMBER => (Entry::Member, rest),
            INT | FLOAT => {
                let raw: [u8; 8] = rest.get(..8).and_then(|r| r.try_into().ok()).ok_or(MALFORMED)?;
                let n = if kind == INT {
                    Number::Int(i64::from_le_bytes(raw))
                } else {
                    Number::Float(f64::from_le_bytes(raw))
                };
                (Entry::Number(n), &rest[8..])
            }
            _ => return Err(MALFORMED),
        };
        self.rest = rest;
        Ok((field, entry))
    }
}

/// Encodes the value hashes of one batch as an HLL operand.
pub(crate) fn encode_hashes<'a>(values: impl ExactSizeIterator<Item = &'a String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + values.len() * 8);
    out.push(HASHES);
    for v in values {
        out.extend_from_slice(&traqq_core::sketch::hash_value(v).to_le_bytes());
    }
    out
}

/// Decodes a stored HyperLogLog value.
pub(crate) fn decode_sketch(bytes: &[u8]) -> Result<Sketch, String> {
    let mut acc = Acc::Empty;
    acc.fold(bytes).map_err(str::to_owned)?;
    match acc {
        Acc::Empty => Ok(Sketch::new()),
        Acc::Sketch(s) => Ok(s),
        Acc::Hashes(h) => {
            let mut s = Sketch::new();
            h.into_iter().for_each(|x| s.insert_hash(x));
            Ok(s)
        }
        Acc::Map(_) => Err("holds a map, not a HyperLogLog sketch".into()),
    }
}

/// A value being merged; map fields borrow from the merged inputs.
enum Acc<'a> {
    Empty,
    Map(HashMap<&'a [u8], Entry>),
    Sketch(Sketch),
    Hashes(Vec<u64>),
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
                    let (field, entry) = item?;
                    match map.entry(field) {
                        hashbrown::hash_map::Entry::Occupied(mut o) => {
                            // A misfit (number vs member) is dropped; the stored entry stays.
                            if let Some(sum) = o.get().add(entry) {
                                *o.get_mut() = sum;
                            }
                        }
                        hashbrown::hash_map::Entry::Vacant(v) => {
                            v.insert(entry);
                        }
                    }
                }
            }
            HASHES => {
                let raw = &bytes[1..];
                if raw.len() % 8 != 0 {
                    return Err("malformed hash list");
                }
                let hashes = raw
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()));
                match self {
                    Acc::Empty => *self = Acc::Hashes(hashes.collect()),
                    Acc::Hashes(h) => h.extend(hashes),
                    Acc::Sketch(s) => hashes.for_each(|x| s.insert_hash(x)),
                    Acc::Map(_) => return Err("sketch merged into a map"),
                }
            }
            SKETCH => {
                let other = Sketch::from_bytes(&bytes[1..]).map_err(|_| "malformed sketch")?;
                match self {
                    Acc::Empty => *self = Acc::Sketch(other),
                    Acc::Sketch(s) => s.merge(&other),
                    Acc::Hashes(h) => {
                        let mut s = other;
                        h.iter().for_each(|x| s.insert_hash(*x));
                        *self = Acc::Sketch(s);
                    }
                    Acc::Map(_) => return Err("sketch merged into a map"),
                }
            }
            _ => return Err("unknown value tag"),
        }
        Ok(())
    }

    fn into_sketch(self) -> Acc<'a> {
        match self {
            Acc::Hashes(h) => {
                let mut s = Sketch::new();
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
                    push_field(&mut out, field);
                    match entry {
                        Entry::Number(n) => push_number(&mut out, n),
                        Entry::Member => out.push(MEMBER),
                    }
                }
                out
            }
            Acc::Sketch(mut s) => {
                let body = s.to_bytes();
                let mut out = Vec::with_capacity(1 + body.len());
                out.push(SKETCH);
                out.extend_from_slice(&body);
                out
            }
            Acc::Hashes(h) => {
                let mut out = Vec::with_capacity(1 + h.len() * 8);
                out.push(HASHES);
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
        Acc::Hashes(h) if !full && h.len() <= MAX_PENDING_HASHES => Acc::Hashes(h),
        other => other.into_sketch(),
    };
    acc.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let op = encode_hashes(vals.iter());
        let partial = merge(None, [&op[..], &op[..]].into_iter(), false);
        assert_eq!(partial[0], HASHES);
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
    fn malformed_maps_are_errors_not_panics() {
        for bad in [
            &b"M\x05ab"[..],
            b"M\x01ai",
            b"M\x01az",
            b"M\xff\xff\xff\xff\xff\x01",
        ] {
            assert!(entries(bad).unwrap().any(|e| e.is_err()), "{bad:?}");
        }
        assert!(entries(b"Sxyz").is_err());
    }
}
