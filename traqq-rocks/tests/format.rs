//! The on-disk layout guard (format 4: one packed map per traqq key) against real files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use traqq_rocks::{RocksConfig, RocksStorage};
use traqq_storage::prelude::*;
use traqq_storage::traqq_core::read::Read;
use traqq_storage::Error;

#[test]
fn a_store_in_the_old_per_field_layout_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        // What format 1 wrote: one key per field, no format marker.
        let db = rocksdb::DB::open_default(&path).unwrap();
        let mut value = vec![b'i'];
        value.extend_from_slice(&7i64.to_le_bytes());
        db.put(b"app:add:d:1700000000:event\0click", value).unwrap();
    }
    let err = RocksStorage::open(&path, RocksConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("format 1"), "{text}");
}

#[test]
fn a_new_store_is_marked_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(RocksStorage::open(&path, RocksConfig::default()).unwrap());
    {
        let db = rocksdb::DB::open_default(&path).unwrap();
        assert_eq!(db.get(b"\0traqq\0format").unwrap().as_deref(), Some(&b"4"[..]));
        // A new store keeps Redis's sketch family, and says so.
        assert_eq!(
            db.get(b"\0traqq\0sketches").unwrap().as_deref(),
            Some(&b"redis"[..])
        );
    }
    drop(RocksStorage::open(&path, RocksConfig::default()).unwrap());
}

#[test]
fn a_damaged_value_is_a_corrupt_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(RocksStorage::open(&path, RocksConfig::default()).unwrap());
    let key = "app:add:d:1700000000:event";
    {
        let db = rocksdb::DB::open_default(&path).unwrap();
        // A map entry whose length runs past the end of the value.
        db.put(key.as_bytes(), b"M\x09click").unwrap();
    }
    let store = RocksStorage::open(&path, RocksConfig::default()).unwrap();
    for read in [
        Read::Hash(key.into()),
        Read::Members(key.into()),
        Read::Count(vec![key.into()]),
    ] {
        let err = store.read(&[read]).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn a_store_of_a_newer_format_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(RocksStorage::open(&path, RocksConfig::default()).unwrap());
    {
        let db = rocksdb::DB::open_default(&path).unwrap();
        db.put(b"\0traqq\0format", b"5").unwrap();
    }
    let err = RocksStorage::open(&path, RocksConfig::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("format 5 was written by a newer traqq") && text.contains("reads format 4"),
        "{text}"
    );
}

#[test]
fn a_format_2_store_opens_counts_its_old_sketches_and_is_re_marked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(RocksStorage::open(&path, RocksConfig::default()).unwrap());
    // Ten values ("value-0".."value-9") in the encoding format 2 stored (format-0 sketch bytes).
    let old = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../traqq-core/tests/golden/sketch_format0_sparse.bin"
    ))
    .unwrap();
    let key = "app:bmp:d:1700000000:ip";
    {
        let db = rocksdb::DB::open_default(&path).unwrap();
        db.put(b"\0traqq\0format", b"2").unwrap();
        // Format 2 stores recorded no sketch family: they keep traqq's first one.
        db.delete(b"\0traqq\0sketches").unwrap();
        db.put(key.as_bytes(), [&b"S"[..], &old].concat()).unwrap();
    }
    let store = RocksStorage::open(&path, RocksConfig::default()).unwrap();
    let count = |store: &RocksStorage| match store.read(&[Read::Count(vec![key.into()])]).unwrap().remove(0) {
        traqq_storage::traqq_core::read::ReadResult::Count(n) => n,
        other => panic!("{other:?}"),
    };
    assert_eq!(count(&store), 10);
    drop(store);
    {
        let db = rocksdb::DB::open_default(&path).unwrap();
        assert_eq!(db.get(b"\0traqq\0format").unwrap().as_deref(), Some(&b"4"[..]));
        assert_eq!(
            db.get(b"\0traqq\0sketches").unwrap().as_deref(),
            None,
            "an old store keeps its family"
        );
    }
    assert_eq!(
        count(&RocksStorage::open(&path, RocksConfig::default()).unwrap()),
        10
    );
}
