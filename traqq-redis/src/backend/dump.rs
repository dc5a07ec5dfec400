//! What export and restore move as stored: a key's HyperLogLog string as Redis keeps it, and
//! the members of an id set (16 bytes each).

use super::*;

/// Stores a HyperLogLog string (checked by the caller) unless the key holds another type, and
/// sets its bucket's expiry (`ARGV[2]`, empty: none).
const SET_SKETCH: &str = r"
local held = redis.call('TYPE', KEYS[1]).ok
if held ~= 'none' and held ~= 'string' then
  return redis.error_reply('WRONGTYPE the key holds a ' .. held .. ', not a HyperLogLog')
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then redis.call('EXPIREAT', KEYS[1], ARGV[2]) end
return 1
";

impl RedisStorage {
    /// `GET` of each key: Redis's HyperLogLog string, as stored.
    pub(super) fn get_sketches(&self, keys: &[String]) -> Result<Vec<Option<RawSketch>>> {
        let cmds = self.per_key("GET", keys);
        let answers = self.exec(true, cmds)?;
        keys.iter()
            .zip(answers)
            .map(|(key, answer)| match answer {
                Value::Nil => Ok(None),
                Value::BulkString(bytes) => Ok(Some(RawSketch {
                    family: SketchFamily::Redis,
                    bytes,
                })),
                other => Err(Error::corrupt(
                    BACKEND,
                    key.clone(),
                    format!("GET answered {other:?}"),
                )),
            })
            .collect()
    }

    /// `SMEMBERS` of each id set: its ids, 16 big-endian bytes each.
    pub(super) fn id_members(&self, set_keys: &[String]) -> Result<Vec<Vec<u128>>> {
        let cmds = self.per_key("SMEMBERS", set_keys);
        let answers = self.exec(true, cmds)?;
        set_keys
            .iter()
            .zip(answers)
            .map(|(key, answer)| {
                let members = match answer {
                    Value::Array(m) | Value::Set(m) => m,
                    other => {
                        return Err(Error::corrupt(
                            BACKEND,
                            key.clone(),
                            format!("SMEMBERS answered {other:?}"),
                        ))
                    }
                };
                members
                    .into_iter()
                    .map(|member| match member {
                        Value::BulkString(bytes) => <[u8; 16]>::try_from(bytes.as_slice())
                            .map(u128::from_be_bytes)
                            .map_err(|_| {
                                Error::corrupt(
                                    BACKEND,
                                    key.clone(),
                                    format!("an id of {} bytes (ids are 16)", bytes.len()),
                                )
                            }),
                        other => Err(Error::corrupt(
                            BACKEND,
                            key.clone(),
                            format!("an id set member {other:?}"),
                        )),
                    })
                    .collect()
            })
            .collect()
    }

    /// Checks every sketch is a Redis HyperLogLog, then stores each with [`SET_SKETCH`].
    pub(super) fn set_sketches(&self, sketches: &[KeySketch]) -> Result<()> {
        for entry in sketches {
            // The family, and Redis's encoding (Redis itself only checks at the next PFCOUNT).
            traqq_storage::decode_sketch(BACKEND, SketchFamily::Redis, entry)?;
        }
        let cmds = sketches
            .iter()
            .map(|entry| {
                let physical = self.layout.physical(&entry.key);
                let (kind, start) = entry.bucket;
                let expire_at = self
                    .config
                    .expire_at(kind, start)
                    .map_or(String::new(), |t| t.to_string());
                let mut c = redis::cmd("EVAL");
                c.arg(SET_SKETCH)
                    .arg(1)
                    .arg(physical.as_ref())
                    .arg(&entry.sketch.bytes)
                    .arg(expire_at);
                (self.slot_of(&physical), c, entry.key.clone())
            })
            .collect();
        self.exec(false, cmds).map(|_| ())
    }
}
