//! The server's metrics: one `prometheus-client` registry per server, exposed on `GET /metrics`
//! as OpenMetrics (when the scraper asks for it) or Prometheus text.
//!
//! Requests, events and connections are counted as they happen; the store's own counters (label
//! overflow), the write buffer and the process (CPU, memory, open files) are read when scraped.
//! Store latency and errors per operation come from [`Metrics::instrument`], a wrapper the
//! embedder puts around the store before building the engine (`traqq serve` does).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use traqq_core::batch::Batch;
use traqq_core::claim::{Claims, Seen};
use traqq_core::read::{Read, ReadResult};
use traqq_core::sketch::{KeySketch, RawSketch};
use traqq_storage::{BufferStats, Capabilities, Storage};

use crate::protocol::{Command, Status};

/// Upper bounds (seconds) of the latency histograms' buckets.
const LATENCY_BOUNDS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    command: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BOUNDS)
}

/// Counters, gauges and histograms of one server (shared by its TCP and HTTP sides).
pub struct Metrics {
    registry: Registry,
    events_recorded: Counter,
    events_rejected: Counter,
    events_duplicate: Counter,
    storage_errors: Counter,
    connections_rejected: Counter,
    open_connections: Family<TransportLabels, Gauge>,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<CommandLabels>,
    store_duration: Histograms<OperationLabels>,
    store_errors: Family<OperationLabels, Counter>,
    labels_overflowed: Counter,
    buffer_ops: Gauge,
    buffer_age: Gauge<f64, AtomicU64>,
    process_cpu: Counter<f64, AtomicU64>,
    process_rss: Gauge,
    process_fds: Gauge,
    /// What the scrape-time counters had reached at the last scrape.
    scraped: Mutex<(u64, f64)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("events_recorded", &self.events_recorded())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("traqq");
        let m = Metrics {
            events_recorded: Counter::default(),
            events_rejected: Counter::default(),
            events_duplicate: Counter::default(),
            storage_errors: Counter::default(),
            connections_rejected: Counter::default(),
            open_connections: Family::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            store_duration: Family::new_with_constructor(latency_histogram),
            store_errors: Family::default(),
            labels_overflowed: Counter::default(),
            buffer_ops: Gauge::default(),
            buffer_age: Gauge::default(),
            process_cpu: Counter::default(),
            process_rss: Gauge::default(),
            process_fds: Gauge::default(),
            scraped: Mutex::new((0, 0.0)),
            registry: Registry::default(),
        };
        registry.register("events_recorded", "Events recorded", m.events_recorded.clone());
        registry.register(
            "events_rejected",
            "Events rejected as invalid",
            m.events_rejected.clone(),
        );
        registry.register(
            "events_duplicate",
            "Events not counted again: their id (event.id_field) was recorded before",
            m.events_duplicate.clone(),
        );
        registry.register(
            "labels_overflowed",
            "New labels counted under (other) because their metric's bucket held limits.max_labels labels",
            m.labels_overflowed.clone(),
        );
        registry.register(
            "storage_errors",
            "Requests that failed in the store",
            m.storage_errors.clone(),
        );
        registry.register(
            "connections_rejected",
            "Connections refused because server.max_connections were open",
            m.connections_rejected.clone(),
        );
        registry.register(
            "open_connections",
            "Connections open now, by transport",
            m.open_connections.clone(),
        );
        registry.register("requests", "Requests by command and outcome", m.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time to answer a request (parse, store, reply), by command",
            m.request_duration.clone(),
        );
        registry.register(
            "store_duration_seconds",
            "Time the store took, by operation (apply, apply_claimed, read, delete, flush, ...)",
            m.store_duration.clone(),
        );
        registry.register(
            "store_errors",
            "Store calls that failed, by operation",
            m.store_errors.clone(),
        );
        registry.register(
            "write_buffer_operations",
            "Coalesced operations waiting in the write buffer (storage.write_buffer_ms)",
            m.buffer_ops.clone(),
        );
        registry.register(
            "write_buffer_age_seconds",
            "Age of the oldest write waiting in the write buffer",
            m.buffer_age.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "CPU time of the process (user + system)",
            m.process_cpu.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            m.process_rss.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors of the process",
            m.process_fds.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub(crate) fn request(&self, command: Command, status: Status, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                command: command.as_str(),
                outcome: status.as_str(),
            })
            .inc();
        self.request_duration
            .get_or_create(&CommandLabels {
                command: command.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn events(&self, recorded: usize, rejected: usize, duplicates: usize) {
        self.events_recorded.inc_by(recorded as u64);
        self.events_rejected.inc_by(rejected as u64);
        self.events_duplicate.inc_by(duplicates as u64);
    }

    pub(crate) fn storage_error(&self) {
        self.storage_errors.inc();
    }

    fn connections(&self, transport: &'static str) -> i64 {
        self.open_connections
            .get_or_create(&TransportLabels { transport })
            .get()
    }

    fn connections_by(&self, transport: &'static str, by: i64) {
        self.open_connections
            .get_or_create(&TransportLabels { transport })
            .inc_by(by);
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_by("tcp", 1);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_by("tcp", -1);
    }

    pub(crate) fn http_connection_opened(&self) {
        self.connections_by("http", 1);
    }

    pub(crate) fn http_connection_closed(&self) {
        self.connections_by("http", -1);
    }

    pub(crate) fn connection_rejected(&self) {
        self.connections_rejected.inc();
    }

    /// Events recorded so far.
    pub fn events_recorded(&self) -> u64 {
        self.events_recorded.get()
    }

    /// Events rejected so far.
    pub fn events_rejected(&self) -> u64 {
        self.events_rejected.get()
    }

    /// Events not counted again because their id was recorded before (`[event] id_field`).
    pub fn events_duplicate(&self) -> u64 {
        self.events_duplicate.get()
    }

    /// TCP connections open now.
    pub fn open_connections(&self) -> i64 {
        self.connections("tcp")
    }

    /// HTTP connections open now.
    pub fn open_http_connections(&self) -> i64 {
        self.connections("http")
    }

    /// Requests answered with `command` and `status` so far.
    pub fn requests(&self, command: Command, status: Status) -> u64 {
        self.requests
            .get(&RequestLabels {
                command: command.as_str(),
                outcome: status.as_str(),
            })
            .map_or(0, |c| c.get())
    }

    /// `store` wrapped so that every call is timed and its failures counted, per operation,
    /// in these metrics (`traqq_store_duration_seconds`, `traqq_store_errors_total`). Wrap the
    /// store before building the engine the server serves.
    pub fn instrument(self: &Arc<Self>, store: Arc<dyn Storage>) -> Arc<dyn Storage> {
        Arc::new(Instrumented {
            inner: store,
            metrics: Arc::clone(self),
        })
    }

    fn store_call<T>(
        &self,
        operation: &'static str,
        call: impl FnOnce() -> traqq_storage::Result<T>,
    ) -> traqq_storage::Result<T> {
        let started = Instant::now();
        let result = call();
        let labels = OperationLabels { operation };
        self.store_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.store_errors.get_or_create(&labels).inc();
        }
        result
    }

    /// The OpenMetrics text exposition, with what `storage` and the process report now.
    pub fn render(&self, storage: &dyn Storage) -> String {
        self.scrape(storage);
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// [`Metrics::render`] in the Prometheus text format (0.0.4): the same samples, without
    /// OpenMetrics' end marker.
    pub fn render_prometheus(&self, storage: &dyn Storage) -> String {
        let text = self.render(storage);
        text.strip_suffix("# EOF\n").map(str::to_owned).unwrap_or(text)
    }

    /// Brings the values read at scrape time up to date.
    fn scrape(&self, storage: &dyn Storage) {
        let overflowed = storage.labels_overflowed();
        let cpu = process_cpu_seconds();
        {
            let mut seen = self.scraped.lock();
            self.labels_overflowed.inc_by(overflowed.saturating_sub(seen.0));
            if cpu > seen.1 {
                self.process_cpu.inc_by(cpu - seen.1);
            }
            *seen = (overflowed.max(seen.0), cpu.max(seen.1));
        }
        let buffer = storage.buffer().unwrap_or_default();
        self.buffer_ops
            .set(i64::try_from(buffer.pending_ops).unwrap_or(i64::MAX));
        self.buffer_age
            .set(buffer.oldest.map_or(0.0, |d| d.as_secs_f64()));
        self.process_rss.set(process_rss_bytes());
        self.process_fds.set(process_open_fds());
    }
}

/// CPU seconds the process has used (Linux `/proc/self/stat`, in clock ticks of 1/100 s).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Resident memory of the process, bytes (Linux `/proc/self/status`).
fn process_rss_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Open file descriptors of the process (Linux `/proc/self/fd`).
fn process_open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64)
}

/// A store whose calls are timed and counted in a server's [`Metrics`].
#[derive(Debug)]
struct Instrumented {
    inner: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
}

impl Storage for Instrumented {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn apply(&self, batch: &Batch) -> traqq_storage::Result<()> {
        self.metrics.store_call("apply", || self.inner.apply(batch))
    }

    fn apply_once(&self, id: &str, batch: &Batch) -> traqq_storage::Result<()> {
        self.metrics
            .store_call("apply", || self.inner.apply_once(id, batch))
    }

    fn apply_claimed(&self, batch: &Batch, claims: &Claims) -> traqq_storage::Result<Vec<Seen>> {
        self.metrics
            .store_call("apply_claimed", || self.inner.apply_claimed(batch, claims))
    }

    fn labels_overflowed(&self) -> u64 {
        self.inner.labels_overflowed()
    }

    fn buffer(&self) -> Option<BufferStats> {
        self.inner.buffer()
    }

    fn key_sets(&self, prefix: &str) -> traqq_storage::Result<Option<Vec<String>>> {
        self.metrics
            .store_call("key_sets", || self.inner.key_sets(prefix))
    }

    fn read(&self, reads: &[Read]) -> traqq_storage::Result<Vec<ReadResult>> {
        self.metrics.store_call("read", || self.inner.read(reads))
    }

    fn read_sketches(&self, keys: &[String]) -> traqq_storage::Result<Vec<Option<RawSketch>>> {
        self.metrics
            .store_call("read_sketches", || self.inner.read_sketches(keys))
    }

    fn write_sketches(&self, sketches: &[KeySketch]) -> traqq_storage::Result<()> {
        self.metrics
            .store_call("write_sketches", || self.inner.write_sketches(sketches))
    }

    fn read_ids(&self, set_keys: &[String]) -> traqq_storage::Result<Vec<Vec<u128>>> {
        self.metrics
            .store_call("read_ids", || self.inner.read_ids(set_keys))
    }

    fn delete(&self, keys: &[String]) -> traqq_storage::Result<()> {
        self.metrics.store_call("delete", || self.inner.delete(keys))
    }

    fn remove_members(&self, key: &str, members: &[String]) -> traqq_storage::Result<()> {
        self.metrics
            .store_call("remove_members", || self.inner.remove_members(key, members))
    }

    fn flush(&self) -> traqq_storage::Result<()> {
        self.metrics.store_call("flush", || self.inner.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_the_store() {
        let m = Arc::new(Metrics::default());
        m.events(3, 1, 0);
        m.request(Command::Record, Status::Ok, Duration::from_micros(30));
        m.request(Command::Record, Status::Ok, Duration::from_millis(3));
        m.request(Command::Query, Status::BadRequest, Duration::from_secs(10));
        let store = m.instrument(Arc::new(traqq_storage::MemoryStorage::new()));
        store.read(&[Read::Members("k".into())]).unwrap();
        let text = m.render(store.as_ref());
        for line in [
            "traqq_events_recorded_total 3",
            "traqq_events_rejected_total 1",
            "traqq_requests_total{command=\"record\",outcome=\"ok\"} 2",
            "traqq_requests_total{command=\"query\",outcome=\"bad_request\"} 1",
            "traqq_request_duration_seconds_count{command=\"record\"} 2",
            "traqq_request_duration_seconds_bucket{le=\"0.00005\",command=\"record\"} 1",
            "traqq_store_duration_seconds_count{operation=\"read\"} 1",
            "# TYPE traqq_request_duration_seconds histogram",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text
            .lines()
            .any(|l| l.starts_with("traqq_process_resident_memory_bytes ")));
        assert!(!m.render_prometheus(store.as_ref()).contains("# EOF"));
        assert_eq!(m.requests(Command::Record, Status::Ok), 2);
    }
}
