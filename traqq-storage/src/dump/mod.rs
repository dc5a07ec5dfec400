//! Dumps: a store's metrics as NDJSON, written by [`export`] and read back by [`restore`]
//! (`traqq export` / `traqq restore`), to back a store up or move it to another backend.
//!
//! ```text
//! {"traqq_dump":1,"prefix":"myapp","sketches":"traqq"}
//! {"bucket":"d","start":1764201600,"key":"myapp:add:d:1764201600:event","hash":{"buy":2,"view":9}}
//! {"bucket":"d","start":1764201600,"key":"myapp:adv:d:1764201600:amount:event","hash":{"buy":19.5}}
//! {"bucket":"d","start":1764201600,"key":"myapp:top:d:1764201600:geo","top":{"US":5.0,"DE":4.0}}
//! {"bucket":"d","start":1764201600,"key":"myapp:bmp:d:1764201600:ip","sketch":"AQ4..."}
//! {"bucket":"d","start":1764201600,"key":"myapp:ids:d:1764201600","ids":"3q2+7..."}
//! ```
//!
//! The first line names the dump format, the prefix and the family of the unique-count
//! sketches ([`SketchFamily`]); then one line per stored key, buckets oldest first, then the
//! id sets of exactly-once ingest (`[event] id_field`, [`traqq_core::claim`]), oldest first,
//! their ids as 16 big-endian bytes each, in order, in base64. Counters
//! are JSON integers and sums JSON numbers with a fraction or exponent (`5.0`), written and
//! read back exactly (shortest round-trip form; infinities as `"inf"`/`"-inf"`); leaderboards
//! list members best first; sketches are the stored bytes in base64. Exporting a store and
//! restoring the dump into an empty one gives a store whose own export is the same text.
//!
//! Sketches move only between stores of the same family: Redis's HyperLogLogs and traqq's
//! hash values differently, and the values themselves are not kept. [`RestoreOptions`] can
//! leave them out to move everything else.

mod export;
mod restore;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use traqq_core::bucket::Calendar;
use traqq_core::claim::IdPolicy;
use traqq_core::read::{Read, ReadResult};
use traqq_core::sketch::SketchFamily;

pub use export::export;
pub use restore::restore;

use crate::{Error, Result, Storage};

/// The dump format this version writes and reads.
pub const DUMP_FORMAT: u32 = 1;

/// Keys read from the store in one call while exporting.
const READ_CHUNK: usize = 256;
/// Ids of one id set per dump line (2.8 MB of base64): a busy day's set spans several lines,
/// so no line has to be held whole in memory at gigabyte size.
const IDS_PER_LINE: usize = 131_072;
/// Operations restored in one batch.
const RESTORE_OPS: usize = 20_000;
/// Sketches restored in one call.
const RESTORE_SKETCHES: usize = 256;

/// What an export or a restore moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Buckets (days, hours, quarter hours).
    pub buckets: usize,
    /// Keys, sketches included.
    pub keys: usize,
    /// Of those, unique-count sketches.
    pub sketches: usize,
    /// Sketches a restore left out ([`RestoreOptions::skip_sketches`]).
    pub skipped_sketches: usize,
    /// Id sets of exactly-once ingest (one per day).
    pub id_sets: usize,
    /// The ids in them.
    pub ids: usize,
    /// Id sets a restore left out (no [`RestoreOptions::ids`]: the target does not dedupe).
    pub skipped_id_sets: usize,
}

/// Which buckets [`export`] writes: those starting within `from..=to` (unix seconds; `None`:
/// unbounded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportRange {
    /// Earliest bucket start.
    pub from: Option<i64>,
    /// Latest bucket start.
    pub to: Option<i64>,
}

impl ExportRange {
    fn holds(self, start: i64) -> bool {
        self.from.is_none_or(|f| start >= f) && self.to.is_none_or(|t| start <= t)
    }
}

/// How [`restore`] treats what it cannot restore exactly, and how it claims event ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Restore everything but the unique-count sketches when the dump's sketches are of
    /// another family than the store's (otherwise that is an error before anything is
    /// written).
    pub skip_sketches: bool,
    /// The target's `[event] id_field` policy and its calendar: the dump's id sets are claimed
    /// under them (kept, and on Redis expiring, as `dedup_days` says). `None` (no `id_field`):
    /// they are left out and counted in [`DumpSummary::skipped_id_sets`].
    pub ids: Option<(IdPolicy, Calendar)>,
}

fn dump_error(message: impl Into<String>) -> Error {
    Error::Dump(message.into())
}

fn write_error(e: std::io::Error) -> Error {
    dump_error(format!("writing the dump: {e}"))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header<'a> {
    traqq_dump: u32,
    #[serde(borrow)]
    prefix: Cow<'a, str>,
    sketches: Option<SketchFamily>,
}

fn members(storage: &dyn Storage, key: &str) -> Result<Vec<String>> {
    match storage.read(&[Read::Members(key.to_owned())])?.pop() {
        Some(ReadResult::Members(m)) => Ok(m),
        other => Err(dump_error(format!(
            "the store answered the set {key:?} with a {} answer",
            other.as_ref().map_or("missing", ReadResult::kind)
        ))),
    }
}
