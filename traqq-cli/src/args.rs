//! The command line, as clap types: what each subcommand takes. A leaf: nothing here runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// traqq: event metrics — unique counts, counters, sums and leaderboards per day.
#[derive(Debug, Parser)]
#[command(name = "traqq", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Config file (TOML); without it, defaults.
    #[arg(long, short = 'c', env = "TRAQQ_CONFIG", global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Log lines as text (colours only on a terminal) or as JSON objects, one per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the TCP and HTTP server (default: loopback, store in ./traqq-data).
    Serve(ServeArgs),
    /// Record one event (--event JSON) or JSON lines from stdin (-).
    Record(RecordArgs),
    /// Print metrics per day (or hour) over a range.
    Query(QueryArgs),
    /// Print one metric, e.g. `traqq find bmp/ip --days 30 --merge`.
    Find(FindArgs),
    /// Backfill events from an NDJSON file (or - for stdin), using each event's time.
    Import(ImportArgs),
    /// Check a config file or print an example.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apply retention now: delete the buckets older than [retention] from a local store.
    Prune(PruneArgs),
    /// Register the buckets of data written by traqq 0.2 or trk2 (key sets without the bucket
    /// registry), so retention covers them; for a single Redis node.
    Migrate(PruneArgs),
    /// Write a store's metrics as a dump (NDJSON: counters, sums, leaderboards, sketches) to
    /// stdout or --output, for backups and moves between backends.
    Export(ExportArgs),
    /// Restore a dump written by `traqq export` into an empty store (any backend).
    Restore(RestoreArgs),
    /// Print a shell completion script: `traqq completions bash > /etc/bash_completion.d/traqq`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `traqq man > /usr/local/share/man/man1/traqq.1`.
    Man,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// First day exported: YYYY-MM-DD (in time.timezone), RFC 3339 or unix seconds (default:
    /// the oldest).
    #[arg(long, value_name = "DATE")]
    pub(crate) from: Option<String>,
    /// Last day exported (default: the newest).
    #[arg(long, value_name = "DATE")]
    pub(crate) to: Option<String>,
    /// Write the dump to FILE instead of stdout (`-`: stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The dump, or - for stdin.
    pub(crate) file: String,
    /// Restore everything but the unique-count sketches when the dump's are of another family
    /// (Redis HyperLogLogs into an embedded store, or the reverse), which cannot be converted.
    #[arg(long)]
    pub(crate) skip_sketches: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate FILE and print the effective config.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Print a commented example config.
    Example,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    Memory,
    Rocksdb,
    Sled,
    Redis,
}

impl Backend {
    /// The name `[storage] backend` uses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Rocksdb => "rocksdb",
            Backend::Sled => "sled",
            Backend::Redis => "redis",
        }
    }
}

/// Where a local store is (overrides `[storage]`).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct StoreArgs {
    /// Storage backend.
    #[arg(long, value_enum)]
    pub(crate) storage: Option<Backend>,
    /// Directory of an embedded store.
    #[arg(long, value_name = "DIR", env = "TRAQQ_DATA")]
    pub(crate) data: Option<PathBuf>,
    /// Redis URL (`[storage] url`), e.g. redis://127.0.0.1:6379.
    #[arg(long, value_name = "URL", env = "TRAQQ_REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,
}

/// Where record/query/find/import go: a running server (default) or a local store.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct TargetArgs {
    /// Server TCP address (default: server.tcp of the config). Without --addr, --data or
    /// --storage selects a local store instead.
    #[arg(long, value_name = "ADDR", env = "TRAQQ_ADDR")]
    pub(crate) addr: Option<String>,
    /// Token for a server with auth_token.
    #[arg(long, env = "TRAQQ_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

impl TargetArgs {
    pub(crate) fn is_local(&self) -> bool {
        self.addr.is_none() && (self.store.storage.is_some() || self.store.data.is_some())
    }
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// TCP address ("off" disables).
    #[arg(long, value_name = "ADDR")]
    pub(crate) tcp: Option<String>,
    /// HTTP address ("off" disables).
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<String>,
    /// Require this token on every request.
    #[arg(long, env = "TRAQQ_AUTH_TOKEN", hide_env_values = true)]
    pub(crate) auth_token: Option<String>,
    /// Allow a non-loopback address without an auth token.
    #[arg(long)]
    pub(crate) insecure: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RecordArgs {
    /// The event, a JSON object.
    #[arg(long, short = 'e', value_name = "JSON", conflicts_with = "input")]
    pub(crate) event: Option<String>,
    /// `-` reads JSON lines from stdin.
    #[arg(value_name = "-")]
    pub(crate) input: Option<String>,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

/// A time range and query options.
#[derive(Debug, Args, Clone)]
pub(crate) struct RangeArgs {
    /// Today and N days back.
    #[arg(long, value_name = "N", conflicts_with_all = ["from", "to"])]
    pub(crate) days: Option<u32>,
    /// First day: YYYY-MM-DD (in time.timezone), RFC 3339 or unix seconds.
    #[arg(long, value_name = "DATE")]
    pub(crate) from: Option<String>,
    /// Last day (default: now).
    #[arg(long, value_name = "DATE", requires = "from")]
    pub(crate) to: Option<String>,
    /// Hourly buckets (needs time.store_hourly).
    #[arg(long)]
    pub(crate) hourly: bool,
    /// Days (and --from/--to dates) of this IANA time zone instead of time.timezone, e.g.
    /// Asia/Tokyo; read as stored when listed in time.extra_zones, else assembled from the
    /// stored hours (needs time.store_hourly).
    #[arg(long, value_name = "ZONE")]
    pub(crate) tz: Option<String>,
    /// Leaderboard length.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
    /// Only metrics whose type:pattern matches (repeatable), e.g. 'add:*'.
    #[arg(long, value_name = "GLOB")]
    pub(crate) accept: Vec<String>,
    /// Drop metrics whose type:pattern matches (repeatable), e.g. 'top:*~*'.
    #[arg(long, value_name = "GLOB")]
    pub(crate) ignore: Vec<String>,
    /// Quantiles that distributions (dst) report, e.g. 0.5,0.999 (default 0.5,0.9,0.95,0.99).
    #[arg(long, value_name = "Q,...")]
    pub(crate) q: Option<String>,
    /// Output format (default: table on a terminal, JSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    pub(crate) range: RangeArgs,
    /// One result per ISO week or calendar month (each its days merged: unique counts are
    /// unions, so weekly and monthly actives), instead of one per day.
    #[arg(long, value_enum, default_value_t = GroupArg::Day)]
    pub(crate) group: GroupArg,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct FindArgs {
    /// TYPE/PATTERN[/ADD_KEY], e.g. bmp/ip, add/event~geo, adv/event/amount, adv:i/event/amount,
    /// adv:c/event/amount (per-label counts), dst/event~geo/latency_ms (percentiles),
    /// dst:i/event~geo/latency_ms.
    pub(crate) path: String,
    /// Fold all days into one result.
    #[arg(long)]
    pub(crate) merge: bool,
    #[command(flatten)]
    pub(crate) range: RangeArgs,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// NDJSON file, or - for stdin.
    pub(crate) file: String,
    /// Events per batch (default: 10000 into a local store, 1000 to a server).
    #[arg(long, value_name = "N")]
    pub(crate) batch: Option<usize>,
    /// Threads recording into a local store (default: one per core).
    #[arg(long, value_name = "N")]
    pub(crate) workers: Option<usize>,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

/// `--group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GroupArg {
    /// One result per day (or hour).
    Day,
    /// ISO weeks, Monday first.
    Week,
    /// Calendar months.
    Month,
}

impl GroupArg {
    pub(crate) fn group(self) -> traqq_core::group::Group {
        match self {
            GroupArg::Day => traqq_core::group::Group::Day,
            GroupArg::Week => traqq_core::group::Group::Week,
            GroupArg::Month => traqq_core::group::Group::Month,
        }
    }
}
