//! Value encodings.
//!
//! One sled tree holds everything, laid out like the RocksDB backend:
//!
//! | traqq value | sled key | sled value |
//! |---|---|---|
//! | hash field (`add`, `adv`) | `key \0 field` | `i` + i64 LE or `f` + f64 LE |
//! | sorted-set member (`top`) | `key \0 member` | `f` + f64 LE |
//! | set member (key sets) | `key \0 member` | empty |
//! | HyperLogLog (`bmp`) | `key` | serialized [`traqq_core::sketch::Sketch`] |
//!
//! Traqq keys never contain a NUL byte, so the fields of `key` are exactly the sled keys in
//! `[key \0, key \x01)`.

use traqq_core::batch::Number;

const INT: u8 = b'i';
const FLOAT: u8 = b'f';

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

/// Encodes a number.
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

/// Decodes a number.
pub(crate) fn decode_number(bytes: &[u8]) -> Option<Number> {
    let (&tag, rest) = bytes.split_first()?;
    let raw: [u8; 8] = rest.try_into().ok()?;
    match tag {
        INT => Some(Number::Int(i64::from_le_bytes(raw))),
        FLOAT => Some(Number::Float(f64::from_le_bytes(raw))),
        _ => None,
    }
}
