//! Exactly-once recording (`[event] id_field`): see `traqq_core::claim`.

use hashbrown::HashSet;
use traqq_core::bucket::BucketKind;
use traqq_core::claim::{Claim, Claims};
use traqq_core::event::IncomingEvent;
use traqq_core::key::id_registry_key;
use traqq_core::ops::ClaimDays;

use super::Traqq;
use crate::outcome::{BatchOutcome, Rejected};
use crate::{Error, Result};

impl Traqq {
    /// [`Traqq::record_results`] with `[event] id_field` set: each id is recorded once (see
    /// [`traqq_core::claim`]). Events whose ids the store has already seen are dropped and the
    /// batch is built again without them, until the store takes it; each round drops at least
    /// one event, so this ends.
    pub(super) fn record_claimed<'a>(
        &self,
        events: impl Iterator<Item = Result<IncomingEvent<'a>>>,
        now: i64,
    ) -> Result<BatchOutcome> {
        let Some(ids) = self.generator.id_policy() else {
            return Err(Error::Unsupported {
                what: "claims without event.id_field",
            });
        };
        let mut outcome = BatchOutcome::default();
        let (prefix, calendar) = (self.prefix(), self.generator.calendar());
        // The first round's claims are made while parsing: a repeat within the batch is a
        // duplicate at once.
        let mut claims = Claims::new();
        // Events still to record: index, event, claim.
        let mut pending: Vec<(usize, IncomingEvent<'a>, Option<Claim>)> = Vec::new();
        let mut days = ClaimDays::default();
        for (index, event) in events.enumerate() {
            let claim = event.and_then(|e| Ok((self.generator.claim_in(&e, now, &mut days)?, e)));
            match claim {
                Err(error) => outcome.rejected.push(Rejected { index, error }),
                Ok((Some(c), _)) if !ids.add(&mut claims, prefix, calendar, c) => {
                    outcome.duplicates.push(index)
                }
                Ok((c, e)) => pending.push((index, e, c)),
            }
        }
        let mut first_round = true;
        loop {
            let mut builder = self.builder();
            if !first_round {
                claims = Claims::new();
                for c in pending.iter().filter_map(|p| p.2) {
                    ids.add(&mut claims, prefix, calendar, c);
                }
            }
            pending.retain(|(index, event, claim)| match builder.add(event, now) {
                Ok(()) => true,
                Err(error) => {
                    // An event fails the same way every round; only the first sees it.
                    if first_round {
                        let error = Error::from(error);
                        outcome.rejected.push(Rejected { index: *index, error });
                        if let Some(c) = claim {
                            claims.remove(*c);
                        }
                    }
                    false
                }
            });
            first_round = false;
            outcome.recorded = pending.len();
            if pending.is_empty() {
                break;
            }
            self.before_write(now)?;
            let (mut batch, spare) = builder.finish_keeping();
            self.keep_spare(spare);
            if claims.is_empty() {
                self.storage.apply(&batch)?;
                break;
            }
            let registry = id_registry_key(prefix);
            for set in claims.sets() {
                batch.sadd(&registry, (BucketKind::Day, set.day), &set.key);
            }
            let seen = self.storage.apply_claimed(&batch, &claims)?;
            if seen.is_empty() {
                break;
            }
            let seen: HashSet<Claim> = seen.into_iter().filter_map(|s| claims.claim_of(s)).collect();
            let before = pending.len();
            pending.retain(|(index, _, claim)| {
                let duplicate = claim.is_some_and(|c| seen.contains(&c));
                if duplicate {
                    outcome.duplicates.push(*index);
                }
                !duplicate
            });
            if before == pending.len() {
                // The store named ids this batch did not claim: never loop on that.
                return Err(Error::backend(
                    "storage",
                    "apply_claimed reported ids the batch did not claim",
                ));
            }
        }
        outcome.rejected.sort_by_key(|r| r.index);
        outcome.duplicates.sort_unstable();
        Ok(outcome)
    }
}
