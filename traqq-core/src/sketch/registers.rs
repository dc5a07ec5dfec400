//! Where a hashed value lands in a sketch, and what a sketch's registers estimate.
//!
//! Dense: the top [`PRECISION`] bits of the 64-bit hash pick one of [`REGISTERS`] registers,
//! which keeps the largest *rank* seen (1 + the leading zeros of the remaining bits, at most
//! [`MAX_RANK`]). Sparse: each value is kept as a 32-bit *code* at precision
//! [`SPARSE_PRECISION`] (HyperLogLog++'s sparse encoding), so small counts are nearly exact and
//! every code still yields its dense register and rank when the sketch grows.
//!
//! These are the bit layouts `hyperloglogplus` 0.4.1 used for traqq's first stored sketches;
//! they are kept so those sketches and new ones union correctly.

use super::PRECISION;

/// Registers of a dense sketch (16,384 at precision 14).
pub(super) const REGISTERS: usize = 1 << PRECISION;

/// Precision of the sparse codes.
pub(super) const SPARSE_PRECISION: u32 = 25;

/// The largest rank a register can hold: 64 − precision + 1.
pub(super) const MAX_RANK: u8 = 64 - PRECISION + 1;

const P: u32 = PRECISION as u32;

/// The register of `hash` and its rank.
#[inline]
pub(super) fn register_of(hash: u64) -> (usize, u8) {
    let index = (hash >> (64 - P)) as usize;
    let rank = ((hash << P) | (1 << (P - 1))).leading_zeros() + 1;
    (index, rank as u8)
}

/// The sparse code of `hash`: its 25-bit index shifted left by one when the bits between the
/// dense and sparse precisions already fix the rank; otherwise the index, the rank of the rest
/// of the hash and a low 1 bit.
#[inline]
pub(super) fn sparse_code(hash: u64) -> u32 {
    let index = (hash >> (64 - SPARSE_PRECISION)) as u32;
    let between = (hash << P) >> (64 - (SPARSE_PRECISION - P));
    if between == 0 {
        let rank = ((hash << SPARSE_PRECISION) | (1 << (SPARSE_PRECISION - 1))).leading_zeros() + 1;
        (index << 7) | (rank << 1) | 1
    } else {
        index << 1
    }
}

/// The dense register and rank of a sparse code, or `None` for a code [`sparse_code`] never
/// produces (read from stored bytes).
#[inline]
pub(super) fn register_of_code(code: u32) -> Option<(usize, u8)> {
    if code & 1 == 1 {
        let rank = (code >> 1) & 0x3f;
        // 1 + the leading zeros of 39 bits with a 1 below them: 1..=40.
        if !(1..=64 - SPARSE_PRECISION + 1).contains(&rank) {
            return None;
        }
        Some(((code >> (32 - P)) as usize, (rank + SPARSE_PRECISION - P) as u8))
    } else {
        // 25 index bits above the low 0; the bits below the dense index are not all zero.
        let between = (code >> 1) & ((1 << (SPARSE_PRECISION - P)) - 1);
        if code >> (SPARSE_PRECISION + 1) != 0 || between == 0 {
            return None;
        }
        let index = (code << (32 - SPARSE_PRECISION - 1)) >> (32 - P);
        let rank = (code << (32 - SPARSE_PRECISION + P - 1)).leading_zeros() + 1;
        Some((index as usize, rank as u8))
    }
}

/// Estimated distinct values behind `codes` distinct sparse codes: linear counting over the
/// 2^25 sparse registers (exact to well under one value at the sizes a sketch stays sparse).
pub(super) fn sparse_estimate(codes: usize) -> f64 {
    let m = f64::from(1u32 << SPARSE_PRECISION);
    let empty = m - codes as f64;
    m * (m / empty).ln()
}

/// Estimated distinct values behind dense registers: Ertl's improved estimator ("New
/// cardinality estimation algorithms for HyperLogLog sketches", 2017, the one Redis uses),
/// unbiased from empty to full without empirical bias tables or a switch to linear counting.
pub(super) fn dense_estimate(registers: &[u8]) -> f64 {
    let mut histogram = [0u32; MAX_RANK as usize + 1];
    for &r in registers {
        histogram[usize::from(r.min(MAX_RANK))] += 1;
    }
    let m = REGISTERS as f64;
    let q = usize::from(MAX_RANK) - 1;
    let mut z = m * tau((m - f64::from(histogram[q + 1])) / m);
    for k in (1..=q).rev() {
        z = 0.5 * (z + f64::from(histogram[k]));
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    // alpha at m → ∞: 1 / (2 ln 2).
    let alpha = 0.5 / std::f64::consts::LN_2;
    alpha * m * m / z
}

/// σ(x) = x + Σ_{k≥1} x^(2^k) 2^(k−1): the share of empty registers' contribution.
fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

/// τ(x) = (1 − x − Σ_{k≥1} (1 − x^(2^−k))² 2^−k) / 3: the share of saturated registers'.
fn tau(mut x: f64) -> f64 {
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_give_the_register_and_rank_of_their_hash() {
        let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..200_000u64 {
            h = h
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // Every 8th hash has the 11 bits below the index cleared (the odd-code path).
            let hash = if i % 8 == 0 { h & !(0x7ff << 39) } else { h };
            assert_eq!(
                register_of_code(sparse_code(hash)),
                Some(register_of(hash)),
                "{hash:#x}"
            );
        }
        assert_eq!(register_of(0), (0, MAX_RANK));
        assert_eq!(register_of(u64::MAX), (REGISTERS - 1, 1));
        assert_eq!(register_of_code(sparse_code(0)), Some((0, MAX_RANK)));
        // Codes no hash produces.
        assert_eq!(register_of_code(1), None);
        assert_eq!(register_of_code(0), None);
        assert_eq!(register_of_code(1 << 27), None);
    }

    #[test]
    fn estimates_follow_the_registers() {
        assert_eq!(dense_estimate(&[0; REGISTERS]), 0.0);
        assert!((sparse_estimate(10) - 10.0).abs() < 1e-3);
        // All registers at rank 1: about m ln 2 ... m values; Ertl's estimate is finite there.
        let e = dense_estimate(&[1; REGISTERS]);
        assert!(e > 10_000.0 && e < 25_000.0, "{e}");
        // Every register saturated (only forged bytes get there): no finite estimate fits.
        assert!(dense_estimate(&[MAX_RANK; REGISTERS]) > 1e15);
    }
}
