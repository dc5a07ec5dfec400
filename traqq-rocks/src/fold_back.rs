//! Read-time folds, kept: the values a read had to fold from merge operands, handed back so
//! the store can write them over the operands.
//!
//! A key's merge operands are folded at every read until a write or a compaction folds them.
//! Right after a large fill that is most of a query's cost (84% of the instructions of
//! `query_days(30)` + 12 merged finds after 1,000,000 events), and every query paid it again.
//! While a [`Capture`] is open on a thread, the merge operator offers each value it fully
//! merged on that thread (a point read's fold runs on the reading thread; flushes and
//! compactions run on RocksDB's own threads, which never capture). The store then writes the
//! captured values back as plain values if nothing was written meanwhile, so the next read of
//! those keys folds nothing.

use std::cell::RefCell;
use std::marker::PhantomData;

/// At most this many bytes of folded values are kept per read (the rest fold again next time).
const MAX_CAPTURED_BYTES: usize = 64 << 20;

/// Folded `(key, value)` pairs of one read.
pub(crate) type Folds = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Default)]
struct Captured {
    folds: Folds,
    bytes: usize,
}

thread_local! {
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// Keeps the folds of this thread's reads until [`Capture::finish`]; dropped unfinished, it
/// stops capturing and discards them.
pub(crate) struct Capture {
    /// Bound to the thread whose reads it captures.
    _thread: PhantomData<*const ()>,
}

impl Capture {
    /// Starts capturing this thread's folds (discarding any left by an unfinished capture).
    pub(crate) fn start() -> Capture {
        CAPTURE.with(|c| *c.borrow_mut() = Some(Captured::default()));
        Capture { _thread: PhantomData }
    }

    /// Stops capturing and returns the folds seen since [`Capture::start`].
    pub(crate) fn finish(self) -> Folds {
        CAPTURE
            .with(|c| c.borrow_mut().take())
            .map(|c| c.folds)
            .unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

/// Called by the merge operator with a value it fully merged from operands: kept when this
/// thread is capturing and the read's budget has room.
pub(crate) fn offer(key: &[u8], value: &[u8]) {
    CAPTURE.with(|c| {
        // `try_borrow_mut`: never panic inside RocksDB's callback, whatever calls it.
        let Ok(mut slot) = c.try_borrow_mut() else {
            return;
        };
        let Some(captured) = slot.as_mut() else {
            return;
        };
        let size = key.len() + value.len();
        if captured.bytes + size <= MAX_CAPTURED_BYTES {
            captured.bytes += size;
            captured.folds.push((key.to_vec(), value.to_vec()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_open_capture_keeps_folds() {
        offer(b"k0", b"v0");
        let capture = Capture::start();
        offer(b"k1", b"v1");
        offer(b"k2", b"v2");
        assert_eq!(
            capture.finish(),
            vec![(b"k1".to_vec(), b"v1".to_vec()), (b"k2".to_vec(), b"v2".to_vec())]
        );
        offer(b"k3", b"v3");
        assert!(Capture::start().finish().is_empty());
        drop(Capture::start());
        offer(b"k4", b"v4");
        assert!(CAPTURE.with(|c| c.borrow().is_none()));
    }

    #[test]
    fn a_read_keeps_at_most_its_budget() {
        let capture = Capture::start();
        let big = vec![0u8; MAX_CAPTURED_BYTES / 2];
        offer(b"a", &big);
        offer(b"b", &big);
        offer(b"", b"x");
        let folds = capture.finish();
        assert_eq!(folds.len(), 2, "the second half-budget value does not fit");
        assert_eq!(folds[1], (Vec::new(), b"x".to_vec()));
    }
}
