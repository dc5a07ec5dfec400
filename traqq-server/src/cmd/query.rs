//! `query` / `query_days` (`GET /v1/query`): every metric of a range of buckets. The range and
//! options parsed here serve `find` too.

use traqq_core::bucket::{BucketKind, Tz};
use traqq_core::group::{Group, GroupResult};
use traqq_core::plan::QueryOptions;
use traqq_core::result::{MetricResult, QueryResult, QueryTotals};

use super::{clip, json_within, Answer, Ctx, Fields, Parsed};
use crate::protocol::{Command, Range, Request};

pub(super) fn parse<'a>(command: Command, fields: &Fields<'a>) -> Parsed<Request<'a>> {
    let (range, opts) = range_and_options(command, fields)?;
    let zone = zone(fields)?;
    let totals = fields.boolean("totals")?.unwrap_or(false);
    let group = match fields.string("group")? {
        None => Group::Day,
        Some(g) => Group::parse(&g).ok_or_else(|| {
            format!(
                "\"group\" must be \"day\", \"week\" or \"month\", found {:?}",
                clip(&g)
            )
        })?,
    };
    if group != Group::Day && opts.bucket != BucketKind::Day {
        return Err(format!(
            "\"group\" = {:?} merges days: it needs daily buckets (\"bucket\": \"d\")",
            group.as_str()
        ));
    }
    Ok(Request::Query {
        command,
        range,
        opts: Box::new(opts),
        totals,
        group,
        zone,
    })
}

/// The `tz` field: an IANA zone name (`Asia/Tokyo`), or none.
pub(super) fn zone(fields: &Fields<'_>) -> Parsed<Option<Tz>> {
    match fields.string("tz")? {
        None => Ok(None),
        Some(name) => name.parse::<Tz>().map(Some).map_err(|_| {
            format!(
                "\"tz\" must be an IANA time zone such as \"Asia/Tokyo\", found {:?}",
                clip(&name)
            )
        }),
    }
}

pub(super) fn run(
    ctx: Ctx<'_>,
    range: Range,
    opts: QueryOptions,
    totals: bool,
    group: Group,
    zone: Option<Tz>,
) -> Answer {
    if group != Group::Day {
        let groups = ctx.traqq.query_groups_in(range, opts.clone(), group, zone)?;
        if !totals {
            return json_within(&groups, ctx.max_reply_bytes);
        }
        let reply = GroupTotals {
            totals: read(ctx, range, opts, zone)?.totals()?,
            groups,
        };
        return json_within(&reply, ctx.max_reply_bytes);
    }
    let result = read(ctx, range, opts, zone)?;
    if !totals {
        // The traqq 0.2 shape: the list of buckets.
        return json_within(&result.days, ctx.max_reply_bytes);
    }
    let reply = QueryTotals {
        totals: result.totals()?,
        days: result.days,
    };
    json_within(&reply, ctx.max_reply_bytes)
}

/// A grouped query's reply with `totals`: the groups and every metric merged over the range.
#[derive(serde::Serialize)]
struct GroupTotals {
    groups: Vec<GroupResult>,
    totals: Vec<MetricResult>,
}

/// The range (`days`, or `min` and `max`) and the options (`bucket`, `limit`, `accept`,
/// `ignore`, `q`) of a `query`, `query_days` or `find`.
pub(super) fn range_and_options(command: Command, fields: &Fields<'_>) -> Parsed<(Range, QueryOptions)> {
    let by_days = command == Command::QueryDays || (command == Command::Find && fields.has("days"));
    let range = if by_days {
        if fields.has("min") || fields.has("max") {
            return Err("give either \"days\" or \"min\"/\"max\", not both".into());
        }
        let days = fields.required("days", fields.int("days"))?;
        Range::Days(u32::try_from(days).map_err(|_| {
            if days < 0 {
                format!("\"days\" must be 0 or more, found {days}")
            } else {
                format!("\"days\" = {days} is too large")
            }
        })?)
    } else {
        let (min, max) = (fields.timestamp("min")?, fields.timestamp("max")?);
        match (min, max) {
            (Some(min), Some(max)) if min > max => {
                return Err(format!("\"min\" ({min}) is after \"max\" ({max})"))
            }
            (Some(min), Some(max)) => Range::MinMax(min, max),
            _ if command == Command::Find => {
                return Err("find needs either \"days\" or both \"min\" and \"max\"".into())
            }
            (None, _) => return Err("missing field \"min\"".into()),
            (_, None) => return Err("missing field \"max\"".into()),
        }
    };
    let bucket = match fields.string("bucket")? {
        None => BucketKind::Day,
        Some(b) => BucketKind::parse(&b)
            .ok_or_else(|| format!("\"bucket\" must be \"d\" or \"h\", found {:?}", clip(&b)))?,
    };
    let limit = match fields.int("limit")? {
        None => None,
        Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => return Err(format!("\"limit\" must be at least 1, found {n}")),
    };
    let opts = QueryOptions {
        bucket,
        limit,
        accept: fields.list("accept")?,
        ignore: fields.list("ignore")?,
        quantiles: fields.quantiles("q")?,
        ..QueryOptions::default()
    };
    Ok((range, opts))
}

/// Reads `range` through the engine (which checks `query.max_buckets`), with the days of
/// `zone` when given.
pub(super) fn read(
    ctx: Ctx<'_>,
    range: Range,
    opts: QueryOptions,
    zone: Option<Tz>,
) -> traqq_storage::Result<QueryResult> {
    match zone {
        Some(zone) => ctx.traqq.query_in_zone(range, opts, zone),
        None => ctx.traqq.query_range(range, opts),
    }
}
