//! The wire format: TCP request lines and HTTP event bodies, parsed in one pass with serde
//! seeds. Plain fields stay raw JSON until a command reads them; events are parsed straight
//! from the text into borrowed [`IncomingEvent`]s, within the request's limits, so nothing is
//! built that a limit would refuse.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use traqq_core::event::{scan_request, BorrowedStr, EventLimits, IncomingEvent};

use crate::cmd::{clip, kind_of, parse_fields, Fields, Parsed};
use crate::protocol::{
    batch_too_long, BadRequest, Command, EventResult, Request, RequestLimits, COMMAND_LIST,
};

/// The `cmd` and `token` of a request line, found by a scan that builds nothing else (for the
/// auth check before parsing). Unreadable parts count as absent.
pub(crate) fn peek_auth(line: &[u8]) -> (Option<Command>, Option<String>) {
    #[derive(Default)]
    struct AuthFields {
        cmd: Option<Command>,
        token: Option<String>,
    }
    struct Peek;
    impl<'de> Visitor<'de> for Peek {
        type Value = AuthFields;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<AuthFields, A::Error> {
            let mut found = AuthFields::default();
            while let Some(key) = map.next_key_seed(BorrowedStr)? {
                match &*key {
                    "cmd" => {
                        found.cmd = map
                            .next_value_seed(KindOr(BorrowedText))?
                            .ok()
                            .and_then(|c: Cow<'_, str>| Command::parse(&c));
                    }
                    "token" => {
                        found.token = map
                            .next_value_seed(KindOr(BorrowedText))?
                            .ok()
                            .map(Cow::into_owned)
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(line);
    match de.deserialize_map(Peek) {
        Ok(found) => (found.cmd, found.token),
        Err(_) => (None, None),
    }
}

/// A string value borrowed from the input, through [`KindOr`] (other kinds are named).
#[derive(Debug, Clone, Copy)]
struct BorrowedText;

/// Parses one TCP line: UTF-8, a JSON object, a known `cmd`, well-typed fields, events within
/// `limits`. Returns the request and the optional per-request `token`.
pub fn parse_line(
    line: &[u8],
    limits: RequestLimits,
) -> std::result::Result<(Request<'_>, Option<String>), BadRequest> {
    let bad = |command, message: String| BadRequest { command, message };
    let text = std::str::from_utf8(line).map_err(|e| {
        bad(
            Command::Invalid,
            format!(
                "request is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    match scan_record_batch(text, limits) {
        Some(parsed) => Ok(parsed),
        None => parse_text(text, limits),
    }
}

/// [`parse_line`] for any request text, through the serde seeds.
fn parse_text(
    text: &str,
    limits: RequestLimits,
) -> std::result::Result<(Request<'_>, Option<String>), BadRequest> {
    let bad = |command, message: String| BadRequest { command, message };
    let envelope = parse_envelope(text, limits).map_err(|m| bad(Command::Invalid, m))?;
    let fields = Fields::Json(envelope.fields);
    let cmd = match fields.raw("cmd") {
        None => {
            return Err(bad(
                Command::Invalid,
                format!("missing field \"cmd\" (one of {COMMAND_LIST})"),
            ))
        }
        Some(raw) => {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            BorrowedStr.deserialize(&mut de).map_err(|_| {
                bad(
                    Command::Invalid,
                    format!("field \"cmd\" must be a string, found {}", kind_of(raw)),
                )
            })?
        }
    };
    let command = Command::parse(&cmd).ok_or_else(|| {
        bad(
            Command::Invalid,
            format!("unknown cmd {:?} (expected one of {COMMAND_LIST})", clip(&cmd)),
        )
    })?;
    let token = fields.string("token").map_err(|m| bad(command, m))?;
    let request = match command {
        Command::Record => match envelope.event {
            None | Some(Err("null")) => Err("missing field \"event\" (the event object)".to_owned()),
            Some(Err(kind)) => Err(format!("field \"event\" must be a JSON object, found {kind}")),
            Some(Ok(event)) => Ok(Request::Record(event.validate())),
        },
        Command::RecordBatch => match envelope.events {
            None | Some(Err("null")) => Err("missing field \"events\" (a list of event objects)".to_owned()),
            Some(Err(kind)) => Err(format!(
                "field \"events\" must be a JSON array of event objects, found {kind}"
            )),
            Some(Ok(list)) => Ok(Request::RecordBatch(list)),
        },
        _ => parse_fields(command, &fields),
    }
    .map_err(|m| bad(command, m))?;
    Ok((request, token))
}

/// The common batch line, `{"cmd":"record_batch","events":[…]}` with flat events (and perhaps a
/// `token`), read by traqq-core's flat scanner in one pass, about twice as fast as the serde
/// seeds. Anything else, an error included, is `None` and goes to [`parse_envelope`], so the
/// answer and every message are the same either way.
fn scan_record_batch(text: &str, limits: RequestLimits) -> Option<(Request<'_>, Option<String>)> {
    let scanned = scan_request(text, "events", limits.event, limits.max_batch_events)?;
    let (mut cmd, mut token) = (None, None);
    for &(name, value) in &scanned.strings {
        let field = match name {
            "cmd" => &mut cmd,
            "token" => &mut token,
            _ => return None,
        };
        // A field given twice is left to the usual parser and its rule.
        if field.replace(value).is_some() {
            return None;
        }
    }
    if Command::parse(cmd?) != Some(Command::RecordBatch) {
        return None;
    }
    let events = scanned.events.into_iter().map(IncomingEvent::validate).collect();
    Some((Request::RecordBatch(events), token.map(str::to_owned)))
}

/// Element of a parsed list: the event (validated), or an error naming what it was instead.
fn checked_event(parsed: Parsed1<'_>) -> EventResult<'_> {
    match parsed {
        Ok(event) => event.validate(),
        Err(kind) => Err(traqq_core::Error::Json(format!(
            "expected a JSON object, found {kind}"
        ))),
    }
}

/// An event or a list of events as parsed in place: `Err(kind)` when the JSON value was
/// something else (`"a string"`, `"null"`, ...).
type Parsed1<'a> = std::result::Result<IncomingEvent<'a>, &'static str>;
/// A list of events, each already through [`checked_event`] (one pass, one vector), or
/// `Err(kind)` when the value was not a list.
type ParsedList<'a> = std::result::Result<Vec<EventResult<'a>>, &'static str>;

/// A request line parsed in one pass: plain fields kept as raw JSON, `event`/`events` parsed
/// into events on the way (so a 1,000-event batch is scanned once, not three times).
#[derive(Debug, Default)]
struct Envelope<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    event: Option<Parsed1<'a>>,
    events: Option<ParsedList<'a>>,
}

fn parse_envelope(text: &str, limits: RequestLimits) -> Parsed<Envelope<'_>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de
        .deserialize_map(EnvelopeVisitor(limits))
        .and_then(|env| de.end().map(|()| env));
    parsed.map_err(|e| describe_json_error(text, "request", &e))
}

/// A clear message for a document that did not parse as the object wanted.
fn describe_json_error(text: &str, what: &str, e: &serde_json::Error) -> String {
    if e.to_string().contains("recursion limit") {
        return format!("{what} is nested too deeply (serde_json's recursion limit is 128 levels)");
    }
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) if !raw.get().starts_with('{') && !raw.get().starts_with('[') => {
            format!("{what} must be a JSON object, found {}", kind_of(raw))
        }
        Ok(raw) if what == "request" && raw.get().starts_with('[') => {
            format!("{what} must be a JSON object, found an array")
        }
        // A limit met inside the object (too many events or properties): the seeds' message.
        Ok(_) if e.classify() == serde_json::error::Category::Data => format!("{what} refused: {e}"),
        _ => format!("malformed JSON {what}: {e}"),
    }
}

struct EnvelopeVisitor(RequestLimits);

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Envelope<'de>, A::Error> {
        let mut env = Envelope::default();
        while let Some(key) = map.next_key_seed(BorrowedStr)? {
            match &*key {
                "event" => {
                    let seed = EventSeed {
                        limits: self.0.event,
                        scratch: None,
                    };
                    env.event = Some(map.next_value_seed(seed)?);
                }
                "events" => env.events = Some(map.next_value_seed(EventsSeed(self.0))?),
                _ => {
                    let raw: &RawValue = map.next_value()?;
                    env.fields.push((key, raw));
                }
            }
        }
        Ok(env)
    }
}

/// One event within its limits: an object becomes an [`IncomingEvent`]; any other value is
/// consumed and named, so one bad element does not spoil its batch. The events of a list are
/// parsed into one scratch event and each kept at exactly its size: one allocation per event,
/// not one per doubling of its property list.
#[derive(Debug)]
struct EventSeed<'s, 'de> {
    limits: EventLimits,
    scratch: Option<&'s mut IncomingEvent<'de>>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_, 'de> {
    type Value = Parsed1<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(KindOr(self))
    }
}

/// A list of at most `max_batch_events` events; any other value is consumed and named. One
/// element past the limit stops the parse with an error naming it: the rest of the list is
/// never read, let alone built.
#[derive(Debug, Clone, Copy)]
struct EventsSeed(RequestLimits);

impl<'de> DeserializeSeed<'de> for EventsSeed {
    type Value = ParsedList<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(KindOr(self))
    }
}

/// Visits any JSON value: the wanted shape goes to the inner seed, other kinds are named.
struct KindOr<S>(S);

impl<'de, S: Wanted<'de>> DeserializeSeed<'de> for KindOr<S> {
    type Value = Kinded<S::Out>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

type Kinded<T> = std::result::Result<T, &'static str>;

trait Wanted<'de>: Sized {
    type Out;
    fn map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Kinded<Self::Out>, A::Error>;
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Kinded<Self::Out>, A::Error>;
    /// A string, when strings are wanted (`None`: named as "a string").
    fn borrowed_str(self, _: &'de str) -> Option<Self::Out> {
        None
    }
    /// An escaped string, when strings are wanted.
    fn owned_str(self, _: &str) -> Option<Self::Out> {
        None
    }
}

impl<'de> Wanted<'de> for EventSeed<'_, 'de> {
    type Out = IncomingEvent<'de>;
    fn map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        let map = MapAccessDeserializer::new(map);
        match self.scratch {
            Some(scratch) => {
                scratch.deserialize_reusing(map, self.limits)?;
                Ok(Ok(scratch.take_exact()))
            }
            None => self.limits.deserialize(map).map(Ok),
        }
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err("an array"))
    }
}

impl<'de> Wanted<'de> for EventsSeed {
    type Out = Vec<EventResult<'de>>;
    fn map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err("an object"))
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        let max = self.0.max_batch_events;
        let mut out = Vec::new();
        let mut scratch = IncomingEvent::default();
        loop {
            let seed = EventSeed {
                limits: self.0.event,
                scratch: Some(&mut scratch),
            };
            let Some(e) = seq.next_element_seed(seed)? else {
                break;
            };
            out.push(checked_event(e));
            if out.len() == max {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(batch_too_long(max)));
                }
                break;
            }
        }
        Ok(Ok(out))
    }
}

impl<'de> Wanted<'de> for BorrowedText {
    type Out = Cow<'de, str>;
    fn map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err("an object"))
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Kinded<Self::Out>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err("an array"))
    }
    fn borrowed_str(self, v: &'de str) -> Option<Self::Out> {
        Some(Cow::Borrowed(v))
    }
    fn owned_str(self, v: &str) -> Option<Self::Out> {
        Some(Cow::Owned(v.to_owned()))
    }
}

impl<'de, S: Wanted<'de>> Visitor<'de> for KindOr<S> {
    type Value = Kinded<S::Out>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Value, A::Error> {
        self.0.map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Self::Value, A::Error> {
        self.0.seq(seq)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(Err("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(self.0.borrowed_str(v).ok_or("a string"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(self.0.owned_str(v).ok_or("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(Err("null"))
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(Err("null"))
    }
}

/// Parses a `POST /v1/events` body: one object, an array of objects, or NDJSON (`ndjson`: the
/// content type said so), within `limits`. Never panics, whatever the bytes.
pub fn parse_events_body(
    body: &[u8],
    ndjson: bool,
    limits: RequestLimits,
) -> Result<Request<'_>, BadRequest> {
    let fail = |command, message| BadRequest { command, message };
    let text = std::str::from_utf8(body).map_err(|e| {
        fail(
            Command::RecordBatch,
            format!(
                "request body is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    // NDJSON: lines are parsed one by one and counted as they go; one line past the limit
    // stops the request before anything past it is read.
    let lines = || -> Result<Request<'_>, BadRequest> {
        let mut events = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if events.len() == limits.max_batch_events {
                return Err(fail(
                    Command::RecordBatch,
                    batch_too_long(limits.max_batch_events),
                ));
            }
            events.push(IncomingEvent::parse_str_with(line, limits.event));
        }
        Ok(Request::RecordBatch(events))
    };
    if ndjson {
        return lines();
    }
    match text.trim_start().as_bytes().first() {
        Some(b'{') => match IncomingEvent::parse_str_with(text.trim(), limits.event) {
            // Several objects one per line without the NDJSON content type: still NDJSON.
            Err(traqq_core::Error::Json(m)) if m.contains("trailing characters") => lines(),
            // Anything else is this one event's verdict (a parse error counts as a rejected event).
            parsed => Ok(Request::Record(parsed)),
        },
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_str(text);
            let list = EventsSeed(limits)
                .deserialize(&mut de)
                .and_then(|list| de.end().map(|()| list))
                .map_err(|e| {
                    fail(
                        Command::RecordBatch,
                        describe_json_error(text, "request body", &e),
                    )
                })?
                .map_err(|kind| fail(Command::RecordBatch, format!("request body is {kind}")))?;
            Ok(Request::RecordBatch(list))
        }
        _ => Err(fail(
            Command::RecordBatch,
            "request body must be a JSON event object, a JSON array of event objects, or NDJSON \
             (Content-Type: application/x-ndjson)"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Range;
    use traqq_core::bucket::BucketKind;

    const LIMITS: RequestLimits = RequestLimits {
        max_batch_events: 10,
        event: EventLimits {
            max_properties: 1000,
            max_name_length: 128,
        },
    };

    fn err(line: &str) -> String {
        parse_line(line.as_bytes(), LIMITS).unwrap_err().message
    }

    /// The flat scanner's batch lines read exactly as the serde seeds read them; every other
    /// line is left to the seeds.
    #[test]
    fn batch_lines_scan_as_the_seeds_parse_them() {
        let event = |i: usize| {
            format!(
                r#"{{"event":"e{i}","geo":"US","n":{i},"f":1.50,"t":true,"z":null,"ua":"Mozilla/5.0 (X11)"}}"#
            )
        };
        let ten = (0..10).map(event).collect::<Vec<_>>().join(",");
        let scanned = [
            format!(r#"{{"cmd":"record_batch","events":[{ten}]}}"#),
            format!(r#"{{"events":[{ten}],"token":"s3cret","cmd":"record_batch"}}"#),
            r#" { "cmd" : "record_batch" , "events" : [ ] } "#.to_owned(),
            // Per-event verdicts are the same: no name, a blank one.
            r#"{"cmd":"record_batch","events":[{"geo":"US"},{"event":" "},{}]}"#.to_owned(),
        ];
        for line in &scanned {
            let fast = scan_record_batch(line, LIMITS).map(|r| format!("{r:?}"));
            let seeds = parse_text(line, LIMITS).map(|r| format!("{r:?}"));
            assert_eq!(fast, seeds.ok(), "{line}");
        }
        let eleven = (0..11).map(event).collect::<Vec<_>>().join(",");
        let left = [
            format!(r#"{{"cmd":"record_batch","events":[{eleven}]}}"#),
            r#"{"cmd":"record","events":[]}"#.to_owned(),
            r#"{"cmd":"record_batch","events":[],"id":"7"}"#.to_owned(),
            r#"{"cmd":"record_batch","cmd":"record_batch","events":[]}"#.to_owned(),
            r#"{"cmd":"record_batch","events":[],"events":[]}"#.to_owned(),
            r#"{"cmd":"record_batch","events":[{"event":"a","d":{"x":1}}]}"#.to_owned(),
            r#"{"cmd":"record_batch","events":[{"event":"a\u0041"}]}"#.to_owned(),
            r#"{"cmd":"record_batch","events":["x"]}"#.to_owned(),
            r#"{"cmd":"record_batch","events":[{"event":"a"},]}"#.to_owned(),
            r#"{"cmd":"record_batch","events":{}}"#.to_owned(),
            r#"{"cmd":"record_batch","token":5,"events":[]}"#.to_owned(),
            r#"{"cmd":"record_batch","events":[]} x"#.to_owned(),
        ];
        for line in &left {
            assert!(scan_record_batch(line, LIMITS).is_none(), "{line}");
        }
        // What the seeds say of those stays what the line gets.
        assert!(err(&left[0]).contains("10"), "{}", err(&left[0]));
        assert!(err(&left[8]).starts_with("malformed JSON request"));
    }

    /// Pieces of batch lines, valid and not, in any order and spacing.
    fn member() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let event = prop_oneof![
            Just(r#"{"event":"a","geo":"US","n":-0,"f":0.10}"#),
            Just(r#"{"event":"b","ip":"1.2.3.4","ok":false,"z":null}"#),
            Just(r#"{"geo":"DE"}"#),
            Just(r#"{"event":"c","d":{"x":1}}"#),
            Just(r#"{"event":"A"}"#),
            Just(r#"{"event":"e","n":1e3}"#),
            Just(r#""x""#),
            Just("{}"),
            Just("[]"),
        ];
        prop_oneof![
            Just(r#""cmd":"record_batch""#.to_owned()),
            Just(r#""cmd":"record""#.to_owned()),
            Just(r#""token":"t""#.to_owned()),
            Just(r#""token":7"#.to_owned()),
            Just(r#""id":"x""#.to_owned()),
            proptest::collection::vec(event.clone(), 0..12)
                .prop_map(|e| format!(r#""events":[{}]"#, e.join(","))),
            proptest::collection::vec(event, 0..3)
                .prop_map(|e| format!(r#""events" : [ {} ] "#, e.join(" , "))),
        ]
    }

    proptest::proptest! {
        #[test]
        fn whatever_the_scanner_reads_the_seeds_read_alike(
            members in proptest::collection::vec(member(), 0..5),
            tail in proptest::sample::select(vec!["", " ", "\n", ",", "}"]),
        ) {
            let line = format!("{{{}}}{tail}", members.join(","));
            if let Some(fast) = scan_record_batch(&line, LIMITS) {
                let seeds = parse_text(&line, LIMITS).map(|r| format!("{r:?}"));
                proptest::prop_assert_eq!(Some(format!("{fast:?}")), seeds.ok(), "{}", line);
            }
        }
    }

    #[test]
    fn parse_errors_are_clear() {
        assert!(err("{").starts_with("malformed JSON request"));
        assert_eq!(err("[1]"), "request must be a JSON object, found an array");
        assert_eq!(err("\"x\""), "request must be a JSON object, found a string");
        assert!(err("{}").starts_with("missing field \"cmd\""));
        assert_eq!(
            err(r#"{"cmd":5}"#),
            "field \"cmd\" must be a string, found a number"
        );
        assert!(err(r#"{"cmd":"nope"}"#).starts_with("unknown cmd \"nope\""));
        assert!(err(r#"{"cmd":"record"}"#).starts_with("missing field \"event\""));
        assert_eq!(
            err(r#"{"cmd":"record","event":"x"}"#),
            "field \"event\" must be a JSON object, found a string"
        );
        assert_eq!(
            err(r#"{"cmd":"query","min":5,"max":1}"#),
            "\"min\" (5) is after \"max\" (1)"
        );
        assert_eq!(
            err(r#"{"cmd":"query","min":"a","max":1}"#),
            "field \"min\" must be an integer, found a string (\"a\")"
        );
        assert_eq!(
            err(r#"{"cmd":"query_days","days":-1}"#),
            "\"days\" must be 0 or more, found -1"
        );
        assert!(err(r#"{"cmd":"query","min":1,"max":1e300}"#).contains("must be an integer"));
        assert!(err(r#"{"cmd":"query","min":-9223372036854775808,"max":1}"#).contains("out of range"));
        assert!(
            err(r#"{"cmd":"record_batch","events":[{},{},{},{},{},{},{},{},{},{},{}]}"#)
                .contains("server.max_batch_events = 10")
        );
        assert!(
            err(r#"{"cmd":"find","days":1,"metric_type":"xyz","key":"a"}"#).contains("unknown metric type")
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        // Raw values are skipped without recursion, so depth alone is no problem here; the
        // event parser enforces serde_json's limit (see the integration tests).
        assert_eq!(err(&deep), "request must be a JSON object, found an array");
        assert!(parse_line(b"{\"cmd\":\"ping\",\"x\":\"\xff\"}", LIMITS)
            .unwrap_err()
            .message
            .contains("UTF-8"));
    }

    #[test]
    fn traqq_02_requests_parse() {
        let (r, _) = parse_line(br#"{"cmd":"query","min":1700000000,"max":1700086400}"#, LIMITS).unwrap();
        assert!(matches!(
            r,
            Request::Query {
                range: Range::MinMax(1_700_000_000, 1_700_086_400),
                ..
            }
        ));
        let (r, _) = parse_line(
            br#"{"cmd":"find","min":1,"max":2,"metric_type":"add","key":"event","add_key":null,"merge":true}"#,
            LIMITS,
        )
        .unwrap();
        let Request::Find { find, .. } = r else { panic!() };
        assert!(find.merge && find.add_key.is_none());
        let (r, t) = parse_line(
            br#"{"cmd":"query_days","days":7,"bucket":"h","token":"t","accept":"add:*"}"#,
            LIMITS,
        )
        .unwrap();
        assert_eq!(t.as_deref(), Some("t"));
        let Request::Query { opts, range, .. } = r else {
            panic!()
        };
        assert_eq!(
            (opts.bucket, range, opts.accept),
            (BucketKind::Hour, Range::Days(7), vec!["add:*".to_string()])
        );
    }

    /// The events of a batch are parsed into one scratch event, each then kept at its own
    /// size: every one equals the same object parsed alone, whatever came before it (a longer
    /// event, a non-object, an event without a name).
    #[test]
    fn batch_events_equal_the_same_objects_parsed_alone() {
        let elements = [
            r#"{"event":"a","geo":"US","n":1,"x":{"y":true,"z":"\u0041"},"f":1.5,"g":"x"}"#,
            r#"{"event":"b"}"#,
            r#"[1,2]"#,
            r#"{"geo":"DE"}"#,
            r#"{"event":"c","geo":"DE","geo":"FR"}"#,
            r#""text""#,
            r#"{"event":"d","ip":"1.2.3.4"}"#,
        ];
        let line = format!(r#"{{"cmd":"record_batch","events":[{}]}}"#, elements.join(","));
        let (request, _) = parse_line(line.as_bytes(), LIMITS).unwrap();
        let Request::RecordBatch(list) = request else {
            panic!("not a batch")
        };
        assert_eq!(list.len(), elements.len());
        for (element, parsed) in elements.iter().zip(&list) {
            let alone = IncomingEvent::parse_str_with(element, LIMITS.event);
            match (parsed, alone) {
                (Ok(parsed), Ok(alone)) => assert_eq!(*parsed, alone, "{element}"),
                (Err(_), Err(_)) => {}
                (parsed, alone) => panic!("{element}: in the batch {parsed:?}, alone {alone:?}"),
            }
        }
    }
}
