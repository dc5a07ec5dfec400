//! Redis Cluster failover under load: a local cluster of 3 masters with one replica each (6
//! nodes on loopback, started here); the master holding the recorded metric is killed with
//! SIGKILL while a writer records, its replica is promoted (`cluster-node-timeout` 1 s), the
//! killed node comes back as the new master's replica, and the same `RedisStorage` — never
//! restarted — keeps recording. With `redis_replicas_ack = 1` every acknowledged event is in the
//! final count; without it, what the failover lost is measured and printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use traqq_redis::keys::slot;
use traqq_redis::testing::{create_cluster, free_cluster_port, OwnServer};
use traqq_redis::{RedisConfig, RedisStorage};
use traqq_storage::prelude::*;

const DAY0: i64 = 1_764_288_000;
const PER_BATCH: u64 = 20;

/// The port of the master serving `slot`, from `CLUSTER NODES` as `node` sees it.
fn master_of(node: &OwnServer, wanted: u16) -> Option<u16> {
    let mut c = redis::Client::open(node.url()).ok()?.get_connection().ok()?;
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c).ok()?;
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = fields.get(2)?;
        if !flags.contains("master") || flags.contains("fail") {
            return None;
        }
        let port: u16 = fields
            .get(1)?
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        let serves = fields.iter().skip(8).any(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&wanted))
        });
        serves.then_some(port)
    })
}

struct Outcome {
    acknowledged: u64,
    attempted: u64,
    counted: i64,
    acknowledged_after_failover: u64,
}

fn failover_while_recording(replicas_ack: u32) -> Option<Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for _ in 0..6 {
        nodes.push(OwnServer::cluster_node(free_cluster_port()?, dir.path(), 1_000)?);
    }
    create_cluster(&nodes, 1);
    let urls: Vec<String> = nodes.iter().map(OwnServer::url).collect();
    let storage = RedisStorage::connect(RedisConfig {
        replicas_ack,
        replicas_ack_timeout_ms: 500,
        ..RedisConfig::cluster(urls)
    })
    .unwrap();
    let prefix = format!("fo{}", std::process::id());
    let config = TraqqConfig {
        mapping: MappingConfig {
            add: vec!["event".into()],
            ..MappingConfig::default()
        },
        ..TraqqConfig::default()
    };
    let traqq = Arc::new(Traqq::new(config, storage, &prefix).unwrap());
    let victim_slot = slot(format!("{{{prefix}:add:event}}:d:{DAY0}").as_bytes());

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let attempted = Arc::new(AtomicU64::new(0));
    let writer = {
        let (traqq, stop, acknowledged, attempted) = (
            traqq.clone(),
            stop.clone(),
            acknowledged.clone(),
            attempted.clone(),
        );
        std::thread::spawn(move || {
            let line = format!(r#"{{"event":"e","ts":{}}}"#, DAY0 + 60);
            let lines: Vec<&str> = (0..PER_BATCH).map(|_| line.as_str()).collect();
            while !stop.load(Ordering::Relaxed) {
                attempted.fetch_add(PER_BATCH, Ordering::Relaxed);
                match traqq.record_json_lines(lines.iter().copied()) {
                    Ok(outcome) => {
                        assert_eq!(outcome.recorded as u64, PER_BATCH);
                        acknowledged.fetch_add(PER_BATCH, Ordering::Relaxed);
                    }
                    // Not acknowledged: the client would retry (with ids, exactly once).
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    std::thread::sleep(Duration::from_millis(1_500));
    let victim_port = master_of(&nodes[0], victim_slot).expect("a master serves the metric's slot");
    let victim = nodes.iter().position(|n| n.port == victim_port).unwrap();
    let before = acknowledged.load(Ordering::Relaxed);
    assert!(before > 0, "nothing was recorded before the failover");
    nodes[victim].kill();
    let other = nodes.iter().position(|n| n.port != victim_port).unwrap();
    let started = Instant::now();
    let promoted = loop {
        match master_of(&nodes[other], victim_slot) {
            Some(port) if port != victim_port => break port,
            _ if started.elapsed() > Duration::from_secs(30) => panic!("no replica was promoted within 30 s"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    // The killed node comes back (same identity) as the new master's replica.
    nodes[victim] = OwnServer::cluster_node(victim_port, dir.path(), 1_000)?;
    while !nodes[victim].cluster_ready() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the old master did not rejoin"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let at_rejoin = acknowledged.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(2_000));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!(
        "failover: slot {victim_slot} moved from port {victim_port} to {promoted} in {:?}",
        started.elapsed()
    );

    let result = traqq.query(DAY0, DAY0).unwrap();
    let counted = match result.find_str("add/event").first().map(|r| &r.result) {
        Some(MetricData::Hash(h)) => h.get("e").copied().unwrap_or(0),
        other => panic!("{other:?}"),
    };
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    Some(Outcome {
        acknowledged,
        attempted: attempted.load(Ordering::Relaxed),
        counted,
        acknowledged_after_failover: acknowledged - at_rejoin,
    })
}

#[test]
fn with_replicas_ack_no_acknowledged_event_is_lost_in_a_failover() {
    let Some(out) = failover_while_recording(1) else {
        return;
    };
    eprintln!(
        "redis_replicas_ack = 1: acknowledged {}, counted {}, attempted {}",
        out.acknowledged, out.counted, out.attempted
    );
    assert!(
        out.acknowledged_after_failover > 0,
        "recording did not resume after the failover"
    );
    assert!(
        out.counted >= out.acknowledged as i64,
        "acknowledged {} events, only {} counted: acknowledged events were lost",
        out.acknowledged,
        out.counted
    );
    assert!(out.counted <= out.attempted as i64, "counted more than was sent");
}

#[test]
fn without_replicas_ack_a_failover_may_lose_acknowledged_events_and_says_how_many() {
    let Some(out) = failover_while_recording(0) else {
        return;
    };
    let lost = (out.acknowledged as i64 - out.counted).max(0);
    eprintln!(
        "redis_replicas_ack = 0: acknowledged {}, counted {}, lost {lost} acknowledged events, attempted {}",
        out.acknowledged, out.counted, out.attempted
    );
    assert!(
        out.acknowledged_after_failover > 0,
        "recording did not resume after the failover"
    );
    assert!(out.counted <= out.attempted as i64, "counted more than was sent");
}
