//! The write-ahead log of batches: how a [`Batch`] is stored as log records in sled.
//!
//! A batch is encoded once and written under `0xFF, seq (u64 BE), chunk (u32 BE)` keys; the
//! chunks keep every sled value below its blob threshold. `0xFF` never occurs in UTF-8, so log
//! keys cannot collide with traqq keys.
//!
//! ```text
//! entry  := kind:u8 (h|l|z|s) bucket:u8 (d|h) start:i64 key:str count:varint item*
//! item   := field:str number (h) | member:str f64 (z) | value:str (l, s)
//! number := 'i' zigzag-varint | 'f' f64
//! str    := len:varint bytes
//! ```
//!
//! Varints keep the record small (most fields are short and most counts are small): every byte
//! logged is copied into sled's buffers, written and fsynced before a `batch` write returns.

use traqq_core::batch::{Batch, KeyOps};
use traqq_core::bucket::BucketKind;

use traqq_core::batch::Number;

use crate::overlay::{self, Overlay};

/// First byte of every log key.
pub(crate) const LOG: u8 = 0xFF;
/// Largest log value (sled moves values over ~128 KiB to separate blob files).
const CHUNK: usize = 64 << 10;

/// The key of chunk `chunk` of batch `seq`.
pub(crate) fn log_key(seq: u64, chunk: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = LOG;
    k[1..9].copy_from_slice(&seq.to_be_bytes());
    k[9..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// Splits a log key into `(seq, chunk)`.
pub(crate) fn parse_log_key(k: &[u8]) -> Option<(u64, u32)> {
    if k.len() != 13 || k[0] != LOG {
        return None;
    }
    Some((
        u64::from_be_bytes(k[1..9].try_into().ok()?),
        u32::from_be_bytes(k[9..].try_into().ok()?),
    ))
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_number(out: &mut Vec<u8>, n: Number) {
    match n {
        Number::Int(i) => {
            out.push(b'i');
            put_varint(out, ((i << 1) ^ (i >> 63)) as u64);
        }
        Number::Float(x) => {
            out.push(b'f');
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// Encodes `batch` and splits it into log chunks.
pub(crate) fn encode(batch: &Batch) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.op_count() * 24 + 64);
    for (key, entry) in batch.iter() {
        let kind = match &entry.ops {
            KeyOps::Hash(_) => b'h',
            KeyOps::Hll(_) => b'l',
            KeyOps::Scores(_) => b'z',
            KeyOps::Members(_) => b's',
        };
        out.push(kind);
        out.push(entry.bucket.as_str().as_bytes().first().copied().unwrap_or(b'd'));
        out.extend_from_slice(&entry.bucket_start.to_le_bytes());
        put_str(&mut out, key);
        put_varint(&mut out, entry.ops.len() as u64);
        match &entry.ops {
            KeyOps::Hash(m) => m.iter().for_each(|(f, n)| {
                put_str(&mut out, f);
                put_number(&mut out, *n);
            }),
            KeyOps::Scores(m) => m.iter().for_each(|(f, s)| {
                put_str(&mut out, f);
                out.extend_from_slice(&s.to_le_bytes());
            }),
            KeyOps::Hll(s) | KeyOps::Members(s) => s.iter().for_each(|v| put_str(&mut out, v)),
        }
    }
    out.chunks(CHUNK).map(<[u8]>::to_vec).collect()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }
    fn number(&mut self) -> Option<Number> {
        match self.u8()? {
            b'i' => {
                let z = self.varint()?;
                Some(Number::Int((z >> 1) as i64 ^ -((z & 1) as i64)))
            }
            b'f' => Some(Number::Float(self.f64()?)),
            _ => None,
        }
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// Decodes the concatenated chunks of one batch and folds it into `into`.
pub(crate) fn decode_into(bytes: &[u8], into: &mut Overlay) -> Option<()> {
    let mut r = Reader(bytes);
    while !r.0.is_empty() {
        let kind = r.u8()?;
        let bucket = match r.u8()? {
            b'd' => BucketKind::Day,
            b'h' => BucketKind::Hour,
            _ => return None,
        };
        let b = (bucket, r.i64()?);
        let key = r.str()?;
        let empty = match kind {
            b'h' => overlay::hash,
            b'z' => overlay::scores,
            b'l' => overlay::hll,
            b's' => overlay::members,
            _ => return None,
        };
        let ops = into.slot(key, b, empty);
        for _ in 0..r.varint()? {
            match kind {
                b'h' => {
                    let f = r.str()?;
                    ops.incr(f, r.number()?);
                }
                b'z' => {
                    let m = r.str()?;
                    ops.zincr(m, r.f64()?);
                }
                _ => ops.insert(r.str()?),
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use traqq_core::batch::Number;

    #[test]
    fn batches_round_trip_through_chunks() {
        let d = (BucketKind::Day, 1_700_006_400);
        let h = (BucketKind::Hour, 1_700_010_000);
        let mut b = Batch::new();
        for i in 0..20_000 {
            let n = if i % 2 == 0 { i } else { -i * 1_000_000_007 };
            b.incr("p:add:d:1:event", d, &format!("f{i}"), Number::Int(n));
            b.incr("p:adv:h:1:amount:event:i", h, "sum", Number::Float(0.5));
        }
        b.incr("p:add:d:1:event", d, "min", Number::Int(i64::MIN));
        b.incr("p:add:d:1:event", d, "max", Number::Int(i64::MAX));
        b.incr("p:add:d:1:event", d, &"long".repeat(100), Number::Int(1));
        b.zincr("p:top:d:1:geo", d, "US", 2.5);
        b.hll_insert("p:bmp:d:1:ip", d, "1.2.3.4");
        b.sadd("p:k:d:1", d, "p:add:d:1:event");
        let chunks = encode(&b);
        assert!(chunks.len() > 1 && chunks.iter().all(|c| c.len() <= CHUNK));
        let mut back = Overlay::default();
        decode_into(&chunks.concat(), &mut back).unwrap();
        assert_eq!(back.to_batch(), b);
        let mut merged = Overlay::default();
        merged.add(&b);
        assert_eq!(merged.to_batch(), b);
        // Adding twice doubles the increments and keeps the sets.
        merged.add(&b);
        let mut twice = b.clone();
        for (key, e) in b.iter() {
            if let KeyOps::Hash(m) = &e.ops {
                m.iter()
                    .for_each(|(f, n)| twice.incr(key, (e.bucket, e.bucket_start), f, *n));
            }
            if let KeyOps::Scores(m) = &e.ops {
                m.iter()
                    .for_each(|(f, s)| twice.zincr(key, (e.bucket, e.bucket_start), f, *s));
            }
        }
        assert_eq!(merged.to_batch(), twice);
        assert!(decode_into(&chunks.concat()[..100], &mut Overlay::default()).is_none());
        assert_eq!(parse_log_key(&log_key(7, 3)), Some((7, 3)));
    }

    /// A log record written by this version (`tests/golden/log_record.bin`, written once with
    /// `TRAQQ_WRITE_GOLDEN=1`) keeps decoding to the same batch: a store left with unfolded
    /// records by one version must replay them in the next.
    #[test]
    fn a_committed_log_record_decodes_to_its_batch() {
        let d = (BucketKind::Day, 1_700_006_400);
        let h = (BucketKind::Hour, 1_700_010_000);
        let mut b = Batch::new();
        b.incr("p:add:d:1700006400:event", d, "click", Number::Int(3));
        b.incr("p:add:d:1700006400:event", d, "view", Number::Int(-7));
        b.incr(
            "p:adv:h:1700010000:amount:event:i",
            h,
            "sum",
            Number::Float(12.75),
        );
        b.incr("p:adv:h:1700010000:amount:event:i", h, "count", Number::Int(2));
        b.zincr("p:top:d:1700006400:geo", d, "US", 2.5);
        b.hll_insert("p:bmp:d:1700006400:ip", d, "1.2.3.4");
        b.sadd("p:k:d:1700006400", d, "p:add:d:1700006400:event");
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/log_record.bin");
        if std::env::var("TRAQQ_WRITE_GOLDEN").as_deref() == Ok("1") {
            std::fs::write(&path, encode(&b).concat()).unwrap();
        }
        let stored = std::fs::read(&path).unwrap();
        let mut back = Overlay::default();
        decode_into(&stored, &mut back).unwrap();
        assert_eq!(back.to_batch(), b);
        assert_eq!(log_key(7, 3), [LOG, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 3]);
    }
}
