//! Prometheus metrics of the server, kept in atomics and rendered as text exposition.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::protocol::{Command, Status};

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BOUNDS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Counters and gauges of one server (shared by its TCP and HTTP sides).
#[derive(Debug, Default)]
pub struct Metrics {
    events_recorded: AtomicU64,
    events_rejected: AtomicU64,
    events_duplicate: AtomicU64,
    storage_errors: AtomicU64,
    open_connections: AtomicI64,
    open_http_connections: AtomicI64,
    connections_rejected: AtomicU64,
    requests: [[AtomicU64; Status::ALL.len()]; Command::ALL.len()],
    latency: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_sum_nanos: AtomicU64,
}

impl Metrics {
    pub(crate) fn request(&self, command: Command, status: Status, elapsed: Duration) {
        self.requests[command as usize][status as usize].fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        let slot = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.latency[slot].fetch_add(1, Relaxed);
        self.latency_sum_nanos
            .fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    pub(crate) fn events(&self, recorded: usize, rejected: usize, duplicates: usize) {
        self.events_recorded.fetch_add(recorded as u64, Relaxed);
        self.events_rejected.fetch_add(rejected as u64, Relaxed);
        self.events_duplicate.fetch_add(duplicates as u64, Relaxed);
    }

    pub(crate) fn storage_error(&self) {
        self.storage_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Relaxed);
    }

    pub(crate) fn http_connection_opened(&self) {
        self.open_http_connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn http_connection_closed(&self) {
        self.open_http_connections.fetch_sub(1, Relaxed);
    }

    pub(crate) fn connection_rejected(&self) {
        self.connections_rejected.fetch_add(1, Relaxed);
    }

    /// Events recorded so far.
    pub fn events_recorded(&self) -> u64 {
        self.events_recorded.load(Relaxed)
    }

    /// Events rejected so far.
    pub fn events_rejected(&self) -> u64 {
        self.events_rejected.load(Relaxed)
    }

    /// Events not counted again because their id was recorded before (`[event] id_field`).
    pub fn events_duplicate(&self) -> u64 {
        self.events_duplicate.load(Relaxed)
    }

    /// TCP connections open now.
    pub fn open_connections(&self) -> i64 {
        self.open_connections.load(Relaxed)
    }

    /// HTTP connections open now.
    pub fn open_http_connections(&self) -> i64 {
        self.open_http_connections.load(Relaxed)
    }

    /// Requests answered with `command` and `status` so far.
    pub fn requests(&self, command: Command, status: Status) -> u64 {
        self.requests[command as usize][status as usize].load(Relaxed)
    }

    /// The Prometheus text exposition (version 0.0.4), with what `storage` counts.
    pub fn render(&self, storage: &dyn traqq_storage::Storage) -> String {
        let mut out = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter(
            "traqq_events_recorded_total",
            "Events recorded.",
            self.events_recorded(),
        );
        counter(
            "traqq_events_rejected_total",
            "Events rejected as invalid.",
            self.events_rejected(),
        );
        counter(
            "traqq_events_duplicate_total",
            "Events not counted again: their id (event.id_field) was recorded before.",
            self.events_duplicate(),
        );
        counter(
            "traqq_labels_overflowed_total",
            "New labels counted under (other) because their metric's bucket held limits.max_labels labels.",
            storage.labels_overflowed(),
        );
        counter(
            "traqq_storage_errors_total",
            "Requests that failed in the store.",
            self.storage_errors.load(Relaxed),
        );
        counter(
            "traqq_connections_rejected_total",
            "TCP connections refused because server.max_connections were open.",
            self.connections_rejected.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP traqq_open_connections Connections open now, by transport.\n\
             # TYPE traqq_open_connections gauge\n\
             traqq_open_connections{{transport=\"tcp\"}} {}\n\
             traqq_open_connections{{transport=\"http\"}} {}",
            self.open_connections(),
            self.open_http_connections()
        );
        let _ = writeln!(
            out,
            "# HELP traqq_requests_total Requests by command and outcome.\n# TYPE traqq_requests_total counter"
        );
        for command in Command::ALL {
            for status in Status::ALL {
                let n = self.requests(command, status);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "traqq_requests_total{{command=\"{}\",outcome=\"{}\"}} {n}",
                        command.as_str(),
                        status.as_str()
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP traqq_request_duration_seconds Time to answer a request (parse, store, reply).\n\
             # TYPE traqq_request_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BOUNDS.iter().enumerate() {
            cumulative += self.latency[i].load(Relaxed);
            let _ = writeln!(
                out,
                "traqq_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.latency[LATENCY_BOUNDS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "traqq_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
             traqq_request_duration_seconds_sum {}\n\
             traqq_request_duration_seconds_count {cumulative}",
            self.latency_sum_nanos.load(Relaxed) as f64 / 1e9
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histogram() {
        let m = Metrics::default();
        m.events(3, 1, 0);
        m.request(Command::Record, Status::Ok, Duration::from_micros(30));
        m.request(Command::Record, Status::Ok, Duration::from_millis(3));
        m.request(Command::Query, Status::BadRequest, Duration::from_secs(10));
        let text = m.render(&traqq_storage::MemoryStorage::new());
        assert!(text.contains("traqq_events_recorded_total 3\n"), "{text}");
        assert!(text.contains("traqq_events_rejected_total 1\n"));
        assert!(text.contains("traqq_requests_total{command=\"record\",outcome=\"ok\"} 2\n"));
        assert!(text.contains("traqq_requests_total{command=\"query\",outcome=\"bad_request\"} 1\n"));
        assert!(
            text.contains("traqq_request_duration_seconds_bucket{le=\"0.00005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("traqq_request_duration_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("traqq_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("traqq_request_duration_seconds_count 3\n"));
    }
}
