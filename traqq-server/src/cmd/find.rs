//! `find` (`GET /v1/find`): one metric of a range, per bucket or merged.

use traqq_core::plan::QueryOptions;
use traqq_core::result::FindOptions;

use traqq_core::bucket::Tz;

use super::query::{range_and_options, read, zone};
use super::{json_within, Answer, Ctx, Fields, Parsed};
use crate::protocol::{Command, Range, Request};

pub(super) fn parse<'a>(fields: &Fields<'a>) -> Parsed<Request<'a>> {
    let (range, opts) = range_and_options(Command::Find, fields)?;
    let zone = zone(fields)?;
    let metric_type = fields.required("metric_type", fields.string("metric_type"))?;
    FindOptions {
        metric_type: metric_type.clone(),
        ..FindOptions::default()
    }
    .validate()
    .map_err(|e| e.to_string().replace("invalid query: ", ""))?;
    let key = fields.required("key", fields.string("key"))?;
    if key.trim().is_empty() {
        return Err("field \"key\" is empty (a pattern such as \"event~geo\")".into());
    }
    Ok(Request::Find {
        range,
        opts: Box::new(opts),
        find: FindOptions {
            metric_type,
            key,
            add_key: fields.string("add_key")?.filter(|k| !k.is_empty()),
            merge: fields.boolean("merge")?.unwrap_or(false),
        },
        zone,
    })
}

pub(super) fn run(
    ctx: Ctx<'_>,
    range: Range,
    opts: QueryOptions,
    find: &FindOptions,
    zone: Option<Tz>,
) -> Answer {
    let result = read(ctx, range, opts, zone)?;
    let found = result.try_find(find)?;
    json_within(&found, ctx.max_reply_bytes)
}
