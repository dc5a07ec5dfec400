//! `GET /healthz`: a storage round trip (a read of an empty key set), `"ok"` when it works.

use traqq_core::bucket::BucketKind;
use traqq_core::key::key_set_key;
use traqq_core::read::Read;

use super::{Answer, Ctx};

pub(super) fn run(ctx: Ctx<'_>) -> Answer {
    let probe = key_set_key(ctx.traqq.prefix(), BucketKind::Day, 0);
    ctx.traqq.storage().read(&[Read::Members(probe)])?;
    Ok(Some(br#""ok""#.to_vec()))
}
