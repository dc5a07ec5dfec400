//! Value sanitizing: what a property value must look like before it becomes part of a key.

use std::borrow::Cow;

/// Characters that separate key parts, so they may not appear inside values.
const SEPARATORS: [char; 2] = [':', '~'];

fn is_edge(c: char) -> bool {
    c.is_whitespace() || SEPARATORS.contains(&c)
}

/// True when `v` holds `:` or `~` (both ASCII: their bytes never occur inside another
/// character's UTF-8 encoding).
#[inline]
fn has_separator(v: &str) -> bool {
    let separator = |w: u64| crate::swar::equal(w, b':') | crate::swar::equal(w, b'~') != 0;
    let bytes = v.as_bytes();
    let n = bytes.len();
    if n < 4 {
        return bytes.iter().any(|&b| b == b':' || b == b'~');
    }
    // Words that may overlap: the last one ends at the last byte, so no byte-by-byte tail.
    if n < 8 {
        let half = |at: usize| crate::swar::half(bytes.get(at..).unwrap_or_default());
        return match (half(0), half(n - 4)) {
            (Some(low), Some(high)) => separator(u64::from(low) | (u64::from(high) << 32)),
            _ => true,
        };
    }
    let mut chunks = bytes.chunks_exact(8);
    let last = crate::swar::word(bytes.get(n - 8..).unwrap_or_default());
    chunks.any(|c| crate::swar::word(c).is_none_or(separator)) || last.is_none_or(separator)
}

/// True when the first and last bytes are printable ASCII other than `:` and `~`: characters
/// that trimming keeps (whitespace is never printable, so no character test is needed).
#[inline]
fn has_plain_edges(v: &str) -> bool {
    let plain = |b: &u8| (b'!'..=b'~').contains(b) && *b != b':' && *b != b'~';
    v.as_bytes().first().is_some_and(plain) && v.as_bytes().last().is_some_and(plain)
}

/// Sanitizes a property value as DESIGN §3 says: trims whitespace and leading/trailing
/// `:`/`~`, cuts to `max_chars` characters, and replaces inner `:`/`~` with `_`.
///
/// Returns `None` when nothing is left (the property then counts as absent). Borrows when the
/// value is already clean, which is the common case. Idempotent: sanitizing twice changes nothing.
#[inline]
pub fn sanitize_value(value: &str, max_chars: usize) -> Option<Cow<'_, str>> {
    // Most values are short, clean ASCII-edged text: one scan decides it, inline, without the
    // per-character walks of the rest (a measurable part of recording an event).
    if value.len() <= max_chars && has_plain_edges(value) && !has_separator(value) {
        return Some(Cow::Borrowed(value));
    }
    trimmed(value, max_chars)
}

/// [`sanitize_value`] for the values its fast path does not decide.
fn trimmed(value: &str, max_chars: usize) -> Option<Cow<'_, str>> {
    let mut v = value.trim_matches(is_edge);
    // A value of at most `max_chars` bytes has at most that many characters: skip the walk.
    if v.len() > max_chars {
        if let Some((cut, _)) = v.char_indices().nth(max_chars) {
            // Cutting can expose whitespace or a separator at the new end.
            v = v[..cut].trim_end_matches(is_edge);
        }
    }
    if v.is_empty() {
        return None;
    }
    if has_separator(v) {
        Some(Cow::Owned(v.replace(SEPARATORS, "_")))
    } else {
        Some(Cow::Borrowed(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        let s = |v| sanitize_value(v, 10).map(|c| c.into_owned());
        assert_eq!(s("  US "), Some("US".into()));
        assert_eq!(s("a:b~c"), Some("a_b_c".into()));
        assert_eq!(s(":~a:b~:"), Some("a_b".into()));
        assert_eq!(s("   "), None);
        assert_eq!(s("::~"), None);
        assert_eq!(s("0123456789abc"), Some("0123456789".into()));
        assert_eq!(s("012345678 abc"), Some("012345678".into()));
        assert_eq!(s("ééééééééééé"), Some("éééééééééé".into()));
        assert!(matches!(
            sanitize_value("clean", 10),
            Some(Cow::Borrowed("clean"))
        ));
    }

    /// The rule of DESIGN §3 written plainly, without the fast path.
    fn reference(value: &str, max_chars: usize) -> Option<String> {
        let mut v = value.trim_matches(is_edge);
        if let Some((cut, _)) = v.char_indices().nth(max_chars) {
            v = v[..cut].trim_end_matches(is_edge);
        }
        (!v.is_empty()).then(|| v.replace(SEPARATORS, "_"))
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_the_rule(
            value in "[ a-z0-9:~!\t\u{b}\u{1c}\u{7f}\u{85}\u{a0}\u{3000}é\u{1F600}.-]{0,24}",
            max_chars in 1usize..16,
        ) {
            proptest::prop_assert_eq!(
                sanitize_value(&value, max_chars).map(Cow::into_owned),
                reference(&value, max_chars)
            );
        }
    }
}
