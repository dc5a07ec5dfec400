//! Byte tests eight at a time in a `u64` ("SIMD within a register"), for the scans on the
//! ingest path: the flat-event scanner's strings and value sanitizing.
//!
//! Each function returns the high bit of every byte (little-endian: the first byte is the
//! lowest) that passes. The lowest flagged byte is always right; bytes above it may be
//! flagged wrongly by a borrow, so callers use only whether any is set, or the lowest.

const ONES: u64 = u64::MAX / 255;
const HIGH: u64 = ONES << 7;

/// A word of eight bytes from the start of `chunk`, `None` when it is shorter.
#[inline(always)]
pub(crate) fn word(chunk: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(chunk.get(..8)?.try_into().ok()?))
}

/// A word of four bytes from the start of `chunk`, `None` when it is shorter.
#[inline(always)]
pub(crate) fn half(chunk: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(chunk.get(..4)?.try_into().ok()?))
}

/// Bytes below `n` (at most 128).
#[inline(always)]
pub(crate) fn below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH
}

/// Bytes equal to `byte`.
#[inline(always)]
pub(crate) fn equal(word: u64, byte: u8) -> u64 {
    below(word ^ (ONES * u64::from(byte)), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lowest flagged byte, or 8: what the scans use.
    fn first(flags: u64) -> u32 {
        flags.trailing_zeros() / 8
    }

    proptest::proptest! {
        #[test]
        fn the_lowest_flag_is_the_first_match(bytes: [u8; 8], probe: u8, n in 1u8..=128) {
            let w = u64::from_le_bytes(bytes);
            let eq = bytes.iter().position(|&b| b == probe).map_or(8, |i| i as u32);
            let lt = bytes.iter().position(|&b| b < n).map_or(8, |i| i as u32);
            proptest::prop_assert_eq!(first(equal(w, probe)), eq);
            proptest::prop_assert_eq!(first(below(w, n)), lt);
        }
    }
}
