//! # traqq-server
//!
//! traqq over the network: a TCP JSON-lines protocol (the requests and replies of traqq 0.2,
//! plus `record_batch`, `ping`, `auth`, hourly buckets, limits and filters), an HTTP API over
//! the same dispatch, Prometheus metrics, graceful shutdown, and a blocking [`Client`].
//!
//! The server holds no metric logic: a request becomes a call on the [`Traqq`] engine over
//! any `Storage`, and its result becomes JSON.
//!
//! Where things live:
//! - [`protocol`]: what everything shares — commands, statuses, replies, parsed requests,
//!   request limits, the per-connection session.
//! - [`wire`]: TCP request lines and HTTP event bodies, parsed in one pass (serde seeds).
//! - `cmd/`: one file per command (`record`, `record_batch`, `query`, `find`, `ping`, `auth`,
//!   `health`): its fields, its run on the engine, its answer; `cmd/group`: the group commit of
//!   pipelined `record` and `record_batch` lines.
//! - [`dispatch`]: the one token check, panics and store failures turned into replies, metrics.
//! - `tcp`, `http/` (router, handlers; `http/conn`: capped, timed connections), `slots`
//!   (connection caps and the request-bytes budget), `server` (binding, running, shutdown).
//! - [`client`]: a blocking client; [`config`]: `[server]`; [`metrics`]: Prometheus text.
//!
//! ```
//! use std::sync::Arc;
//! use traqq_server::{Client, RunningServer, ServerConfig};
//! use traqq_storage::prelude::*;
//!
//! let config = TraqqConfig {
//!     mapping: MappingConfig { add: vec!["event".into()], ..MappingConfig::default() },
//!     ..TraqqConfig::default()
//! };
//! let traqq = Arc::new(Traqq::new(config, MemoryStorage::new(), "doc")?);
//! let server = RunningServer::start(
//!     ServerConfig { tcp: "127.0.0.1:0".into(), http: "127.0.0.1:0".into(), ..ServerConfig::default() },
//!     traqq,
//! )?;
//!
//! let mut client = Client::connect(server.tcp_addr().unwrap())?;
//! client.record(&serde_json::json!({"event": "click", "ts": 1700000000}))?;
//! let days = client.query(1700000000, 1700000000)?;
//! assert_eq!(days[0].results[0].result, MetricData::Hash([("click".to_string(), 1)].into()));
//! server.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod client;
mod cmd;
pub mod config;
pub mod dispatch;
mod error;
mod http;
pub mod metrics;
pub mod protocol;
mod server;
mod slots;
mod tcp;
mod tls;
pub mod wire;

pub use client::{BatchReply, Client, HttpReply};
pub use config::ServerConfig;
pub use dispatch::Dispatcher;
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use protocol::{Command, Reply, Request, RequestLimits, Session, Status};
pub use server::{shutdown_signal, RunningServer, Server};
pub use traqq_storage::Traqq;
pub use wire::{parse_events_body, parse_line};
