//! Packed maps, the stored hash/leaderboard/set values of traqq-rocks and traqq-sled
//! (traqq-storage `packed::entries`, `packed::without_fields`), and the fold of sorted
//! increments into a stored map both backends use (`packed::fold_sorted`).
//!
//! Input: `stored value` up to the first `0xFE 0xFF` pair, then the updates to fold in.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use traqq_core::batch::Number;
use traqq_storage::packed::{entries, fold_sorted, push_entry, without_fields, DecodeError, Entry, MAP};

/// The entries of `value`, or the error that ends them (entries before it are counted).
fn read(value: &[u8]) -> (Vec<(&[u8], Entry)>, Option<DecodeError>) {
    let mut out = Vec::new();
    let Ok(iter) = entries(value) else {
        return (out, Some(DecodeError::NotAMap));
    };
    for item in iter {
        match item {
            Ok(e) => out.push(e),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn same(a: Entry, b: Entry) -> bool {
    match (a, b) {
        (Entry::Number(Number::Float(x)), Entry::Number(Number::Float(y))) => x.to_bits() == y.to_bits(),
        (a, b) => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.windows(2).position(|w| w == [0xFE, 0xFF]);
    let (stored, rest) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let (items, error) = read(stored);
    if error.is_none() {
        // Re-encoding the entries gives the same bytes (the layout is canonical).
        let mut again = vec![MAP];
        for (field, entry) in &items {
            push_entry(&mut again, field, *entry);
        }
        let canonical = again == stored;
        let (back, e) = read(&again);
        assert!(e.is_none(), "re-encoded map does not decode");
        assert_eq!(back.len(), items.len());
        for ((f, a), (g, b)) in items.iter().zip(&back) {
            assert!(f == g && same(*a, *b), "entry changed through push_entry");
        }
        // Only a non-minimal varint length can make the bytes differ.
        if !canonical {
            assert!(stored.len() > again.len(), "re-encoding grew a valid map");
        }
    }

    // Removing fields: some named by the input, some present.
    let mut u = Unstructured::new(rest);
    let mut fields: Vec<String> = items
        .iter()
        .step_by(2)
        .filter_map(|(f, _)| std::str::from_utf8(f).ok().map(str::to_owned))
        .collect();
    if let Ok(extra) = u.arbitrary::<String>() {
        fields.push(extra);
    }
    match without_fields(stored, &fields) {
        Ok(Some(kept)) => {
            assert!(error.is_none(), "without_fields accepted a malformed map");
            let (left, e) = read(&kept);
            assert!(e.is_none(), "without_fields wrote a malformed map");
            assert!(!left.is_empty());
            assert!(left
                .iter()
                .all(|(f, _)| !fields.iter().any(|x| x.as_bytes() == *f)));
            assert!(left.len() <= items.len());
        }
        Ok(None) => assert!(
            error.is_none()
                && items
                    .iter()
                    .all(|(f, _)| fields.iter().any(|x| x.as_bytes() == *f))
        ),
        Err(e) => assert_eq!(Some(e), error, "without_fields failed differently"),
    }

    // The fold: stored map (or none) plus arbitrary updates.
    let owned: Vec<(Vec<u8>, Entry)> = (0..u.int_in_range(0..=16u8).unwrap_or(0))
        .map_while(|_| {
            let field: Vec<u8> = u.arbitrary().ok()?;
            let entry = match u.int_in_range(0..=2u8).ok()? {
                0 => Entry::Number(Number::Int(u.arbitrary().ok()?)),
                1 => Entry::Number(Number::Float(u.arbitrary().ok()?)),
                _ => Entry::Member,
            };
            Some((field, entry))
        })
        .collect();
    let mut updates: Vec<(&[u8], Entry)> = owned.iter().map(|(f, e)| (f.as_slice(), *e)).collect();
    let existing = (!stored.is_empty()).then_some(stored);
    match fold_sorted(existing, &mut updates) {
        Ok(folded) => {
            let (out, e) = read(&folded);
            assert!(e.is_none(), "fold_sorted wrote a malformed map");
            let sorted_unique = |v: &[(&[u8], Entry)]| v.windows(2).all(|w| w[0].0 < w[1].0);
            if existing.is_none() || (error.is_none() && sorted_unique(&items)) {
                assert!(sorted_unique(&out), "fold_sorted of a sorted map is not sorted");
                // Every stored and every updated field is in the result.
                for (f, _) in items.iter().chain(updates.iter()) {
                    assert!(out.iter().any(|(g, _)| g == f), "fold_sorted lost field {f:?}");
                }
            }
        }
        Err(e) => assert!(
            existing.is_some() && error == Some(e),
            "fold_sorted failed on a readable map"
        ),
    }
});
