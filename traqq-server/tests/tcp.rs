//! The TCP JSON-lines protocol over real loopback sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use traqq_server::{Client, Command, ServerConfig, Status};
use traqq_storage::prelude::*;

use common::*;

const TS: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z
const DAY: i64 = 1_699_920_000; // its UTC day

fn reply_line(reader: &mut BufReader<TcpStream>) -> Value {
    let mut line = String::new();
    assert!(
        reader.read_line(&mut line).unwrap() > 0,
        "server closed the connection"
    );
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?} is not JSON: {e}"))
}

fn event_count(client: &mut Client, name: &str) -> i64 {
    let found: Vec<MetricResult> = client
        .request(&json!({"cmd":"find","min":TS,"max":TS,"metric_type":"add","key":"event","merge":true}))
        .unwrap();
    match found.first().map(|r| &r.result) {
        Some(MetricData::Hash(h)) => h.get(name).copied().unwrap_or(0),
        None => 0,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn every_hardening_case_on_one_connection_then_a_valid_record_counts() {
    let (server, _) = start(ServerConfig {
        max_line_bytes: 64 * 1024,
        max_batch_events: 5,
        ..loopback()
    });
    let stream = TcpStream::connect(server.tcp_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);

    let deep_event = format!(
        r#"{{"cmd":"record","event":{{"event":"deep","a":{}1{}}}}}"#,
        r#"{"a":"#.repeat(300),
        "}".repeat(300)
    );
    let huge = format!(
        r#"{{"cmd":"record","event":{{"event":"huge","pad":"{}"}}}}"#,
        "x".repeat(200 * 1024)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            br#"{"cmd":"record","event":{"event":"x""#.to_vec(),
            "malformed JSON request",
        ),
        (
            b"[1,2,3]".to_vec(),
            "request must be a JSON object, found an array",
        ),
        (b"42".to_vec(), "request must be a JSON object, found a number"),
        (
            br#""record""#.to_vec(),
            "request must be a JSON object, found a string",
        ),
        (b"null".to_vec(), "request must be a JSON object, found null"),
        (br#"{"event":{"event":"x"}}"#.to_vec(), "missing field \"cmd\""),
        (br#"{"cmd":7}"#.to_vec(), "field \"cmd\" must be a string"),
        (br#"{"cmd":"explode"}"#.to_vec(), "unknown cmd \"explode\""),
        (br#"{"cmd":"record"}"#.to_vec(), "missing field \"event\""),
        (
            br#"{"cmd":"record","event":"click"}"#.to_vec(),
            "field \"event\" must be a JSON object, found a string",
        ),
        (
            br#"{"cmd":"record","event":[1]}"#.to_vec(),
            "field \"event\" must be a JSON object, found an array",
        ),
        (deep_event.into_bytes(), "recursion limit"),
        (
            b"{\"cmd\":\"record\",\"event\":{\"event\":\"caf\xe9\"}}".to_vec(),
            "not valid UTF-8",
        ),
        (
            br#"{"cmd":"query_days","days":"7"}"#.to_vec(),
            "field \"days\" must be an integer, found a string",
        ),
        (
            br#"{"cmd":"query","min":1,"max":2,"bucket":1}"#.to_vec(),
            "field \"bucket\" must be a string",
        ),
        (
            br#"{"cmd":"query","min":1,"max":2,"accept":5}"#.to_vec(),
            "field \"accept\" must be a list of glob strings",
        ),
        (
            br#"{"cmd":"record_batch","events":{"event":"x"}}"#.to_vec(),
            "field \"events\" must be a JSON array",
        ),
        (
            br#"{"cmd":"auth","token":5}"#.to_vec(),
            "field \"token\" must be a string",
        ),
        (
            huge.into_bytes(),
            "request line longer than server.max_line_bytes = 65536 bytes",
        ),
    ];
    for (line, _) in &cases {
        writer.write_all(line).unwrap();
        writer.write_all(b"\n").unwrap();
        // A blank line is not a request and gets no reply.
        writer.write_all(b"\r\n").unwrap();
    }
    writer
        .write_all(br#"{"cmd":"record","event":{"event":"ok","ip":"1.1.1.1","ts":1700000000}}"#)
        .unwrap();
    writer.write_all(b"\n").unwrap();
    for (line, want) in &cases {
        let reply = reply_line(&mut reader);
        let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
        assert_eq!(reply["success"], json!(false), "{shown} -> {reply}");
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains(want), "{shown}\n  got:  {error}\n  want: {want}");
    }
    assert_eq!(reply_line(&mut reader), json!({"success": true}));

    // Nothing from the bad lines was stored; the good one was.
    drop(writer);
    let mut client = Client::connect(server.tcp_addr().unwrap()).unwrap();
    let days = client.query(TS, TS).unwrap();
    assert_eq!(days.len(), 1);
    let adds: Vec<_> = days[0]
        .results
        .iter()
        .filter(|r| r.metric_type == MetricType::Add && r.key == ["event"])
        .collect();
    assert_eq!(adds[0].result, MetricData::Hash([("ok".to_string(), 1)].into()));
    assert_eq!(server.metrics().events_recorded(), 1);
    assert!(server.metrics().requests(Command::Invalid, Status::BadRequest) >= 6);
    server.stop().unwrap();
}

#[test]
fn an_over_long_line_is_discarded_while_it_streams_and_others_are_served() {
    let (server, _) = start(ServerConfig {
        max_line_bytes: 1024,
        ..loopback()
    });
    let addr = server.tcp_addr().unwrap();
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    // 8 MiB without a newline, in pieces: far beyond the cap, never held whole.
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..128 {
        writer.write_all(&chunk).unwrap();
    }
    // Meanwhile another client is served.
    let mut other = Client::connect(addr).unwrap();
    other.ping().unwrap();
    writer.write_all(b"\n{\"cmd\":\"ping\"}\n").unwrap();
    let reply = reply_line(&mut reader);
    assert!(reply["error"]
        .as_str()
        .unwrap()
        .contains("longer than server.max_line_bytes = 1024"));
    assert_eq!(reply_line(&mut reader), json!({"success": true, "data": "pong"}));
    // An over-long line cut by the end of the stream is still answered.
    writer.write_all(&chunk[..4096]).unwrap();
    writer.shutdown(std::net::Shutdown::Write).unwrap();
    let reply = reply_line(&mut reader);
    assert!(reply["error"].as_str().unwrap().contains("max_line_bytes"));
    server.stop().unwrap();
}

#[test]
fn traqq_02_requests_get_traqq_02_replies() {
    let (server, _) = start(loopback());
    let stream = TcpStream::connect(server.tcp_addr().unwrap()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut send = |line: &str| {
        writer.write_all(line.as_bytes()).unwrap();
        writer.write_all(b"\n").unwrap();
        reply_line(&mut reader)
    };
    for (ip, geo, amount) in [
        ("1.1.1.1", "US", 10.5),
        ("2.2.2.2", "US", 2.0),
        ("1.1.1.1", "DE", 0.25),
    ] {
        let line =
            json!({"cmd":"record","event":{"event":"purchase","ip":ip,"geo":geo,"amount":amount,"ts":TS}});
        assert_eq!(send(&line.to_string()), json!({"success": true}));
    }
    let location = |rest: &str| format!("t:{rest}");
    // traqq 0.2's shape, plus the count's error bars beside `result` (issue 16).
    let two_ips = serde_json::to_value(traqq_storage::traqq_core::sketch::CountError::of(2)).unwrap();
    assert_eq!(two_ips["exact"], json!(true));
    let expected_day = json!({
        "date": "2023-11-14",
        "timestamp": DAY,
        "results": [
            {"metric_type":"bmp","key":["ip"],"location":location(&format!("bmp:d:{DAY}:ip")),"add_key":null,"result":{"Count":2},"error":two_ips},
            {"metric_type":"add","key":["event"],"location":location(&format!("add:d:{DAY}:event")),"add_key":null,"result":{"Hash":{"purchase":3}}},
            {"metric_type":"add","key":["event","geo"],"location":location(&format!("add:d:{DAY}:event~geo")),"add_key":null,"result":{"Hash":{"purchase~DE":1,"purchase~US":2}}},
            {"metric_type":"adv","key":["event"],"location":location(&format!("adv:d:{DAY}:amount:event")),"add_key":"amount","result":{"FloatHash":{"purchase":12.75}}},
            {"metric_type":"adv","key":["event"],"location":location(&format!("adv:d:{DAY}:amount:event:i")),"add_key":"amount","result":{"Summary":{"sum":12.75,"count":3}}},
            {"metric_type":"adv","key":["event"],"location":location(&format!("adv:d:{DAY}:amount:event:c")),"add_key":"amount","result":{"Hash":{"purchase":3}}},
            {"metric_type":"top","key":["geo"],"location":location(&format!("top:d:{DAY}:geo")),"add_key":null,"result":{"Ranked":[["US",2.0],["DE",1.0]]}},
        ]
    });
    let reply = send(&format!(r#"{{"cmd":"query","min":{TS},"max":{TS}}}"#));
    assert_eq!(reply, json!({"success": true, "data": [expected_day]}));

    // Two days: the empty next day is listed too; find merges across them.
    let next = TS + 86_400;
    let line = json!({"cmd":"record","event":{"event":"purchase","ip":"3.3.3.3","geo":"FR","ts":next}});
    assert_eq!(send(&line.to_string()), json!({"success": true}));
    let reply = send(&format!(
        r#"{{"cmd":"query","min":{TS},"max":{}}}"#,
        next + 86_400
    ));
    assert_eq!(reply["data"].as_array().unwrap().len(), 3);
    assert_eq!(reply["data"][2]["results"], json!([]));
    let reply = send(&format!(
        r#"{{"cmd":"find","min":{TS},"max":{next},"metric_type":"add","key":"event","merge":true}}"#
    ));
    assert_eq!(reply["data"][0]["result"], json!({"Hash":{"purchase":4}}));
    assert_eq!(
        reply["data"][0]["location"],
        json!(format!("t:add:d:{DAY}-{}:event", DAY + 86_400))
    );
    // Merged uniques are a union (3 distinct IPs), not a sum of days (2 + 1).
    let reply = send(&format!(
        r#"{{"cmd":"find","min":{TS},"max":{next},"metric_type":"bmp","key":"ip","merge":true}}"#
    ));
    assert_eq!(reply["data"][0]["result"], json!({"Count":3}));
    let reply = send(&format!(
        r#"{{"cmd":"find","min":{TS},"max":{next},"metric_type":"bmp","key":"ip","merge":false}}"#
    ));
    assert_eq!(reply["data"].as_array().unwrap().len(), 2);
    let reply = send(&format!(
        r#"{{"cmd":"find","min":{TS},"max":{TS},"metric_type":"adv","key":"event","add_key":"amount"}}"#
    ));
    assert_eq!(
        reply["data"][0]["result"],
        json!({"FloatHash":{"purchase":12.75}})
    );

    // query_days uses the clock: today's events appear in the last entry.
    assert_eq!(
        send(r#"{"cmd":"record","event":{"event":"now"}}"#),
        json!({"success": true})
    );
    let reply = send(r#"{"cmd":"query_days","days":2}"#);
    let days = reply["data"].as_array().unwrap();
    assert_eq!(days.len(), 3);
    assert_eq!(days[2]["results"][0]["result"], json!({"Hash":{"now":1}}));
    assert_eq!(
        send(r#"{"cmd":"ping"}"#),
        json!({"success": true, "data": "pong"})
    );
    server.stop().unwrap();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (server, _) = start(loopback());
    let mut client = Client::connect(server.tcp_addr().unwrap()).unwrap();
    let n = 3000;
    for i in 0..n {
        match i % 3 {
            0 => client
                .send_json(&json!({"cmd":"record","event":{"event":"p","ts":TS,"i":i}}))
                .unwrap(),
            1 => client.send(b"{\"cmd\":\"ping\"}").unwrap(),
            _ => client
                .send(format!("{{\"cmd\":\"nope{i}\"}}").as_bytes())
                .unwrap(),
        }
    }
    for i in 0..n {
        let reply = client.receive().unwrap();
        match i % 3 {
            0 => assert_eq!(reply, json!({"success": true})),
            1 => assert_eq!(reply, json!({"success": true, "data": "pong"})),
            _ => assert!(
                reply["error"].as_str().unwrap().contains(&format!("\"nope{i}\"")),
                "{reply}"
            ),
        }
    }
    assert_eq!(event_count(&mut client, "p"), 1000);
    server.stop().unwrap();
}

#[test]
fn thirty_two_concurrent_clients_give_exact_totals() {
    let (server, _) = start(loopback());
    let addr = server.tcp_addr().unwrap();
    let clients = 32;
    let per_client = 250;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr).unwrap();
                let mut batch = Vec::new();
                for i in 0..per_client {
                    let event = json!({"event": "buy", "geo": if i % 2 == 0 { "US" } else { "DE" },
                        "ip": format!("10.{c}.{}.{}", i / 250, i % 250), "amount": 0.5, "ts": TS});
                    if i % 5 == 0 {
                        client.record(&event).unwrap();
                    } else {
                        batch.push(event);
                        if batch.len() == 20 {
                            assert_eq!(client.record_batch(&batch).unwrap().recorded, 20);
                            batch.clear();
                        }
                    }
                }
                if !batch.is_empty() {
                    client.record_batch(&batch).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = (clients * per_client) as i64;
    let mut client = Client::connect(addr).unwrap();
    let days = client.query(TS, TS).unwrap();
    let get = |find_type: &str, key: &[&str]| {
        days[0]
            .results
            .iter()
            .find(|r| r.find_type() == find_type && r.key == key)
            .unwrap()
            .result
            .clone()
    };
    assert_eq!(
        get("add", &["event"]),
        MetricData::Hash([("buy".into(), total)].into())
    );
    assert_eq!(
        get("add", &["event", "geo"]),
        MetricData::Hash([("buy~DE".into(), total / 2), ("buy~US".into(), total / 2)].into())
    );
    assert_eq!(
        get("adv:i", &["event"]),
        MetricData::Summary {
            sum: total as f64 * 0.5,
            count: total
        }
    );
    assert_eq!(
        get("adv:c", &["event"]),
        MetricData::Hash([("buy".into(), total)].into())
    );
    let MetricData::Count(uniques) = get("bmp", &["ip"]) else {
        panic!()
    };
    let err = (uniques as f64 - total as f64).abs() / total as f64;
    assert!(err < 0.02, "{uniques} distinct IPs estimated for {total}");
    assert_eq!(server.metrics().events_recorded(), total as u64);
    server.stop().unwrap();
}

#[test]
fn auth_token_guards_every_command() {
    let (server, _) = start(ServerConfig {
        auth_token: Some("s3cret".into()),
        ..loopback()
    });
    let mut client = Client::connect(server.tcp_addr().unwrap()).unwrap();
    let err = client.ping().unwrap_err().to_string();
    assert!(err.contains("unauthorized"), "{err}");
    let err = client
        .record(&json!({"event": "x", "ts": TS}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unauthorized"), "{err}");
    // A per-request token works for that request only.
    client.call(&json!({"cmd":"ping","token":"s3cret"})).unwrap();
    assert!(client.call(&json!({"cmd":"ping","token":"s3cre"})).is_err());
    assert!(client
        .auth("wrong")
        .unwrap_err()
        .to_string()
        .contains("invalid token"));
    assert!(client.ping().is_err());
    client.auth("s3cret").unwrap();
    client.record(&json!({"event": "x", "ts": TS})).unwrap();
    assert_eq!(event_count(&mut client, "x"), 1);
    // Another connection is not authenticated by the first.
    let mut other = Client::connect(server.tcp_addr().unwrap()).unwrap();
    assert!(other.ping().is_err());
    assert_eq!(server.metrics().requests(Command::Ping, Status::Unauthorized), 4);
    server.stop().unwrap();
}

#[test]
fn connection_limit_and_idle_timeout() {
    let (server, _) = start(ServerConfig {
        max_connections: 2,
        idle_timeout_secs: 1.0,
        ..loopback()
    });
    let addr = server.tcp_addr().unwrap();
    let mut a = Client::connect(addr).unwrap();
    let mut b = Client::connect(addr).unwrap();
    a.ping().unwrap();
    b.ping().unwrap();
    let mut c = Client::connect(addr).unwrap();
    let reply = c.receive().unwrap();
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("too many open connections (server.max_connections = 2)"),
        "{reply}"
    );
    // Idle connections are closed with a reason, which frees their slots.
    let reply = a.receive().unwrap();
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("server.idle_timeout_secs"),
        "{reply}"
    );
    let mut raw = TcpStream::connect(addr).unwrap();
    let mut rest = Vec::new();
    std::thread::sleep(Duration::from_millis(1500));
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.read_to_end(&mut rest).unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("idle"));
    let mut d = Client::connect(addr).unwrap();
    d.ping().unwrap();
    server.stop().unwrap();
}

#[test]
fn graceful_stop_flushes_the_store() {
    let store = Arc::new(Flaky::default());
    let server = start_with(loopback(), mapping(), store.clone());
    let mut client = Client::connect(server.tcp_addr().unwrap()).unwrap();
    client.record(&json!({"event": "a", "ts": TS})).unwrap();
    // An idle open connection does not hold up the shutdown.
    server.stop().unwrap();
    assert_eq!(store.flushes.load(Ordering::SeqCst), 1);
    assert!(client.ping().is_err(), "the server is gone");
}

#[test]
fn extreme_timestamps_do_not_take_the_server_down() {
    let mut config = mapping();
    config.time.timezone = "America/New_York".into();
    config.time.store_hourly = true;
    let server = start_with(loopback(), config, Arc::new(MemoryStorage::new()));
    let mut client = Client::connect(server.tcp_addr().unwrap()).unwrap();
    for ts in [
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1e300),
        json!(-1e300),
        json!("9999-12-31T23:59:59Z"),
        json!("-9223372036854775808"),
    ] {
        // Accepted or refused (the core decides), but always answered on the same connection.
        let reply = client.call(&json!({"cmd":"record","event":{"event":"x","ts":ts}}));
        if let Err(e) = reply {
            let e = e.to_string();
            assert!(e.contains("event time") || e.contains("internal error"), "{e}");
        }
    }
    client.ping().unwrap();
    let (min, max) = (
        traqq_core::bucket::MIN_TIMESTAMP,
        traqq_core::bucket::MAX_TIMESTAMP,
    );
    assert!(client.query(max - 86_400, max).is_ok());
    assert!(client.query(min, min + 86_400).is_ok());
    let err = client.query(min - 1, min).unwrap_err().to_string();
    assert!(err.contains("out of range"), "{err}");
    server.stop().unwrap();
}

#[test]
fn pipelined_large_replies_come_back_complete_and_in_order() {
    let (server, _) = start(loopback());
    let mut client = Client::connect(server.tcp_addr().unwrap()).unwrap();
    // ~50 KB per reply, 5 MB in all: answered in several rounds, never all held at once.
    for i in 0..100 {
        client
            .send_json(&json!({"cmd":"query_days","days":1000}))
            .unwrap();
        client.send_json(&json!({"cmd":"ping","n":i})).unwrap();
    }
    for _ in 0..100 {
        let reply = client.receive().unwrap();
        assert_eq!(reply["data"].as_array().unwrap().len(), 1001);
        assert_eq!(
            client.receive().unwrap(),
            json!({"success": true, "data": "pong"})
        );
    }
    server.stop().unwrap();
}

#[test]
fn shutdown_finishes_requests_in_flight_and_a_slow_store_stalls_no_one_else() {
    let store = Arc::new(Flaky::default());
    let server = start_with(loopback(), mapping(), store.clone());
    let addr = server.tcp_addr().unwrap();
    store.apply_delay_ms.store(3000, Ordering::SeqCst);
    let slow = std::thread::spawn(move || {
        let mut client = Client::connect(addr).unwrap();
        client.record(&json!({"event": "slow", "ts": TS}))
    });
    std::thread::sleep(Duration::from_millis(200));
    // While that write sits in the store, other connections are served.
    let mut other = Client::connect(addr).unwrap();
    for _ in 0..20 {
        other.ping().unwrap();
    }
    assert!(!slow.is_finished(), "the pings waited for the slow store");
    // Stop while the slow write is in flight: it completes and is acknowledged.
    server.stop().unwrap();
    slow.join().unwrap().unwrap();
    assert_eq!(store.flushes.load(Ordering::SeqCst), 1);
    let days = Traqq::with_shared_storage(mapping(), store.clone(), "t")
        .unwrap()
        .query(TS, TS)
        .unwrap();
    let adds = days.find_str("add/event");
    assert_eq!(adds[0].result, MetricData::Hash([("slow".to_string(), 1)].into()));
}

#[test]
fn pipelined_records_share_a_batch_but_keep_their_own_replies() {
    let store = Arc::new(Flaky::default());
    let server = start_with(loopback(), mapping(), store.clone());
    let mut client = Client::connect(server.tcp_addr().unwrap()).unwrap();
    let n = 2000;
    for i in 0..n {
        let event = match i % 100 {
            // Rejected inside the group by the engine (event time), not by the parser.
            37 => json!({"event": "g", "ts": "not a time"}),
            // Rejected by the parser: ends the group, answered alone, the next group follows.
            55 => json!({"ip": "no name"}),
            _ => json!({"event": "g", "ip": format!("10.1.{}.{}", i / 200, i % 200), "ts": TS}),
        };
        client
            .send_json(&json!({"cmd": "record", "event": event}))
            .unwrap();
    }
    for i in 0..n {
        let reply = client.receive().unwrap();
        match i % 100 {
            37 => assert!(
                reply["error"].as_str().unwrap().contains("invalid event time"),
                "{i}: {reply}"
            ),
            55 => assert!(
                reply["error"].as_str().unwrap().contains("\"event\" is missing"),
                "{i}: {reply}"
            ),
            _ => assert_eq!(reply, json!({"success": true}), "{i}"),
        }
    }
    assert_eq!(event_count(&mut client, "g"), n - 40);
    assert_eq!(server.metrics().events_recorded(), (n - 40) as u64);
    assert_eq!(server.metrics().events_rejected(), 40);
    assert_eq!(
        server.metrics().requests(Command::Record, Status::Ok),
        (n - 40) as u64
    );

    // A store failure fails every request of the group, and nothing is half-recorded.
    store.down.store(true, Ordering::SeqCst);
    for _ in 0..50 {
        client
            .send_json(&json!({"cmd":"record","event":{"event":"down","ts":TS}}))
            .unwrap();
    }
    for _ in 0..50 {
        let reply = client.receive().unwrap();
        assert!(
            reply["error"].as_str().unwrap().contains("unavailable"),
            "{reply}"
        );
    }
    store.down.store(false, Ordering::SeqCst);
    assert_eq!(event_count(&mut client, "down"), 0);
    server.stop().unwrap();
}

#[test]
fn a_client_that_reads_no_replies_is_closed_after_the_idle_limit() {
    let (server, _) = start(ServerConfig {
        idle_timeout_secs: 0.3,
        ..loopback()
    });
    let addr = server.tcp_addr().unwrap();
    let stream = TcpStream::connect(addr).unwrap();
    // Pipelined pings, replies never read: once the socket buffers are full the server cannot
    // write, and after the idle limit it closes the connection, which fails the writes.
    let cap = 1 << 30;
    let flood = {
        let stream = stream.try_clone().unwrap();
        std::thread::spawn(move || flood_without_reading(&stream, b"{\"cmd\":\"ping\"}\n", cap))
    };
    let closed = eventually(Duration::from_secs(20), || flood.is_finished());
    // Unblock the writer and drop the socket either way, so a failure fails instead of hanging.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let sent = flood.join().unwrap();
    drop(stream);
    assert!(
        closed && sent < cap,
        "the server kept a connection whose client reads nothing"
    );
    assert!(eventually(Duration::from_secs(5), || server
        .metrics()
        .open_connections()
        == 0));
    // Everyone else is served as usual.
    let mut client = Client::connect(addr).unwrap();
    client.ping().unwrap();
    server.stop().unwrap();
}

/// Pipelined `record_batch`es (and `record`s between them) are recorded as group commits, and
/// every reply is the one the request gets when sent alone: per-batch counts, rejected indexes
/// relative to the batch, duplicates of ids seen in an earlier batch of the same group.
#[test]
fn pipelined_batches_share_a_group_and_answer_as_if_sent_alone() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut config = mapping();
    config.event.id_field = Some("id".into());
    let batches = 40;
    let mut requests = Vec::new();
    for b in 0..batches {
        if b % 7 == 3 {
            requests
                .push(json!({"cmd": "record", "event": {"event": "r", "id": format!("e{b}"), "ts": now}}));
            // Not a valid event: answered alone, between two groups.
            requests.push(json!({"cmd": "record", "event": {"ip": "no name"}}));
        }
        let events: Vec<Value> = (0..500)
            .map(|j| match j {
                // Rejected by the engine (event time) and by the parser (no name).
                3 => json!({"event": "b", "ts": "not a time"}),
                5 => json!({"ip": "no name"}),
                // Ids repeat every 6,000 events: later batches hold duplicates of earlier ones.
                _ => json!({"event": "b", "id": format!("e{}", (b * 500 + j) % 6_000), "ts": now}),
            })
            .collect();
        requests.push(json!({"cmd": "record_batch", "events": events}));
    }

    let alone_server = start_with(loopback(), config.clone(), Arc::new(MemoryStorage::new()));
    let mut alone_client = Client::connect(alone_server.tcp_addr().unwrap()).unwrap();
    let alone: Vec<Value> = requests
        .iter()
        .map(|r| {
            alone_client.send_json(r).unwrap();
            alone_client.receive().unwrap()
        })
        .collect();
    alone_server.stop().unwrap();

    let store = Arc::new(Flaky::default());
    store.apply_delay_ms.store(20, Ordering::SeqCst);
    let server = start_with(loopback(), config, store.clone());
    let mut client = Client::connect(server.tcp_addr().unwrap()).unwrap();
    for r in &requests {
        client.send_json(r).unwrap();
    }
    let together: Vec<Value> = requests.iter().map(|_| client.receive().unwrap()).collect();
    for (i, (t, a)) in together.iter().zip(&alone).enumerate() {
        assert_eq!(t, a, "request {i}");
    }
    let duplicates: u64 = alone
        .iter()
        .filter_map(|r| r["data"]["duplicates"].as_u64())
        .sum();
    let recorded: u64 = alone.iter().filter_map(|r| r["data"]["recorded"].as_u64()).sum();
    assert!(duplicates > 5_000, "the test holds duplicates: {duplicates}");
    assert_eq!(alone[2]["data"]["rejected"][1]["index"], json!(5), "{}", alone[2]);
    let records = alone.iter().filter(|r| **r == json!({"success": true})).count() as u64;
    assert_eq!(
        server.metrics().events_recorded(),
        recorded + records,
        "batches and records"
    );
    assert!(
        store.applies.load(Ordering::SeqCst) < batches as usize,
        "batches were grouped: {} store writes for {batches} batches",
        store.applies.load(Ordering::SeqCst)
    );
    server.stop().unwrap();
}
