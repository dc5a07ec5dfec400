//! What the dashboard's browser tests share: Chromium over the DevTools protocol ([`Chrome`]),
//! the rendered page ([`Dom`]), plain HTTP to the server, clocks and dates.
//!
//! Chromium: `TRAQQ_CHROMIUM`, else `/usr/bin/chromium` (scripts/test installs it). Without it
//! the tests are skipped, except under `CI=true`, where they fail.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

mod chrome;
mod dom;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use chrome::Chrome;
pub(crate) use dom::Dom;

pub(crate) const DAY: i64 = 86_400;

pub(crate) fn chromium() -> Option<PathBuf> {
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

/// A plain HTTP/1.1 request over a fresh connection: (status, body).
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
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

pub(crate) fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// Now, but never in the last five minutes of a UTC day: the page counts days from its own
/// clock, and a test that crossed midnight would compare it with yesterday's truth.
pub(crate) fn now_clear_of_midnight() -> i64 {
    let t = now();
    let left = DAY - t.rem_euclid(DAY);
    if left <= 300 {
        std::thread::sleep(Duration::from_secs(left as u64 + 1));
        return now();
    }
    t
}

/// Where screenshots go: the workspace's `target/`.
pub(crate) fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

pub(crate) fn utc_date(ts: i64) -> String {
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

/// `x` as the page shows it: thousands separated, at most 2 decimals.
pub(crate) fn fmt2(x: f64) -> String {
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
