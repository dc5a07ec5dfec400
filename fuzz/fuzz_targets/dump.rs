//! Dumps (`traqq restore`, traqq-storage `dump::restore`): any bytes either restore or fail
//! with an error, never a panic; and what restores exports as a dump that restores into a
//! fresh store exporting the same text again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traqq_storage::dump::{export, restore, ExportRange, RestoreOptions};
use traqq_storage::MemoryStorage;

fuzz_target!(|data: &[u8]| traqq_fuzz::run_checked(|| check(data)));

fn export_text(store: &MemoryStorage) -> Vec<u8> {
    let mut out = Vec::new();
    export(store, "f", ExportRange::default(), &mut out).expect("a restored store exports");
    out
}

fn check(data: &[u8]) {
    let store = MemoryStorage::new();
    let options = RestoreOptions { skip_sketches: true };
    if restore(&store, "f", &mut &data[..], options).is_err() {
        return;
    }
    let first = export_text(&store);
    let again = MemoryStorage::new();
    restore(&again, "f", &mut first.as_slice(), options).expect("an export restores");
    assert_eq!(export_text(&again), first, "export -> restore -> export changed the dump");
}
