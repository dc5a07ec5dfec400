//! Issue 17: the dashboard's `dst` (distribution) card in real headless Chromium against a real
//! traqq-server (memory store). Events with known amounts over three days go in through
//! `POST /v1/events`; the page must draw, per day, the p50/p90/p99 the server's query reports,
//! and those must be within 1% of the exact quantiles of the amounts computed here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{artifacts, chromium, fmt2, http, now_clear_of_midnight, utc_date, Chrome, Dom, DAY};
use serde_json::{json, Value};
use traqq_server::{RunningServer, ServerConfig};
use traqq_storage::prelude::*;

const METRIC: &str = "dst/event~geo/amount";
const QS: [(&str, f64); 3] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)];

fn start() -> RunningServer {
    let config = TraqqConfig {
        mapping: MappingConfig {
            add: vec!["event".into()],
            distribution: vec![DistributionConfig {
                key: "event~geo".into(),
                value_key: "amount".into(),
            }],
            ..MappingConfig::default()
        },
        ..TraqqConfig::default()
    };
    let traqq = Traqq::new(config, MemoryStorage::new(), "dist").unwrap();
    let server = ServerConfig {
        tcp: "off".into(),
        http: "127.0.0.1:0".into(),
        ..ServerConfig::default()
    };
    RunningServer::start(server, Arc::new(traqq)).unwrap()
}

/// (days ago, label `event~geo`, amount): a skewed spread for `buy~US` (the most values every
/// day) and a narrower one for `click~DE`, different per day; 40-days-old outliers that every
/// range shown must leave out.
fn amounts() -> Vec<(i64, &'static str, f64)> {
    let mut out = Vec::new();
    for d in 0..3i64 {
        for i in 0..(150 + 40 * d) {
            let x = ((i * 7919 + d * 104_729) % 1000) as f64;
            out.push((d, "buy~US", 1.0 + x * x / (2000.0 + 500.0 * d as f64)));
        }
        for i in 0..(30 + 5 * d) {
            out.push((
                d,
                "click~DE",
                0.5 + ((i * 31 + d * 7) % 100) as f64 * 0.25 * (1 + d) as f64,
            ));
        }
    }
    for _ in 0..20 {
        out.push((40, "buy~US", 99_999.0));
    }
    out
}

/// `a` and `b` are the same figure (JSON text parsed by serde_json and by the browser may differ
/// in the last bit).
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

/// The value of rank ⌊q (n − 1)⌋ of `values` in order.
fn exact(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[(q * (v.len() - 1) as f64).floor() as usize]
}

fn record(server: &RunningServer, now: i64) {
    let batch: Vec<Value> = amounts()
        .into_iter()
        .map(|(d, label, amount)| {
            let (event, geo) = label.split_once('~').unwrap();
            json!({ "event": event, "geo": geo, "amount": amount, "ts": now - d * DAY })
        })
        // Events without an amount count in `add` but add no value to a distribution.
        .chain((0..5).map(|_| json!({ "event": "buy", "geo": "US", "ts": now })))
        .collect();
    let addr = server.http_addr().unwrap();
    let (status, body) = http(addr, "POST", "/v1/events", None, &Value::Array(batch).to_string());
    assert_eq!(status, 200, "{body}");
}

/// The server's answer to `GET path`: its `data`.
fn get(server: &RunningServer, path: &str) -> Value {
    let (status, body) = http(server.http_addr().unwrap(), "GET", path, None, "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["data"].clone()
}

/// Per bucket date: the server's figures of `label` (from the query's `Quantiles` result).
fn server_figures(buckets: &Value, label: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for b in buckets.as_array().unwrap() {
        for r in b["results"].as_array().unwrap() {
            if r["metric_type"] == "dst" {
                if let Some(f) = r["result"]["Quantiles"].get(label) {
                    out.insert(b["date"].as_str().unwrap().to_owned(), f.clone());
                }
            }
        }
    }
    out
}

/// The chart's hover columns of the card: per bucket date, their data attributes.
fn chart_columns(card: &Dom) -> BTreeMap<String, BTreeMap<String, String>> {
    card.tags("rect")
        .into_iter()
        .filter(|(a, _)| a.get("class").map(String::as_str) == Some("hover"))
        .map(|(a, _)| (a["data-bucket"].clone(), a))
        .collect()
}

/// The card shows, for each bucket, exactly the server's count, min, max, p50, p90, p99 (in
/// the chart's columns, their tooltips and, in the detail view, the table); returns how many
/// buckets it checked.
fn assert_shows(card: &Dom, want: &BTreeMap<String, Value>, detail: bool) -> usize {
    let columns = chart_columns(card);
    assert_eq!(
        columns.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "one chart column per bucket with values"
    );
    for (date, f) in want {
        let col = &columns[date];
        let tooltip = card
            .tags("rect")
            .into_iter()
            .find(|(a, _)| a.get("data-bucket") == Some(date))
            .map(|_| {
                let at = card.0.find(&format!("data-bucket=\"{date}\"")).unwrap();
                let title = card.0[at..].find("<title>").unwrap() + at + "<title>".len();
                card.0[title..title + card.0[title..].find('<').unwrap()].to_owned()
            })
            .unwrap();
        for k in ["count", "min", "max", "p50", "p90", "p99"] {
            let shown: f64 = col[&format!("data-{k}")].parse().unwrap();
            let want = f[k].as_f64().unwrap();
            assert!(
                same(shown, want),
                "{date} {k} in the chart: {shown}, the server says {want}"
            );
            let text = format!("{k} {}", fmt2(shown));
            assert!(
                tooltip.contains(&text),
                "{date}: tooltip {tooltip:?} lacks {text:?}"
            );
            if detail {
                let row = card.bucket_row(date);
                let cell = row
                    .tags("td")
                    .into_iter()
                    .find(|(a, _)| a.get("data-q").map(String::as_str) == Some(k))
                    .unwrap();
                assert_eq!(cell.1, fmt2(shown), "{date} {k} in the table");
            }
        }
    }
    want.len()
}

/// The server's figures are the real quantiles of the amounts: within 1% of the exact ones.
fn assert_close(figures: &Value, values: &[f64], what: &str) {
    assert_eq!(
        figures["count"].as_u64().unwrap(),
        values.len() as u64,
        "{what}: count"
    );
    for (k, q) in QS {
        let (got, want) = (figures[k].as_f64().unwrap(), exact(values, q));
        assert!(
            (got - want).abs() <= 0.01 * want.abs(),
            "{what}: {k} {got} is not within 1% of the exact {want}"
        );
    }
}

fn selected_label(card: &Dom) -> String {
    card.tags("option")
        .into_iter()
        .find(|(a, _)| a.contains_key("selected"))
        .map(|(a, _)| a["value"].clone())
        .unwrap_or_else(|| panic!("no label selected: {}", card.0))
}

#[test]
fn distributions_show_per_day_quantile_bands() {
    let Some(exe) = chromium() else { return };
    let server = start();
    let now = now_clear_of_midnight();
    record(&server, now);
    let base = format!("http://{}/", server.http_addr().unwrap());
    let days = get(&server, "/v1/query?days=6");
    let values = |label: &str, day: Option<i64>| -> Vec<f64> {
        amounts()
            .into_iter()
            .filter(|(d, l, _)| *l == label && *d <= 6 && day.is_none_or(|day| day == *d))
            .map(|(_, _, a)| a)
            .collect()
    };
    let mut chrome = Chrome::launch(&exe);

    // All metrics: the dst card, its label defaulting to the one with the most values, and
    // that label's quantiles over the range as the server merges them.
    let dom = chrome.open(&format!("{base}?range=7d"), &["ready", "error", "auth"]);
    dom.assert_ready();
    chrome.assert_only(&base);
    assert!(dom.cards().contains(&METRIC.to_owned()), "{:?}", dom.cards());
    let card = dom.card(METRIC);
    assert_eq!(selected_label(&card), "buy~US");
    let merged = get(
        &server,
        "/v1/find?days=6&metric_type=dst&key=event~geo&add_key=amount&merge=true",
    );
    let merged = &merged[0]["result"]["Quantiles"]["buy~US"];
    assert_close(merged, &values("buy~US", None), "buy~US over the week");
    for (k, _) in QS {
        let (value, shown) = card.stat(&format!("range-{k}"));
        let (value, want) = (value.parse::<f64>().unwrap(), merged[k].as_f64().unwrap());
        assert!(
            same(value, want),
            "{k} over the week: {value}, the server says {want}"
        );
        assert_eq!(shown, fmt2(merged[k].as_f64().unwrap()));
    }
    assert_eq!(
        card.stat("count").0,
        (values("buy~US", None).len() + values("click~DE", None).len()).to_string()
    );
    let want = server_figures(&days, "buy~US");
    assert_eq!(assert_shows(&card, &want, false), 3);

    // Selected alone: the bands, and per day the server's figures, which are the amounts'.
    chrome.eval(&format!(
        "document.querySelector('[data-select=\"{METRIC}\"]').click()"
    ));
    assert_eq!(
        chrome.eval("location.search"),
        json!("?range=7d&m=dst%2Fevent%7Egeo%2Famount")
    );
    let dom = chrome.dom();
    assert_eq!(dom.cards(), [METRIC]);
    let card = dom.card(METRIC);
    assert_eq!(assert_shows(&card, &want, true), 3);
    for d in 0..3 {
        let date = utc_date(now - d * DAY);
        assert_close(
            &want[&date],
            &values("buy~US", Some(d)),
            &format!("buy~US on {date}"),
        );
    }
    for class in ["band90", "band99"] {
        let bands: Vec<_> = card
            .tags("polygon")
            .into_iter()
            .filter(|(a, _)| a["class"] == class)
            .collect();
        assert_eq!(bands.len(), 1, "one {class} band over three days in a row");
        // Three days along the top, three back along the bottom.
        assert_eq!(bands[0].0["points"].split(' ').count(), 6, "{class}");
    }
    let p50 = card
        .tags("polyline")
        .into_iter()
        .find(|(a, _)| a["class"] == "q-p50")
        .unwrap();
    assert_eq!(p50.0["points"].split(' ').count(), 3, "the p50 line");
    chrome.set_width(Some((1280, false)));
    chrome.screenshot(&artifacts().join("dashboard-dst.png"));
    // Phone width: the per-day table still fits.
    chrome.set_width(Some((390, true)));
    let wide = chrome.eval("document.documentElement.scrollWidth");
    assert!(
        wide.as_u64().unwrap() <= 390,
        "the page is {wide}px wide on a 390px phone"
    );
    chrome.screenshot(&artifacts().join("dashboard-dst-phone.png"));
    chrome.set_width(None);

    // Another label, picked from the selector.
    chrome.eval(
        "(() => { const s = document.querySelector('[data-role=\"dst-label\"]'); \
         s.value = 'click~DE'; s.dispatchEvent(new Event('change')); })()",
    );
    let card = chrome.dom().card(METRIC);
    assert_eq!(selected_label(&card), "click~DE");
    let want = server_figures(&days, "click~DE");
    assert_eq!(assert_shows(&card, &want, true), 3);
    for d in 0..3 {
        let date = utc_date(now - d * DAY);
        assert_close(
            &want[&date],
            &values("click~DE", Some(d)),
            &format!("click~DE on {date}"),
        );
    }

    // Weeks and months: the server's merged figures per group, for the label still picked.
    for group in ["week", "month"] {
        chrome.eval(&format!(
            "document.querySelector('[data-group=\"{group}\"]').click()"
        ));
        chrome.wait_state(&["ready"]);
        let dom = chrome.dom();
        assert!(
            dom.netlog().contains(&format!("group={group}")),
            "{}",
            dom.netlog()
        );
        let card = dom.card(METRIC);
        assert_eq!(selected_label(&card), "click~DE", "{group}");
        let grouped = get(&server, &format!("/v1/query?days=6&group={group}"));
        let want = server_figures(&grouped, "click~DE");
        let total: u64 = want.values().map(|f| f["count"].as_u64().unwrap()).sum();
        assert_eq!(
            total,
            values("click~DE", None).len() as u64,
            "{group}: every value, once"
        );
        assert!(assert_shows(&card, &want, true) >= 1, "{group}");
    }
    server.stop().unwrap();
}

/// Results the page does not know (another metric type, odd shapes) are skipped, not fatal:
/// the page still shows what it knows, also with the unknown metric selected.
#[test]
fn unknown_metric_types_and_odd_results_do_not_break_the_page() {
    let Some(exe) = chromium() else { return };
    let server = start();
    record(&server, now_clear_of_midnight());
    let base = format!("http://{}/", server.http_addr().unwrap());
    let mut chrome = Chrome::launch(&exe);
    // Every query reply gains, per bucket, results of a future type and broken ones.
    chrome.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": r#"
            const realFetch = window.fetch;
            window.fetch = async (url, opts) => {
              const res = await realFetch(url, opts);
              if (!String(url).includes('/v1/query?')) return res;
              const body = await res.json();
              for (const b of body.data) b.results.push(
                { metric_type: 'zzz', key: ['geo'], location: 'x', result: { Weird: { a: [1] } } },
                { metric_type: 'dst', key: ['odd'], add_key: 'amount', location: 'y',
                  result: { Quantiles: { x: { count: 'many' }, y: null } } },
                { metric_type: 'qqq', key: null, result: null },
                null);
              return new Response(JSON.stringify(body), { status: res.status });
            };"# }),
    );
    for url in [format!("{base}?range=7d"), format!("{base}?range=7d&m=zzz%2Fgeo")] {
        let dom = chrome.open(&url, &["ready", "error", "auth"]);
        dom.assert_ready();
        let cards = dom.cards();
        assert!(cards.contains(&METRIC.to_owned()), "{url}: {cards:?}");
        assert!(cards.contains(&"add/event".to_owned()), "{url}: {cards:?}");
        assert!(!cards.iter().any(|c| c.starts_with("zzz")), "{url}: {cards:?}");
        assert!(dom.card("dst/odd/amount").0.contains("No values in this range."));
        assert_eq!(chart_columns(&dom.card(METRIC)).len(), 3, "{url}");
    }
    let dom = chrome.dom();
    assert!(
        dom.0.contains("cannot show zzz/geo (metric type zzz)"),
        "{}",
        dom.status()
    );
    server.stop().unwrap();
}
