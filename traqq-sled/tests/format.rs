//! The on-disk layout guard (format 4: one packed map per traqq key) against real files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use traqq_sled::{SledConfig, SledStorage};
use traqq_storage::prelude::*;
use traqq_storage::traqq_core::read::Read;
use traqq_storage::Error;

#[test]
fn a_store_in_the_old_per_field_layout_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        // What format 1 wrote: one key per field, no format marker.
        let db = sled::open(&path).unwrap();
        let mut value = vec![b'i'];
        value.extend_from_slice(&7i64.to_le_bytes());
        db.insert(b"app:add:d:1700000000:event\0click", value).unwrap();
        db.flush().unwrap();
    }
    let err = SledStorage::open(&path, SledConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("format 1"), "{text}");
}

#[test]
fn a_new_store_is_marked_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(SledStorage::open(&path, SledConfig::default()).unwrap());
    {
        let db = sled::open(&path).unwrap();
        assert_eq!(db.get(b"\0traqq\0format").unwrap().as_deref(), Some(&b"4"[..]));
        // A new store keeps Redis's sketch family, and says so.
        assert_eq!(
            db.get(b"\0traqq\0sketches").unwrap().as_deref(),
            Some(&b"redis"[..])
        );
    }
    drop(SledStorage::open(&path, SledConfig::default()).unwrap());
}

#[test]
fn a_damaged_value_is_a_corrupt_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(SledStorage::open(&path, SledConfig::default()).unwrap());
    let key = "app:add:d:1700000000:event";
    {
        let db = sled::open(&path).unwrap();
        // A map entry whose length runs past the end of the value.
        db.insert(key.as_bytes(), &b"M\x09click"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = SledStorage::open(&path, SledConfig::default()).unwrap();
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
    drop(SledStorage::open(&path, SledConfig::default()).unwrap());
    {
        let db = sled::open(&path).unwrap();
        db.insert(b"\0traqq\0format", &b"5"[..]).unwrap();
        db.flush().unwrap();
    }
    let err = SledStorage::open(&path, SledConfig::default()).unwrap_err();
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
    drop(SledStorage::open(&path, SledConfig::default()).unwrap());
    // Ten values ("value-0".."value-9") in the encoding format 2 stored (format-0 sketch bytes).
    let old = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../traqq-core/tests/golden/sketch_format0_sparse.bin"
    ))
    .unwrap();
    let key = "app:bmp:d:1700000000:ip";
    {
        let db = sled::open(&path).unwrap();
        db.insert(b"\0traqq\0format", &b"2"[..]).unwrap();
        // Format 2 stores recorded no sketch family: they keep traqq's first one.
        db.remove(b"\0traqq\0sketches").unwrap();
        db.insert(key.as_bytes(), old).unwrap();
        db.flush().unwrap();
    }
    let count = |store: &SledStorage| match store.read(&[Read::Count(vec![key.into()])]).unwrap().remove(0) {
        traqq_storage::traqq_core::read::ReadResult::Count(n) => n,
        other => panic!("{other:?}"),
    };
    let store = SledStorage::open(&path, SledConfig::default()).unwrap();
    assert_eq!(count(&store), 10);
    drop(store);
    {
        let db = sled::open(&path).unwrap();
        assert_eq!(db.get(b"\0traqq\0format").unwrap().as_deref(), Some(&b"4"[..]));
        assert_eq!(
            db.get(b"\0traqq\0sketches").unwrap().as_deref(),
            None,
            "an old store keeps its family"
        );
    }
    assert_eq!(
        count(&SledStorage::open(&path, SledConfig::default()).unwrap()),
        10
    );
}
