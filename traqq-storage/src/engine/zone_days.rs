//! The stored days of extra zones (`time.extra_zones`): since when they are complete.
//!
//! An extra zone's days are written beside the store's own buckets, under their own prefix
//! (`myapp@Asia/Tokyo`), by engines that list the zone. A day of that zone holds every event
//! of the day only when every event of it was recorded by such an engine, so the store keeps,
//! per zone, the first day from which that is true: `prefix:k:zones`, members
//! `Asia/Tokyo=1764255600`.
//!
//! - An engine listing a zone the set does not name adds it: from the zone's next day after
//!   `now` (plus `event.max_future_secs`, for events already recorded with later times), or
//!   from the beginning of time when the store holds nothing yet.
//! - An engine not listing a named zone removes it: what it records is not in that zone's
//!   days, so they are not complete from then on (a later engine listing the zone starts
//!   again from its next day).
//! - A restore removes the set (the dump holds the store's own buckets only).
//!
//! Queries read the set every time, so an entry removed by another process (or a restore)
//! sends the next query back to assembling days from hours, never to incomplete days.

use traqq_core::batch::Batch;
use traqq_core::bucket::{BucketKind, Calendar, Tz, MAX_TIMESTAMP, MIN_TIMESTAMP};
use traqq_core::key::{bucket_registry_key, extra_zone_prefix, extra_zones_key};
use traqq_core::read::{Read, ReadResult};

use super::Traqq;
use crate::Result;

impl Traqq {
    /// Adds the zones of `time.extra_zones` the store does not yet name to `prefix:k:zones`,
    /// and removes those it names that are not listed (see the module docs).
    pub(super) fn mark_extra_zones(&self, now: i64) -> Result<()> {
        let prefix = self.prefix();
        let set = extra_zones_key(prefix);
        let named = self.extra_zone_entries()?;
        let listed: Vec<Tz> = self.generator.extra_zones().map(|(c, _)| c.zone()).collect();
        let stale: Vec<String> = named
            .iter()
            .filter(|m| parse_entry(m).is_none_or(|(zone, _)| !listed.contains(&zone)))
            .cloned()
            .collect();
        if !stale.is_empty() {
            self.storage.remove_members(&set, &stale)?;
        }
        let missing: Vec<Tz> = listed
            .into_iter()
            .filter(|zone| {
                !named
                    .iter()
                    .any(|m| parse_entry(m).is_some_and(|(z, _)| z == *zone))
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Empty: nothing under the store's prefix, nor under a zone's own (days a writer listing
        // it wrote before its mark was taken away, which no prune of a writer not listing it
        // deletes).
        let mut registries = vec![Read::Members(bucket_registry_key(prefix))];
        registries.extend(
            missing
                .iter()
                .map(|&zone| Read::Members(bucket_registry_key(&extra_zone_prefix(prefix, zone)))),
        );
        let registered = self.storage.read(&registries)?.iter().any(|answer| match answer {
            ReadResult::Members(m) => !m.is_empty(),
            _ => true,
        });
        // Data of traqq 0.2 or trk2 has no registry: the store may have to be scanned.
        let empty = !registered && self.storage.key_sets(prefix)?.is_none_or(|sets| sets.is_empty());
        let later = i64::try_from(self.config.event.max_future_secs).unwrap_or(i64::MAX);
        let mut batch = Batch::new();
        // Tagged with the last supported day, so a store that expires keys by bucket keeps it.
        let tag = (
            BucketKind::Day,
            self.generator.calendar().day_start(MAX_TIMESTAMP),
        );
        for zone in missing {
            let calendar = Calendar::new(zone);
            let since = if empty {
                MIN_TIMESTAMP
            } else {
                let last = calendar.day_start(now.saturating_add(later));
                calendar.next_bucket_start(BucketKind::Day, last)
            };
            batch.sadd(&set, tag, &format!("{}={since}", zone.name()));
        }
        self.storage.apply(&batch)
    }

    /// The prefix `zone`'s days are stored under and the first day they are complete from, when
    /// it is an extra zone the store names.
    pub(super) fn stored_zone_days(&self, zone: Tz) -> Result<Option<(&str, i64)>> {
        let Some((_, prefix)) = self.generator.extra_zones().find(|(c, _)| c.zone() == zone) else {
            return Ok(None);
        };
        Ok(self.extra_zone_since(zone)?.map(|since| (prefix, since)))
    }

    /// The first day from which the stored days of `zone` are complete, if the store names it
    /// as an extra zone (see the module docs). Two engines may have added it at once: the
    /// later day is the safe one.
    pub fn extra_zone_since(&self, zone: Tz) -> Result<Option<i64>> {
        Ok(self
            .extra_zone_entries()?
            .iter()
            .filter_map(|m| parse_entry(m))
            .filter(|&(z, _)| z == zone)
            .map(|(_, since)| since)
            .max())
    }

    /// The members of `prefix:k:zones`.
    fn extra_zone_entries(&self) -> Result<Vec<String>> {
        Ok(
            match self
                .storage
                .read(&[Read::Members(extra_zones_key(self.prefix()))])?
                .pop()
            {
                Some(ReadResult::Members(m)) => m,
                _ => Vec::new(),
            },
        )
    }
}

/// `Asia/Tokyo=1764255600` as its zone and day.
fn parse_entry(member: &str) -> Option<(Tz, i64)> {
    let (zone, since) = member.split_once('=')?;
    Some((zone.parse().ok()?, since.parse().ok()?))
}
