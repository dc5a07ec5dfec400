//! The dashboard in real headless Chromium against a real traqq-server (memory store, free
//! loopback ports): events go in through `POST /v1/events`, the page is loaded from `GET /`, and
//! the numbers in the rendered DOM must equal the truth computed here from the same events.
//! Chromium is driven over the DevTools protocol, which also records every request the page
//! makes: all of them must go to the server the page came from.
//!
//! Chromium: `TRAQQ_CHROMIUM`, else `/usr/bin/chromium` (scripts/test installs it). Without it
//! the test is skipped, except under `CI=true`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use traqq_server::{RunningServer, ServerConfig};
use traqq_storage::prelude::*;
use tungstenite::{Message, WebSocket};

const DAY: i64 = 86_400;

// ---------------------------------------------------------------- the browser

fn chromium() -> Option<PathBuf> {
    let candidates = std::env::var_os("TRAQQ_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from));
    for path in candidates {
        if path.is_file() {
            return Some(path);
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "chromium not found (set TRAQQ_CHROMIUM or install the Debian package `chromium`); \
             CI must run the browser test"
        );
    }
    eprintln!("SKIPPED: chromium not found (install `chromium` or set TRAQQ_CHROMIUM)");
    None
}

const WAIT: Duration = Duration::from_secs(60);

/// The browser process, ended when this drops, also when a test panics half-way. Chromium's
/// own helper processes (renderers, GPU, utilities) exit with it.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        // A browser asked to close (see `Chrome`'s drop) gets a moment to exit on its own.
        let started = Instant::now();
        while matches!(self.0.try_wait(), Ok(None)) && started.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Headless Chromium driven over the DevTools protocol: one page, whose own network requests
/// (not the browser's background ones) are recorded from `Network.requestWillBeSent`.
struct Chrome {
    // Fields drop in order: the browser ends before its profile directory is removed.
    _browser: Browser,
    _profile: tempfile::TempDir,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    session: String,
    /// Every URL the page requested since the last [`Chrome::open`].
    requests: Vec<String>,
    loaded: bool,
}

impl Chrome {
    fn launch(exe: &Path) -> Chrome {
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        let browser = Browser(
            Command::new(exe)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-breakpad",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--hide-scrollbars",
                    // Offline like our users' servers: no name resolves, only loopback is reachable.
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--remote-debugging-port=0",
                    "--window-size=1280,1000",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        // Chromium writes its DevTools port and browser path here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.trim().parse::<u16>().unwrap(), path.trim().to_owned());
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "chromium did not open its DevTools port: {}",
                std::fs::read_to_string(profile.path().join("chromium.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stream = TcpStream::connect(("127.0.0.1", endpoint.0)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let url = format!("ws://127.0.0.1:{}{}", endpoint.0, endpoint.1);
        let (ws, _) = tungstenite::client(url, stream).unwrap();
        // From here on, reads return now and then so waits can check their deadlines.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut chrome = Chrome {
            _browser: browser,
            _profile: profile,
            ws,
            next_id: 0,
            session: String::new(),
            requests: Vec::new(),
            loaded: false,
        };
        let target = chrome.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = chrome.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        chrome.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Network.enable", "Page.enable", "Runtime.enable"] {
            chrome.call(domain, json!({}));
        }
        chrome
    }

    /// Sends a command (to the page once attached) and returns its result, noting events on the way.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < WAIT, "no answer to {method} within {WAIT:?}");
            let Some(reply) = self.next_message() else {
                continue;
            };
            if reply["id"] == json!(id) {
                if let Some(error) = reply.get("error") {
                    panic!("{method} failed: {error}");
                }
                return reply["result"].clone();
            }
        }
    }

    /// One message, or `None` after a short read timeout.
    fn next_message(&mut self) -> Option<Value> {
        let text = match self.ws.read() {
            Ok(Message::Text(text)) => text,
            Ok(_) => return None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) => panic!("DevTools connection failed: {e}"),
        };
        let msg: Value = serde_json::from_str(text.as_str()).unwrap();
        let ours = msg["sessionId"].as_str() == Some(self.session.as_str());
        match msg["method"].as_str() {
            Some("Network.requestWillBeSent") if ours => {
                self.requests
                    .push(msg["params"]["request"]["url"].as_str().unwrap_or("").to_owned());
            }
            Some("Page.loadEventFired") if ours => self.loaded = true,
            _ => {}
        }
        Some(msg)
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its JSON value.
    fn eval(&mut self, expr: &str) -> Value {
        let reply = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = reply.get("exceptionDetails") {
            panic!("{expr} threw: {e}");
        }
        reply["result"]["value"].clone()
    }

    /// Waits until the page's `<body data-state>` is one of `states`; returns it.
    fn wait_state(&mut self, states: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let state = self.eval("document.body ? (document.body.dataset.state || '') : ''");
            if let Some(s) = state.as_str().filter(|s| states.contains(s)) {
                return s.to_owned();
            }
            assert!(
                started.elapsed() < WAIT,
                "page state {state} never became one of {states:?}; status: {}",
                self.eval("(document.getElementById('status') || {}).textContent || ''")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to a minute) until `done` holds, reading DevTools events meanwhile.
    fn wait_for(&mut self, mut done: impl FnMut(&mut Chrome) -> bool, what: &str) {
        let started = Instant::now();
        while !done(self) {
            assert!(started.elapsed() < WAIT, "gave up waiting for {what}");
            self.next_message();
        }
    }

    /// Loads `url`, waits for its load event and a settled state, and returns the DOM.
    fn open(&mut self, url: &str, states: &[&str]) -> Dom {
        self.requests.clear();
        self.loaded = false;
        self.call("Page.navigate", json!({ "url": url }));
        let started = Instant::now();
        while !self.loaded {
            assert!(started.elapsed() < WAIT, "{url} did not load");
            self.next_message();
        }
        self.wait_state(states);
        self.dom()
    }

    fn dom(&mut self) -> Dom {
        Dom(self
            .eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap()
            .to_owned())
    }

    /// Every request the page made since it was opened went to `origin` (`data:` URLs, such as
    /// the date input's built-in icon, reach no host).
    fn assert_only(&self, origin: &str) {
        assert!(
            !self.requests.is_empty(),
            "no requests recorded: the network log is not working"
        );
        let foreign: Vec<&String> = self
            .requests
            .iter()
            .filter(|u| !u.starts_with(origin) && !u.starts_with("data:"))
            .collect();
        assert!(foreign.is_empty(), "the page requested other hosts: {foreign:?}");
    }

    /// Lays the page out `width` CSS pixels wide (a phone when `mobile`); `None` resets.
    fn set_width(&mut self, width: Option<(u32, bool)>) {
        match width {
            Some((width, mobile)) => self.call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile }),
            ),
            None => self.call("Emulation.clearDeviceMetricsOverride", json!({})),
        };
    }

    /// A PNG of the whole page.
    fn screenshot(&mut self, path: &Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64_decode(shot["data"].as_str().unwrap());
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "bad screenshot ({} bytes)",
            png.len()
        );
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // Ask politely first, so the browser ends its own processes (`Browser` then waits).
        let close = json!({ "id": 0, "method": "Browser.close" });
        let _ = self.ws.send(Message::Text(close.to_string().into()));
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// ---------------------------------------------------------------- reading the DOM

/// The serialized DOM, read with just enough HTML knowledge for the page's own markup.
struct Dom(String);

/// One start tag's attributes.
type Attrs = BTreeMap<String, String>;

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

fn parse_attrs(tag: &str) -> Attrs {
    let mut attrs = Attrs::new();
    let mut rest = tag.split_once(char::is_whitespace).map_or("", |(_, r)| r);
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(value) = after.strip_prefix('"') else {
            break;
        };
        let end = value.find('"').unwrap();
        attrs.insert(
            name.rsplit(char::is_whitespace).next().unwrap().to_owned(),
            unescape(&value[..end]),
        );
        rest = &value[end + 1..];
    }
    attrs
}

impl Dom {
    /// The outer HTML of the card showing metric `id` (e.g. `add/event`).
    fn card(&self, id: &str) -> Dom {
        let open = format!("<section class=\"card\" data-metric=\"{id}\">");
        let start = self
            .0
            .find(&open)
            .unwrap_or_else(|| panic!("no card {id} in the page: {}", self.status()));
        let end = start + self.0[start..].find("</section>").unwrap();
        Dom(self.0[start..end].to_owned())
    }

    /// Every start tag `<name ...>` with its attributes and the text up to the next tag.
    fn tags(&self, name: &str) -> Vec<(Attrs, String)> {
        let open = format!("<{name} ");
        let mut found = Vec::new();
        let mut at = 0;
        while let Some(i) = self.0[at..].find(&open) {
            let start = at + i;
            let close = start + self.0[start..].find('>').unwrap();
            let text_end = close + self.0[close..].find('<').unwrap_or(self.0.len() - close);
            found.push((
                parse_attrs(&self.0[start + 1..close]),
                unescape(&self.0[close + 1..text_end]),
            ));
            at = close;
        }
        found
    }

    /// The `data-value` and the shown text of the stat with `data-role` = `role`.
    fn stat(&self, role: &str) -> (String, String) {
        self.tags("b")
            .into_iter()
            .find(|(a, _)| a.get("data-role").map(String::as_str) == Some(role))
            .map(|(a, text)| (a["data-value"].clone(), text))
            .unwrap_or_else(|| panic!("no stat {role}"))
    }

    /// The outer HTML of the first table row whose start tag begins with `open`.
    fn row_starting(&self, open: &str) -> Dom {
        let start = self
            .0
            .find(open)
            .unwrap_or_else(|| panic!("no row {open} in {}", self.0));
        let end = start + self.0[start..].find("</tr>").unwrap();
        Dom(self.0[start..end].to_owned())
    }

    /// The outer HTML of the first ranked-table row of `member`.
    fn row_html(&self, member: &str) -> Dom {
        self.row_starting(&format!("<tr data-member=\"{member}\""))
    }

    /// The outer HTML of the per-bucket table row of `date`.
    fn bucket_row(&self, date: &str) -> Dom {
        self.row_starting(&format!("<tr data-bucket=\"{date}\""))
    }

    /// The ranked-table row of `member`: its `data-value` and the value shown.
    fn row(&self, member: &str) -> (String, String) {
        let row = self.row_html(member);
        let value = row.tags("tr")[0].0["data-value"].clone();
        let shown = row
            .tags("td")
            .into_iter()
            .find(|(a, _)| a.get("class").map(String::as_str) == Some("num"))
            .map(|(_, t)| t)
            .unwrap();
        (value, shown)
    }

    /// The rank shown for `member`.
    fn rank(&self, member: &str) -> String {
        self.row_html(member).tags("tr")[0].0["data-rank"].clone()
    }

    fn body(&self) -> Attrs {
        self.tags("body").into_iter().next().unwrap().0
    }

    fn status(&self) -> String {
        self.tags("p")
            .into_iter()
            .find(|(a, _)| a.get("id").map(String::as_str) == Some("status"))
            .map(|(_, t)| t)
            .unwrap_or_default()
    }

    fn netlog(&self) -> String {
        self.tags("pre")
            .into_iter()
            .find(|(a, _)| a.get("id").map(String::as_str) == Some("netlog"))
            .map(|(_, t)| t)
            .unwrap_or_default()
    }

    fn cards(&self) -> Vec<String> {
        self.tags("section")
            .into_iter()
            .filter_map(|(a, _)| a.get("data-metric").cloned())
            .collect()
    }

    /// The page finished loading, and its own log saw requests but none that left its origin.
    fn assert_ready(&self) {
        let body = self.body();
        assert_eq!(
            body.get("data-state").map(String::as_str),
            Some("ready"),
            "page not ready: {}",
            self.status()
        );
        assert_ne!(body["data-requests"], "0", "the page's request log saw nothing");
        assert!(self.netlog().contains("/v1/query?"), "{}", self.netlog());
        assert_eq!(
            body["data-foreign-requests"],
            "0",
            "requests to other hosts: {}",
            self.netlog()
        );
    }
}

// ---------------------------------------------------------------- the server and the truth

fn mapping(timezone: &str) -> TraqqConfig {
    TraqqConfig {
        time: TimeConfig {
            store_hourly: true,
            timezone: timezone.into(),
            ..TimeConfig::default()
        },
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into(), "event~geo".into()],
            add_value: vec![AddValueConfig {
                key: "event".into(),
                add_key: "amount".into(),
            }],
            top: vec!["geo".into()],
        },
        ..TraqqConfig::default()
    }
}

/// A server on a free loopback port, memory store, days counted in `timezone`.
fn start_server(token: Option<&str>, timezone: &str) -> RunningServer {
    let traqq = Traqq::new(mapping(timezone), MemoryStorage::new(), "dash").unwrap();
    RunningServer::start(
        ServerConfig {
            tcp: "off".into(),
            http: "127.0.0.1:0".into(),
            auth_token: token.map(str::to_owned),
            ..ServerConfig::default()
        },
        Arc::new(traqq),
    )
    .unwrap()
}

/// A plain HTTP/1.1 request over a fresh connection: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    let status = reply.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// Now, but never in the last five minutes of a UTC day: the page counts days from its own
/// clock, and a test that crossed midnight would compare it with yesterday's truth.
fn now_clear_of_midnight() -> i64 {
    let t = now();
    let left = DAY - t.rem_euclid(DAY);
    if left <= 300 {
        std::thread::sleep(Duration::from_secs(left as u64 + 1));
        return now();
    }
    t
}

/// One event: how many days before now, and its properties.
struct Ev {
    days_ago: i64,
    event: &'static str,
    ip: String,
    geo: &'static str,
    amount: Option<f64>,
}

/// A fixed, varied set: ips repeat across days (so the union is less than the sum of the daily
/// uniques), amounts are multiples of 1/4 (exact in binary, so sums do not depend on order),
/// and 40-days-old events that must stay out of every range shown.
fn events() -> Vec<Ev> {
    let kinds = ["view", "view", "click", "view", "buy", "click"];
    let geos = ["US", "DE", "US", "FR", "JP", "US", "DE"];
    let mut out = Vec::new();
    for i in 0..90usize {
        let event = kinds[i % kinds.len()];
        out.push(Ev {
            days_ago: ((i * 7 / 4) % 3) as i64,
            event,
            ip: format!("10.0.0.{}", (i * 7) % 41),
            geo: geos[(i * 5) % geos.len()],
            // Buys always carry an amount, every other click a smaller one: two labels whose
            // averages differ from each other and from the overall average.
            amount: match event {
                "buy" => Some(0.25 * ((i * 13) % 400) as f64 + 1.5),
                "click" if i % 2 == 0 => Some(0.5 * ((i * 3) % 40) as f64 + 0.25),
                _ => None,
            },
        });
    }
    for i in 0..50usize {
        out.push(Ev {
            days_ago: 40,
            event: "click",
            ip: format!("192.168.1.{i}"),
            geo: "ZZ",
            amount: Some(1000.0),
        });
    }
    out
}

#[derive(Debug)]
struct Truth {
    events: usize,
    clicks: i64,
    unique_ips: u64,
    sum_daily_uniques: u64,
    top_geo: String,
    top_geo_count: i64,
    amount_sum: f64,
    summed: i64,
    /// Per `event` label: (sum of amounts, events with an amount).
    per_label: BTreeMap<&'static str, (f64, i64)>,
    /// The same per (days ago, label).
    per_day_label: BTreeMap<(i64, &'static str), (f64, i64)>,
}

/// The truth over the events no more than `max_age` days old, counted the plain way.
fn truth(events: &[Ev], max_age: i64) -> Truth {
    let inside: Vec<&Ev> = events.iter().filter(|e| e.days_ago <= max_age).collect();
    let mut geos: BTreeMap<&str, i64> = BTreeMap::new();
    let mut daily: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
    let mut per_label: BTreeMap<&'static str, (f64, i64)> = BTreeMap::new();
    let mut per_day_label: BTreeMap<(i64, &'static str), (f64, i64)> = BTreeMap::new();
    for e in &inside {
        if let Some(a) = e.amount {
            for t in [
                per_label.entry(e.event).or_default(),
                per_day_label.entry((e.days_ago, e.event)).or_default(),
            ] {
                t.0 += a;
                t.1 += 1;
            }
        }
        *geos.entry(e.geo).or_default() += 1;
        daily.entry(e.days_ago).or_default().insert(&e.ip);
    }
    // Highest count; ties by name, as the server ranks them.
    let (top_geo, top_geo_count) = geos
        .iter()
        .fold(("", 0), |best, (g, c)| if *c > best.1 { (g, *c) } else { best });
    Truth {
        events: inside.len(),
        clicks: inside.iter().filter(|e| e.event == "click").count() as i64,
        unique_ips: inside
            .iter()
            .map(|e| e.ip.as_str())
            .collect::<BTreeSet<_>>()
            .len() as u64,
        sum_daily_uniques: daily.values().map(|s| s.len() as u64).sum(),
        top_geo: top_geo.to_owned(),
        top_geo_count,
        amount_sum: inside.iter().filter_map(|e| e.amount).sum(),
        summed: inside.iter().filter(|e| e.amount.is_some()).count() as i64,
        per_label,
        per_day_label,
    }
}

fn record(addr: SocketAddr, events: &[Ev], now: i64, token: Option<&str>) {
    let batch: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut v = json!({ "event": e.event, "ip": e.ip, "geo": e.geo, "ts": now - e.days_ago * DAY });
            if let Some(a) = e.amount {
                v["amount"] = json!(a);
            }
            v
        })
        .collect();
    let (status, body) = http(
        addr,
        "POST",
        "/v1/events",
        token,
        &Value::Array(batch).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["data"]["recorded"], json!(events.len()), "{body}");
}

/// Where screenshots go: the workspace's `target/`.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

fn utc_date(ts: i64) -> String {
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm), UTC.
    let z = ts.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The cards of the 7-day view, checked against the truth of days 0..=6.
fn assert_week(dom: &Dom, events: &[Ev]) {
    let week = truth(events, 6);
    let add = dom.card("add/event");
    let clicks = week.clicks.to_string();
    assert_eq!(add.row("click"), (clicks.clone(), clicks), "the click counter");
    assert_eq!(add.stat("total").0, week.events.to_string());

    let bmp = dom.card("bmp/ip");
    let uniques = week.unique_ips.to_string();
    assert_eq!(
        bmp.stat("union"),
        (uniques.clone(), uniques),
        "unique ips over the week"
    );

    let top = dom.card("top/geo");
    assert_eq!(
        top.stat("top1"),
        (week.top_geo.clone(), week.top_geo.clone()),
        "top-1 geo"
    );
    assert_eq!(top.row(&week.top_geo).0, week.top_geo_count.to_string());
    assert_eq!(top.rank(&week.top_geo), "1");

    let adv = dom.card("adv/event/amount");
    let (sum, shown) = adv.stat("sum");
    assert_eq!(sum.parse::<f64>().unwrap(), week.amount_sum, "sum of amount");
    assert_eq!(shown, fmt2(week.amount_sum));
    assert_eq!(adv.stat("count").0, week.summed.to_string());
    let avg: f64 = adv.stat("avg").0.parse().unwrap();
    assert!(
        (avg - week.amount_sum / week.summed as f64).abs() < 1e-9,
        "average {avg}"
    );
    assert_eq!(week.per_label.len(), 2, "two labels with amounts: {week:?}");
    for (label, (sum, n)) in &week.per_label {
        let row = adv.row_html(label);
        let attrs = &row.tags("tr")[0].0;
        assert_eq!(
            attrs["data-value"].parse::<f64>().unwrap(),
            *sum,
            "sum of {label}"
        );
        assert_eq!(attrs["data-count"], n.to_string(), "count of {label}");
        let avg: f64 = attrs["data-avg"].parse().unwrap();
        assert!((avg - sum / *n as f64).abs() < 1e-9, "average of {label}: {avg}");
    }
}

/// `x` as the page shows it: thousands separated, at most 2 decimals.
fn fmt2(x: f64) -> String {
    let cents = (x * 100.0).round() as i64;
    let (int, frac) = (cents / 100, cents % 100);
    let digits = int.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        0 => grouped,
        f if f % 10 == 0 => format!("{grouped}.{}", f / 10),
        f => format!("{grouped}.{f:02}"),
    }
}

// ---------------------------------------------------------------- the tests

#[test]
fn dashboard_shows_the_recorded_truth_in_headless_chromium() {
    let Some(exe) = chromium() else { return };
    let server = start_server(None, "UTC");
    let addr = server.http_addr().unwrap();
    let events = events();
    let now = now_clear_of_midnight();
    record(addr, &events, now, None);
    let base = format!("http://{addr}/");

    // The page itself, as any client gets it.
    let (status, page) = http(addr, "GET", "/", None, "");
    assert_eq!(status, 200);
    assert_eq!(page, traqq_dashboard::INDEX_HTML);

    let mut chrome = Chrome::launch(&exe);

    // 7 days: every metric listed, grouped by type, numbers equal to the truth.
    let week = truth(&events, 6);
    assert!(
        week.unique_ips < week.sum_daily_uniques,
        "the data must tell a union from a sum: {week:?}"
    );
    let dom = chrome.open(&format!("{base}?range=7d"), &["ready", "error", "auth"]);
    dom.assert_ready();
    chrome.assert_only(&base);
    let mut cards = dom.cards();
    cards.sort();
    assert_eq!(
        cards,
        [
            "add/event",
            "add/event~geo",
            "adv/event/amount",
            "bmp/ip",
            "top/geo"
        ]
    );
    let groups: Vec<String> = dom
        .tags("div")
        .into_iter()
        .filter_map(|(a, _)| a.get("data-type").cloned())
        .collect();
    assert_eq!(groups, ["bmp", "add", "adv", "top"], "the catalog groups by type");
    assert_week(&dom, &events);
    let dir = artifacts();
    chrome.set_width(Some((1280, false)));
    chrome.screenshot(&dir.join("dashboard.png"));
    // Phone width: nothing sticks out sideways.
    chrome.set_width(Some((390, true)));
    let wide = chrome.eval("document.documentElement.scrollWidth");
    assert!(
        wide.as_u64().unwrap() <= 390,
        "the page is {wide}px wide on a 390px phone"
    );
    chrome.screenshot(&dir.join("dashboard-phone.png"));
    chrome.set_width(None);

    // Today by hour: only today's events.
    let today = truth(&events, 0);
    let dom = chrome.open(&format!("{base}?range=today"), &["ready", "error", "auth"]);
    dom.assert_ready();
    chrome.assert_only(&base);
    assert_eq!(dom.card("add/event").row("click").0, today.clicks.to_string());
    assert_eq!(dom.card("bmp/ip").stat("union").0, today.unique_ips.to_string());

    // The adv card alone: the average of each label in each day.
    let dom = chrome.open(
        &format!("{base}?range=7d&m=adv%2Fevent%2Famount"),
        &["ready", "error", "auth"],
    );
    dom.assert_ready();
    assert_eq!(dom.cards(), ["adv/event/amount"]);
    let mut checked = 0;
    for ((days_ago, label), (sum, n)) in &week.per_day_label {
        let row = dom.bucket_row(&utc_date(now - days_ago * DAY));
        let (attrs, _) = row
            .tags("td")
            .into_iter()
            .find(|(a, _)| a.get("data-label").map(String::as_str) == Some(*label))
            .unwrap_or_else(|| panic!("no average of {label} {days_ago} days ago"));
        let avg: f64 = attrs["data-avg"].parse().unwrap();
        assert!(
            (avg - sum / *n as f64).abs() < 1e-9,
            "{label}, {days_ago} days ago: {avg}"
        );
        checked += 1;
    }
    assert!(checked >= 4, "per-day averages checked: {checked}");

    // Custom dates (yesterday and today) with one metric selected: only its card.
    let two = truth(&events, 1);
    let url = format!(
        "{base}?range=custom&from={}&to={}&m=top%2Fgeo",
        utc_date(now - DAY),
        utc_date(now)
    );
    let dom = chrome.open(&url, &["ready", "error", "auth"]);
    dom.assert_ready();
    chrome.assert_only(&base);
    assert_eq!(dom.cards(), ["top/geo"]);
    assert_eq!(dom.card("top/geo").stat("top1").0, two.top_geo);
    assert_eq!(
        dom.card("top/geo").row(&two.top_geo).0,
        two.top_geo_count.to_string()
    );
    chrome.set_width(Some((1280, false)));
    chrome.screenshot(&dir.join("dashboard-detail.png"));
    chrome.set_width(None);

    // Clicking: the range and the selection go into the URL; the URL alone restores the view.
    chrome.eval("document.querySelector('[data-range=\"30d\"]').click()");
    chrome.wait_state(&["ready"]);
    chrome.eval("document.querySelector('[data-select=\"bmp/ip\"]').click()");
    let search = chrome.eval("location.search");
    assert_eq!(search, json!("?range=30d&m=bmp%2Fip"));
    let dom = chrome.open(
        &format!("{base}?range=30d&m=bmp%2Fip"),
        &["ready", "error", "auth"],
    );
    dom.assert_ready();
    assert_eq!(dom.cards(), ["bmp/ip"]);
    // 30 days still leaves out the 40-days-old events.
    assert_eq!(dom.card("bmp/ip").stat("union").0, week.unique_ips.to_string());
    chrome.eval("document.querySelector('[data-select=\"\"]').click()");
    assert_eq!(chrome.eval("location.search"), json!("?range=30d"));
    assert_eq!(chrome.dom().cards().len(), 5);

    // Auto-refresh picks up new events without a reload.
    chrome.eval("(() => { const s = document.getElementById('refresh'); s.value = '10'; s.dispatchEvent(new Event('change')); })()");
    assert_eq!(chrome.eval("location.search"), json!("?range=30d&refresh=10"));
    let more: Vec<Ev> = (0..3)
        .map(|i| Ev {
            days_ago: 0,
            event: "click",
            ip: format!("10.9.9.{i}"),
            geo: "US",
            amount: None,
        })
        .collect();
    record(addr, &more, now, None);
    let want = (week.clicks + 3).to_string();
    let started = Instant::now();
    loop {
        let shown = chrome.eval("(document.querySelector('[data-metric=\"add/event\"] tr[data-member=\"click\"]') || {}).dataset?.value");
        if shown == json!(want) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "auto-refresh never showed {want} clicks (shows {shown})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Neither request check is blind. The page's CSP blocks a request elsewhere, and the page
    // counts the violation; without the CSP, the DevTools log sees the request.
    chrome.eval("fetch('http://198.51.100.7/probe').catch(() => 0); 0");
    chrome.wait_for(
        |c| c.eval("document.body.dataset.foreignRequests") == json!("1"),
        "the page's counter",
    );
    chrome.call("Page.setBypassCSP", json!({ "enabled": true }));
    chrome.open(&format!("{base}?range=7d"), &["ready"]);
    chrome.eval("fetch('http://198.51.100.7/probe').catch(() => 0); 0");
    chrome.wait_for(
        |c| c.requests.iter().any(|u| u.contains("198.51.100.7")),
        "the DevTools log",
    );
    server.stop().unwrap();
}

#[test]
fn dashboard_asks_for_the_token_once_and_keeps_it_for_the_session() {
    let Some(exe) = chromium() else { return };
    let token = "s3cret-token";
    let server = start_server(Some(token), "UTC");
    let addr = server.http_addr().unwrap();
    let events = events();
    record(addr, &events, now_clear_of_midnight(), Some(token));
    let base = format!("http://{addr}/");
    let mut chrome = Chrome::launch(&exe);

    let dom = chrome.open(&format!("{base}?range=7d"), &["ready", "error", "auth"]);
    assert_eq!(
        dom.body().get("data-state").map(String::as_str),
        Some("auth"),
        "{}",
        dom.status()
    );
    assert!(dom.cards().is_empty());
    let form = dom
        .tags("form")
        .into_iter()
        .find(|(a, _)| a.get("id").map(String::as_str) == Some("auth"))
        .unwrap();
    assert!(!form.0.contains_key("hidden"), "the token form is hidden");

    // A wrong token is refused and the form stays.
    chrome.eval(
        "document.getElementById('token').value = 'wrong'; document.getElementById('auth').requestSubmit()",
    );
    chrome.wait_state(&["auth"]);
    assert!(
        chrome.dom().status().contains("refused"),
        "{}",
        chrome.dom().status()
    );

    // The right one: entered once, the numbers appear, and a reload does not ask again.
    chrome.eval(&format!(
        "document.getElementById('token').value = '{token}'; document.getElementById('auth').requestSubmit()"
    ));
    chrome.wait_state(&["ready"]);
    assert_eq!(chrome.eval("sessionStorage.getItem('traqq.token')"), json!(token));
    let dom = chrome.open(&format!("{base}?range=7d"), &["ready", "error", "auth"]);
    dom.assert_ready();
    chrome.assert_only(&base);
    assert_week(&dom, &events);
    server.stop().unwrap();
}

/// Custom dates mean the server's calendar days, whatever its zone (the browser runs in UTC).
#[test]
fn custom_dates_are_the_servers_days_in_any_zone() {
    let Some(exe) = chromium() else { return };
    let mut chrome = Chrome::launch(&exe);
    let events = events();
    let two = truth(&events, 1);
    // Fixed offsets (no DST), so the expected dates are plain arithmetic.
    for (zone, offset) in [
        ("Pacific/Kiritimati", 14 * 3600),
        ("Etc/GMT+12", -12 * 3600),
        ("Asia/Kolkata", 5 * 3600 + 1800),
    ] {
        let server = start_server(None, zone);
        let addr = server.http_addr().unwrap();
        let now = now();
        record(addr, &events, now, None);
        let base = format!("http://{addr}/");
        let (from, to) = (utc_date(now - DAY + offset), utc_date(now + offset));
        let dom = chrome.open(
            &format!("{base}?range=custom&from={from}&to={to}"),
            &["ready", "error", "auth"],
        );
        dom.assert_ready();
        chrome.assert_only(&base);
        assert!(
            dom.status().contains(&format!("2 days ({from} … {to})")),
            "{zone}: {}",
            dom.status()
        );
        assert_eq!(
            dom.card("add/event").row("click").0,
            two.clicks.to_string(),
            "{zone}"
        );
        assert_eq!(
            dom.card("bmp/ip").stat("union").0,
            two.unique_ips.to_string(),
            "{zone}"
        );
        assert_eq!(dom.card("top/geo").stat("top1").0, two.top_geo, "{zone}");
        assert_eq!(
            dom.card("top/geo").row(&two.top_geo).0,
            two.top_geo_count.to_string(),
            "{zone}"
        );
        let sum: f64 = dom.card("adv/event/amount").stat("sum").0.parse().unwrap();
        assert_eq!(sum, two.amount_sum, "{zone}");
        server.stop().unwrap();
    }
}

/// Serves `html` to every request on a loopback port, from a thread that stops with the
/// test process (each connection is answered once and closed).
fn serve_page(html: &'static str) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(100) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    addr
}

/// A traqq HTTP API on its own port (another origin than any page), with `cors_origins`.
fn start_api(token: Option<&str>, cors_origins: &[String]) -> RunningServer {
    let traqq = Traqq::new(mapping("UTC"), MemoryStorage::new(), "api").unwrap();
    RunningServer::start(
        ServerConfig {
            tcp: "off".into(),
            http: "127.0.0.1:0".into(),
            auth_token: token.map(str::to_owned),
            cors_origins: cors_origins.to_vec(),
            ..ServerConfig::default()
        },
        Arc::new(traqq),
    )
    .unwrap()
}

/// Today's count of `event` on the API at `addr`.
fn today_count(addr: SocketAddr, token: Option<&str>, event: &str) -> i64 {
    let (status, body) = http(
        addr,
        "GET",
        "/v1/find?days=0&metric_type=add&key=event&merge=true",
        token,
        "",
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"][0]["result"]["Hash"][event].as_i64().unwrap_or(0)
}

/// Issue 19: a web page on another origin records events in real Chromium — with `fetch` and
/// a bearer token (a CORS preflight, allowed by `cors_origins`) and with `navigator.sendBeacon`
/// (`text/plain`, no preflight). Without `cors_origins` the browser refuses the `fetch`.
#[test]
fn a_page_on_another_origin_records_with_fetch_and_send_beacon() {
    let Some(exe) = chromium() else { return };
    // The page: a plain one (no CSP) served on its own port, so its own origin. (The
    // dashboard's own CSP allows it to connect to its server only.)
    let page = serve_page("<!doctype html><title>shop</title><body data-state=ready>a shop</body>");
    let origin = format!("http://{page}");
    let token = "cross-origin-token";
    let api = start_api(Some(token), std::slice::from_ref(&origin));
    let beacons = start_api(None, &[]);
    let closed = start_api(Some(token), &[]);
    let mut chrome = Chrome::launch(&exe);
    chrome.open(&format!("{origin}/"), &["ready", "error", "auth"]);

    let fetch = |chrome: &mut Chrome, addr: SocketAddr| {
        chrome.eval(&format!(
            r#"fetch("http://{addr}/v1/events", {{
                method: "POST",
                headers: {{ "Authorization": "Bearer {token}", "Content-Type": "application/json" }},
                body: JSON.stringify([{{ event: "fetched" }}, {{ event: "fetched" }}]),
            }}).then(r => r.status, e => "refused: " + e)"#
        ))
    };
    assert_eq!(fetch(&mut chrome, api.http_addr().unwrap()), json!(200));
    assert_eq!(today_count(api.http_addr().unwrap(), Some(token), "fetched"), 2);
    let refused = fetch(&mut chrome, closed.http_addr().unwrap());
    assert!(
        refused.as_str().is_some_and(|s| s.starts_with("refused")),
        "{refused}"
    );
    assert_eq!(
        today_count(closed.http_addr().unwrap(), Some(token), "fetched"),
        0
    );

    let queued = chrome.eval(&format!(
        r#"navigator.sendBeacon("http://{}/v1/events", JSON.stringify({{ event: "beacon" }}))"#,
        beacons.http_addr().unwrap()
    ));
    assert_eq!(queued, json!(true));
    let addr = beacons.http_addr().unwrap();
    chrome.wait_for(
        |_| today_count(addr, None, "beacon") == 1,
        "the beacon to be recorded",
    );
}

/// Issue 15: a metric whose bucket reached `[limits] max_labels` shows `(other)` set apart —
/// after the ranked labels, unranked, saying what it holds — and counts only real labels as
/// distinct values.
#[test]
fn the_other_label_of_a_capped_metric_is_shown_apart() {
    let Some(exe) = chromium() else { return };
    let mut config = mapping("UTC");
    config.mapping.add.push("event~url".into());
    config.limits.max_labels_by_pattern.insert("event~url".into(), 3);
    let traqq = Traqq::new(config, MemoryStorage::new(), "cap").unwrap();
    let server = RunningServer::start(
        ServerConfig {
            tcp: "off".into(),
            http: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        },
        Arc::new(traqq),
    )
    .unwrap();
    let addr = server.http_addr().unwrap();
    let now = now_clear_of_midnight();
    // Ten urls; the first three in byte order keep their names, seven go to (other); one more
    // visit of /p0 ranks it first.
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"event": "view", "url": format!("/p{i}"), "ip": format!("10.0.0.{i}"), "ts": now}))
        .chain([json!({"event": "view", "url": "/p0", "ts": now})])
        .collect();
    let (status, body) = http(addr, "POST", "/v1/events", None, &Value::Array(batch).to_string());
    assert_eq!(status, 200, "{body}");

    let mut chrome = Chrome::launch(&exe);
    let dom = chrome.open(
        &format!("http://{addr}/?range=today"),
        &["ready", "error", "auth"],
    );
    dom.assert_ready();
    let card = dom.card("add/event~url");
    assert_eq!(card.stat("distinct").0, "3", "(other) is not a value of its own");
    assert_eq!(card.stat("total").0, "11", "every event is counted");
    assert_eq!(card.rank("view~/p0"), "1");
    assert_eq!(card.row("(other)").0, "7");
    let other = card.row_html("(other)");
    let attrs = &other.tags("tr")[0].0;
    assert_eq!(attrs.get("class").map(String::as_str), Some("other"));
    assert!(!attrs.contains_key("data-rank"), "(other) is not ranked");
    assert!(
        card.0.find("data-member=\"(other)\"") > card.0.find("data-member=\"view~/p2\""),
        "(other) comes after the ranked labels"
    );
    // Issue 16: a unique count says how sure it is (10 ips: exact).
    let bmp = dom.card("bmp/ip");
    assert_eq!(bmp.stat("union").0, "10");
    assert!(
        bmp.0.contains("<div class=\"stat\" title=\"exact\">"),
        "{}",
        bmp.0
    );
    chrome.screenshot(&artifacts().join("dashboard-capped.png"));
}

/// Issue 16: the Weeks and Months switch shows each ISO week's or month's unique count as the
/// server merges it (a union of the days: WAU, MAU), not the sum of the days.
#[test]
fn weeks_and_months_show_weekly_and_monthly_actives() {
    let Some(exe) = chromium() else { return };
    let server = start_server(None, "UTC");
    let addr = server.http_addr().unwrap();
    let events = events();
    let now = now_clear_of_midnight();
    record(addr, &events, now, None);
    let mut chrome = Chrome::launch(&exe);
    for group in ["week", "month"] {
        let (status, body) = http(addr, "GET", &format!("/v1/query?days=29&group={group}"), None, "");
        assert_eq!(status, 200, "{body}");
        let groups: Value = serde_json::from_str::<Value>(&body).unwrap()["data"].clone();
        let groups = groups.as_array().unwrap();
        let uniques: Vec<u64> = groups
            .iter()
            .map(|g| {
                g["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["metric_type"] == "bmp")
                    .map_or(0, |r| r["result"]["Count"].as_u64().unwrap())
            })
            .collect();
        let dom = chrome.open(
            &format!("http://{addr}/?range=30d&group={group}"),
            &["ready", "error", "auth"],
        );
        dom.assert_ready();
        assert!(
            dom.netlog().contains(&format!("group={group}")),
            "{}",
            dom.netlog()
        );
        let bmp = dom.card("bmp/ip");
        let actives = if group == "week" { "WAU" } else { "MAU" };
        assert!(bmp.0.contains(&format!("{actives}, last {group}")), "{}", bmp.0);
        assert_eq!(
            bmp.stat("latest").0,
            uniques.last().unwrap().to_string(),
            "{group}"
        );
        assert_eq!(
            bmp.stat("peak").0,
            uniques.iter().max().unwrap().to_string(),
            "{group}"
        );
        assert!(
            bmp.0.contains(&format!("per {group}")),
            "the chart is per {group}"
        );
        assert!(
            dom.status().contains(&format!("{} {group}", groups.len())),
            "{}",
            dom.status()
        );
    }
    chrome.screenshot(&artifacts().join("dashboard-months.png"));
}
