//! Packed maps: the value encoding the embedded backends (`traqq-rocks`, `traqq-sled`) share
//! for hashes (`add`, `adv`), leaderboards (`top`) and key sets.
//!
//! A packed map is the tag byte `M` followed by entries `varint(len) field kind [payload]`:
//!
//! | kind | payload | entry |
//! |---|---|---|
//! | `i` | i64, little-endian | [`Entry::Number`] holding [`Number::Int`] (counter) |
//! | `f` | f64, little-endian | [`Entry::Number`] holding [`Number::Float`] (float sum, score) |
//! | `s` | none | [`Entry::Member`] (set member) |
//!
//! `len` is the field's byte length as an unsigned LEB128 varint (7 bits a byte, low bits
//! first). Stored values keep their entries sorted by field bytes, so two maps merge in one
//! pass; [`MapWriter`] writes entries in the order it is given them (a write-side operand).
//! This is an on-disk format: changing a byte of it breaks every existing store.
//!
//! ```
//! use traqq_storage::packed::{entries, Entry, MapWriter};
//! use traqq_storage::traqq_core::batch::Number;
//!
//! let mut map = MapWriter::default();
//! map.start();
//! map.number("click", Number::Int(2));
//! map.member("k");
//! assert_eq!(&map.bytes()[..9], b"M\x05clicki\x02");
//!
//! let read: Vec<(&[u8], Entry)> = entries(map.bytes())?.collect::<Result<_, _>>()?;
//! assert_eq!(read, [(&b"click"[..], Entry::Number(Number::Int(2))), (&b"k"[..], Entry::Member)]);
//! # Ok::<(), traqq_storage::packed::DecodeError>(())
//! ```

use traqq_core::batch::Number;

/// The first byte of every packed map.
pub const MAP: u8 = b'M';
const INT: u8 = b'i';
const FLOAT: u8 = b'f';
const MEMBER: u8 = b's';

/// Why bytes are not a readable packed map. Its text completes "the value at key … ".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The value does not start with the [`MAP`] tag.
    NotAMap,
    /// An entry is cut short, has an overlong length, or an unknown kind.
    Malformed,
}

impl DecodeError {
    /// The error as static text (for callers that keep `&'static str` messages).
    pub const fn message(self) -> &'static str {
        match self {
            DecodeError::NotAMap => "is not a packed map",
            DecodeError::Malformed => "malformed map entry",
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for DecodeError {}

/// One entry of a packed map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Entry {
    /// A number (hash field, leaderboard score).
    Number(Number),
    /// A set member.
    Member,
}

impl Entry {
    /// `self + other` (integers stay integers and saturate, a float makes the sum a float; set
    /// members union), or `None` when they do not fit (a number and a set member).
    pub fn plus(self, other: Entry) -> Option<Entry> {
        Some(match (self, other) {
            (Entry::Number(a), Entry::Number(b)) => Entry::Number(a.plus(b)),
            (Entry::Member, Entry::Member) => Entry::Member,
            _ => return None,
        })
    }
}

/// Appends one entry (`varint(len) field kind [payload]`) to `out`.
pub fn push_entry(out: &mut Vec<u8>, field: &[u8], entry: Entry) {
    let mut len = field.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(field);
    match entry {
        Entry::Number(Number::Int(i)) => {
            out.push(INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Entry::Number(Number::Float(x)) => {
            out.push(FLOAT);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Entry::Member => out.push(MEMBER),
    }
}

/// Builds packed maps entry by entry, reusing one buffer.
#[derive(Debug, Default)]
pub struct MapWriter {
    buf: Vec<u8>,
}

impl MapWriter {
    /// Starts a new, empty map (the buffer is reused).
    pub fn start(&mut self) {
        self.buf.clear();
        self.buf.push(MAP);
    }

    /// Adds the number `n` under `field`.
    pub fn number(&mut self, field: &str, n: Number) {
        push_entry(&mut self.buf, field.as_bytes(), Entry::Number(n));
    }

    /// Adds a set member.
    pub fn member(&mut self, member: &str) {
        push_entry(&mut self.buf, member.as_bytes(), Entry::Member);
    }

    /// The map built since [`MapWriter::start`].
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Reads a packed map, or says why `value` is not one.
pub fn entries(value: &[u8]) -> Result<Entries<'_>, DecodeError> {
    match value.split_first() {
        Some((&MAP, rest)) => Ok(Entries { rest }),
        _ => Err(DecodeError::NotAMap),
    }
}

/// Calls `f` with each entry of the packed map `value`, its field as text borrowed from
/// `value`. A value that is not a map, a malformed entry or a field that is not UTF-8 stops it
/// with `corrupt(message)`.
pub fn each_field<'v, E>(
    value: &'v [u8],
    mut f: impl FnMut(&'v str, Entry) -> Result<(), E>,
    corrupt: impl Fn(&'static str) -> E,
) -> Result<(), E> {
    for item in entries(value).map_err(|e| corrupt(e.message()))? {
        let (field, entry) = item.map_err(|e| corrupt(e.message()))?;
        let field = std::str::from_utf8(field).map_err(|_| corrupt("a field name is not UTF-8"))?;
        f(field, entry)?;
    }
    Ok(())
}

/// `value` without the entries named in `fields` (order kept), or `None` when none is left.
/// For removing set members by read-modify-write.
pub fn without_fields(value: &[u8], fields: &[String]) -> Result<Option<Vec<u8>>, DecodeError> {
    let mut out = vec![MAP];
    for item in entries(value)? {
        let (field, entry) = item?;
        if !fields.iter().any(|f| f.as_bytes() == field) {
            push_entry(&mut out, field, entry);
        }
    }
    Ok((out.len() > 1).then_some(out))
}

/// The stored map `existing` (absent: empty; its entries sorted by field, as stored values
/// are) with `updates` added, as a new stored value: `updates` are sorted here, equal fields
/// add up, and one pass merges them into the stored entries. An update that does not fit its
/// entry (a number added to a set member, or the reverse) is dropped. Errors on a damaged
/// `existing`. How sled folds its log into the data and RocksDB pending operands into a value.
pub fn fold_sorted(existing: Option<&[u8]>, updates: &mut [(&[u8], Entry)]) -> Result<Vec<u8>, DecodeError> {
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
                    entry = entry.plus(e).unwrap_or(entry);
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
            Some((f, stored)) if f == field => {
                push_entry(&mut out, field, stored.plus(entry).unwrap_or(stored));
                cur = next_old()?;
            }
            _ => push_entry(&mut out, field, entry),
        }
    }
}

/// The entries of a packed map as `(field bytes, entry)`, in stored order; made by
/// [`entries`]. A malformed entry is an error and ends the iteration.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(&'a [u8], Entry), DecodeError>;

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
    fn read(&mut self) -> Result<(&'a [u8], Entry), DecodeError> {
        const MALFORMED: DecodeError = DecodeError::Malformed;
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
                let (raw, rest) = rest.split_first_chunk::<8>().ok_or(MALFORMED)?;
                let n = if kind == INT {
                    Number::Int(i64::from_le_bytes(*raw))
                } else {
                    Number::Float(f64::from_le_bytes(*raw))
                };
                (Entry::Number(n), rest)
            }
            _ => return Err(MALFORMED),
        };
        self.rest = rest;
        Ok((field, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: &[u8]) -> Vec<(Vec<u8>, Entry)> {
        entries(v)
            .unwrap()
            .map(|e| {
                let (f, e) = e.unwrap();
                (f.to_vec(), e)
            })
            .collect()
    }

    /// The layout, byte for byte (what traqq-rocks and traqq-sled store on disk).
    #[test]
    fn removing_fields_keeps_the_rest_in_order() {
        let mut map = MapWriter::default();
        map.start();
        for m in ["a", "b", "c"] {
            map.member(m);
        }
        let gone = |fields: &[&str]| {
            let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            without_fields(map.bytes(), &fields).unwrap()
        };
        let mut want = MapWriter::default();
        want.start();
        want.member("a");
        want.member("c");
        assert_eq!(gone(&["b", "zz"]).as_deref(), Some(want.bytes()));
        assert_eq!(gone(&["a", "b", "c"]), None);
        assert_eq!(gone(&[]).as_deref(), Some(map.bytes()));
        assert_eq!(without_fields(b"x", &[]), Err(DecodeError::NotAMap));
    }

    #[test]
    fn the_layout_is_pinned_byte_for_byte() {
        let long = "x".repeat(200);
        let mut w = MapWriter::default();
        w.start();
        w.number("a", Number::Float(0.5));
        w.number("b", Number::Int(3));
        w.number(&long, Number::Int(-1));
        w.member("k");
        let mut want = vec![b'M'];
        want.extend_from_slice(b"\x01af\x00\x00\x00\x00\x00\x00\xe0\x3f");
        want.extend_from_slice(b"\x01bi\x03\x00\x00\x00\x00\x00\x00\x00");
        // 200 = 0xc8: varint 0xc8 0x01.
        want.extend_from_slice(b"\xc8\x01");
        want.extend_from_slice(long.as_bytes());
        want.extend_from_slice(b"i\xff\xff\xff\xff\xff\xff\xff\xff");
        want.extend_from_slice(b"\x01ks");
        assert_eq!(w.bytes(), &want[..]);
        assert_eq!(
            map(&want),
            vec![
                (b"a".to_vec(), Entry::Number(Number::Float(0.5))),
                (b"b".to_vec(), Entry::Number(Number::Int(3))),
                (long.into_bytes(), Entry::Number(Number::Int(-1))),
                (b"k".to_vec(), Entry::Member),
            ]
        );
        let mut pushed = vec![MAP];
        push_entry(&mut pushed, b"a", Entry::Number(Number::Float(0.5)));
        assert_eq!(pushed, &want[..12]);
        // The buffer is reused: a new map starts empty.
        w.start();
        assert_eq!(w.bytes(), b"M");
        assert_eq!(entries(w.bytes()).unwrap().count(), 0);
    }

    #[test]
    fn entries_add_by_type() {
        let int = |i| Entry::Number(Number::Int(i));
        assert_eq!(int(2).plus(int(3)), Some(int(5)));
        assert_eq!(int(i64::MAX).plus(int(1)), Some(int(i64::MAX)));
        assert_eq!(
            int(2).plus(Entry::Number(Number::Float(0.5))),
            Some(Entry::Number(Number::Float(2.5)))
        );
        assert_eq!(Entry::Member.plus(Entry::Member), Some(Entry::Member));
        assert_eq!(Entry::Member.plus(int(1)), None);
        assert_eq!(int(1).plus(Entry::Member), None);
    }

    #[test]
    fn malformed_maps_are_errors_not_panics() {
        for bad in [
            &b"M\x05ab"[..],
            b"M\x01ai",
            b"M\x01az",
            b"M\x01ai\x01\x02",
            b"M\x01a",
            b"M\xff\xff\xff\xff\xff\x01",
        ] {
            let items: Vec<_> = entries(bad).unwrap().collect();
            assert_eq!(items.last(), Some(&Err(DecodeError::Malformed)), "{bad:?}");
            // Folding into a damaged stored map is an error, not a guess.
            assert!(
                fold_sorted(Some(bad), &mut [(&b"a"[..], int(1))]).is_err(),
                "{bad:?}"
            );
        }
        // Entries before a malformed one are read; nothing after it.
        let items: Vec<_> = entries(b"M\x01ks\x01az\x01ks").unwrap().collect();
        assert_eq!(
            items,
            vec![Ok((&b"k"[..], Entry::Member)), Err(DecodeError::Malformed)]
        );
        for not_a_map in [&b""[..], b"S", b"Hxyz", b"x"] {
            assert!(
                matches!(entries(not_a_map), Err(DecodeError::NotAMap)),
                "{not_a_map:?}"
            );
        }
        assert_eq!(DecodeError::NotAMap.to_string(), "is not a packed map");
        assert_eq!(DecodeError::Malformed.to_string(), "malformed map entry");
    }

    fn text_map(v: &[u8]) -> Vec<(String, Entry)> {
        map(v)
            .into_iter()
            .map(|(f, e)| (String::from_utf8(f).unwrap(), e))
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
        let one = fold_sorted(None, &mut ups).unwrap();
        assert_eq!(
            text_map(&one),
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
        let two = fold_sorted(Some(&one), &mut more).unwrap();
        assert_eq!(
            text_map(&two),
            vec![
                ("0".into(), int(1)),
                ("a".into(), int(4)),
                ("b".into(), Entry::Number(Number::Float(2.5))),
                (long, int(1)),
            ]
        );
        assert_eq!(fold_sorted(Some(&two), &mut []).unwrap(), two);
        let mut members = vec![(&b"k"[..], Entry::Member), (&b"k"[..], Entry::Member)];
        assert_eq!(
            text_map(&fold_sorted(None, &mut members).unwrap()),
            vec![("k".into(), Entry::Member)]
        );
    }

    #[test]
    fn a_stored_value_that_is_not_a_map_and_misfits_are_errors_not_panics() {
        // Damaged maps: `malformed_maps_are_errors_not_panics`.
        assert!(fold_sorted(Some(b"X"), &mut [(&b"a"[..], int(1))]).is_err());
        let stored = fold_sorted(None, &mut [(&b"a"[..], Entry::Member)]).unwrap();
        assert_eq!(
            fold_sorted(Some(&stored), &mut [(&b"a"[..], int(1))]).unwrap(),
            stored
        );
    }

    #[test]
    fn folded_maps_are_stored_byte_for_byte() {
        // The stored value: entries sorted by field, in the layout `traqq_storage::packed` pins.
        let long = "x".repeat(200);
        let mut want = vec![MAP];
        push_entry(&mut want, b"a", Entry::Number(Number::Float(0.5)));
        push_entry(&mut want, b"b", int(3));
        push_entry(&mut want, long.as_bytes(), int(-1));
        let mut ups = vec![
            (long.as_bytes(), int(-1)),
            (&b"b"[..], int(1)),
            (&b"a"[..], Entry::Number(Number::Float(0.5))),
        ];
        let one = fold_sorted(None, &mut ups).unwrap();
        assert_eq!(fold_sorted(Some(&one), &mut [(&b"b"[..], int(2))]).unwrap(), want);
    }
}
