//! Crash safety: a child process recording batches is killed with SIGKILL; every
//! acknowledged batch survives whole, none survives in part.

use super::*;

/// The environment variable that makes [`crash_child`] run: `path|sync` of its store.
pub const CRASH_CHILD_ENV: &str = "TRAQQ_CRASH_CHILD";
const PER_BATCH: usize = 200;

/// Batch `i`: PER_BATCH events named `b{i}`.
fn batch(i: u64) -> Vec<String> {
    events(&format!("b{i}"), i, PER_BATCH)
}

/// The child of the crash scenario: records batches forever into the store [`CRASH_CHILD_ENV`]
/// names, printing `ack N` after `record_json_lines` returns. A no-op when the variable is not
/// set, so the `#[test]` calling it passes in a normal test run.
pub fn crash_child(open: &Open) {
    let Ok(spec) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let (path, sync) = spec.split_once('|').unwrap();
    let traqq = engine(open(Path::new(path), sync.parse().unwrap()).unwrap());
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let lines = batch(i);
        let outcome = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
        assert_eq!(outcome.recorded, PER_BATCH);
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

/// Runs this test binary's test `child_test` (which calls [`crash_child`]) against `path`,
/// kills it after `acks` acknowledgements, and returns the highest acknowledged batch.
fn record_and_kill(path: &Path, sync: Durability, acks: u64, child_test: &str) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([child_test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, format!("{}|{sync}", path.display()))
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
    let acked = record_and_kill(&path, sync, 150, child_test);
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
