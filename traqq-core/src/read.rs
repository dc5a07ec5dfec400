//! The read side of the storage contract: batch-shaped reads, answered in order.
//!
//! A query sends all its reads at once so that a networked backend can answer them in one
//! round trip.

use hashbrown::HashMap;

use crate::batch::Number;

/// One read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// All fields of a hash.
    Hash(String),
    /// The field-wise sum of one or more hashes (missing keys count as empty; integers stay
    /// integers, as [`Number::plus`] adds), answered as [`ReadResult::Hash`]: the counters
    /// and sums of several buckets read as one, without sending each bucket's fields back.
    Sum(Vec<String>),
    /// Estimated distinct count of the union of one or more HyperLogLog keys
    /// (missing keys count as empty).
    Count(Vec<String>),
    /// The `limit` highest-scored members of the union of one or more sorted sets (scores of a
    /// member add up across keys; missing keys count as empty): score descending, ties by member
    /// ascending. The union is what makes a merged leaderboard over many days exact.
    Top {
        /// Sorted-set keys.
        keys: Vec<String>,
        /// Most members returned.
        limit: usize,
    },
    /// All members of a set.
    Members(String),
}

/// The answer to one [`Read`], same position, matching variant.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadResult {
    /// Hash fields (any order); empty when the key is missing.
    Hash(Vec<(String, Number)>),
    /// Distinct count.
    Count(u64),
    /// Members with scores, descending, ties broken by member name ascending.
    Top(Vec<(String, f64)>),
    /// Set members (any order).
    Members(Vec<String>),
}

impl ReadResult {
    /// Short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ReadResult::Hash(_) => "hash",
            ReadResult::Count(_) => "count",
            ReadResult::Top(_) => "top",
            ReadResult::Members(_) => "members",
        }
    }
}

/// The field-wise sums a [`Read::Sum`] answers with: every backend feeds its hashes' fields in,
/// and only a field seen for the first time allocates its name.
#[derive(Debug, Default)]
pub struct FieldSums(HashMap<String, Number>);

impl FieldSums {
    /// Adds `n` to `field`.
    pub fn add(&mut self, field: &str, n: Number) {
        match self.0.get_mut(field) {
            Some(sum) => *sum = sum.plus(n),
            None => {
                self.0.insert(field.to_owned(), n);
            }
        }
    }

    /// The answer: [`ReadResult::Hash`] of the sums (any order).
    pub fn into_result(self) -> ReadResult {
        ReadResult::Hash(self.0.into_iter().collect())
    }
}

/// Sorts leaderboard entries the contract's way: score descending, then member ascending.
pub fn sort_ranked<S: AsRef<str>>(entries: &mut [(S, f64)]) {
    entries.sort_by(rank_order);
}

/// Keeps the `limit` best entries of a leaderboard, sorted the contract's way. Selects before
/// sorting, so cutting 2,000 members to 10 does not sort all 2,000. Members may be borrowed, so
/// a store can rank before it copies the few it returns.
pub fn top_ranked<S: AsRef<str>>(entries: &mut Vec<(S, f64)>, limit: usize) {
    if limit == 0 {
        entries.clear();
        return;
    }
    if entries.len() > limit {
        entries.select_nth_unstable_by(limit - 1, rank_order);
        entries.truncate(limit);
    }
    sort_ranked(entries);
}

fn rank_order<S: AsRef<str>>(a: &(S, f64), b: &(S, f64)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then_with(|| a.0.as_ref().cmp(b.0.as_ref()))
}
