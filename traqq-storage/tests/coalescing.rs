//! Property: recording events as one coalesced batch stores exactly what recording them one
//! by one stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::json;
use traqq_storage::prelude::*;

const T0: i64 = 1_700_000_000;

fn config() -> TraqqConfig {
    TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into(), "ip~geo".into()],
            add: vec![
                "event".into(),
                "event~geo".into(),
                "event~geo~offer".into(),
                "event~geo~ip~offer".into(),
            ],
            add_value: vec![AddValueConfig {
                key: "offer~event".into(),
                add_key: "amount".into(),
            }],
            top: vec!["geo".into(), "geo~offer".into()],
            distribution: Vec::new(),
        },
        time: TimeConfig {
            store_hourly: true,
            timezone: "Europe/Berlin".into(),
            ..TimeConfig::default()
        },
        ..TraqqConfig::default()
    }
}

fn event() -> impl Strategy<Value = serde_json::Value> {
    (
        prop::sample::select(vec!["view", "click", "buy"]),
        0u32..40,
        prop::option::of(prop::sample::select(vec!["US", "DE", " FR ", "a:b", ""])),
        prop::option::of(0u32..5),
        prop::option::of(prop_oneof![
            (0u32..10_000).prop_map(|c| json!(c as f64 / 4.0)),
            Just(json!("2.5")),
            Just(json!("x"))
        ]),
        0i64..(3 * 86_400),
    )
        .prop_map(|(event, ip, geo, offer, amount, dt)| {
            let mut v = json!({"event": event, "ip": format!("10.0.0.{ip}"), "ts": T0 + dt});
            if let Some(g) = geo {
                v["geo"] = json!(g);
            }
            if let Some(o) = offer {
                v["offer"] = json!(o);
            }
            if let Some(a) = amount {
                v["amount"] = a;
            }
            v
        })
}

fn query(t: &Traqq, bucket: BucketKind) -> String {
    let r = t
        .query_with(&QueryOptions {
            min: T0,
            max: T0 + 3 * 86_400,
            bucket,
            ..QueryOptions::default()
        })
        .unwrap();
    // Float sums may differ in the last bits by addition order: compare rounded.
    let mut text = serde_json::to_string(&r.days).unwrap();
    text = text
        .split(',')
        .map(|part| match part.parse::<f64>() {
            Ok(x) => format!("{x:.6}"),
            Err(_) => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",");
    format!("{text}{:?}{:?}", r.unions, r.top_unions)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn coalesced_batch_equals_one_by_one(events in prop::collection::vec(event(), 1..80)) {
        let batched = Traqq::new(config(), MemoryStorage::new(), "p").unwrap().with_clock(ManualClock::new(T0 + 3 * 86_400));
        let single = Traqq::new(config(), MemoryStorage::new(), "p").unwrap().with_clock(ManualClock::new(T0 + 3 * 86_400));
        let outcome = batched
            .record_batch(events.iter().map(|e| IncomingEvent::from_json(e.clone()).unwrap()))
            .unwrap();
        prop_assert_eq!(outcome.recorded, events.len());
        for e in &events {
            single.record(IncomingEvent::from_json(e.clone()).unwrap()).unwrap();
        }
        for bucket in [BucketKind::Day, BucketKind::Hour] {
            prop_assert_eq!(query(&batched, bucket), query(&single, bucket));
        }
    }
}
