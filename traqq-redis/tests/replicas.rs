//! `[storage] redis_replicas_ack`: a batch is acknowledged only once that many replicas hold it
//! (`WAIT` after each script call). Against a real master and replica started here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use traqq_core::batch::{Batch, Number};
use traqq_core::bucket::BucketKind;
use traqq_redis::testing::{free_port, OwnServer};
use traqq_redis::{RedisConfig, RedisStorage};
use traqq_storage::Storage;

const DAY: (BucketKind, i64) = (BucketKind::Day, 1_764_201_600);

fn pair() -> Option<(OwnServer, OwnServer)> {
    let master = OwnServer::ephemeral(free_port()?)?;
    let replica = OwnServer::replica_of(free_port()?, &master)?;
    Some((master, replica))
}

fn acked(master: &OwnServer, replicas: u32, timeout_ms: u64) -> RedisStorage {
    RedisStorage::connect(RedisConfig {
        replicas_ack: replicas,
        replicas_ack_timeout_ms: timeout_ms,
        ..RedisConfig::single(master.url())
    })
    .unwrap()
}

fn count_on(server: &OwnServer, key: &str) -> Option<i64> {
    let mut c = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("HGET").arg(key).arg("n").query(&mut c).unwrap()
}

fn signal(server: &OwnServer, sig: &str) {
    let pid = server.pid().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

#[test]
fn an_acknowledged_batch_is_already_on_the_replica() {
    let Some((master, replica)) = pair() else {
        return;
    };
    let store = acked(&master, 1, 10_000);
    let key = format!("rep:add:d:{}:event", DAY.1);
    let one = || {
        let mut batch = Batch::new();
        batch.incr(&key, DAY, "n", Number::Int(1));
        batch
    };
    for i in 1..=20 {
        store.apply(&one()).unwrap();
        assert_eq!(count_on(&replica, &key), Some(i), "after batch {i}");
    }
    // With the replica stopped, the batch is not acknowledged: it waits for the replica...
    signal(&replica, "-STOP");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| tx.send(store.apply(&one())).unwrap());
        let early = rx.recv_timeout(std::time::Duration::from_millis(500));
        assert!(
            early.is_err(),
            "acknowledged while the replica was stopped: {early:?}"
        );
        // ...and is acknowledged once the replica has it.
        signal(&replica, "-CONT");
        rx.recv().unwrap().unwrap();
    });
    assert_eq!(count_on(&replica, &key), Some(21));
    // Without the setting the same stopped replica does not hold a batch up.
    signal(&replica, "-STOP");
    RedisStorage::connect(RedisConfig::single(master.url()))
        .unwrap()
        .apply(&one())
        .unwrap();
    signal(&replica, "-CONT");
}

#[test]
fn fewer_replicas_than_asked_fail_the_batch_naming_the_setting() {
    let Some((master, _replica)) = pair() else {
        return;
    };
    let store = acked(&master, 2, 200);
    let key = format!("rep2:add:d:{}:event", DAY.1);
    let mut batch = Batch::new();
    batch.incr(&key, DAY, "n", Number::Int(1));
    let err = store.apply(&batch).unwrap_err().to_string();
    assert!(
        err.contains("only 1 of redis_replicas_ack = 2") && err.contains("timeout_ms = 200"),
        "{err}"
    );
    // The master has it: the error says so rather than pretending nothing happened.
    assert_eq!(count_on(&master, &key), Some(1));
    assert!(err.contains("is on the master"), "{err}");
}

#[test]
fn zero_replicas_is_refused_without_a_timeout() {
    let config = RedisConfig {
        replicas_ack: 1,
        replicas_ack_timeout_ms: 0,
        ..RedisConfig::single("redis://127.0.0.1:1/")
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("redis_replicas_ack_timeout_ms"), "{err}");
}
