//! Where record/query/find/import go: a running server over TCP, or a local store.

use std::sync::Arc;

use anyhow::Context;
use serde_json::value::RawValue;
use traqq_core::bucket::Tz;
use traqq_core::group::{Group, GroupResult};
use traqq_core::plan::QueryOptions;
use traqq_core::result::{DayResult, FindOptions, MetricResult, QueryTotals};
use traqq_server::Client;
use traqq_storage::{BatchReport, RejectedEvent, Traqq};

use crate::args::TargetArgs;
use crate::config::FileConfig;
use crate::UsageError;

pub(crate) use traqq_core::plan::QueryRange as Range;

pub(crate) enum Target {
    Server { client: Client, addr: String },
    Local(Arc<Traqq>),
}

impl Target {
    pub(crate) fn open(config: &FileConfig, args: &TargetArgs) -> anyhow::Result<Target> {
        if args.is_local() {
            let storage = config.open_store()?;
            let traqq = Traqq::with_shared_storage(config.traqq(), storage, &config.prefix)
                .map_err(|e| UsageError(e.to_string()))?;
            return Ok(Target::Local(Arc::new(traqq)));
        }
        let addr = match &args.addr {
            Some(a) => a.clone(),
            None => config
                .server
                .tcp_addr()
                .map_err(|e| UsageError(e.to_string()))?
                .ok_or_else(|| UsageError("server.tcp is off: give --addr ADDR or --data DIR".into()))?
                .to_string(),
        };
        let mut client = Client::connect(addr.as_str()).with_context(|| {
            format!(
                "cannot reach a traqq server at {addr} (start one with `traqq serve`, or use --data DIR \
                 / --storage memory for a local store)"
            )
        })?;
        client.set_read_timeout(None)?;
        if let Some(token) = args.token.as_ref().or(config.server.auth_token.as_ref()) {
            client
                .auth(token)
                .with_context(|| format!("authenticating to {addr}"))?;
        }
        Ok(Target::Server { client, addr })
    }

    /// Records JSON texts as one batch. `texts` must each be one line.
    pub(crate) fn record_lines(&mut self, texts: &[&str]) -> anyhow::Result<BatchReport> {
        match self {
            Target::Local(traqq) => Ok(traqq.record_json_lines(texts.iter().copied())?.report()),
            Target::Server { client, addr } => {
                // Only well-formed JSON goes into the request line (a broken value would break
                // the whole request); the rest is rejected here with the parser's reason.
                let mut rejected = Vec::new();
                let mut sent = Vec::with_capacity(texts.len());
                let mut line = String::with_capacity(texts.iter().map(|t| t.len() + 1).sum::<usize>() + 40);
                line.push_str(r#"{"cmd":"record_batch","events":["#);
                for (i, text) in texts.iter().enumerate() {
                    match serde_json::from_str::<&RawValue>(text) {
                        Ok(raw) => {
                            if !sent.is_empty() {
                                line.push(',');
                            }
                            line.push_str(raw.get());
                            sent.push(i);
                        }
                        Err(e) => rejected.push(RejectedEvent {
                            index: i,
                            error: format!("invalid event JSON: {e}"),
                        }),
                    }
                }
                line.push_str("]}");
                let (mut recorded, mut duplicates) = (0, 0);
                if !sent.is_empty() {
                    client.send(line.as_bytes())?;
                    let data = traqq_server::client::into_data(client.receive()?)
                        .with_context(|| format!("server {addr}"))?;
                    let reply: BatchReport =
                        serde_json::from_value(data).context("unexpected record_batch reply")?;
                    (recorded, duplicates) = (reply.recorded, reply.duplicates);
                    for r in reply.rejected {
                        // Back from the index among the events sent to the index among `texts`.
                        let index = sent.get(r.index).copied().unwrap_or(r.index);
                        rejected.push(RejectedEvent { index, ..r });
                    }
                    rejected.sort_by_key(|r| r.index);
                }
                Ok(BatchReport {
                    recorded,
                    duplicates,
                    rejected,
                })
            }
        }
    }

    pub(crate) fn query(&mut self, w: Window) -> anyhow::Result<Vec<DayResult>> {
        match self {
            Target::Local(traqq) => Ok(local_query(traqq, w)?.days),
            Target::Server { client, .. } => Ok(client.query_range(w.range, &w.opts, w.zone)?),
        }
    }

    /// [`Target::query`] grouped into weeks or months.
    pub(crate) fn query_groups(&mut self, w: Window, group: Group) -> anyhow::Result<Vec<GroupResult>> {
        match self {
            Target::Local(traqq) => Ok(traqq.query_groups_in(w.range, w.opts, group, w.zone)?),
            Target::Server { client, .. } => Ok(client.query_groups(w.range, &w.opts, group, w.zone)?),
        }
    }

    /// [`Target::query`] with the range's totals.
    pub(crate) fn query_totals(&mut self, w: Window) -> anyhow::Result<QueryTotals> {
        match self {
            Target::Local(traqq) => {
                let result = local_query(traqq, w)?;
                Ok(QueryTotals {
                    totals: result.totals()?,
                    days: result.days,
                })
            }
            Target::Server { client, .. } => Ok(client.query_totals(w.range, &w.opts, w.zone)?),
        }
    }

    pub(crate) fn find(&mut self, w: Window, find: &FindOptions) -> anyhow::Result<Vec<MetricResult>> {
        match self {
            Target::Local(traqq) => Ok(local_query(traqq, w)?.try_find(find)?),
            Target::Server { client, .. } => Ok(client.find_range(w.range, &w.opts, find, w.zone)?),
        }
    }

    pub(crate) fn flush(&self) -> anyhow::Result<()> {
        if let Target::Local(traqq) = self {
            traqq.flush()?;
        }
        Ok(())
    }
}

fn local_query(traqq: &Traqq, w: Window) -> traqq_storage::Result<traqq_core::result::QueryResult> {
    match w.zone {
        Some(zone) => traqq.query_in_zone(w.range, w.opts, zone),
        None => traqq.query_range(w.range, w.opts),
    }
}

/// What a query reads: its range, its options, and the zone whose days it uses (`None`: the
/// store's `time.timezone`).
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub(crate) range: Range,
    pub(crate) opts: QueryOptions,
    pub(crate) zone: Option<Tz>,
}
