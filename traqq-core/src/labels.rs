//! The cardinality guard: at most `max_labels` labels per metric and bucket.
//!
//! A compound key built from a property with unbounded values (a URL holding a session id, a
//! user agent) would make an `add`, `adv`, `top` or `dst` key of a bucket grow without bound. With
//! `[limits] max_labels` (default 10,000; per pattern in `[limits.max_labels_by_pattern]`), each
//! such key holds at most that many labels (hash fields, sorted-set members), plus [`OTHER`]:
//! a label that is not in the key yet, arriving when the key already holds the cap, is counted
//! under `(other)` instead. Labels already there keep counting, so a metric's totals (the sum
//! of its counters, an `adv` summary, leaderboard scores) stay exact.
//!
//! The store decides, where the data is and atomically with the write ([`cap_labels`] is the
//! rule every backend applies): when one batch brings more new labels than there is room for,
//! they are admitted in byte order of the label, so the `adv` sums and counts keys of one
//! metric (which always receive the same labels) admit the same ones.

use crate::batch::{KeyOps, Number};

/// The label that new labels past a key's cap are counted under.
pub const OTHER: &str = "(other)";

/// What [`cap_labels`] did to one key's operations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capped {
    /// Labels new to the key that were admitted (byte order when some overflowed).
    pub admitted: Vec<String>,
    /// Labels new to the key that went to [`OTHER`].
    pub overflowed: usize,
}

/// The label a hash field or sorted-set member counts for: a `dst` field `LABEL:BIN` counts for
/// `LABEL` (see [`crate::distribution`]); any other field is its own label (labels never hold
/// `:`).
pub fn label_of(field: &str) -> &str {
    field.split_once(':').map_or(field, |(label, _)| label)
}

/// The label of each of `fields` ([`label_of`]), [`OTHER`] left out; repeats kept.
pub fn field_labels<'a>(fields: impl IntoIterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    fields.into_iter().map(label_of).filter(|l| *l != OTHER)
}

/// The distinct labels of `fields` ([`label_of`]), [`OTHER`] left out.
pub fn labels_in<'a>(fields: impl IntoIterator<Item = &'a str>) -> hashbrown::HashSet<&'a str> {
    field_labels(fields).collect()
}

/// Applies the cap `max_labels` (`0`: none) to `ops`, bound for a key that holds `held_count`
/// labels besides [`OTHER`], `held(label)` saying whether it holds `label`: new labels beyond
/// the room left are removed from `ops` and their increments added to [`OTHER`] (a `dst`
/// field `LABEL:BIN` to `(other):BIN`, so `(other)` keeps a distribution of its own). Only
/// hash and sorted-set operations carry labels; others are left alone.
pub fn cap_labels(
    ops: &mut KeyOps,
    max_labels: usize,
    held_count: usize,
    held: impl Fn(&str) -> bool,
) -> Capped {
    if max_labels == 0 {
        return Capped::default();
    }
    let fields: Vec<&str> = match &*ops {
        KeyOps::Hash(fields) => fields.keys().collect(),
        KeyOps::Scores(members) => members.keys().collect(),
        KeyOps::Hll(_) | KeyOps::Members(_) => return Capped::default(),
    };
    let mut new: Vec<String> = labels_in(fields)
        .into_iter()
        .filter(|l| !held(l))
        .map(str::to_owned)
        .collect();
    let room = max_labels.saturating_sub(held_count);
    if new.len() <= room {
        new.sort_unstable();
        return Capped {
            admitted: new,
            overflowed: 0,
        };
    }
    new.sort_unstable();
    let over = new.split_off(room);
    let overflowing = |field: &str| over.binary_search_by(|l| l.as_str().cmp(label_of(field))).is_ok();
    let other_field = |field: &str| format!("{OTHER}{}", &field[label_of(field).len()..]);
    match ops {
        KeyOps::Hash(fields) => {
            let moved: Vec<String> = fields
                .keys()
                .filter(|f| overflowing(f))
                .map(str::to_owned)
                .collect();
            for field in moved {
                let Some(by) = fields.remove(field.as_str()) else {
                    continue;
                };
                let zero = match by {
                    Number::Int(_) => Number::Int(0),
                    Number::Float(_) => Number::Float(0.0),
                };
                let slot = fields.or_insert(&other_field(&field), zero);
                *slot = slot.plus(by);
            }
        }
        KeyOps::Scores(members) => {
            let moved: f64 = over.iter().filter_map(|m| members.remove(m.as_str())).sum();
            *members.or_insert(OTHER, 0.0) += moved;
        }
        KeyOps::Hll(_) | KeyOps::Members(_) => {}
    }
    Capped {
        admitted: new,
        overflowed: over.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, KeyOps};
    use crate::bucket::BucketKind;

    fn hash(fields: &[(&str, i64)]) -> KeyOps {
        let mut b = Batch::new();
        for (f, n) in fields {
            b.incr("k", (BucketKind::Day, 0), f, Number::Int(*n));
        }
        b.get("k").unwrap().ops.clone()
    }

    #[test]
    fn new_labels_past_the_cap_go_to_other_in_byte_order_and_totals_stay() {
        let mut ops = hash(&[("old", 1), ("d", 2), ("b", 3), ("c", 4), ("a", 5)]);
        // The key holds "old" and one more label; the cap is 4: room for two new ones.
        let capped = cap_labels(&mut ops, 4, 2, |l| l == "old");
        assert_eq!(capped.admitted, ["a", "b"]);
        assert_eq!(capped.overflowed, 2);
        assert_eq!(ops, hash(&[("old", 1), ("a", 5), ("b", 3), (OTHER, 6)]));
        // Within the cap, or without one, nothing changes.
        let mut ops = hash(&[("x", 1), ("y", 1)]);
        assert_eq!(cap_labels(&mut ops, 10, 8, |_| false).overflowed, 0);
        assert_eq!(cap_labels(&mut ops, 0, 100, |_| false), Capped::default());
        assert_eq!(ops, hash(&[("x", 1), ("y", 1)]));
    }

    #[test]
    fn a_distribution_is_capped_by_label_and_its_bins_move_to_other() {
        let mut ops = hash(&[("a:p1", 1), ("a:p2", 2), ("b:p1", 3), ("c:p5", 4), ("c:n2", 1)]);
        if let KeyOps::Hash(f) = &mut ops {
            f.insert("a:s", Number::Float(1.5));
            f.insert("c:s", Number::Float(-2.0));
        }
        // The key holds label "b" (any number of its bins); the cap is 2: room for one new label.
        let capped = cap_labels(&mut ops, 2, 1, |l| l == "b");
        assert_eq!(capped.admitted, ["a"]);
        assert_eq!(capped.overflowed, 1);
        let KeyOps::Hash(f) = ops else { panic!() };
        assert_eq!(f.get("a:p1"), Some(&Number::Int(1)));
        assert_eq!(f.get("(other):p5"), Some(&Number::Int(4)));
        assert_eq!(f.get("(other):n2"), Some(&Number::Int(1)));
        assert_eq!(f.get("(other):s"), Some(&Number::Float(-2.0)));
        assert!(!f.contains_key("c:p5") && !f.contains_key("c:s"));
        assert_eq!(label_of("a~b:p-3"), "a~b");
        assert_eq!(label_of("plain"), "plain");
        assert_eq!(labels_in(["a:p1", "a:s", "(other):p1", "b"]).len(), 2);
    }

    #[test]
    fn other_itself_is_not_a_new_label_and_scores_move_too() {
        let mut b = Batch::new();
        for (m, s) in [("z", 1.5), ("y", 2.0), (OTHER, 1.0)] {
            b.zincr("t", (BucketKind::Day, 0), m, s);
        }
        let mut ops = b.get("t").unwrap().ops.clone();
        let capped = cap_labels(&mut ops, 1, 1, |_| false);
        assert_eq!(capped.overflowed, 2);
        let KeyOps::Scores(members) = ops else { panic!() };
        assert_eq!(members.len(), 1);
        assert_eq!(members.get(OTHER), Some(&4.5));
    }
}
