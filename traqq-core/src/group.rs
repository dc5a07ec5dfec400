//! Week and month rollups: a query's days grouped into ISO weeks (Monday first) or calendar
//! months of the calendar's zone. Each group's metrics are its days merged: counters and sums
//! add, unique counts are the union of the days' sketches (weekly and monthly actives, never a
//! sum of daily ones), leaderboards merge exactly.

use chrono::Datelike;
use serde::{Deserialize, Serialize};

use crate::bucket::Calendar;
use crate::result::MetricResult;

/// How a query's days are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// One result per day (no grouping).
    #[default]
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    /// Calendar months.
    Month,
}

impl Group {
    /// `day`, `week` or `month`.
    pub fn parse(text: &str) -> Option<Group> {
        match text {
            "day" => Some(Group::Day),
            "week" => Some(Group::Week),
            "month" => Some(Group::Month),
            _ => None,
        }
    }

    /// The name `parse` reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Day => "day",
            Group::Week => "week",
            Group::Month => "month",
        }
    }

    /// What the day starting at `day_start` belongs to: the same value for every day of one
    /// group.
    fn key(self, calendar: &Calendar, day_start: i64) -> (i32, u32, u32) {
        let date = calendar.date_of(day_start);
        match self {
            Group::Day => (date.year(), date.ordinal(), 0),
            Group::Week => (date.iso_week().year(), date.iso_week().week(), 0),
            Group::Month => (date.year(), date.month(), 0),
        }
    }
}

/// Splits the day starts `days` (in order) into groups of consecutive days: the first and last
/// day start of each. A range that cuts a week or month gives that group only its days in the
/// range.
pub fn group_days(calendar: &Calendar, group: Group, days: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    let mut current = None;
    for &day in days {
        let key = group.key(calendar, day);
        match out.last_mut() {
            Some(last) if current == Some(key) => last.1 = day,
            _ => {
                out.push((day, day));
                current = Some(key);
            }
        }
    }
    out
}

/// One group of a grouped query: its metrics, merged over its days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupResult {
    /// `week` or `month` (or `day`).
    pub group: Group,
    /// Its first day in the range, `2026-11-30`.
    pub date: String,
    /// Its last day in the range.
    pub last_date: String,
    /// Start of its first day, unix seconds.
    pub timestamp: i64,
    /// Days of the group in the range.
    pub days: usize,
    /// Every metric merged over the group's days (unique counts as unions).
    pub results: Vec<MetricResult>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::BucketKind;

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first_and_cut_ranges_keep_their_days() {
        let calendar = Calendar::new(chrono_tz::Europe::Berlin);
        // Sat 2026-10-24 .. Tue 2026-11-03, across the end of summer time (Sun 10-25).
        let first = calendar.start_of_date(chrono::NaiveDate::from_ymd_opt(2026, 10, 24).unwrap());
        let last = calendar.start_of_date(chrono::NaiveDate::from_ymd_opt(2026, 11, 3).unwrap());
        let days = calendar.buckets(BucketKind::Day, first, last, 100).unwrap();
        assert_eq!(days.len(), 11);
        let label = |(a, b): (i64, i64)| {
            (
                calendar.label(BucketKind::Day, a),
                calendar.label(BucketKind::Day, b),
            )
        };
        let weeks: Vec<_> = group_days(&calendar, Group::Week, &days)
            .into_iter()
            .map(label)
            .collect();
        assert_eq!(
            weeks,
            [
                ("2026-10-24".into(), "2026-10-25".into()),
                ("2026-10-26".into(), "2026-11-01".into()),
                ("2026-11-02".into(), "2026-11-03".into()),
            ]
        );
        let months: Vec<_> = group_days(&calendar, Group::Month, &days)
            .into_iter()
            .map(label)
            .collect();
        assert_eq!(
            months,
            [
                ("2026-10-24".into(), "2026-10-31".into()),
                ("2026-11-01".into(), "2026-11-03".into()),
            ]
        );
        assert_eq!(group_days(&calendar, Group::Day, &days).len(), 11);
        // ISO weeks across a new year: Mon 2024-12-30 is in week 1 of 2025.
        let utc = Calendar::new(chrono_tz::UTC);
        let d = |m, day| utc.start_of_date(chrono::NaiveDate::from_ymd_opt(2024, m, day).unwrap());
        let days = utc.buckets(BucketKind::Day, d(12, 29), d(12, 31), 10).unwrap();
        assert_eq!(
            group_days(&utc, Group::Week, &days),
            [(d(12, 29), d(12, 29)), (d(12, 30), d(12, 31))]
        );
    }
}
