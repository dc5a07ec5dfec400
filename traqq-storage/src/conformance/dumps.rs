//! Export and restore: stored sketches move whole ([`Storage::read_sketches`],
//! [`Storage::write_sketches`]), and a dump restored under another prefix exports as the same
//! text.

use std::collections::BTreeSet;

use traqq_core::batch::{Batch, Number};
use traqq_core::config::{DistributionConfig, TimeConfig, TraqqConfig};
use traqq_core::ops::OpGenerator;
use traqq_core::sketch::{KeySketch, RawSketch, SketchFamily};

use super::claims::{claims, policy, today, utc};
use super::{fresh_prefix, key, sample_config, sample_events, DAY, SAMPLE_NOW};
use crate::dump::{export, restore, ExportRange, RestoreOptions};
use crate::storage::{Storage, StorageExt};

/// Every check of this module.
pub fn run_all(storage: &dyn Storage) {
    raw_sketches_move_whole(storage);
    export_and_restore_round_trip(storage);
    dumps_move_to_and_from_the_memory_store(storage);
    id_sets_move_with_the_dump(storage);
}

/// A sketch read whole and written under another key reads back as the same bytes and
/// counts the same; writing replaces what the key held; bytes of another family or that are
/// no sketch are refused before anything is written, a key of another type is refused.
pub fn raw_sketches_move_whole(storage: &dyn Storage) {
    let family = storage
        .capabilities()
        .sketches
        .expect("the store names the family of the sketches it moves");
    let p = fresh_prefix("rawsketch");
    let (a, b, c, d) = (
        key(&p, "bmp", "ip"),
        key(&p, "bmp", "visitor"),
        key(&p, "bmp", "geo"),
        key(&p, "bmp", "offer"),
    );
    let hash = key(&p, "add", "event");
    let mut batch = Batch::new();
    for i in 0..3_000 {
        batch.hll_insert(&a, DAY, &format!("user-{i}"));
    }
    for i in 0..10 {
        batch.hll_insert(&c, DAY, &format!("other-{i}"));
    }
    batch.incr(&hash, DAY, "view", Number::Int(3));
    storage.apply(&batch).unwrap();

    let read = storage.read_sketches(&[a.clone(), d.clone()]).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1], None, "a missing key has no sketch");
    let raw = read[0].clone().expect("the written key has a sketch");
    assert_eq!(raw.family, family);
    let entry = |key: &str, sketch: &RawSketch| KeySketch {
        key: key.to_owned(),
        bucket: DAY,
        sketch: sketch.clone(),
    };
    storage
        .write_sketches(&[entry(&b, &raw), entry(&c, &raw)])
        .unwrap();
    let moved = storage.read_sketches(&[b.clone(), c.clone()]).unwrap();
    assert_eq!(moved[0].as_ref(), Some(&raw), "same bytes under the new key");
    assert_eq!(
        moved[1].as_ref(),
        Some(&raw),
        "writing replaced the sketch the key held"
    );
    let n = storage.count(&[&a]).unwrap();
    assert!((2_900..=3_100).contains(&n), "{n}");
    assert_eq!(storage.count(&[&b]).unwrap(), n);
    assert_eq!(storage.count(&[&c]).unwrap(), n, "no union with what c held");
    assert_eq!(storage.count(&[&a, &b, &c]).unwrap(), n, "the same values");

    let foreign = RawSketch {
        family: match family {
            SketchFamily::Traqq => SketchFamily::Redis,
            SketchFamily::Redis => SketchFamily::Traqq,
        },
        bytes: raw.bytes.clone(),
    };
    let garbage = RawSketch {
        family,
        bytes: b"HYLL not a sketch at all".to_vec(),
    };
    for bad in [&foreign, &garbage] {
        let e = storage
            .write_sketches(&[entry(&d, &raw), entry(&b, bad)])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&b), "the error names the key: {e}");
        assert_eq!(
            storage.read_sketches(std::slice::from_ref(&d)).unwrap(),
            vec![None],
            "nothing of a refused call is written"
        );
    }
    let e = storage
        .write_sketches(&[entry(&hash, &raw)])
        .unwrap_err()
        .to_string();
    assert!(e.contains(&hash), "the error names the key: {e}");
    assert_eq!(
        storage.read_hash(&hash).unwrap(),
        vec![("view".to_owned(), Number::Int(3))]
    );
}

fn dump_config() -> TraqqConfig {
    let mut config = sample_config();
    config.mapping.distribution = vec![DistributionConfig {
        key: "event".into(),
        value_key: "amount".into(),
    }];
    config.time = TimeConfig {
        store_hourly: true,
        ..TimeConfig::default()
    };
    config
}

/// Records the sample events under `prefix`; returns the hours they fall in (ground truth).
fn fill(storage: &dyn Storage, prefix: &str) -> BTreeSet<i64> {
    let generator = OpGenerator::new(&dump_config(), prefix).unwrap();
    let events = sample_events(600);
    let mut builder = generator.batch();
    for e in &events {
        builder.add(e, SAMPLE_NOW).unwrap();
    }
    storage.apply(&builder.finish()).unwrap();
    events
        .iter()
        .map(|e| e.timestamp("ts").unwrap().unwrap() / 3_600 * 3_600)
        .collect()
}

fn export_text(storage: &dyn Storage, prefix: &str) -> String {
    let mut out = Vec::new();
    export(storage, prefix, ExportRange::default(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Asserts two lists of dump lines hold the same values, showing the first difference (dumps
/// are long). Numbers compare by value: Redis keeps them as text, so a float sum that happens
/// to be whole (`178.0`) reads back from it as an integer (`178`).
pub fn same_lines(got: &[&str], want: &[&str], what: &str) {
    let differ = |g: &str, w: &str| g != w && numbers_as_floats(g) != numbers_as_floats(w);
    if let Some((i, (g, w))) = got.iter().zip(want).enumerate().find(|(_, (g, w))| differ(g, w)) {
        panic!("{what}: line {i} differs:\n got: {g}\nwant: {w}");
    }
    assert_eq!(got.len(), want.len(), "{what}: line counts");
}

fn numbers_as_floats(line: &str) -> serde_json::Value {
    fn walk(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Number(n) => serde_json::json!(n.as_f64()),
            serde_json::Value::Object(m) => m.into_iter().map(|(k, v)| (k, walk(v))).collect(),
            other => other,
        }
    }
    walk(serde_json::from_str(line).unwrap())
}

/// The key lines of a dump, sketches left out.
pub fn without_sketches(dump: &str) -> Vec<&str> {
    dump.lines()
        .skip(1)
        .filter(|l| !l.contains("\"sketch\":"))
        .collect()
}

/// Dumps move between this store and memory stores of both sketch families, both ways. Within
/// one family everything comes back: the target's export is the source's, sketches register
/// for register (a Redis store may hold Redis's sparse string where another store writes the
/// dense one), and every unique count is the source's exactly. Across families a restore is
/// refused before anything is written, and with `skip_sketches` all but the sketches come back.
pub fn dumps_move_to_and_from_the_memory_store(storage: &dyn Storage) {
    let family = storage.capabilities().sketches;
    for memory_family in [SketchFamily::Traqq, SketchFamily::Redis] {
        let memory = crate::MemoryStorage::with_sketches(memory_family);
        let p = fresh_prefix("moved");
        fill(&memory, &p);
        let from_memory = export_text(&memory, &p);
        let other = fresh_prefix("filled");
        fill(storage, &other);
        let from_store = export_text(storage, &other);
        let from_memory_here = from_memory.replace(&p, &other);
        same_lines(
            &without_sketches(&from_store),
            &without_sketches(&from_memory_here),
            "the same events store the same counters, sums and leaderboards",
        );
        let back_in_memory = crate::MemoryStorage::with_sketches(memory_family);
        if family == Some(memory_family) {
            restore(
                storage,
                &p,
                &mut from_memory.as_bytes(),
                RestoreOptions::default(),
            )
            .unwrap();
            same_dumps(&export_text(storage, &p), &from_memory, "memory -> this store");
            same_counts(storage, &memory, &from_memory, "memory -> this store");
            restore(
                &back_in_memory,
                &other,
                &mut from_store.as_bytes(),
                RestoreOptions::default(),
            )
            .unwrap();
            same_dumps(
                &export_text(&back_in_memory, &other),
                &from_store,
                "this store -> memory",
            );
            same_counts(&back_in_memory, storage, &from_store, "this store -> memory");
            continue;
        }
        for (target, dump, prefix) in [
            (storage, &from_memory, &p),
            (&back_in_memory as &dyn Storage, &from_store, &other),
        ] {
            let e = restore(target, prefix, &mut dump.as_bytes(), RestoreOptions::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("--skip-sketches"), "{e}");
            assert_eq!(
                export_text(target, prefix).lines().count(),
                1,
                "nothing was written"
            );
            let options = RestoreOptions {
                skip_sketches: true,
                ..RestoreOptions::default()
            };
            let summary = restore(target, prefix, &mut dump.as_bytes(), options).unwrap();
            assert!(
                summary.skipped_sketches > 0 && summary.sketches == 0,
                "{summary:?}"
            );
            same_lines(
                &without_sketches(&export_text(target, prefix)),
                &without_sketches(dump),
                "all but the sketches restored",
            );
        }
    }
}

/// The sketches of a dump: (key line without its sketch, the sketch decoded).
fn sketches_of(dump: &str) -> Vec<(serde_json::Value, traqq_core::sketch::Sketch)> {
    let header: serde_json::Value = serde_json::from_str(dump.lines().next().unwrap()).unwrap();
    let family = SketchFamily::from_name(header["sketches"].as_str().unwrap()).unwrap();
    dump.lines()
        .skip(1)
        .filter(|l| l.contains("\"sketch\":"))
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = value["sketch"].take();
            let bytes = data_encoding::BASE64
                .decode(text.as_str().unwrap().as_bytes())
                .unwrap();
            let sketch = traqq_core::sketch::Sketch::from_raw(&RawSketch { family, bytes }).unwrap();
            (value, sketch)
        })
        .collect()
}

/// Asserts two dumps hold the same lines, sketches compared by their registers.
pub fn same_dumps(got: &str, want: &str, what: &str) {
    // Headers: the same version and sketch family (the prefix is the source's own).
    let header = |dump: &str| {
        let mut h: serde_json::Value = serde_json::from_str(dump.lines().next().unwrap()).unwrap();
        h["prefix"].take();
        h
    };
    assert_eq!(header(got), header(want), "{what}: headers");
    same_lines(&without_sketches(got), &without_sketches(want), what);
    let (got, want) = (sketches_of(got), sketches_of(want));
    assert!(!want.is_empty(), "{what}: the dump holds sketches");
    assert_eq!(got.len(), want.len(), "{what}: sketch lines");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0, "{what}: sketch keys");
        assert_eq!(g.1, w.1, "{what}: the sketch of {}", w.0["key"]);
    }
}

/// Asserts every sketch key of `dump` counts the same in `target` (restored from it) as in
/// `source`.
fn same_counts(target: &dyn Storage, source: &dyn Storage, dump: &str, what: &str) {
    for (line, _) in sketches_of(dump) {
        let key = line["key"].as_str().unwrap();
        let (got, want) = (target.count(&[key]).unwrap(), source.count(&[key]).unwrap());
        assert!(want > 0);
        assert_eq!(got, want, "{what}: the count of {key}");
    }
}

/// A store's export restored under a fresh prefix of the same store exports as the same text
/// (prefix aside): every counter, sum, leaderboard, distribution and sketch identical. Restoring
/// into a prefix that holds data is refused; a range exports only its buckets; a damaged line
/// is an error naming it.
pub fn export_and_restore_round_trip(storage: &dyn Storage) {
    let (p1, p2) = (fresh_prefix("exported"), fresh_prefix("restored"));
    let hours = fill(storage, &p1);
    let days: BTreeSet<i64> = hours.iter().map(|h| h / 86_400 * 86_400).collect();

    let mut dump = Vec::new();
    let exported = export(storage, &p1, ExportRange::default(), &mut dump).unwrap();
    let text = String::from_utf8(dump.clone()).unwrap();
    assert_eq!(exported.buckets, days.len() + hours.len(), "{exported:?}");
    assert!(
        exported.sketches > 0 && exported.keys > exported.sketches,
        "{exported:?}"
    );
    assert_eq!(
        text.lines().count(),
        exported.keys + 1,
        "a header and a line per key"
    );
    for kind in ["\"hash\"", "\"top\"", "\"sketch\"", ":dst:", ":adv:", ":h:"] {
        assert!(text.contains(kind), "the dump holds {kind}");
    }

    let restored = restore(storage, &p2, &mut dump.as_slice(), RestoreOptions::default()).unwrap();
    assert_eq!(
        (restored.buckets, restored.keys, restored.sketches),
        (exported.buckets, exported.keys, exported.sketches)
    );
    let mut again = Vec::new();
    export(storage, &p2, ExportRange::default(), &mut again).unwrap();
    let again = String::from_utf8(again).unwrap();
    assert_eq!(
        again,
        text.replace(&p1, &p2),
        "the restored store exports the same dump"
    );
    let (add1, add2) = (key(&p1, "add", "event"), key(&p2, "add", "event"));
    let (mut h1, mut h2) = (
        storage.read_hash(&add1).unwrap(),
        storage.read_hash(&add2).unwrap(),
    );
    h1.sort_by(|a, b| a.0.cmp(&b.0));
    h2.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!h1.is_empty());
    assert_eq!(h1, h2);

    let e = restore(storage, &p2, &mut dump.as_slice(), RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("already holds") && e.contains(&p2), "{e}");

    let day = DAY.1 + 86_400;
    let mut one_day = Vec::new();
    let range = ExportRange {
        from: Some(day),
        to: Some(day + 86_399),
    };
    let part = export(storage, &p1, range, &mut one_day).unwrap();
    assert_eq!(part.buckets, 1 + hours.range(day..day + 86_400).count());
    for line in String::from_utf8(one_day).unwrap().lines().skip(1) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let start = v["start"].as_i64().unwrap();
        assert!((day..day + 86_400).contains(&start), "{line}");
    }

    let p3 = fresh_prefix("damaged");
    let mut lines: Vec<&str> = text.lines().collect();
    let broken = lines[2].replacen("\"start\":", "\"start\":\"x", 1);
    lines[2] = &broken;
    let damaged = lines.join("\n");
    let e = restore(storage, &p3, &mut damaged.as_bytes(), RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("dump line 3"), "{e}");
}

/// The id sets of exactly-once ingest move with a dump: restored with the target's id policy,
/// the target refuses the ids the source had claimed (and exports the same id lines);
/// restored without one, they are left out and counted.
pub fn id_sets_move_with_the_dump(storage: &dyn Storage) {
    let (p1, p2, p3) = (
        fresh_prefix("ids_from"),
        fresh_prefix("ids_to"),
        fresh_prefix("ids_none"),
    );
    let (today, yesterday) = (today(), today() - 86_400);
    let registered = |prefix: &str, days: &[i64]| {
        let mut batch = Batch::new();
        let registry = traqq_core::key::id_registry_key(prefix);
        for &day in days {
            let set = traqq_core::key::id_set_key(prefix, day);
            batch.sadd(&registry, (traqq_core::bucket::BucketKind::Day, day), &set);
        }
        batch
    };
    let many: Vec<u128> = (1..=2_000).map(|i| i * 0x9e37_79b9_7f4a_7c15).collect();
    for (day, ids) in [(today, &many[..]), (yesterday, &[5, u128::MAX][..])] {
        let seen = storage
            .apply_claimed(&registered(&p1, &[day]), &claims(&p1, day, ids))
            .unwrap();
        assert!(seen.is_empty());
    }

    let mut dump = Vec::new();
    let exported = export(storage, &p1, ExportRange::default(), &mut dump).unwrap();
    assert_eq!((exported.id_sets, exported.ids), (2, 2_002), "{exported:?}");
    let text = String::from_utf8(dump).unwrap();
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains(&format!("\"start\":{yesterday}")) && lines[0].contains("\"ids\""),
        "oldest day first: {}",
        lines[0]
    );

    let options = RestoreOptions {
        ids: Some((policy(), utc())),
        ..RestoreOptions::default()
    };
    let restored = restore(storage, &p2, &mut text.as_bytes(), options).unwrap();
    assert_eq!((restored.id_sets, restored.ids), (2, 2_002), "{restored:?}");
    assert_eq!(export_text(storage, &p2), text.replace(&p1, &p2));
    let (batch, k) = (Batch::new(), key(&p2, "add", "event"));
    let seen = storage
        .apply_claimed(&batch, &claims(&p2, today, &[many[1_999], 1]))
        .unwrap();
    assert_eq!(
        seen.iter().map(|s| s.id).collect::<Vec<_>>(),
        [many[1_999]],
        "the restored store knows the source's ids, and only those"
    );
    assert!(storage.read_hash(&k).unwrap().is_empty());
    let seen = storage
        .apply_claimed(&Batch::new(), &claims(&p2, yesterday, &[u128::MAX]))
        .unwrap();
    assert_eq!(seen.len(), 1, "yesterday's set came too");

    let skipped = restore(storage, &p3, &mut text.as_bytes(), RestoreOptions::default()).unwrap();
    assert_eq!((skipped.id_sets, skipped.skipped_id_sets), (0, 2), "{skipped:?}");
    assert_eq!(export_text(storage, &p3).lines().count(), 1);
    assert!(storage
        .apply_claimed(&Batch::new(), &claims(&p3, today, &[many[0]]))
        .unwrap()
        .is_empty());
}
