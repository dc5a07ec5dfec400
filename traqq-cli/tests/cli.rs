//! The built `traqq` binary, run as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use traqq_redis::testing::OwnServer;
use traqq_server::client::http_request;

mod common;

use common::{query_json, redis_url, text, traqq, traqq_stdin, unique_prefix, BIN};

const TS: i64 = 1_700_000_000; // 2023-11-14

/// A `traqq serve` child on free ports; killed (SIGKILL) if a test fails before stopping it.
struct Serve {
    child: Child,
    tcp: String,
    http: String,
}

impl Serve {
    fn start(extra: &[&str], dir: &Path) -> Serve {
        let mut args = vec!["serve", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::spawn(&args, dir, true)
    }

    /// `serve` with exactly `args` after it, expecting only a TCP listener.
    fn start_tcp_only(args: &[&str], dir: &Path) -> Serve {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        Self::spawn(&all, dir, false)
    }

    fn spawn(args: &[&str], dir: &Path, want_http: bool) -> Serve {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env_remove("TRAQQ_CONFIG")
            // scripts/test exports it for the Redis tests; each test names its own store.
            .env_remove("TRAQQ_REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut tcp, mut http) = (None, if want_http { None } else { Some(String::new()) });
        while tcp.is_none() || http.is_none() {
            let line = lines.next().expect("serve printed its addresses").unwrap();
            if let Some(a) = line.strip_prefix("listening: tcp ") {
                tcp = a.split_whitespace().next().map(str::to_owned);
            }
            if let Some(a) = line.strip_prefix("listening: http http://") {
                http = Some(a.trim().to_owned());
            }
        }
        // Keep draining stdout so the server never writes into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Serve {
            child,
            tcp: tcp.unwrap(),
            http: http.unwrap(),
        }
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not exit within 10 s of SIGTERM");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_record_query_over_tcp_and_http_then_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&["--storage", "memory"], dir.path());
    let addr = server.tcp.clone();

    let event = format!(r#"{{"event":"purchase","ip":"1.2.3.4","geo":"US","amount":9.5,"ts":{TS}}}"#);
    let out = traqq(&["record", "--addr", &addr, "--event", &event]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = format!(
        "{{\"event\":\"purchase\",\"ip\":\"5.6.7.8\",\"geo\":\"DE\",\"amount\":0.5,\"ts\":{TS}}}\n\
         {{\"event\":\"view\",\"ip\":\"1.2.3.4\",\"geo\":\"US\",\"ts\":{TS}}}\n"
    );
    let out = traqq_stdin(&["record", "--addr", &addr, "-"], &lines);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("recorded 2 events"));

    // Over HTTP too.
    let reply = http_request(
        server.http.as_str(),
        "POST",
        "/v1/events",
        &[],
        format!(r#"{{"event":"view","ip":"9.9.9.9","geo":"FR","ts":{TS}}}"#).as_bytes(),
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);

    let day = TS.to_string();
    let days = query_json(&[
        "query", "--addr", &addr, "--from", &day, "--to", &day, "--format", "json",
    ]);
    assert_eq!(days.as_array().unwrap().len(), 1);
    assert_eq!(days[0]["date"], json!("2023-11-14"));
    let results = days[0]["results"].as_array().unwrap();
    let find = |t: &str, key: Value| {
        results
            .iter()
            .find(|r| r["metric_type"] == t && r["key"] == key)
            .unwrap()
    };
    assert_eq!(
        find("add", json!(["event"]))["result"],
        json!({"Hash":{"purchase":2,"view":2}})
    );
    assert_eq!(find("bmp", json!(["ip"]))["result"], json!({"Count":3}));
    assert_eq!(
        find("top", json!(["geo"]))["result"],
        json!({"Ranked":[["US",2.0],["DE",1.0],["FR",1.0]]})
    );

    // Dates in the zone, JSON when piped (no --format), and the same answer over HTTP.
    let by_date = query_json(&[
        "query",
        "--addr",
        &addr,
        "--from",
        "2023-11-14",
        "--to",
        "2023-11-14",
    ]);
    assert_eq!(by_date, days);
    let http = http_request(
        server.http.as_str(),
        "GET",
        &format!("/v1/query?min={TS}&max={TS}"),
        &[],
        b"",
    )
    .unwrap();
    let http: Value = serde_json::from_str(&http.body).unwrap();
    assert_eq!(http["data"], days);

    let found = query_json(&[
        "find",
        "add/event~geo",
        "--addr",
        &addr,
        "--from",
        "2023-11-13",
        "--to",
        "2023-11-15",
        "--merge",
    ]);
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(
        found[0]["result"],
        json!({"Hash":{"purchase~DE":1,"purchase~US":1,"view~FR":1,"view~US":1}})
    );
    let found = query_json(&[
        "find",
        "adv:i/event/amount",
        "--addr",
        &addr,
        "--from",
        "2023-11-14",
        "--merge",
    ]);
    assert_eq!(found[0]["result"], json!({"Summary":{"sum":10.0,"count":2}}));

    // The table is readable.
    let out = traqq(&[
        "query",
        "--addr",
        &addr,
        "--from",
        "2023-11-14",
        "--to",
        "2023-11-14",
        "--format",
        "table",
    ]);
    let table = text(&out.stdout);
    // The range's totals first (issue 19), then the day.
    assert!(table.starts_with("total 2023-11-14\n"), "{table}");
    assert!(table.contains("\n2023-11-14\n"), "{table}");
    assert!(
        table.contains("bmp ip") && table.contains("3 distinct"),
        "{table}"
    );
    assert!(
        table.contains("purchase 2, view 2") || table.contains("view 2, purchase 2"),
        "{table}"
    );
    assert!(table.contains("US 2, DE 1, FR 1"), "{table}");

    let status = server.terminate();
    assert!(status.success(), "serve exited with {status:?} after SIGTERM");
    // Nothing listens any more: a runtime error, exit 1.
    let out = traqq(&["record", "--addr", &addr, "--event", &event]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot reach a traqq server"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn import_reports_bad_lines_by_number_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&["--storage", "memory"], dir.path());
    let mut file = String::new();
    let mut good = 0;
    for i in 1..=50 {
        let line = match i {
            7 => "{\"event\":\"x\"".to_owned(),      // malformed
            13 => "[1,2]".to_owned(),                // not an object
            21 => "{\"ip\":\"1.1.1.1\"}".to_owned(), // no event name
            34 => "{\"event\":\"x\",\"ts\":\"not a time\"}".to_owned(),
            40 => String::new(), // blank: skipped silently
            _ => {
                good += 1;
                format!(
                    "{{\"event\":\"imp\",\"ip\":\"10.0.0.{i}\",\"ts\":{}}}",
                    TS + (i % 3) * 86_400
                )
            }
        };
        file.push_str(&line);
        file.push('\n');
    }
    file.push_str("{\"event\":\"imp\",\"ts\":1700000000,\"ctl\":\"\u{1}\"}\n");
    let path = dir.path().join("events.ndjson");
    std::fs::write(&path, file.as_bytes()).unwrap();
    // Invalid UTF-8 on line 53.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"event\":\"\xff\"}\n");
    std::fs::write(&path, &bytes).unwrap();

    let out = traqq(&[
        "import",
        path.to_str().unwrap(),
        "--addr",
        &server.tcp,
        "--batch",
        "8",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let reported: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
    let numbers: Vec<&str> = reported.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        numbers,
        ["line 7", "line 13", "line 21", "line 34", "line 51", "line 52"],
        "{stderr}"
    );
    assert!(reported[0].contains("invalid event JSON"), "{stderr}");
    assert!(reported[1].contains("expected a JSON object"), "{stderr}");
    assert!(reported[2].contains("\"event\" is missing"), "{stderr}");
    assert!(reported[3].contains("invalid event time"), "{stderr}");
    assert!(reported[4].contains("control character"), "{stderr}");
    assert!(reported[5].contains("UTF-8"), "{stderr}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("imported {good} events, rejected 6 lines")),
        "{stdout}"
    );

    let found = query_json(&[
        "find",
        "add/event",
        "--addr",
        &server.tcp,
        "--from",
        "2023-11-14",
        "--to",
        "2023-11-16",
        "--merge",
    ]);
    assert_eq!(found[0]["result"], json!({"Hash":{"imp": good}}));

    // A dry run into memory counts the same and touches no server; recorded on two threads
    // from small batches, it still reports the bad lines by number, in order.
    let out = traqq(&[
        "import",
        path.to_str().unwrap(),
        "--storage",
        "memory",
        "--workers",
        "2",
        "--batch",
        "3",
    ]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&format!("imported {good} events, rejected 6 lines")));
    let stderr = text(&out.stderr);
    let local: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("line "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(local, numbers, "{stderr}");
    // stdin works too.
    let out = traqq_stdin(&["import", "-", "--storage", "memory"], "{\"event\":\"a\"}\n{}\n");
    assert!(
        text(&out.stdout).contains("imported 1 events, rejected 1 lines"),
        "{}",
        text(&out.stdout)
    );
    assert!(server.terminate().success());
}

#[test]
fn config_check_good_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let example = traqq(&["config", "example"]);
    assert!(example.status.success());
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &example.stdout).unwrap();
    let out = traqq(&["config", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let effective = text(&out.stdout);
    assert!(
        effective.contains("[mapping]") && effective.contains("[server]"),
        "{effective}"
    );

    let cases = [
        (
            "prefix = \"app\"\n[mapping]\nadd = [\"event\"]\nbitmapp = [\"ip\"]\n",
            "line 4",
            "bitmapp",
        ),
        (
            "[storage]\nbackend = \"floppy\"\n",
            "",
            "storage.backend = \"floppy\"",
        ),
        ("[time]\ntimezone = \"Mars/Olympus\"\n", "", "time.timezone"),
        ("[server]\ntcp = \"0.0.0.0:9876\"\n", "", "--insecure"),
        ("[mapping]\nadd = [\"a~b\", \"b~a\"]\n", "", "mapping.add[1]"),
        ("[query]\nmax_buckets = \"many\"\n", "line 2", "query.max_buckets"),
        ("prefix = \"a b\"\n", "", "prefix"),
        (
            "[storage]\nwrite_buffer_ms = 50\nwrite_buffer_ops = 0\n",
            "",
            "storage.write_buffer_ops = 0",
        ),
        ("[limits\n", "line 1", ""),
    ];
    for (i, (body, line, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, body).unwrap();
        let out = traqq(&["config", "check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{body}");
        let err = text(&out.stderr);
        assert!(err.contains(path.to_str().unwrap()), "names the file: {err}");
        assert!(err.contains(line) && err.contains(want), "{body}\n{err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
    let out = traqq(&["config", "check", "/nonexistent/traqq.toml"]);
    assert_eq!(out.status.code(), Some(2));
    // A bad config stops serve too, with exit 2; so does a usage error.
    let bad = dir.path().join("bad0.toml");
    assert_eq!(
        traqq(&["serve", "--config", bad.to_str().unwrap()]).status.code(),
        Some(2)
    );
    assert_eq!(traqq(&["query", "--dayz", "3"]).status.code(), Some(2));
    assert_eq!(
        traqq(&["find", "nope", "--days", "1", "--storage", "memory"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        traqq(&["serve", "--tcp", "0.0.0.0:0", "--storage", "memory"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn local_store_commands_and_query_errors() {
    // --storage memory: record and query in one process each (nothing persists between them).
    let out = traqq(&["record", "--storage", "memory", "--event", r#"{"event":"a"}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = traqq(&["record", "--storage", "memory", "--event", r#"{"ip":"1"}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("\"event\" is missing"),
        "{}",
        text(&out.stderr)
    );
    let days = query_json(&["query", "--days", "2", "--storage", "memory"]);
    assert_eq!(days.as_array().unwrap().len(), 3);
    let out = traqq(&["query", "--days", "5000", "--storage", "memory"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("query.max_buckets"),
        "{}",
        text(&out.stderr)
    );
    let out = traqq(&[
        "query",
        "--from",
        "2023-11-15",
        "--to",
        "2023-11-14",
        "--storage",
        "memory",
    ]);
    assert!(text(&out.stderr).contains("is after"), "{}", text(&out.stderr));
    let out = traqq(&["query", "--from", "yesterday", "--storage", "memory"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("\"yesterday\" is not a date"));
}

/// With `[event] id_field`, importing the same file twice counts it once, and the second
/// import says how many duplicates it skipped.
#[test]
fn importing_a_file_twice_with_event_ids_counts_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    let config = dir.path().join("traqq.toml");
    std::fs::write(&config, "[event]\nid_field = \"id\"\n").unwrap();
    let cfg = config.to_str().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let events: String = (0..50)
        .map(|i| format!("{{\"event\":\"o\",\"id\":\"order-{}\",\"ts\":{now}}}\n", i % 40))
        .collect();
    let import = || {
        traqq_stdin(
            &[
                "import",
                "-",
                "--config",
                cfg,
                "--storage",
                "sled",
                "--data",
                data,
            ],
            &events,
        )
    };
    let first = text(&import().stdout);
    assert!(
        first.contains("imported 40 events, rejected 0 lines, skipped 10 duplicates"),
        "{first}"
    );
    let second = text(&import().stdout);
    assert!(
        second.contains("imported 0 events, rejected 0 lines, skipped 50 duplicates"),
        "{second}"
    );
    let found = query_json(&[
        "find",
        "add/event",
        "--config",
        cfg,
        "--storage",
        "sled",
        "--data",
        data,
        "--days",
        "0",
        "--merge",
    ]);
    assert_eq!(found[0]["result"]["Hash"]["o"], json!(40));
    let out = traqq(&["prune", "--config", cfg, "--storage", "sled", "--data", data]);
    assert!(
        text(&out.stdout).contains("dropped 0 event id sets older than event.dedup_days = 2"),
        "{}",
        text(&out.stdout)
    );
}

/// `[limits] max_labels`: the table marks a metric whose bucket reached its cap, and the
/// labels past it are counted under `(other)`.
#[test]
fn query_tables_mark_a_metric_that_hit_its_label_cap() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("traqq.toml");
    std::fs::write(
        &config,
        "[mapping]\nadd = [\"event\", \"event~url\"]\n[limits.max_labels_by_pattern]\n\"url~event\" = 3\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    let events: String = (0..10)
        .map(|i| format!("{{\"event\":\"v\",\"url\":\"/{i}\",\"ts\":{TS}}}\n"))
        .collect();
    let store = ["--config", cfg, "--storage", "sled", "--data", data];
    let out = traqq_stdin(&[&["import", "-"][..], &store].concat(), &events);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let day = TS.to_string();
    let out = traqq(
        &[
            &["query", "--from", &day, "--to", &day, "--format", "table"][..],
            &store,
        ]
        .concat(),
    );
    let table = text(&out.stdout);
    let capped: Vec<&str> = table.lines().filter(|l| l.contains("[capped")).collect();
    assert!(
        capped
            .iter()
            .any(|l| l.contains("add event~url") && l.contains("(other) 7")),
        "{table}"
    );
    assert!(
        !table
            .lines()
            .any(|l| l.contains("add event ") && l.contains("[capped")),
        "{table}"
    );
}

/// `traqq query --group week|month`: one section per ISO week or month, its days merged.
#[test]
fn query_groups_days_into_weeks_and_months() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    // Mon 2023-11-13 .. Sun 2023-11-26 (UTC), the same two ips every day.
    let monday = 1_699_833_600;
    let events: String = (0..14)
        .flat_map(|d| {
            ["1.1.1.1", "2.2.2.2"].map(move |ip| {
                format!(
                    "{{\"event\":\"v\",\"ip\":\"{ip}\",\"ts\":{}}}\n",
                    monday + d * 86_400 + 600
                )
            })
        })
        .collect();
    let store = ["--storage", "sled", "--data", data];
    let out = traqq_stdin(&[&["import", "-"][..], &store].concat(), &events);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let range = ["--from", "2023-11-15", "--to", "2023-11-26"];
    let out = traqq(
        &[
            &["query", "--group", "week", "--format", "table"][..],
            &range,
            &store,
        ]
        .concat(),
    );
    let table = text(&out.stdout);
    assert!(
        table.contains("week 2023-11-15 .. 2023-11-19 (5 days)"),
        "{table}"
    );
    assert!(
        table.contains("week 2023-11-20 .. 2023-11-26 (7 days)"),
        "{table}"
    );
    assert!(table.contains("v 14"), "{table}");
    let out = traqq(&[&["query", "--group", "month"][..], &range, &store].concat());
    let months: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(months.as_array().unwrap().len(), 1, "{months}");
    assert_eq!(months[0]["days"], json!(12));
    let bmp = months[0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric_type"] == "bmp")
        .unwrap()
        .clone();
    assert_eq!(bmp["result"], json!({"Count": 2}), "monthly actives: a union");
}

/// `--tz ZONE`: the days (and the --from/--to dates) of another zone, from the stored hours.
#[test]
fn query_and_find_in_another_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("traqq.toml");
    std::fs::write(&config, "[time]\nstore_hourly = true\n").unwrap();
    let cfg = config.to_str().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    // 2023-11-14 20:00 and 23:00 UTC, 2023-11-15 02:00 UTC: all on 11-15 in Tokyo.
    let events: String = [1_699_992_000, 1_700_002_800, 1_700_013_600]
        .iter()
        .map(|ts| format!("{{\"event\":\"v\",\"ts\":{ts}}}\n"))
        .collect();
    let store = ["--config", cfg, "--storage", "sled", "--data", data];
    let out = traqq_stdin(&[&["import", "-"][..], &store].concat(), &events);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let find = |tz: &[&str]| {
        let out = traqq(
            &[
                &["find", "add/event", "--from", "2023-11-14", "--to", "2023-11-15"][..],
                tz,
                &store,
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let found: Value = serde_json::from_slice(&out.stdout).unwrap();
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["result"]["Hash"]["v"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(find(&[]), [2, 1], "UTC days");
    assert_eq!(find(&["--tz", "Asia/Tokyo"]), [3], "Tokyo days");
    let out = traqq(&[&["query", "--days", "1", "--tz", "Nowhere/Land"][..], &store].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not an IANA time zone"),
        "{}",
        text(&out.stderr)
    );
}

/// `traqq migrate` on traqq 0.2 data in Redis (key sets, no bucket registry): before it,
/// `prune` cannot see the old buckets; after it, it deletes them.
#[test]
fn migrate_registers_the_buckets_of_traqq_02_data_for_retention() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("mig");
    let config = redis_config_file(
        dir.path(),
        "t.toml",
        &prefix,
        &format!("url = \"{url}\"\n[retention]\ndaily_days = 7\n"),
    );
    let day = 1_699_920_000;
    let metric = format!("{prefix}:add:d:{day}:event");
    for args in [
        vec!["HINCRBY".to_string(), metric.clone(), "click".into(), "1".into()],
        vec!["SADD".into(), format!("{prefix}:k:d:{day}"), metric.clone()],
    ] {
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &url])
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let prune = || text(&traqq(&["prune", "--config", &config]).stdout);
    assert!(prune().starts_with("pruned 0 buckets"), "{}", prune());
    let out = traqq(&["migrate", "--config", &config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("registered 1 buckets"),
        "{}",
        text(&out.stdout)
    );
    let pruned = prune();
    assert!(pruned.starts_with("pruned 1 buckets (2 keys)"), "{pruned}");
    // The Redis URL can come from the environment, as --addr and --data can.
    let out = Command::new(BIN)
        .args(["migrate", "--storage", "redis"])
        .env_remove("TRAQQ_CONFIG")
        .env("TRAQQ_REDIS_URL", &url)
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains(&format!("redis at {url}")),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // A store this version writes has nothing to migrate.
    let out = traqq(&["migrate", "--storage", "memory"]);
    assert!(
        text(&out.stdout).starts_with("nothing to migrate"),
        "{}",
        text(&out.stdout)
    );
}

/// Exactly-once through two `traqq serve` processes on one Redis node, and on the cluster
/// `scripts/test` starts: the same events with ids sent to both count once.
#[test]
fn two_servers_on_one_redis_count_each_event_id_once() {
    let Some(url) = redis_url() else { return };
    let cluster = std::env::var("TRAQQ_REDIS_CLUSTER_URLS")
        .ok()
        .filter(|u| !u.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let events: String = (0..40)
        .map(|i| format!("{{\"event\":\"paid\",\"id\":\"order-{i}\",\"ts\":{now}}}\n"))
        .collect();
    let mut stores = vec![format!("url = \"{url}\"\n")];
    if let Some(urls) = cluster {
        let list: Vec<String> = urls.split(',').map(|u| format!("\"{}\"", u.trim())).collect();
        stores.push(format!("cluster_urls = [{}]\n", list.join(", ")));
    }
    for (i, storage) in stores.iter().enumerate() {
        let config = redis_config_file(
            dir.path(),
            &format!("t{i}.toml"),
            &unique_prefix("once"),
            &format!("{storage}[event]\nid_field = \"id\"\n"),
        );
        let servers = [
            Serve::start(&["--config", &config], dir.path()),
            Serve::start(&["--config", &config], dir.path()),
        ];
        std::thread::scope(|s| {
            for server in &servers {
                let (tcp, events) = (&server.tcp, &events);
                s.spawn(move || {
                    let out = traqq_stdin(&["import", "-", "--addr", tcp, "--batch", "7"], events);
                    assert!(out.status.success(), "{}", text(&out.stderr));
                });
            }
        });
        let found = query_json(&[
            "find",
            "add/event",
            "--addr",
            &servers[1].tcp,
            "--days",
            "0",
            "--merge",
        ]);
        assert_eq!(found[0]["result"], json!({"Hash": {"paid": 40}}), "store {i}");
        for server in servers {
            assert!(server.terminate().success());
        }
    }
}

/// A config file `name` in `dir` for the Redis store under a prefix no other run uses, with
/// `extra` lines appended to `[storage]`; returns its path.
fn redis_config_file(dir: &Path, name: &str, prefix: &str, extra: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("prefix = \"{prefix}\"\n[storage]\nbackend = \"redis\"\n{extra}"),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// `traqq find PATH --merge` since 2023-11-14, read straight from Redis by this process (the
/// local-store path, no server).
fn find_in_redis(config: &str, url: &str, path: &str) -> Value {
    query_json(&[
        "find",
        path,
        "--config",
        config,
        "--storage",
        "redis",
        "--redis-url",
        url,
        "--from",
        "2023-11-14",
        "--merge",
    ])
}

/// Records `n` events named `event` with distinct ips `<ip_prefix>.0…` through `traqq record`.
fn record_events(tcp: &str, event: &str, ip_prefix: &str, n: usize) {
    let lines: String = (0..n)
        .map(|i| format!("{{\"event\":\"{event}\",\"ip\":\"{ip_prefix}.{i}\",\"ts\":{TS}}}\n"))
        .collect();
    let out = traqq_stdin(&["record", "--addr", tcp, "-"], &lines);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn serve_on_redis_keeps_data_across_a_restart() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config_file(dir.path(), "traqq.toml", &unique_prefix("cli"), "");
    let cfg = config.as_str();
    let first = Serve::start(&["--config", cfg, "--redis-url", &url], dir.path());
    record_events(&first.tcp, "r", "1.0.0", 5);
    assert!(first.terminate().success());

    let second = Serve::start(&["--config", cfg, "--redis-url", &url], dir.path());
    let found = query_json(&[
        "find",
        "add/event",
        "--addr",
        &second.tcp,
        "--from",
        "2023-11-14",
        "--merge",
    ]);
    assert_eq!(found[0]["result"], json!({"Hash":{"r":5}}));
    let found = query_json(&[
        "find",
        "bmp/ip",
        "--addr",
        &second.tcp,
        "--from",
        "2023-11-14",
        "--merge",
    ]);
    assert_eq!(found[0]["result"], json!({"Count":5}));
    // The local-store path reaches the same data.
    let found = find_in_redis(cfg, &url, "add/event");
    assert_eq!(found[0]["result"], json!({"Hash":{"r":5}}));
    assert!(second.terminate().success());
}

#[test]
fn serve_with_a_write_buffer_acknowledges_first_and_writes_at_a_query_or_shutdown() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Ten minutes: nothing is written by the clock during the test.
    let config = redis_config_file(
        dir.path(),
        "traqq.toml",
        &unique_prefix("clibuf"),
        "write_buffer_ms = 600000\n",
    );
    let cfg = config.as_str();
    // What another process reading Redis directly sees.
    let in_redis = || find_in_redis(cfg, &url, "add/event");
    let serve = Serve::start(&["--config", cfg, "--redis-url", &url], dir.path());
    record_events(&serve.tcp, "w", "2.0.0", 5);
    let before = in_redis();
    assert_ne!(
        before[0]["result"],
        json!({"Hash":{"w":5}}),
        "written before it was due: {before}"
    );
    // The server's own query writes its buffer first.
    let via_server = query_json(&[
        "find",
        "add/event",
        "--addr",
        &serve.tcp,
        "--from",
        "2023-11-14",
        "--merge",
    ]);
    assert_eq!(via_server[0]["result"], json!({"Hash":{"w":5}}));
    assert_eq!(in_redis()[0]["result"], json!({"Hash":{"w":5}}));
    // A graceful shutdown writes what is left.
    record_events(&serve.tcp, "w", "2.0.1", 3);
    assert!(serve.terminate().success());
    assert_eq!(in_redis()[0]["result"], json!({"Hash":{"w":8}}));
}

#[test]
fn redis_over_tls_trusts_the_ca_named_in_the_config_file() {
    let (url, ca) = match (
        std::env::var("TRAQQ_REDIS_TLS_URL"),
        std::env::var("TRAQQ_REDIS_TLS_CA"),
    ) {
        (Ok(url), Ok(ca)) if !url.is_empty() && !ca.is_empty() => (url, ca),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("TRAQQ_REDIS_TLS_URL / TRAQQ_REDIS_TLS_CA are not set under CI")
        }
        _ => return,
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("clitls");
    let url_line = format!("url = \"{url}\"\n");
    let trusted = redis_config_file(
        dir.path(),
        "tls.toml",
        &prefix,
        &format!("{url_line}tls_ca_file = \"{ca}\"\n"),
    );
    let untrusted = redis_config_file(dir.path(), "plain.toml", &prefix, &url_line);

    let serve = Serve::start(&["--config", &trusted], dir.path());
    record_events(&serve.tcp, "t", "3.0.0", 4);
    assert!(serve.terminate().success());
    // Another process with the same config reads it back over TLS.
    let found = query_json(&[
        "find",
        "add/event",
        "--config",
        &trusted,
        "--storage",
        "redis",
        "--from",
        "2023-11-14",
        "--merge",
    ]);
    assert_eq!(found[0]["result"], json!({"Hash":{"t":4}}));
    // Without the CA, the throwaway certificate is not trusted.
    let out = Command::new(BIN)
        .env_remove("TRAQQ_REDIS_URL")
        .args([
            "find",
            "add/event",
            "--config",
            &untrusted,
            "--storage",
            "redis",
            "--from",
            "2023-11-14",
        ])
        .env_remove("TRAQQ_CONFIG")
        // scripts/test exports it for the Redis tests; each test names its own store.
        .env_remove("TRAQQ_REDIS_URL")
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an untrusted certificate was accepted");
    let err = text(&out.stderr);
    // Refused by the Redis connection itself (not for want of a server or a config).
    assert!(err.contains("redis") && !err.contains("traqq server"), "{err}");
    if let Some((password, _)) = url.split_once("://:").and_then(|(_, rest)| rest.split_once('@')) {
        assert!(!err.contains(password), "the password is shown: {err}");
    }
}

fn free_port() -> u16 {
    traqq_redis::testing::free_port().unwrap()
}

#[test]
fn redis_outage_gives_errors_and_the_server_recovers() {
    let port = free_port();
    let Some(redis) = OwnServer::ephemeral(port) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}/");
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&["--storage", "redis", "--redis-url", &url], dir.path());
    let event = format!(r#"{{"event":"o","ts":{TS}}}"#);
    let out = traqq(&["record", "--addr", &server.tcp, "--event", &event]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    drop(redis);
    let started = std::time::Instant::now();
    let out = traqq(&["record", "--addr", &server.tcp, "--event", &event]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("redis storage is unavailable"),
        "{}",
        text(&out.stderr)
    );
    let http = server.http.as_str();
    let reply = http_request(http, "POST", "/v1/events", &[], event.as_bytes()).unwrap();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(
        http_request(http, "GET", "/healthz", &[], b"").unwrap().status,
        503
    );
    assert_eq!(
        http_request(http, "GET", "/v1/query?days=1", &[], b"")
            .unwrap()
            .status,
        503
    );
    eprintln!(
        "four requests during the outage answered in {:?}",
        started.elapsed()
    );

    // Redis comes back (empty: it kept nothing): the same server serves again.
    let _redis = OwnServer::ephemeral(port).unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        if http_request(http, "GET", "/healthz", &[], b"").unwrap().status == 200 {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(recovered, "the server did not reconnect to redis");
    for _ in 0..3 {
        let out = traqq(&["record", "--addr", &server.tcp, "--event", &event]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let found = query_json(&[
        "find",
        "add/event",
        "--addr",
        &server.tcp,
        "--from",
        "2023-11-14",
        "--merge",
    ]);
    assert_eq!(found[0]["result"], json!({"Hash":{"o":3}}));
    assert!(server.terminate().success());
}

#[test]
fn serve_on_the_default_store_keeps_data_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // No storage flags: the embedded persistent default store in ./traqq-data.
    let first = Serve::start(&[], dir.path());
    let lines: String = (0..7)
        .map(|i| format!("{{\"event\":\"keep\",\"ip\":\"2.0.0.{i}\",\"geo\":\"NL\",\"ts\":{TS}}}\n"))
        .collect();
    let out = traqq_stdin(&["record", "--addr", &first.tcp, "-"], &lines);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(first.terminate().success());
    assert!(
        dir.path().join("traqq-data").is_dir(),
        "data lives in ./traqq-data"
    );

    let second = Serve::start(&[], dir.path());
    let days = query_json(&[
        "query",
        "--addr",
        &second.tcp,
        "--from",
        "2023-11-14",
        "--to",
        "2023-11-14",
    ]);
    let results = days[0]["results"].as_array().unwrap();
    let get = |t: &str, k: &str| {
        results
            .iter()
            .find(|r| r["metric_type"] == t && r["key"] == json!([k]))
            .unwrap()["result"]
            .clone()
    };
    assert_eq!(get("add", "event"), json!({"Hash":{"keep":7}}));
    assert_eq!(get("bmp", "ip"), json!({"Count":7}));
    assert_eq!(get("top", "geo"), json!({"Ranked":[["NL",7.0]]}));
    assert!(second.terminate().success());

    // The same store opened directly (no server holds it now).
    let data = dir.path().join("traqq-data");
    let found = query_json(&[
        "find",
        "add/event",
        "--data",
        data.to_str().unwrap(),
        "--from",
        "2023-11-14",
        "--merge",
    ]);
    assert_eq!(found[0]["result"], json!({"Hash":{"keep":7}}));
}

#[test]
fn prune_applies_retention_to_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    let config = dir.path().join("traqq.toml");
    std::fs::write(&config, "[retention]\ndaily_days = 3\n").unwrap();
    let cfg = config.to_str().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let events: String = [now - 10 * 86_400, now - 9 * 86_400, now - 86_400, now]
        .iter()
        .map(|ts| format!("{{\"event\":\"p\",\"ts\":{ts}}}\n"))
        .collect();
    // sled here (the default store, RocksDB, is covered by the restart test).
    let out = traqq_stdin(
        &[
            "import",
            "-",
            "--config",
            cfg,
            "--storage",
            "sled",
            "--data",
            data,
        ],
        &events,
    );
    assert!(
        text(&out.stdout).contains("imported 4 events"),
        "{}",
        text(&out.stderr)
    );
    let total = |args: &[&str]| {
        let found = query_json(args);
        found[0]["result"]["Hash"]["p"].as_i64().unwrap_or(0)
    };
    let find = [
        "find",
        "add/event",
        "--config",
        cfg,
        "--storage",
        "sled",
        "--data",
        data,
        "--days",
        "12",
        "--merge",
    ];
    assert_eq!(total(&find), 4);
    let out = traqq(&["prune", "--config", cfg, "--storage", "sled", "--data", data]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.starts_with("pruned 2 buckets"), "{said}");
    assert_eq!(total(&find), 2, "the two old days are gone, the recent two stay");
    // Without retention, prune says there is nothing to do.
    let out = traqq(&["prune", "--storage", "sled", "--data", data]);
    assert!(text(&out.stdout).contains("nothing to prune"));
    assert_eq!(total(&find), 2);
}

#[test]
fn auth_token_from_flag_env_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&["--storage", "memory", "--auth-token", "hunter2"], dir.path());
    let event = format!(r#"{{"event":"a","ts":{TS}}}"#);
    let out = traqq(&["record", "--addr", &server.tcp, "--event", &event]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unauthorized"),
        "{}",
        text(&out.stderr)
    );
    let out = traqq(&[
        "record",
        "--addr",
        &server.tcp,
        "--token",
        "hunter2",
        "--event",
        &event,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = Command::new(BIN)
        .env_remove("TRAQQ_REDIS_URL")
        .args(["record", "--addr", &server.tcp, "--event", &event])
        .env("TRAQQ_TOKEN", "hunter2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = dir.path().join("client.toml");
    std::fs::write(&config, "[server]\nauth_token = \"hunter2\"\n").unwrap();
    let found = query_json(&[
        "find",
        "add/event",
        "--config",
        config.to_str().unwrap(),
        "--addr",
        &server.tcp,
        "--from",
        "2023-11-14",
        "--merge",
    ]);
    assert_eq!(found[0]["result"], json!({"Hash":{"a":2}}));
    let http = server.http.as_str();
    assert_eq!(
        http_request(http, "GET", "/v1/query?days=1", &[], b"")
            .unwrap()
            .status,
        401
    );
    let ok = http_request(
        http,
        "GET",
        "/v1/query?days=1",
        &[("Authorization", "Bearer hunter2")],
        b"",
    )
    .unwrap();
    assert_eq!(ok.status, 200);
    // The token never shows in the effective config.
    let out = traqq(&["config", "check", config.to_str().unwrap()]);
    assert!(!text(&out.stdout).contains("hunter2") && text(&out.stdout).contains("<redacted>"));
    assert!(server.terminate().success());

    // A public address: refused without a token, allowed with --insecure.
    let out = traqq(&[
        "serve",
        "--storage",
        "memory",
        "--tcp",
        "0.0.0.0:0",
        "--http",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--insecure"), "{}", text(&out.stderr));
    let open = Serve::start_tcp_only(
        &[
            "--storage",
            "memory",
            "--tcp",
            "0.0.0.0:0",
            "--http",
            "off",
            "--insecure",
        ],
        dir.path(),
    );
    assert!(open.terminate().success());
}

/// Runs `traqq [global] serve --storage memory` on a free TCP port with stderr in a file,
/// stops it with SIGTERM once it listens, and returns what it logged.
fn serve_log(global: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(BIN)
        .env_remove("TRAQQ_REDIS_URL")
        .args(global)
        .args([
            "serve",
            "--storage",
            "memory",
            "--tcp",
            "127.0.0.1:0",
            "--http",
            "off",
        ])
        .current_dir(dir.path())
        .env_remove("TRAQQ_CONFIG")
        // scripts/test exports it for the Redis tests; each test names its own store.
        .env_remove("TRAQQ_REDIS_URL")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.starts_with("listening: tcp") {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
    std::fs::read_to_string(&log).unwrap()
}

/// Issue 19: log lines carried ANSI colour codes into files and pipes. With stderr not a
/// terminal, they are plain text.
#[test]
fn serve_logs_have_no_colour_codes_when_stderr_is_a_file() {
    let text = serve_log(&[]);
    assert!(text.contains("shutting down"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in {text:?}");
}

/// Issue 19: `--log-format json` writes one JSON object per log line.
#[test]
fn serve_logs_json_lines_when_asked() {
    let text = serve_log(&["--log-format", "json"]);
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        entries.iter().any(|e| e["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("shutting down"))),
        "{text}"
    );
}

/// Issue 19: completion scripts for each shell and a man page, generated from the same
/// command-line definition.
#[test]
fn completions_for_each_shell_and_a_man_page() {
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef traqq"),
        ("fish", "complete -c traqq"),
    ] {
        let out = traqq(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in ["serve", "import", "query", "find", "prune"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let out = traqq(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
    let man = traqq(&["man"]);
    assert!(man.status.success());
    let page = text(&man.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH traqq"), "{page}");
    assert!(page.contains("serve") && page.contains("completions"), "{page}");
}

/// Issue 19: `TRAQQ_DATA` stands for `--data`, `TRAQQ_ADDR` for `--addr`.
#[test]
fn data_and_addr_come_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let event = format!(r#"{{"event":"env","ts":{TS}}}"#);
    let run = |args: &[&str], envs: &[(&str, &std::path::Path)]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .env_remove("TRAQQ_CONFIG")
            // scripts/test exports it for the Redis tests; each test names its own store.
            .env_remove("TRAQQ_REDIS_URL")
            .env_remove("RUST_LOG");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = run(&["record", "--event", &event], &[("TRAQQ_DATA", &data)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        &[
            "find",
            "add/event",
            "--from",
            &TS.to_string(),
            "--merge",
            "--format",
            "json",
            "--data",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "--data needs a value: {}",
        text(&out.stderr)
    );
    let out = run(
        &[
            "find",
            "add/event",
            "--from",
            &TS.to_string(),
            "--to",
            &TS.to_string(),
            "--merge",
            "--format",
            "json",
        ],
        &[("TRAQQ_DATA", &data)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found[0]["result"]["Hash"]["env"], 1, "{found}");
    // TRAQQ_ADDR: a server address nobody listens on is the one tried.
    let port = free_port();
    let out = run(
        &["record", "--event", &event],
        &[("TRAQQ_ADDR", std::path::Path::new(&format!("127.0.0.1:{port}")))],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!("127.0.0.1:{port}")),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 19: `traqq query` as a table leads with the range's totals (unique counts are
/// unions, not sums of days), then each day — from a server and from a local store alike.
#[test]
fn query_tables_lead_with_the_ranges_totals() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&["--storage", "memory"], dir.path());
    let addr = server.tcp.clone();
    let day2 = TS + 86_400;
    // The same two ips on both days: 2 distinct per day, 2 over the range (not 4).
    let lines: String = [TS, day2]
        .iter()
        .flat_map(|ts| {
            ["1.1.1.1", "2.2.2.2"]
                .map(|ip| format!("{{\"event\":\"view\",\"ip\":\"{ip}\",\"geo\":\"US\",\"ts\":{ts}}}\n"))
        })
        .collect();
    let out = traqq_stdin(&["record", "--addr", &addr, "-"], &lines);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (from, to) = (TS.to_string(), day2.to_string());
    let out = traqq(&[
        "query", "--addr", &addr, "--from", &from, "--to", &to, "--format", "table",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "total 2023-11-14 .. 2023-11-15", "{table}");
    let total_section: Vec<&str> = lines[1..]
        .iter()
        .take_while(|l| l.starts_with("  "))
        .copied()
        .collect();
    assert!(
        total_section
            .iter()
            .any(|l| l.contains("bmp ip") && l.contains("2 distinct")),
        "{table}"
    );
    assert!(
        total_section
            .iter()
            .any(|l| l.contains("add event") && l.contains("view 4")),
        "{table}"
    );
    assert!(
        table.contains("\n2023-11-14\n") && table.contains("\n2023-11-15\n"),
        "{table}"
    );
    // JSON stays the list of days.
    let days = query_json(&[
        "query", "--addr", &addr, "--from", &from, "--to", &to, "--format", "json",
    ]);
    assert_eq!(days.as_array().unwrap().len(), 2);
    assert_eq!(server.terminate().code(), Some(0));
}

/// A distribution from the config file: `find dst/...` with `--merge` and `--q`, its table, and
/// a bad `--q` named in the usage error.
#[test]
fn find_reports_the_percentiles_of_a_distribution() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("traqq.toml");
    std::fs::write(
        &config,
        "[mapping]\nadd = [\"event\"]\ndistribution = [{ key = \"event\", value_key = \"ms\" }]\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    // 1..=200 ms over two days: p50 of the merged 200 values is the value of rank 99, i.e. 100.
    let events: String = (1..=200)
        .map(|ms| {
            format!(
                "{{\"event\":\"api\",\"ms\":{ms},\"ts\":{}}}\n",
                TS + (ms % 2) * 86_400
            )
        })
        .collect();
    let store = ["--config", cfg, "--storage", "sled", "--data", data];
    let out = traqq_stdin(&[&["import", "-"][..], &store].concat(), &events);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let range = ["--from", "2023-11-14", "--to", "2023-11-15"];
    let found = query_json(&[&["find", "dst/event/ms", "--merge"][..], &range, &store].concat());
    let api = &found[0]["result"]["Quantiles"]["api"];
    assert_eq!(api["count"], json!(200), "{found}");
    assert_eq!(api["sum"], json!(20_100.0));
    for (name, exact) in [("p50", 100.0), ("p90", 180.0), ("p99", 198.0)] {
        let got = api[name].as_f64().unwrap();
        assert!((got - exact).abs() <= 0.01 * exact, "{name}: {got} vs {exact}");
    }
    let asked = query_json(
        &[
            &["find", "dst/event/ms", "--merge", "--q", "0.25,0.999"][..],
            &range,
            &store,
        ]
        .concat(),
    );
    let api = &asked[0]["result"]["Quantiles"]["api"];
    assert!(
        api.get("p25").is_some() && api.get("p99.9").is_some() && api.get("p50").is_none(),
        "{api}"
    );
    let per_day = query_json(&[&["find", "dst/event/ms"][..], &range, &store].concat());
    assert_eq!(per_day.as_array().unwrap().len(), 2);
    assert_eq!(per_day[0]["result"]["Quantiles"]["api"]["count"], json!(100));

    let out = traqq(&[&["query", "--format", "table"][..], &range, &store].concat());
    let table = text(&out.stdout);
    assert!(
        table.contains("dst event/ms") && table.contains("api (n 200: p50 "),
        "{table}"
    );
    let out = traqq(&[&["find", "dst/event/ms", "--q", "0.5,2"][..], &range, &store].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("quantile 2 is not between 0 and 1"),
        "{}",
        text(&out.stderr)
    );
}
