//! Redis's HyperLogLog, register for register: its value hash and its string encoding.
//!
//! Redis (`hyperloglog.c`) hashes a value with MurmurHash64A under seed `0xadc83b19`, takes the
//! **low** 14 bits as the register and 1 + the trailing zeros of the rest (with bit 50 set) as
//! the rank. traqq's registers take the **high** 14 bits and the leading zeros. So a Redis
//! hash with its bits reversed lands, in a traqq sketch, on the same rank in register
//! `reverse14(i)` instead of `i`: the two hold the same registers in another order, and a
//! sketch of the [`SketchFamily::Redis`](super::SketchFamily::Redis) family converts to and from
//! a Redis string without loss.
//!
//! The string: a 16-byte header (`HYLL`, the encoding, three unused bytes, an 8-byte cached
//! cardinality whose top bit marks it stale), then the registers, dense (16,384 six-bit
//! registers, least significant bits first: 12,288 bytes) or sparse (run-length opcodes).

use super::encoding;
use super::registers::{MAX_RANK, REGISTERS};
use crate::{Error, Result};

const HEADER: usize = 16;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const SEED: u64 = 0xadc8_3b19;

/// The hash of `value` a sketch of the Redis family takes: Redis's MurmurHash64A, bits reversed.
pub(super) fn hash(value: &str) -> u64 {
    murmur64a(value.as_bytes(), SEED).reverse_bits()
}

/// MurmurHash64A (Austin Appleby), as Redis computes it (little-endian blocks).
fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut blocks = data.chunks_exact(8);
    for block in &mut blocks {
        let mut k = u64::from_le_bytes([
            block[0], block[1], block[2], block[3], block[4], block[5], block[6], block[7],
        ]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^ (h >> R)
}

/// Register `i` of Redis is register `position(i)` of traqq's, and the reverse.
fn position(i: usize) -> usize {
    (i as u16).reverse_bits() as usize >> (16 - super::PRECISION)
}

/// A dense Redis string holding traqq's `registers` (its cached cardinality marked stale, so
/// Redis computes the count on the next `PFCOUNT`).
pub(super) fn encode(registers: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + REGISTERS * 6 / 8);
    out.extend_from_slice(b"HYLL");
    out.extend_from_slice(&[DENSE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80]);
    encoding::pack((0..REGISTERS).map(|i| registers[position(i)]), &mut out);
    out
}

/// traqq's registers of a Redis string, dense or sparse; an error naming what is wrong.
pub(super) fn decode(bytes: &[u8]) -> Result<Vec<u8>> {
    let bad = |m: &str| Error::Sketch(format!("Redis HyperLogLog: {m}"));
    if bytes.len() < HEADER || &bytes[..4] != b"HYLL" {
        return Err(bad("no HYLL header"));
    }
    let body = &bytes[HEADER..];
    let mut registers = vec![0u8; REGISTERS];
    let mut set = |i: usize, rank: u8| -> Result<()> {
        if rank > MAX_RANK {
            return Err(bad(&format!("register rank {rank} (at most {MAX_RANK})")));
        }
        registers[position(i)] = rank;
        Ok(())
    };
    match bytes[4] {
        DENSE if body.len() == REGISTERS * 6 / 8 => {
            encoding::each_register(body, |i, rank| registers[position(i)] = rank)?;
        }
        DENSE => return Err(bad("dense registers of the wrong length")),
        SPARSE => {
            // `00xxxxxx` ZERO (x+1 registers), `01xxxxxx yyyyyyyy` XZERO (xy+1), `1vvvvvxx` VAL
            // (x+1 registers of rank v+1).
            let (mut at, mut i) = (0, 0usize);
            while at < body.len() {
                let op = body[at];
                let (run, rank) = match op >> 6 {
                    0b00 => (usize::from(op & 0x3f) + 1, 0),
                    0b01 => {
                        let low = *body.get(at + 1).ok_or_else(|| bad("sparse opcodes cut short"))?;
                        at += 1;
                        ((usize::from(op & 0x3f) << 8 | usize::from(low)) + 1, 0)
                    }
                    _ => (usize::from(op & 0x03) + 1, ((op >> 2) & 0x1f) + 1),
                };
                at += 1;
                if i + run > REGISTERS {
                    return Err(bad("sparse opcodes covering more than 16384 registers"));
                }
                for r in i..i + run {
                    set(r, rank)?;
                }
                i += run;
            }
            if i != REGISTERS {
                return Err(bad("sparse opcodes covering fewer than 16384 registers"));
            }
        }
        _ => return Err(bad("unknown encoding")),
    }
    Ok(registers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur64a_reads_every_byte() {
        // Agreement with Redis itself is tested against a real server (traqq-redis's
        // tests/sketch_family.rs: the registers `PFADD` sets are the ones this hash sets).
        assert_ne!(murmur64a(b"a", SEED), murmur64a(b"b", SEED));
        // Every tail length takes its own path.
        let all: std::collections::HashSet<u64> = (0..=17)
            .map(|n| murmur64a(&b"0123456789abcdefg"[..n], SEED))
            .collect();
        assert_eq!(all.len(), 18);
    }

    #[test]
    fn positions_are_a_permutation_and_strings_round_trip() {
        let mut seen = vec![false; REGISTERS];
        for i in 0..REGISTERS {
            assert_eq!(position(position(i)), i);
            seen[position(i)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        let registers: Vec<u8> = (0..REGISTERS).map(|i| (i % 52) as u8).collect();
        let string = encode(&registers);
        assert_eq!(string.len(), HEADER + 12_288);
        assert_eq!(decode(&string).unwrap(), registers);
        // Sparse: VAL of rank 3 for register 0, then XZERO over the other 16,383.
        let mut sparse = b"HYLL\x01".to_vec();
        sparse.extend_from_slice(&[0; 11]);
        sparse.extend_from_slice(&[0b1000_1000, 0x40 | 0x3f, 0xfe]);
        let decoded = decode(&sparse).unwrap();
        assert_eq!(decoded[position(0)], 3);
        assert_eq!(decoded.iter().filter(|&&r| r > 0).count(), 1);
        for bad in [
            &b"HYL"[..],
            &string[..string.len() - 1],
            &sparse[..sparse.len() - 1],
        ] {
            assert!(decode(bad).is_err());
        }
    }
}
