//! What `traqq query` and `traqq find` share: ranges from the command line in, tables (with
//! control characters escaped) or JSON out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use chrono::NaiveDate;
use traqq_core::bucket::{BucketKind, Calendar, Tz};
use traqq_core::distribution::Quantiles;
use traqq_core::group::GroupResult;
use traqq_core::labels::OTHER;
use traqq_core::plan::QueryOptions;
use traqq_core::result::{MetricData, MetricResult, QueryTotals};

use crate::args::{Format, RangeArgs};
use crate::config::FileConfig;
use crate::target::{Range, Window};
use crate::UsageError;

/// Entries shown per metric in a table.
const TABLE_ENTRIES: usize = 10;

/// A `--from`/`--to` value as unix seconds: the start (or end) of a date in `calendar`'s zone,
/// RFC 3339, or unix seconds.
pub(crate) fn parse_time(calendar: &Calendar, text: &str, end_of_day: bool) -> Result<i64, UsageError> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Ok(n);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        UsageError(format!(
            "{text:?} is not a date (expected YYYY-MM-DD, RFC 3339 or unix seconds)"
        ))
    })?;
    Ok(if end_of_day {
        calendar.end_of_date(date)
    } else {
        calendar.start_of_date(date)
    })
}

/// The range, options and zone the flags ask for; dates are days of `--tz` when given, else of
/// `time.timezone`.
pub(crate) fn window(config: &FileConfig, args: &RangeArgs) -> Result<Window, UsageError> {
    let zone = match &args.tz {
        None => None,
        Some(name) => Some(name.parse::<Tz>().map_err(|_| {
            UsageError(format!(
                "--tz {name:?} is not an IANA time zone (such as Asia/Tokyo)"
            ))
        })?),
    };
    let calendar = Calendar::new(match zone {
        Some(zone) => zone,
        None => config.time.zone().map_err(|e| UsageError(e.to_string()))?,
    });
    let range = match (&args.days, &args.from) {
        (Some(d), _) => Range::Days(*d),
        (None, Some(from)) => {
            let min = parse_time(&calendar, from, false)?;
            let max = match &args.to {
                Some(to) => parse_time(&calendar, to, true)?,
                None => chrono::Utc::now().timestamp(),
            };
            Range::MinMax(min, max)
        }
        (None, None) => return Err(UsageError("give --days N, or --from DATE [--to DATE]".into())),
    };
    let opts = QueryOptions {
        bucket: if args.hourly {
            BucketKind::Hour
        } else {
            BucketKind::Day
        },
        limit: args.limit,
        accept: args.accept.clone(),
        ignore: args.ignore.clone(),
        quantiles: match &args.q {
            Some(text) => Some(traqq_core::distribution::parse_quantiles(text).map_err(|e| {
                UsageError(format!(
                    "--q {text:?}: {}",
                    e.to_string().replace("invalid query: ", "")
                ))
            })?),
            None => None,
        },
        ..QueryOptions::default()
    };
    Ok(Window { range, opts, zone })
}

pub(crate) fn format(args: &RangeArgs) -> Format {
    args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    })
}

pub(crate) fn emit(text: &str) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn label(m: &MetricResult) -> String {
    let kind = m.find_type();
    let text = match &m.add_key {
        Some(k) => format!("{kind} {}/{k}", m.pattern()),
        None => format!("{kind} {}", m.pattern()),
    };
    printable(&text).into_owned()
}

/// `text` with its control characters (ESC, NUL, newlines, ...) written as escapes: stored
/// values come from whoever sent events, and must not drive the reader's terminal.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn list<V: std::fmt::Display>(entries: Vec<(String, V)>) -> String {
    let total = entries.len();
    let mut out: Vec<String> = entries
        .into_iter()
        .take(TABLE_ENTRIES)
        .map(|(k, v)| format!("{} {v}", printable(&k)))
        .collect();
    if total > TABLE_ENTRIES {
        out.push(format!("… (+{} more)", total - TABLE_ENTRIES));
    }
    out.join(", ")
}

pub(crate) fn data(d: &MetricData) -> String {
    fn by_value<V: PartialOrd + Copy>(m: &BTreeMap<String, V>) -> Vec<(String, V)> {
        let mut v: Vec<(String, V)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        v
    }
    match d {
        MetricData::Count(n) => format!("{n} distinct"),
        MetricData::Hash(h) => list(by_value(h)),
        MetricData::FloatHash(h) => list(
            by_value(h)
                .into_iter()
                .map(|(k, v)| (k, format!("{v:.2}")))
                .collect(),
        ),
        MetricData::Summary { sum, count } => format!("sum {sum:.2}, count {count}"),
        MetricData::Ranked(r) => list(r.iter().map(|(m, s)| (m.clone(), *s)).collect()),
        MetricData::Quantiles(labels) => {
            let mut v: Vec<(String, &Quantiles)> = labels.iter().map(|(k, q)| (k.clone(), q)).collect();
            v.sort_by_key(|(_, q)| std::cmp::Reverse(q.count));
            list(v.into_iter().map(|(k, q)| (k, quantiles(q))).collect())
        }
    }
}

/// `(n 1,204: p50 12.5, p90 48.1, p95 60.2, p99 97.3; min 0.98, max 140)`: a label's
/// distribution, quantiles in ascending order.
fn quantiles(q: &Quantiles) -> String {
    let mut qs: Vec<(f64, &String, f64)> = q
        .quantiles
        .iter()
        .map(|(name, v)| (name.trim_start_matches('p').parse().unwrap_or(0.0), name, *v))
        .collect();
    qs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let figures: Vec<String> = qs
        .iter()
        .map(|(_, name, v)| format!("{name} {}", short(*v)))
        .collect();
    format!(
        "(n {}: {}; min {}, max {})",
        thousands(q.count),
        figures.join(", "),
        short(q.min),
        short(q.max)
    )
}

/// A measured value to about four significant digits (quantiles are within 1% anyway).
fn short(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 || a == 0.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 0.1 {
        format!("{x:.3}")
    } else {
        format!("{x:.3e}")
    }
}

/// Per bucket: one line per metric.
/// The range's totals first (every metric merged: unique counts are unions), then one
/// section per bucket.
pub(crate) fn table(report: &QueryTotals) -> String {
    let mut out = String::new();
    let days = &report.days;
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let span = if first.date == last.date {
            first.date.clone()
        } else {
            format!("{} .. {}", first.date, last.date)
        };
        let _ = writeln!(out, "total {span}");
        section(&mut out, &report.totals);
    }
    for day in days {
        let _ = writeln!(out, "{}", day.date);
        section(&mut out, &day.results);
    }
    out
}

/// One section per week or month: its days, then one line per metric (merged over them).
pub(crate) fn group_table(groups: &[GroupResult]) -> String {
    let mut out = String::new();
    for g in groups {
        let days = if g.days == 1 {
            "1 day".to_owned()
        } else {
            format!("{} days", g.days)
        };
        let _ = writeln!(out, "{} {} .. {} ({days})", g.group.as_str(), g.date, g.last_date);
        section(&mut out, &g.results);
    }
    if groups.is_empty() {
        out.push_str("(no days in the range)\n");
    }
    out
}

/// One line per metric, labels aligned.
fn section(out: &mut String, results: &[MetricResult]) {
    if results.is_empty() {
        out.push_str("  (no data)\n");
        return;
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(["metric", "values"]);
    for m in results {
        let shown = match (&m.result, &m.error) {
            (MetricData::Count(n), Some(e)) if !e.exact => {
                format!("≈ {} distinct (±{:.1}%)", thousands(*n), e.rse * 100.0)
            }
            (result, _) => data(result),
        };
        let shown = if hit_label_cap(&m.result) {
            format!("{shown}  [capped: new labels past limits.max_labels are counted under (other)]")
        } else {
            shown
        };
        table.add_row([label(m), shown]);
    }
    // Indented under the section's heading.
    for line in table.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// `n` with thousands separated by commas: 49914 -> "49,914".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether a metric holds the `(other)` label: a bucket of it reached its label cap.
fn hit_label_cap(d: &MetricData) -> bool {
    match d {
        MetricData::Hash(h) => h.contains_key(OTHER),
        MetricData::FloatHash(h) => h.contains_key(OTHER),
        MetricData::Ranked(r) => r.iter().any(|(m, _)| m == OTHER),
        MetricData::Quantiles(q) => q.contains_key(OTHER),
        MetricData::Count(_) | MetricData::Summary { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use traqq_core::key::MetricType;

    #[test]
    fn large_unique_counts_show_their_error() {
        assert_eq!(thousands(49_914), "49,914");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        let m = |n| {
            MetricResult::new(
                MetricType::Bmp,
                vec!["ip".into()],
                "x".into(),
                None,
                MetricData::Count(n),
            )
        };
        let mut out = String::new();
        section(&mut out, &[m(49_914)]);
        assert!(out.contains("≈ 49,914 distinct (±0.8%)"), "{out}");
        out.clear();
        section(&mut out, &[m(12)]);
        assert!(out.contains("  12 distinct"), "{out}");
    }

    #[test]
    fn a_metric_with_an_other_label_is_marked_capped() {
        let capped = MetricData::Hash(BTreeMap::from([("a".to_string(), 2), (OTHER.to_string(), 5)]));
        assert!(hit_label_cap(&capped));
        assert!(!hit_label_cap(&MetricData::Hash(BTreeMap::from([(
            "a".to_string(),
            2
        )]))));
        assert!(hit_label_cap(&MetricData::Ranked(vec![(OTHER.to_string(), 1.0)])));
    }

    #[test]
    fn control_characters_in_values_are_escaped() {
        let hash = MetricData::Hash(BTreeMap::from([
            ("\u{1b}[2J\u{1b}[31mred".to_string(), 2),
            ("nul\0line\nbreak\r".to_string(), 1),
            ("café".to_string(), 1),
        ]));
        let text = data(&hash);
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains("\\u{1b}[2J\\u{1b}[31mred 2"), "{text}");
        assert!(text.contains("nul\\u{0}line\\nbreak\\r 1"), "{text}");
        assert!(text.contains("café 1"), "{text}");
    }
}
