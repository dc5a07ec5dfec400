//! Value encodings.
//!
//! Store format 4: one sled tree, one sled key per traqq key.
//!
//! | traqq value | sled value |
//! |---|---|
//! | hash (`add`, `adv`), leaderboard (`top`), set (key sets) | `M` + packed map |
//! | HyperLogLog (`bmp`) | serialized [`traqq_core::sketch::Sketch`] |
//!
//! Packed maps are the layout of [`traqq_storage::packed`] (shared with traqq-rocks), their
//! entries sorted by field bytes. Folding the log into the data rewrites each touched map once,
//! merging its sorted entries with the sorted increments ([`traqq_storage::packed::fold_sorted`]:
//! one `get` and one `insert` per key, not per field).
//!
//! Log records (`0xFF` keys, see [`crate::log`]) and the format marker ([`FORMAT_KEY`], a
//! leading NUL byte) cannot collide with traqq keys, which are UTF-8 text without NUL bytes.

/// The reserved key holding the layout version.
pub(crate) const FORMAT_KEY: &[u8] = b"\0traqq\0format";
/// The layout this version writes and reads: format 2's keys and values, with sketches in
/// traqq's own encoding (`traqq_core::sketch`) and the family they keep marked (a format-4
/// store of Redis's family holds values a format-3 build would drop, so it must refuse it).
pub(crate) const FORMAT: &[u8] = b"4";
/// A layout this version opens and marks as [`FORMAT`]: the same keys and values, its sketches
/// (the encoding `hyperloglogplus` serialized) still read and union with new ones.
/// Format 3 wrote the same, before the sketch family marker (`traqq_storage::format`): a store
/// without one keeps traqq's first family.
pub(crate) const UPGRADES_IN_PLACE: [&[u8]; 2] = [b"2", b"3"];
