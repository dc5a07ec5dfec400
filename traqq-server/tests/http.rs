//! The HTTP API over real loopback sockets: same shapes as TCP, status codes by outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use traqq_server::client::http_request;
use traqq_server::{Client, ServerConfig};

use common::*;

const TS: i64 = 1_700_000_000;
const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let reply = http_request(addr, method, path, headers, body).unwrap();
    let json = serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{path}: {e}: {:?}", reply.body));
    (reply.status, json)
}

fn count(addr: SocketAddr, name: &str) -> i64 {
    let (status, body) = call(
        addr,
        "GET",
        &format!("/v1/find?min={TS}&max={TS}&metric_type=add&key=event&merge=true"),
        &[],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    body["data"][0]["result"]["Hash"][name].as_i64().unwrap_or(0)
}

#[test]
fn every_hardening_case_gets_400_and_a_valid_record_still_counts() {
    let (server, _) = start(ServerConfig {
        max_batch_events: 3,
        max_body_bytes: 64 * 1024,
        ..loopback()
    });
    let addr = server.http_addr().unwrap();
    let deep = format!(
        r#"{{"event":"deep","a":{}1{}}}"#,
        r#"{"a":"#.repeat(300),
        "}".repeat(300)
    );
    let big = vec![b' '; 100 * 1024];
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/events".into(),
            vec![],
            br#"{"event":"x""#.to_vec(),
            400,
            "invalid event JSON",
        ),
        (
            "POST",
            "/v1/events".into(),
            vec![],
            b"42".to_vec(),
            400,
            "request body must be a JSON event object",
        ),
        (
            "POST",
            "/v1/events".into(),
            vec![],
            br#""click""#.to_vec(),
            400,
            "request body must be a JSON event object",
        ),
        (
            "POST",
            "/v1/events".into(),
            vec![],
            br#"[{"event":"x"}"#.to_vec(),
            400,
            "malformed JSON request body",
        ),
        (
            "POST",
            "/v1/events".into(),
            vec![],
            deep.into_bytes(),
            400,
            "recursion limit",
        ),
        (
            "POST",
            "/v1/events".into(),
            vec![],
            b"{\"event\":\"\xff\"}".to_vec(),
            400,
            "not valid UTF-8",
        ),
        (
            "POST",
            "/v1/events".into(),
            vec![NDJSON],
            b"{}\n{}\n{}\n{}\n".to_vec(),
            400,
            "batch holds more than 3 events (server.max_batch_events = 3)",
        ),
        (
            "POST",
            "/v1/events".into(),
            vec![],
            big,
            413,
            "server.max_body_bytes = 65536",
        ),
        (
            "GET",
            "/v2/anything".into(),
            vec![],
            vec![],
            404,
            "no route GET /v2/anything",
        ),
    ];
    for (method, path, headers, body, status, want) in &cases {
        let (got, reply) = call(addr, method, path, headers, body);
        assert_eq!(got, *status, "{method} {path}: {reply}");
        assert_eq!(reply["success"], json!(false));
        let error = reply["error"].as_str().unwrap();
        assert!(
            error.contains(want),
            "{method} {path}\n  got:  {error}\n  want: {want}"
        );
    }
    let (status, reply) = call(
        addr,
        "POST",
        "/v1/events",
        &[],
        format!(r#"{{"event":"ok","ts":{TS}}}"#).as_bytes(),
    );
    assert_eq!((status, reply), (200, json!({"success": true})));
    assert_eq!(count(addr, "ok"), 1);
    assert_eq!(server.metrics().events_recorded(), 1);
    server.stop().unwrap();
}

#[test]
fn http_and_tcp_give_the_same_answers() {
    let (server, _) = start(loopback());
    let http = server.http_addr().unwrap();
    // One object, an array, and NDJSON (with and without its content type).
    let (s, r) = call(
        http,
        "POST",
        "/v1/events",
        &[],
        format!(r#"{{"event":"a","geo":"US","ts":{TS}}}"#).as_bytes(),
    );
    assert_eq!((s, r), (200, json!({"success": true})));
    let array =
        format!(r#"[{{"event":"a","geo":"DE","ts":{TS}}}, {{"geo":"x"}}, {{"event":"b","ts":{TS}}}]"#);
    let (s, r) = call(http, "POST", "/v1/events", &[], array.as_bytes());
    assert_eq!(s, 200);
    assert_eq!(r["data"]["recorded"], json!(2));
    assert_eq!(r["data"]["rejected"][0]["index"], json!(1));
    let nd = format!("{{\"event\":\"a\",\"ts\":{TS}}}\n\n{{\"event\":\"b\",\"ts\":{TS}}}\n");
    let (s, r) = call(http, "POST", "/v1/events", &[NDJSON], nd.as_bytes());
    assert_eq!((s, &r["data"]), (200, &json!({"recorded": 2, "rejected": []})));
    let (s, r) = call(http, "POST", "/v1/events", &[], nd.as_bytes());
    assert_eq!((s, &r["data"]), (200, &json!({"recorded": 2, "rejected": []})));
    assert_eq!(count(http, "a"), 4);
    assert_eq!(count(http, "b"), 3);

    let mut tcp = Client::connect(server.tcp_addr().unwrap()).unwrap();
    let pairs = [
        (
            format!("/v1/query?min={TS}&max={TS}"),
            json!({"cmd":"query","min":TS,"max":TS}),
        ),
        (
            format!("/v1/query?min={TS}&max={TS}&ignore=top:*&ignore=bmp:*&limit=1"),
            json!({"cmd":"query","min":TS,"max":TS,"ignore":["top:*","bmp:*"],"limit":1}),
        ),
        ("/v1/query?days=3".into(), json!({"cmd":"query_days","days":3})),
        (
            format!(
                "/v1/find?min={TS}&max={}&metric_type=add&key=geo~event&merge=true",
                TS + 86_400
            ),
            json!({"cmd":"find","min":TS,"max":TS + 86_400,"metric_type":"add","key":"geo~event","merge":true}),
        ),
        (
            "/v1/find?days=2&metric_type=top&key=geo".into(),
            json!({"cmd":"find","days":2,"metric_type":"top","key":"geo"}),
        ),
    ];
    for (path, request) in pairs {
        let (status, over_http) = call(http, "GET", &path, &[], b"");
        assert_eq!(status, 200, "{path}: {over_http}");
        tcp.send_json(&request).unwrap();
        let over_tcp = tcp.receive().unwrap();
        assert_eq!(over_http, over_tcp, "{path}");
    }
    let (_, r) = call(
        http,
        "GET",
        &format!("/v1/find?min={TS}&max={TS}&metric_type=add&key=event~geo&merge=true"),
        &[],
        b"",
    );
    assert_eq!(r["data"][0]["result"], json!({"Hash":{"a~DE":1,"a~US":1}}));
    server.stop().unwrap();
}

#[test]
fn bearer_token_and_open_healthz() {
    let (server, _) = start(ServerConfig {
        auth_token: Some("tok".into()),
        ..loopback()
    });
    let addr = server.http_addr().unwrap();
    let body = format!(r#"{{"event":"a","ts":{TS}}}"#);
    let (s, r) = call(addr, "POST", "/v1/events", &[], body.as_bytes());
    assert_eq!(s, 401);
    assert!(r["error"].as_str().unwrap().contains("unauthorized"));
    let (s, _) = call(
        addr,
        "POST",
        "/v1/events",
        &[("Authorization", "Bearer tik")],
        body.as_bytes(),
    );
    assert_eq!(s, 401);
    let (s, _) = call(
        addr,
        "GET",
        "/v1/query?days=1",
        &[("Authorization", "Basic tok")],
        b"",
    );
    assert_eq!(s, 401);
    let (s, _) = call(
        addr,
        "POST",
        "/v1/events",
        &[("Authorization", "Bearer tok")],
        body.as_bytes(),
    );
    assert_eq!(s, 200);
    let (s, r) = call(
        addr,
        "GET",
        "/v1/query?days=1",
        &[("authorization", "bearer tok")],
        b"",
    );
    assert_eq!(s, 200, "{r}");
    // Health needs no token and tells nothing about the data.
    assert_eq!(
        call(addr, "GET", "/healthz", &[], b""),
        (200, json!({"success": true, "data": "ok"}))
    );
    let metrics = http_request(addr, "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(metrics.status, 401);
    let metrics = http_request(addr, "GET", "/metrics", &[("Authorization", "Bearer tok")], b"").unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("traqq_events_recorded_total 1\n"),
        "{}",
        metrics.body
    );
    server.stop().unwrap();
}

/// The outage itself is in the shared suite (`transports.rs`); here what only HTTP has:
/// `/healthz` follows the store, and the metrics count the failures.
#[test]
fn healthz_and_metrics_follow_a_storage_outage() {
    let store = Arc::new(Flaky::default());
    let server = start_with(loopback(), mapping(), store.clone());
    let addr = server.http_addr().unwrap();
    let body = format!(r#"{{"event":"a","ts":{TS}}}"#);
    store.down.store(true, Ordering::SeqCst);
    assert_eq!(call(addr, "POST", "/v1/events", &[], body.as_bytes()).0, 503);
    assert_eq!(call(addr, "GET", "/healthz", &[], b"").0, 503);
    store.down.store(false, Ordering::SeqCst);
    assert_eq!(call(addr, "GET", "/healthz", &[], b"").0, 200);
    let metrics = http_request(addr, "GET", "/metrics", &[], b"").unwrap().body;
    assert!(metrics.contains("traqq_storage_errors_total 2\n"), "{metrics}");
    assert!(metrics.contains("traqq_requests_total{command=\"record\",outcome=\"unavailable\"} 1\n"));
    server.stop().unwrap();
}

#[test]
fn metrics_count_both_transports() {
    let (server, _) = start(loopback());
    let mut tcp = Client::connect(server.tcp_addr().unwrap()).unwrap();
    tcp.record(&json!({"event": "a", "ts": TS})).unwrap();
    let _ = tcp.record(&json!({"ip": "1"}));
    let addr = server.http_addr().unwrap();
    call(
        addr,
        "POST",
        "/v1/events",
        &[],
        br#"[{"event":"a"},{"event":"b"},{"nope":1}]"#,
    );
    let text = http_request(addr, "GET", "/metrics", &[], b"").unwrap().body;
    for line in [
        "traqq_events_recorded_total 3",
        "traqq_events_rejected_total 2",
        "traqq_open_connections{transport=\"tcp\"} 1",
        "traqq_requests_total{command=\"record\",outcome=\"ok\"} 1",
        "traqq_requests_total{command=\"record\",outcome=\"bad_request\"} 1",
        "traqq_requests_total{command=\"record_batch\",outcome=\"ok\"} 1",
        "traqq_request_duration_seconds_count{command=\"record\"} 2",
        "traqq_request_duration_seconds_count{command=\"record_batch\"} 1",
        "# TYPE traqq_request_duration_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    // At least the connection asking; earlier ones may not have been seen to close yet.
    let http_open: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("traqq_open_connections{transport=\"http\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&http_open), "{text}");
    server.stop().unwrap();
}

/// Past `max_connections` a connection is answered `503` with `Retry-After` at once (it used
/// to wait in the accept queue, which let idle connections starve `/healthz`).
#[test]
fn http_connections_are_capped_by_max_connections() {
    let (server, _) = start(ServerConfig {
        max_connections: 2,
        ..loopback()
    });
    let addr = server.http_addr().unwrap();
    let a = std::net::TcpStream::connect(addr).unwrap();
    let b = std::net::TcpStream::connect(addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut third = std::net::TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let (status, body) = read_response(&mut third);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("server.max_connections = 2"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(a);
    assert!(eventually(Duration::from_secs(5), || {
        http_request(addr, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    }));
    drop(b);
    server.stop().unwrap();
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) from a kept-alive connection.
fn read_response(stream: &mut std::net::TcpStream) -> (u16, String) {
    use std::io::Read;
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed mid-response"
        );
        data.push(byte[0]);
    }
    let head = String::from_utf8(data).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// Waits until the server closes `stream` (EOF or reset), failing after `limit`; returns how
/// long that took.
fn time_to_close(stream: &mut std::net::TcpStream, since: std::time::Instant, limit: Duration) -> Duration {
    use std::io::Read;
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was not closed within {limit:?}: {e}"),
    }
    // hyper may answer a cut-off request before closing; it must not be a success.
    assert!(!String::from_utf8_lossy(&rest).contains(" 200 "), "{rest:?}");
    since.elapsed()
}

#[test]
fn idle_http_connections_are_closed_after_idle_timeout_secs() {
    use std::io::Write;
    use std::net::TcpStream;
    let store = Arc::new(Flaky::default());
    let server = start_with(
        ServerConfig {
            idle_timeout_secs: 0.3,
            ..loopback()
        },
        mapping(),
        store.clone(),
    );
    let addr = server.http_addr().unwrap();
    let limit = Duration::from_millis(300);
    // Generous: the machine is shared, but a connection left open would hang until the read
    // timeout, far past this.
    let late = Duration::from_secs(5);

    // Four connections stall in four places: before any byte, inside the request head,
    // inside the body, and after a complete exchange (keep-alive).
    let silent = TcpStream::connect(addr).unwrap();
    let silent_since = Instant::now();
    let mut head = TcpStream::connect(addr).unwrap();
    head.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n").unwrap();
    let head_since = Instant::now();
    let mut body = TcpStream::connect(addr).unwrap();
    body.write_all(
        b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event\":",
    )
    .unwrap();
    let body_since = Instant::now();
    let mut kept = TcpStream::connect(addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut kept).0, 200);
    let kept_since = Instant::now();

    // Each waits for its close on a thread of its own, so the time measured is the close's.
    let watchers: Vec<_> = [
        ("silent", silent, silent_since),
        ("partial head", head, head_since),
        ("partial body", body, body_since),
        ("keep-alive", kept, kept_since),
    ]
    .into_iter()
    .map(|(name, mut stream, since)| {
        std::thread::spawn(move || (name, time_to_close(&mut stream, since, late)))
    })
    .collect();

    // Meanwhile a connection that keeps talking stays open past the limit, and another
    // client is served normally.
    let mut busy = TcpStream::connect(addr).unwrap();
    for i in 0..6 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        busy.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut busy).0, 200);
    }
    // It was still open after half a second of traffic; once quiet it idles out too.
    let busy_since = Instant::now();
    let busy = std::thread::spawn(move || time_to_close(&mut busy, busy_since, late));
    let (status, reply) = call(addr, "GET", "/healthz", &[], b"");
    assert_eq!((status, &reply["data"]), (200, &json!("ok")));

    for watcher in watchers {
        let (name, took) = watcher.join().unwrap();
        // The server's timer starts when it reads the last byte, after `since` was taken
        // (give or take the moment between the write returning and the clock read).
        assert!(
            took >= limit - Duration::from_millis(50),
            "{name}: closed after {took:?}"
        );
    }

    // A reply that takes longer than the limit to compute is still delivered: the
    // connection is busy, not idle, while the store works.
    store.apply_delay_ms.store(700, Ordering::SeqCst);
    let mut slow = TcpStream::connect(addr).unwrap();
    let event = format!(r#"{{"event":"slow","ts":{TS}}}"#);
    write!(
        slow,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{event}",
        event.len()
    )
    .unwrap();
    let (status, reply) = read_response(&mut slow);
    assert_eq!(status, 200, "{reply}");
    store.apply_delay_ms.store(0, Ordering::SeqCst);
    // ... and after it, the connection idles out like any other.
    let took = time_to_close(&mut slow, Instant::now(), late);
    assert!(
        took >= limit - Duration::from_millis(50),
        "slow: closed after {took:?}"
    );
    assert_eq!(count(addr, "slow"), 1);

    let took = busy.join().unwrap();
    assert!(
        took >= limit - Duration::from_millis(50),
        "busy: closed after {took:?}"
    );
    // Every connection closed by the server left the open-connections gauge.
    let deadline = Instant::now() + late;
    while server.metrics().open_http_connections() != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.metrics().open_http_connections(), 0);
    server.stop().unwrap();
}

#[test]
fn an_http_client_that_reads_no_responses_is_closed_after_the_idle_limit() {
    let (server, _) = start(ServerConfig {
        idle_timeout_secs: 0.3,
        ..loopback()
    });
    let addr = server.http_addr().unwrap();
    let stream = std::net::TcpStream::connect(addr).unwrap();
    // Pipelined requests (404s: cheap, with a body), responses never read.
    let cap = 1 << 30;
    let flood = {
        let stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            flood_without_reading(&stream, b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", cap)
        })
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
        .open_http_connections()
        == 0));
    let (status, _) = call(addr, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    server.stop().unwrap();
}

/// Issue 19: `/livez` says the process is up even while the store is down; `/readyz` (and
/// `/healthz`) say whether the store answers.
#[test]
fn livez_answers_while_the_store_is_down_and_readyz_does_not() {
    let store = Arc::new(Flaky::default());
    let server = start_with(loopback(), mapping(), store.clone());
    let addr = server.http_addr().unwrap();
    for path in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(call(addr, "GET", path, &[], b"").0, 200, "{path}");
    }
    store.set_down(true);
    let (status, live) = call(addr, "GET", "/livez", &[], b"");
    assert_eq!((status, live), (200, json!({"success": true, "data": "live"})));
    for path in ["/readyz", "/healthz"] {
        let (status, body) = call(addr, "GET", path, &[], b"");
        assert_eq!(status, 503, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("unavailable"), "{body}");
    }
    store.set_down(false);
    assert_eq!(call(addr, "GET", "/readyz", &[], b"").0, 200);
    server.stop().unwrap();
}

/// Issue 19: a wrong method gets a JSON `405` naming the methods the path takes, with `Allow`.
#[test]
fn a_wrong_method_is_a_json_405_with_allow() {
    let (server, _) = start(loopback());
    let addr = server.http_addr().unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"DELETE /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut s, &mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 405"), "{raw}");
    assert!(head.contains("allow: post"), "{raw}");
    assert!(head.contains("content-type: application/json"), "{raw}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["success"], false);
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("DELETE") && error.contains("Allow"), "{body}");
    server.stop().unwrap();
}

/// One raw HTTP/1.1 exchange: the status, the head (lowercased) and the body.
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn post(path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Issue 19: gzip and zstd request bodies are inflated before parsing; a compressed body that
/// inflates past `max_body_bytes` is refused like a large one (a zip bomb costs its limit).
#[test]
fn gzip_and_zstd_bodies_are_inflated_and_bombs_are_refused() {
    use std::io::Write;
    let (server, _) = start(ServerConfig {
        max_body_bytes: 64 * 1024,
        ..loopback()
    });
    let addr = server.http_addr().unwrap();
    let events = format!(r#"[{{"event":"gz","ts":{TS}}},{{"event":"gz","ts":{TS}}}]"#);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(events.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let (status, _, body) = raw_exchange(addr, &post("/v1/events", &["Content-Encoding: gzip"], &gz));
    assert_eq!(status, 200, "{body}");
    let zst = zstd::encode_all(format!(r#"{{"event":"zst","ts":{TS}}}"#).as_bytes(), 3).unwrap();
    let (status, _, body) = raw_exchange(addr, &post("/v1/events", &["Content-Encoding: zstd"], &zst));
    assert_eq!(status, 200, "{body}");
    assert_eq!((count(addr, "gz"), count(addr, "zst")), (2, 1));

    // 1 MiB of spaces around an event: a ~1 KB gzip that inflates 16 times past the limit.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(b"[").unwrap();
    bomb.write_all(&vec![b' '; 1 << 20]).unwrap();
    bomb.write_all(br#"{"event":"bomb"}]"#).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 4096);
    let (status, _, body) = raw_exchange(addr, &post("/v1/events", &["Content-Encoding: gzip"], &bomb));
    assert_eq!(status, 413, "{body}");
    assert_eq!(count(addr, "bomb"), 0);
    server.stop().unwrap();
}

/// Issue 19: `navigator.sendBeacon` sends `text/plain`; such a body is taken as JSON.
#[test]
fn a_text_plain_body_is_recorded() {
    let (server, _) = start(loopback());
    let addr = server.http_addr().unwrap();
    let body = format!(r#"{{"event":"beacon","ts":{TS}}}"#);
    let (status, _, reply) = raw_exchange(
        addr,
        &post(
            "/v1/events",
            &["Content-Type: text/plain;charset=UTF-8"],
            body.as_bytes(),
        ),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(count(addr, "beacon"), 1);
    server.stop().unwrap();
}

/// Issue 19: `server.cors_origins` lets pages of those origins call the API: preflights are
/// answered, responses carry `Access-Control-Allow-Origin`; other origins get no CORS headers.
#[test]
fn cors_allows_the_configured_origins_only() {
    let (server, _) = start(ServerConfig {
        cors_origins: vec!["https://app.example".into()],
        ..loopback()
    });
    let addr = server.http_addr().unwrap();
    let preflight = |origin: &str| {
        raw_exchange(
            addr,
            format!(
                "OPTIONS /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let (status, head, _) = preflight("https://app.example");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-methods:") && head.contains("post"),
        "{head}"
    );
    assert!(head.contains("authorization"), "{head}");
    let (_, head, _) = preflight("https://evil.example");
    assert!(!head.contains("access-control-allow-origin"), "{head}");

    let body = format!(r#"{{"event":"cors","ts":{TS}}}"#);
    let (status, head, _) = raw_exchange(
        addr,
        &post("/v1/events", &["Origin: https://app.example"], body.as_bytes()),
    );
    assert_eq!(status, 200);
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    // Without the setting, no CORS headers at all.
    let (plain, _) = start(loopback());
    let (_, head, _) = raw_exchange(
        plain.http_addr().unwrap(),
        &post("/v1/events", &["Origin: https://app.example"], body.as_bytes()),
    );
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    server.stop().unwrap();
    plain.stop().unwrap();

    // Origins are checked when the config is.
    for bad in ["app.example", "https://app.example/", "https://a b"] {
        let err = ServerConfig {
            cors_origins: vec![bad.into()],
            ..loopback()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.cors_origins[0]"), "{bad}: {err}");
    }
}

/// `/metrics` through the server's prometheus-client registry: OpenMetrics when asked for,
/// Prometheus text otherwise; the store timed per operation (the store wrapped by
/// `Metrics::instrument`), the write buffer's depth and age, and the process.
#[test]
fn metrics_speak_openmetrics_when_asked_and_time_the_store() {
    use traqq_storage::{BufferConfig, BufferedStorage, MemoryStorage, Storage};
    let metrics = Arc::new(traqq_server::Metrics::default());
    let buffered: Arc<dyn Storage> = Arc::new(BufferedStorage::new(
        MemoryStorage::new(),
        BufferConfig {
            max_delay: Duration::from_secs(60),
            max_ops: 1_000_000,
        },
    ));
    let store = metrics.instrument(buffered);
    let traqq = traqq_storage::Traqq::with_shared_storage(mapping(), store, "t").unwrap();
    let server = traqq_server::RunningServer::start_with(loopback(), Arc::new(traqq), metrics).unwrap();
    let addr = server.http_addr().unwrap();
    let (status, _) = call(
        addr,
        "POST",
        "/v1/events",
        &[],
        format!(r#"{{"event":"a","ts":{TS}}}"#).as_bytes(),
    );
    assert_eq!(status, 200);
    let open = http_request(
        addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        b"",
    )
    .unwrap();
    assert_eq!(open.status, 200);
    for line in [
        "traqq_store_duration_seconds_count{operation=\"apply\"} 1",
        "# TYPE traqq_write_buffer_operations gauge",
        "# EOF",
    ] {
        assert!(
            open.body.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            open.body
        );
    }
    let pending: i64 = open
        .body
        .lines()
        .find_map(|l| l.strip_prefix("traqq_write_buffer_operations "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(pending > 0, "the batch waits in the buffer");
    assert!(open
        .body
        .lines()
        .any(|l| l.starts_with("traqq_process_resident_memory_bytes ")));
    assert!(open
        .body
        .lines()
        .any(|l| l.starts_with("traqq_process_open_fds ")));
    let plain = http_request(addr, "GET", "/metrics", &[], b"").unwrap();
    assert!(!plain.body.contains("# EOF"), "{}", plain.body);
    assert!(plain.body.contains("traqq_events_recorded_total 1\n"));
    server.stop().unwrap();
}
