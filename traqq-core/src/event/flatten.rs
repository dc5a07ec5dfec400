//! Flattening: nested JSON objects become dotted scalar properties, within [`EventLimits`].
//!
//! Two paths fill the same [`Sink`]: the streaming one (serde `Deserialize` seeds, which borrow
//! strings from the input text) for lines the flat scanner declines, and [`flatten_value`] for
//! an already parsed `serde_json::Value`. Names and limits come out alike on both.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{EventLimits, IncomingEvent, Scalar};

/// Where a property name goes: at the top level, under a kept parent name, or nowhere (the
/// parent's name was already longer than [`EventLimits::max_name_length`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Prefix<'p> {
    Root,
    Under(&'p str),
    Dropped,
}

impl<'p> Prefix<'p> {
    /// The full name of `key` under this prefix, or `None` when it would be longer than `max`
    /// (then it is never built: a name costs at most `max` bytes, so flattening stays linear).
    #[inline(always)]
    pub(super) fn join<'a>(self, key: Cow<'a, str>, max: usize) -> Option<Cow<'a, str>> {
        match self {
            Prefix::Dropped => None,
            Prefix::Root => (key.len() <= max).then_some(key),
            Prefix::Under(p) => (p.len() + 1 + key.len() <= max).then(|| Cow::Owned(format!("{p}.{key}"))),
        }
    }

    fn of(name: Option<&'p str>) -> Prefix<'p> {
        name.map_or(Prefix::Dropped, Prefix::Under)
    }
}

/// The properties gathered so far, and the scalar values seen (kept or not).
pub(super) struct Sink<'de> {
    pub(super) out: Vec<(Cow<'de, str>, Scalar<'de>)>,
    pub(super) leaves: usize,
    pub(super) limits: EventLimits,
}

impl<'de> Sink<'de> {
    /// Counts one scalar value; an error names the limit once there are too many.
    #[inline]
    fn count(&mut self) -> std::result::Result<(), String> {
        self.leaves += 1;
        if self.leaves > self.limits.max_properties {
            return Err(format!(
                "event has more than {} properties (limits.max_properties)",
                self.limits.max_properties
            ));
        }
        Ok(())
    }

    #[inline(always)]
    pub(super) fn push(
        &mut self,
        name: Option<Cow<'de, str>>,
        value: Scalar<'de>,
    ) -> std::result::Result<(), String> {
        self.count()?;
        if let Some(name) = name {
            self.out.push((name, value));
        }
        Ok(())
    }
}

pub(super) fn flatten_value<'a>(
    prefix: Prefix<'_>,
    map: &'a serde_json::Map<String, serde_json::Value>,
    sink: &mut Sink<'a>,
) -> std::result::Result<(), String> {
    use serde_json::Value as V;
    for (k, v) in map {
        let name = prefix.join(Cow::Borrowed(k.as_str()), sink.limits.max_name_length);
        let scalar = match v {
            V::String(s) => Scalar::Str(Cow::Borrowed(s)),
            V::Bool(b) => Scalar::Bool(*b),
            V::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Scalar::Int(i),
                (_, Some(u), _) => Scalar::UInt(u),
                (_, _, Some(x)) => Scalar::Float(x),
                _ => continue,
            },
            V::Object(inner) => {
                flatten_value(Prefix::of(name.as_deref()), inner, sink)?;
                continue;
            }
            V::Null | V::Array(_) => continue,
        };
        sink.push(name, scalar)?;
    }
    Ok(())
}

// ---- streaming deserialization: flattens while parsing, borrowing where it can ----

impl<'de> Deserialize<'de> for IncomingEvent<'de> {
    /// Parses within the default [`EventLimits`] (use the limits as a `DeserializeSeed` for
    /// others).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        EventLimits::default().deserialize(deserializer)
    }
}

/// Parses one event within these limits (for parsers that read events inside a larger
/// document, such as the server's requests).
impl<'de> DeserializeSeed<'de> for EventLimits {
    type Value = IncomingEvent<'de>;
    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        // No pre-allocation: an event holds what it carries, so a batch of tiny events costs
        // memory in proportion to its text.
        self.deserialize_into(deserializer, Vec::new())
    }
}

impl EventLimits {
    /// Parses one event within these limits, its properties pushed onto `out` (empty, perhaps
    /// with room left by an earlier event).
    pub(super) fn deserialize_into<'de, D: Deserializer<'de>>(
        self,
        deserializer: D,
        out: Vec<(Cow<'de, str>, Scalar<'de>)>,
    ) -> std::result::Result<IncomingEvent<'de>, D::Error> {
        let mut sink = Sink {
            out,
            leaves: 0,
            limits: self,
        };
        deserializer.deserialize_map(ObjectSeed {
            prefix: Prefix::Root,
            sink: &mut sink,
        })?;
        Ok(IncomingEvent { properties: sink.out })
    }
}

/// Visits an object, pushing its scalars (and those of nested objects) into the sink.
struct ObjectSeed<'o, 'de> {
    prefix: Prefix<'o>,
    sink: &'o mut Sink<'de>,
}

impl<'de> Visitor<'de> for ObjectSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(BorrowedStr)? {
            let name = self.prefix.join(key, self.sink.limits.max_name_length);
            map.next_value_seed(ValueSeed {
                name,
                sink: &mut *self.sink,
            })?;
        }
        Ok(())
    }
}

/// Deserializes a string borrowed from the input text, copied only when it holds escapes
/// (a `DeserializeSeed` for map keys and values of zero-copy parsers, here and in the server).
#[derive(Debug, Clone, Copy)]
pub struct BorrowedStr;

impl<'de> DeserializeSeed<'de> for BorrowedStr {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for BorrowedStr {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// One property value: a scalar is pushed, an object recursed into, arrays and null skipped.
/// `name` is `None` when the name is too long to keep (the value is still read and counted).
struct ValueSeed<'o, 'de> {
    name: Option<Cow<'de, str>>,
    sink: &'o mut Sink<'de>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> ValueSeed<'_, 'de> {
    fn push<E: de::Error>(self, v: Scalar<'de>) -> std::result::Result<(), E> {
        self.sink.push(self.name, v).map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<(), E> {
        self.push(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<(), E> {
        self.push(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<(), E> {
        match i64::try_from(v) {
            Ok(i) => self.push(Scalar::Int(i)),
            Err(_) => self.push(Scalar::UInt(v)),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<(), E> {
        self.push(Scalar::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<(), E> {
        self.push(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<(), E> {
        // An escaped string is copied only when its name is kept.
        if self.name.is_none() {
            return self.sink.count().map_err(E::custom);
        }
        self.push(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<(), E> {
        self.push(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<(), A::Error> {
        let ValueSeed { name, sink } = self;
        ObjectSeed {
            prefix: Prefix::of(name.as_deref()),
            sink,
        }
        .visit_map(map)
    }
}
