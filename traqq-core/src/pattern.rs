//! Compound patterns: `a`, `a~b`, `a~b~c`. Parts are sorted, so `geo~event` is `event~geo`.

use std::fmt;

/// A normalized pattern: its parts sorted by name and joined with `~`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    /// Parses and normalizes `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.trim().is_empty() {
            return Err("empty pattern".into());
        }
        let mut parts: Vec<&str> = text.split('~').map(str::trim).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "pattern {text:?} has an empty part (leading, trailing or doubled '~')"
            ));
        }
        parts.sort_unstable();
        if let Some(w) = parts.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("pattern {text:?} repeats the part {:?}", w[0]));
        }
        Ok(Pattern {
            text: parts.join("~"),
        })
    }

    /// Normalizes `text` leniently (for lookups such as `find`): sorts the parts, never fails.
    pub fn normalize(text: &str) -> String {
        let mut parts: Vec<&str> = text.split('~').map(str::trim).collect();
        parts.sort_unstable();
        parts.join("~")
    }

    /// The normalized text, e.g. `event~geo`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The property names, sorted.
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.text.split('~')
    }

    /// Number of parts.
    pub fn arity(&self) -> usize {
        self.parts().count()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_sorted_and_order_insensitive() {
        assert_eq!(Pattern::parse("geo~event").unwrap().as_str(), "event~geo");
        assert_eq!(Pattern::parse("c~a~b").unwrap().as_str(), "a~b~c");
        assert_eq!(Pattern::parse("geo~event"), Pattern::parse("event~geo"));
    }

    #[test]
    fn bad_patterns_are_named() {
        assert!(Pattern::parse("").unwrap_err().contains("empty"));
        assert!(Pattern::parse("a~~b").unwrap_err().contains("\"a~~b\""));
        assert!(Pattern::parse("a~").unwrap_err().contains("empty part"));
        assert!(Pattern::parse("a~b~a").unwrap_err().contains("repeats"));
    }
}
