//! Value encodings.
//!
//! Store format 2: one sled tree, one sled key per traqq key.
//!
//! | traqq value | sled value |
//! |---|---|
//! | hash (`add`, `adv`), leaderboard (`top`), set (key sets) | `M` + packed map |
//! | HyperLogLog (`bmp`) | serialized [`traqq_core::sketch::Sketch`] |
//!
//! A packed map is a list of entries `varint(len) field kind [payload]`, sorted by field bytes:
//! kind `i` + i64 LE (counter), `f` + f64 LE (float sum, score), `s` (set member). Folding the
//! log into the data rewrites each touched map once, merging its sorted entries with the
//! sorted increments (one `get` and one `insert` per key, not per field).
//!
//! Log records (`0xFF` keys, see [`crate::log`]) and the format marker ([`FORMAT_KEY`], a
//! leading NUL byte) cannot collide with traqq keys, which are UTF-8 text without NUL bytes.

use std::cmp::Ordering;

use traqq_core::batch::Number;

/// The reserved key holding the layout version.
pub(crate) const FORMAT_KEY: &[u8] = b"\0traqq\0format";
/// The layout this version writes and reads.
pub(crate) const FORMAT: &[u8] = b"2";

const MAP: u8 = b'M';
const INT: u8 = b'i';
const FLOAT: u8 = b'f';
const MEMBER: u8 = b's';

/// Encodes a number (9 bytes: tag + LE payload).
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

/// One entry of a packed map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Entry {
    /// A number (hash field, leaderboard score).
    Number(Number),
    /// A set member.
    Member,
}

impl Entry {
    /// `self + other`; `None` when they do not fit (a number and a set member).
    fn add(self, other: Entry) -> Option<Entry> {
        Some(match (self, other) {
            (Entry::Number(a), Entry::Number(b)) => Entry::Number(a.plus(b)),
            (Entry::Member, Entry::Member) => Entry::Member,
            _ => return None,
        })
    }
}

fn push_entry(out: &mut Vec<u8>, field: &[u8], entry: Entry) {
    let mut len = field.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(field);
    match entry {
        Entry::Number(n) => out.extend_from_slice(&encode_number(n)),
        Entry::Member => out.push(MEMBER),
    }
}

/// The entries of a stored packed map, in stored (field byte) order.
pub(crate) struct Entries<'a> {
    rest: &'a [u8],
}

/// Reads a stored packed map, or says why it is not one.
pub(crate) fn entries(value: &[u8]) -> Result<Entries<'_>, &'static str> {
    match value.split_first() {
        Some((&MAP, rest)) => Ok(Entries { rest }),
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
        let rest = self.rest.get(len..).ok_or(MALFORMED)?;
        let (entry, used) = match rest.first() {
            Some(&MEMBER) => (Entry::Member, 1),
            Some(&(INT | FLOAT)) => (
                Entry::Number(rest.get(..9).and_then(decode_number).ok_or(MALFORMED)?),
                9,
            ),
            _ => return Err(MALFORMED),
        };
        self.rest = &rest[used..];
        Ok((field, entry))
    }
}

/// The stored map `existing` (absent: empty) with `updates` added, as a new stored value.
/// `updates` are sorted here; equal fields add up. An update that does not fit its entry (a
/// number added to a set member, or the reverse) is dropped. Errors on a damaged `existing`.
pub(crate) fn fold_map(
    existing: Option<&[u8]>,
    updates: &mut [(&[u8], Entry)],
) -> Result<Vec<u8>, &'static str> {
    updates.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(existing.map_or(0, <[u8]>::len) + updates.len() * 24 + 1);
    out.push(MAP);
    let mut old = match existing {
        Some(v) => Some(entries(v)?),
        None => None,
    };
    let mut next_old = || old.as_mut().and_then(Iterator::next).transpose();
    let mut cur = next_old()?;
    let mut new = updates.iter().copied().peekable();
    loop {
        // Updates to one field, coalesced (a misfit is dropped, as in the RocksDB backend).
        let upd = match new.next() {
            Some((field, mut entry)) => {
                while let Some(&(f, e)) = new.peek() {
                    if f != field {
                        break;
                    }
                    entry = entry.add(e).unwrap_or(entry);
                    new.next();
                }
                Some((field, entry))
            }
            None => None,
        };
        // Stored entries before the update's field are copied as they are.
        while let Some((field, entry)) = cur {
            if upd.is_some_and(|(f, _)| field >= f) {
                break;
            }
            push_entry(&mut out, field, entry);
            cur = next_old()?;
        }
        let Some((field, entry)) = upd else {
            return Ok(out);
        };
        match cur {
            Some((f, stored)) if f.cmp(field) == Ordering::Equal => {
                push_entry(&mut out, field, stored.add(entry).unwrap_or(stored));
                cur = next_old()?;
            }
            _ => push_entry(&mut out, field, entry),
        }
    }
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

    fn int(i: i64) -> Entry {
        Entry::Number(Number::Int(i))
    }

    #[test]
    fn folds_merge_sorted_and_add_up() {
        let long = "x".repeat(300);
        let mut ups = vec![
            (&b"b"[..], int(2)),
            (&b"a"[..], int(3)),
            (&b"b"[..], Entry::Number(Number::Float(0.5))),
        ];
        let one = fold_map(None, &mut ups).unwrap();
        assert_eq!(
            map(&one),
            vec![
                ("a".into(), int(3)),
                ("b".into(), Entry::Number(Number::Float(2.5)))
            ]
        );
        let mut more = vec![
            (long.as_bytes(), int(1)),
            (&b"0"[..], int(1)),
            (&b"a"[..], int(1)),
        ];
        let two = fold_map(Some(&one), &mut more).unwrap();
        assert_eq!(
            map(&two),
            vec![
                ("0".into(), int(1)),
                ("a".into(), int(4)),
                ("b".into(), Entry::Number(Number::Float(2.5))),
                (long, int(1)),
            ]
        );
        assert_eq!(fold_map(Some(&two), &mut []).unwrap(), two);
        let mut members = vec![(&b"k"[..], Entry::Member), (&b"k"[..], Entry::Member)];
        assert_eq!(
            map(&fold_map(None, &mut members).unwrap()),
            vec![("k".into(), Entry::Member)]
        );
    }

    #[test]
    fn damaged_values_and_misfits_are_errors_not_panics() {
        for bad in [
            &b"M\x05ab"[..],
            b"M\x01ai",
            b"M\x01az",
            b"M\xff\xff\xff\xff\xff\x01",
            b"X",
        ] {
            assert!(
                fold_map(Some(bad), &mut [(&b"a"[..], int(1))]).is_err(),
                "{bad:?}"
            );
        }
        let stored = fold_map(None, &mut [(&b"a"[..], Entry::Member)]).unwrap();
        assert_eq!(
            fold_map(Some(&stored), &mut [(&b"a"[..], int(1))]).unwrap(),
            stored
        );
    }
}
