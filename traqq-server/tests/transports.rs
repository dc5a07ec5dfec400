//! The cases both transports share, written once and run over TCP JSON-lines and over HTTP
//! (`tcp::` and `http::` tests): the same request must get the same answer — the same
//! message, and over HTTP the status that goes with it. What only one wire has (malformed
//! lines, `auth`, pipelining; bodies, routes, headers) is in `tcp.rs` and `http.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};
use traqq_server::{Command, ServerConfig, Status};
use traqq_storage::prelude::*;

use common::wire::{Session, Wire};
use common::*;

const TS: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

over_both_wires!(
    bad_requests_are_refused_with_a_message_naming_the_fault,
    a_token_guards_every_request,
    a_storage_outage_fails_requests_as_unavailable_and_recovers,
    a_batch_records_good_events_and_names_the_rejected_ones,
    hourly_buckets_filters_and_leaderboards,
    totals_are_unions_over_the_range,
    an_event_id_counts_once_over_every_connection,
    labels_past_a_metrics_cap_are_counted_under_other,
    weeks_and_months_merge_their_days,
    days_of_the_zone_the_query_names,
);

/// Requests answered with `status`, whatever their command (HTTP names a refused request by
/// its route: it is refused before its body says whether it is one event or a batch).
fn answered(server: &traqq_server::RunningServer, status: Status) -> u64 {
    let metrics = server.metrics();
    Command::ALL.iter().map(|&c| metrics.requests(c, status)).sum()
}

fn bad_requests_are_refused_with_a_message_naming_the_fault(wire: Wire) {
    let (server, _) = start(ServerConfig {
        max_batch_events: 5,
        ..loopback()
    });
    let mut session = Session::open(&server, wire, None);
    let record = |event: Value| json!({"cmd": "record", "event": event});
    let cases: Vec<(Value, &str)> = vec![
        (record(json!({"ip": "1.2.3.4"})), "field \"event\" is missing"),
        (record(json!({"event": "   "})), "field \"event\" is empty"),
        (record(json!({"event": 5})), "field \"event\" must be a string"),
        (
            record(json!({"event": "x", "ts": "yesterday"})),
            "invalid event time in field \"ts\"",
        ),
        (record(json!({"event": "x", "ts": true})), "invalid event time"),
        (
            record(json!({"event": "x", "ts": 99_999_999_999_i64})),
            "event time",
        ),
        (
            json!({"cmd": "record_batch", "events": [{}, {}, {}, {}, {}, {}]}),
            "batch holds more than 5 events (server.max_batch_events = 5)",
        ),
        (
            json!({"cmd": "query", "min": 1_700_086_400, "max": 1_700_000_000}),
            "\"min\" (1700086400) is after \"max\" (1700000000)",
        ),
        (
            json!({"cmd": "query", "min": "yesterday", "max": 1_700_000_000}),
            "\"min\" must be an integer",
        ),
        (
            json!({"cmd": "query", "min": 1.5, "max": 1_700_000_000}),
            "\"min\" must be an integer",
        ),
        (
            json!({"cmd": "query", "max": 1_700_000_000}),
            "missing field \"min\"",
        ),
        (
            json!({"cmd": "query", "min": i64::MIN, "max": i64::MAX}),
            "out of range",
        ),
        (
            json!({"cmd": "query_days", "days": "seven"}),
            "\"days\" must be an integer",
        ),
        (
            json!({"cmd": "query_days", "days": -3}),
            "\"days\" must be 0 or more, found -3",
        ),
        (
            json!({"cmd": "query_days", "days": 99_999_999_999_i64}),
            "too large",
        ),
        (
            json!({"cmd": "query_days", "days": 5000}),
            "more than query.max_buckets = 3700",
        ),
        (
            json!({"cmd": "query", "min": 0, "max": 1_700_000_000}),
            "range spans more than 3700 daily buckets (query.max_buckets)",
        ),
        (
            json!({"cmd": "query", "min": 1, "max": 2, "bucket": "w"}),
            "\"bucket\" must be \"d\" or \"h\"",
        ),
        (
            json!({"cmd": "query", "min": 1, "max": 2, "limit": 0}),
            "\"limit\" must be at least 1",
        ),
        (
            json!({"cmd": "query", "min": 1, "max": 2, "ignore": ["[z-a]"]}),
            "invalid ignore glob",
        ),
        (
            json!({"cmd": "query", "min": 1, "max": 2, "accept": ["[z-a]"]}),
            "invalid accept glob",
        ),
        (
            json!({"cmd": "find", "min": 1, "max": 2, "metric_type": "sum", "key": "event"}),
            "unknown metric type \"sum\"",
        ),
        (
            json!({"cmd": "find", "metric_type": "add", "key": "event"}),
            "find needs either \"days\"",
        ),
        (
            json!({"cmd": "find", "days": 1, "key": "event"}),
            "missing field \"metric_type\"",
        ),
        (
            json!({"cmd": "find", "days": 1, "metric_type": "add", "key": "event", "merge": "maybe"}),
            "\"merge\" must be true or false",
        ),
        (
            json!({"cmd": "find", "days": 1, "min": 1, "metric_type": "add", "key": "event"}),
            "either \"days\" or \"min\"/\"max\"",
        ),
    ];
    for (request, want) in &cases {
        let answer = session.send(request);
        assert!(
            answer.body["success"] == json!(false),
            "{request} was accepted: {answer:?}"
        );
        answer.fails(400, want);
    }
    // Nothing of the refused requests was stored; a good one still is.
    session
        .send(&record(json!({"event": "ok", "ip": "1.1.1.1", "ts": TS})))
        .ok();
    assert_eq!(session.event_count(TS, "ok"), 1);
    assert_eq!(server.metrics().events_recorded(), 1);
    assert_eq!(
        answered(&server, Status::BadRequest),
        cases.len() as u64,
        "every refused request is counted"
    );
    server.stop().unwrap();
}

fn a_token_guards_every_request(wire: Wire) {
    let (server, _) = start(ServerConfig {
        auth_token: Some("s3cret".into()),
        ..loopback()
    });
    let event = json!({"cmd": "record", "event": {"event": "x", "ts": TS}});
    let requests = [
        event.clone(),
        json!({"cmd": "record_batch", "events": [{"event": "x", "ts": TS}]}),
        json!({"cmd": "query", "min": TS, "max": TS}),
        json!({"cmd": "query_days", "days": 1}),
        json!({"cmd": "find", "days": 1, "metric_type": "add", "key": "event"}),
    ];
    for token in [None, Some("s3cre"), Some("s3cret-and-more")] {
        let mut session = Session::open(&server, wire, token);
        for request in &requests {
            session.send(request).fails(401, "unauthorized");
        }
    }
    let mut session = Session::open(&server, wire, Some("s3cret"));
    session.send(&event).ok();
    assert_eq!(session.event_count(TS, "x"), 1);
    assert_eq!(server.metrics().events_recorded(), 1);
    // Three sessions of five requests, and over TCP the two refused `auth` requests.
    let refused_auths = if wire == Wire::Tcp { 2 } else { 0 };
    assert_eq!(answered(&server, Status::Unauthorized), 3 * 5 + refused_auths);
    server.stop().unwrap();
}

fn a_storage_outage_fails_requests_as_unavailable_and_recovers(wire: Wire) {
    let store = Arc::new(Flaky::default());
    let server = start_with(loopback(), mapping(), store.clone());
    let mut session = Session::open(&server, wire, None);
    let record = json!({"cmd": "record", "event": {"event": "a", "ts": TS}});
    session.send(&record).ok();
    store.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        session
            .send(&record)
            .fails(503, "faulty storage is unavailable: injected outage");
        session
            .send(&json!({"cmd": "query", "min": TS, "max": TS}))
            .fails(503, "unavailable");
        session
            .send(&json!({"cmd": "record_batch", "events": [{"event": "a", "ts": TS}]}))
            .fails(503, "unavailable");
    }
    // Bad input is still reported as bad input while the store is down.
    session
        .send(&json!({"cmd": "record", "event": {"ip": "1"}}))
        .fails(400, "\"event\" is missing");
    store.down.store(false, Ordering::SeqCst);
    session.send(&record).ok();
    assert_eq!(session.event_count(TS, "a"), 2);
    assert_eq!(server.metrics().requests(Command::Record, Status::Unavailable), 3);
    server.stop().unwrap();
}

fn a_batch_records_good_events_and_names_the_rejected_ones(wire: Wire) {
    let (server, _) = start(loopback());
    let mut session = Session::open(&server, wire, None);
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"event": "view", "ip": format!("10.0.0.{i}"), "ts": TS}))
        .chain([
            json!({"geo": "nameless"}),
            json!("not an object"),
            json!({"event": "late", "ts": "later"}),
        ])
        .collect();
    let data = session
        .send(&json!({"cmd": "record_batch", "events": events}))
        .ok();
    assert_eq!(data["recorded"], json!(30), "{data}");
    let rejected = data["rejected"].as_array().unwrap();
    let indexes: Vec<i64> = rejected.iter().map(|r| r["index"].as_i64().unwrap()).collect();
    assert_eq!(indexes, [30, 31, 32]);
    for (rejection, want) in
        rejected
            .iter()
            .zip(["\"event\" is missing", "invalid event JSON", "invalid event time"])
    {
        let error = rejection["error"].as_str().unwrap();
        assert!(error.contains(want), "{error} should say {want}");
    }
    assert_eq!(session.event_count(TS, "view"), 30);
    assert_eq!(server.metrics().events_recorded(), 30);
    server.stop().unwrap();
}

fn hourly_buckets_filters_and_leaderboards(wire: Wire) {
    let mut config = mapping();
    config.time.store_hourly = true;
    let server = start_with(loopback(), config, Arc::new(MemoryStorage::new()));
    let mut session = Session::open(&server, wire, None);
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"event": "view", "geo": format!("g{}", i % 3), "ip": format!("10.0.0.{i}"), "ts": TS + (i % 2) * 3600}))
        .collect();
    session
        .send(&json!({"cmd": "record_batch", "events": events}))
        .ok();
    // Hourly buckets: 22:00 and 23:00 UTC hold 15 events each.
    let hours: Vec<DayResult> = serde_json::from_value(
        session
            .send(
                &json!({"cmd": "query", "min": TS, "max": TS + 3600, "bucket": "h", "accept": ["add:event"]}),
            )
            .ok(),
    )
    .unwrap();
    assert_eq!(hours.len(), 2);
    assert_eq!(hours[0].date, "2023-11-14T22:00:00+00:00");
    for hour in &hours {
        assert_eq!(hour.results.len(), 1, "accept keeps add:event only");
        assert_eq!(
            hour.results[0].result,
            MetricData::Hash([("view".to_string(), 15)].into())
        );
    }
    let top: Vec<MetricResult> = serde_json::from_value(
        session
            .send(&json!({"cmd": "find", "min": TS, "max": TS, "metric_type": "top", "key": "geo", "limit": 2, "merge": true}))
            .ok(),
    )
    .unwrap();
    assert_eq!(
        top[0].result,
        MetricData::Ranked(vec![("g0".into(), 10.0), ("g1".into(), 10.0)])
    );
    let days: Vec<DayResult> = serde_json::from_value(
        session
            .send(&json!({"cmd": "query", "min": TS, "max": TS, "ignore": ["top:*", "bmp:*", "adv:*"]}))
            .ok(),
    )
    .unwrap();
    assert!(days[0].results.iter().all(|r| r.metric_type == MetricType::Add));
    assert_eq!(days[0].results.len(), 2, "add:event and add:event~geo");
    server.stop().unwrap();
}

/// `totals: true` adds the range's totals (unique counts as unions) beside the days; without
/// it the reply is the traqq 0.2 list of days.
fn totals_are_unions_over_the_range(wire: Wire) {
    let (server, _) = start(loopback());
    let mut session = Session::open(&server, wire, None);
    let events: Vec<Value> = [TS, TS + 86_400]
        .iter()
        .flat_map(|ts| ["1.1.1.1", "2.2.2.2"].map(|ip| json!({"event": "v", "ip": ip, "ts": ts})))
        .collect();
    session
        .send(&json!({"cmd": "record_batch", "events": events}))
        .ok();
    let max = TS + 86_400;
    let plain = session.send(&json!({"cmd": "query", "min": TS, "max": max})).ok();
    assert_eq!(plain.as_array().unwrap().len(), 2);
    let with = session
        .send(&json!({"cmd": "query", "min": TS, "max": max, "totals": true}))
        .ok();
    assert_eq!(with["days"], plain);
    let totals = with["totals"].as_array().unwrap();
    let total = |metric_type: &str, key: &str| {
        totals
            .iter()
            .find(|m| m["metric_type"] == metric_type && m["key"] == json!([key]))
            .map(|m| m["result"].clone())
            .unwrap_or_else(|| panic!("no {metric_type}:{key} in {with}"))
    };
    assert_eq!(total("bmp", "ip"), json!({"Count": 2}), "a union, not 2 + 2");
    assert_eq!(total("add", "event"), json!({"Hash": {"v": 4}}), "a sum");
    server.stop().unwrap();
}

/// With `[event] id_field`, a retried event is acknowledged as a duplicate and not counted
/// again, whichever connection the retry comes on.
fn an_event_id_counts_once_over_every_connection(wire: Wire) {
    let mut config = mapping();
    config.event.id_field = Some("id".into());
    let server = start_with(loopback(), config, Arc::new(MemoryStorage::new()));
    let mut first = Session::open(&server, wire, None);
    let mut second = Session::open(&server, wire, None);
    // Ids are remembered for recent days only (`dedup_days`): events of now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let event = |id: &str| json!({"event": "buy", "id": id, "ts": now});
    let record = |id: &str| json!({"cmd": "record", "event": event(id)});
    assert_eq!(
        first.send(&record("a")).ok(),
        Value::Null,
        "a new event: plain success"
    );
    assert_eq!(second.send(&record("a")).ok(), json!({"duplicate": true}));
    let batch = json!({"cmd": "record_batch", "events": [event("a"), event("b"), event("b"), {"event": "buy", "id": 5.5}]});
    let data = second.send(&batch).ok();
    assert_eq!(data["recorded"], json!(1), "{data}");
    assert_eq!(data["duplicates"], json!(2), "{data}");
    assert_eq!(data["rejected"][0]["index"], json!(3), "{data}");
    let data = first
        .send(&json!({"cmd": "record_batch", "events": [event("c")]}))
        .ok();
    assert_eq!(
        data,
        json!({"recorded": 1, "rejected": []}),
        "no duplicates: no count"
    );
    assert_eq!(first.event_count(now, "buy"), 3, "a b c");
    assert_eq!(server.metrics().events_duplicate(), 3);
    let text = server.metrics().render(&MemoryStorage::new());
    assert!(text.contains("traqq_events_duplicate_total 3\n"), "{text}");
    server.stop().unwrap();
}

/// `[limits] max_labels`: a metric's bucket keeps that many labels; new ones past it count
/// under `(other)`, in counters and leaderboards alike, and the totals stay exact.
fn labels_past_a_metrics_cap_are_counted_under_other(wire: Wire) {
    let mut config = mapping();
    config.mapping.add.push("event~url".into());
    config.mapping.top.push("url".into());
    config.limits.max_labels = 50;
    config.limits.max_labels_by_pattern.insert("url~event".into(), 5);
    let server = start_with(loopback(), config, Arc::new(MemoryStorage::new()));
    let mut session = Session::open(&server, wire, None);
    let events: Vec<Value> = (0..20)
        .map(|i| json!({"event": "view", "url": format!("/p/{i:02}"), "ts": TS}))
        .collect();
    session
        .send(&json!({"cmd": "record_batch", "events": events}))
        .ok();
    let find = |session: &mut Session, metric_type: &str, key: &str| {
        session
            .send(&json!({"cmd": "find", "min": TS, "max": TS, "metric_type": metric_type, "key": key, "merge": true}))
            .ok()[0]["result"]
            .clone()
    };
    let by_url = find(&mut session, "add", "event~url");
    let labels = by_url["Hash"].as_object().unwrap();
    assert_eq!(labels.len(), 6, "5 labels and (other): {by_url}");
    assert_eq!(labels["(other)"], json!(15));
    assert_eq!(labels["view~/p/00"], json!(1), "the first five in byte order");
    let top = find(&mut session, "top", "url");
    let ranked = top["Ranked"].as_array().unwrap();
    assert_eq!(
        ranked.len(),
        20,
        "the url leaderboard has its own cap, 50, not reached: {top}"
    );
    assert_eq!(find(&mut session, "add", "event")["Hash"]["view"], json!(20));
    let metrics =
        traqq_server::client::http_request(server.http_addr().unwrap(), "GET", "/metrics", &[], b"").unwrap();
    assert!(
        metrics.body.contains("traqq_labels_overflowed_total 15\n"),
        "{}",
        metrics.body
    );
    server.stop().unwrap();
}

/// `"group": "week" | "month"`: one result per ISO week or calendar month, its days merged
/// (unique counts as unions), cut to the range.
fn weeks_and_months_merge_their_days(wire: Wire) {
    let (server, _) = start(loopback());
    let mut session = Session::open(&server, wire, None);
    // Mon 2023-11-13 .. Sun 2023-11-26 (UTC): two ISO weeks; the same two ips every day.
    let monday = 1_699_833_600;
    let events: Vec<Value> = (0..14)
        .flat_map(|d| {
            ["1.1.1.1", "2.2.2.2"]
                .map(move |ip| json!({"event": "v", "ip": ip, "ts": monday + d * 86_400 + 600}))
        })
        .collect();
    session
        .send(&json!({"cmd": "record_batch", "events": events}))
        .ok();
    // From the Wednesday of the first week to the end of the second.
    let min = monday + 2 * 86_400;
    let max = monday + 14 * 86_400 - 1;
    let weeks = session
        .send(&json!({"cmd": "query", "min": min, "max": max, "group": "week"}))
        .ok();
    let weeks = weeks.as_array().unwrap();
    assert_eq!(weeks.len(), 2, "{weeks:?}");
    assert_eq!(
        (
            &weeks[0]["date"],
            &weeks[0]["last_date"],
            &weeks[0]["days"],
            &weeks[0]["group"]
        ),
        (
            &json!("2023-11-15"),
            &json!("2023-11-19"),
            &json!(5),
            &json!("week")
        )
    );
    let metric = |group: &Value, metric_type: &str| {
        group["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric_type"] == metric_type)
            .map(|r| r["result"].clone())
            .unwrap()
    };
    assert_eq!(metric(&weeks[0], "add"), json!({"Hash": {"v": 10}}));
    assert_eq!(
        metric(&weeks[0], "bmp"),
        json!({"Count": 2}),
        "weekly actives: a union"
    );
    assert_eq!(metric(&weeks[1], "add"), json!({"Hash": {"v": 14}}));
    let months = session
        .send(&json!({"cmd": "query", "min": min, "max": max, "group": "month", "totals": true}))
        .ok();
    assert_eq!(months["groups"].as_array().unwrap().len(), 1);
    assert_eq!(months["groups"][0]["days"], json!(12));
    assert_eq!(
        months["totals"].as_array().unwrap().len(),
        months["groups"][0]["results"].as_array().unwrap().len()
    );
    // Without a group: the plain list of days.
    let days = session
        .send(&json!({"cmd": "query", "min": min, "max": max, "group": "day"}))
        .ok();
    assert_eq!(days.as_array().unwrap().len(), 12);
    session
        .send(&json!({"cmd": "query", "min": min, "max": max, "group": "year"}))
        .fails(400, "\"group\" must be \"day\", \"week\" or \"month\"");
    session
        .send(&json!({"cmd": "query", "min": min, "max": max, "group": "week", "bucket": "h"}))
        .fails(400, "needs daily buckets");
    server.stop().unwrap();
}

/// `"tz"`: the days of the zone the query names, assembled from the stored hours, or read as
/// stored when the zone is one of `time.extra_zones` (then without any hours).
fn days_of_the_zone_the_query_names(wire: Wire) {
    let mut from_hours = mapping();
    from_hours.time.store_hourly = true;
    let mut stored = mapping();
    stored.time.extra_zones = vec!["Asia/Tokyo".into()];
    for config in [from_hours, stored] {
        zone_days_over(wire, config);
    }
}

fn zone_days_over(wire: Wire, config: TraqqConfig) {
    let server = start_with(loopback(), config, Arc::new(MemoryStorage::new()));
    let mut session = Session::open(&server, wire, None);
    // 2023-11-14 20:00 and 23:00 UTC: one UTC day, but 11-15 05:00 and 08:00 in Tokyo; and
    // 2023-11-15 02:00 UTC: 11-15 in both.
    let events: Vec<Value> = [1_699_992_000, 1_700_002_800, 1_700_013_600]
        .iter()
        .map(|ts| json!({"event": "v", "ip": format!("ip{ts}"), "ts": ts}))
        .collect();
    session
        .send(&json!({"cmd": "record_batch", "events": events}))
        .ok();
    let (min, max) = (1_699_920_000, 1_700_092_799); // 2023-11-14 .. 11-15, UTC
    let count = |days: &Value, date: &str| {
        days.as_array()
            .unwrap()
            .iter()
            .find(|d| d["date"] == date)
            .and_then(|d| {
                d["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["metric_type"] == "add")
            })
            .map_or(0, |r| r["result"]["Hash"]["v"].as_i64().unwrap())
    };
    let utc = session
        .send(&json!({"cmd": "query", "min": min, "max": max}))
        .ok();
    assert_eq!((count(&utc, "2023-11-14"), count(&utc, "2023-11-15")), (2, 1));
    let tokyo = session
        .send(&json!({"cmd": "query", "min": min, "max": max, "tz": "Asia/Tokyo"}))
        .ok();
    assert_eq!(
        (count(&tokyo, "2023-11-14"), count(&tokyo, "2023-11-15")),
        (0, 3),
        "{tokyo}"
    );
    let found = session
        .send(&json!({"cmd": "find", "min": min, "max": max, "metric_type": "bmp", "key": "ip", "tz": "Asia/Tokyo"}))
        .ok();
    let per_day: Vec<&Value> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["result"]["Count"])
        .collect();
    assert_eq!(per_day, [&json!(3)], "Tokyo's 11-15 holds all three ips: {found}");
    session
        .send(&json!({"cmd": "query", "min": min, "max": max, "tz": "Mars/Olympus"}))
        .fails(400, "\"tz\" must be an IANA time zone");
    session
        .send(&json!({"cmd": "query", "min": min, "max": max, "tz": "Asia/Kolkata"}))
        .fails(400, "not whole hours apart");
    server.stop().unwrap();
}
