//! Group flushing: concurrent writers waiting for durability share one `flush()`.

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out: one per writer that asked for a flush after its write.
    requested: u64,
    /// Every ticket up to this one is covered by a completed flush.
    completed: u64,
    running: bool,
}

/// Hands out flush tickets; one caller at a time runs the flush for everyone waiting.
#[derive(Debug, Default)]
pub(crate) struct GroupFlush {
    state: Mutex<State>,
    done: Condvar,
}

impl GroupFlush {
    /// Returns once a flush that started after this call has completed. If one is already
    /// running, waits for it and then for (or runs) the next, which covers this caller too.
    pub(crate) fn flush<E>(&self, run: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let mut s = self.state.lock();
        s.requested += 1;
        let ticket = s.requested;
        loop {
            if s.completed >= ticket {
                return Ok(());
            }
            if !s.running {
                s.running = true;
                // Everything written before this point is covered by the flush about to run.
                let covers = s.requested;
                drop(s);
                let result = run();
                let mut s = self.state.lock();
                s.running = false;
                if result.is_ok() {
                    s.completed = s.completed.max(covers);
                }
                self.done.notify_all();
                return result;
            }
            self.done.wait(&mut s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn concurrent_callers_share_flushes() {
        let group = GroupFlush::default();
        let runs = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        group
                            .flush(|| {
                                runs.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(1));
                                Ok::<(), ()>(())
                            })
                            .unwrap();
                    }
                });
            }
        });
        let runs = runs.load(Ordering::SeqCst);
        assert!((50..400).contains(&runs), "{runs} flushes for 400 requests");
    }
}
