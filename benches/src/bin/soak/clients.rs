//! The soak's load: ingest, dashboard, bad-input and connection-churn clients.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use traqq_bench::mapping::{ADD_VALUE, DISTRIBUTION};

use super::wire::*;
use super::*;

/// Paces a client at `rate` events/s (0: no pacing).
#[derive(Debug)]
pub(super) struct Pacer {
    per_batch: Option<Duration>,
    next: Instant,
}

impl Pacer {
    pub(super) fn new(rate: f64) -> Pacer {
        Pacer {
            per_batch: (rate > 0.0).then(|| Duration::from_secs_f64(BATCH as f64 / rate)),
            next: Instant::now(),
        }
    }

    pub(super) fn wait(&mut self, shared: &Shared) {
        let Some(step) = self.per_batch else { return };
        self.next += step;
        let now = Instant::now();
        if self.next > now {
            shared.sleep(self.next - now);
        } else if now - self.next > Duration::from_secs(1) {
            // Far behind (the server was slow): do not burst to catch up.
            self.next = now;
        }
    }
}

/// `BATCH` events of the pool from `offset`, joined by `sep`.
pub(super) fn batch(pool: &[String], offset: usize, sep: &str) -> String {
    let mut out = String::new();
    for i in 0..BATCH {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(&pool[(offset + i) % pool.len()]);
    }
    out
}

/// Adds the `recorded` of a `record_batch` reply; an error for anything else.
pub(super) fn count_reply(reply: &Value, shared: &Shared, expect: usize) -> Result<(), String> {
    if reply["success"] != true {
        return Err(format!("batch refused: {reply}"));
    }
    let recorded = reply["data"]["recorded"]
        .as_u64()
        .ok_or_else(|| format!("no recorded count: {reply}"))?;
    shared.acked.fetch_add(recorded, Ordering::Relaxed);
    if recorded as usize != expect {
        return Err(format!("{recorded} of {expect} recorded: {reply}"));
    }
    Ok(())
}

pub(super) fn tcp_ingest(id: usize, addr: &str, pool: &[String], shared: &Shared, rate: f64) {
    let mut offset = id * 3_331;
    let mut pacer = Pacer::new(rate);
    let mut conn: Option<TcpLines> = None;
    while !shared.stopped() {
        if conn.is_none() {
            match TcpLines::connect(addr) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    shared.error(format!("tcp ingest {id}: connect: {e}"));
                    shared.sleep(Duration::from_millis(500));
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let line = format!(
            r#"{{"cmd":"record_batch","events":[{}]}}"#,
            batch(pool, offset, ",")
        );
        offset += BATCH;
        if let Err(e) = c.send(line.as_bytes()) {
            // Maybe partly sent: the server may or may not have the batch.
            shared.uncertain.fetch_add(1, Ordering::Relaxed);
            shared.error(format!("tcp ingest {id}: send: {e}"));
            conn = None;
            continue;
        }
        match c.reply() {
            Ok(reply) => {
                if let Err(e) = count_reply(&reply, shared, BATCH) {
                    shared.error(format!("tcp ingest {id}: {e}"));
                }
            }
            Err(e) => {
                shared.uncertain.fetch_add(1, Ordering::Relaxed);
                shared.error(format!("tcp ingest {id}: reply: {e}"));
                conn = None;
            }
        }
        pacer.wait(shared);
    }
}

pub(super) fn http_ingest(id: usize, addr: &str, pool: &[String], shared: &Shared, rate: f64) {
    let mut offset = id * 3_331;
    let mut pacer = Pacer::new(rate);
    let mut http = Http::new(addr);
    while !shared.stopped() {
        let body = batch(pool, offset, "\n");
        offset += BATCH;
        match http.request(
            "POST",
            "/v1/events",
            Some("application/x-ndjson"),
            body.as_bytes(),
        ) {
            Ok((status, body)) => {
                let reply: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if status != 200 {
                    shared.error(format!("http ingest {id}: status {status}: {reply}"));
                } else if let Err(e) = count_reply(&reply, shared, BATCH) {
                    shared.error(format!("http ingest {id}: {e}"));
                }
            }
            Err(e) => {
                shared.uncertain.fetch_add(1, Ordering::Relaxed);
                shared.error(format!("http ingest {id}: {e}"));
                shared.sleep(Duration::from_millis(200));
            }
        }
        pacer.wait(shared);
    }
}

/// Every ~200 ms a dashboard's round: the 7-day query and a merged `find` per metric type over
/// HTTP, a `query_days` with totals over TCP; each request's latency recorded.
pub(super) fn dashboard(tcp: &str, http_addr: &str, shared: &Shared, start: Instant) {
    let finds = [
        "/v1/query?days=7".to_owned(),
        "/v1/find?metric_type=bmp&key=ip&merge=true&days=7".to_owned(),
        "/v1/find?metric_type=add&key=event~geo&merge=true&days=7".to_owned(),
        format!(
            "/v1/find?metric_type=adv&key={}&add_key={}&merge=true&days=7",
            ADD_VALUE.0, ADD_VALUE.1
        ),
        "/v1/find?metric_type=top&key=offer~creative&merge=true&days=7".to_owned(),
        format!(
            "/v1/find?metric_type=dst&key={}&add_key={}&merge=true&days=7",
            DISTRIBUTION.0, DISTRIBUTION.1
        ),
    ];
    let mut http = Http::new(http_addr);
    let mut conn: Option<TcpLines> = None;
    let mut next = Instant::now();
    let record = |t0: Instant| {
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let t = start.elapsed().as_secs_f64();
        shared.latencies.lock().unwrap().push((t, ms));
        shared.queries.fetch_add(1, Ordering::Relaxed);
    };
    while !shared.stopped() {
        for path in &finds {
            let t0 = Instant::now();
            match http.request("GET", path, None, b"") {
                Ok((200, body)) => {
                    record(t0);
                    let ok = serde_json::from_slice::<Value>(&body)
                        .map(|v| v["success"] == true)
                        .unwrap_or(false);
                    if !ok {
                        shared.error(format!(
                            "dashboard {path}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        ));
                    }
                }
                Ok((status, body)) => shared.error(format!(
                    "dashboard {path}: status {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                )),
                Err(e) => shared.error(format!("dashboard {path}: {e}")),
            }
        }
        if conn.is_none() {
            conn = TcpLines::connect(tcp)
                .map_err(|e| shared.error(format!("dashboard tcp connect: {e}")))
                .ok();
        }
        if let Some(c) = conn.as_mut() {
            let t0 = Instant::now();
            match c.call(br#"{"cmd":"query_days","days":7,"totals":true}"#) {
                Ok(v) if v["success"] == true => record(t0),
                Ok(v) => shared.error(format!(
                    "dashboard query_days: {}",
                    v.to_string().chars().take(300).collect::<String>()
                )),
                Err(e) => {
                    shared.error(format!("dashboard query_days: {e}"));
                    conn = None;
                }
            }
        }
        next += Duration::from_millis(200);
        let now = Instant::now();
        if next > now {
            shared.sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Bad input, over and over: each must get its error, and the connection (TCP) or the server
/// (HTTP) must keep answering.
pub(super) fn bad_input(tcp: &str, http_addr: &str, shared: &Shared) {
    let oversize = {
        let mut l = br#"{"cmd":"ping","pad":""#.to_vec();
        l.resize(MAX_LINE_BYTES + 10_000, b'a');
        l.extend_from_slice(br#""}"#);
        l
    };
    let tcp_cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "malformed JSON",
            br#"{"cmd":"record","event":{"event":"x""#.to_vec(),
        ),
        ("oversize line", oversize),
        ("wrong type", br#"{"cmd":"query_days","days":"seven"}"#.to_vec()),
        ("unknown command", br#"{"cmd":"frobnicate"}"#.to_vec()),
        ("not an object", b"[1,2,3]".to_vec()),
        (
            "empty event name",
            br#"{"cmd":"record","event":{"event":""}}"#.to_vec(),
        ),
        ("negative days", br#"{"cmd":"query_days","days":-3}"#.to_vec()),
        ("invalid UTF-8", b"{\"cmd\":\"\xff\xfe\"}".to_vec()),
        ("missing cmd", br#"{"event":{"event":"x"}}"#.to_vec()),
        (
            "min > max",
            br#"{"cmd":"query","min":1700086400,"max":1700000000}"#.to_vec(),
        ),
    ];
    let mut conn: Option<TcpLines> = None;
    let mut http = Http::new(http_addr);
    let mut i = 0usize;
    while !shared.stopped() {
        i += 1;
        // TCP: one bad line, then a batch of only bad events, then a ping on the same connection.
        if conn.is_none() {
            conn = TcpLines::connect(tcp)
                .map_err(|e| shared.error(format!("bad input connect: {e}")))
                .ok();
        }
        if let Some(c) = conn.as_mut() {
            let (name, line) = &tcp_cases[i % tcp_cases.len()];
            let result = (|| -> std::io::Result<Result<(), String>> {
                let r = c.call(line)?;
                if r["success"] != false || !r["error"].is_string() {
                    return Ok(Err(format!("{name}: expected an error, got {r}")));
                }
                let r = c.call(br#"{"cmd":"record_batch","events":[{"event":5},{"ip":"1.2.3.4"},"x"]}"#)?;
                if r["success"] == true {
                    // Count whatever it says it recorded (it must be 0).
                    let n = r["data"]["recorded"].as_u64().unwrap_or(0);
                    shared.acked.fetch_add(n, Ordering::Relaxed);
                    let rejected = r["data"]["rejected"].as_array().map_or(0, Vec::len);
                    if n != 0 || rejected != 3 {
                        return Ok(Err(format!("bad batch: {r}")));
                    }
                } else if !r["error"].is_string() {
                    return Ok(Err(format!("bad batch: {r}")));
                }
                let r = c.call(br#"{"cmd":"ping"}"#)?;
                if r["data"] != "pong" {
                    return Ok(Err(format!("ping after {name}: {r}")));
                }
                Ok(Ok(()))
            })();
            match result {
                Ok(Ok(())) => {
                    shared.bad_refused.fetch_add(2, Ordering::Relaxed);
                }
                Ok(Err(e)) => shared.error(format!("bad input tcp: {e}")),
                Err(e) => {
                    shared.error(format!("bad input tcp: {e}"));
                    conn = None;
                }
            }
        }

        // HTTP.
        let case = i % 6;
        let result: Result<(), String> = match case {
            0 => expect_status(
                &mut http,
                "POST",
                "/v1/events",
                Some("application/json"),
                b"{\"event\":",
                400,
            ),
            1 => expect_status(&mut http, "GET", "/v1/query?days=abc", None, b"", 400),
            2 => expect_status(&mut http, "GET", "/v1/nope", None, b"", 404),
            3 => expect_status(&mut http, "DELETE", "/v1/events", None, b"", 405),
            4 => {
                // A body past server.max_body_bytes (sent in full: the limit is enforced as
                // the body is read).
                let mut raw = format!(
                    "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    MAX_BODY_BYTES * 2
                )
                .into_bytes();
                raw.resize(raw.len() + MAX_BODY_BYTES * 2, b' ');
                raw_http(http_addr, &raw, &[413])
            }
            _ => raw_http(http_addr, b"HELLO WORLD\r\n\r\n", &[400]),
        };
        match result {
            Ok(()) => {
                shared.bad_refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => shared.error(format!("bad input http {case}: {e}")),
        }
        if let Err(e) = expect_status(&mut http, "GET", "/livez", None, b"", 200) {
            shared.error(format!("livez after bad input: {e}"));
        }
        shared.sleep(Duration::from_millis(150));
    }
}

pub(super) fn expect_status(
    http: &mut Http,
    method: &str,
    path: &str,
    ct: Option<&str>,
    body: &[u8],
    want: u16,
) -> Result<(), String> {
    match http.request(method, path, ct, body) {
        Ok((s, _)) if s == want => Ok(()),
        Ok((s, b)) => Err(format!(
            "{method} {path}: status {s}, wanted {want}: {}",
            String::from_utf8_lossy(&b[..b.len().min(200)])
        )),
        Err(e) => Err(format!("{method} {path}: {e}")),
    }
}

/// Sends `raw` on a fresh connection and expects one of `want` (or the connection closed
/// without an answer when `want` is empty); then drops the connection.
pub(super) fn raw_http(addr: &str, raw: &[u8], want: &[u16]) -> Result<(), String> {
    let s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok();
    let mut r = BufReader::new(s);
    // The server may answer and close before it has read everything: a failed write is
    // fine as long as the answer comes.
    let _ = r.get_mut().write_all(raw);
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(_) => {
            let status = line.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
            match status {
                Some(s) if want.contains(&s) => Ok(()),
                _ => Err(format!(
                    "{:?}: got {line:?}, wanted {want:?}",
                    String::from_utf8_lossy(&raw[..raw.len().min(40)])
                )),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Opens and drops connections: idle ones, ones cut in the middle of a request, ones whose
/// reply is never read. None carries a complete write (a dropped complete `record_batch`
/// might be counted without being acknowledged).
pub(super) fn churn(tcp: &str, http: &str, shared: &Shared) {
    let mut held: VecDeque<TcpStream> = VecDeque::new();
    let mut i = 0usize;
    while !shared.stopped() {
        i += 1;
        let (addr, payload): (&str, &[u8]) = match i % 7 {
            0 => (tcp, b""),
            1 => (tcp, br#"{"cmd":"record_batch","events":[{"event":"churn","ip":"#),
            2 => (tcp, b"{\"cmd\":\"query_days\",\"days\":7}\n"),
            3 => (http, b""),
            4 => (http, b"GET /v1/query?days=7 HTTP/1.1\r\nHost:"),
            5 => (
                http,
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 5000\r\n\r\n{\"event\":\"churn\"}\n{\"eve",
            ),
            _ => (http, b"GET /v1/query?days=7 HTTP/1.1\r\nHost: x\r\n\r\n"),
        };
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                if !payload.is_empty() {
                    let _ = s.write_all(payload);
                }
                shared.churned.fetch_add(1, Ordering::Relaxed);
                // Some are dropped at once, the others held a little while.
                if i % 3 != 0 {
                    held.push_back(s);
                }
                while held.len() > 24 {
                    held.pop_front();
                }
            }
            Err(e) => shared.error(format!("churn connect {addr}: {e}")),
        }
        shared.sleep(Duration::from_millis(25));
    }
}
