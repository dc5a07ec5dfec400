//! Load bench: pipelined `record_batch` and `record` over loopback into the memory backend.
//!
//! `cargo run --release -p traqq-server --example load -- [CLIENTS] [BATCHES_PER_CLIENT] [RECORDS]`
//!
//! Events follow the standard workload of DESIGN §8 (deterministic from a seed). Request
//! lines are serialized before the clock starts, so the figures measure the server.
//!
//! The server runs in a child process (this program with `--serve`), so its CPU time is
//! measured apart from the clients' (`/proc/PID/stat`) and a profiler can attach to it
//! alone: on a shared machine, events per server CPU-second is the figure that does not
//! depend on the neighbours.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use traqq_server::{Client, RunningServer, ServerConfig};
use traqq_storage::prelude::*;

fn workload_config() -> TraqqConfig {
    TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: [
                "event",
                "event~offer",
                "event~offer~creative",
                "event~offer~channel",
                "event~geo",
            ]
            .map(String::from)
            .to_vec(),
            add_value: vec![AddValueConfig {
                key: "offer~event".into(),
                add_key: "amount".into(),
            }],
            top: ["geo", "offer", "geo~offer", "offer~creative", "offer~host"]
                .map(String::from)
                .to_vec(),
            distribution: Vec::new(),
        },
        ..TraqqConfig::default()
    }
}

const GEOS: [&str; 30] = [
    "US", "DE", "FR", "GB", "IT", "ES", "NL", "SE", "NO", "DK", "FI", "PL", "CZ", "AT", "CH", "BE", "IE",
    "PT", "GR", "HU", "RO", "BG", "HR", "SI", "SK", "LT", "LV", "EE", "CA", "MX",
];

fn event(rng: &mut StdRng, now: i64) -> Value {
    let name = match rng.gen_range(0..5) {
        0..=2 => "offer_impression",
        3 => "offer_click",
        _ => "offer_conversion",
    };
    let ip = rng.gen_range(0..50_000u32);
    let mut e = json!({
        "event": name,
        "ip": format!("10.{}.{}.{}", ip >> 16, (ip >> 8) & 255, ip & 255),
        "offer": format!("offer{}", rng.gen_range(0..20)),
        "creative": format!("cr{}", rng.gen_range(0..10)),
        "channel": format!("ch{}", rng.gen_range(0..5)),
        "geo": GEOS[rng.gen_range(0..GEOS.len())],
        "host": format!("host{}.example.com", rng.gen_range(0..100)),
        "ts": now - rng.gen_range(0..7 * 86_400),
        "ua": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
        "url": format!("https://shop.example.com/p/{}", rng.gen_range(0..100_000)),
        "session": format!("{:032x}", rng.gen::<u128>()),
        "ref": format!("https://ref{}.example.org/", rng.gen_range(0..1000)),
    });
    if rng.gen_bool(0.3) {
        e["amount"] = json!(rng.gen_range(1..=50_000) as f64 / 100.0);
    }
    e
}

/// CPU seconds used so far by process `pid` ("self" for this one), all its threads (user +
/// system, from /proc/PID/stat), when readable.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// CPU use of the server and of the clients over one phase.
struct Meter {
    server: String,
    started: Instant,
    server_cpu: Option<f64>,
    client_cpu: Option<f64>,
}

impl Meter {
    fn start(server: &str) -> Meter {
        Meter {
            server: server.to_owned(),
            started: Instant::now(),
            server_cpu: cpu_secs(server),
            client_cpu: cpu_secs("self"),
        }
    }

    /// `wall rate; server CPU; clients CPU; load average` for `n` units of `unit`.
    fn report(&self, n: u64, unit: &str) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let mut text = format!("{secs:.2} s = {:.0} {unit}/s", n as f64 / secs);
        if let (Some(a), Some(b)) = (self.server_cpu, cpu_secs(&self.server)) {
            let cpu = (b - a).max(0.01);
            text += &format!(
                "; server {cpu:.2} CPU-s = {:.0} {unit} per server CPU-second",
                n as f64 / cpu
            );
        }
        if let (Some(a), Some(b)) = (self.client_cpu, cpu_secs("self")) {
            text += &format!("; clients {:.2} CPU-s", b - a);
        }
        text + &format!("; load average {}", load_average())
    }
}

/// The `--serve` child: a server over the memory store on a free port; prints the port,
/// serves until its stdin closes, then stops gracefully.
fn serve() {
    let traqq = Arc::new(Traqq::new(workload_config(), MemoryStorage::new(), "bench").unwrap());
    let server = RunningServer::start(
        ServerConfig {
            tcp: "127.0.0.1:0".into(),
            http: "off".into(),
            ..ServerConfig::default()
        },
        traqq,
    )
    .unwrap();
    println!("{}", server.tcp_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest).unwrap();
    server.stop().unwrap();
}

/// Sends every line, reading replies on another thread; returns when all are answered.
fn pipeline(addr: SocketAddr, lines: Arc<Vec<String>>) -> u64 {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let reader = stream.try_clone().unwrap();
    let n = lines.len();
    let reading = std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(1 << 16, reader);
        let mut line = String::new();
        let mut recorded = 0;
        for _ in 0..n {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let reply: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(reply["success"], json!(true), "{line}");
            recorded += reply["data"]["recorded"].as_u64().unwrap_or(1);
        }
        recorded
    });
    let mut writer = std::io::BufWriter::with_capacity(1 << 16, stream);
    for l in lines.iter() {
        writer.write_all(l.as_bytes()).unwrap();
        writer.write_all(b"\n").unwrap();
    }
    writer.flush().unwrap();
    reading.join().unwrap()
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        return serve();
    }
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let clients = args.first().copied().unwrap_or(4);
    let batches = args.get(1).copied().unwrap_or(50);
    let records = args.get(2).copied().unwrap_or(200_000);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut announced = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut announced)
        .unwrap();
    let addr: SocketAddr = announced.trim().parse().unwrap();
    println!("server: pid {pid} on {addr}");

    // record_batch: N clients, each pipelining its batches of 1,000 events.
    let per_client: Vec<Arc<Vec<String>>> = (0..clients)
        .map(|c| {
            let mut rng = StdRng::seed_from_u64(42 + c as u64);
            Arc::new(
                (0..batches)
                    .map(|_| {
                        let events: Vec<Value> = (0..1000).map(|_| event(&mut rng, now)).collect();
                        json!({"cmd": "record_batch", "events": events}).to_string()
                    })
                    .collect(),
            )
        })
        .collect();
    // Baseline: the engine alone, one thread, same events, no network.
    if batches > 0 {
        let engine = Traqq::new(workload_config(), MemoryStorage::new(), "base").unwrap();
        let texts: Vec<String> = {
            let mut rng = StdRng::seed_from_u64(1);
            (0..50_000).map(|_| event(&mut rng, now).to_string()).collect()
        };
        let started = Instant::now();
        for chunk in texts.chunks(1000) {
            engine
                .record_json_lines(chunk.iter().map(String::as_str))
                .unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "baseline: engine alone, 1 thread, batches of 1,000 = {:.0} events/s",
            50_000.0 / secs
        );
        let dispatcher = traqq_server::Dispatcher::new(
            Arc::new(Traqq::new(workload_config(), MemoryStorage::new(), "base").unwrap()),
            Arc::default(),
            None,
            10_000,
        );
        let lines = &per_client[0];
        let mut session = traqq_server::Session::default();
        let started = Instant::now();
        for line in lines.iter() {
            dispatcher.handle_line(line.as_bytes(), &mut session);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "baseline: dispatch of record_batch lines, 1 thread, no network = {:.0} events/s",
            (lines.len() * 1000) as f64 / secs
        );
    }
    let mut recorded = 0;
    if batches > 0 {
        let bytes: usize = per_client.iter().flat_map(|l| l.iter()).map(String::len).sum();
        let meter = Meter::start(&pid);
        let threads: Vec<_> = per_client
            .into_iter()
            .map(|lines| std::thread::spawn(move || pipeline(addr, lines)))
            .collect();
        recorded = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(recorded, (clients * batches * 1000) as u64);
        println!(
            "record_batch: {clients} clients x {batches} batches x 1,000 events ({:.0} MB) = {recorded} events in {}",
            bytes as f64 / 1e6,
            meter.report(recorded, "events")
        );
    }

    // record: one client pipelining single-event requests.
    if records > 0 {
        let mut rng = StdRng::seed_from_u64(7);
        let lines: Arc<Vec<String>> = Arc::new(
            (0..records)
                .map(|_| json!({"cmd": "record", "event": event(&mut rng, now)}).to_string())
                .collect(),
        );
        let meter = Meter::start(&pid);
        let done = pipeline(addr, lines);
        assert_eq!(done, records as u64);
        println!(
            "record: 1 pipelining client x {records} requests in {}",
            meter.report(done, "requests")
        );
    }

    // The totals are exact: every acknowledged event is in the store.
    let mut client = Client::connect(addr).unwrap();
    let found: Vec<MetricResult> = client
        .request(&json!({"cmd":"find","days":8,"metric_type":"add","key":"event","merge":true}))
        .unwrap();
    let MetricData::Hash(counts) = &found[0].result else {
        panic!()
    };
    let total: i64 = counts.values().sum();
    assert_eq!(total as u64, recorded + records as u64);
    println!("check: the store holds {total} events, as acknowledged");
    drop(client);
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}
