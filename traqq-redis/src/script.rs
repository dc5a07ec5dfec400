//! The write path: a coalesced batch as one call of a Lua script (`apply.lua`), one call per
//! hash slot on a cluster.
//!
//! Why a script and not a `MULTI`/`EXEC` pipeline (measured, see the README): the client
//! encodes one command instead of ~7 per event and reads one answer instead of ~14, which cut
//! its CPU per 1,000-event batch from ~6.5 ms to ~2.8 ms (most of the rest is event parsing in
//! the engine). Redis runs the same native commands (`HINCRBY`, `PFADD`, …), so keys keep their
//! types, and the script is atomic like a transaction; Redis's own CPU stays within 0–10% of the
//! pipeline's. Reading old values and writing new ones in bulk (`HMGET`+`HSET`,
//! `ZMSCORE`+`ZADD`) was tried and cost Redis more (number formatting in Lua). The script also
//! checks every key's type before writing, so a batch meeting a key of the wrong type applies
//! nothing.

use std::borrow::Cow;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind, Value};
use traqq_core::batch::{KeyEntry, KeyOps, Number};

/// The batch script (see the file for its argument layout).
pub(crate) const APPLY_LUA: &str = include_str!("apply.lua");

/// SHA1 of [`APPLY_LUA`], the name `EVALSHA` calls it by.
pub(crate) fn sha() -> String {
    redis::Script::new(APPLY_LUA).get_hash().to_owned()
}

/// What the script does with a part's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `HINCRBY` (field, integer) pairs.
    Int,
    /// `HINCRBYFLOAT` (field, float) pairs.
    Float,
    /// `ZINCRBY` (member, score) pairs.
    Scores,
    /// One variadic `PFADD`.
    Hll,
    /// One variadic `SADD`.
    Members,
    /// Event ids claimed in a day's id set: checked first, then one variadic `SADD`.
    Claim,
}

impl Op {
    fn code(self) -> &'static str {
        match self {
            Op::Int => "i",
            Op::Float => "f",
            Op::Scores => "z",
            Op::Hll => "p",
            Op::Members => "s",
            Op::Claim => "c",
        }
    }

    fn width(self) -> usize {
        match self {
            Op::Int | Op::Float | Op::Scores => 2,
            Op::Hll | Op::Members | Op::Claim => 1,
        }
    }
}

/// One key's share of a script call.
#[derive(Debug)]
pub(crate) struct Part<'b> {
    /// The traqq key, named in errors.
    pub(crate) key: &'b str,
    /// The Redis key (hash-tagged on a cluster).
    pub(crate) physical: Cow<'b, str>,
    op: Op,
    len: usize,
    items: Items<'b>,
    expire_at: Option<i64>,
}

/// Where a part's items come from.
#[derive(Debug, Clone, Copy)]
enum Items<'b> {
    /// A batch entry's operations.
    Entry(&'b KeyEntry),
    /// Claimed event ids, sent as 16 big-endian bytes each.
    Ids(&'b [u128]),
}

/// Appends the claims of one day's id set to `out` (nothing when there are none).
pub(crate) fn push_claims<'b>(
    key: &'b str,
    physical: Cow<'b, str>,
    ids: &'b [u128],
    expire_at: i64,
    out: &mut Vec<Part<'b>>,
) {
    if !ids.is_empty() {
        out.push(Part {
            key,
            physical,
            op: Op::Claim,
            len: ids.len(),
            items: Items::Ids(ids),
            expire_at: Some(expire_at),
        });
    }
}

/// Appends the parts of one batch entry to `out`: one, or two for a hash holding both integer
/// and float fields (an `adv` summary's `count` and `sum`). The expiry goes with the first.
pub(crate) fn push_parts<'b>(
    key: &'b str,
    physical: Cow<'b, str>,
    entry: &'b KeyEntry,
    expire_at: Option<i64>,
    out: &mut Vec<Part<'b>>,
) {
    let part = |op, len, physical, expire_at| Part {
        key,
        physical,
        op,
        len,
        items: Items::Entry(entry),
        expire_at,
    };
    match &entry.ops {
        KeyOps::Hash(fields) => {
            let ints = fields.values().filter(|n| matches!(n, Number::Int(_))).count();
            let floats = fields.len() - ints;
            match (ints, floats) {
                (0, 0) => {}
                (0, n) => out.push(part(Op::Float, n, physical, expire_at)),
                (n, 0) => out.push(part(Op::Int, n, physical, expire_at)),
                (i, f) => {
                    out.push(part(Op::Int, i, physical.clone(), expire_at));
                    out.push(part(Op::Float, f, physical, None));
                }
            }
        }
        KeyOps::Hll(values) if !values.is_empty() => {
            out.push(part(Op::Hll, values.len(), physical, expire_at))
        }
        KeyOps::Scores(members) if !members.is_empty() => {
            out.push(part(Op::Scores, members.len(), physical, expire_at))
        }
        KeyOps::Members(members) if !members.is_empty() => {
            out.push(part(Op::Members, members.len(), physical, expire_at))
        }
        KeyOps::Hll(_) | KeyOps::Scores(_) | KeyOps::Members(_) => {}
    }
}

/// How long a batch id is remembered (`Storage::apply_once`): far longer than any retry waits.
pub(crate) const REMEMBER_IDS_SECS: u64 = 3600;

/// The `EVALSHA` command applying `parts` (all in one slot on a cluster), once per id when
/// `applied_key` (the key recording the batch id, same slot) is given. Arguments go straight
/// into the command's one buffer: no allocation per item.
pub(crate) fn call(sha: &str, parts: &[Part<'_>], applied_key: Option<&str>) -> Cmd {
    let items: usize = parts.iter().map(|p| p.len * p.op.width()).sum();
    let args = 5 + parts.len() * 5 + items;
    // Keys and fields of the traqq format are mostly 10–60 bytes; a guess saves the regrowing.
    let mut cmd = Cmd::with_capacity(args, args * 24);
    cmd.arg("EVALSHA")
        .arg(sha)
        .arg(parts.len() + usize::from(applied_key.is_some()));
    for p in parts {
        cmd.arg(p.physical.as_ref());
    }
    match applied_key {
        Some(key) => cmd.arg(key).arg(REMEMBER_IDS_SECS),
        None => cmd.arg(""),
    };
    for p in parts {
        cmd.arg(p.op.code()).arg(p.len);
        match p.expire_at {
            Some(at) => cmd.arg(at),
            None => cmd.arg(""),
        };
        let cap = match p.items {
            Items::Entry(entry) => entry.max_labels,
            Items::Ids(_) => 0,
        };
        cmd.arg(cap);
        let entry = match p.items {
            Items::Entry(entry) => entry,
            Items::Ids(ids) => {
                for id in ids {
                    cmd.arg(&id.to_be_bytes()[..]);
                }
                continue;
            }
        };
        match (&entry.ops, p.op) {
            (KeyOps::Hash(fields), op @ (Op::Int | Op::Float)) => {
                for (field, &by) in fields {
                    match (by, op) {
                        (Number::Int(n), Op::Int) => {
                            cmd.arg(field).arg(n);
                        }
                        (Number::Float(x), Op::Float) => {
                            cmd.arg(field);
                            push_number(&mut cmd, x);
                        }
                        _ => {}
                    }
                }
            }
            // A hash part is always integers or floats (`push_parts`).
            (KeyOps::Hash(_), _) => {}
            (KeyOps::Scores(members), _) => {
                for (member, &by) in members {
                    cmd.arg(member);
                    push_number(&mut cmd, by);
                }
            }
            (KeyOps::Hll(values), _) | (KeyOps::Members(values), _) => {
                for v in values {
                    cmd.arg(v);
                }
            }
        }
    }
    cmd
}

/// `x` as integer text when it is a whole number (scores mostly are: shorter, exact).
fn push_number(cmd: &mut Cmd, x: f64) {
    match whole(x) {
        Some(n) => cmd.arg(n),
        None => cmd.arg(x),
    };
}

/// `x` as an integer when it is one and every integer up to it is exact in an `f64`.
pub(crate) fn whole(x: f64) -> Option<i64> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    (x.fract() == 0.0 && x.abs() < LIMIT).then_some(x as i64)
}

/// Runs a script call; when the node does not know the script yet (new, restarted, failed
/// over: `NOSCRIPT`, which means nothing ran), loads it and calls once more.
pub(crate) async fn eval<C: ConnectionLike>(conn: &mut C, cmd: &Cmd) -> Result<Value, RedisError> {
    match cmd.query_async::<Value>(conn).await {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(APPLY_LUA)
                .query_async::<Value>(conn)
                .await?;
            cmd.query_async(conn).await
        }
        other => other,
    }
}

/// A part the script refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Index into the call's parts.
    pub(crate) part: usize,
    /// The server's error (`WRONGTYPE …`).
    pub(crate) message: String,
    /// False when the script stopped before writing anything.
    pub(crate) partial: bool,
}

/// What a script call did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything was applied; this many new labels went to `(other)` (label caps).
    Applied(u64),
    /// A part was refused.
    Refused(Refusal),
    /// Nothing was applied: these claimed ids were already in their sets, as (part, item)
    /// indexes into the call's parts and the part's ids, 0-based.
    Seen(Vec<(usize, usize)>),
}

/// Reads the script's answer, or describes an answer the script never gives.
pub(crate) fn outcome(value: Value, parts: usize) -> Result<Outcome, String> {
    let unexpected = |v: &dyn std::fmt::Debug| format!("unexpected answer from the batch script: {v:?}");
    match value {
        Value::Int(0) => Ok(Outcome::Applied(0)),
        Value::Array(items) if matches!(items.first(), Some(Value::BulkString(b)) if b == b"overflow") => {
            match items.as_slice() {
                [_, Value::Int(n)] if *n >= 0 => Ok(Outcome::Applied(*n as u64)),
                _ => Err(unexpected(&items)),
            }
        }
        Value::Array(items) if matches!(items.first(), Some(Value::BulkString(b)) if b == b"seen") => {
            let mut seen = Vec::with_capacity(items.len() / 2);
            for pair in items[1..].chunks(2) {
                match pair {
                    [Value::Int(k), Value::Int(j)] if (1..=parts as i64).contains(k) && *j >= 1 => {
                        seen.push(((*k - 1) as usize, (*j - 1) as usize));
                    }
                    _ => return Err(unexpected(&items)),
                }
            }
            Ok(Outcome::Seen(seen))
        }
        Value::Array(items) => match items.as_slice() {
            [Value::Int(k), message, Value::Int(partial)] if (1..=parts as i64).contains(k) => {
                let message = match message {
                    Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    Value::SimpleString(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                Ok(Outcome::Refused(Refusal {
                    part: (*k - 1) as usize,
                    message,
                    partial: *partial != 0,
                }))
            }
            _ => Err(unexpected(&items)),
        },
        other => Err(unexpected(&other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use traqq_core::batch::Batch;
    use traqq_core::bucket::BucketKind;

    #[test]
    fn whole_numbers_are_sent_as_integers() {
        assert_eq!(whole(3.0), Some(3));
        assert_eq!(whole(-2.0), Some(-2));
        assert_eq!(whole(0.5), None);
        assert_eq!(whole(1e300), None);
        assert_eq!(whole(f64::NAN), None);
    }

    #[test]
    fn mixed_hashes_split_into_two_parts_and_args_follow_the_layout() {
        let mut b = Batch::new();
        let day = (BucketKind::Day, 86_400);
        b.incr("p:adv:d:86400:amount:event:i", day, "count", Number::Int(2));
        b.incr("p:adv:d:86400:amount:event:i", day, "sum", Number::Float(1.5));
        let (key, entry) = b.iter().next().unwrap();
        let mut parts = Vec::new();
        push_parts(key, Cow::Borrowed(key), entry, Some(99), &mut parts);
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.op, p.len, p.expire_at))
                .collect::<Vec<_>>(),
            vec![(Op::Int, 1, Some(99)), (Op::Float, 1, None)]
        );
        let args = |applied: Option<&str>| -> Vec<String> {
            call("abc", &parts, applied)
                .args_iter()
                .map(|a| match a {
                    redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => "<cursor>".to_owned(),
                })
                .collect()
        };
        assert_eq!(
            args(None),
            [
                "EVALSHA", "abc", "2", key, key, "", "i", "1", "99", "0", "count", "2", "f", "1", "", "0",
                "sum", "1.5"
            ]
        );
        assert_eq!(
            args(Some("p:applied:x")),
            [
                "EVALSHA",
                "abc",
                "3",
                key,
                key,
                "p:applied:x",
                "3600",
                "i",
                "1",
                "99",
                "0",
                "count",
                "2",
                "f",
                "1",
                "",
                "0",
                "sum",
                "1.5"
            ]
        );
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(outcome(Value::Int(0), 3), Ok(Outcome::Applied(0)));
        let overflow = Value::Array(vec![Value::BulkString(b"overflow".to_vec()), Value::Int(4)]);
        assert_eq!(outcome(overflow, 3), Ok(Outcome::Applied(4)));
        let seen = Value::Array(vec![
            Value::BulkString(b"seen".to_vec()),
            Value::Int(1),
            Value::Int(2),
            Value::Int(3),
            Value::Int(1),
        ]);
        assert_eq!(outcome(seen, 3), Ok(Outcome::Seen(vec![(0, 1), (2, 0)])));
        let refused = Value::Array(vec![
            Value::Int(2),
            Value::BulkString(b"WRONGTYPE x".to_vec()),
            Value::Int(0),
        ]);
        assert_eq!(
            outcome(refused, 3),
            Ok(Outcome::Refused(Refusal {
                part: 1,
                message: "WRONGTYPE x".into(),
                partial: false
            }))
        );
        let out_of_range = Value::Array(vec![Value::Int(9), Value::Nil, Value::Int(0)]);
        assert!(outcome(out_of_range, 3).is_err());
        assert!(outcome(Value::Okay, 3).is_err());
    }
}
