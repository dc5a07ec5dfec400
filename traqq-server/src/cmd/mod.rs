//! One module per command: each reads its fields, runs on the engine and says what to answer.
//! The dispatch checks the token once and turns the answer into a reply.

mod auth;
mod find;
mod group;
mod health;
mod ping;
mod query;
mod record;
mod record_batch;

pub(crate) use auth::token_matches;
pub(crate) use group::{record_group, Grouped};

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use traqq_storage::Traqq;

use crate::metrics::Metrics;
use crate::protocol::{Command, Request, Session, Status};

/// What a command runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) traqq: &'a Traqq,
    pub(crate) metrics: &'a Metrics,
    /// `server.auth_token`.
    pub(crate) token: Option<&'a str>,
    /// `server.max_reply_bytes`.
    pub(crate) max_reply_bytes: usize,
}

/// Why a command did not succeed: a refusal it words itself, or a store failure (the dispatch
/// words those, the same for every command).
#[derive(Debug)]
pub(crate) enum Failure {
    Refused(Status, String),
    Store(traqq_storage::Error),
}

impl From<traqq_storage::Error> for Failure {
    fn from(e: traqq_storage::Error) -> Self {
        Failure::Store(e)
    }
}

impl From<traqq_core::Error> for Failure {
    fn from(e: traqq_core::Error) -> Self {
        Failure::Store(e.into())
    }
}

/// A command's answer: the reply's `data` (JSON), if it has one.
pub(crate) type Answer = Result<Option<Vec<u8>>, Failure>;

/// Runs a parsed request.
pub(crate) fn run(ctx: Ctx<'_>, request: Request<'_>, session: &mut Session) -> Answer {
    match request {
        Request::Ping => ping::run(),
        Request::Auth { token } => auth::run(ctx, &token, session),
        Request::Health => health::run(ctx),
        Request::Record(event) => record::run(ctx, event),
        Request::RecordBatch(events) => record_batch::run(ctx, events),
        Request::Query {
            range,
            opts,
            totals,
            group,
            zone,
            ..
        } => query::run(ctx, range, *opts, totals, group, zone),
        Request::Find {
            range,
            opts,
            find,
            zone,
        } => find::run(ctx, range, *opts, &find, zone),
    }
}

/// Builds a request of `command` from its fields (shared by TCP lines and HTTP calls).
pub(crate) fn parse_fields<'a>(command: Command, fields: &Fields<'a>) -> Parsed<Request<'a>> {
    match command {
        Command::Ping => Ok(Request::Ping),
        Command::Health => Ok(Request::Health),
        Command::Auth => auth::parse(fields),
        // Events come from the request body (TCP: parsed with the envelope; HTTP: the POST body).
        Command::Record | Command::RecordBatch => Err(format!(
            "{} takes its events from the request body",
            command.as_str()
        )),
        Command::Query | Command::QueryDays => query::parse(command, fields),
        Command::Find => find::parse(fields),
        Command::Invalid => Err("invalid request".into()),
    }
}

/// `value` as JSON, or a refusal once it passes `max` bytes (serializing stops there: a huge
/// answer never doubles in memory as text).
pub(crate) fn json_within<T: Serialize>(value: &T, max: usize) -> Answer {
    let mut out = CappedWriter {
        buf: Vec::new(),
        limit: max,
    };
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => Ok(Some(out.buf)),
        Err(_) => Err(Failure::Refused(
            Status::BadRequest,
            format!(
                "the answer is larger than server.max_reply_bytes = {max} bytes; ask for fewer days, \
                 one metric (find), a lower \"limit\", or accept/ignore filters"
            ),
        )),
    }
}

/// A `Vec` that refuses to grow past `limit` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other("reply too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A field's value, or a message naming what is wrong with it.
pub(crate) type Parsed<T> = std::result::Result<T, String>;

/// Request fields, from a JSON object (TCP, HTTP bodies) or URL query parameters (HTTP GET).
#[derive(Debug)]
pub(crate) enum Fields<'a> {
    /// A JSON object's members in order, values unparsed (names borrowed unless escaped; a
    /// repeated name counts once, its last value, as serde does).
    Json(Vec<(Cow<'a, str>, &'a RawValue)>),
    /// `name=value` pairs (a name may repeat, for lists).
    Params(&'a [(String, String)]),
}

pub(crate) fn kind_of(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

impl<'a> Fields<'a> {
    pub(crate) fn raw(&self, name: &str) -> Option<&'a RawValue> {
        match self {
            // `null` counts as absent, as serde's `Option` fields do in traqq 0.2.
            Fields::Json(members) => members
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, raw)| *raw)
                .filter(|r| r.get() != "null"),
            Fields::Params(_) => None,
        }
    }

    pub(crate) fn param(&self, name: &str) -> Option<&'a str> {
        match self {
            Fields::Params(p) => p.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str()),
            Fields::Json(_) => None,
        }
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.raw(name).is_some() || self.param(name).is_some_and(|v| !v.is_empty())
    }

    pub(crate) fn int(&self, name: &str) -> Parsed<Option<i64>> {
        if let Some(raw) = self.raw(name) {
            return serde_json::from_str::<i64>(raw.get()).map(Some).map_err(|_| {
                format!(
                    "field {name:?} must be an integer, found {} ({})",
                    kind_of(raw),
                    clip(raw.get())
                )
            });
        }
        match self.param(name).filter(|v| !v.is_empty()) {
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("parameter {name:?} must be an integer, found {:?}", clip(v))),
            None => Ok(None),
        }
    }

    pub(crate) fn timestamp(&self, name: &str) -> Parsed<Option<i64>> {
        let ts = self.int(name)?;
        // The core's range (years 1..=9999), checked here so the message names the field.
        if let Some(t) = ts.filter(|t| !traqq_core::bucket::in_supported_range(*t)) {
            return Err(format!(
                "{name:?} = {t} is out of range (unix seconds between {} and {})",
                traqq_core::bucket::MIN_TIMESTAMP,
                traqq_core::bucket::MAX_TIMESTAMP
            ));
        }
        Ok(ts)
    }

    pub(crate) fn string(&self, name: &str) -> Parsed<Option<String>> {
        if let Some(raw) = self.raw(name) {
            return serde_json::from_str::<String>(raw.get())
                .map(Some)
                .map_err(|_| format!("field {name:?} must be a string, found {}", kind_of(raw)));
        }
        Ok(self.param(name).map(str::to_owned))
    }

    pub(crate) fn boolean(&self, name: &str) -> Parsed<Option<bool>> {
        if let Some(raw) = self.raw(name) {
            return serde_json::from_str::<bool>(raw.get())
                .map(Some)
                .map_err(|_| format!("field {name:?} must be true or false, found {}", kind_of(raw)));
        }
        match self.param(name) {
            None | Some("") => Ok(None),
            Some("true" | "1" | "yes") => Ok(Some(true)),
            Some("false" | "0" | "no") => Ok(Some(false)),
            Some(v) => Err(format!(
                "parameter {name:?} must be true or false, found {:?}",
                clip(v)
            )),
        }
    }

    /// Quantiles (`dst` results): a number or a list of numbers in JSON, `0.5,0.999` as a
    /// parameter; each in `[0, 1]`, at most `MAX_QUANTILES`.
    pub(crate) fn quantiles(&self, name: &str) -> Parsed<Option<Vec<f64>>> {
        let qs = if let Some(raw) = self.raw(name) {
            match serde_json::from_str::<f64>(raw.get()) {
                Ok(one) => vec![one],
                Err(_) => serde_json::from_str::<Vec<f64>>(raw.get()).map_err(|_| {
                    format!(
                        "field {name:?} must be a number or a list of numbers (quantiles such as [0.5, 0.99]), found {}",
                        kind_of(raw)
                    )
                })?,
            }
        } else {
            // `q=0.5,0.99` or `q=0.5&q=0.99`.
            let Fields::Params(params) = self else {
                return Ok(None);
            };
            let given: Vec<&str> = params
                .iter()
                .filter(|(n, v)| n == name && !v.is_empty())
                .map(|(_, v)| v.as_str())
                .collect();
            if given.is_empty() {
                return Ok(None);
            }
            return traqq_core::distribution::parse_quantiles(&given.join(","))
                .map(Some)
                .map_err(|e| {
                    format!(
                        "parameter {name:?}: {}",
                        e.to_string().replace("invalid query: ", "")
                    )
                });
        };
        traqq_core::distribution::check_quantiles(&qs)
            .map_err(|e| format!("field {name:?}: {}", e.to_string().replace("invalid query: ", "")))?;
        Ok(Some(qs))
    }

    pub(crate) fn list(&self, name: &str) -> Parsed<Vec<String>> {
        if let Some(raw) = self.raw(name) {
            if let Ok(one) = serde_json::from_str::<String>(raw.get()) {
                return Ok(vec![one]);
            }
            return serde_json::from_str::<Vec<String>>(raw.get()).map_err(|_| {
                format!(
                    "field {name:?} must be a list of glob strings, found {}",
                    kind_of(raw)
                )
            });
        }
        match self {
            Fields::Params(p) => Ok(p
                .iter()
                .filter(|(n, v)| n == name && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect()),
            Fields::Json(_) => Ok(Vec::new()),
        }
    }

    pub(crate) fn required<T>(&self, name: &str, value: Parsed<Option<T>>) -> Parsed<T> {
        value?.ok_or_else(|| format!("missing field {name:?}"))
    }
}

/// At most 60 characters of a value, for error messages.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}
