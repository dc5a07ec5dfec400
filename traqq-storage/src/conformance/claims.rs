//! Exactly-once ingest ([`Storage::apply_claimed`]): the store's half of `[event] id_field`.

use std::sync::atomic::{AtomicUsize, Ordering};

use traqq_core::batch::{Batch, Number};
use traqq_core::bucket::Calendar;
use traqq_core::claim::{Claim, Claims, IdPolicy, Seen};
use traqq_core::config::TraqqConfig;

use super::{fresh_prefix, key, DAY};
use crate::storage::{Storage, StorageExt};

/// Every claims check, in order.
pub fn run_all(storage: &dyn Storage) {
    a_claimed_batch_applies_once(storage);
    a_batch_with_one_seen_id_applies_nothing(storage);
    ids_are_per_day(storage);
    concurrent_claims_of_one_id_apply_once(storage);
    deleting_an_id_set_forgets_its_ids(storage);
}

pub(super) fn policy() -> IdPolicy {
    let mut config = TraqqConfig::default();
    config.event.id_field = Some("id".into());
    IdPolicy::new(&config).unwrap()
}

pub(super) fn utc() -> Calendar {
    Calendar::new(TraqqConfig::default().time.zone().unwrap())
}

/// The start of today (UTC): claims of past days may expire at once in a store that expires
/// id sets (`ClaimSet::expire_at`), so the checks claim on recent days.
pub(super) fn today() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    utc().day_start(now)
}

/// Claims of `ids` on `day` under `prefix`.
pub(super) fn claims(prefix: &str, day: i64, ids: &[u128]) -> Claims {
    let (policy, calendar) = (policy(), utc());
    let mut claims = Claims::new();
    for &id in ids {
        policy.add(&mut claims, prefix, &calendar, Claim { day, id });
    }
    claims
}

/// A batch adding `by` to `add:event` field `hits` under `prefix`.
fn hits(prefix: &str, by: i64) -> (Batch, String) {
    let k = key(prefix, "add", "event");
    let mut b = Batch::new();
    b.incr(&k, DAY, "hits", Number::Int(by));
    (b, k)
}

fn hit_count(storage: &dyn Storage, key: &str) -> i64 {
    storage
        .read_hash(key)
        .unwrap()
        .into_iter()
        .find(|(f, _)| f == "hits")
        .map_or(0, |(_, n)| n.as_i64())
}

/// A batch whose ids are new applies and claims them; the same ids again apply nothing and
/// are named.
pub fn a_claimed_batch_applies_once(storage: &dyn Storage) {
    let p = fresh_prefix("claim_once");
    let (batch, k) = hits(&p, 2);
    let ids = claims(&p, today(), &[1, 2, u128::MAX]);
    assert_eq!(storage.apply_claimed(&batch, &ids).unwrap(), Vec::<Seen>::new());
    assert_eq!(hit_count(storage, &k), 2);
    let mut again = storage.apply_claimed(&batch, &ids).unwrap();
    again.sort_by_key(|s| s.id);
    assert_eq!(
        again,
        [1, 2, u128::MAX].map(|id| Seen { set: 0, id }),
        "every claimed id is named"
    );
    assert_eq!(hit_count(storage, &k), 2, "a seen batch applies nothing");
}

/// One seen id among new ones: nothing applies and the new ids stay unclaimed.
pub fn a_batch_with_one_seen_id_applies_nothing(storage: &dyn Storage) {
    let p = fresh_prefix("claim_partial");
    let (batch, k) = hits(&p, 1);
    assert!(storage
        .apply_claimed(&batch, &claims(&p, today(), &[7]))
        .unwrap()
        .is_empty());
    let seen = storage
        .apply_claimed(&batch, &claims(&p, today(), &[5, 7, 9]))
        .unwrap();
    assert_eq!(seen, [Seen { set: 0, id: 7 }]);
    assert_eq!(hit_count(storage, &k), 1);
    // 5 and 9 were not claimed by the refused batch.
    assert!(storage
        .apply_claimed(&batch, &claims(&p, today(), &[5, 9]))
        .unwrap()
        .is_empty());
    assert_eq!(hit_count(storage, &k), 2);
}

/// The same id on another day is another claim; a batch spanning days is refused as a whole.
pub fn ids_are_per_day(storage: &dyn Storage) {
    let p = fresh_prefix("claim_days");
    let (batch, k) = hits(&p, 1);
    let next_day = today() + 86_400;
    assert!(storage
        .apply_claimed(&batch, &claims(&p, today(), &[42]))
        .unwrap()
        .is_empty());
    assert!(storage
        .apply_claimed(&batch, &claims(&p, next_day, &[42]))
        .unwrap()
        .is_empty());
    assert_eq!(hit_count(storage, &k), 2);
    let (policy, calendar) = (policy(), utc());
    let mut both = Claims::new();
    policy.add(
        &mut both,
        &p,
        &calendar,
        Claim {
            day: next_day + 86_400,
            id: 42,
        },
    );
    policy.add(
        &mut both,
        &p,
        &calendar,
        Claim {
            day: next_day,
            id: 42,
        },
    );
    assert_eq!(
        storage.apply_claimed(&batch, &both).unwrap(),
        [Seen { set: 1, id: 42 }]
    );
    assert_eq!(hit_count(storage, &k), 2);
}

/// Eight threads claiming the same id at once: exactly one applies.
pub fn concurrent_claims_of_one_id_apply_once(storage: &dyn Storage) {
    let p = fresh_prefix("claim_race");
    let (batch, k) = hits(&p, 1);
    for round in 0..20u128 {
        let ids = claims(&p, today(), &[round]);
        let applied = AtomicUsize::new(0);
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    start.wait();
                    if storage.apply_claimed(&batch, &ids).unwrap().is_empty() {
                        applied.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(applied.load(Ordering::SeqCst), 1, "round {round}");
    }
    assert_eq!(hit_count(storage, &k), 20);
}

/// Deleting a day's id set (what the engine's prune does after `dedup_days`) forgets its ids.
pub fn deleting_an_id_set_forgets_its_ids(storage: &dyn Storage) {
    let p = fresh_prefix("claim_delete");
    let (batch, k) = hits(&p, 1);
    let ids = claims(&p, today(), &[3, 4]);
    assert!(storage.apply_claimed(&batch, &ids).unwrap().is_empty());
    storage.delete(&[ids.sets()[0].key.clone()]).unwrap();
    assert!(storage.apply_claimed(&batch, &ids).unwrap().is_empty());
    assert_eq!(hit_count(storage, &k), 2);
}
