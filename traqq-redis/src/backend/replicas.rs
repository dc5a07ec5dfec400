//! `[storage] redis_replicas_ack`: acknowledging a batch only once replicas hold it.

use redis::{RedisError, Value};

use super::Conn;

/// `[storage] redis_replicas_ack`: a `WAIT` after each script call, on the connection (and
/// node) that ran it.
#[derive(Debug, Clone)]
pub(super) struct ReplicasWait {
    pub(super) replicas: u32,
    pub(super) timeout_ms: u64,
}

impl ReplicasWait {
    /// Waits until `replicas` replicas of the node owning `slot` hold every write sent to it so
    /// far; fewer within the timeout is an error saying how many did.
    pub(super) async fn on(&self, conn: Conn, slot: u16) -> std::result::Result<(), RedisError> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replicas).arg(self.timeout_ms);
        let acked = match conn {
            Conn::Single(mut c) => wait.query_async::<Value>(&mut c).await?,
            Conn::Cluster { mut writes, .. } => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let node = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                writes.route_command(wait, RoutingInfo::SingleNode(node)).await?
            }
        };
        let confirmed = match acked {
            Value::Int(n) if n >= i64::from(self.replicas) => return Ok(()),
            Value::Int(n) => n.to_string(),
            other => format!("{other:?}"),
        };
        Err(RedisError::from((
            redis::ErrorKind::Client,
            "batch applied on the master but not acknowledged by enough replicas",
            format!(
                "only {confirmed} of redis_replicas_ack = {} replicas confirmed it within \
                 redis_replicas_ack_timeout_ms = {} (the batch is on the master and may be lost if it fails \
                 now; sending it again counts it twice unless its events carry ids)",
                self.replicas, self.timeout_ms
            ),
        )))
    }
}
