//! The dashboard in real headless Chromium against a real traqq-server (memory store, free
//! loopback ports): events go in through `POST /v1/events`, the page is loaded from `GET /`, and
//! the numbers in the rendered DOM must equal the truth computed here from the same events.
//! Chromium is driven over the DevTools protocol, which also records every request the page
//! makes: all of them must go to the server the page came from.
//!
//! Chromium: `TRAQQ_CHROMIUM`, else `/usr/bin/chromium` (scripts/test installs it). Without it
//! the test is skipped, except under `CI=true`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{artifacts, chromium, fmt2, http, now, now_clear_of_midnight, utc_date, Chrome, Dom, DAY};
use serde_json::{json, Value};
use traqq_server::{RunningServer, ServerConfig};
use traqq_storage::prelude::*;

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
            distribution: Vec::new(),
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
