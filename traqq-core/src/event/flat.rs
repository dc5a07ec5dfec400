//! The fast path for the common event line: one flat JSON object whose keys and strings hold
//! no escapes and whose numbers are plain decimals.
//!
//! It fills the same [`Sink`] the serde path does, so names, limits and values come out
//! alike. Anything else (a nested object or array, an escape or control character, an
//! exponent, a long number, any syntax error, a limit reached) makes it decline, and the
//! caller parses the line with serde_json from the start: the answer, or the error, is
//! always serde_json's. Most of an event's parsing cost was serde's generic visiting of
//! each key and value; this scanner reads the line once, eight bytes at a time inside
//! strings.

use std::borrow::Cow;

use super::{EventLimits, IncomingEvent, Prefix, Scalar, Sink};
use crate::swar;

/// Scans `json` into `sink`; `None` when the line is not one the fast path reads (the sink
/// then holds part of it, for the caller to discard).
pub(super) fn scan<'a>(json: &'a str, sink: &mut Sink<'a>) -> Option<()> {
    let mut s = Scanner { text: json, at: 0 };
    s.object(sink)?;
    s.at_end()
}

/// A request object read by the flat scanner: its plain string fields, and the flat events of
/// its one list field.
#[derive(Debug)]
pub struct ScannedRequest<'a> {
    /// Every other field, in order: name and text (no escapes in either).
    pub strings: Vec<(&'a str, &'a str)>,
    /// The events of the list, in order, each holding exactly its properties.
    pub events: Vec<IncomingEvent<'a>>,
}

/// Reads `{"name":"text",…,"<list>":[{event},…]}` when every other field is a plain string and
/// every element a line [`IncomingEvent::parse_str_with`] would read by its fast path, with at
/// most `max_events` of them; `None` for anything else (a caller then parses the text its
/// usual way, which gives every error). For servers whose batch requests are one such line:
/// events come out as `parse_str_with` gives them, their `event` names not yet checked.
pub fn scan_request<'a>(
    text: &'a str,
    list: &str,
    limits: EventLimits,
    max_events: usize,
) -> Option<ScannedRequest<'a>> {
    let mut s = Scanner { text, at: 0 };
    let mut strings = Vec::new();
    let mut events = None;
    s.eat(b'{')?;
    if s.eat(b'}').is_none() {
        loop {
            s.eat(b'"')?;
            let key = s.string()?;
            s.eat(b':')?;
            if key == list {
                // A list given twice is left to the usual parser and its rule.
                if events.is_some() {
                    return None;
                }
                events = Some(s.events(limits, max_events)?);
            } else {
                s.eat(b'"')?;
                strings.push((key, s.string()?));
            }
            if s.next_member(b'}')? {
                break;
            }
        }
    }
    s.at_end()?;
    Some(ScannedRequest {
        strings,
        events: events?,
    })
}

/// Exact powers of ten (10^22 is the largest an `f64` holds exactly).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

/// Most digits a number the fast path reads may have: its significand fits a `u64` and its
/// negation an `i64`.
const MAX_DIGITS: usize = 18;

struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// The next byte after any whitespace (exactly the four bytes serde_json skips), not
    /// eaten. Compact lines have none: one comparison decides the common case.
    #[inline(always)]
    fn peek_token(&mut self) -> Option<u8> {
        let b = self.peek()?;
        if b > b' ' {
            return Some(b);
        }
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.at += 1;
        }
        self.peek()
    }

    /// Eats `byte`, after any whitespace.
    #[inline(always)]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek_token()? == byte).then(|| self.at += 1)
    }

    /// One flat object into `sink`.
    fn object(&mut self, sink: &mut Sink<'a>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.eat(b'"')?;
            let key = self.string()?;
            self.eat(b':')?;
            // `null` is skipped uncounted, as the serde path does.
            if let Some(value) = self.value()? {
                let name = Prefix::Root.join(Cow::Borrowed(key), sink.limits.max_name_length);
                sink.push(name, value).ok()?;
            }
            if self.next_member(b'}')? {
                return Some(());
            }
        }
    }

    /// A list of at most `max` flat objects, each an event of exactly its properties.
    fn events(&mut self, limits: EventLimits, max: usize) -> Option<Vec<IncomingEvent<'a>>> {
        let mut out = Vec::new();
        let mut sink = Sink {
            out: Vec::new(),
            leaves: 0,
            limits,
        };
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(out);
        }
        loop {
            if out.len() == max {
                return None;
            }
            sink.leaves = 0;
            self.object(&mut sink)?;
            out.push(IncomingEvent {
                properties: sink.out.drain(..).collect(),
            });
            if self.next_member(b']')? {
                return Some(out);
            }
        }
    }

    /// After a member: `Some(false)` past a comma, `Some(true)` past `close`, else `None`.
    #[inline(always)]
    fn next_member(&mut self, close: u8) -> Option<bool> {
        let b = self.peek_token()?;
        self.at += 1;
        match b {
            b',' => Some(false),
            b if b == close => Some(true),
            _ => None,
        }
    }

    /// Only whitespace is left.
    fn at_end(&mut self) -> Option<()> {
        (self.peek_token().is_none() && self.at == self.text.len()).then_some(())
    }

    /// The string whose opening quote was just eaten, borrowed; `None` at an escape, a control
    /// character or the end of the text.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at;
        let rest = self.text.as_bytes().get(start..)?;
        // Eight bytes at a time (most strings end within one or two words).
        let mut chunks = rest.chunks_exact(8);
        let mut offset = 0;
        for chunk in &mut chunks {
            let stops = stop_bytes(swar::word(chunk)?);
            if stops != 0 {
                return self.close_string(start, start + offset + stops.trailing_zeros() as usize / 8);
            }
            offset += 8;
        }
        let at = chunks
            .remainder()
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        self.close_string(start, start + offset + at)
    }

    /// The string from `start` to the stop byte at `end`, when that byte is the closing quote.
    #[inline]
    fn close_string(&mut self, start: usize, end: usize) -> Option<&'a str> {
        if self.text.as_bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        // Both ends are ASCII quotes, so the slice falls on character boundaries.
        self.text.get(start..end)
    }

    /// A scalar value (`Some(None)` for `null`); `None` for anything the fast path leaves to
    /// serde_json.
    fn value(&mut self) -> Option<Option<Scalar<'a>>> {
        let literal = |s: &mut Self, text: &[u8], value: Option<Scalar<'a>>| {
            let end = s.at + text.len();
            (s.text.as_bytes().get(s.at..end) == Some(text)).then(|| {
                s.at = end;
                value
            })
        };
        match self.peek_token()? {
            b'"' => {
                self.at += 1;
                Some(Some(Scalar::Str(Cow::Borrowed(self.string()?))))
            }
            b't' => literal(self, b"true", Some(Scalar::Bool(true))),
            b'f' => literal(self, b"false", Some(Scalar::Bool(false))),
            b'n' => literal(self, b"null", None),
            b'-' | b'0'..=b'9' => self.number().map(Some),
            _ => None,
        }
    }

    /// A number without exponent of at most [`MAX_DIGITS`] digits, as serde_json reads it:
    /// an integer is `Int` (`-0` is the float `-0.0`), a decimal is its digits divided by a
    /// power of ten. Decimals are read only where that one division is exact-rounded
    /// (significand ≤ 2^53, at most 22 fraction digits), so the value is the correctly
    /// rounded one whichever way serde_json is built to parse floats.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let bytes = self.text.as_bytes();
        let negative = self.peek() == Some(b'-');
        let start = self.at + usize::from(negative);
        let digits_from = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let int_end = digits_from(start);
        let int_digits = int_end - start;
        // JSON allows no leading zero before more digits.
        if int_digits == 0 || (int_digits > 1 && bytes.get(start) == Some(&b'0')) {
            return None;
        }
        let (end, fraction_digits) = if bytes.get(int_end) == Some(&b'.') {
            let end = digits_from(int_end + 1);
            (end, end - int_end - 1)
        } else {
            (int_end, 0)
        };
        if matches!(bytes.get(end), Some(b'e' | b'E' | b'.'))
            || (bytes.get(int_end) == Some(&b'.') && fraction_digits == 0)
            || int_digits + fraction_digits > MAX_DIGITS
        {
            return None;
        }
        let significand = bytes
            .get(start..end)?
            .iter()
            .filter(|b| b.is_ascii_digit())
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        self.at = end;
        if fraction_digits == 0 {
            // At most 18 digits: the value and its negation fit an `i64`.
            let n = i64::try_from(significand).ok()?;
            return Some(match (negative, n) {
                (true, 0) => Scalar::Float(-0.0),
                (true, n) => Scalar::Int(-n),
                (false, n) => Scalar::Int(n),
            });
        }
        if significand > 1 << 53 {
            return None;
        }
        let x = significand as f64 / POW10.get(fraction_digits)?;
        Some(Scalar::Float(if negative { -x } else { x }))
    }
}

/// The high bit of each byte of `word` that ends a string scan: `"`, `\` or a control
/// character (see [`crate::swar`]).
#[inline(always)]
fn stop_bytes(word: u64) -> u64 {
    swar::below(word, 0x20) | swar::equal(word, b'"') | swar::equal(word, b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventLimits;
    use proptest::prelude::*;

    type Properties<'a> = Vec<(Cow<'a, str>, Scalar<'a>)>;

    /// The fast path's properties, or `None` where it declines.
    fn fast(json: &str, limits: EventLimits) -> Option<Properties<'_>> {
        let mut sink = Sink {
            out: Vec::new(),
            leaves: 0,
            limits,
        };
        scan(json, &mut sink).map(|()| sink.out)
    }

    /// serde_json's properties, or its error.
    fn serde(json: &str, limits: EventLimits) -> Result<Properties<'_>, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        let event = limits
            .deserialize_into(&mut de, Vec::new())
            .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        Ok(event.properties)
    }

    /// Equal names and values, floats compared bit for bit (`-0.0` is not `0.0`).
    fn same(a: &Properties<'_>, b: &Properties<'_>) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|((na, va), (nb, vb))| {
                na == nb
                    && match (va, vb) {
                        (Scalar::Float(x), Scalar::Float(y)) => x.to_bits() == y.to_bits(),
                        (x, y) => x == y,
                    }
            })
    }

    /// Whatever the fast path accepts, serde_json accepts with the very same properties.
    fn agrees(json: &str, limits: EventLimits) -> std::result::Result<bool, String> {
        let Some(fast) = fast(json, limits) else {
            return Ok(false);
        };
        match serde(json, limits) {
            Ok(slow) if same(&fast, &slow) => Ok(true),
            other => Err(format!("{json:?}: fast {fast:?}, serde_json {other:?}")),
        }
    }

    #[test]
    fn reads_the_common_line_as_serde_json_does() {
        let limits = EventLimits::default();
        for json in [
            r#"{"event":"offer_click","ip":"29.218.184.42","amount":397.00,"ts":1764043574,"ua":"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/113.0.5300"}"#,
            " {\r\n\t\"event\" : \"a\" ,\n \"n\": -12 , \"f\":0.5,\"t\":true,\"u\":false,\"z\":null } \n",
            "{}",
            r#"{"event":"a","event":"b","":"empty name","x":"","y":"éß€😀"}"#,
            r#"{"n":0,"m":-0,"o":-0.0,"p":0.0,"q":123456789012345678,"r":-123456789012345678}"#,
            r#"{"d":9007199254740.992,"e":0.1,"f":0.00000000000001,"g":12.50}"#,
        ] {
            assert_eq!(agrees(json, limits), Ok(true), "{json}");
        }
        let props = fast(r#"{"m":-0,"i":7,"f":397.00}"#, limits).unwrap_or_default();
        let values: Vec<String> = props.iter().map(|(_, v)| format!("{v:?}")).collect();
        assert_eq!(values, ["Float(-0.0)", "Int(7)", "Float(397.0)"]);
    }

    #[test]
    fn leaves_everything_else_to_serde_json() {
        let limits = EventLimits::default();
        for json in [
            // Not flat, escaped, or control characters.
            r#"{"event":"a","d":{"os":"linux"}}"#,
            r#"{"event":"a","l":[1,2]}"#,
            r#"{"event":"a\"b"}"#,
            r#"{"ev\u0065nt":"a"}"#,
            "{\"event\":\"a\tb\"}",
            // Numbers beyond the exact ones.
            r#"{"n":1e5}"#,
            r#"{"n":1E5}"#,
            r#"{"n":1234567890123456789}"#,
            r#"{"n":9007199254740.993}"#,
            r#"{"n":0.00000000000000000000001}"#,
            // Syntax errors.
            r#"{"n":01}"#,
            r#"{"n":1.}"#,
            r#"{"n":.5}"#,
            r#"{"n":-}"#,
            r#"{"n":+1}"#,
            r#"{"n":1.5.2}"#,
            r#"{"t":tru}"#,
            r#"{"t":truex}"#,
            r#"{"event":"a",}"#,
            r#"{"event":"a""#,
            r#"{"event":"a"} {}"#,
            r#"{"event" "a"}"#,
            r#"{event:"a"}"#,
            r#"["event"]"#,
            "",
            "{\"event\":\"a\"}\u{a0}",
        ] {
            assert_eq!(fast(json, limits).map(|_| ()), None, "{json}");
        }
        // A limit reached: serde_json reports it.
        let tight = EventLimits {
            max_properties: 2,
            max_name_length: 5,
        };
        assert_eq!(fast(r#"{"a":1,"b":2,"c":3}"#, tight).map(|_| ()), None);
        // Names past the length are counted, not kept, as by serde_json.
        assert_eq!(agrees(r#"{"event":"a","longer":1}"#, tight), Ok(true));
        let kept = fast(r#"{"event":"a","longer":1}"#, tight).unwrap_or_default();
        assert_eq!(kept.len(), 1);
    }

    /// Pieces of JSON, valid and not, that the fast path must read exactly as serde_json does
    /// or leave to it.
    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just(",".to_owned()),
            Just(":".to_owned()),
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("fals".to_owned()),
            Just("[1]".to_owned()),
            "\"[a-z\\\\\"\t é.:~-]{0,12}\"",
            "-?[0-9]{1,20}(\\.[0-9]{0,25})?([eE][+-]?[0-9]{1,3})?",
            any::<f64>().prop_map(|x| x.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
        ]
    }

    fn flat_object() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            any::<f64>().prop_filter_map("finite", |x| serde_json::Number::from_f64(x)
                .map(serde_json::Value::Number)),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            "(-?[0-9]{1,9}\\.[0-9]{1,9})".prop_map(|t| serde_json::from_str(&t).unwrap_or_default()),
            "[ -~é]{0,20}".prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ];
        proptest::collection::vec(("[a-z.]{0,6}", value), 0..8).prop_map(|pairs| {
            let body: Vec<String> = pairs
                .into_iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k)))
                .collect();
            format!("{{{}}}", body.join(","))
        })
    }

    proptest! {
        #[test]
        fn token_soup_is_read_as_serde_json_reads_it(
            tokens in proptest::collection::vec(token(), 0..16),
            max_properties in 1usize..6,
            max_name_length in 0usize..8,
        ) {
            let json = format!("{{{}", tokens.concat());
            let limits = EventLimits { max_properties, max_name_length };
            prop_assert!(agrees(&json, limits).is_ok(), "{:?}", agrees(&json, limits));
        }

        #[test]
        fn flat_objects_are_read_as_serde_json_reads_them(json in flat_object()) {
            let limits = EventLimits::default();
            prop_assert!(agrees(&json, limits).is_ok(), "{:?}", agrees(&json, limits));
        }
    }
}
