//! Raw sketches for export and restore: a key's HyperLogLog string as Redis stores it.

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
        let cmds = keys
            .iter()
            .map(|k| {
                let physical = self.layout.physical(k);
                let mut c = redis::cmd("GET");
                c.arg(physical.as_ref());
                (self.slot_of(&physical), c, k.clone())
            })
            .collect();
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

    /// Checks every sketch, then stores each with [`SET_SKETCH`].
    pub(super) fn set_sketches(&self, sketches: &[KeySketch]) -> Result<()> {
        for entry in sketches {
            let refused = |why: &str| {
                Error::backend(
                    BACKEND,
                    format!("key {:?}: {why}; it cannot be stored in Redis", entry.key),
                )
            };
            if entry.sketch.family != SketchFamily::Redis {
                return Err(refused(&format!(
                    "a {} sketch, not a Redis HyperLogLog (the two hash values differently, so one cannot become the other)",
                    entry.sketch.family
                )));
            }
            crate::hll::check(&entry.sketch.bytes).map_err(refused)?;
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
