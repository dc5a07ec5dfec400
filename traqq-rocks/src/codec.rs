//! Value encodings and the merge operator.
//!
//! Storage layout in the default column family:
//!
//! | traqq value | RocksDB key | RocksDB value |
//! |---|---|---|
//! | hash field (`add`, `adv`) | `key \0 field` | number: `i` + i64 LE or `f` + f64 LE |
//! | sorted-set member (`top`) | `key \0 member` | number (`f` + f64 LE) |
//! | set member (key sets) | `key \0 member` | empty |
//! | HyperLogLog (`bmp`) | `key` | `S` + serialized [`Sketch`] |
//!
//! Traqq keys never contain a NUL byte (prefixes and patterns are checked text), so the fields
//! of `key` are exactly the RocksDB keys in `[key \0, key \x01)`: one prefix scan reads a hash,
//! and one range delete drops it.
//!
//! Increments are merge operands, never read-modify-write: numbers add (integers stay
//! integers, a float makes the sum a float), HyperLogLog operands are `H` + the 64-bit value
//! hashes of one batch (inserted into the sketch when merged) or `S` + a sketch (unioned).

use traqq_core::batch::Number;
use traqq_core::sketch::Sketch;

/// Name of the merge operator. RocksDB refuses to open a store written with a merge operator
/// under another name, so this never changes.
pub(crate) const MERGE_OPERATOR: &str = "traqq.merge.v1";

const INT: u8 = b'i';
const FLOAT: u8 = b'f';
const SKETCH: u8 = b'S';
const HASHES: u8 = b'H';

/// Past this many pending hashes, a partial merge folds them into a sketch.
const MAX_PENDING_HASHES: usize = 4_096;

/// Writes `key \0 field` into `out` (cleared first).
pub(crate) fn compose(key: &str, field: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    out.extend_from_slice(field.as_bytes());
}

/// The `[start, end)` range holding every field of `key`.
pub(crate) fn field_range(key: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = Vec::with_capacity(key.len() + 1);
    start.extend_from_slice(key.as_bytes());
    let mut end = start.clone();
    start.push(0);
    end.push(1);
    (start, end)
}

/// Encodes a number operand or value.
pub(crate) fn encode_number(n: Number) -> [u8; 9] {
    let mut out = [0u8; 9];
    let (tag, bytes) = match n {
        Number::Int(i) => (INT, i.to_le_bytes()),
        Number::Float(x) => (FLOAT, x.to_le_bytes()),
    };
    out[0] = tag;
    out[1..].copy_from_slice(&bytes);
    out
}

/// Decodes a number value.
pub(crate) fn decode_number(bytes: &[u8]) -> Option<Number> {
    let (&tag, rest) = bytes.split_first()?;
    let raw: [u8; 8] = rest.try_into().ok()?;
    match tag {
        INT => Some(Number::Int(i64::from_le_bytes(raw))),
        FLOAT => Some(Number::Float(f64::from_le_bytes(raw))),
        _ => None,
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
        Acc::Int(_) | Acc::Float(_) => Err("holds a number, not a HyperLogLog sketch".into()),
    }
}

/// A value being merged.
enum Acc {
    Empty,
    Int(i64),
    Float(f64),
    Sketch(Sketch),
    Hashes(Vec<u64>),
}

impl Acc {
    /// Folds one encoded value or operand in. Errors (and changes nothing) on bytes that are
    /// not a valid encoding or do not fit the accumulated type.
    fn fold(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        let Some(&tag) = bytes.first() else {
            // Set members are stored as empty values; they are never merged.
            return Ok(());
        };
        match tag {
            INT | FLOAT => {
                let n = decode_number(bytes).ok_or("malformed number")?;
                *self = match (&*self, n) {
                    (Acc::Empty, Number::Int(i)) => Acc::Int(i),
                    (Acc::Empty, Number::Float(x)) => Acc::Float(x),
                    (Acc::Int(a), Number::Int(b)) => Acc::Int(a.saturating_add(b)),
                    (Acc::Int(a), Number::Float(b)) => Acc::Float(*a as f64 + b),
                    (Acc::Float(a), n) => Acc::Float(a + n.as_f64()),
                    _ => return Err("number merged into a sketch"),
                };
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
                    Acc::Int(_) | Acc::Float(_) => return Err("sketch merged into a number"),
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
                    Acc::Int(_) | Acc::Float(_) => return Err("sketch merged into a number"),
                }
            }
            _ => return Err("unknown value tag"),
        }
        Ok(())
    }

    fn into_sketch(self) -> Acc {
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
            Acc::Int(i) => encode_number(Number::Int(i)).to_vec(),
            Acc::Float(x) => encode_number(Number::Float(x)).to_vec(),
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
    existing: Option<&[u8]>,
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

    #[test]
    fn numbers_merge_by_type() {
        let ops = [encode_number(Number::Int(2)), encode_number(Number::Int(3))];
        let v = merge(None, ops.iter().map(|o| &o[..]), true);
        assert_eq!(decode_number(&v), Some(Number::Int(5)));
        let f = encode_number(Number::Float(0.5));
        let v = merge(Some(&v), std::iter::once(&f[..]), true);
        assert_eq!(decode_number(&v), Some(Number::Float(5.5)));
    }

    #[test]
    fn hashes_become_sketches_and_misfits_are_dropped() {
        let vals: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
        let op = encode_hashes(vals.iter());
        let partial = merge(None, [&op[..], &op[..]].into_iter(), false);
        assert_eq!(partial[0], HASHES);
        let n = encode_number(Number::Int(1));
        let full = merge(None, [&partial[..], &n[..]].into_iter(), true);
        assert_eq!(full[0], SKETCH);
        assert_eq!(decode_sketch(&full).unwrap().count(), 100);
        assert!(decode_sketch(b"Sgarbage").is_err());
        let kept = merge(Some(b"?junk"), std::iter::once(&op[..]), true);
        assert_eq!(kept, b"?junk");
    }
}
