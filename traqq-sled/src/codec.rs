//! Value encodings.
//!
//! Store format 4: one sled tree, one sled key per traqq key.
//!
//! | traqq value | sled value |
//! |---|---|
//! | hash (`add`, `adv`), leaderboard (`top`), set (key sets) | `M` + packed map |
//! | HyperLogLog (`bmp`) | serialized [`traqq_core::sketch::Sketch`] |
//!
//! Packed maps are the layout of [`traqq_storage::packed`] (shared with traqq-rocks), their
//! entries sorted by field bytes. Folding the log into the data rewrites each touched map once,
//! merging its sorted entries with the sorted increments (one `get` and one `insert` per key,
//! not per field).
//!
//! Log records (`0xFF` keys, see [`crate::log`]) and the format marker ([`FORMAT_KEY`], a
//! leading NUL byte) cannot collide with traqq keys, which are UTF-8 text without NUL bytes.

use std::cmp::Ordering;

use traqq_storage::packed::{entries, push_entry, DecodeError, Entry, MAP};

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

/// The stored map `existing` (absent: empty) with `updates` added, as a new stored value.
/// `updates` are sorted here; equal fields add up. An update that does not fit its entry (a
/// number added to a set member, or the reverse) is dropped. Errors on a damaged `existing`.
pub(crate) fn fold_map(
    existing: Option<&[u8]>,
    updates: &mut [(&[u8], Entry)],
) -> Result<Vec<u8>, DecodeError> {
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
            Some((f, stored)) if f.cmp(field) == Ordering::Equal => {
                push_entry(&mut out, field, stored.plus(entry).unwrap_or(stored));
                cur = next_old()?;
            }
            _ => push_entry(&mut out, field, entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use traqq_core::batch::Number;

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
        let one = fold_map(None, &mut ups).unwrap();
        assert_eq!(fold_map(Some(&one), &mut [(&b"b"[..], int(2))]).unwrap(), want);
    }
}
