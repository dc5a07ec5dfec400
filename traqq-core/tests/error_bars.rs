//! The error bars of `bmp` counts ([`CountError`]) hold what they promise, against sketches
//! filled with known numbers of distinct values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;

use traqq_core::sketch::{CountError, Sketch};

/// A sketch of `n` distinct values, distinct from every other `seed`'s.
fn sketch(seed: u32, n: u32) -> Sketch {
    let mut s = Sketch::new();
    let mut value = String::with_capacity(24);
    for i in 0..n {
        value.clear();
        let _ = write!(value, "{seed}:{i}");
        s.insert(&value);
    }
    s
}

#[test]
fn the_95_percent_interval_holds_the_true_count_in_at_least_90_percent_of_200_sketches() {
    let truth = 100_000;
    let held = (0..200)
        .filter(|&seed| {
            let n = sketch(seed, truth).count();
            let e = CountError::of(n);
            assert!((e.rse - 0.0081).abs() < 0.0002, "{e:?}");
            e.low <= u64::from(truth) && u64::from(truth) <= e.high
        })
        .count();
    eprintln!("the 95% interval held the true count in {held} of 200 sketches");
    assert!(
        held >= 180,
        "the interval held the truth in {held} of 200 sketches"
    );
}

#[test]
fn small_counts_are_exact_and_the_interval_widens_with_the_count() {
    for n in [0, 1, 7, 40] {
        let count = sketch(9, n).count();
        assert_eq!(count, u64::from(n));
        let e = CountError::of(count);
        assert!(e.exact, "{n}: {e:?}");
        assert_eq!((e.low, e.high), (count, count));
    }
    let mut last = 0.0;
    for n in [1_000u64, 10_000, 50_000, 1_000_000] {
        let e = CountError::of(n);
        assert!(!e.exact);
        let width = (e.high - e.low) as f64;
        assert!(width > last, "{n}: {e:?}");
        last = width;
        assert!(e.rse <= 0.0082, "{n}: {e:?}");
    }
}
