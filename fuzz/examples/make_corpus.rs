//! Writes the committed seed corpora, `fuzz/corpus/<target>/<name>`: small valid inputs and
//! edge cases per target, binary ones produced by the real encoders. Run from `fuzz/` (the
//! traqq-sled hook needs `--cfg fuzzing`):
//!
//! ```sh
//! RUSTFLAGS="--cfg fuzzing" cargo run --example make_corpus --target-dir target/corpus-gen
//! ```
//!
//! Files are overwritten, never deleted: remove a target's directory first to drop old seeds.

use std::path::Path;

use traqq_core::batch::{Batch, Number};
use traqq_core::bucket::BucketKind;
use traqq_core::event::IncomingEvent;
use traqq_core::sketch::{Sketch, SketchFamily};
use traqq_storage::packed::MapWriter;

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

/// `mode` byte, then `body`.
fn with(mode: u8, body: impl AsRef<[u8]>) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(body.as_ref());
    v
}

/// Parts joined by the `0xFE 0xFF` separator of the `packed` and `rocks_merge` targets.
fn joined(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&[0xFE, 0xFF][..])
}

const EVENTS: &[(&str, &str)] = &[
    (
        "standard",
        r#"{"event":"purchase","ip":"1.2.3.4","geo":"US","os":"linux","amount":99.99}"#,
    ),
    (
        "nested",
        r#"{"event":"view","user":{"id":"u1","plan":{"tier":"pro"}},"page":{"path":"/a/b"},"geo":"DE","tags":["x"],"n":null}"#,
    ),
    ("ts_int", r#"{"event":"click","ts":1700000000,"geo":"FR"}"#),
    ("ts_float", r#"{"event":"click","ts":1700000000.75,"ip":"::1"}"#),
    (
        "ts_rfc3339",
        r#"{"event":"click","ts":"2024-03-31T02:30:00+02:00","geo":"NL"}"#,
    ),
    ("ts_out_of_range", r#"{"event":"click","ts":-99999999999999}"#),
    (
        "escapes",
        r#"{"event":"caf\u00e9 \"x\"","geo":"a:b~c","page":{"path":"\ud83d\ude00"}}"#,
    ),
    ("amount_string", r#"{"event":"buy","amount":" 1e3 ","geo":"  "}"#),
    ("amount_huge", r#"{"event":"buy","amount":1e300,"geo":"US"}"#),
    (
        "big_ints",
        r#"{"event":"n","a":18446744073709551615,"b":-9223372036854775808,"c":1.5e-320}"#,
    ),
    ("bools", r#"{"event":"b","geo":true,"os":false,"ip":0}"#),
    (
        "duplicates",
        r#"{"event":"a","geo":"x","geo":"y","event":"b","user":{"id":1},"user":{"id":2}}"#,
    ),
    (
        "dotted",
        r#"{"event":"d","user.id":"flat","user":{"id":"nested"},"page.path":"/"}"#,
    ),
    ("no_event", r#"{"geo":"US"}"#),
    ("empty_event", r#"{"event":"   "}"#),
    ("event_not_string", r#"{"event":5}"#),
    ("not_object", r#"["event","x"]"#),
    ("trailing", r#"{"event":"a"} {"event":"b"}"#),
];

fn events() {
    for (name, json) in EVENTS {
        write("event", name, json);
    }
    let long = "k".repeat(140);
    write(
        "event",
        "long_name",
        format!(r#"{{"event":"l","{long}":1,"a":{{"{long}":{{"b":2}}}}}}"#),
    );
    let many: String = (0..1001).map(|i| format!(r#","p{i}":{i}"#)).collect();
    write("event", "too_many", format!(r#"{{"event":"m"{many}}}"#));
    let deep = format!(
        r#"{{"event":"deep",{}"x":1{}}}"#,
        r#""a":{"#.repeat(130),
        "}".repeat(130)
    );
    write("event", "deep", deep);
    write("event", "bad_utf8", b"{\"event\":\"\xff\xfe\"}");
}

fn requests() {
    let lines: &[(&str, &str)] = &[
        (
            "record",
            r#"{"cmd":"record","event":{"event":"click","geo":"US","ip":"1.2.3.4"}}"#,
        ),
        (
            "record_batch",
            r#"{"cmd":"record_batch","events":[{"event":"a","geo":"US"},{"event":"b","amount":2.5},"oops",null,{"geo":"x"}]}"#,
        ),
        (
            "query",
            r#"{"cmd":"query","min":1699920000,"max":1700006400,"bucket":"d","limit":10,"accept":["add:*"],"ignore":["top:*"]}"#,
        ),
        ("query_days", r#"{"cmd":"query_days","days":7,"bucket":"h"}"#),
        (
            "find",
            r#"{"cmd":"find","days":3,"metric_type":"add","key":"event~geo","merge":true}"#,
        ),
        (
            "find_adv",
            r#"{"cmd":"find","min":0,"max":1700000000,"metric_type":"adv:i","key":"event","add_key":"amount"}"#,
        ),
        (
            "find_top",
            r#"{"cmd":"find","days":0,"metric_type":"top","key":"geo","limit":1}"#,
        ),
        ("ping", r#"{"cmd":"ping","token":"x"}"#),
        ("bad_cmd", r#"{"cmd":"drop_all"}"#),
        ("not_json", r#"{"cmd":"record","event":{"event":"a""#),
    ];
    for (name, line) in lines {
        write("request_line", name, line);
    }
    let session = [
        r#"{"cmd":"record","event":{"event":"buy","geo":"US","amount":5,"ip":"a"}}"#,
        r#"{"cmd":"record","event":{"event":"buy","geo":"DE","amount":7.5,"ip":"b","ts":1699990000}}"#,
        r#"{"cmd":"record_batch","events":[{"event":"view","geo":"US","os":"mac","page":{"path":"/"}}]}"#,
        r#"{"cmd":"query","min":1699900000,"max":1700000000}"#,
        r#"{"cmd":"find","days":2,"metric_type":"bmp","key":"ip","merge":true}"#,
        r#"{"cmd":"find","days":2,"metric_type":"adv","key":"event~geo","add_key":"amount","merge":true}"#,
    ]
    .join("\n");
    write("request_line", "session", &session);
    write(
        "request_line",
        "auth",
        "AUTH\n{\"cmd\":\"ping\"}\n{\"cmd\":\"auth\",\"token\":\"wrong\"}\n{\"cmd\":\"auth\",\"token\":\"s3cret\"}\n{\"cmd\":\"query_days\",\"days\":1}",
    );
    write(
        "request_line",
        "token_per_request",
        "AUTH\n{\"cmd\":\"record\",\"token\":\"s3cret\",\"event\":{\"event\":\"a\"}}\n{\"cmd\":\"find\",\"token\":\"s3cret\",\"days\":0,\"metric_type\":\"add\",\"key\":\"event\"}",
    );
}

fn bodies() {
    write(
        "http_body",
        "object",
        with(0, r#"{"event":"click","geo":"US","amount":1}"#),
    );
    write(
        "http_body",
        "array",
        with(
            0,
            r#"[{"event":"a","ip":"1"},{"event":"b","ip":"2"},7,{"nope":1}]"#,
        ),
    );
    write(
        "http_body",
        "ndjson",
        with(
            1,
            "{\"event\":\"a\"}\n\n  {\"event\":\"b\",\"geo\":\"US\"}\r\n{bad\n",
        ),
    );
    write(
        "http_body",
        "ndjson_untyped",
        with(0, "{\"event\":\"a\"}\n{\"event\":\"b\"}\n"),
    );
    write(
        "http_body",
        "array_nested",
        with(0, r#"[{"event":"n","user":{"id":"u","x":{"y":[1,{"z":2}]}}}]"#),
    );
    let many: String = (0..101).map(|i| format!(r#"{{"event":"e{i}"}},"#)).collect();
    write(
        "http_body",
        "too_many",
        with(0, format!("[{}]", many.trim_end_matches(','))),
    );
    write("http_body", "scalar", with(0, "\"event\""));
    write("http_body", "empty", with(1, ""));
}

fn configs() {
    let example = include_str!("../../traqq.example.toml");
    write("config", "example", example);
    write(
        "config",
        "library_only",
        "[time]\ntimezone = \"America/New_York\"\nstore_hourly = true\n\n[mapping]\nbitmap = [\"ip\", \"user.id\"]\n\
         add = [\"event\", \"geo~event\", \"a~b~c\"]\nadd_value = [{ key = \"event~geo\", add_key = \"amount\" }]\n\
         top = [\"page.path\"]\n\n[limits]\nmax_field_length = 16\nmax_value_length = 4\n\n[event]\ntime_field = \"when\"\n",
    );
    write(
        "config",
        "server_only",
        "tcp = \"0.0.0.0:9876\"\nhttp = \"off\"\nauth_token = \"t0ken\"\nmax_batch_events = 5\nidle_timeout_secs = 0.5\n\
         request_timeout_secs = 0\nshutdown_grace_secs = 1e3\n",
    );
    write(
        "config",
        "invalid",
        "prefix = \"a:b\"\n[time]\ntimezone = \"Mars/Base\"\n[mapping]\nadd = [\"a~a\", \"\", \"b~a\", \"a~b\"]\n[limits]\nmax_value_length = 0\n",
    );
    write(
        "config",
        "zones",
        "prefix = \"z\"\n[time]\ntimezone = \"Australia/Lord_Howe\"\nstore_hourly = true\n[mapping]\nadd = [\"event\"]\ntop = [\"geo\"]\n",
    );
}

fn sketch_of(n: usize, family: SketchFamily) -> Sketch {
    let mut s = Sketch::new_in(family);
    for i in 0..n {
        s.insert(&format!("value-{i}"));
    }
    s
}

/// Format-1 sketches of both families and Redis's strings. (`format0_sketch_*`, sketches in the
/// encoding before traqq's own, were written by an earlier version of this program and are
/// kept as they are.)
fn sketches() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for n in [0, 1, 50, 700, 3000, 6000] {
        out.push((format!("sketch_{n}"), sketch_of(n, SketchFamily::Traqq).to_bytes()));
        let redis = sketch_of(n, SketchFamily::Redis);
        out.push((format!("redis_sketch_{n}"), redis.to_bytes()));
        write("sketch", &format!("redis_string_{n}"), redis.to_raw().bytes);
    }
    for (name, bytes) in &out {
        write("sketch", name, bytes);
    }
    out
}

fn map(entries: &[(&str, Option<Number>)]) -> Vec<u8> {
    let mut w = MapWriter::default();
    w.start();
    for (field, n) in entries {
        match n {
            Some(n) => w.number(field, *n),
            None => w.member(field),
        }
    }
    w.bytes().to_vec()
}

fn maps() {
    let counters = map(&[("click", Some(Number::Int(3))), ("view", Some(Number::Int(-1)))]);
    let sums = map(&[
        ("US", Some(Number::Float(1.5))),
        ("DE", Some(Number::Float(-0.0))),
    ]);
    let members = map(&[("f:add:d:0:event", None), ("f:top:d:0:geo", None)]);
    let long = "x".repeat(200);
    let long = map(&[(long.as_str(), Some(Number::Int(1)))]);
    let updates = [0x02, b'a', b'b', 0x00, 0x05, 0x01, b'c', 0x02];
    write("packed", "counters", &counters);
    write("packed", "sums", &sums);
    write("packed", "members", &members);
    write("packed", "long_field", &long);
    write("packed", "with_updates", joined(&[&counters, &updates]));
    write("packed", "empty_map", b"M");
    write("packed", "malformed", b"M\x05ab");

    let sketch = sketch_of(20, SketchFamily::Traqq).to_bytes();
    let mut stored_sketch = vec![b'S'];
    stored_sketch.extend_from_slice(&sketch);
    let mut hashes = vec![b'H'];
    for v in ["a", "b", "c"] {
        hashes.extend_from_slice(&traqq_core::sketch::hash_value(v).to_le_bytes());
    }
    write(
        "rocks_merge",
        "maps",
        with(1, joined(&[&counters, &counters, &sums])),
    );
    write("rocks_merge", "members", with(0, joined(&[&members, &members])));
    write(
        "rocks_merge",
        "sketch_hashes",
        with(1, joined(&[&stored_sketch, &hashes, &hashes])),
    );
    write(
        "rocks_merge",
        "hashes_partial",
        with(0, joined(&[b"", &hashes, &hashes])),
    );
    write(
        "rocks_merge",
        "misfits",
        with(1, joined(&[&counters, &hashes, &stored_sketch, &members])),
    );
    write(
        "rocks_merge",
        "corrupt_existing",
        with(1, joined(&[b"M\x05ab", &counters])),
    );
}

fn sled_logs() {
    let d = (BucketKind::Day, 1_699_920_000);
    let h = (BucketKind::Hour, 1_700_000_000 - 1_700_000_000 % 3600);
    let mut b = Batch::new();
    b.incr("f:add:d:1699920000:event", d, "click", Number::Int(2));
    b.incr("f:adv:d:1699920000:amount:event", d, "buy", Number::Float(9.75));
    b.zincr("f:top:h:1699999200:geo", h, "US", 3.0);
    b.hll_insert("f:bmp:d:1699920000:ip", d, "1.2.3.4");
    b.sadd("f:k:d:1699920000", d, "f:add:d:1699920000:event");
    write(
        "sled_log",
        "batch",
        with(0, traqq_sled::fuzzing::encode_log(&b).concat()),
    );

    // A real batch of the generator.
    let generator = &traqq_fuzz::generators()[1];
    let mut builder = generator.batch();
    for (_, json) in EVENTS.iter().take(6) {
        if let Ok(event) = IncomingEvent::parse_str(json) {
            let _ = builder.add(&event, traqq_fuzz::NOW);
        }
    }
    let generated = builder.finish();
    write(
        "sled_log",
        "generated",
        with(0, traqq_sled::fuzzing::encode_log(&generated).concat()),
    );
    write(
        "sled_log",
        "truncated",
        with(0, &traqq_sled::fuzzing::encode_log(&b).concat()[..20]),
    );
    write(
        "sled_log",
        "structured",
        with(
            1,
            b"\x02key\x01\x00\x05field\x00\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03",
        ),
    );
}

fn redis_replies() {
    let replies: &[(&str, &[u8])] = &[
        (
            "hgetall_resp2",
            b"*4\r\n$1\r\nn\r\n$2\r\n12\r\n$1\r\nx\r\n$3\r\n0.5\r\n",
        ),
        (
            "hgetall_resp3",
            b"%2\r\n$1\r\na\r\n$3\r\n1e3\r\n$1\r\nb\r\n$2\r\n-3\r\n",
        ),
        ("smembers", b"~2\r\n$3\r\nkey\r\n+simple\r\n"),
        ("pfcount", b":7\r\n"),
        ("pfcount_negative", b":-1\r\n"),
        (
            "ranked_resp2",
            b"*4\r\n$2\r\nUS\r\n$3\r\n5.5\r\n$2\r\nDE\r\n$3\r\ninf\r\n",
        ),
        (
            "ranked_resp3",
            b"*2\r\n*2\r\n$2\r\nUS\r\n,5.5\r\n*2\r\n$2\r\nDE\r\n,3\r\n",
        ),
        ("nil", b"$-1\r\n"),
        ("null3", b"_\r\n"),
        (
            "error",
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        ("verbatim", b"=15\r\ntxt:Some string\r\n"),
        ("bulk_hll", b"$4\r\nHYLL\r\n"),
        ("bad_utf8", b"*2\r\n$2\r\n\xff\xfe\r\n$1\r\n1\r\n"),
    ];
    for (name, bytes) in replies {
        write("redis_values", name, with(0, bytes));
    }
    write(
        "redis_values",
        "structured",
        with(1, b"\x03\x04\x02\x00\x02\x05\x02\x01\x04\x03abc"),
    );
}

fn main() {
    events();
    requests();
    bodies();
    configs();
    sketches();
    maps();
    sled_logs();
    redis_replies();
    println!("corpus written to {}/corpus", env!("CARGO_MANIFEST_DIR"));
}
