//! [`RedisStorage`]: the [`Storage`] implementation over one Redis node or a Redis Cluster.

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
use std::borrow::Cow;
use traqq_core::batch::{Batch, KeyEntry};
use traqq_core::read::{sort_ranked, top_ranked, Read, ReadResult};
use traqq_storage::{Capabilities, Error, Result, Storage};

use crate::config::{redact, RedisConfig};
use crate::keys::{self, slot, KeyLayout};
use crate::script::{self, Part};
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

/// Maps a redis-rs error to the storage error of the same meaning (the one place that does).
/// Connection trouble and cluster topology changes (`MOVED`/`ASK` while slots migrate, no
/// quorum) are `Unavailable`: trying again later may work.
pub(crate) fn map_err(target: &str, e: &RedisError) -> Error {
    use redis::ErrorKind;
    let down = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(e.kind(), ErrorKind::ClusterConnectionNotFound)
        || matches!(e.kind(), ErrorKind::Server(k) if passing(k));
    classified(
        down,
        AtTarget {
            target: target.to_owned(),
            source: e.clone(),
        },
    )
}

/// The one place a Redis failure becomes a traqq error: unavailable (the node is down or
/// busy: retry later) or not, with its cause kept as the source.
fn classified(down: bool, source: impl Into<traqq_storage::Source>) -> Error {
    if down {
        Error::unavailable(BACKEND, source)
    } else {
        Error::backend(BACKEND, source)
    }
}

/// A `redis` error and the node or cluster it came from.
#[derive(Debug, thiserror::Error)]
#[error("{target}: {source}")]
struct AtTarget {
    target: String,
    source: RedisError,
}

/// True when a command of `e` was redirected to another cluster node.
fn redirected(e: &RedisError) -> bool {
    use redis::ServerErrorKind as K;
    e.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, s)| matches!(s.kind(), Some(K::Moved | K::Ask)))
    }) || matches!(e.kind(), redis::ErrorKind::Server(K::Moved | K::Ask))
}

/// Server refusals that pass: the cluster is moving slots or electing, or the node is loading.
/// The refused command was not executed.
fn passing(kind: redis::ServerErrorKind) -> bool {
    use redis::ServerErrorKind as K;
    matches!(
        kind,
        K::ClusterDown | K::MasterDown | K::BusyLoading | K::TryAgain | K::Moved | K::Ask
    )
}

impl RedisStorage {
    /// Connects to the node or cluster of `config`. Fails with `Error::Open` when it cannot be
    /// reached within the connect timeout, and with `Error::Core` naming the field when the
    /// config is invalid.
    pub fn connect(config: RedisConfig) -> Result<Self> {
        config.validate()?;
        let urls = config.urls();
        let target = urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(",");
        let open_err = {
            let path = target.clone();
            move |message: String| Error::Open {
                backend: BACKEND,
                path: path.clone(),
                source: message.into(),
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("traqq-redis")
            .enable_all()
            .build()
            .map_err(|e| open_err(format!("cannot start the client runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let certs = tls_certificates(&config)?;
        if config.is_tls() {
            // rustls needs a process-wide crypto provider; one installed earlier (by the
            // application) is kept.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let (connect_timeout, response_timeout) = (config.connect_timeout(), config.response_timeout());
        let op_timeout = connect_timeout + response_timeout;
        let cluster = config.is_cluster();
        let conn = run_on(&handle, op_timeout, &target, async move {
            if cluster {
                let client = |retries: u32| {
                    let builder = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                        .connection_timeout(connect_timeout)
                        .response_timeout(response_timeout)
                        .retries(retries);
                    match &certs {
                        Some(certs) => builder.certs(certs.clone()).build(),
                        None => builder.build(),
                    }
                };
                let writes = client(0)?.get_async_connection().await?;
                let reads = client(2)?.get_async_connection().await?;
                Ok(Conn::Cluster { writes, reads })
            } else {
                let url = urls.first().map_or(crate::config::DEFAULT_URL, String::as_str);
                let client = match certs {
                    Some(certs) => redis::Client::build_with_tls(url, certs)?,
                    None => redis::Client::open(url)?,
                };
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(100))
                    .set_max_delay(Duration::from_secs(1));
                Ok(Conn::Single(
                    ConnectionManager::new_with_config(client, manager_config).await?,
                ))
            }
        })
        .map_err(|e| open_err(e.to_string()))?;
        // Ping once so a wrong password or db fails here, not at the first batch.
        let storage = RedisStorage {
            runtime: Some(runtime),
            handle,
            conn,
            layout: if cluster {
                KeyLayout::ClusterTagged
            } else {
                KeyLayout::Plain
            },
            config,
            target,
            op_timeout,
            union_counter: AtomicU64::new(0),
            script_sha: script::sha(),
        };
        storage
            .exec(false, vec![(0, redis::cmd("PING"), "PING".to_owned())])
            .map_err(|e| open_err(e.to_string()))?;
        Ok(storage)
    }

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
                return Err(Error::Backend {
                    backend: BACKEND,
                    source: format!(
                        "{}: a pipeline of {} commands got {} answers",
                        self.target,
                        idx.len(),
                        values.len()
                    )
                    .into(),
                });
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

/// The CA and client certificates named in `config`, read from their files; `None` when no
/// file is named (then `rediss://` trusts the system's roots).
fn tls_certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>> {
    let read = |field: &str, path: &Path| {
        std::fs::read(path).map_err(|e| Error::Open {
            backend: BACKEND,
            path: path.display().to_string(),
            source: format!("{field}: cannot read {}: {e}", path.display()).into(),
        })
    };
    let root_cert = match &config.tls_ca_file {
        Some(path) => Some(read("storage.tls_ca_file", path)?),
        None => None,
    };
    let client_tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("storage.tls_cert_file", cert)?,
            client_key: read("storage.tls_key_file", key)?,
        }),
        _ => None,
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
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
            Err(_) => Err(Error::Unavailable {
                backend: BACKEND,
                source: format!(
                    "{owned_target}: no answer within {} ms (a batch cut off here may or may not have been applied)",
                    limit.as_millis()
                ).into(),
            }),
        };
        // The caller may have gone away; nothing to do then.
        let _ = tx.send(out);
    });
    rx.recv().map_err(|_| Error::Backend {
        backend: BACKEND,
        source: format!("{target}: the client runtime stopped before answering").into(),
    })?
}

/// Phase-one state of one read.
enum Pending {
    Done(ReadResult),
    Hash {
        cmd: usize,
        key: String,
    },
    Count {
        cmd: usize,
        key: String,
    },
    Top {
        cmd: usize,
        key: String,
        limit: usize,
    },
    /// A leaderboard over several sorted sets, added up here.
    TopUnion {
        cmds: Vec<usize>,
        key: String,
        limit: usize,
    },
    Members {
        cmd: usize,
        key: String,
    },
    /// A union over keys in several cluster slots: their raw HLL strings are fetched first.
    CrossSlotCount {
        gets: Vec<usize>,
        keys: Vec<String>,
    },
}

/// Phase-two state of one read.
enum Finish {
    Done(ReadResult),
    Count {
        cmd: usize,
        key: String,
    },
    Top {
        head: Vec<(String, f64)>,
        boundary: f64,
        ties: usize,
        key: String,
        limit: usize,
    },
}

impl RedisStorage {
    /// One script call per slot group (all keys in one on a single node), recording `id` in
    /// each group's slot when given (see `Storage::apply_once`).
    fn apply_batch(&self, batch: &Batch, id: Option<&str>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // The parts of each script call: all keys in one on a single node, one per slot on a
        // cluster.
        let expire = |entry: &KeyEntry| self.config.expire_at(entry.bucket, entry.bucket_start);
        let groups: Vec<Vec<Part<'_>>> = match self.layout {
            KeyLayout::Plain => {
                let mut parts = Vec::with_capacity(batch.len() + 16);
                for (key, entry) in batch.iter() {
                    script::push_parts(key, Cow::Borrowed(key), entry, expire(entry), &mut parts);
                }
                vec![parts]
            }
            KeyLayout::ClusterTagged => {
                let mut by_slot: BTreeMap<u16, Vec<Part<'_>>> = BTreeMap::new();
                for (key, entry) in batch.iter() {
                    let physical = self.layout.physical(key);
                    let parts = by_slot.entry(slot(physical.as_bytes())).or_default();
                    script::push_parts(key, physical, entry, expire(entry), parts);
                }
                by_slot.into_values().collect()
            }
        };
        let groups: Vec<Vec<Part<'_>>> = groups.into_iter().filter(|g| !g.is_empty()).collect();
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
        let outcomes = self.block_on(async move {
            let runs = calls.into_iter().map(|cmd| {
                let conn = conn.clone();
                async move {
                    match conn {
                        Conn::Single(mut c) => script::eval(&mut c, &cmd).await,
                        Conn::Cluster { mut writes, .. } => script::eval(&mut writes, &cmd).await,
                    }
                }
            });
            Ok(futures_util::future::join_all(runs).await)
        })?;
        let mut first_error = None;
        for (outcome, parts) in outcomes.into_iter().zip(&groups) {
            let error = match outcome.map(|v| script::outcome(v, parts.len())) {
                Ok(Ok(None)) => continue,
                Ok(Ok(Some(refusal))) => {
                    let key = parts.get(refusal.part).map_or("?", |p| p.key);
                    Error::Backend {
                        backend: BACKEND,
                        source: format!(
                            "{}: key {key:?}: {} ({})",
                            self.target,
                            refusal.message,
                            if refusal.partial {
                                "the keys before it in this batch were applied: Redis does not roll back"
                            } else {
                                "nothing of this batch was applied"
                            }
                        )
                        .into(),
                    }
                }
                Ok(Err(unexpected)) => Error::Backend {
                    backend: BACKEND,
                    source: format!("{}: {unexpected}", self.target).into(),
                },
                Err(e) => {
                    if redirected(&e) {
                        if let Some(part) = parts.first() {
                            self.refresh_slots(part.key);
                        }
                    }
                    self.failure(&e, |_| parts.first().map(|p| p.key.to_owned()))
                }
            };
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Storage for RedisStorage {
    fn capabilities(&self) -> Capabilities {
        // One node: the whole batch in one script call. Cluster: one script call per slot.
        Capabilities::new(self.layout == KeyLayout::Plain, true)
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        self.apply_batch(batch, None)
    }

    fn apply_once(&self, id: &str, batch: &Batch) -> Result<()> {
        self.apply_batch(batch, Some(id))
    }

    fn read(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
        // Phase one: every read's main command, all in one round trip per slot.
        let mut cmds: Vec<(u16, Cmd, String)> = Vec::with_capacity(reads.len());
        let mut push = |slot: u16, cmd: Cmd, label: &str| {
            cmds.push((slot, cmd, label.to_owned()));
            cmds.len() - 1
        };
        let mut pending = Vec::with_capacity(reads.len());
        for read in reads {
            pending.push(match read {
                Read::Hash(key) => {
                    let k = self.layout.physical(key);
                    let mut c = redis::cmd("HGETALL");
                    c.arg(k.as_ref());
                    Pending::Hash {
                        cmd: push(self.slot_of(&k), c, key),
                        key: key.clone(),
                    }
                }
                Read::Count(keys) if keys.is_empty() => Pending::Done(ReadResult::Count(0)),
                Read::Count(keys) => {
                    let physical: Vec<String> = keys
                        .iter()
                        .map(|k| self.layout.physical(k).into_owned())
                        .collect();
                    let first = self.slot_of(&physical[0]);
                    if physical.iter().all(|k| self.slot_of(k) == first) {
                        let mut c = redis::cmd("PFCOUNT");
                        physical.iter().for_each(|k| {
                            c.arg(k);
                        });
                        Pending::Count {
                            cmd: push(first, c, &keys[0]),
                            key: keys.join(","),
                        }
                    } else {
                        let gets = physical
                            .iter()
                            .map(|k| {
                                let mut c = redis::cmd("GET");
                                c.arg(k);
                                push(self.slot_of(k), c, k)
                            })
                            .collect();
                        Pending::CrossSlotCount { gets, keys: physical }
                    }
                }
                Read::Top { limit: 0, .. } => Pending::Done(ReadResult::Top(Vec::new())),
                Read::Top { keys, .. } if keys.is_empty() => Pending::Done(ReadResult::Top(Vec::new())),
                Read::Top { keys, limit } if keys.len() == 1 => {
                    let k = self.layout.physical(&keys[0]);
                    let last = isize::try_from(*limit).map_or(-1, |l| l - 1);
                    let mut c = redis::cmd("ZREVRANGE");
                    c.arg(k.as_ref()).arg(0).arg(last).arg("WITHSCORES");
                    Pending::Top {
                        cmd: push(self.slot_of(&k), c, &keys[0]),
                        key: keys[0].clone(),
                        limit: *limit,
                    }
                }
                Read::Top { keys, limit } => {
                    // Redis has no "union, then the best N": the union comes back whole and is
                    // cut here. The buckets of one leaderboard share a slot on a cluster; other
                    // unions read each set whole and add up here.
                    let physical: Vec<String> = keys
                        .iter()
                        .map(|k| self.layout.physical(k).into_owned())
                        .collect();
                    let first = self.slot_of(&physical[0]);
                    let cmds = if physical.iter().all(|k| self.slot_of(k) == first) {
                        let mut c = redis::cmd("ZUNION");
                        c.arg(physical.len());
                        physical.iter().for_each(|k| {
                            c.arg(k);
                        });
                        c.arg("WITHSCORES");
                        vec![push(first, c, &keys[0])]
                    } else {
                        physical
                            .iter()
                            .map(|k| {
                                let mut c = redis::cmd("ZRANGE");
                                c.arg(k).arg(0).arg(-1).arg("WITHSCORES");
                                push(self.slot_of(k), c, k)
                            })
                            .collect()
                    };
                    Pending::TopUnion {
                        cmds,
                        key: keys.join(","),
                        limit: *limit,
                    }
                }
                Read::Members(key) => {
                    let k = self.layout.physical(key);
                    let mut c = redis::cmd("SMEMBERS");
                    c.arg(k.as_ref());
                    Pending::Members {
                        cmd: push(self.slot_of(&k), c, key),
                        key: key.clone(),
                    }
                }
            });
        }
        let mut answers = if cmds.is_empty() {
            Vec::new()
        } else {
            self.exec(true, cmds)?
        };
        let mut take = |i: usize| std::mem::take(&mut answers[i]);

        // Phase two, only where needed: members tied with a cut-off leaderboard's last score
        // (Redis orders ties by member descending, the contract ascending), and cross-slot
        // unions.
        let mut cmds2: Vec<(u16, Cmd, String)> = Vec::new();
        let mut push2 = |slot: u16, cmd: Cmd, label: &str| {
            cmds2.push((slot, cmd, label.to_owned()));
            cmds2.len() - 1
        };
        let mut finishing = Vec::with_capacity(pending.len());
        for p in pending {
            finishing.push(match p {
                Pending::Done(r) => Finish::Done(r),
                Pending::Hash { cmd, key } => Finish::Done(ReadResult::Hash(values::hash(&key, take(cmd))?)),
                Pending::Members { cmd, key } => {
                    Finish::Done(ReadResult::Members(values::strings(&key, take(cmd))?))
                }
                Pending::Count { cmd, key } => {
                    Finish::Done(ReadResult::Count(values::count(&key, take(cmd))?))
                }
                Pending::Top { cmd, key, limit } => {
                    let ranked = values::ranked(&key, take(cmd))?;
                    match ranked.last() {
                        Some((_, boundary, raw)) if ranked.len() >= limit => {
                            let k = self.layout.physical(&key);
                            let mut c = redis::cmd("ZRANGEBYSCORE");
                            c.arg(k.as_ref())
                                .arg(raw.as_str())
                                .arg(raw.as_str())
                                .arg("WITHSCORES");
                            let boundary = *boundary;
                            Finish::Top {
                                head: ranked
                                    .into_iter()
                                    .filter(|(_, s, _)| *s != boundary)
                                    .map(|(m, s, _)| (m, s))
                                    .collect(),
                                boundary,
                                ties: push2(self.slot_of(&k), c, &key),
                                key,
                                limit,
                            }
                        }
                        _ => {
                            let mut all: Vec<(String, f64)> =
                                ranked.into_iter().map(|(m, s, _)| (m, s)).collect();
                            sort_ranked(&mut all);
                            Finish::Done(ReadResult::Top(all))
                        }
                    }
                }
                Pending::TopUnion { cmds, key, limit } => {
                    let mut sums: hashbrown::HashMap<String, f64> = hashbrown::HashMap::new();
                    for cmd in cmds {
                        for (member, score, _) in values::ranked(&key, take(cmd))? {
                            *sums.entry(member).or_insert(0.0) += score;
                        }
                    }
                    let mut all: Vec<(String, f64)> = sums.into_iter().collect();
                    top_ranked(&mut all, limit);
                    Finish::Done(ReadResult::Top(all))
                }
                Pending::CrossSlotCount { gets, keys } => {
                    let mut present: Vec<(&String, Vec<u8>)> = Vec::new();
                    for (i, key) in gets.into_iter().zip(&keys) {
                        if let Some(bytes) = values::optional_bytes(key, take(i))? {
                            present.push((key, bytes));
                        }
                    }
                    match present.len() {
                        0 => Finish::Done(ReadResult::Count(0)),
                        1 => {
                            let key = present[0].0;
                            let mut c = redis::cmd("PFCOUNT");
                            c.arg(key.as_str());
                            Finish::Count {
                                cmd: push2(self.slot_of(key), c, key),
                                key: key.clone(),
                            }
                        }
                        _ => {
                            // Copy the sketches under one tag, count their union there.
                            let tag = self.tmp_union_tag();
                            let tmp_slot = slot(tag.as_bytes());
                            let tmp: Vec<String> = (0..present.len()).map(|i| format!("{tag}:{i}")).collect();
                            for (name, (_, bytes)) in tmp.iter().zip(&present) {
                                let mut c = redis::cmd("SET");
                                c.arg(name).arg(bytes.as_slice()).arg("PX").arg(UNION_TMP_TTL_MS);
                                push2(tmp_slot, c, &tag);
                            }
                            let mut count = redis::cmd("PFCOUNT");
                            let mut del = redis::cmd("DEL");
                            tmp.iter().for_each(|k| {
                                count.arg(k);
                                del.arg(k);
                            });
                            let cmd = push2(tmp_slot, count, &tag);
                            push2(tmp_slot, del, &tag);
                            Finish::Count {
                                cmd,
                                key: keys.join(","),
                            }
                        }
                    }
                }
            });
        }
        let mut answers2 = if cmds2.is_empty() {
            Vec::new()
        } else {
            self.exec(true, cmds2)?
        };
        let mut take2 = |i: usize| std::mem::take(&mut answers2[i]);
        finishing
            .into_iter()
            .map(|f| {
                Ok(match f {
                    Finish::Done(r) => r,
                    Finish::Count { cmd, key } => ReadResult::Count(values::count(&key, take2(cmd))?),
                    Finish::Top {
                        mut head,
                        boundary,
                        ties,
                        key,
                        limit,
                    } => {
                        head.extend(
                            values::ranked(&key, take2(ties))?
                                .into_iter()
                                .filter(|(_, s, _)| *s == boundary)
                                .map(|(m, s, _)| (m, s)),
                        );
                        sort_ranked(&mut head);
                        head.truncate(limit);
                        ReadResult::Top(head)
                    }
                })
            })
            .collect()
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let cmds = keys
            .iter()
            .map(|k| {
                let physical = self.layout.physical(k);
                let mut c = redis::cmd("DEL");
                c.arg(physical.as_ref());
                (self.slot_of(&physical), c, k.clone())
            })
            .collect();
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
