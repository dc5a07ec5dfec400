//! Distributions (`dst`) over both wires: quantiles within 1% of the exact ones from the raw
//! values, per day and merged, other quantiles asked with `q`, and `q` checked one element past
//! its limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use serde_json::{json, Value};
use traqq_storage::prelude::*;

use common::wire::{Session, Wire};
use common::*;

const DAY0: i64 = 1_700_006_400; // 2023-11-15, UTC

over_both_wires!(
    quantiles_per_day_merged_and_asked_for,
    the_quantile_list_is_checked
);

fn server() -> traqq_server::RunningServer {
    let mut config = mapping();
    config.mapping.distribution = vec![DistributionConfig {
        key: "event".into(),
        value_key: "ms".into(),
    }];
    start_with(loopback(), config, Arc::new(MemoryStorage::new()))
}

/// 300 values a day for two days, on two labels: `(day, label, value)`.
fn values() -> Vec<(i64, &'static str, f64)> {
    (0..600)
        .map(|i: i64| {
            let day = i % 2;
            let label = if i % 3 == 0 { "buy" } else { "view" };
            let v = 1.0 + ((i * 7919) % 1000) as f64 * if label == "buy" { 2.5 } else { 0.3 };
            (day, label, v)
        })
        .collect()
}

fn exact(values: &[(i64, &str, f64)], label: &str, day: Option<i64>, q: f64) -> f64 {
    let mut v: Vec<f64> = values
        .iter()
        .filter(|(d, l, _)| *l == label && day.is_none_or(|day| *d == day))
        .map(|(_, _, v)| *v)
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[(q * (v.len() - 1) as f64).floor() as usize]
}

fn within(got: &Value, want: f64, what: &str) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
    assert!(
        (got - want).abs() <= 0.01 * want.abs(),
        "{what}: {got} vs exact {want}"
    );
}

fn record(session: &mut Session, values: &[(i64, &str, f64)]) {
    let events: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, (day, label, v))| json!({"event": label, "ms": v, "ts": DAY0 + day * 86_400 + i as i64}))
        .collect();
    for chunk in events.chunks(100) {
        let data = session
            .send(&json!({"cmd": "record_batch", "events": chunk}))
            .ok();
        assert_eq!(data["recorded"], json!(chunk.len()), "{data}");
    }
}

fn quantiles_per_day_merged_and_asked_for(wire: Wire) {
    let server = server();
    let mut session = Session::open(&server, wire, None);
    let values = values();
    record(&mut session, &values);
    let range = json!({"min": DAY0, "max": DAY0 + 86_400});

    let mut query = json!({"cmd": "query"});
    query
        .as_object_mut()
        .unwrap()
        .extend(range.as_object().unwrap().clone());
    let days = session.send(&query).ok();
    for (d, day) in days.as_array().unwrap().iter().enumerate() {
        let dst = day["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric_type"] == "dst" && r["result"].get("Quantiles").is_some())
            .unwrap_or_else(|| panic!("no dst result in {day}"));
        for label in ["buy", "view"] {
            let q = &dst["result"]["Quantiles"][label];
            for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)] {
                within(
                    &q[name],
                    exact(&values, label, Some(d as i64), p),
                    &format!("day {d} {label} {name}"),
                );
            }
        }
    }

    let find = |extra: Value| {
        let mut req =
            json!({"cmd": "find", "metric_type": "dst", "key": "event", "add_key": "ms", "merge": true});
        let obj = req.as_object_mut().unwrap();
        obj.extend(range.as_object().unwrap().clone());
        obj.extend(extra.as_object().unwrap().clone());
        req
    };
    let merged = session.send(&find(json!({}))).ok();
    let buy = &merged[0]["result"]["Quantiles"]["buy"];
    assert_eq!(buy["count"], json!(200), "{merged}");
    within(&buy["p99"], exact(&values, "buy", None, 0.99), "merged buy p99");

    let asked = session.send(&find(json!({"q": [0.25, 0.999]}))).ok();
    let view = &asked[0]["result"]["Quantiles"]["view"];
    within(&view["p25"], exact(&values, "view", None, 0.25), "asked p25");
    within(&view["p99.9"], exact(&values, "view", None, 0.999), "asked p99.9");
    assert!(view.get("p50").is_none(), "only the asked quantiles: {view}");
}

fn the_quantile_list_is_checked(wire: Wire) {
    let server = server();
    let mut session = Session::open(&server, wire, None);
    record(&mut session, &values()[..10]);
    let find = |q: Value| json!({"cmd": "find", "min": DAY0, "max": DAY0 + 86_400, "metric_type": "dst", "key": "event", "merge": true, "q": q});
    let at_limit: Vec<f64> = (1..=32).map(|i| f64::from(i) / 33.0).collect();
    let found = session.send(&find(json!(at_limit))).ok();
    assert_eq!(
        found[0]["result"]["Quantiles"]["buy"].as_object().unwrap().len(),
        4 + 32
    );
    let past: Vec<f64> = (1..=33).map(|i| f64::from(i) / 34.0).collect();
    session.send(&find(json!(past))).fails(400, "33 quantiles");
    session
        .send(&find(json!([0.5, 1.5])))
        .fails(400, "quantile 1.5 is not between 0 and 1");
    session.send(&find(json!(["x"]))).fails(400, "\"q\"");
}
