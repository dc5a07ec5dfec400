//! Redis goes away and comes back: calls fail promptly with `Error::Unavailable`, and the same
//! store records again once the server is back, without double counting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use traqq_redis::{RedisConfig, RedisStorage};
use traqq_storage::prelude::*;
use traqq_storage::{BufferConfig, BufferedStorage};

const DAY: (BucketKind, i64) = (BucketKind::Day, 1_700_006_400);

/// A Redis server of this test's own (which it may stop and restart on the same port and
/// files), or `None` where the suite's servers are missing (the CI guard: without them this
/// machine has no Redis either).
fn own_server() -> Option<(tempfile::TempDir, u16, common::OwnServer)> {
    common::single_url()?;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let server = common::OwnServer::durable(port, dir.path(), &[])?;
    Some((dir, port, server))
}

/// A store on `server` that gives up on a call after `response_timeout_ms`.
fn store(server: &common::OwnServer, response_timeout_ms: u64) -> RedisStorage {
    let mut config = RedisConfig::single(server.url());
    config.connect_timeout_ms = 500;
    config.response_timeout_ms = response_timeout_ms;
    RedisStorage::connect(config).unwrap()
}

/// `store` behind a write buffer that writes only when flushed (an hour's delay).
fn buffered(store: RedisStorage) -> BufferedStorage<RedisStorage> {
    BufferedStorage::new(
        store,
        BufferConfig {
            max_delay: Duration::from_secs(3600),
            max_ops: 1_000_000,
        },
    )
}

#[test]
fn outage_gives_unavailable_then_recording_resumes() {
    let Some((dir, port, mut server)) = own_server() else {
        return;
    };
    let storage = store(&server, 1_000);

    let key = "outage:add:d:1700006400:event";
    let one = {
        let mut b = Batch::new();
        b.incr(key, DAY, "n", Number::Int(1));
        b
    };
    let value = |s: &RedisStorage| s.read_hash(key).map(|h| h.first().map_or(0, |(_, n)| n.as_i64()));
    for _ in 0..3 {
        storage.apply(&one).unwrap();
    }
    assert_eq!(value(&storage).unwrap(), 3);

    server.kill();
    for _ in 0..3 {
        let start = Instant::now();
        let err = storage.apply(&one).unwrap_err();
        // A hang check, not a speed target: the bound is far above the configured timeouts.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
        assert!(err.is_unavailable(), "{err}");
        let err = value(&storage).unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }

    // Same port, same append-only file: the data from before the crash is back.
    let _server = common::OwnServer::durable(port, dir.path(), &[]).unwrap();
    let mut applied = 0;
    let mut failed = 0;
    let start = Instant::now();
    while applied < 5 && start.elapsed() < Duration::from_secs(20) {
        match storage.apply(&one) {
            Ok(()) => applied += 1,
            Err(e) => {
                // The first calls may still meet the old, broken connection.
                assert!(e.is_unavailable(), "{e}");
                failed += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    assert_eq!(applied, 5, "recording did not resume ({failed} failures)");
    // Each acknowledged batch counted exactly once; the failed ones not at all.
    assert_eq!(value(&storage).unwrap(), 3 + 5);
}

#[test]
fn password_and_database_from_the_url() {
    if common::single_url().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let Some(_server) = common::OwnServer::durable(port, dir.path(), &["--requirepass", "s3cret-pw"]) else {
        return;
    };
    let key = "pw:add:d:1700006400:event";
    let mut b = Batch::new();
    b.incr(key, DAY, "n", Number::Int(7));

    let storage = RedisStorage::connect(RedisConfig::single(format!(
        "redis://:s3cret-pw@127.0.0.1:{port}/3"
    )))
    .unwrap();
    storage.apply(&b).unwrap();
    // Database 3 holds it, database 0 does not.
    let mut plain = redis::Client::open(format!("redis://:s3cret-pw@127.0.0.1:{port}/3"))
        .unwrap()
        .get_connection()
        .unwrap();
    let n: i64 = redis::cmd("HGET").arg(key).arg("n").query(&mut plain).unwrap();
    assert_eq!(n, 7);
    redis::cmd("SELECT").arg(0).query::<()>(&mut plain).unwrap();
    let exists: bool = redis::cmd("EXISTS").arg(key).query(&mut plain).unwrap();
    assert!(!exists);

    // A wrong password fails at connect time, and the message does not show it.
    let e = RedisStorage::connect(RedisConfig::single(format!(
        "redis://:wrong-pw@127.0.0.1:{port}/3"
    )))
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, traqq_storage::Error::Open { .. }), "{msg}");
    assert!(!msg.contains("wrong-pw") && msg.contains("***"), "{msg}");
}

#[test]
fn a_write_buffer_keeps_its_operations_across_an_outage_and_writes_them_once() {
    let Some((dir, port, mut server)) = own_server() else {
        return;
    };
    let buffered = buffered(store(&server, 1_000));
    let key = "bufout:add:d:1700006400:event";
    let one = {
        let mut b = Batch::new();
        b.incr(key, DAY, "n", Number::Int(1));
        b
    };
    let stored = |s: &RedisStorage| s.read_hash(key).map(|h| h.first().map_or(0, |(_, n)| n.as_i64()));
    for _ in 0..3 {
        buffered.apply(&one).unwrap();
    }
    buffered.flush().unwrap();
    assert_eq!(stored(buffered.inner()).unwrap(), 3);

    server.kill();
    // Accepted into the buffer while Redis is down.
    for _ in 0..4 {
        buffered.apply(&one).unwrap();
    }
    let err = buffered.flush().unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("kept in the buffer"), "{err}");
    assert_eq!(
        buffered.pending_ops(),
        1,
        "the failed write's operations wait for the next one"
    );
    buffered.apply(&one).unwrap();

    let _server = common::OwnServer::durable(port, dir.path(), &[]).unwrap();
    let start = Instant::now();
    let mut failures = 0;
    while let Err(e) = buffered.flush() {
        // The first attempts may still meet the old, broken connection.
        assert!(e.is_unavailable(), "{e}");
        assert!(start.elapsed() < Duration::from_secs(20), "never recovered: {e}");
        failures += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // 3 before, 4 during the outage, 1 after: each counted once (a refused connection means
    // the failed writes never ran).
    assert_eq!(
        stored(buffered.inner()).unwrap(),
        3 + 4 + 1,
        "after {failures} failed flushes"
    );
    assert_eq!(buffered.pending_ops(), 0);
}

#[test]
fn a_write_buffer_retrying_a_timed_out_write_that_redis_did_apply_counts_it_once() {
    let Some((_dir, _port, server)) = own_server() else {
        return;
    };
    let buffered = buffered(store(&server, 300));
    // A first write loads the batch script into this fresh server.
    let mut warm = Batch::new();
    warm.incr("buftimeout:add:d:1700006400:warm", DAY, "n", Number::Int(1));
    buffered.apply(&warm).unwrap();
    buffered.flush().unwrap();
    let key = "buftimeout:add:d:1700006400:event";
    let mut one = Batch::new();
    one.incr(key, DAY, "n", Number::Int(1));
    buffered.apply(&one).unwrap();

    // Another client keeps Redis busy for a second: the buffer's write waits in Redis's queue,
    // the client gives up after 300 ms, and Redis runs the write afterwards anyway.
    let url = server.url();
    let busy = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd("EVAL")
            .arg("local t = redis.call('TIME'); local stop = t[1] * 1000000 + t[2] + 1000000; repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop; return 1")
            .arg(0)
            .query::<i64>(&mut c)
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let err = buffered.flush().unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    busy.join().unwrap();

    let mut plain = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let start = Instant::now();
    loop {
        let n: Option<i64> = redis::cmd("HGET").arg(key).arg("n").query(&mut plain).unwrap();
        if n == Some(1) {
            break; // Redis did apply the write whose reply the client never saw.
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the queued write never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The retry carries the same id: Redis skips it.
    let start = Instant::now();
    while let Err(e) = buffered.flush() {
        assert!(e.is_unavailable(), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10), "never recovered: {e}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(buffered.pending_ops(), 0);
    let n: i64 = redis::cmd("HGET").arg(key).arg("n").query(&mut plain).unwrap();
    assert_eq!(n, 1, "the retried write was counted twice");
}
