//! Time buckets: calendar days and hours in the configured zone, as unix seconds.
//!
//! Days are local midnight to local midnight (23 or 25 hours across DST changes); hours
//! are local clock hours, so a repeated hour gives two buckets and a skipped hour none.
//! Ranges are walked bucket by bucket in the zone, never by adding 86,400.

use std::fmt;

use chrono::{Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike};
/// A time zone of the IANA database (`"Asia/Tokyo".parse::<Tz>()`), re-exported from chrono-tz.
pub use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Bucket granularity, written `d` / `h` in keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum BucketKind {
    /// Calendar day.
    #[default]
    #[serde(rename = "d")]
    Day,
    /// Clock hour.
    #[serde(rename = "h")]
    Hour,
    /// Quarter of an hour (`time.store_quarter_hours`): what the days of a zone at :30 or :45
    /// from the store's are assembled from.
    #[serde(rename = "q")]
    Quarter,
}

impl BucketKind {
    /// The key letter: `d`, `h` or `q`.
    pub fn as_str(self) -> &'static str {
        match self {
            BucketKind::Day => "d",
            BucketKind::Hour => "h",
            BucketKind::Quarter => "q",
        }
    }

    /// Parses `d`/`day`/`daily`, `h`/`hour`/`hourly` or `q`/`quarter`.
    pub fn parse(s: &str) -> Option<BucketKind> {
        match s {
            "d" | "day" | "daily" => Some(BucketKind::Day),
            "h" | "hour" | "hourly" => Some(BucketKind::Hour),
            "q" | "quarter" => Some(BucketKind::Quarter),
            _ => None,
        }
    }
}

impl fmt::Display for BucketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Earliest supported instant: 0001-01-01T00:00:00Z. Event times and query bounds outside
/// years 1..=9999 are rejected, so bucket arithmetic never overflows.
pub const MIN_TIMESTAMP: i64 = -62_135_596_800;
/// Latest supported instant: 9999-12-31T23:59:59Z.
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// True when `ts` lies in years 1..=9999 (see [`MIN_TIMESTAMP`], [`MAX_TIMESTAMP`]).
pub fn in_supported_range(ts: i64) -> bool {
    (MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&ts)
}

/// Keeps arithmetic far from overflow. The margin (a year on each side) leaves every time in
/// the supported range, and the buckets next to its ends, untouched.
fn clamp(ts: i64) -> i64 {
    const MARGIN: i64 = 400 * 86_400;
    ts.clamp(MIN_TIMESTAMP - MARGIN, MAX_TIMESTAMP + MARGIN)
}

/// Bucket arithmetic in one time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    tz: Tz,
}

impl Calendar {
    /// A calendar in `tz`.
    pub fn new(tz: Tz) -> Self {
        Calendar { tz }
    }

    /// The zone.
    pub fn zone(&self) -> Tz {
        self.tz
    }

    fn offset(&self, ts: i64) -> i64 {
        match self.tz.timestamp_opt(ts, 0) {
            LocalResult::Single(dt) => i64::from(dt.offset().fix().local_minus_utc()),
            _ => 0,
        }
    }

    fn local(&self, ts: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(ts + self.offset(ts), 0)
            .map(|d| d.naive_utc())
            .unwrap_or_default()
    }

    /// The first instant whose local wall time is at or after `local` (resolves DST gaps and
    /// takes the earlier of two repeated times).
    fn resolve(&self, local: NaiveDateTime) -> i64 {
        let mut probe = local;
        for _ in 0..(4 * 26) {
            match self.tz.from_local_datetime(&probe) {
                LocalResult::Single(dt) => return dt.timestamp(),
                LocalResult::Ambiguous(a, b) => return a.timestamp().min(b.timestamp()),
                LocalResult::None => probe += Duration::minutes(15),
            }
        }
        local.and_utc().timestamp()
    }

    /// Start of the bucket holding `ts`.
    pub fn bucket_start(&self, kind: BucketKind, ts: i64) -> i64 {
        let ts = clamp(ts);
        match kind {
            BucketKind::Day => self.day_start(ts),
            BucketKind::Hour => self.hour_start(ts),
            // Every offset in use is a whole number of quarter hours: local quarters are UTC's.
            BucketKind::Quarter => ts - ts.rem_euclid(900),
        }
    }

    /// Start of the bucket after the one starting at `start`.
    pub fn next_bucket_start(&self, kind: BucketKind, start: i64) -> i64 {
        let start = clamp(start);
        match kind {
            BucketKind::Day => self.start_of_date(self.local(start).date() + Duration::days(1)),
            BucketKind::Quarter => start - start.rem_euclid(900) + 900,
            BucketKind::Hour => {
                let off = self.offset(start);
                let local = start + off;
                let candidate = local - local.rem_euclid(3600) + 3600 - off;
                if self.offset(candidate - 1) != off {
                    // The offset changes inside this hour (a 30-minute DST zone): the bucket
                    // ends at the change.
                    self.transition_after(start, candidate - 1)
                } else {
                    candidate
                }
            }
        }
    }

    /// Start of the bucket before the one starting at `start`.
    pub fn prev_bucket_start(&self, kind: BucketKind, start: i64) -> i64 {
        self.bucket_start(kind, start - 1)
    }

    /// The first instant of the calendar date `date` in this zone (local midnight, or the
    /// first instant after it when midnight falls into a DST gap).
    pub fn start_of_date(&self, date: NaiveDate) -> i64 {
        self.resolve(date.and_time(chrono::NaiveTime::MIN))
    }

    /// The last second of the calendar date `date` in this zone (just before the next day's
    /// start: 23:59:59 on a normal day).
    pub fn end_of_date(&self, date: NaiveDate) -> i64 {
        self.start_of_date(date + Duration::days(1)) - 1
    }

    /// The local calendar date of `ts`.
    pub fn date_of(&self, ts: i64) -> NaiveDate {
        self.local(clamp(ts)).date()
    }

    /// Local midnight of the day holding `ts`.
    pub fn day_start(&self, ts: i64) -> i64 {
        self.start_of_date(self.local(clamp(ts)).date())
    }

    /// Start of the local clock hour holding `ts`.
    pub fn hour_start(&self, ts: i64) -> i64 {
        let ts = clamp(ts);
        let off = self.offset(ts);
        let local = ts + off;
        let start = local - local.rem_euclid(3600) - off;
        if self.offset(start) != off {
            // The offset changed between the computed start and ts (30-minute shifts):
            // this bucket begins at the change.
            self.transition_after(start, ts)
        } else {
            start
        }
    }

    /// The first instant in `(lo, hi]` whose offset equals that of `hi`.
    fn transition_after(&self, mut lo: i64, mut hi: i64) -> i64 {
        let target = self.offset(hi);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.offset(mid) == target {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// Bucket starts from the one holding `min` to the one holding `max`, in order.
    /// Errors when `min > max` or when there would be more than `max_buckets`.
    pub fn buckets(&self, kind: BucketKind, min: i64, max: i64, max_buckets: usize) -> Result<Vec<i64>> {
        if min > max {
            return Err(Error::Query(format!("min ({min}) is after max ({max})")));
        }
        for (name, ts) in [("min", min), ("max", max)] {
            if !in_supported_range(ts) {
                return Err(Error::Query(format!(
                    "{name} ({ts}) is outside the supported range {MIN_TIMESTAMP}..={MAX_TIMESTAMP} (years 1 to 9999)"
                )));
            }
        }
        let approx = match kind {
            BucketKind::Day => (max - min) / 90_000,
            BucketKind::Hour => (max - min) / 3_700,
            BucketKind::Quarter => (max - min) / 925,
        };
        if approx > max_buckets as i64 {
            return Err(too_many(kind, max_buckets));
        }
        let mut out = Vec::new();
        let mut start = self.bucket_start(kind, min);
        while start <= max {
            if out.len() == max_buckets {
                return Err(too_many(kind, max_buckets));
            }
            out.push(start);
            start = self.next_bucket_start(kind, start);
        }
        Ok(out)
    }

    /// Start of the day `days_back` calendar days before the day holding `now`.
    pub fn days_back(&self, now: i64, days_back: u32) -> i64 {
        let date = self.local(clamp(now)).date();
        let date = date
            .checked_sub_days(chrono::Days::new(u64::from(days_back)))
            .unwrap_or(NaiveDate::MIN)
            .max(self.local(MIN_TIMESTAMP).date());
        self.start_of_date(date)
    }

    /// A label for the bucket: `2026-11-28` for days, `2026-11-28T13:00:00-05:00` for hours.
    pub fn label(&self, kind: BucketKind, start: i64) -> String {
        let local = self.local(start);
        match kind {
            BucketKind::Day => format!("{:04}-{:02}-{:02}", local.year(), local.month(), local.day()),
            BucketKind::Hour | BucketKind::Quarter => {
                let off = self.offset(start);
                let sign = if off < 0 { '-' } else { '+' };
                let off = off.abs();
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:00{sign}{:02}:{:02}",
                    local.year(),
                    local.month(),
                    local.day(),
                    local.hour(),
                    local.minute(),
                    off / 3600,
                    (off % 3600) / 60
                )
            }
        }
    }
}

fn too_many(kind: BucketKind, max: usize) -> Error {
    let unit = match kind {
        BucketKind::Day => "daily",
        BucketKind::Hour => "hourly",
        BucketKind::Quarter => "quarter-hour",
    };
    Error::Query(format!(
        "range spans more than {max} {unit} buckets (query.max_buckets)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(z: &str) -> Calendar {
        Calendar::new(z.parse().unwrap())
    }

    #[test]
    fn dates_start_at_local_midnight_and_end_before_the_next() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let ny = cal("America/New_York");
        // 2026-11-01 is 25 hours long, 2026-03-08 23 hours.
        let fall = ny.start_of_date(d(2026, 11, 1));
        assert_eq!(ny.end_of_date(d(2026, 11, 1)) - fall + 1, 25 * 3600);
        let spring = ny.start_of_date(d(2026, 3, 8));
        assert_eq!(ny.end_of_date(d(2026, 3, 8)) - spring + 1, 23 * 3600);
        assert_eq!(ny.day_start(ny.end_of_date(d(2026, 3, 8))), spring);
        // Midnight inside a DST gap (Santiago springs forward at 00:00): the first instant after.
        let santiago = cal("America/Santiago");
        let start = santiago.start_of_date(d(2026, 9, 6));
        assert_eq!(santiago.label(BucketKind::Day, start), "2026-09-06");
        assert_eq!(santiago.day_start(start), start);
    }

    #[test]
    fn new_york_fall_back_day_is_25_hours() {
        let c = cal("America/New_York");
        let noon = c
            .zone()
            .with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
            .unwrap()
            .timestamp();
        let start = c.day_start(noon);
        let next = c.next_bucket_start(BucketKind::Day, start);
        assert_eq!(next - start, 25 * 3600);
        assert_eq!(c.label(BucketKind::Day, start), "2026-11-01");
        // One bucket for a range inside the day.
        assert_eq!(
            c.buckets(BucketKind::Day, start, next - 1, 10).unwrap(),
            vec![start]
        );
        // The repeated 1 o'clock hour gives two hour buckets.
        let hours = c.buckets(BucketKind::Hour, start, next - 1, 100).unwrap();
        assert_eq!(hours.len(), 25);
        assert!(hours.windows(2).all(|w| w[1] - w[0] == 3600));
    }

    #[test]
    fn spring_forward_day_is_23_hours() {
        let c = cal("America/New_York");
        let noon = c
            .zone()
            .with_ymd_and_hms(2026, 3, 8, 12, 0, 0)
            .unwrap()
            .timestamp();
        let start = c.day_start(noon);
        assert_eq!(c.label(BucketKind::Day, start), "2026-03-08");
        let next = c.next_bucket_start(BucketKind::Day, start);
        assert_eq!(next - start, 23 * 3600);
        assert_eq!(
            c.buckets(BucketKind::Hour, start, next - 1, 100).unwrap().len(),
            23
        );
    }

    #[test]
    fn extreme_times_neither_panic_nor_escape_the_range() {
        let c = cal("America/New_York");
        for ts in [i64::MIN, MIN_TIMESTAMP, 0, MAX_TIMESTAMP, i64::MAX] {
            for kind in [BucketKind::Day, BucketKind::Hour] {
                let start = c.bucket_start(kind, ts);
                assert!(c.next_bucket_start(kind, start) > start);
            }
        }
        assert!(c.days_back(0, u32::MAX) >= MIN_TIMESTAMP - 86_400);
        // The last and first supported days enumerate normally.
        assert_eq!(
            c.buckets(BucketKind::Day, MAX_TIMESTAMP - 86_400, MAX_TIMESTAMP, 10)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            c.buckets(
                BucketKind::Day,
                MIN_TIMESTAMP + 86_400,
                MIN_TIMESTAMP + 2 * 86_400,
                10
            )
            .unwrap()
            .len(),
            2
        );
        let err = c
            .buckets(BucketKind::Day, i64::MIN, 0, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("min") && err.contains("outside"), "{err}");
        assert!(c.buckets(BucketKind::Hour, 0, i64::MAX, 10).is_err());
    }

    #[test]
    fn ranges_are_checked() {
        let c = cal("UTC");
        assert!(c
            .buckets(BucketKind::Day, 10, 5, 10)
            .unwrap_err()
            .to_string()
            .contains("after"));
        assert!(c
            .buckets(BucketKind::Day, 0, 86_400 * 20, 10)
            .unwrap_err()
            .to_string()
            .contains("10 daily"));
        assert_eq!(
            c.buckets(BucketKind::Day, 0, 86_400 * 2, 10).unwrap(),
            vec![0, 86_400, 172_800]
        );
    }
}
