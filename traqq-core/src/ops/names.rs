//! Which pattern slot a property name fills. Every property of every event is looked up, and
//! names are short, so a name of at most eight bytes is matched as one integer instead of
//! being hashed and compared as a string.

use hashbrown::HashMap;

/// The slots of the names patterns use.
#[derive(Debug, Clone, Default)]
pub(super) struct NameSlots {
    /// Open addressing over the names of one to eight bytes; `len == 0` marks a free place.
    short: Vec<Short>,
    /// Longer (or empty) names, rare in patterns.
    long: HashMap<String, usize>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Short {
    key: u64,
    len: u8,
    slot: u32,
}

/// A name of one to eight bytes as an integer; two names of the same length are equal
/// exactly when their integers are. Four bytes from each end (overlapping below eight), or
/// below four bytes the first, middle and last: together they cover every byte.
#[inline]
fn short_key(name: &[u8]) -> Option<u64> {
    let len = name.len();
    let word = |at: usize| -> Option<u64> {
        let four: [u8; 4] = name.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(u32::from_le_bytes(four)))
    };
    let byte = |at: usize| name.get(at).map(|&b| u64::from(b));
    match len {
        1..=3 => Some(byte(0)? | byte(len / 2)? << 8 | byte(len - 1)? << 16),
        4..=8 => Some(word(0)? | word(len - 4)? << 32),
        _ => None,
    }
}

impl NameSlots {
    /// The table of `names`, slot `i` for `names[i]`.
    pub(super) fn new(names: &[String]) -> NameSlots {
        let shorts = names.iter().filter(|n| short_key(n.as_bytes()).is_some()).count();
        let size = (2 * shorts).next_power_of_two().max(16);
        let mut table = NameSlots {
            short: vec![Short::default(); size],
            long: HashMap::new(),
        };
        for (slot, name) in names.iter().enumerate() {
            match (short_key(name.as_bytes()), u32::try_from(slot)) {
                (Some(key), Ok(slot)) => table.insert(key, name.len() as u8, slot),
                _ => {
                    table.long.insert(name.clone(), slot);
                }
            }
        }
        table
    }

    fn start(&self, key: u64, len: u8) -> usize {
        let bits = self.short.len().trailing_zeros();
        let mixed = (key ^ u64::from(len)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> (64 - bits)) as usize
    }

    fn insert(&mut self, key: u64, len: u8, slot: u32) {
        let mask = self.short.len() - 1;
        let mut at = self.start(key, len);
        // The table is at least twice the names: a free place is always found.
        while let Some(place) = self.short.get_mut(at) {
            if place.len == 0 || (place.key == key && place.len == len) {
                *place = Short { key, len, slot };
                return;
            }
            at = (at + 1) & mask;
        }
    }

    /// The slot of `name`, if a pattern uses it.
    #[inline]
    pub(super) fn get(&self, name: &str) -> Option<usize> {
        let Some(key) = short_key(name.as_bytes()) else {
            return if self.long.is_empty() {
                None
            } else {
                self.long.get(name).copied()
            };
        };
        let len = name.len() as u8;
        let mask = self.short.len() - 1;
        let mut at = self.start(key, len);
        loop {
            let place = self.short.get(at)?;
            if place.len == 0 {
                return None;
            }
            if place.key == key && place.len == len {
                return Some(place.slot as usize);
            }
            at = (at + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Every name finds its own slot, and any other text none, whatever the lengths
        /// (short and long, empty, multi-byte characters).
        #[test]
        fn each_name_finds_its_slot_and_nothing_else_does(
            names in prop::collection::btree_set("[ab_é]{0,10}", 0..40),
            others in prop::collection::vec("[ab_é]{0,10}", 0..40),
        ) {
            let names: Vec<String> = names.into_iter().collect();
            let table = NameSlots::new(&names);
            for (slot, name) in names.iter().enumerate() {
                prop_assert_eq!(table.get(name), Some(slot));
            }
            for other in &others {
                prop_assert_eq!(table.get(other), names.iter().position(|n| n == other));
            }
        }
    }

    #[test]
    fn short_keys_tell_apart_names_of_one_length() {
        let all: Vec<String> = [
            "a", "b", "ab", "ba", "aab", "aba", "baa", "abcd", "abce", "bbcd", "abcdefgh", "abcdefgz",
            "zbcdefgh", "abcdzfgh", "abcde", "abdde",
        ]
        .map(String::from)
        .to_vec();
        let table = NameSlots::new(&all);
        for (slot, name) in all.iter().enumerate() {
            assert_eq!(table.get(name), Some(slot), "{name}");
        }
        for missing in ["", "c", "aa", "abc", "abcf", "abcdefgy", "abcdefghi"] {
            assert_eq!(table.get(missing), None, "{missing}");
        }
    }
}
