//! Shared helpers of the fuzz targets: the configs events run through, the invariants every
//! parsed event and generated batch must hold, and structured inputs (Redis replies, batches).
//!
//! A failed invariant panics, which libFuzzer reports as a crash like any other panic.

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use traqq_core::batch::{Batch, KeyOps, Number};
use traqq_core::bucket::{in_supported_range, BucketKind};
use traqq_core::config::{AddValueConfig, DistributionConfig, MappingConfig, TimeConfig, TraqqConfig};
use traqq_core::event::{EventLimits, IncomingEvent};
use traqq_core::key::{bucket_registry_key, decode_key_set_key, AdvPart, MetricKey, MetricType};
use traqq_core::ops::OpGenerator;

/// RocksDB's value codec and merge operator, compiled from its source file: it is pure Rust
/// (hashbrown, traqq-core, traqq-storage), so fuzzing it needs neither the `rocksdb` crate nor
/// the C++ library behind it.
#[allow(dead_code, unreachable_pub)]
#[path = "../../traqq-rocks/src/codec.rs"]
mod rocks_codec;

/// The key prefix of the fuzz generators.
pub const PREFIX: &str = "f";
/// The `now` events without an event time are recorded at.
pub const NOW: i64 = 1_700_000_000;

/// The mapping of the event targets: plain, compound, bitmap, add_value, top and distribution
/// patterns.
pub fn mapping() -> MappingConfig {
    MappingConfig {
        bitmap: vec!["ip".into(), "user.id".into()],
        add: vec!["event".into(), "event~geo".into(), "geo~event~os".into()],
        add_value: vec![
            AddValueConfig {
                key: "event".into(),
                add_key: "amount".into(),
            },
            AddValueConfig {
                key: "event~geo".into(),
                add_key: "amount".into(),
            },
        ],
        top: vec!["geo".into(), "page.path".into()],
        distribution: vec![DistributionConfig {
            key: "event~geo".into(),
            value_key: "amount".into(),
        }],
    }
}

/// Generators over [`mapping`]: UTC days only; and hourly buckets in zones with a 30-minute
/// DST shift (Lord Howe) and a 45-minute offset (Kathmandu).
pub fn generators() -> &'static [OpGenerator] {
    static GENERATORS: OnceLock<Vec<OpGenerator>> = OnceLock::new();
    GENERATORS.get_or_init(|| {
        [
            ("UTC", false),
            ("Australia/Lord_Howe", true),
            ("Asia/Kathmandu", true),
        ]
        .into_iter()
        .map(|(zone, hourly)| {
            let config = TraqqConfig {
                time: TimeConfig {
                    store_hourly: hourly,
                    timezone: zone.into(),
                    ..TimeConfig::default()
                },
                mapping: mapping(),
                ..TraqqConfig::default()
            };
            OpGenerator::new(&config, PREFIX).expect("the fuzz config is valid")
        })
        .collect()
    })
}

/// What every parsed event must satisfy within `limits`.
pub fn check_event(event: &IncomingEvent<'_>, limits: EventLimits) {
    let mut count = 0;
    for (name, value) in event.properties() {
        count += 1;
        assert!(
            name.len() <= limits.max_name_length,
            "property name of {} bytes kept (max_name_length {})",
            name.len(),
            limits.max_name_length
        );
        // Every kept property is found by its name (the last duplicate wins).
        assert!(event.get(name).is_some(), "property {name:?} not found by get");
        let _ = value.as_text();
        if let Some(x) = value.as_number() {
            assert!(x.is_finite(), "as_number gave {x}");
        }
    }
    assert!(
        count <= limits.max_properties,
        "{count} properties kept (max_properties {})",
        limits.max_properties
    );
    assert!(
        !event.name().trim().is_empty(),
        "an event without a name was accepted"
    );
    match event.timestamp("ts") {
        Ok(Some(ts)) => assert!(in_supported_range(ts), "timestamp {ts} out of range accepted"),
        Ok(None) => assert!(event.get("ts").is_none()),
        Err(_) => {}
    }
}

/// Runs `event` through every generator, one batch each and one batch of the event twice,
/// and checks each batch. Errors (bad event time, too many metrics) are fine.
pub fn record(event: &IncomingEvent<'_>) {
    for generator in generators() {
        if let Ok(batch) = generator.event_batch(event, NOW) {
            check_batch(PREFIX, &batch);
            let mut twice = generator.batch();
            twice.add(event, NOW).expect("the same event was accepted alone");
            twice.add(event, NOW).expect("the same event was accepted alone");
            let twice = twice.finish();
            check_batch(PREFIX, &twice);
            assert_eq!(batch.len(), twice.len(), "one event twice touches other keys");
        }
    }
}

/// What every generated batch must satisfy: each key is a metric key that decodes and
/// re-encodes to itself, a bucket's key set or the bucket registry; numbers are finite;
/// values hold no `:` and no empty `~` part.
pub fn check_batch(prefix: &str, batch: &Batch) {
    let registry = bucket_registry_key(prefix);
    for (key, entry) in batch.iter() {
        if key == registry {
            assert!(
                matches!(entry.ops, KeyOps::Members(_)),
                "registry {key:?} is not a set"
            );
            continue;
        }
        if let Some((bucket, start)) = decode_key_set_key(prefix, key) {
            assert_eq!((bucket, start), (entry.bucket, entry.bucket_start), "{key:?}");
            let KeyOps::Members(members) = &entry.ops else {
                panic!("key set {key:?} is not a set");
            };
            for member in members {
                assert!(
                    batch.get(member).is_some(),
                    "key set {key:?} names {member:?}, not in the batch"
                );
            }
            continue;
        }
        let decoded = MetricKey::decode(prefix, key)
            .unwrap_or_else(|e| panic!("generated key {key:?} does not decode: {e}"));
        assert_eq!(decoded.encode(prefix), key, "key does not round-trip");
        assert_eq!(decoded.bucket, entry.bucket, "{key:?}");
        assert_eq!(decoded.timestamp, entry.bucket_start, "{key:?}");
        let check_value = |v: &str| {
            assert!(!v.contains(':'), "value {v:?} of {key:?} holds ':'");
            assert!(
                v.split('~').all(|p| !p.is_empty()),
                "value {v:?} of {key:?} has an empty part"
            );
        };
        match &entry.ops {
            KeyOps::Hash(m) if decoded.metric == MetricType::Dst && decoded.part == AdvPart::Sums => {
                // A distribution's fields are `LABEL:BIN` / `LABEL:s`, and decode as sketches.
                for (field, n) in m {
                    let (label, _) = field
                        .split_once(':')
                        .unwrap_or_else(|| panic!("distribution field {field:?} of {key:?} has no ':'"));
                    check_value(label);
                    if let Number::Float(x) = n {
                        assert!(x.is_finite(), "{key:?} {field:?} sums to {x}");
                    }
                }
                let fields = m.iter().map(|(f, n)| (f.to_owned(), *n));
                traqq_core::distribution::sketches_from_fields(fields)
                    .unwrap_or_else(|e| panic!("{key:?} does not decode as distributions: {e}"));
            }
            KeyOps::Hash(m) => {
                for (field, n) in m {
                    check_value(field);
                    if let Number::Float(x) = n {
                        assert!(x.is_finite(), "{key:?} {field:?} sums to {x}");
                    }
                }
            }
            KeyOps::Hll(s) => s.iter().for_each(|v| check_value(v)),
            KeyOps::Scores(m) => {
                for (member, score) in m {
                    check_value(member);
                    assert!(
                        score.is_finite() && *score > 0.0,
                        "{key:?} {member:?} scores {score}"
                    );
                }
            }
            KeyOps::Members(_) => panic!("metric key {key:?} holds set members"),
        }
    }
}

/// A Redis reply built from fuzz bytes: every shape `redis::Value` has, nested at most
/// `depth` deep (deeper nesting is the same code again).
pub fn redis_value(u: &mut Unstructured<'_>, depth: u32) -> Result<redis::Value> {
    use redis::Value as V;
    let text = |u: &mut Unstructured<'_>| -> Result<String> { u.arbitrary() };
    let list = |u: &mut Unstructured<'_>| -> Result<Vec<V>> {
        let n = u.int_in_range(0..=8)?;
        (0..n).map(|_| redis_value(u, depth - 1)).collect()
    };
    let tag: u8 = u.int_in_range(0..=15)?;
    Ok(match tag {
        _ if depth == 0 && matches!(tag, 3 | 6 | 7 | 12 | 13) => V::Nil,
        0 => V::Nil,
        1 => V::Int(u.arbitrary()?),
        // Numbers as text are what most replies hold: give them a good share.
        2 => V::BulkString(number_text(u)?.into_bytes()),
        3 => V::Array(list(u)?),
        4 => V::SimpleString(text(u)?),
        5 => V::Okay,
        6 => {
            let n = u.int_in_range(0..=6)?;
            V::Map(
                (0..n)
                    .map(|_| Ok((redis_value(u, depth - 1)?, redis_value(u, depth - 1)?)))
                    .collect::<Result<_>>()?,
            )
        }
        7 => V::Set(list(u)?),
        8 => V::Double(u.arbitrary()?),
        9 => V::Boolean(u.arbitrary()?),
        10 => V::VerbatimString {
            format: redis::VerbatimFormat::Text,
            text: text(u)?,
        },
        11 => match redis::parse_redis_value(
            format!("-ERR {}\r\n", text(u)?.replace(['\r', '\n'], " ")).as_bytes(),
        ) {
            Ok(v) => v,
            Err(_) => V::Nil,
        },
        12 => V::Attribute {
            data: Box::new(redis_value(u, depth - 1)?),
            attributes: Vec::new(),
        },
        13 => V::Push {
            kind: redis::PushKind::Message,
            data: list(u)?,
        },
        _ => V::BulkString(u.arbitrary()?),
    })
}

/// Text that is often a number: an integer, a float, an edge case, or anything.
pub fn number_text(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=5)? {
        0 => u.arbitrary::<i64>()?.to_string(),
        1 => u.arbitrary::<f64>()?.to_string(),
        2 => format!("{:e}", u.arbitrary::<f64>()?),
        3 => u
            .choose(&[
                "inf",
                "-inf",
                "nan",
                "NaN",
                "+inf",
                "1e309",
                "-0",
                "0x10",
                " 1",
                "1 ",
                "",
                "9223372036854775808",
                "-9223372036854775809",
                "1_000",
                "١",
            ])?
            .to_string(),
        _ => u.arbitrary()?,
    })
}

/// A batch of arbitrary operations (keys, fields and values from the input) for round trips
/// through write-side encoders.
pub fn batch(u: &mut Unstructured<'_>) -> Result<Batch> {
    let mut b = Batch::new();
    let keys: Vec<String> = (0..u.int_in_range(1..=4)?)
        .map(|_| u.arbitrary())
        .collect::<Result<_>>()?;
    for _ in 0..u.int_in_range(0..=32)? {
        let key = u.choose(&keys)?;
        let bucket = (
            if u.arbitrary()? {
                BucketKind::Hour
            } else {
                BucketKind::Day
            },
            u.arbitrary::<i64>()?,
        );
        let field: String = u.arbitrary()?;
        match u.int_in_range(0..=4)? {
            0 => b.incr(key, bucket, &field, Number::Int(u.arbitrary()?)),
            1 => b.incr(key, bucket, &field, Number::Float(u.arbitrary()?)),
            2 => b.zincr(key, bucket, &field, u.arbitrary()?),
            3 => b.hll_insert(key, bucket, &field),
            _ => b.sadd(key, bucket, &field),
        }
    }
    Ok(b)
}

/// Equal operations, floats compared by value with NaN equal to NaN.
pub fn same_ops(a: &KeyOps, b: &KeyOps) -> bool {
    let same = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
    match (a, b) {
        (KeyOps::Hash(x), KeyOps::Hash(y)) => {
            x.len() == y.len()
                && x.iter().all(|(f, n)| match (n, y.get(f)) {
                    (Number::Int(i), Some(Number::Int(j))) => i == j,
                    (Number::Float(p), Some(Number::Float(q))) => same(*p, *q),
                    _ => false,
                })
        }
        (KeyOps::Scores(x), KeyOps::Scores(y)) => {
            x.len() == y.len() && x.iter().all(|(f, s)| y.get(f).is_some_and(|t| same(*s, *t)))
        }
        (KeyOps::Hll(x), KeyOps::Hll(y)) | (KeyOps::Members(x), KeyOps::Members(y)) => x == y,
        _ => false,
    }
}

/// RocksDB's merge operator (`traqq-rocks/src/codec.rs`, `merge`).
pub fn rocks_merge<'a>(existing: Option<&'a [u8]>, operands: &[&'a [u8]], full: bool) -> Vec<u8> {
    rocks_codec::merge(existing, operands.iter().copied(), full)
}

/// RocksDB's reader of a stored HyperLogLog (`decode_sketch`).
pub fn rocks_decode_sketch(bytes: &[u8]) -> std::result::Result<traqq_core::sketch::Sketch, String> {
    rocks_codec::decode_sketch(bytes)
}

/// RocksDB's reader of a stored map (`entries`): the entries, or the error.
pub fn rocks_entries(
    bytes: &[u8],
) -> std::result::Result<Vec<(Vec<u8>, traqq_storage::packed::Entry)>, &'static str> {
    let mut out = Vec::new();
    for item in rocks_codec::entries(bytes)? {
        let (field, entry) = item.map_err(traqq_storage::packed::DecodeError::message)?;
        out.push((field.to_vec(), entry));
    }
    Ok(out)
}

/// RocksDB's HLL operand of `values` (`encode_hashes`), for a sketch of Redis's family
/// (`redis`) or traqq's first one.
pub fn rocks_encode_hashes(values: &[String], redis: bool) -> Vec<u8> {
    let family = if redis {
        traqq_core::sketch::SketchFamily::Redis
    } else {
        traqq_core::sketch::SketchFamily::Traqq
    };
    rocks_codec::encode_hashes(family, values.iter())
}

/// An engine over a fresh memory store with the fuzz mapping, its clock at [`NOW`]: what the
/// request targets answer with.
pub fn engine() -> traqq_storage::Traqq {
    let config = TraqqConfig {
        mapping: mapping(),
        ..Default::default()
    };
    traqq_storage::Traqq::new(config, traqq_storage::MemoryStorage::new(), PREFIX)
        .expect("valid config")
        .with_clock(traqq_storage::ManualClock::new(NOW))
}
