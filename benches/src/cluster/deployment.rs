//! The Redis setups the cluster bench compares: a plain node, or a cluster of 1–3 masters.

use super::*;

/// What Redis runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// One plain `redis-server`, not in cluster mode.
    Single,
    /// A Redis Cluster of this many masters, no replicas.
    Cluster(usize),
}

impl Setup {
    /// The name printed.
    pub fn name(self) -> String {
        match self {
            Setup::Single => "single node".into(),
            Setup::Cluster(1) => "cluster, 1 master".into(),
            Setup::Cluster(n) => format!("cluster, {n} masters"),
        }
    }
}

/// Running servers of one setup (stopped on drop).
#[derive(Debug)]
pub struct Deployment {
    /// What they are.
    pub setup: Setup,
    pub(super) servers: Vec<OwnServer>,
    /// Slot ranges owned by each server, in `servers` order (empty for the single node).
    ranges: Vec<Vec<(u16, u16)>>,
    _dir: Option<tempfile::TempDir>,
}

/// `redis-cli -p PORT ARGS...`, its answer trimmed; an error reply is an error.
pub(super) fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .context("running redis-cli (on PATH?)")?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || text.starts_with("ERR") || text.starts_with("(error)") {
        bail!(
            "redis-cli -p {port} {}: {text} {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// The slot range of master `i` of `n`, as `redis-cli --cluster create` splits them.
pub fn slot_range(i: usize, n: usize) -> (u16, u16) {
    let n = n.max(1);
    let per = 16_384.0 / n as f64;
    let (mut first, mut cursor) = (0i64, 0.0);
    for j in 0..n {
        let mut last = (cursor + per - 1.0).round() as i64;
        if last > 16_383 || j + 1 == n {
            last = 16_383;
        }
        last = last.max(first);
        if j == i {
            return (first as u16, last as u16);
        }
        first = last + 1;
        cursor += per;
    }
    (0, 16_383)
}

impl Deployment {
    /// Starts the servers of `setup` and, for a cluster, waits until every node is ready.
    pub fn start(setup: Setup) -> anyhow::Result<Deployment> {
        match setup {
            Setup::Single => {
                let port = free_port().context("no free port")?;
                let server = OwnServer::ephemeral(port).context("cannot start redis-server")?;
                Ok(Deployment {
                    setup,
                    servers: vec![server],
                    ranges: Vec::new(),
                    _dir: None,
                })
            }
            Setup::Cluster(n) => {
                let dir = tempfile::tempdir()?;
                let mut servers = Vec::new();
                for _ in 0..n {
                    let port = free_cluster_port().context("no free port pair")?;
                    servers.push(
                        OwnServer::cluster_node(port, dir.path(), 5_000)
                            .context("cannot start redis-server")?,
                    );
                }
                if n >= 3 {
                    create_cluster(&servers, 0);
                } else {
                    join_by_hand(&servers)?;
                }
                let ranges = owned_ranges(&servers)?;
                Ok(Deployment {
                    setup,
                    servers,
                    ranges,
                    _dir: Some(dir),
                })
            }
        }
    }

    /// The connection settings of the store.
    pub fn config(&self) -> RedisConfig {
        match self.setup {
            Setup::Single => RedisConfig::single(self.urls().concat()),
            Setup::Cluster(_) => RedisConfig::cluster(self.urls()),
        }
    }

    pub(super) fn urls(&self) -> Vec<String> {
        self.servers.iter().map(OwnServer::url).collect()
    }

    /// Arguments that tell a worker where to record.
    pub(super) fn worker_args(&self) -> Vec<String> {
        let mut args = vec!["--urls".to_owned(), self.urls().join(",")];
        if matches!(self.setup, Setup::Cluster(_)) {
            args.push("--cluster".into());
        }
        args
    }

    /// CPU seconds (user + system) each master has used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<Vec<f64>> {
        self.servers
            .iter()
            .map(|s| s.pid().context("server not running").and_then(pid_cpu_seconds))
            .collect()
    }

    /// Empties every master.
    pub fn flush_all(&self) -> anyhow::Result<()> {
        for s in &self.servers {
            cli(s.port, &["FLUSHALL"])?;
        }
        Ok(())
    }

    /// Index of the master that owns `slot`.
    pub fn owner(&self, slot: u16) -> Option<usize> {
        if self.ranges.is_empty() {
            return Some(0);
        }
        self.ranges
            .iter()
            .position(|r| r.iter().any(|&(a, b)| (a..=b).contains(&slot)))
    }

    /// `a-b` slot ranges of master `i`.
    pub(super) fn ranges_text(&self, i: usize) -> String {
        self.ranges.get(i).map_or_else(
            || "all".into(),
            |r| {
                r.iter()
                    .map(|(a, b)| format!("{a}-{b}"))
                    .collect::<Vec<_>>()
                    .join(",")
            },
        )
    }
}

/// Joins 1 or 2 cluster nodes (which `redis-cli --cluster create` refuses) with the slot split
/// it would use, and waits until every node reports `cluster_state:ok` and knows all others.
pub(super) fn join_by_hand(servers: &[OwnServer]) -> anyhow::Result<()> {
    let n = servers.len();
    for (i, s) in servers.iter().enumerate() {
        let (a, b) = slot_range(i, n);
        cli(s.port, &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()])?;
        cli(
            s.port,
            &["CLUSTER", "ADDSLOTSRANGE", &a.to_string(), &b.to_string()],
        )?;
    }
    if let Some((first, rest)) = servers.split_first() {
        for s in rest {
            cli(s.port, &["CLUSTER", "MEET", "127.0.0.1", &first.port.to_string()])?;
        }
    }
    let start = Instant::now();
    let known = format!("cluster_known_nodes:{n}");
    for s in servers {
        loop {
            let info = cli(s.port, &["CLUSTER", "INFO"])?;
            if s.cluster_ready() && info.contains(&known) {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("cluster node on port {} not ready within 30 s: {info}", s.port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// The slot ranges each of `servers` owns, from the first one's `CLUSTER NODES`.
pub(super) fn owned_ranges(servers: &[OwnServer]) -> anyhow::Result<Vec<Vec<(u16, u16)>>> {
    let port = servers.first().map_or(0, |s| s.port);
    let nodes = cli(port, &["CLUSTER", "NODES"])?;
    let mut by_port: BTreeMap<u16, Vec<(u16, u16)>> = BTreeMap::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(addr) = fields.get(1) else { continue };
        let Some(node_port) = addr
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        let ranges = fields.iter().skip(8).filter_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            Some((a.parse().ok()?, b.parse().ok()?))
        });
        by_port.entry(node_port).or_default().extend(ranges);
    }
    servers
        .iter()
        .map(|s| {
            by_port
                .get(&s.port)
                .cloned()
                .with_context(|| format!("CLUSTER NODES does not list port {}: {nodes}", s.port))
        })
        .collect()
}
