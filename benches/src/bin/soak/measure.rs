//! What the soak samples: the server's RSS and open fds, latency percentiles, the load.

use super::*;

/// One sample of the server process.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) t: f64,
    pub(super) rss_kib: u64,
    pub(super) fds: u64,
    pub(super) redis_rss_kib: Option<u64>,
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) queries: usize,
    pub(super) events_per_sec: f64,
    pub(super) acked: u64,
}

pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
}

pub(super) fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The `q` quantile (0..=1) of `values` (sorted in place), 0 when empty.
pub(super) fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let i = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[i.min(values.len() - 1)]
}

pub(super) fn latencies_between(shared: &Shared, from: f64, to: f64) -> Vec<f64> {
    shared
        .latencies
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, ms)| *ms)
        .collect()
}

pub(super) fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// The sum of the merged `add/event` counter over the last 8 days, through the server.
pub(super) fn stored_count(tcp: &str) -> anyhow::Result<u64> {
    let mut c = TcpLines::connect(tcp)?;
    let reply = c.call(br#"{"cmd":"find","days":8,"metric_type":"add","key":"event","merge":true}"#)?;
    anyhow::ensure!(reply["success"] == true, "find failed: {reply}");
    let mut total = 0u64;
    for r in reply["data"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{reply}"))?
    {
        if let Some(h) = r["result"]["Hash"].as_object() {
            total += h.values().filter_map(Value::as_u64).sum::<u64>();
        }
    }
    Ok(total)
}

/// `traqq_events_recorded_total` from `/metrics`.
pub(super) fn metrics_recorded(http: &str) -> anyhow::Result<u64> {
    let mut h = Http::new(http);
    let (status, body) = h.request("GET", "/metrics", None, b"")?;
    anyhow::ensure!(status == 200, "/metrics: {status}");
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix("traqq_events_recorded_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| anyhow::anyhow!("no traqq_events_recorded_total"))
}
