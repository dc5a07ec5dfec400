//! Dumps (`traqq restore`, traqq-storage `dump::restore`): any bytes either restore or fail
//! with an error, never a panic; and what restores exports as a dump that restores into a
//! fresh store exporting the same text again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traqq_storage::dump::{export, restore, ExportRange, RestoreOptions};
use traqq_core::bucket::Calendar;
use traqq_core::claim::IdPolicy;
use traqq_core::config::TraqqConfig;
use traqq_storage::MemoryStorage;

fuzz_target!(|data: &[u8]| check(data));

fn export_text(store: &MemoryStorage) -> Vec<u8> {
    let mut out = Vec::new();
    export(store, "f", ExportRange::default(), &mut out).expect("a restored store exports");
    out
}

/// Sketches of another family left out; id sets claimed (`[event] id_field` set).
fn options() -> RestoreOptions {
    let mut config = TraqqConfig::default();
    config.event.id_field = Some("id".into());
    RestoreOptions {
        skip_sketches: true,
        ids: IdPolicy::new(&config).map(|policy| (policy, Calendar::new(traqq_core::bucket::Tz::UTC))),
    }
}

fn check(data: &[u8]) {
    let store = MemoryStorage::new();
    if restore(&store, "f", &mut &data[..], options()).is_err() {
        return;
    }
    let first = export_text(&store);
    let again = MemoryStorage::new();
    restore(&again, "f", &mut first.as_slice(), options()).expect("an export restores");
    assert_eq!(export_text(&again), first, "export -> restore -> export changed the dump");
}
