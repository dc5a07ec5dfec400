//! The cardinality guard: at most `max_labels` labels per metric and bucket.
//!
//! A compound key built from a property with unbounded values (a URL holding a session id, a
//! user agent) would make an `add`, `adv` or `top` key of a bucket grow without bound. With
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

/// Applies the cap `max_labels` (`0`: none) to `ops`, bound for a key that holds `held_count`
/// labels besides [`OTHER`], `held(label)` saying whether it holds `label`: new labels beyond
/// the room left are removed from `ops` and their increments added to [`OTHER`]. Only hash and
/// sorted-set operations carry labels; others are left alone.
pub fn cap_labels(
    ops: &mut KeyOps,
    max_labels: usize,
    held_count: usize,
    held: impl Fn(&str) -> bool,
) -> Capped {
    if max_labels == 0 {
        return Capped::default();
    }
    let mut new: Vec<String> = match &*ops {
        KeyOps::Hash(fields) => fields
            .keys()
            .filter(|f| f.as_str() != OTHER && !held(f))
            .cloned()
            .collect(),
        KeyOps::Scores(members) => members
            .keys()
            .filter(|m| m.as_str() != OTHER && !held(m))
            .cloned()
            .collect(),
        KeyOps::Hll(_) | KeyOps::Members(_) => return Capped::default(),
    };
    let room = max_labels.saturating_sub(held_count);
    if new.len() <= room {
        return Capped {
            admitted: new,
            overflowed: 0,
        };
    }
    new.sort_unstable();
    let over = new.split_off(room);
    match ops {
        KeyOps::Hash(fields) => {
            let moved = over
                .iter()
                .filter_map(|f| fields.remove(f.as_str()))
                .reduce(Number::plus);
            if let Some(by) = moved {
                let slot = fields.entry_ref(OTHER).or_insert(match by {
                    Number::Int(_) => Number::Int(0),
                    Number::Float(_) => Number::Float(0.0),
                });
                *slot = slot.plus(by);
            }
        }
        KeyOps::Scores(members) => {
            let moved: f64 = over.iter().filter_map(|m| members.remove(m.as_str())).sum();
            *members.entry_ref(OTHER).or_insert(0.0) += moved;
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
        assert_eq!(members[OTHER], 4.5);
    }
}
