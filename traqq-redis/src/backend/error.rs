//! The one place Redis failures become traqq errors.

use redis::RedisError;
use traqq_storage::Error;

use crate::values::BACKEND;

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
pub(super) fn classified(down: bool, source: impl Into<traqq_storage::Source>) -> Error {
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
pub(super) fn redirected(e: &RedisError) -> bool {
    use redis::ServerErrorKind as K;
    e.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, s)| matches!(s.kind(), Some(K::Moved | K::Ask)))
    }) || matches!(e.kind(), redis::ErrorKind::Server(K::Moved | K::Ask))
}

/// Server refusals that pass: the cluster is moving slots or electing, or the node is loading.
/// The refused command was not executed.
pub(super) fn passing(kind: redis::ServerErrorKind) -> bool {
    use redis::ServerErrorKind as K;
    matches!(
        kind,
        K::ClusterDown | K::MasterDown | K::BusyLoading | K::TryAgain | K::Moved | K::Ask
    )
}
