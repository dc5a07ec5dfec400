//! [`RedisStorage`]: the [`Storage`] implementation over one Redis node or a Redis Cluster.
//! Connecting is in `connect`, the two-round reads in `read`, turning Redis failures into
//! traqq errors in `error`; writes (one script call per slot group) are here.

mod connect;
mod dump;
mod error;
mod read;
mod replicas;

pub(crate) use error::map_err;
use error::{classified, passing, redirected};
use replicas::ReplicasWait;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{ClientTlsConfig, Cmd, Pipeline, RedisError, TlsCertificates, Value};
use traqq_core::batch::{Batch, KeyEntry};
use traqq_core::claim::{Claims, Seen};
use traqq_core::read::{sort_ranked, top_ranked, Read, ReadResult};
use traqq_core::sketch::{KeySketch, RawSketch, SketchFamily};
use traqq_storage::{Capabilities, Error, Result, Storage};

use crate::config::{redact, RedisConfig};
use crate::keys::{self, slot, KeyLayout};
use crate::script::{self, Outcome, Part};
use crate::values::{self, BACKEND};

/// Worker threads of the backend's own tokio runtime: enough to overlap socket I/O of
/// concurrent callers, few enough to leave the cores to the callers and to Redis.
const WORKER_THREADS: usize = 2;

/// Temporary keys of a cross-slot union live this long if a reader dies mid-way.
const UNION_TMP_TTL_MS: u64 = 30_000;

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster {
        /// No retries: a batch whose answer was lost may have been applied, and a blind re-send
        /// would count it twice.
        writes: ClusterConnection,
        /// Reads are idempotent, so this one follows redirects and retries after reconnects.
        reads: ClusterConnection,
    },
}

/// Storage on Redis (one node) or Redis Cluster, using Redis's own types.
///
/// See the crate docs for the key layout, atomicity, retention and reconnect behaviour.
/// Every method blocks the calling thread until Redis answers (or the configured timeouts
/// pass); the work runs on a small tokio runtime owned by the store, so calling it from inside
/// another tokio runtime does not panic. Inside async code prefer
/// `tokio::task::spawn_blocking`, so the caller's executor thread is not held while waiting.
pub struct RedisStorage {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    conn: Conn,
    layout: KeyLayout,
    config: RedisConfig,
    target: String,
    op_timeout: Duration,
    union_counter: AtomicU64,
    /// New labels the batch script counted under `(other)` (`Storage::labels_overflowed`).
    labels_overflowed: AtomicU64,
    /// SHA1 of the batch script.
    script_sha: String,
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorage")
            .field("target", &self.target)
            .field("cluster", &self.config.is_cluster())
            .field("retention", &self.config.retention)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStorage {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which panics inside async code;
        // shutting it down in the background never blocks.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl RedisStorage {
    /// The configuration this store was opened with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The key layout in use (plain on one node, hash-tagged on a cluster).
    pub fn layout(&self) -> KeyLayout {
        self.layout
    }

    /// The Redis key that holds the traqq key `key` under this store's layout.
    pub fn redis_key(&self, key: &str) -> String {
        self.layout.physical(key).into_owned()
    }

    fn slot_of(&self, physical: &str) -> u16 {
        match self.layout {
            KeyLayout::Plain => 0,
            KeyLayout::ClusterTagged => slot(physical.as_bytes()),
        }
    }

    /// Runs `fut` on the store's runtime and waits for it, whatever runtime the caller is in.
    fn block_on<T, F>(&self, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, RedisError>> + Send + 'static,
    {
        run_on(&self.handle, self.op_timeout, &self.target, fut)
    }

    /// `command KEY` for each of `keys` (by its physical name), for [`RedisStorage::exec`].
    fn per_key(&self, command: &str, keys: &[String]) -> Vec<(u16, Cmd, String)> {
        keys.iter()
            .map(|k| {
                let physical = self.layout.physical(k);
                let mut c = redis::cmd(command);
                c.arg(physical.as_ref());
                (self.slot_of(&physical), c, k.clone())
            })
            .collect()
    }

    /// Runs commands, one pipeline per slot (all in one on a single node), and answers them in
    /// order. `reads` picks the retrying cluster connection.
    fn exec(&self, reads: bool, cmds: Vec<(u16, Cmd, String)>) -> Result<Vec<Value>> {
        let total = cmds.len();
        let mut labels = Vec::with_capacity(total);
        let mut groups: BTreeMap<u16, (Pipeline, Vec<usize>)> = BTreeMap::new();
        for (i, (slot, cmd, label)) in cmds.into_iter().enumerate() {
            let (pipe, idx) = groups.entry(slot).or_insert_with(|| (redis::pipe(), Vec::new()));
            pipe.add_command(cmd);
            idx.push(i);
            labels.push(label);
        }
        let conn = self.conn.clone();
        let answers = self.block_on(async move {
            let runs = groups.into_values().map(|(pipe, idx)| {
                let conn = conn.clone();
                async move {
                    let values: std::result::Result<Vec<Value>, RedisError> = match conn {
                        Conn::Single(mut c) => pipe.query_async(&mut c).await,
                        Conn::Cluster {
                            reads: mut c,
                            writes: _,
                        } if reads => pipe.query_async(&mut c).await,
                        Conn::Cluster { mut writes, .. } => pipe.query_async(&mut writes).await,
                    };
                    (idx, values)
                }
            });
            Ok(futures_util::future::join_all(runs).await)
        })?;
        let mut out = vec![Value::Nil; total];
        for (idx, values) in answers {
            let values =
                values.map_err(|e| self.failure(&e, |i| idx.get(i).and_then(|j| labels.get(*j)).cloned()))?;
            if values.len() != idx.len() {
                return Err(Error::backend(
                    BACKEND,
                    format!(
                        "{}: a pipeline of {} commands got {} answers",
                        self.target,
                        idx.len(),
                        values.len()
                    ),
                ));
            }
            for (i, v) in idx.into_iter().zip(values) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// The storage error for a failed pipeline: a command the server refused names the key it
    /// was about (`key_of` maps a command's position to it); anything else is mapped as usual.
    fn failure(&self, e: &RedisError, key_of: impl Fn(usize) -> Option<String>) -> Error {
        let mapped = map_err(&self.target, e);
        if mapped.is_unavailable() {
            return mapped;
        }
        let Some(errors) = e.clone().into_server_errors() else {
            return mapped;
        };
        // A transaction refused as a whole (EXECABORT) lists the refusals that caused it.
        let Some((i, server)) = errors.first() else {
            return mapped;
        };
        let message = format!(
            "{}: {}: {} {}",
            self.target,
            key_of(*i).map_or_else(|| format!("command {i}"), |k| format!("key {k:?}")),
            server.code(),
            server.details().unwrap_or_default()
        );
        classified(errors.iter().any(|(_, s)| s.kind().is_some_and(passing)), message)
    }

    /// Makes the cluster write connection re-read the slot map after a transaction met `MOVED`
    /// or `ASK`: redis-rs refreshes on a redirected single command, not on an aborted
    /// transaction, so without this every later batch of that slot would fail too.
    fn refresh_slots(&self, key: &str) {
        let Conn::Cluster { writes, .. } = &self.conn else {
            return;
        };
        let mut writes = writes.clone();
        let mut probe = redis::cmd("EXISTS");
        probe.arg(self.layout.physical(key).as_ref());
        // Only its side effect matters; the answer (or a MOVED error) is dropped.
        let _ = self.block_on(async move { probe.query_async::<Value>(&mut writes).await });
    }

    fn tmp_union_tag(&self) -> String {
        format!(
            "{{traqq-union:{}:{}}}",
            std::process::id(),
            self.union_counter.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Spawns `fut` on `handle` and waits on a plain channel (never `block_on`, which panics when
/// the caller is itself inside a runtime). Past `limit`, the store counts as unavailable.
fn run_on<T, F>(handle: &tokio::runtime::Handle, limit: Duration, target: &str, fut: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = std::result::Result<T, RedisError>> + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    let owned_target = target.to_owned();
    handle.spawn(async move {
        let out = match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_err(&owned_target, &e)),
            Err(_) => Err(Error::unavailable(
                BACKEND,
                format!(
                    "{owned_target}: no answer within {} ms (a batch cut off here may or may not have been applied)",
                    limit.as_millis()
                ),
            )),
        };
        // The caller may have gone away; nothing to do then.
        let _ = tx.send(out);
    });
    rx.recv().map_err(|_| {
        Error::backend(
            BACKEND,
            format!("{target}: the client runtime stopped before answering"),
        )
    })?
}

impl RedisStorage {
    /// The `WAIT` each batch ends with, when `replicas_ack` asks for one.
    fn replicas_wait(&self) -> Option<ReplicasWait> {
        (self.config.replicas_ack > 0).then_some(ReplicasWait {
            replicas: self.config.replicas_ack,
            timeout_ms: self.config.replicas_ack_timeout_ms,
        })
    }

    /// The parts of `batch` (and of `claims`, when given) per script call: all in one on a
    /// single node, one call per slot on a cluster.
    fn groups<'b>(&self, batch: &'b Batch, claims: Option<&'b Claims>) -> Vec<Vec<Part<'b>>> {
        let expire = |entry: &KeyEntry| self.config.expire_at(entry.bucket, entry.bucket_start);
        let mut by_slot: BTreeMap<u16, Vec<Part<'b>>> = BTreeMap::new();
        for set in claims.map(Claims::sets).unwrap_or_default() {
            let physical = self.layout.physical(&set.key);
            let parts = by_slot.entry(self.slot_of(&physical)).or_default();
            script::push_claims(&set.key, physical, &set.ids, set.expire_at, parts);
        }
        for (key, entry) in batch.iter() {
            let physical = self.layout.physical(key);
            let parts = by_slot.entry(self.slot_of(&physical)).or_default();
            script::push_parts(key, physical, entry, expire(entry), parts);
        }
        by_slot.into_values().filter(|g| !g.is_empty()).collect()
    }

    /// Runs one script call per group, recording `id` in each group's slot when given (see
    /// `Storage::apply_once`), and reads each answer.
    fn run_groups(&self, groups: &[Vec<Part<'_>>], id: Option<&str>) -> Result<Vec<Result<Outcome>>> {
        let calls: Vec<Cmd> = groups
            .iter()
            .map(|g| {
                // The id's key goes in the group's slot, named after any of its keys.
                let applied = id.and_then(|id| {
                    g.iter()
                        .find_map(|p| keys::applied_key(self.layout, &p.physical, id))
                });
                script::call(&self.script_sha, g, applied.as_deref())
            })
            .collect();
        let conn = self.conn.clone();
        let wait = self.replicas_wait();
        let slots: Vec<u16> = groups
            .iter()
            .map(|g| g.first().map_or(0, |p| self.slot_of(&p.physical)))
            .collect();
        let outcomes = self.block_on(async move {
            let runs = calls.into_iter().zip(slots).map(|(cmd, slot)| {
                let (conn, wait) = (conn.clone(), wait.clone());
                async move {
                    let applied = match conn.clone() {
                        Conn::Single(mut c) => script::eval(&mut c, &cmd).await,
                        Conn::Cluster { mut writes, .. } => script::eval(&mut writes, &cmd).await,
                    }?;
                    match wait {
                        Some(wait) => wait.on(conn, slot).await.map(|()| applied),
                        None => Ok(applied),
                    }
                }
            });
            Ok(futures_util::future::join_all(runs).await)
        })?;
        Ok(outcomes
            .into_iter()
            .zip(groups)
            .map(
                |(outcome, parts)| match outcome.map(|v| script::outcome(v, parts.len())) {
                    Ok(Ok(Outcome::Refused(refusal))) => {
                        let key = parts.get(refusal.part).map_or("?", |p| p.key);
                        Err(Error::backend(
                            BACKEND,
                            format!(
                                "{}: key {key:?}: {} ({})",
                                self.target,
                                refusal.message,
                                if refusal.partial {
                                    "the keys before it in this batch were applied: Redis does not roll back"
                                } else {
                                    "nothing of this batch was applied"
                                }
                            ),
                        ))
                    }
                    Ok(Ok(outcome)) => Ok(outcome),
                    Ok(Err(unexpected)) => {
                        Err(Error::backend(BACKEND, format!("{}: {unexpected}", self.target)))
                    }
                    Err(e) => {
                        if redirected(&e) {
                            if let Some(part) = parts.first() {
                                self.refresh_slots(part.key);
                            }
                        }
                        Err(self.failure(&e, |_| parts.first().map(|p| p.key.to_owned())))
                    }
                },
            )
            .collect())
    }

    /// One script call per slot group (all keys in one on a single node), recording `id` in
    /// each group's slot when given (see `Storage::apply_once`).
    fn apply_batch(&self, batch: &Batch, id: Option<&str>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let groups = self.groups(batch, None);
        let mut first_error = None;
        for outcome in self.run_groups(&groups, id)? {
            match outcome {
                Ok(outcome) => self.count_overflow(&outcome),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// `Storage::apply_claimed` on a single node: claims and batch in one script call, so the
    /// check, the ids and the operations are one atomic step.
    fn apply_claimed_at_once(&self, batch: &Batch, claims: &Claims) -> Result<Vec<Seen>> {
        let groups = self.groups(batch, Some(claims));
        let mut seen = Vec::new();
        for (outcome, parts) in self.run_groups(&groups, None)?.into_iter().zip(&groups) {
            if let Outcome::Seen(found) = outcome? {
                seen.extend(
                    found
                        .into_iter()
                        .filter_map(|(part, item)| seen_id(claims, parts, part, item)),
                );
            }
        }
        Ok(seen)
    }

    /// `Storage::apply_claimed` on a cluster, where a day's id set and the metric keys live in
    /// different slots: the claims first (each set's check and insert atomic in its slot), then
    /// the batch. When a set had seen an id, or the batch fails, the ids just claimed are taken
    /// back. A client dying between the two steps leaves ids claimed whose events were not
    /// counted (at most once, never twice); see the README.
    fn apply_claimed_in_steps(&self, batch: &Batch, claims: &Claims) -> Result<Vec<Seen>> {
        let empty = Batch::new();
        let groups = self.groups(&empty, Some(claims));
        let mut seen = Vec::new();
        let mut claimed: Vec<&Part<'_>> = Vec::new();
        let mut failure = None;
        for (outcome, parts) in self.run_groups(&groups, None)?.into_iter().zip(&groups) {
            match outcome {
                Ok(Outcome::Seen(found)) => seen.extend(
                    found
                        .into_iter()
                        .filter_map(|(part, item)| seen_id(claims, parts, part, item)),
                ),
                Ok(_) => claimed.extend(parts),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if seen.is_empty() && failure.is_none() {
            match self.apply_batch(batch, None) {
                Ok(()) => return Ok(Vec::new()),
                Err(e) => failure = Some(e),
            }
        }
        self.unclaim(claims, &claimed)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(seen),
        }
    }

    /// Adds the labels a script call counted under `(other)` to the store's total.
    fn count_overflow(&self, outcome: &Outcome) {
        if let Outcome::Applied(n) = outcome {
            self.labels_overflowed.fetch_add(*n, Ordering::Relaxed);
        }
    }

    /// Removes the ids of the claim parts `claimed` from their sets again.
    fn unclaim(&self, claims: &Claims, claimed: &[&Part<'_>]) -> Result<()> {
        let cmds = claimed
            .iter()
            .filter_map(|part| claims.sets().iter().find(|s| s.key == part.key))
            .map(|set| {
                let physical = self.layout.physical(&set.key);
                let mut c = redis::cmd("SREM");
                c.arg(physical.as_ref());
                for id in &set.ids {
                    c.arg(&id.to_be_bytes()[..]);
                }
                (self.slot_of(&physical), c, set.key.clone())
            })
            .collect();
        self.exec(false, cmds).map(drop)
    }
}

/// The claim that the script's (part, item) names, as the engine knows it.
fn seen_id(claims: &Claims, parts: &[Part<'_>], part: usize, item: usize) -> Option<Seen> {
    let key = parts.get(part)?.key;
    let set = claims.sets().iter().position(|s| s.key == key)?;
    let id = *claims.sets()[set].ids.get(item)?;
    Some(Seen { set, id })
}

impl Storage for RedisStorage {
    fn capabilities(&self) -> Capabilities {
        // One node: the whole batch in one script call. Cluster: one script call per slot.
        Capabilities::new(self.layout == KeyLayout::Plain, true).with_sketches(SketchFamily::Redis)
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        self.apply_batch(batch, None)
    }

    fn apply_once(&self, id: &str, batch: &Batch) -> Result<()> {
        self.apply_batch(batch, Some(id))
    }

    fn apply_claimed(&self, batch: &Batch, claims: &Claims) -> Result<Vec<Seen>> {
        match self.layout {
            KeyLayout::Plain => self.apply_claimed_at_once(batch, claims),
            KeyLayout::ClusterTagged => self.apply_claimed_in_steps(batch, claims),
        }
    }

    fn labels_overflowed(&self) -> u64 {
        self.labels_overflowed.load(Ordering::Relaxed)
    }

    /// `SCAN MATCH prefix:k:*` on a single node (data of traqq 0.2 and trk2 has key sets but no
    /// bucket registry). A cluster spreads key sets over its masters: refused, naming what to do.
    fn key_sets(&self, prefix: &str) -> Result<Option<Vec<String>>> {
        let Conn::Single(conn) = &self.conn else {
            return Err(Error::Unsupported {
                what: "scanning a Redis Cluster for key sets (run traqq migrate with each master's URL as a single node)",
            });
        };
        let escaped: String = prefix
            .chars()
            .flat_map(|c| match c {
                '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("{escaped}:k:*");
        let mut conn = conn.clone();
        self.block_on(async move {
            let mut keys = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await?;
                keys.extend(found);
                if next == 0 {
                    return Ok(Some(keys));
                }
                cursor = next;
            }
        })
    }

    fn read(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
        self.read_all(reads)
    }

    fn read_sketches(&self, keys: &[String]) -> Result<Vec<Option<RawSketch>>> {
        self.get_sketches(keys)
    }

    fn write_sketches(&self, sketches: &[KeySketch]) -> Result<()> {
        self.set_sketches(sketches)
    }

    fn read_ids(&self, set_keys: &[String]) -> Result<Vec<Vec<u128>>> {
        self.id_members(set_keys)
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let cmds = self.per_key("DEL", keys);
        self.exec(false, cmds).map(|_| ())
    }

    fn remove_members(&self, key: &str, members: &[String]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        // One native SREM: atomic with respect to every writer.
        let physical = self.layout.physical(key);
        let mut c = redis::cmd("SREM");
        c.arg(physical.as_ref());
        members.iter().for_each(|m| {
            c.arg(m.as_str());
        });
        self.exec(false, vec![(self.slot_of(&physical), c, key.to_owned())])
            .map(|_| ())
    }

    fn flush(&self) -> Result<()> {
        // Durability is Redis's own persistence (RDB/AOF): an acknowledged batch is in Redis.
        Ok(())
    }
}
