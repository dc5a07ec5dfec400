//! traqq-sled's write-ahead log records (`log::decode_into`, replayed on every open, and
//! `log::encode`, through the crate's fuzzing hook).
//!
//! First byte even: the rest is a log record to replay; whatever it decodes to must encode
//! and replay to the same operations. Odd: the rest builds a batch, which must survive
//! encode → replay unchanged.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use traqq_core::batch::{Batch, KeyOps};
use traqq_core::bucket::BucketKind;
use traqq_fuzz::same_ops;
use traqq_sled::fuzzing::{decode_log, encode_log};

/// Replays the concatenated log chunks of `batch`.
fn round_trip(batch: &Batch) -> Vec<(String, KeyOps)> {
    let bytes = encode_log(batch).concat();
    decode_log(&bytes).unwrap_or_else(|| panic!("the log of {batch:?} does not replay"))
}

fn assert_same(batch: &Batch, replayed: &[(String, KeyOps)]) {
    assert_eq!(replayed.len(), batch.len(), "replay has other keys");
    for (key, ops) in replayed {
        let entry = batch
            .get(key)
            .unwrap_or_else(|| panic!("replay invented key {key:?}"));
        assert!(
            same_ops(&entry.ops, ops),
            "{key:?}: {:?} replayed as {ops:?}",
            entry.ops
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Some(decoded) = decode_log(rest) else {
            return;
        };
        let mut batch = Batch::new();
        for (key, ops) in &decoded {
            batch.put(
                key,
                traqq_core::batch::KeyEntry {
                    bucket: BucketKind::Day,
                    bucket_start: 0,
                    ops: ops.clone(),
                    max_labels: 0,
                },
            );
        }
        assert_same(&batch, &round_trip(&batch));
    } else {
        let Ok(batch) = traqq_fuzz::batch(&mut Unstructured::new(rest)) else {
            return;
        };
        assert_same(&batch, &round_trip(&batch));
    }
});
