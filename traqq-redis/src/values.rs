//! Turning Redis replies into read results. Handles RESP2 and RESP3 shapes; anything else is
//! `Error::Corrupt` naming the key.

use redis::Value;
use traqq_core::batch::Number;
use traqq_storage::{Error, Result};

/// The backend name in every error of this crate.
pub(crate) const BACKEND: &str = "redis";

fn corrupt(key: &str, message: impl Into<String>) -> Error {
    Error::corrupt(BACKEND, key, message.into())
}

fn server_error(key: &str, e: &redis::ServerError) -> Error {
    Error::backend(
        BACKEND,
        format!(
            "reading {key:?}: {} {}",
            e.code(),
            e.details().unwrap_or_default()
        ),
    )
}

/// The text of a string reply.
fn text(key: &str, v: Value) -> Result<String> {
    match v {
        Value::BulkString(b) => {
            String::from_utf8(b).map_err(|e| corrupt(key, format!("value is not UTF-8: {e}")))
        }
        Value::SimpleString(s) => Ok(s),
        Value::VerbatimString { text, .. } => Ok(text),
        Value::Int(n) => Ok(n.to_string()),
        Value::Double(x) => Ok(x.to_string()),
        Value::ServerError(e) => Err(server_error(key, &e)),
        other => Err(corrupt(key, format!("expected a string, got {other:?}"))),
    }
}

fn items(key: &str, v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        Value::Map(m) => Ok(m.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        Value::ServerError(e) => Err(server_error(key, &e)),
        other => Err(corrupt(key, format!("expected a list, got {other:?}"))),
    }
}

/// A stored hash number: integer text is an integer, anything else numeric a float.
pub(crate) fn number(key: &str, field: &str, text: &str) -> Result<Number> {
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Number::Int(n));
    }
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Number::Float(x)),
        _ => Err(corrupt(
            key,
            format!("field {field:?} holds {text:?}, not a number"),
        )),
    }
}

/// `HGETALL`.
pub(crate) fn hash(key: &str, v: Value) -> Result<Vec<(String, Number)>> {
    let flat = items(key, v)?;
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let Some(field) = it.next() {
        let field = text(key, field)?;
        let value = it
            .next()
            .ok_or_else(|| corrupt(key, format!("field {field:?} has no value")))?;
        let n = number(key, &field, &text(key, value)?)?;
        out.push((field, n));
    }
    Ok(out)
}

/// `SMEMBERS`.
pub(crate) fn strings(key: &str, v: Value) -> Result<Vec<String>> {
    items(key, v)?.into_iter().map(|m| text(key, m)).collect()
}

/// `PFCOUNT`.
pub(crate) fn count(key: &str, v: Value) -> Result<u64> {
    match v {
        Value::Int(n) => u64::try_from(n).map_err(|_| corrupt(key, format!("negative count {n}"))),
        Value::ServerError(e) => Err(server_error(key, &e)),
        other => Err(corrupt(key, format!("expected a count, got {other:?}"))),
    }
}

/// `ZREVRANGE`/`ZRANGEBYSCORE … WITHSCORES`: (member, score, score as Redis wrote it).
pub(crate) fn ranked(key: &str, v: Value) -> Result<Vec<(String, f64, String)>> {
    let flat = items(key, v)?;
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let Some(first) = it.next() {
        // RESP3 answers [member, score] pairs; RESP2 a flat member, score, member, score list.
        let (member, score) = match first {
            Value::Array(pair) if pair.len() == 2 => {
                let mut p = pair.into_iter();
                (p.next().unwrap_or_default(), p.next().unwrap_or_default())
            }
            member => (
                member,
                it.next()
                    .ok_or_else(|| corrupt(key, "a member without a score"))?,
            ),
        };
        let member = text(key, member)?;
        let raw = text(key, score)?;
        let score = raw
            .parse::<f64>()
            .map_err(|_| corrupt(key, format!("member {member:?} has score {raw:?}")))?;
        out.push((member, score, raw));
    }
    Ok(out)
}

/// `GET` of a key that may be missing.
pub(crate) fn optional_bytes(key: &str, v: Value) -> Result<Option<Vec<u8>>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::ServerError(e) => Err(server_error(key, &e)),
        other => Err(corrupt(
            key,
            format!("expected a HyperLogLog string, got {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn hash_numbers_keep_their_kind() {
        let v = Value::Array(vec![
            bulk("n"),
            bulk("12"),
            bulk("x"),
            bulk("0.5"),
            bulk("neg"),
            bulk("-3"),
        ]);
        assert_eq!(
            hash("k", v).unwrap(),
            vec![
                ("n".into(), Number::Int(12)),
                ("x".into(), Number::Float(0.5)),
                ("neg".into(), Number::Int(-3))
            ]
        );
        let err = hash("k", Value::Array(vec![bulk("f"), bulk("abc")])).unwrap_err();
        assert!(
            err.to_string().contains("\"f\"") && err.to_string().contains("\"k\""),
            "{err}"
        );
        let map = Value::Map(vec![(bulk("a"), bulk("1e3"))]);
        assert_eq!(hash("k", map).unwrap(), vec![("a".into(), Number::Float(1000.0))]);
    }

    #[test]
    fn ranked_reads_both_protocols() {
        let resp2 = Value::Array(vec![bulk("US"), bulk("5.5"), bulk("DE"), bulk("3")]);
        let resp3 = Value::Array(vec![
            Value::Array(vec![bulk("US"), Value::Double(5.5)]),
            Value::Array(vec![bulk("DE"), Value::Double(3.0)]),
        ]);
        for v in [resp2, resp3] {
            let r = ranked("k", v).unwrap();
            assert_eq!(
                r.iter().map(|(m, s, _)| (m.as_str(), *s)).collect::<Vec<_>>(),
                [("US", 5.5), ("DE", 3.0)]
            );
        }
        assert!(ranked("k", Value::Array(vec![bulk("lonely")])).is_err());
        assert_eq!(count("k", Value::Int(7)).unwrap(), 7);
        assert!(count("k", bulk("x")).is_err());
        assert_eq!(optional_bytes("k", Value::Nil).unwrap(), None);
    }
}
