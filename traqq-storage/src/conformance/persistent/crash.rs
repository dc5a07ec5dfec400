//! Crash safety: a child process recording batches is killed with SIGKILL; every
//! acknowledged batch survives whole, none survives in part.

use super::*;

/// The environment variable that makes [`crash_child`] run: `path|sync` of its store, and
/// `|ids` to record events with ids.
pub const CRASH_CHILD_ENV: &str = "TRAQQ_CRASH_CHILD";
const PER_BATCH: usize = 200;

/// Batch `i`: PER_BATCH events named `b{i}`; with `ids`, event `j` carries the id `b{i}-{j}`.
fn batch(i: u64, ids: bool) -> Vec<String> {
    let lines = events(&format!("b{i}"), i, PER_BATCH);
    if !ids {
        return lines;
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(j, l)| l.replacen("{\"event\":", &format!("{{\"id\":\"b{i}-{j}\",\"event\":"), 1))
        .collect()
}

/// The engine of the scenarios over the store at `path`: with `ids`, `[event] id_field = "id"`,
/// remembering every day the events fall on, under a prefix named after `path`'s directory (so
/// a store shared between runs, a Redis server, sees each run's keys apart).
fn crash_engine(store: Box<dyn Storage>, ids: bool, path: &Path) -> Traqq {
    if !ids {
        return engine(store);
    }
    let mut config = config();
    config.event.id_field = Some("id".into());
    // The real clock (a store may expire id sets by it, as Redis does), remembering the
    // scenario's days, years back, as it accepts them.
    config.event.dedup_days = config.event.max_past_days;
    let run: String = path
        .parent()
        .and_then(Path::file_name)
        .map(|n| {
            n.to_string_lossy()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect()
        })
        .unwrap_or_default();
    Traqq::new(config, store, &format!("app{run}")).unwrap()
}

/// The child of the crash scenario: records batches forever into the store [`CRASH_CHILD_ENV`]
/// names, querying after every tenth, printing `ack N` after `record_json_lines` returns. A no-op when the variable is not
/// set, so the `#[test]` calling it passes in a normal test run.
pub fn crash_child(open: &Open) {
    let Ok(spec) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (path, sync) = (parts.next().unwrap(), parts.next().unwrap());
    let ids = parts.next() == Some("ids");
    let traqq = crash_engine(
        open(Path::new(path), sync.parse().unwrap()).unwrap(),
        ids,
        Path::new(path),
    );
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let lines = batch(i, ids);
        let outcome = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
        assert_eq!(outcome.recorded, PER_BATCH);
        // Reads between writes too: a store may write what a read folded (RocksDB does), and
        // that must neither lose nor double a batch when the process dies.
        if i % 10 == 9 {
            traqq.query(NOW - 3 * 86_400, NOW).unwrap();
        }
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

/// Runs this test binary's test `child_test` (which calls [`crash_child`]) against `path`,
/// kills it after `acks` acknowledgements, and returns the highest acknowledged batch.
fn record_and_kill(path: &Path, sync: Durability, acks: u64, child_test: &str, ids: bool) -> u64 {
    let spec = format!("{}|{sync}{}", path.display(), if ids { "|ids" } else { "" });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([child_test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last = None;
    for line in lines.by_ref() {
        if let Some(n) = line.unwrap().strip_prefix("ack ") {
            last = Some(n.parse::<u64>().unwrap());
            if last >= Some(acks) {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
                           // Acknowledgements already in the pipe count too.
    for line in lines {
        if let Some(n) = line.unwrap().strip_prefix("ack ") {
            last = Some(n.parse::<u64>().unwrap());
        }
    }
    child.wait().unwrap();
    last.expect("the child acknowledged batches")
}

fn hash_of(result: &QueryResult, path: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for m in result.find_str(path) {
        if let MetricData::Hash(h) = &m.result {
            for (k, v) in h {
                *out.entry(k.clone()).or_insert(0) += v;
            }
        }
    }
    out
}

/// A child process (this test binary running only the test named `child_test`, which must
/// call [`crash_child`] with the same `open`) records batches of 200 events in durability mode
/// `sync`, acknowledging each; it is killed with SIGKILL after 150 acknowledgements. After
/// reopening, every acknowledged batch is fully present and no batch is partially present, in
/// the daily, hourly and `event~geo` keys alike.
pub fn sigkill_loses_no_acknowledged_batch_and_splits_none(open: &Open, sync: Durability, child_test: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let acked = record_and_kill(&path, sync, 150, child_test, false);
    let traqq = engine(open(&path, Durability::Batch).unwrap());
    let daily = traqq.query(NOW - 3 * 86_400, NOW).unwrap();
    let hourly = traqq.query_hourly(NOW - 3 * 86_400, NOW - 1).unwrap();
    let per_event = hash_of(&daily, "add/event");
    let per_event_hourly = hash_of(&hourly, "add/event");
    let mut per_event_geo: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v) in hash_of(&daily, "add/event~geo") {
        *per_event_geo
            .entry(k.split('~').next().unwrap().to_owned())
            .or_insert(0) += v;
    }
    for i in 0..=acked {
        assert_eq!(
            per_event.get(&format!("b{i}")),
            Some(&(PER_BATCH as i64)),
            "acked batch {i} of {acked}"
        );
    }
    // Every batch present (acked or not) is whole, in every key it wrote.
    for (name, n) in &per_event {
        assert_eq!(*n, PER_BATCH as i64, "batch {name} is partial");
        assert_eq!(
            per_event_hourly.get(name),
            Some(n),
            "batch {name}: hourly buckets"
        );
        assert_eq!(per_event_geo.get(name), Some(n), "batch {name}: event~geo");
    }
    assert_eq!(per_event_hourly.len(), per_event.len());
    assert_eq!(per_event_geo.len(), per_event.len());
}

/// Exactly-once across a crash (`[event] id_field`): the child records batches of events with
/// ids and is killed with SIGKILL (a store shared with other processes, Redis, may ignore the
/// path but must give the same store to both processes); the client then sends again every batch it sent, the
/// acknowledged ones and the one in flight. Every event is counted exactly once: an event's id
/// and its operations are stored together or not at all.
pub fn sigkill_then_a_retry_of_every_batch_counts_each_event_once(open: &Open, child_test: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let acked = record_and_kill(&path, Durability::Batch, 60, child_test, true);
    let traqq = crash_engine(open(&path, Durability::Batch).unwrap(), true, &path);
    let mut duplicates = 0;
    for i in 0..=acked + 1 {
        let lines = batch(i, true);
        let outcome = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
        assert_eq!(outcome.recorded + outcome.duplicates.len(), PER_BATCH);
        duplicates += outcome.duplicates.len();
    }
    assert!(
        duplicates >= (acked as usize + 1) * PER_BATCH,
        "every acknowledged event is a duplicate on retry: {duplicates}"
    );
    let per_event = hash_of(&traqq.query(NOW - 3 * 86_400, NOW).unwrap(), "add/event");
    for i in 0..=acked + 1 {
        assert_eq!(
            per_event.get(&format!("b{i}")),
            Some(&(PER_BATCH as i64)),
            "batch {i} (acked up to {acked})"
        );
    }
    assert_eq!(per_event.len() as u64, acked + 2, "{per_event:?}");
}
