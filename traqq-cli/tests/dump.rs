//! `traqq export` and `traqq restore` as a user runs them: a round trip through every pair of
//! persistent backends (RocksDB, sled, Redis, Redis Cluster), sketches included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{query_json, redis_url, text, traqq, unique_prefix};
use traqq_storage::conformance::dumps::same_dumps;

const DAY: i64 = 1_699_920_000; // 2023-11-14 00:00 UTC

/// 900 events over three days: counters, sums (whole quarters, so every backend adds them
/// exactly), a distribution, a leaderboard and unique ips.
fn events_file(dir: &Path) -> String {
    let lines: String = (0..900)
        .map(|i| {
            let ts = DAY + (i % 3) * 86_400 + (i * 97) % 86_400;
            let event = ["view", "view", "click", "buy"][i as usize % 4];
            let geo = ["US", "DE", "FR", "BR", "JP"][(i as usize / 3) % 5];
            let amount = (i % 40) as f64 * 1.25;
            format!(
                "{{\"event\":\"{event}\",\"ip\":\"10.0.{}.{}\",\"geo\":\"{geo}\",\"amount\":{amount},\"ts\":{ts}}}\n",
                i % 50,
                i % 7
            )
        })
        .collect();
    let path = dir.join("events.ndjson");
    std::fs::write(&path, lines).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A config file for `store` (the `[storage]` lines) under `prefix`.
fn config(dir: &Path, name: &str, prefix: &str, store: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "prefix = \"{prefix}\"\n[time]\nstore_hourly = true\n[mapping]\nbitmap = [\"ip\"]\n\
             add = [\"event\", \"event~geo\"]\nadd_value = [{{ key = \"event\", add_key = \"amount\" }}]\n\
             top = [\"geo\"]\ndistribution = [{{ key = \"event\", value_key = \"amount\" }}]\n[storage]\n{store}"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// The `[storage]` lines of the local Redis Cluster (`TRAQQ_REDIS_CLUSTER_URLS`), if there is one.
fn cluster_store() -> Option<String> {
    let urls = std::env::var("TRAQQ_REDIS_CLUSTER_URLS").ok()?;
    let list: Vec<String> = urls.split(',').map(|u| format!("\"{}\"", u.trim())).collect();
    Some(format!(
        "backend = \"redis\"\ncluster_urls = [{}]\n",
        list.join(", ")
    ))
}

fn embedded(dir: &Path, backend: &str, name: &str) -> String {
    let data = dir.join(name);
    config(
        dir,
        &format!("{name}.toml"),
        "traqq",
        &format!("backend = \"{backend}\"\npath = \"{}\"\n", data.display()),
    )
}

fn ok(args: &[&str]) -> String {
    let out = traqq(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn export(config: &str) -> String {
    ok(&["export", "--config", config])
}

fn restore(config: &str, dump: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["restore", dump, "--config", config];
    args.extend_from_slice(extra);
    traqq(&args)
}

fn save(dir: &Path, name: &str, dump: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, dump).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `traqq import` into the store of `config` (`backend`: the local store, not a server).
fn import(events: &str, config: &str, backend: &str) {
    ok(&["import", events, "--config", config, "--storage", backend]);
}

fn unique_ips(config: &str, backend: &str) -> Value {
    query_json(&[
        "find",
        "bmp/ip",
        "--config",
        config,
        "--storage",
        backend,
        "--from",
        "2023-11-14",
        "--to",
        "2023-11-16",
        "--merge",
    ])[0]["result"]
        .clone()
}

use serde_json::Value;

#[test]
fn dumps_round_trip_through_rocksdb_and_sled() {
    let dir = tempfile::tempdir().unwrap();
    let events = events_file(dir.path());
    let (a, b, c) = (
        embedded(dir.path(), "rocksdb", "a"),
        embedded(dir.path(), "sled", "b"),
        embedded(dir.path(), "rocksdb", "c"),
    );
    import(&events, &a, "rocksdb");
    let out = traqq(&["export", "--config", &a]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dump = text(&out.stdout);
    let said = text(&out.stderr);
    assert!(
        said.starts_with("exported ") && said.contains("rocksdb at"),
        "{said}"
    );
    assert!(
        dump.lines().count() > 100 && dump.contains("\"sketch\":"),
        "{dump:.300}"
    );

    // RocksDB -> sled -> RocksDB: each store exports the very same dump.
    let out = restore(&b, &save(dir.path(), "a.dump", &dump), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("restored ") && said.contains("sled at"),
        "{said}"
    );
    let from_b = export(&b);
    assert_eq!(from_b, dump, "sled holds what RocksDB held");
    let out = restore(&c, &save(dir.path(), "b.dump", &from_b), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(export(&c), dump, "and back in RocksDB");
    assert_eq!(
        unique_ips(&c, "rocksdb"),
        unique_ips(&a, "rocksdb"),
        "unique counts read the same"
    );
    let counted = unique_ips(&a, "rocksdb")["Count"].as_u64().unwrap();
    assert!((340..=360).contains(&counted), "350 distinct ips: {counted}");

    // A store that holds data is not restored into (counters would double).
    let out = restore(&c, &save(dir.path(), "again.dump", &dump), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already holds"),
        "{}",
        text(&out.stderr)
    );

    // --output, and a range of days.
    let file = dir.path().join("day.dump");
    ok(&[
        "export",
        "--config",
        &a,
        "--from",
        "2023-11-15",
        "--to",
        "2023-11-15",
        "-o",
        file.to_str().unwrap(),
    ]);
    let day = std::fs::read_to_string(&file).unwrap();
    assert!(day.lines().count() > 10);
    for line in day.lines().skip(1) {
        let start = serde_json::from_str::<Value>(line).unwrap()["start"]
            .as_i64()
            .unwrap();
        assert!((DAY + 86_400..DAY + 2 * 86_400).contains(&start), "{line}");
    }

    // `-o -` is stdout; a dump that cannot be written all the way (a full disk) is a failure,
    // not a short backup reported as done.
    assert_eq!(ok(&["export", "--config", &a, "-o", "-"]), dump);
    assert!(!Path::new("-").exists(), "export -o - wrote a file named -");
    if Path::new("/dev/full").exists() {
        let out = traqq(&["export", "--config", &a, "-o", "/dev/full"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("dump"), "{}", text(&out.stderr));
    }

    // A damaged dump names its line; a missing file names the file.
    let broken = dump.replacen("\"hash\":{", "\"hash\":[", 1);
    let line = dump.lines().position(|l| l.contains("\"hash\":{")).unwrap() + 1;
    let d = embedded(dir.path(), "sled", "d");
    let out = restore(&d, &save(dir.path(), "broken.dump", &broken), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("dump line {line}:")),
        "{}",
        text(&out.stderr)
    );
    let out = restore(&d, "/nonexistent/x.dump", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/x.dump"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dumps_round_trip_through_redis_and_redis_cluster_and_to_and_from_embedded_stores() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let events = events_file(dir.path());
    let single = |tag: &str| {
        let prefix = unique_prefix(tag);
        let file = config(
            dir.path(),
            &format!("{prefix}.toml"),
            &prefix,
            &format!("backend = \"redis\"\nurl = \"{url}\"\n"),
        );
        (prefix, file)
    };
    let (p1, r1) = single("dumpa");
    import(&events, &r1, "redis");
    let dump = export(&r1);
    assert!(dump.contains("\"sketches\":\"redis\""), "{:.200}", dump);

    // Redis -> Redis Cluster -> Redis, each under its own prefix: the same dump each time.
    let mut hops = Vec::new();
    if let Some(store) = cluster_store() {
        let prefix = unique_prefix("dumpcluster");
        hops.push((
            prefix.clone(),
            config(dir.path(), "cluster.toml", &prefix, &store),
        ));
    }
    hops.push(single("dumpb"));
    let mut previous = (p1.clone(), dump.clone());
    for (prefix, file) in &hops {
        let out = restore(
            file,
            &save(dir.path(), &format!("{prefix}.dump"), &previous.1),
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let got = export(file);
        assert_eq!(
            got,
            dump.replace(&p1, prefix),
            "{prefix} holds what the first Redis held"
        );
        previous = (prefix.clone(), got);
    }

    // Into an embedded store (a new one keeps Redis's sketch family): everything arrives,
    // sketches register for register, and the unique counts are Redis's exactly.
    let sled = embedded(dir.path(), "sled", "from-redis");
    let out = restore(&sled, &save(dir.path(), "redis.dump", &dump), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let in_sled = export(&sled).replace("traqq:", &format!("{p1}:"));
    same_dumps(&in_sled, &dump, "Redis -> sled");
    assert_eq!(
        unique_ips(&sled, "sled"),
        unique_ips(&r1, "redis"),
        "Redis -> sled"
    );

    // The same events imported into RocksDB store the same numbers and the same sketches as
    // in Redis (the same hash puts each value in the same register); its dump goes into Redis
    // whole.
    let rocks = embedded(dir.path(), "rocksdb", "to-redis");
    import(&events, &rocks, "rocksdb");
    let rocks_dump = export(&rocks);
    same_dumps(
        &rocks_dump.replace("traqq:", &format!("{p1}:")),
        &dump,
        "RocksDB and Redis",
    );
    assert_eq!(
        unique_ips(&rocks, "rocksdb"),
        unique_ips(&r1, "redis"),
        "RocksDB and Redis"
    );
    let (p4, r4) = single("dumpc");
    let out = restore(&r4, &save(dir.path(), "rocks.dump", &rocks_dump), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    same_dumps(
        &export(&r4),
        &rocks_dump.replace("traqq:", &format!("{p4}:")),
        "RocksDB -> Redis",
    );
    assert_eq!(
        unique_ips(&r4, "redis"),
        unique_ips(&rocks, "rocksdb"),
        "RocksDB -> Redis"
    );
}

/// 300 events of the last minute, each with its own `id`: what exactly-once ingest claims.
fn recent_events_with_ids(dir: &Path) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lines: String = (0..300)
        .map(|i| {
            format!(
                "{{\"id\":\"order-{i}\",\"event\":\"buy\",\"ip\":\"10.1.0.{}\",\"geo\":\"US\",\"amount\":1.5,\"ts\":{}}}\n",
                i % 200,
                now - 60
            )
        })
        .collect();
    let path = dir.join("recent.ndjson");
    std::fs::write(&path, lines).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Sets `[event] id_field = "id"` in the config file `config`.
fn with_ids(config: &str) -> &str {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str("[event]\nid_field = \"id\"\n");
    std::fs::write(config, text).unwrap();
    config
}

/// Exports the source (its events imported with ids), restores into the target, and checks
/// that the target takes the same file again as duplicates only; a target without
/// `id_field` is told the ids were left out.
fn ids_move(dir: &Path, events: &str, from: (&str, &str), to: (&str, &str), plain: &str) {
    ok(&["import", events, "--config", from.0, "--storage", from.1]);
    let out = traqq(&["export", "--config", from.0]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exported 300 event ids of 1 days"),
        "{}",
        text(&out.stderr)
    );
    let dump = save(dir, &format!("ids-{}.dump", to.1), &text(&out.stdout));
    let said = ok(&["restore", &dump, "--config", to.0]);
    assert!(said.contains("claimed 300 event ids of 1 days"), "{said}");
    let again = ok(&["import", events, "--config", to.0, "--storage", to.1]);
    assert!(
        again.contains("imported 0 events") && again.contains("skipped 300 duplicates"),
        "{again}"
    );
    let said = ok(&["restore", &dump, "--config", plain]);
    assert!(said.contains("left out 1 days of event ids"), "{said}");
}

#[test]
fn event_ids_move_with_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let events = recent_events_with_ids(dir.path());
    let rocks = embedded(dir.path(), "rocksdb", "ids-rocks");
    let sled = embedded(dir.path(), "sled", "ids-sled");
    let plain = embedded(dir.path(), "sled", "ids-plain");
    ids_move(
        dir.path(),
        &events,
        (with_ids(&rocks), "rocksdb"),
        (with_ids(&sled), "sled"),
        &plain,
    );

    let Some(url) = redis_url() else { return };
    let redis = |tag: &str, store: String| {
        let prefix = unique_prefix(tag);
        config(dir.path(), &format!("{prefix}.toml"), &prefix, &store)
    };
    let single = redis("idsa", format!("backend = \"redis\"\nurl = \"{url}\"\n"));
    let target = match cluster_store() {
        Some(store) => redis("idscluster", store),
        None => redis("idsb", format!("backend = \"redis\"\nurl = \"{url}\"\n")),
    };
    let plain = redis("idsplain", format!("backend = \"redis\"\nurl = \"{url}\"\n"));
    ids_move(
        dir.path(),
        &events,
        (with_ids(&single), "redis"),
        (with_ids(&target), "redis"),
        &plain,
    );
}
