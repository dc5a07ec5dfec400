//! Connection slots, shared by the TCP and HTTP listeners: at most `server.max_connections`
//! open at once per listener, and at most `server.max_connections_per_ip` from one peer
//! address, so one client cannot take every slot. A refused connection is answered at once
//! and closed, never left waiting in the accept queue, and the log line saying so is rate
//! limited (a flood of refusals must not become a flood of log lines).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open connections per peer address.
type PeerCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The slots of one listener.
#[derive(Debug)]
pub(crate) struct Slots {
    total: Arc<Semaphore>,
    max_total: usize,
    /// 0: no per-peer cap.
    max_per_peer: usize,
    per_peer: PeerCounts,
    refusals: RateLimitedLog,
}

/// Why a connection was refused: the message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

/// A connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    _total: OwnedSemaphorePermit,
    peer: Option<(IpAddr, PeerCounts)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((ip, counts)) = self.peer.take() {
            if let Ok(mut counts) = counts.lock() {
                if let Some(n) = counts.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(&ip);
                    }
                }
            }
        }
    }
}

impl Slots {
    pub(crate) fn new(max_total: usize, max_per_peer: usize) -> Self {
        Slots {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            max_per_peer,
            per_peer: Arc::default(),
            refusals: RateLimitedLog::new(Duration::from_secs(10)),
        }
    }

    /// A slot for a connection from `peer`, or why not.
    pub(crate) fn take(&self, peer: IpAddr) -> Result<Slot, Refused> {
        let Ok(total) = Arc::clone(&self.total).try_acquire_owned() else {
            return Err(self.refuse(
                peer,
                format!(
                    "too many open connections (server.max_connections = {}); try again later",
                    self.max_total
                ),
            ));
        };
        if self.max_per_peer == 0 {
            return Ok(Slot {
                _total: total,
                peer: None,
            });
        }
        let Ok(mut counts) = self.per_peer.lock() else {
            return Ok(Slot {
                _total: total,
                peer: None,
            });
        };
        let n = counts.entry(peer).or_insert(0);
        if *n >= self.max_per_peer {
            drop(counts);
            return Err(self.refuse(
                peer,
                format!(
                    "too many open connections from {peer} (server.max_connections_per_ip = {}); try again later",
                    self.max_per_peer
                ),
            ));
        }
        *n += 1;
        Ok(Slot {
            _total: total,
            peer: Some((peer, Arc::clone(&self.per_peer))),
        })
    }

    fn refuse(&self, peer: IpAddr, message: String) -> Refused {
        if let Some(suppressed) = self.refusals.allow() {
            tracing::warn!(%peer, suppressed, "connection refused: {message}");
        }
        Refused(message)
    }
}

/// The server-wide budget of request bytes being read and parsed (`server.max_inflight_bytes`),
/// shared by both transports: past it a request is refused at once (HTTP 503 + `Retry-After`,
/// TCP an error reply and a close) instead of the server running out of memory. Counted in
/// KiB, rounded up.
#[derive(Debug, Clone)]
pub(crate) struct ByteBudget {
    kib: Arc<Semaphore>,
    max_bytes: usize,
}

/// Bytes taken from a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    _permits: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Reservation {
    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl ByteBudget {
    pub(crate) fn new(max_bytes: usize) -> Self {
        let kib = max_bytes.div_ceil(1024).min(Semaphore::MAX_PERMITS);
        ByteBudget {
            kib: Arc::new(Semaphore::new(kib)),
            max_bytes,
        }
    }

    /// `bytes` from the budget, or `None` when that much is not free now.
    pub(crate) fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let kib = u32::try_from(bytes.div_ceil(1024)).ok()?;
        if kib == 0 {
            return Some(Reservation {
                _permits: None,
                bytes,
            });
        }
        let permits = Arc::clone(&self.kib).try_acquire_many_owned(kib).ok()?;
        Some(Reservation {
            _permits: Some(permits),
            bytes,
        })
    }

    /// The message for a request refused for want of budget.
    pub(crate) fn busy_message(&self) -> String {
        format!(
            "server busy: requests being read and parsed hold server.max_inflight_bytes = {} bytes; retry shortly",
            self.max_bytes
        )
    }
}

/// Lets one log line through per `every`, counting the ones it held back.
#[derive(Debug)]
pub(crate) struct RateLimitedLog {
    every: Duration,
    start: Instant,
    /// Milliseconds since `start` of the last line let through (`u64::MAX`: none yet).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    pub(crate) fn new(every: Duration) -> Self {
        RateLimitedLog {
            every,
            start: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let every = u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX);
        let due = last == u64::MAX || now.saturating_sub(last) >= every;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_and_total_caps_free_on_drop() {
        let slots = Slots::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        let refused = slots.take(a).unwrap_err();
        assert!(refused.0.contains("max_connections_per_ip = 2"), "{refused:?}");
        let _b1 = slots.take(b).unwrap();
        assert!(slots.take(b).unwrap_err().0.contains("max_connections = 3"));
        drop(a1);
        let _a3 = slots.take(a).unwrap();
        let unlimited = Slots::new(2, 0);
        let _x = unlimited.take(a).unwrap();
        let _y = unlimited.take(a).unwrap();
        assert!(unlimited.take(a).is_err());
    }

    #[test]
    fn the_budget_refuses_past_its_size_and_frees_on_drop() {
        let budget = ByteBudget::new(10 * 1024);
        let a = budget.try_reserve(6 * 1024).unwrap();
        assert_eq!(a.bytes(), 6 * 1024);
        assert!(
            budget.try_reserve(4 * 1024 + 1).is_none(),
            "one byte past the budget"
        );
        let b = budget.try_reserve(4 * 1024).unwrap();
        drop(a);
        assert!(budget.try_reserve(6 * 1024).is_some());
        drop(b);
        assert!(budget.try_reserve(usize::MAX).is_none());
        assert!(budget.try_reserve(0).is_some());
    }

    #[test]
    fn the_log_lets_one_line_through_per_period() {
        let log = RateLimitedLog::new(Duration::from_secs(3600));
        assert_eq!(log.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.allow(), None);
        }
        let log = RateLimitedLog::new(Duration::ZERO);
        assert_eq!(log.allow(), Some(0));
        assert!(log.allow().is_some());
    }
}
