//! Exactly-once ingest: event ids and the claims a batch makes on them.
//!
//! With `[event] id_field` set, an event carrying that field is recorded at most once per
//! event-time day. Its id is hashed to 128 bits (xxh3; a string id and an integer id with the
//! same decimal text are the same id), and the batch that records it *claims* the hash in the
//! id set of the event's day (`prefix:ids:d:day`, [`crate::key::id_set_key`]). A store applies a
//! batch with claims all-or-nothing: when none of its ids is in its day's set yet, it adds them
//! and applies the batch's operations in one atomic step; otherwise it applies nothing and
//! names the ids already there, and the engine drops those events and tries again.
//!
//! Ids are remembered for `[event] dedup_days` days counted back from today (by the engine's
//! clock): an event of an older day is recorded without the check, and the sets of older days
//! are deleted by the engine's daily prune. Each set lives in one key, so on Redis Cluster the
//! check of a day's ids is atomic too.

use hashbrown::HashSet;
use xxhash_rust::xxh3::xxh3_128;

use crate::bucket::{BucketKind, Calendar};
use crate::config::TraqqConfig;
use crate::event::{IncomingEvent, Scalar};
use crate::key::id_set_key;
use crate::{Error, Result};

/// `[event] id_field` and `dedup_days`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPolicy {
    field: String,
    dedup_days: u32,
    max_length: usize,
}

/// One event's claim: its id's hash in the id set of its day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claim {
    /// Start of the event's day (the configured zone's calendar).
    pub day: i64,
    /// The 128-bit hash of the id.
    pub id: u128,
}

/// The ids one day's set gets from a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSet {
    /// The set's key, `prefix:ids:d:day`.
    pub key: String,
    /// Start of the day.
    pub day: i64,
    /// Unix time after which the set is no longer needed (a store that expires keys may drop
    /// it then).
    pub expire_at: i64,
    /// The claimed ids, distinct.
    pub ids: Vec<u128>,
}

/// The claims of one batch, one [`ClaimSet`] per day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    sets: Vec<ClaimSet>,
    /// Every claim, for the repeat check (a batch holds thousands).
    claimed: HashSet<Claim>,
}

/// A claimed id that its day's set already held: `sets()[set]`, `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seen {
    /// Index of the set in [`Claims::sets`].
    pub set: usize,
    /// The id.
    pub id: u128,
}

impl Claims {
    /// No claims.
    pub fn new() -> Self {
        Claims::default()
    }

    /// The claim sets, one per day.
    pub fn sets(&self) -> &[ClaimSet] {
        &self.sets
    }

    /// Whether there is no claim.
    pub fn is_empty(&self) -> bool {
        self.sets.iter().all(|s| s.ids.is_empty())
    }

    /// Number of claimed ids.
    pub fn len(&self) -> usize {
        self.sets.iter().map(|s| s.ids.len()).sum()
    }

    /// Takes `claim` back (its event was not recorded after all); `false` when it was not
    /// claimed. Scans its day's ids: for the rare event that fails after claiming.
    pub fn remove(&mut self, claim: Claim) -> bool {
        if !self.claimed.remove(&claim) {
            return false;
        }
        if let Some(set) = self.sets.iter_mut().find(|s| s.day == claim.day) {
            set.ids.retain(|id| *id != claim.id);
        }
        true
    }

    /// The claim that `seen` refers to.
    pub fn claim_of(&self, seen: Seen) -> Option<Claim> {
        self.sets.get(seen.set).map(|s| Claim {
            day: s.day,
            id: seen.id,
        })
    }
}

/// The key of one chunk of a day's id set in an ordered key-value store (RocksDB, sled): the
/// set's key, a zero byte, a 16-byte `stamp` unique to the batch that wrote it. Its value is
/// that batch's ids ([`encode_ids`]). Every chunk of a set lies in [`id_range`] of it, so a set
/// is one range to load or delete.
pub fn id_chunk_key(set_key: &str, stamp: u128) -> Vec<u8> {
    let mut key = Vec::with_capacity(set_key.len() + 17);
    key.extend_from_slice(set_key.as_bytes());
    key.push(0);
    key.extend_from_slice(&stamp.to_be_bytes());
    key
}

/// Ids as a chunk's value: 16 big-endian bytes each.
pub fn encode_ids(ids: &[u128]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_be_bytes()).collect()
}

/// The ids of a chunk's value; `None` when its length is not a multiple of 16.
pub fn decode_ids(value: &[u8]) -> Option<impl Iterator<Item = u128> + '_> {
    (value.len() % 16 == 0).then(|| {
        value
            .chunks_exact(16)
            .map(|c| u128::from_be_bytes(c.try_into().unwrap_or([0; 16])))
    })
}

/// The key range `[start, end)` holding every [`id_chunk_key`] of the set `set_key`.
pub fn id_range(set_key: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = set_key.as_bytes().to_vec();
    let mut end = start.clone();
    start.push(0);
    end.push(1);
    (start, end)
}

/// Whether `key` names a day's id set ([`crate::key::id_set_key`]) under any prefix.
pub fn is_id_set_key(key: &str) -> bool {
    key.split_once(':').is_some_and(|(_, rest)| {
        rest.strip_prefix("ids:d:")
            .is_some_and(|ts| ts.parse::<i64>().is_ok())
    })
}

impl IdPolicy {
    /// The policy of `config`, or `None` when `[event] id_field` is unset.
    pub fn new(config: &TraqqConfig) -> Option<Self> {
        config.event.id_field.as_ref().map(|field| IdPolicy {
            field: field.clone(),
            dedup_days: config.event.dedup_days.max(1),
            max_length: config.limits.max_value_length,
        })
    }

    /// The id field's name.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Days of ids remembered.
    pub fn dedup_days(&self) -> u32 {
        self.dedup_days
    }

    /// The hash of `event`'s id, `None` when it has none; an error naming the field when the
    /// id is present but not a non-empty string (of at most `limits.max_value_length` bytes)
    /// or an integer.
    pub fn event_id(&self, event: &IncomingEvent<'_>) -> Result<Option<u128>> {
        let invalid = |reason: String| Error::EventId {
            field: self.field.clone(),
            reason,
        };
        let id = match event.get(&self.field) {
            None => return Ok(None),
            Some(Scalar::Str(s)) if s.is_empty() => return Err(invalid("it is empty".into())),
            Some(Scalar::Str(s)) if s.len() > self.max_length => {
                return Err(invalid(format!(
                    "it is {} bytes long, more than limits.max_value_length = {}",
                    s.len(),
                    self.max_length
                )))
            }
            Some(Scalar::Str(s)) => xxh3_128(s.as_bytes()),
            Some(Scalar::Int(n)) => xxh3_128(n.to_string().as_bytes()),
            Some(Scalar::UInt(n)) => xxh3_128(n.to_string().as_bytes()),
            Some(Scalar::Float(x)) => {
                return Err(invalid(format!(
                    "{x} is not an integer (ids are non-empty strings or integers)"
                )))
            }
            Some(Scalar::Bool(b)) => {
                return Err(invalid(format!(
                    "{b} is a boolean (ids are non-empty strings or integers)"
                )))
            }
        };
        Ok(Some(id))
    }

    /// The first day start whose ids are remembered at `now`.
    pub fn remembered_from(&self, calendar: &Calendar, now: i64) -> i64 {
        calendar.days_back(now, self.dedup_days - 1)
    }

    /// Whether the ids of the day starting at `day` are remembered at `now`.
    pub fn remembers(&self, calendar: &Calendar, day: i64, now: i64) -> bool {
        day >= self.remembered_from(calendar, now)
    }

    /// Unix time from which the set of `day` is no longer needed: the start of the day
    /// `dedup_days` days later, plus an hour for clocks that run behind.
    pub fn expire_at(&self, calendar: &Calendar, day: i64) -> i64 {
        let mut start = day;
        for _ in 0..self.dedup_days {
            start = calendar.next_bucket_start(BucketKind::Day, start);
        }
        start.saturating_add(3_600)
    }

    /// Adds `claim` to `claims` (the set of its day under `prefix`); `false` when the batch
    /// already claims that id on that day.
    pub fn add(&self, claims: &mut Claims, prefix: &str, calendar: &Calendar, claim: Claim) -> bool {
        if claims.claimed.contains(&claim) {
            return false;
        }
        let index = match claims.sets.iter().position(|s| s.day == claim.day) {
            Some(i) => i,
            None => {
                claims.sets.push(ClaimSet {
                    key: id_set_key(prefix, claim.day),
                    day: claim.day,
                    expire_at: self.expire_at(calendar, claim.day),
                    ids: Vec::new(),
                });
                claims.sets.len() - 1
            }
        };
        if !claims.claimed.insert(claim) {
            return false;
        }
        claims.sets[index].ids.push(claim.id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> IdPolicy {
        let mut config = TraqqConfig::default();
        config.event.id_field = Some("id".into());
        config.limits.max_value_length = 8;
        IdPolicy::new(&config).unwrap()
    }

    fn id_of(json: &str) -> Result<Option<u128>> {
        policy().event_id(&IncomingEvent::parse_str(json).unwrap())
    }

    #[test]
    fn ids_are_strings_or_integers_and_the_same_text_is_the_same_id() {
        assert_eq!(id_of(r#"{"event":"a"}"#), Ok(None));
        let text = id_of(r#"{"event":"a","id":"42"}"#).unwrap();
        assert!(text.is_some());
        assert_eq!(id_of(r#"{"event":"a","id":42}"#).unwrap(), text);
        assert_ne!(id_of(r#"{"event":"a","id":"43"}"#).unwrap(), text);
        for (json, want) in [
            (r#"{"event":"a","id":""}"#, "\"id\": it is empty"),
            (
                r#"{"event":"a","id":"123456789"}"#,
                "9 bytes long, more than limits.max_value_length = 8",
            ),
            (r#"{"event":"a","id":1.5}"#, "1.5 is not an integer"),
            (r#"{"event":"a","id":true}"#, "true is a boolean"),
        ] {
            let error = id_of(json).unwrap_err().to_string();
            assert!(error.contains(want), "{json}: {error}");
        }
    }

    #[test]
    fn claims_group_by_day_and_drop_repeats() {
        let calendar = Calendar::new(chrono_tz::UTC);
        let (p, mut claims) = (policy(), Claims::new());
        let day = 1_699_920_000;
        assert!(p.add(&mut claims, "t", &calendar, Claim { day, id: 1 }));
        assert!(p.add(&mut claims, "t", &calendar, Claim { day, id: 2 }));
        assert!(!p.add(&mut claims, "t", &calendar, Claim { day, id: 1 }));
        assert!(p.add(
            &mut claims,
            "t",
            &calendar,
            Claim {
                day: day + 86_400,
                id: 1
            }
        ));
        assert_eq!(claims.len(), 3);
        assert!(claims.remove(Claim { day, id: 2 }));
        assert!(!claims.remove(Claim { day, id: 2 }));
        assert!(
            p.add(&mut claims, "t", &calendar, Claim { day, id: 2 }),
            "claimable again"
        );
        assert_eq!(claims.sets()[0].key, "t:ids:d:1699920000");
        assert_eq!(claims.sets()[0].expire_at, day + 2 * 86_400 + 3_600);
        assert_eq!(
            claims.claim_of(Seen { set: 1, id: 1 }),
            Some(Claim {
                day: day + 86_400,
                id: 1
            })
        );
    }

    #[test]
    fn id_chunk_keys_sort_inside_their_sets_range_and_ids_round_trip() {
        let set = "t:ids:d:86400";
        assert!(is_id_set_key(set));
        assert!(!is_id_set_key("t:add:d:86400:event"));
        assert!(!is_id_set_key("t:ids:d:x"));
        let (start, end) = id_range(set);
        for stamp in [0, 1, u128::MAX] {
            let key = id_chunk_key(set, stamp);
            assert!(start <= key && key < end);
            assert_eq!(key.len(), set.len() + 17);
        }
        // Another day's set, even one whose key starts with this one's, is outside.
        let other = id_chunk_key("t:ids:d:864000", 0);
        assert!(!(start <= other && other < end));
        let ids = [1, u128::MAX, 1 << 100];
        let value = encode_ids(&ids);
        assert_eq!(value.len(), 48);
        assert_eq!(decode_ids(&value).unwrap().collect::<Vec<_>>(), ids);
        assert!(decode_ids(&value[1..]).is_none());
    }

    #[test]
    fn ids_are_remembered_for_dedup_days() {
        let calendar = Calendar::new(chrono_tz::UTC);
        let p = policy(); // dedup_days = 2: today and yesterday
        let today = 1_699_920_000;
        let now = today + 100;
        assert!(p.remembers(&calendar, today, now));
        assert!(p.remembers(&calendar, today - 86_400, now));
        assert!(!p.remembers(&calendar, today - 2 * 86_400, now));
    }
}
