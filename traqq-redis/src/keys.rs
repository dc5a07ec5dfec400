//! Where a traqq key lives in Redis: the plain key on a single node, a hash-tagged key on
//! Redis Cluster.
//!
//! Redis Cluster runs a multi-key command (`PFCOUNT k1 k2`, a script call) only when every key
//! hashes to one slot, and the slot of a key holding `{...}` is the hash of the text between the
//! first `{` and the next `}`. traqq's unions are over the buckets of one metric (a week of
//! `bmp:ip` days), so in cluster mode every bucket of one metric shares one tag:
//!
//! ```text
//! plain key (single node, and what the engine passes)   cluster key
//! myapp:bmp:d:1700000000:ip                             {myapp:bmp:ip}:d:1700000000
//! myapp:add:h:1700003600:event~geo                      {myapp:add:event~geo}:h:1700003600
//! myapp:adv:d:1700000000:amount:event~geo               {myapp:adv:amount:event~geo}:d:1700000000
//! myapp:adv:d:1700000000:amount:event~geo:i             {myapp:adv:amount:event~geo}:d:1700000000:i
//! myapp:top:d:1700000000:geo                            {myapp:top:geo}:d:1700000000
//! myapp:k:d:1700000000                                  myapp:k:d:1700000000 (unchanged)
//! ```
//!
//! Metrics spread over the cluster's nodes; all buckets of one metric stay on one node. A key
//! that does not decode as a metric key (key sets, anything else) is stored as it is.

use std::borrow::Cow;

use traqq_core::key::MetricKey;

/// How keys are laid out: plain (single node) or hash-tagged (cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLayout {
    /// The key as given (DESIGN §3 format).
    Plain,
    /// Metric keys carry a `{prefix:type[:add_key]:pattern}` hash tag, see the module docs.
    ClusterTagged,
}

impl KeyLayout {
    /// The Redis key that stores the traqq key `key`.
    pub fn physical<'k>(self, key: &'k str) -> Cow<'k, str> {
        match self {
            KeyLayout::Plain => Cow::Borrowed(key),
            KeyLayout::ClusterTagged => cluster_key(key).map_or(Cow::Borrowed(key), Cow::Owned),
        }
    }
}

/// The hash-tagged cluster key of a metric key, or `None` when `key` is not one.
pub fn cluster_key(key: &str) -> Option<String> {
    // The prefix never holds ':' (checked when an engine is built), so it ends at the first one.
    let prefix = key.split_once(':')?.0;
    let m = MetricKey::decode(prefix, key).ok()?;
    let mut out = String::with_capacity(key.len() + 4);
    out.push('{');
    out.push_str(prefix);
    out.push(':');
    out.push_str(m.metric.as_str());
    out.push(':');
    if let Some(add_key) = &m.add_key {
        out.push_str(add_key);
        out.push(':');
    }
    out.push_str(&m.pattern);
    out.push_str("}:");
    out.push_str(m.bucket.as_str());
    out.push(':');
    out.push_str(&m.timestamp.to_string());
    out.push_str(m.part.suffix());
    // A key that merely looks like a metric key (extra text the decoder tolerates) must not
    // share a cluster key with a different plain key: only exact round trips get a tag.
    (m.encode(prefix) == key).then_some(out)
}

/// The Redis Cluster slot (0..16384) of a Redis key, honouring `{hash tags}`.
pub fn slot(key: &[u8]) -> u16 {
    // The checksum the `redis` crate's cluster routing uses (the `crc16` crate, XMODEM).
    crc16::State::<crc16::XMODEM>::calculate(hashed_part(key)) % 16384
}

/// The part of `key` Redis Cluster hashes: the text of its first non-empty `{tag}`, else all.
fn hashed_part(key: &[u8]) -> &[u8] {
    match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    }
}

/// The key that records that the batch `id` was applied (see `apply.lua`), next to the Redis
/// key `key` of the same script call: under the prefix of `key` on a single node, and in the
/// slot of `key` on a cluster. `None` when no hash tag can name that slot (a key whose hashed
/// part holds a `}`; traqq's own keys never do).
pub(crate) fn applied_key(layout: KeyLayout, key: &str, id: &str) -> Option<String> {
    match layout {
        KeyLayout::Plain => {
            let prefix = key.split_once(':').map_or(key, |(p, _)| p);
            Some(format!("{prefix}:applied:{id}"))
        }
        KeyLayout::ClusterTagged => {
            let hashed = std::str::from_utf8(hashed_part(key.as_bytes())).ok()?;
            (!hashed.contains('}')).then(|| format!("{{{hashed}}}:applied:{id}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        // CRC16-XMODEM check value of "123456789" (below 16384, so also its slot).
        assert_eq!(slot(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(hashed_part(b"{}x"), b"{}x", "an empty tag hashes the whole key");
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn applied_keys_share_the_slot_of_their_batch() {
        let id = "b1";
        let tagged = "{myapp:bmp:ip}:d:1700000000";
        let k = applied_key(KeyLayout::ClusterTagged, tagged, id).unwrap();
        assert_eq!(k, "{myapp:bmp:ip}:applied:b1");
        assert_eq!(slot(k.as_bytes()), slot(tagged.as_bytes()));
        let untagged = "myapp:k:d:1700000000";
        let k = applied_key(KeyLayout::ClusterTagged, untagged, id).unwrap();
        assert_eq!(slot(k.as_bytes()), slot(untagged.as_bytes()));
        let odd = "a{b:c";
        let k = applied_key(KeyLayout::ClusterTagged, odd, id).unwrap();
        assert_eq!(slot(k.as_bytes()), slot(odd.as_bytes()));
        assert_eq!(applied_key(KeyLayout::ClusterTagged, "x}y", id), None);
        assert_eq!(
            applied_key(KeyLayout::Plain, "myapp:add:d:1:event", id).unwrap(),
            "myapp:applied:b1"
        );
    }

    #[test]
    fn cluster_keys_share_a_tag_per_metric() {
        let c = |k: &str| cluster_key(k).unwrap();
        assert_eq!(c("myapp:bmp:d:1700000000:ip"), "{myapp:bmp:ip}:d:1700000000");
        assert_eq!(
            c("myapp:adv:d:1700000000:amount:event~geo:i"),
            "{myapp:adv:amount:event~geo}:d:1700000000:i"
        );
        assert_eq!(
            c("myapp:adv:d:1700000000:amount:event~geo:c"),
            "{myapp:adv:amount:event~geo}:d:1700000000:c"
        );
        assert_eq!(
            c("myapp:adv:h:1700003600:amount:event~geo"),
            "{myapp:adv:amount:event~geo}:h:1700003600"
        );
        let days: Vec<u16> = (0..7)
            .map(|d| slot(c(&format!("p:bmp:d:{}:ip", 1_700_000_000 + d * 86_400)).as_bytes()))
            .collect();
        assert!(days.iter().all(|s| *s == days[0]), "{days:?}");
        // Not metric keys: stored as they are.
        assert_eq!(cluster_key("myapp:k:d:1700000000"), None);
        assert_eq!(cluster_key("garbage"), None);
        assert_eq!(cluster_key("p:bmp:d:007:ip"), None, "no round trip, no tag");
        assert_eq!(KeyLayout::ClusterTagged.physical("a:b:c"), "a:b:c");
        assert_eq!(KeyLayout::Plain.physical("myapp:bmp:d:1:ip"), "myapp:bmp:d:1:ip");
    }
}
