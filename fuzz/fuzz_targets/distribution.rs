//! Distributions (`dst`): the quantile list of a query (`q=0.5,0.999`, traqq-core
//! `parse_quantiles`) and the stored fields of a distribution key (`LABEL:BIN` / `LABEL:s`,
//! `sketches_from_fields`, what every backend's hash read hands the query). Neither may panic;
//! an accepted list holds 1 to 32 quantiles in [0, 1]; a decoded sketch's quantiles are
//! ordered, lie between its min and max, and merging it with itself doubles every bin.
//!
//! Input: the first line is the quantile list; every further line `FIELD=NUMBER` is a stored
//! field (integer or float, as a store returns it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use traqq_core::batch::Number;
use traqq_core::distribution::{parse_quantiles, sketches_from_fields, MAX_QUANTILES};

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let qs = match lines.next().map(parse_quantiles) {
        Some(Ok(qs)) => {
            assert!(!qs.is_empty() && qs.len() <= MAX_QUANTILES, "accepted {} quantiles", qs.len());
            assert!(qs.iter().all(|q| (0.0..=1.0).contains(q)), "accepted {qs:?}");
            qs
        }
        _ => vec![0.5, 0.9, 0.99],
    };
    let fields = lines.filter_map(|line| {
        let (field, number) = line.rsplit_once('=')?;
        let n = match number.parse::<i64>() {
            Ok(i) => Number::Int(i),
            Err(_) => Number::Float(number.parse::<f64>().ok()?),
        };
        Some((field.to_owned(), n))
    });
    let Ok(sketches) = sketches_from_fields(fields.collect::<Vec<_>>()) else {
        return;
    };
    for sketch in sketches.values() {
        let summary = sketch.summary(&qs);
        let mut ordered = qs.clone();
        ordered.sort_by(f64::total_cmp);
        let values: Vec<f64> = ordered.iter().filter_map(|&q| sketch.quantile(q)).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "quantiles out of order: {values:?}");
        if sketch.count() > 0 {
            assert!(
                values.iter().all(|v| *v >= summary.min && *v <= summary.max),
                "quantiles {values:?} outside [{}, {}]",
                summary.min,
                summary.max
            );
        }
        let mut twice = sketch.clone();
        twice.merge(sketch);
        let doubled: Vec<_> = sketch.bins().map(|(b, n)| (b, n.saturating_mul(2))).collect();
        assert_eq!(twice.bins().collect::<Vec<_>>(), doubled, "merging with itself doubles the bins");
    }
}
