//! The stored bytes of a sketch.
//!
//! Format 1 (written since traqq 0.3):
//!
//! | bytes | sparse | dense |
//! |---|---|---|
//! | 0 | `1` (format) | `1` |
//! | 1 | `0` (sparse) or `2` (sparse, [`SketchFamily::Redis`]) | `1` (dense) or `3` (dense, [`SketchFamily::Redis`]) |
//! | 2.. | LEB128 count n, then n LEB128 deltas of the strictly increasing sparse codes (the first from 0) | 12,288 bytes: the 16,384 six-bit registers, four per three bytes, little-endian (`r0 \| r1 << 6 \| r2 << 12 \| r3 << 18`) |
//!
//! A sketch is sparse while it holds at most [`SPARSE_MAX`] codes, so equal sketches have
//! equal bytes. Format 0 is what traqq wrote before it owned the format: postcard of
//! `hyperloglogplus` 0.4.1's `HyperLogLogPlus` (first byte `14`, its precision); it is read,
//! never written. Any other first byte is a format this version does not know.

use serde::Deserialize;

use super::registers::{register_of_code, MAX_RANK, REGISTERS};
use super::{Repr, SketchFamily, PRECISION};
use crate::{Error, Result};

/// The format this version writes.
pub(super) const FORMAT: u8 = 1;

/// Codes a sketch keeps before it turns dense (a sparse sketch then takes about as many bytes
/// as a dense one).
pub(super) const SPARSE_MAX: usize = 4_096;

const SPARSE: u8 = 0;
const DENSE: u8 = 1;
/// Added to the representation byte by a sketch of [`SketchFamily::Redis`].
const REDIS_FAMILY: u8 = 2;

/// The family of stored bytes (format 0 is [`SketchFamily::Traqq`]; bytes of no known format
/// are reported by [`parse`]).
pub(super) fn family_of(bytes: &[u8]) -> SketchFamily {
    match bytes {
        [FORMAT, kind @ 0..=3, ..] if kind & REDIS_FAMILY != 0 => SketchFamily::Redis,
        _ => SketchFamily::Traqq,
    }
}

fn kind(family: SketchFamily, representation: u8) -> u8 {
    match family {
        SketchFamily::Traqq => representation,
        SketchFamily::Redis => representation | REDIS_FAMILY,
    }
}

/// Bytes of the packed registers.
const PACKED: usize = REGISTERS / 4 * 3;

/// What stored bytes hold.
pub(super) enum Stored<'a> {
    /// Sorted, distinct codes not yet checked (LEB128 deltas).
    Sparse { count: usize, deltas: &'a [u8] },
    /// Packed registers.
    Dense(&'a [u8]),
    /// A format-0 sketch, decoded.
    Legacy(Repr),
}

/// Tells what `bytes` hold without decoding the codes or registers.
pub(super) fn parse(bytes: &[u8]) -> Result<Stored<'_>> {
    match bytes {
        [FORMAT, kind @ (0..=3), rest @ ..] if kind & DENSE == SPARSE => {
            let (count, used) = read_varint(rest).ok_or_else(|| bad("sparse count cut short"))?;
            let count = usize::try_from(count).map_err(|_| bad("sparse count too large"))?;
            if count > SPARSE_MAX {
                return Err(bad(format!("{count} sparse codes (at most {SPARSE_MAX})")));
            }
            Ok(Stored::Sparse {
                count,
                deltas: &rest[used..],
            })
        }
        [FORMAT, 0..=3, rest @ ..] if rest.len() == PACKED => Ok(Stored::Dense(rest)),
        [FORMAT, 0..=3, rest @ ..] => Err(bad(format!(
            "dense registers are {} bytes, not {PACKED}",
            rest.len()
        ))),
        [FORMAT, kind, ..] => Err(bad(format!("unknown representation {kind}"))),
        [LEGACY_PRECISION, ..] => legacy(bytes).map(Stored::Legacy),
        [version, ..] => Err(bad(format!(
            "sketch format {version} is not one this traqq reads (format {FORMAT} and 0)"
        ))),
        [] => Err(bad("empty")),
    }
}

/// Calls `f` with each code of a stored sparse sketch, checking that they increase and that
/// each is one a hash produces.
pub(super) fn each_code(count: usize, deltas: &[u8], mut f: impl FnMut(u32)) -> Result<()> {
    let (mut at, mut last) = (0, None::<u32>);
    for _ in 0..count {
        let (delta, used) = read_varint(&deltas[at..]).ok_or_else(|| bad("sparse codes cut short"))?;
        at += used;
        let code = match last {
            None => u32::try_from(delta).ok(),
            Some(_) if delta == 0 => None,
            Some(last) => u32::try_from(delta).ok().and_then(|d| last.checked_add(d)),
        }
        .filter(|&c| register_of_code(c).is_some())
        .ok_or_else(|| bad("sparse codes out of order or out of range"))?;
        f(code);
        last = Some(code);
    }
    if at != deltas.len() {
        return Err(bad("bytes after the sparse codes"));
    }
    Ok(())
}

/// Calls `f` with each register (index, rank) of packed registers (see [`pack`]), checking
/// the ranks.
pub(super) fn each_register(packed: &[u8], mut f: impl FnMut(usize, u8)) -> Result<()> {
    for (group, three) in packed.chunks_exact(3).enumerate() {
        let word = u32::from(three[0]) | u32::from(three[1]) << 8 | u32::from(three[2]) << 16;
        for i in 0..4 {
            let rank = ((word >> (6 * i)) & 0x3f) as u8;
            if rank > MAX_RANK {
                return Err(bad(format!("register rank {rank} (at most {MAX_RANK})")));
            }
            f(group * 4 + i, rank);
        }
    }
    Ok(())
}

/// Writes sorted, distinct `codes` as format 1.
pub(super) fn write_sparse(family: SketchFamily, codes: &[u32], out: &mut Vec<u8>) {
    out.extend_from_slice(&[FORMAT, kind(family, SPARSE)]);
    write_varint(codes.len() as u64, out);
    let mut last = 0;
    for &code in codes {
        write_varint(u64::from(code - last), out);
        last = code;
    }
}

/// Writes dense `registers` as format 1.
pub(super) fn write_dense(family: SketchFamily, registers: &[u8], out: &mut Vec<u8>) {
    out.reserve(2 + PACKED);
    out.extend_from_slice(&[FORMAT, kind(family, DENSE)]);
    pack(registers.iter().copied(), out);
}

/// Packs six-bit registers four per three bytes, least significant bits first (the layout of
/// format 1 and of Redis's dense string).
pub(super) fn pack(registers: impl Iterator<Item = u8>, out: &mut Vec<u8>) {
    let (mut word, mut held) = (0u32, 0);
    for rank in registers {
        word |= u32::from(rank) << (6 * held);
        held += 1;
        if held == 4 {
            out.extend_from_slice(&word.to_le_bytes()[..3]);
            (word, held) = (0, 0);
        }
    }
}

fn write_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A LEB128 number and the bytes it took, or `None` when cut short or longer than 64 bits.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

fn bad(message: impl Into<String>) -> Error {
    Error::Sketch(message.into())
}

/// Format 0 starts with the precision of `hyperloglogplus`'s struct.
const LEGACY_PRECISION: u8 = PRECISION;

/// `hyperloglogplus` 0.4.1's `HyperLogLogPlus<u64, _>` as postcard wrote it (field order and
/// types are the format; the hasher and the phantom type take no bytes).
#[derive(Deserialize)]
struct Legacy {
    _hasher: (),
    precision: u8,
    _counts: (usize, usize, usize),
    tmpset: Vec<u32>,
    sparse: LegacySparse,
    registers: Option<LegacyRegisters>,
    _phantom: (),
}

/// Its sparse list: LEB128 deltas of sorted codes.
#[derive(Deserialize)]
struct LegacySparse {
    _count: usize,
    _last: u32,
    buf: Vec<u8>,
}

/// Its dense registers: five six-bit registers per `u32`, lowest first.
#[derive(Deserialize)]
struct LegacyRegisters {
    buf: Vec<u32>,
    count: usize,
    _zeros: usize,
}

/// Reads a format-0 sketch.
fn legacy(bytes: &[u8]) -> Result<Repr> {
    let old: Legacy = postcard::from_bytes(bytes).map_err(|e| bad(format!("format 0: {e}")))?;
    if old.precision != PRECISION {
        return Err(bad(format!(
            "precision {} differs from {PRECISION}",
            old.precision
        )));
    }
    let mut codes = Vec::new();
    let (mut at, mut last) = (0, 0u32);
    while at < old.sparse.buf.len() {
        let (delta, used) =
            read_varint(&old.sparse.buf[at..]).ok_or_else(|| bad("format 0: sparse codes cut short"))?;
        at += used;
        last = u32::try_from(delta)
            .ok()
            .and_then(|d| last.checked_add(d))
            .ok_or_else(|| bad("format 0: sparse codes out of range"))?;
        codes.push(last);
    }
    codes.extend_from_slice(&old.tmpset);
    if codes.iter().any(|&c| register_of_code(c).is_none()) {
        return Err(bad("format 0: a sparse code no hash produces"));
    }
    let mut repr = Repr::sparse_from(codes);
    if let Some(registers) = old.registers {
        if registers.count != REGISTERS || registers.buf.len() != REGISTERS.div_ceil(5) {
            return Err(bad(format!(
                "format 0: {} registers in {} words",
                registers.count,
                registers.buf.len()
            )));
        }
        let dense = repr.dense_mut();
        for (i, slot) in dense.iter_mut().enumerate() {
            let rank = ((registers.buf[i / 5] >> (6 * (i % 5))) & 0x3f) as u8;
            if rank > MAX_RANK {
                return Err(bad(format!(
                    "format 0: register rank {rank} (at most {MAX_RANK})"
                )));
            }
            *slot = (*slot).max(rank);
        }
    }
    Ok(repr)
}
