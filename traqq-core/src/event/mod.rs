//! Incoming events: a JSON object with a non-empty string `event`, flattened to scalar properties.
//!
//! Parsing borrows from the input wherever the JSON holds no escapes, so recording a line does
//! not build a `serde_json::Value` tree or copy every string. Text (`parse_str*`,
//! `reparse_str_with`) is first tried by a scanner for flat objects (the `flat` module), which
//! gives what serde_json gives and leaves every other line to it; the `flatten` module holds the
//! serde path and the one for parsed `serde_json::Value`s.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer};

use crate::{Error, Result};

mod flat;
mod flatten;
pub use flat::{scan_request, ScannedRequest};
pub use flatten::BorrowedStr;
use flatten::{flatten_value, Prefix, Sink};

/// A scalar property value as it came in.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// A JSON string.
    Str(Cow<'a, str>),
    /// A JSON integer.
    Int(i64),
    /// A JSON integer above `i64::MAX`.
    UInt(u64),
    /// A JSON number with a fraction or exponent.
    Float(f64),
    /// A JSON boolean.
    Bool(bool),
}

impl Scalar<'_> {
    /// The value as text for a key: strings as they are, numbers and booleans formatted.
    #[inline]
    pub fn as_text(&self) -> Cow<'_, str> {
        // Strings, by far the most common, are answered inline; the rest formatted apart.
        match self {
            Scalar::Str(s) => Cow::Borrowed(s),
            other => other.formatted(),
        }
    }

    fn formatted(&self) -> Cow<'_, str> {
        match self {
            Scalar::Str(s) => Cow::Borrowed(s),
            Scalar::Int(n) => Cow::Owned(n.to_string()),
            Scalar::UInt(n) => Cow::Owned(n.to_string()),
            // As serde_json writes it ("1.0", "1e21"), which is what traqq 0.2 stored: labels
            // keep their text across the upgrade.
            Scalar::Float(x) => {
                Cow::Owned(serde_json::Number::from_f64(*x).map_or_else(|| x.to_string(), |n| n.to_string()))
            }
            Scalar::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        }
    }

    /// The value as a finite number: numbers, and strings holding one (`"0.99"`).
    pub fn as_number(&self) -> Option<f64> {
        let x = match self {
            Scalar::Str(s) => s.trim().parse::<f64>().ok()?,
            Scalar::Int(n) => *n as f64,
            Scalar::UInt(n) => *n as f64,
            Scalar::Float(x) => *x,
            Scalar::Bool(_) => return None,
        };
        x.is_finite().then_some(x)
    }

    fn into_owned(self) -> Scalar<'static> {
        match self {
            Scalar::Str(s) => Scalar::Str(Cow::Owned(s.into_owned())),
            Scalar::Int(n) => Scalar::Int(n),
            Scalar::UInt(n) => Scalar::UInt(n),
            Scalar::Float(x) => Scalar::Float(x),
            Scalar::Bool(b) => Scalar::Bool(b),
        }
    }
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => write!(f, "{s:?}"),
            other => f.write_str(&other.as_text()),
        }
    }
}

/// Caps that keep parsing one event linear in its size, whatever the input.
///
/// - `max_properties`: most scalar values (leaves, nested ones included) one event may hold;
///   parsing stops with an error naming the limit at the next one.
/// - `max_name_length`: longest property name in bytes, dotted path included. A longer name is
///   skipped without being built: no pattern can use it (`limits.max_field_length` caps the
///   names a mapping may name), so it cannot change a metric. This is what keeps a deeply
///   nested or long-keyed object from costing memory quadratic in its size.
///
/// `LimitsConfig::event_limits` (in `config`) takes both from
/// `[limits]`; the `parse_*` functions without `_with` use the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Most scalar properties per event (`limits.max_properties`).
    pub max_properties: usize,
    /// Longest property name kept, in bytes (`limits.max_field_length`).
    pub max_name_length: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_properties: 1000,
            max_name_length: 128,
        }
    }
}

/// One event: its scalar properties (nested objects flattened to `a.b`), `event` among them.
///
/// Build it with [`IncomingEvent::parse_str`], [`IncomingEvent::parse_slice`] (both borrow
/// from the input) or [`IncomingEvent::from_json`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IncomingEvent<'a> {
    properties: Vec<(Cow<'a, str>, Scalar<'a>)>,
}

impl<'a> IncomingEvent<'a> {
    /// Parses one JSON object from text, borrowing its strings (default [`EventLimits`]).
    pub fn parse_str(json: &'a str) -> Result<Self> {
        Self::parse_str_with(json, EventLimits::default())
    }

    /// Parses one JSON object from text within `limits`, borrowing its strings.
    pub fn parse_str_with(json: &'a str, limits: EventLimits) -> Result<Self> {
        let mut event = IncomingEvent::default();
        event.reparse_str_with(json, limits)?;
        Ok(event)
    }

    /// [`IncomingEvent::parse_str_with`] into this event, reusing its storage: a loop over
    /// many lines parses each into one event and allocates nothing per line for the
    /// properties. On error the event is left empty.
    pub fn reparse_str_with(&mut self, json: &'a str, limits: EventLimits) -> Result<()> {
        // The common flat line is scanned directly; any other goes to serde_json from the start.
        let mut sink = Sink {
            out: std::mem::take(&mut self.properties),
            leaves: 0,
            limits,
        };
        sink.out.clear();
        let scanned = flat::scan(json, &mut sink);
        self.properties = sink.out;
        if scanned.is_some() {
            let named = self.check_name();
            if named.is_err() {
                self.properties.clear();
            }
            return named;
        }
        let mut de = serde_json::Deserializer::from_str(json);
        let parsed = self
            .deserialize_reusing(&mut de, limits)
            .and_then(|()| de.end())
            .map_err(|e| Error::Json(e.to_string()))
            .and_then(|()| self.check_name());
        if parsed.is_err() {
            self.properties.clear();
        }
        parsed
    }

    /// Deserializes one event within `limits` into this one, reusing its storage (not
    /// checking its name, as the `DeserializeSeed` of [`EventLimits`]). On error the event is
    /// left empty.
    pub fn deserialize_reusing<D: Deserializer<'a>>(
        &mut self,
        deserializer: D,
        limits: EventLimits,
    ) -> std::result::Result<(), D::Error> {
        let mut out = std::mem::take(&mut self.properties);
        out.clear();
        *self = limits.deserialize_into(deserializer, out)?;
        Ok(())
    }

    /// Moves the properties into a new event holding exactly them (one allocation of their
    /// size), leaving this one empty with its room: events parsed with
    /// [`IncomingEvent::deserialize_reusing`] and kept take no more memory than they need.
    pub fn take_exact(&mut self) -> IncomingEvent<'a> {
        IncomingEvent {
            properties: self.properties.drain(..).collect(),
        }
    }

    /// Parses one JSON object from bytes (which must be UTF-8), borrowing its strings
    /// (default [`EventLimits`]).
    pub fn parse_slice(json: &'a [u8]) -> Result<Self> {
        Self::parse_slice_with(json, EventLimits::default())
    }

    /// Parses one JSON object from bytes (which must be UTF-8) within `limits`.
    pub fn parse_slice_with(json: &'a [u8], limits: EventLimits) -> Result<Self> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let event = limits
            .deserialize(&mut de)
            .map_err(|e| Error::Json(e.to_string()))?;
        de.end().map_err(|e| Error::Json(e.to_string()))?;
        event.validated()
    }

    /// Builds an event from a parsed JSON value, borrowing its strings (default
    /// [`EventLimits`]).
    pub fn from_value(value: &'a serde_json::Value) -> Result<Self> {
        let Some(map) = value.as_object() else {
            return Err(Error::Json(format!(
                "expected a JSON object, found {}",
                json_kind(value)
            )));
        };
        let mut sink = Sink {
            out: Vec::with_capacity(map.len()),
            leaves: 0,
            limits: EventLimits::default(),
        };
        flatten_value(Prefix::Root, map, &mut sink).map_err(Error::Json)?;
        IncomingEvent { properties: sink.out }.validated()
    }

    /// The event name (the `event` property).
    pub fn name(&self) -> &str {
        match self.get("event") {
            Some(Scalar::Str(s)) => s,
            _ => "",
        }
    }

    /// The property named `name` (dotted for nested objects). The last one wins on duplicates.
    pub fn get(&self, name: &str) -> Option<&Scalar<'a>> {
        self.properties
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// All scalar properties in input order.
    pub fn properties(&self) -> impl DoubleEndedIterator<Item = (&str, &Scalar<'a>)> + ExactSizeIterator {
        self.properties.iter().map(|(n, v)| (n.as_ref(), v))
    }

    /// The event time from `field`: `Ok(None)` when absent, an error naming it when unparsable.
    pub fn timestamp(&self, field: &str) -> Result<Option<i64>> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let bad = || Error::EventTime {
            field: field.to_owned(),
            value: value.to_string(),
        };
        let secs = match value {
            Scalar::Int(n) => *n,
            Scalar::UInt(n) => i64::try_from(*n).map_err(|_| bad())?,
            Scalar::Float(x) if x.is_finite() && x.abs() < 1e15 => x.floor() as i64,
            Scalar::Str(s) => {
                let s = s.trim();
                if let Ok(n) = s.parse::<i64>() {
                    n
                } else {
                    chrono::DateTime::parse_from_rfc3339(s)
                        .map_err(|_| bad())?
                        .timestamp()
                }
            }
            _ => return Err(bad()),
        };
        if !crate::bucket::in_supported_range(secs) {
            return Err(Error::EventTimeRange {
                field: field.to_owned(),
                value: secs,
            });
        }
        Ok(Some(secs))
    }

    /// Copies every borrowed string, detaching the event from its input.
    pub fn into_owned(self) -> IncomingEvent<'static> {
        IncomingEvent {
            properties: self
                .properties
                .into_iter()
                .map(|(n, v)| (Cow::Owned(n.into_owned()), v.into_owned()))
                .collect(),
        }
    }

    /// Checks the `event` name of an event built through its `Deserialize` impl (for callers
    /// that parse events inside a larger document); the `parse_*`/`from_*` functions already
    /// do this.
    pub fn validate(self) -> Result<Self> {
        self.validated()
    }

    fn validated(self) -> Result<Self> {
        self.check_name().map(|()| self)
    }

    /// Whether the `event` property is a non-blank string, else an error naming what it is.
    fn check_name(&self) -> Result<()> {
        match self.get("event") {
            None => Err(Error::EventName("is missing")),
            Some(Scalar::Str(s)) if s.trim().is_empty() => Err(Error::EventName("is empty")),
            Some(Scalar::Str(_)) => Ok(()),
            Some(_) => Err(Error::EventName("must be a string")),
        }
    }
}

impl IncomingEvent<'static> {
    /// Builds an owned event from a JSON value (the traqq 0.2 entry point).
    pub fn from_json(value: serde_json::Value) -> Result<Self> {
        IncomingEvent::from_value(&value).map(IncomingEvent::into_owned)
    }

    /// Builds an owned event from a name and a JSON object of properties
    /// (traqq 0.2's `IncomingEvent { event, properties }`).
    pub fn new(event: impl Into<String>, properties: serde_json::Value) -> Result<Self> {
        let mut props = match properties {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => serde_json::Map::new(),
            other => {
                return Err(Error::Json(format!(
                    "properties must be a JSON object, found {}",
                    json_kind(&other)
                )))
            }
        };
        props.insert("event".into(), serde_json::Value::String(event.into()));
        Self::from_json(serde_json::Value::Object(props))
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flattens_and_borrows() {
        let line = r#"{"event":"click","ip":"1.2.3.4","n":3,"x":1.5,"ok":true,"nil":null,
            "arr":[1,{"a":2}],"device":{"os":"linux","v":{"major":5}},"esc":"a\"b"}"#;
        let e = IncomingEvent::parse_str(line).unwrap();
        assert_eq!(e.name(), "click");
        assert!(matches!(e.get("ip"), Some(Scalar::Str(Cow::Borrowed("1.2.3.4")))));
        assert_eq!(e.get("n"), Some(&Scalar::Int(3)));
        assert_eq!(e.get("x"), Some(&Scalar::Float(1.5)));
        // Float labels are written as traqq 0.2 (serde_json) wrote them.
        for (x, text) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (1e21, "1e+21"),
            (-0.000_1, "-0.0001"),
            (1e300, "1e+300"),
        ] {
            assert_eq!(Scalar::Float(x).as_text(), text);
        }
        assert_eq!(e.get("ok"), Some(&Scalar::Bool(true)));
        assert_eq!(e.get("nil"), None);
        assert_eq!(e.get("arr"), None);
        assert_eq!(
            e.get("device.os").map(|s| s.as_text().into_owned()),
            Some("linux".into())
        );
        assert_eq!(e.get("device.v.major"), Some(&Scalar::Int(5)));
        assert_eq!(
            e.get("esc").map(|s| s.as_text().into_owned()),
            Some("a\"b".into())
        );

        // The three entry points agree.
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut a: Vec<_> = e
            .properties()
            .map(|(n, s)| (n.to_owned(), s.as_text().into_owned()))
            .collect();
        let from_json = IncomingEvent::from_json(v).unwrap();
        let mut b: Vec<_> = from_json
            .properties()
            .map(|(n, s)| (n.to_owned(), s.as_text().into_owned()))
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(IncomingEvent::parse_slice(line.as_bytes()).unwrap(), e);
    }

    #[test]
    fn event_name_is_required() {
        let err = |s: &str| IncomingEvent::parse_str(s).unwrap_err().to_string();
        assert!(err(r#"{"ip":"1"}"#).contains("\"event\" is missing"));
        assert!(err(r#"{"event":"  "}"#).contains("\"event\" is empty"));
        assert!(err(r#"{"event":5}"#).contains("\"event\" must be a string"));
        assert!(err(r#"[1,2]"#).contains("invalid event JSON"));
        assert!(err(r#"{"event":"a""#).contains("invalid event JSON"));
        assert!(err(r#"{"event":"a"} {}"#).contains("trailing"));
        assert!(IncomingEvent::from_json(serde_json::json!(5))
            .unwrap_err()
            .to_string()
            .contains("a number"));
    }

    #[test]
    fn timestamps() {
        fn e(s: &str) -> IncomingEvent<'_> {
            IncomingEvent::parse_str(s).unwrap()
        }
        assert_eq!(
            e(r#"{"event":"a","ts":1700000000}"#).timestamp("ts").unwrap(),
            Some(1_700_000_000)
        );
        assert_eq!(
            e(r#"{"event":"a","ts":1700000000.7}"#).timestamp("ts").unwrap(),
            Some(1_700_000_000)
        );
        assert_eq!(
            e(r#"{"event":"a","ts":"2023-11-14T22:13:20Z"}"#)
                .timestamp("ts")
                .unwrap(),
            Some(1_700_000_000)
        );
        assert_eq!(e(r#"{"event":"a"}"#).timestamp("ts").unwrap(), None);
        let err = e(r#"{"event":"a","ts":9223372036854775807}"#)
            .timestamp("ts")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"ts\"") && err.contains("outside"), "{err}");
        assert!(e(r#"{"event":"a","ts":-99999999999999}"#)
            .timestamp("ts")
            .is_err());
        let err = e(r#"{"event":"a","when":"yesterday"}"#)
            .timestamp("when")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"when\"") && err.contains("yesterday"), "{err}");
    }

    /// The attack of issue 13: one long key holding many empty-named values. Each inner name
    /// would have copied the 20 KB parent name (quadratic memory); now none is built.
    #[test]
    fn long_parent_names_are_skipped_without_being_built() {
        let key = "k".repeat(20_000);
        let inner = vec![r#""":0"#; 900].join(",");
        let line = format!(r#"{{"event":"a","{key}":{{{inner}}},"ok":{{"b":1}}}}"#);
        let e = IncomingEvent::parse_str(&line).unwrap();
        let names: Vec<&str> = e.properties().map(|(n, _)| n).collect();
        assert_eq!(names, ["event", "ok.b"]);

        // One byte under, at and past the name limit, top level and nested.
        let limits = EventLimits {
            max_properties: 6,
            max_name_length: 5,
        };
        let e = IncomingEvent::parse_str_with(
            r#"{"event":"a","abcd":1,"abcde":2,"abcdef":3,"a":{"bcd":4,"bcde":5,"b":{"c":6}}}"#,
            limits,
        )
        .unwrap_err();
        // Seven scalars, two of them under skipped names: skipped names still count.
        assert!(e.to_string().contains("limits.max_properties"), "{e}");
        let e = IncomingEvent::parse_str_with(
            r#"{"event":"a","abcd":1,"abcde":2,"abcdef":3,"a":{"bcd":4,"bcde":5,"b":{"c":"\u0041"}}}"#,
            EventLimits {
                max_properties: 100,
                ..limits
            },
        )
        .unwrap();
        let names: Vec<&str> = e.properties().map(|(n, _)| n).collect();
        assert_eq!(names, ["event", "abcd", "abcde", "a.bcd", "a.b.c"]);
        assert_eq!(e.get("a.b.c").map(|s| s.as_text().into_owned()), Some("A".into()));
    }

    #[test]
    fn property_count_is_capped_one_past_the_limit() {
        let limits = EventLimits {
            max_properties: 4,
            max_name_length: 128,
        };
        // `event` + 3 = 4 scalars: accepted; one more, even nested or unnamed-able: refused.
        let ok = r#"{"event":"a","x":1,"n":null,"arr":[1,2,3],"y":{"z":true,"w":"s"}}"#;
        assert_eq!(
            IncomingEvent::parse_str_with(ok, limits)
                .unwrap()
                .properties()
                .count(),
            4
        );
        for past in [
            r#"{"event":"a","x":1,"y":{"z":true,"w":"s","v":0}}"#,
            r#"{"event":"a","x":1,"y":2,"z":3,"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":4}"#,
        ] {
            let err = IncomingEvent::parse_str_with(past, limits)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("more than 4 properties") && err.contains("limits.max_properties"),
                "{err}"
            );
        }
        // The JSON-value entry point applies the same rules.
        let value: serde_json::Value =
            serde_json::from_str(&format!(r#"{{"event":"a","{}":{{"b":1}}}}"#, "k".repeat(200))).unwrap();
        let e = IncomingEvent::from_value(&value).unwrap();
        assert_eq!(e.properties().count(), 1);
        let many: serde_json::Value = serde_json::from_str(&format!(
            r#"{{"event":"a",{}}}"#,
            (0..1000)
                .map(|i| format!(r#""p{i}":{i}"#))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .unwrap();
        let err = IncomingEvent::from_value(&many).unwrap_err().to_string();
        assert!(err.contains("limits.max_properties"), "{err}");
    }

    #[test]
    fn numbers_as_amounts() {
        assert_eq!(Scalar::Str("0.99".into()).as_number(), Some(0.99));
        assert_eq!(Scalar::Str("abc".into()).as_number(), None);
        assert_eq!(Scalar::Str("NaN".into()).as_number(), None);
        assert_eq!(Scalar::Str("inf".into()).as_number(), None);
        assert_eq!(Scalar::Int(3).as_number(), Some(3.0));
        assert_eq!(Scalar::Bool(true).as_number(), None);
    }

    /// One event parsed into line after line (as `record_json_lines` does) holds exactly what
    /// a fresh parse of each line gives, and fails with the same error: nothing of an earlier
    /// line (a longer one, a failed one) is left in it.
    #[test]
    fn reparsing_into_one_event_equals_parsing_each_line() {
        let limits = EventLimits {
            max_properties: 6,
            max_name_length: 8,
        };
        let lines = [
            r#"{"event":"a","geo":"US","n":1,"x":{"y":true,"z":"\u0041"},"f":1.5}"#,
            r#"{"event":"b"}"#,
            r#"{"event":"a","geo":"US","n":1,"x":{"y":true,"z":"s"},"f":1.5,"g":2}"#,
            r#"{"event":"c","geo":"DE"}"#,
            r#"{"event":"c","geo":"DE""#,
            r#"{"geo":"DE"}"#,
            r#"{"event":"  "}"#,
            r#"{"event":7}"#,
            r#"[1,2]"#,
            r#"{"event":"d","longname1":1,"geo":"FR","geo":"IT"}"#,
            r#"{"event":"e"} trailing"#,
            r#"{"event":"f","ts":"2026-12-03T10:00:00Z"}"#,
        ];
        let mut event = IncomingEvent::default();
        for line in lines {
            let fresh = IncomingEvent::parse_str_with(line, limits);
            let again = event.reparse_str_with(line, limits);
            match (fresh, again) {
                (Ok(fresh), Ok(())) => assert_eq!(event, fresh, "{line}"),
                (Err(fresh), Err(again)) => {
                    assert_eq!(fresh.to_string(), again.to_string(), "{line}");
                    assert_eq!(event.properties().count(), 0, "{line}");
                }
                (fresh, again) => panic!("{line}: parse gave {fresh:?}, reparse {again:?}"),
            }
        }
    }
}
