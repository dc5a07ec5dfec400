//! The hostile-input suite: every attack of issue 13, scaled to run in seconds, against a real
//! server on loopback. Each checks the reply, that the server still answers `ping` and
//! `/healthz`, and how much the process's peak memory grew while it ran (`VmHWM` of
//! `/proc/self/status`, reset through `/proc/self/clear_refs` before each attack; the tests of
//! this file run one at a time so they do not see each other's memory).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use traqq_server::client::http_request;
use traqq_server::ServerConfig;

use common::*;

const MIB: u64 = 1024 * 1024;

/// One attack at a time: peak memory is per process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Runs `attack` and returns how many bytes the process's peak resident memory rose above
/// what it held when the attack started.
fn peak_growth(attack: impl FnOnce()) -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM needs Linux 4.0+");
    let before = status_kib("VmRSS:");
    attack();
    let grew = status_kib("VmHWM:").saturating_sub(before) * 1024;
    eprintln!("peak RSS grew {:.1} MiB", grew as f64 / MIB as f64);
    grew
}

fn tcp_call(addr: SocketAddr, line: &[u8]) -> Value {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let writer = {
        let mut w = stream.try_clone().unwrap();
        let mut line = line.to_vec();
        line.push(b'\n');
        std::thread::spawn(move || {
            let _ = w.write_all(&line);
        })
    };
    let mut reply = String::new();
    BufReader::new(&mut stream).read_line(&mut reply).unwrap();
    let _ = writer.join();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

/// A raw HTTP POST whose body is written by another thread while the reply is read, so a
/// server that answers before reading the body (401, 413) is seen, not a broken pipe.
fn http_post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: traqq\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut w = stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(head.as_bytes()).and_then(|()| w.write_all(&body));
    });
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// The server still answers on both transports.
fn still_alive(server: &traqq_server::RunningServer, token: Option<&str>) {
    let mut line = String::from(r#"{"cmd":"ping""#);
    if let Some(t) = token {
        line.push_str(&format!(r#","token":"{t}""#));
    }
    line.push('}');
    let pong = tcp_call(server.tcp_addr().unwrap(), line.as_bytes());
    assert_eq!(pong["data"], "pong", "{pong}");
    let health = http_request(server.http_addr().unwrap(), "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
}

/// Finding 1: a 20 KB key holding many `"":0` made every inner name a copy of the 20 KB parent
/// (1.2 GB for a 270 KB line). Past `limits.max_properties` the event is refused; under it the
/// over-long names are skipped without being built.
#[test]
fn nested_long_names_cost_linear_memory_and_past_the_property_limit_are_refused() {
    let _one = serial();
    let key = "k".repeat(20_000);
    let line = |leaves: usize| {
        format!(
            r#"{{"cmd":"record","event":{{"event":"a","{key}":{{{}}}}}}}"#,
            vec![r#""":0"#; leaves].join(",")
        )
        .into_bytes()
    };

    // The attack as found: 50,000 leaves (a 270 KB line) is refused, naming the limit.
    let (server, _) = start(loopback());
    let attack = line(50_000);
    let mut reply = Value::Null;
    let grew = peak_growth(|| reply = tcp_call(server.tcp_addr().unwrap(), &attack));
    assert_eq!(reply["success"], false, "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(
        err.contains("more than 1000 properties (limits.max_properties)"),
        "{err}"
    );
    assert!(grew < 16 * MIB, "peak grew {} MiB", grew / MIB);
    still_alive(&server, None);
    drop(server);

    // Under a raised limit the event is accepted: 5,000 inner names of 20 KB would have been
    // 100 MB; they are skipped, so the peak barely moves.
    let mut config = mapping();
    config.limits.max_properties = 10_000;
    let server = start_with(
        loopback(),
        config,
        std::sync::Arc::new(traqq_storage::MemoryStorage::new()),
    );
    let ok = line(5_000);
    let grew = peak_growth(|| reply = tcp_call(server.tcp_addr().unwrap(), &ok));
    assert_eq!(reply["success"], true, "{reply}");
    assert!(grew < 16 * MIB, "peak grew {} MiB", grew / MIB);
    still_alive(&server, None);
}

/// Finding 1, unauthenticated: with a token set, the same line without a token is refused
/// before it is parsed (TCP and HTTP), and a line with a wrong `token` field too.
#[test]
fn without_a_token_nothing_is_parsed() {
    let _one = serial();
    let (server, _) = start(ServerConfig {
        auth_token: Some("s3cret".into()),
        ..loopback()
    });
    let key = "k".repeat(20_000);
    let event = format!(
        r#"{{"event":"a","{key}":{{{}}}}}"#,
        vec![r#""":0"#; 50_000].join(",")
    );
    for line in [
        format!(r#"{{"cmd":"record","event":{event}}}"#),
        format!(r#"{{"event":{event},"cmd":"record","token":"wrong"}}"#),
        format!(r#"{{"cmd":"nope","event":{event}}}"#),
        "{not json".to_owned(),
    ] {
        let mut reply = Value::Null;
        let grew = peak_growth(|| reply = tcp_call(server.tcp_addr().unwrap(), line.as_bytes()));
        let err = reply["error"].as_str().unwrap_or_default();
        assert!(err.starts_with("unauthorized"), "{reply}");
        assert!(grew < 8 * MIB, "peak grew {} MiB", grew / MIB);
    }
    // With the token in the line, it is parsed (and refused for its size, not for auth).
    let reply = tcp_call(
        server.tcp_addr().unwrap(),
        format!(r#"{{"cmd":"record","token":"s3cret","event":{event}}}"#).as_bytes(),
    );
    assert!(
        reply["error"].as_str().unwrap().contains("limits.max_properties"),
        "{reply}"
    );

    // HTTP: a 401 with WWW-Authenticate, before the body is read.
    let body = event.into_bytes();
    let mut got = (0, String::new());
    let grew = peak_growth(|| got = http_post(server.http_addr().unwrap(), "/v1/events", &[], body));
    assert_eq!(got.0, 401, "{}", got.1);
    assert!(got.1.contains("unauthorized"), "{}", got.1);
    assert!(grew < 8 * MIB, "peak grew {} MiB", grew / MIB);
    still_alive(&server, Some("s3cret"));
}

/// Finding 2: a 1,000,000-event array was parsed whole (870 MB) before its size was checked;
/// without a token it answered 400, not 401. Now parsing stops one event past
/// `server.max_batch_events`, and without a token the body is not read at all.
#[test]
fn a_huge_batch_stops_at_max_batch_events_and_without_a_token_is_never_read() {
    let _one = serial();
    let (server, _) = start(ServerConfig {
        auth_token: Some("s3cret".into()),
        max_body_bytes: 16 << 20,
        ..loopback()
    });
    let http = server.http_addr().unwrap();
    let n = 1_000_000;
    let mut body = Vec::with_capacity(14 * n);
    body.push(b'[');
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(br#"{"event":"a"}"#);
    }
    body.push(b']');
    let auth = [("Authorization", "Bearer s3cret")];

    let mut got = (0, String::new());
    let copy = body.clone();
    let grew = peak_growth(|| got = http_post(http, "/v1/events", &auth, copy));
    assert_eq!(got.0, 400, "{}", got.1);
    assert!(
        got.1
            .contains("batch holds more than 10000 events (server.max_batch_events = 10000)"),
        "{}",
        got.1
    );
    // The body itself (14 MB) is held while it is parsed; the events are not.
    assert!(grew < 64 * MIB, "peak grew {} MiB", grew / MIB);

    let copy = body.clone();
    let grew = peak_growth(|| got = http_post(http, "/v1/events", &[], copy));
    assert_eq!(got.0, 401, "{}", got.1);
    assert!(grew < 8 * MIB, "peak grew {} MiB", grew / MIB);

    // NDJSON the same way.
    let ndjson = br#"{"event":"a"}
"#
    .repeat(20_000);
    let grew = peak_growth(|| {
        got = http_post(
            http,
            "/v1/events",
            &[auth[0], ("Content-Type", "application/x-ndjson")],
            ndjson,
        );
    });
    assert_eq!(got.0, 400, "{}", got.1);
    assert!(got.1.contains("server.max_batch_events = 10000"), "{}", got.1);
    assert!(grew < 32 * MIB, "peak grew {} MiB", grew / MIB);

    // Eight at once (they aborted the server before).
    let copies: Vec<Vec<u8>> = (0..8).map(|_| body.clone()).collect();
    let grew = peak_growth(|| {
        let threads: Vec<_> = copies
            .into_iter()
            .map(|body| std::thread::spawn(move || http_post(http, "/v1/events", &auth, body).0))
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 400);
        }
    });
    assert!(grew < 400 * MIB, "peak grew {} MiB", grew / MIB);
    still_alive(&server, Some("s3cret"));

    // One event past the limit on TCP too, and a batch at the limit still counts.
    let (server, store) = start(ServerConfig {
        max_batch_events: 3,
        ..loopback()
    });
    let tcp = server.tcp_addr().unwrap();
    let reply = tcp_call(
        tcp,
        br#"{"cmd":"record_batch","events":[{"event":"a"},{"event":"a"},{"event":"a"},{"event":"a"}]}"#,
    );
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("batch holds more than 3 events (server.max_batch_events = 3)"),
        "{reply}"
    );
    let reply = tcp_call(
        tcp,
        br#"{"cmd":"record_batch","events":[{"event":"a"},{"event":"a"},{"event":"a"}]}"#,
    );
    assert_eq!(reply["data"]["recorded"], 3, "{reply}");
    drop(store);
}

/// Finding 3: two amounts of 1e308 made the day's sums infinite (`null`) for good. Such an
/// event is refused naming the field; the sums stay exact and other clients are unaffected.
#[test]
fn amounts_that_could_overflow_a_sum_are_refused_and_sums_stay_exact() {
    let _one = serial();
    let (server, _) = start(loopback());
    let tcp = server.tcp_addr().unwrap();
    for _ in 0..2 {
        let reply = tcp_call(
            tcp,
            br#"{"cmd":"record","event":{"event":"buy","amount":1e308,"ts":1700000000}}"#,
        );
        let err = reply["error"].as_str().unwrap_or_default();
        assert!(err.contains("\"amount\"") && err.contains("overflow"), "{reply}");
    }
    let reply = tcp_call(
        tcp,
        br#"{"cmd":"record_batch","events":[{"event":"buy","amount":1e308,"ts":1700000000},{"event":"buy","amount":2.5,"ts":1700000000}]}"#,
    );
    assert_eq!(reply["data"]["recorded"], 1, "{reply}");
    let reply = tcp_call(
        tcp,
        br#"{"cmd":"record","event":{"event":"buy","amount":"0.5","ts":1700000000}}"#,
    );
    assert_eq!(reply["success"], true, "{reply}");
    let found = tcp_call(
        tcp,
        br#"{"cmd":"find","min":1700000000,"max":1700000000,"metric_type":"adv:i","key":"event","add_key":"amount","merge":true}"#,
    );
    assert_eq!(found["data"][0]["result"]["Summary"]["sum"], 3.0, "{found}");
    assert_eq!(found["data"][0]["result"]["Summary"]["count"], 2, "{found}");
}

/// Finding 6: 200,000 wrong tokens in 0.27 s on one connection. After a few wrong `auth`
/// commands the connection is closed.
#[test]
fn wrong_tokens_close_the_connection_after_a_few_tries() {
    let _one = serial();
    let (server, _) = start(ServerConfig {
        auth_token: Some("s3cret".into()),
        ..loopback()
    });
    let mut stream = TcpStream::connect(server.tcp_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let tries = br#"{"cmd":"auth","token":"guess"}
"#
    .repeat(100);
    let _ = stream.write_all(&tries);
    let mut replies = String::new();
    let _ = BufReader::new(&stream).read_to_string(&mut replies);
    let lines: Vec<&str> = replies.lines().collect();
    assert_eq!(
        lines.len() as u32,
        traqq_server::protocol::MAX_AUTH_FAILURES,
        "{replies}"
    );
    assert!(lines.iter().all(|l| l.contains("invalid token")), "{replies}");
    assert!(lines.last().unwrap().contains("closing"), "{replies}");
    // The right token on a new connection still works.
    let reply = tcp_call(server.tcp_addr().unwrap(), br#"{"cmd":"ping","token":"s3cret"}"#);
    assert_eq!(reply["data"], "pong");
}

/// Opens a connection and sends `head` one byte every `every`, until `stop` or `limit`
/// bytes; returns whether the server closed the connection on it (a write or read failed).
fn trickle(addr: SocketAddr, head: &'static [u8], every: Duration, until: std::time::Instant) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return true;
    };
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let mut byte = [0u8; 256];
    for b in head.iter().cycle() {
        if std::time::Instant::now() > until {
            return false;
        }
        if s.write_all(std::slice::from_ref(b)).is_err() {
            return true;
        }
        // A refusal or a timeout reply followed by a close.
        match s.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => return true,
        }
        std::thread::sleep(every);
    }
    false
}

/// Finding 4: 50 connections trickling a byte a second held every slot and `/healthz` timed
/// out for 40 s (any byte reset the idle timer; the listener waited for a free slot). Now a
/// request must be complete within `request_timeout_secs` of its first byte, a connection past
/// the cap is answered 503 at once, and one peer may hold `max_connections_per_ip` only.
#[test]
fn slowloris_cannot_hold_the_server() {
    let _one = serial();
    let (server, _) = start(ServerConfig {
        max_connections: 20,
        max_connections_per_ip: 0,
        idle_timeout_secs: 3.0,
        request_timeout_secs: 1.5,
        ..loopback()
    });
    let http = server.http_addr().unwrap();
    let tcp = server.tcp_addr().unwrap();
    let t0 = std::time::Instant::now();
    let until = t0 + Duration::from_secs(10);
    let mut tricklers = Vec::new();
    for i in 0..40 {
        let (addr, head): (SocketAddr, &'static [u8]) = if i % 2 == 0 {
            (
                http,
                b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            )
        } else {
            (
                tcp,
                br#"{"cmd":"ping","pad":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"#,
            )
        };
        tricklers.push(std::thread::spawn(move || {
            trickle(addr, head, Duration::from_millis(200), until)
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Every slot is held: a new connection is answered at once, not queued.
    let asked = std::time::Instant::now();
    let full = http_request(http, "GET", "/healthz", &[], b"").unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(full.status, 503, "{}", full.body);
    assert!(full.body.contains("server.max_connections = 20"), "{}", full.body);
    // Within the request deadline (plus a margin) the tricklers are gone and health answers.
    let healthy = eventually(Duration::from_secs(5), || {
        http_request(http, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    assert!(healthy, "no /healthz 200 within 5 s of the attack");
    let closed = tricklers
        .into_iter()
        .filter_map(|t| t.join().ok())
        .filter(|c| *c)
        .count();
    assert_eq!(closed, 40, "every trickling connection is closed by the server");
    assert!(
        t0.elapsed() < Duration::from_secs(9),
        "the tricklers were closed by the deadline"
    );
    still_alive(&server, None);

    // The TCP reply says why.
    let mut s = TcpStream::connect(tcp).unwrap();
    s.write_all(br#"{"cmd":"ping""#).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).unwrap();
    assert!(reply.contains("server.request_timeout_secs"), "{reply}");
}

/// One peer cannot take every slot: past `max_connections_per_ip` it is refused, by name.
#[test]
fn one_peer_is_capped_at_max_connections_per_ip() {
    let _one = serial();
    let (server, _) = start(ServerConfig {
        max_connections_per_ip: 3,
        ..loopback()
    });
    let tcp = server.tcp_addr().unwrap();
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(tcp).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = TcpStream::connect(tcp).unwrap();
    fourth.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = String::new();
    BufReader::new(&mut fourth).read_line(&mut reply).unwrap();
    assert!(reply.contains("server.max_connections_per_ip = 3"), "{reply}");
    let http = server.http_addr().unwrap();
    let held_http: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(http).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let refused = http_request(http, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.body.contains("max_connections_per_ip = 3"),
        "{}",
        refused.body
    );
    drop(held);
    drop(held_http);
    assert!(eventually(Duration::from_secs(5), || {
        http_request(http, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    }));
}

/// Finding 5: SIGTERM waited 122 s for an HTTP client with a partial body. Shutdown now waits
/// `shutdown_grace_secs` at most, then closes what is left and flushes the store.
#[test]
fn shutdown_waits_the_grace_period_at_most() {
    let _one = serial();
    let (server, _) = start(ServerConfig {
        idle_timeout_secs: 120.0,
        request_timeout_secs: 120.0,
        shutdown_grace_secs: 1.0,
        ..loopback()
    });
    let mut partial = TcpStream::connect(server.http_addr().unwrap()).unwrap();
    partial
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"event\":")
        .unwrap();
    let mut tcp_partial = TcpStream::connect(server.tcp_addr().unwrap()).unwrap();
    tcp_partial.write_all(br#"{"cmd":"ping""#).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    server.stop().unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
}

/// Finding 7: the dashboard could be framed by any site. Every answer now forbids framing.
#[test]
fn answers_forbid_framing_and_sniffing() {
    let (server, _) = start(loopback());
    for path in ["/", "/healthz", "/v1/query?days=1", "/nope"] {
        let mut s = TcpStream::connect(server.http_addr().unwrap()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        let head = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(head.contains("x-frame-options: deny"), "{path}: {head}");
        assert!(
            head.contains("content-security-policy: frame-ancestors 'none'"),
            "{path}: {head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{path}: {head}");
    }
}

/// Finding 7: query answers had no size limit. Past `max_reply_bytes` the query is refused,
/// saying how to narrow it; smaller answers are untouched.
#[test]
fn a_query_answer_past_max_reply_bytes_is_refused() {
    let (server, _) = start(ServerConfig {
        max_reply_bytes: 4_000,
        ..loopback()
    });
    let tcp = server.tcp_addr().unwrap();
    let small = tcp_call(tcp, br#"{"cmd":"query_days","days":2}"#);
    assert_eq!(small["success"], true, "{small}");
    let big = tcp_call(tcp, br#"{"cmd":"query_days","days":200}"#);
    let err = big["error"].as_str().unwrap_or_default();
    assert!(err.contains("server.max_reply_bytes = 4000"), "{big}");
    let http = http_request(server.http_addr().unwrap(), "GET", "/v1/query?days=200", &[], b"").unwrap();
    assert_eq!(http.status, 400, "{}", http.body);
}

/// Finding 7: the blocking client read a reply line without limit, so a hostile server could
/// exhaust its memory. It stops one byte past its cap.
#[test]
fn the_client_stops_reading_an_endless_reply() {
    let _one = serial();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hostile = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        // 64 MiB without a newline, unless the client hangs up first.
        for _ in 0..1024 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut client = traqq_server::Client::connect(addr).unwrap();
    client.set_max_reply_bytes(1 << 20);
    let mut result = Ok(());
    let grew = peak_growth(|| result = client.ping());
    let err = result.unwrap_err().to_string();
    assert!(err.contains("longer than 1048576 bytes"), "{err}");
    assert!(grew < 16 * MIB, "peak grew {} MiB", grew / MIB);
    drop(client);
    hostile.join().unwrap();
}

/// The server-wide budget of request bytes being read (`max_inflight_bytes`), shared by both
/// transports: past it a request is refused at once — HTTP 503 with `Retry-After`, TCP an
/// error reply — and the bytes come back when the holders finish.
#[test]
fn past_max_inflight_bytes_requests_are_refused_at_once_and_served_again_after() {
    let _one = serial();
    let (server, _) = start(ServerConfig {
        max_inflight_bytes: 64 * 1024,
        max_body_bytes: 64 * 1024,
        ..loopback()
    });
    let tcp = server.tcp_addr().unwrap();
    let http = server.http_addr().unwrap();
    // Each TCP connection holds a 16 KiB read buffer: four take the whole budget.
    let holders: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(tcp).unwrap();
            s.write_all(br#"{"cmd":"pi"#).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let busy = tcp_call(tcp, br#"{"cmd":"ping"}"#);
    assert!(
        busy["error"]
            .as_str()
            .unwrap_or_default()
            .contains("server.max_inflight_bytes = 65536"),
        "{busy}"
    );
    // HTTP shares the budget: a POST is refused before its body is read.
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 13\r\n\r\n{\"event\":\"a\"}")
        .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let head = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{raw}");
    assert!(head.contains("retry-after: 1"), "{raw}");
    assert!(raw.contains("max_inflight_bytes"), "{raw}");
    // Queries carry no body: still served.
    let q = http_request(http, "GET", "/v1/query?days=1", &[], b"").unwrap();
    assert_eq!(q.status, 200, "{}", q.body);
    drop(holders);
    // The holders' bytes come back as the server notices each hang-up, one at a time: a ping
    // may pass before the last one is back, so the POST is waited for as well.
    assert!(eventually(Duration::from_secs(5), || {
        tcp_call(tcp, br#"{"cmd":"ping"}"#)["data"] == "pong"
    }));
    assert!(eventually(Duration::from_secs(5), || {
        http_post(http, "/v1/events", &[], br#"{"event":"a"}"#.to_vec()).0 == 200
    }));
}

/// Finding 6: request heads with bare-LF line ends were accepted (a smuggling risk behind a
/// proxy that reads them differently). Such a request is refused; CRLF is served.
#[test]
fn a_request_head_with_a_bare_lf_is_refused() {
    let (server, _) = start(loopback());
    let http = server.http_addr().unwrap();
    for head in [
        "GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n",
        "GET /healthz HTTP/1.1\r\nHost: x\nConnection: close\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        assert!(!raw.contains(" 200 "), "{head:?} was served: {raw}");
    }
    let ok = http_request(http, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(ok.status, 200);
}
