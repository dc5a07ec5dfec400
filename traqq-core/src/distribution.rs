//! Distributions (`dst`): mergeable quantile sketches stored as integer hash fields.
//!
//! A label's values are counted in logarithmic bins (the DDSketch mapping): bin `i` of a
//! positive value `v` is `ceil(log_γ v)` with `γ = (1 + α) / (1 − α)` and `α` =
//! [`RELATIVE_ACCURACY`], so every value of a bin lies within `α` of the bin's representative
//! value and any quantile read from the bins is within `α` of the exact one. Negative values
//! have their own bins by magnitude, values of magnitude below [`MIN_MAGNITUDE`] count as zero.
//!
//! Each bin is one integer field of the metric's hash, `LABEL:BIN` (a label never holds `:`),
//! beside the label's float sum `LABEL:s`. So recording is hash increments like every other
//! metric (coalesced in a batch, `HINCRBY` on Redis, merge operands on RocksDB), and merging
//! days, zones, writers or cluster nodes is adding fields: [`DistSketch::merge`] is addition,
//! and a store's field-wise sum of several keys ([`crate::read::Read::Sum`]) is the merged sketch.
//!
//! The mapping is our own (a dozen lines) rather than a crate's, because the stored fields are
//! the bin indices themselves: they must be fixed by this file, not by another crate's
//! internal layout.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::batch::Number;
use crate::{Error, Result};

/// Relative accuracy of every reported quantile (1%).
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Values of smaller magnitude are counted in the zero bin.
pub const MIN_MAGNITUDE: f64 = 1e-9;

/// The quantiles reported when a query asks for none: p50, p90, p95, p99.
pub const DEFAULT_QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// Most quantiles one query may ask for.
pub const MAX_QUANTILES: usize = 32;

/// The separator between a label and its bin in a field (labels are sanitized: no `:`).
pub const FIELD_SEPARATOR: char = ':';

/// `γ` and `ln γ` of the mapping.
fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// Which bin a value falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bin {
    /// A negative value, by the bin index of its magnitude.
    Negative(i32),
    /// Magnitude below [`MIN_MAGNITUDE`].
    Zero,
    /// A positive value, by its bin index.
    Positive(i32),
}

impl Bin {
    /// The bin of `value`, or `None` for NaN and infinities (they are not recorded).
    pub fn of(value: f64) -> Option<Bin> {
        if !value.is_finite() {
            return None;
        }
        let magnitude = value.abs();
        if magnitude < MIN_MAGNITUDE {
            return Some(Bin::Zero);
        }
        let index = (magnitude.ln() / gamma().ln()).ceil() as i32;
        Some(if value < 0.0 {
            Bin::Negative(index)
        } else {
            Bin::Positive(index)
        })
    }

    /// The value reported for the bin: within [`RELATIVE_ACCURACY`] of every value in it.
    pub fn value(self) -> f64 {
        let g = gamma();
        let magnitude = |i: i32| 2.0 * g.powi(i) / (g + 1.0);
        match self {
            Bin::Negative(i) => -magnitude(i),
            Bin::Zero => 0.0,
            Bin::Positive(i) => magnitude(i),
        }
    }

    /// Appends the field suffix (`p12`, `p-3`, `n7`, `z`) to `out`.
    pub fn write_suffix(self, out: &mut String) {
        let _ = match self {
            Bin::Negative(i) => write!(out, "n{i}"),
            Bin::Zero => write!(out, "z"),
            Bin::Positive(i) => write!(out, "p{i}"),
        };
    }

    fn parse_suffix(text: &str) -> Option<Bin> {
        let index = |s: &str| s.parse::<i32>().ok();
        match text.as_bytes().first()? {
            b'n' => index(&text[1..]).map(Bin::Negative),
            b'p' => index(&text[1..]).map(Bin::Positive),
            b'z' if text.len() == 1 => Some(Bin::Zero),
            _ => None,
        }
    }

    /// The key that orders bins by the values they hold (most negative first); `i64` so
    /// that negating any index is exact.
    fn order(self) -> (i8, i64) {
        match self {
            Bin::Negative(i) => (-1, -i64::from(i)),
            Bin::Zero => (0, 0),
            Bin::Positive(i) => (1, i64::from(i)),
        }
    }

    fn from_order((sign, i): (i8, i64)) -> Bin {
        // Keys are only made by `order` from an `i32`.
        let index = |i: i64| i32::try_from(i).unwrap_or(if i < 0 { i32::MIN } else { i32::MAX });
        match sign {
            -1 => Bin::Negative(index(-i)),
            0 => Bin::Zero,
            _ => Bin::Positive(index(i)),
        }
    }
}

/// The field suffix of a label's sum: `LABEL:s`.
pub const SUM_SUFFIX: &str = "s";

/// One label's distribution: counts per bin and the exact sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DistSketch {
    bins: BTreeMap<(i8, i64), u64>,
    sum: f64,
}

impl DistSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        DistSketch::default()
    }

    /// Records `value` (NaN and infinities are ignored).
    pub fn add(&mut self, value: f64) {
        if let Some(bin) = Bin::of(value) {
            *self.bins.entry(bin.order()).or_insert(0) += 1;
            self.sum += value;
        }
    }

    /// Adds `n` values in `bin` (what a stored field says).
    pub fn add_bin(&mut self, bin: Bin, n: u64) {
        if n > 0 {
            let slot = self.bins.entry(bin.order()).or_insert(0);
            *slot = slot.saturating_add(n);
        }
    }

    /// Adds `other`'s counts and sum: the sketch of both sets of values.
    pub fn merge(&mut self, other: &DistSketch) {
        for (bin, n) in &other.bins {
            let slot = self.bins.entry(*bin).or_insert(0);
            *slot = slot.saturating_add(*n);
        }
        self.sum += other.sum;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.bins.values().fold(0, |a, n| a.saturating_add(*n))
    }

    /// Sum of the values recorded (exact up to float rounding).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The bins and their counts, most negative values first.
    pub fn bins(&self) -> impl Iterator<Item = (Bin, u64)> + '_ {
        self.bins.iter().map(|(&key, &n)| (Bin::from_order(key), n))
    }

    /// The `q`-quantile (`0 ≤ q ≤ 1`): within [`RELATIVE_ACCURACY`] of the value of rank
    /// `⌊q (count − 1)⌋` (0-based) of the recorded values in order. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        for (bin, n) in self.bins() {
            seen = seen.saturating_add(n);
            if seen > rank {
                return Some(bin.value());
            }
        }
        self.bins().last().map(|(bin, _)| bin.value())
    }

    /// Folds a stored field's bin suffix (`p12`, `n3`, `z`) or sum suffix (`s`) into the sketch.
    pub fn add_field(&mut self, suffix: &str, n: Number) -> Result<()> {
        if suffix == SUM_SUFFIX {
            self.sum += n.as_f64();
            return Ok(());
        }
        let bin = Bin::parse_suffix(suffix).ok_or_else(|| {
            Error::Query(format!(
                "stored distribution field suffix {suffix:?} is not a bin"
            ))
        })?;
        self.add_bin(bin, u64::try_from(n.as_i64()).unwrap_or(0));
        Ok(())
    }

    /// The figures of the sketch with the quantiles `qs` (without the sketch: see
    /// [`Quantiles::of`]).
    pub fn summary(&self, qs: &[f64]) -> Quantiles {
        let first = self.bins().next().map_or(0.0, |(b, _)| b.value());
        let last = self.bins().last().map_or(0.0, |(b, _)| b.value());
        Quantiles {
            count: self.count(),
            sum: self.sum,
            min: first,
            max: last,
            quantiles: qs
                .iter()
                .map(|&q| (quantile_name(q), self.quantile(q).unwrap_or(0.0)))
                .collect(),
            sketch: None,
        }
    }
}

/// The sketches of a `dst` key's fields (`LABEL:BIN`, `LABEL:s`), per label.
pub fn sketches_from_fields(
    fields: impl IntoIterator<Item = (String, Number)>,
) -> Result<BTreeMap<String, DistSketch>> {
    let mut out: BTreeMap<String, DistSketch> = BTreeMap::new();
    for (field, n) in fields {
        let (label, suffix) = field
            .rsplit_once(FIELD_SEPARATOR)
            .ok_or_else(|| Error::Query(format!("stored distribution field {field:?} has no ':'")))?;
        match out.get_mut(label) {
            Some(sketch) => sketch.add_field(suffix, n)?,
            None => {
                let mut sketch = DistSketch::new();
                sketch.add_field(suffix, n)?;
                out.insert(label.to_owned(), sketch);
            }
        }
    }
    Ok(out)
}

/// `p50`, `p99`, `p99.9` for 0.5, 0.99, 0.999.
pub fn quantile_name(q: f64) -> String {
    let pct = (q * 100.0 * 1e6).round() / 1e6;
    format!("p{pct}")
}

/// Parses a list of quantiles (`0.5,0.999`), each in `[0, 1]`, at most [`MAX_QUANTILES`].
pub fn parse_quantiles(text: &str) -> Result<Vec<f64>> {
    let qs = text
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<f64>()
                .map_err(|_| Error::Query(format!("quantile {t:?} is not a number")))
        })
        .collect::<Result<Vec<f64>>>()?;
    check_quantiles(&qs)?;
    Ok(qs)
}

/// Checks a list of quantiles: each in `[0, 1]`, at least one, at most [`MAX_QUANTILES`].
pub fn check_quantiles(qs: &[f64]) -> Result<()> {
    if qs.is_empty() || qs.len() > MAX_QUANTILES {
        return Err(Error::Query(format!(
            "{} quantiles asked for; between 1 and {MAX_QUANTILES} are allowed",
            qs.len()
        )));
    }
    if let Some(q) = qs.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return Err(Error::Query(format!("quantile {q} is not between 0 and 1")));
    }
    Ok(())
}

/// What a query reports of one label's distribution: `{"count", "sum", "min", "max", "p50", …}`.
/// `min` and `max` are the lowest and highest bins' values (within [`RELATIVE_ACCURACY`]).
///
/// A result read from a store keeps its sketch, so results of several buckets merge exactly
/// ([`Quantiles::merge`]) and can report other quantiles ([`Quantiles::set_quantiles`]); one
/// parsed back from JSON has only the figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest value (within the relative accuracy).
    pub min: f64,
    /// The largest value (within the relative accuracy).
    pub max: f64,
    /// `p50`, `p90`, …: the asked quantiles.
    #[serde(flatten)]
    pub quantiles: BTreeMap<String, f64>,
    #[serde(skip)]
    sketch: Option<(DistSketch, Vec<f64>)>,
}

impl Quantiles {
    /// The summary of `sketch` with the quantiles `qs`, keeping the sketch.
    pub fn of(sketch: DistSketch, qs: &[f64]) -> Quantiles {
        let mut out = sketch.summary(qs);
        out.sketch = Some((sketch, qs.to_vec()));
        out
    }

    /// The sketch behind the figures, when this result was read from a store.
    pub fn sketch(&self) -> Option<&DistSketch> {
        self.sketch.as_ref().map(|(s, _)| s)
    }

    /// Reports the quantiles `qs` instead (an error when the sketch is not at hand).
    pub fn set_quantiles(&mut self, qs: &[f64]) -> Result<()> {
        let sketch = self.taken_sketch()?;
        *self = Quantiles::of(sketch, qs);
        Ok(())
    }

    /// Merges `other` into `self`: the figures of both sets of values together.
    pub fn merge(&mut self, other: &Quantiles) -> Result<()> {
        let (Some((mine, qs)), Some((theirs, _))) = (&mut self.sketch, &other.sketch) else {
            return Err(Error::Query(
                "distributions merge by their sketches, which a result parsed from JSON does not carry"
                    .into(),
            ));
        };
        mine.merge(theirs);
        let (sketch, qs) = (mine.clone(), qs.clone());
        *self = Quantiles::of(sketch, &qs);
        Ok(())
    }

    fn taken_sketch(&self) -> Result<DistSketch> {
        self.sketch.as_ref().map(|(s, _)| s.clone()).ok_or_else(|| {
            Error::Query("this distribution result carries no sketch (parsed from JSON)".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_within_the_accuracy_of_its_bin() {
        for &v in &[1e-9, 1e-6, 0.5, 1.0, 1.0202, 3.7, 100.0, 12345.678, 1e12, 1e289] {
            for v in [v, -v] {
                let got = Bin::of(v).unwrap().value();
                assert!(((got - v) / v).abs() <= RELATIVE_ACCURACY + 1e-12, "{v} -> {got}");
            }
        }
        assert_eq!(Bin::of(0.0), Some(Bin::Zero));
        assert_eq!(Bin::of(-1e-12), Some(Bin::Zero));
        assert_eq!(Bin::of(f64::NAN), None);
        assert_eq!(Bin::of(f64::INFINITY), None);
    }

    #[test]
    fn suffixes_round_trip_and_order_follows_values() {
        for bin in [
            Bin::Negative(5),
            Bin::Negative(-2),
            Bin::Zero,
            Bin::Positive(-7),
            Bin::Positive(40),
        ] {
            let mut s = String::new();
            bin.write_suffix(&mut s);
            assert_eq!(Bin::parse_suffix(&s), Some(bin), "{s}");
        }
        assert_eq!(Bin::parse_suffix("x1"), None);
        assert_eq!(Bin::parse_suffix("zz"), None);
        let mut sketch = DistSketch::new();
        for v in [5.0, -3.0, 0.0, -100.0, 0.001] {
            sketch.add(v);
        }
        let values: Vec<f64> = sketch.bins().map(|(b, _)| b.value()).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
        assert_eq!(sketch.count(), 5);
        assert!((sketch.quantile(0.0).unwrap() + 100.0).abs() <= 1.0);
        assert!((sketch.quantile(0.5).unwrap()).abs() < 1e-12);
        assert!((sketch.quantile(1.0).unwrap() - 5.0).abs() <= 0.05);
    }

    #[test]
    fn quantile_lists_are_checked_and_named() {
        assert_eq!(parse_quantiles("0.5, 0.999").unwrap(), vec![0.5, 0.999]);
        assert!(parse_quantiles("1.5").unwrap_err().to_string().contains("1.5"));
        assert!(parse_quantiles("x").is_err());
        let many = vec!["0.1"; MAX_QUANTILES + 1].join(",");
        assert!(parse_quantiles(&many)
            .unwrap_err()
            .to_string()
            .contains("33 quantiles"));
        assert_eq!(quantile_name(0.5), "p50");
        assert_eq!(quantile_name(0.999), "p99.9");
        assert_eq!(quantile_name(0.95), "p95");
    }
}
