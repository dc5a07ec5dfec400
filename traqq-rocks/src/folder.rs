//! The background folder: keys that took several merge operands since their last fold are
//! folded on a thread of their own while writes go on.
//!
//! A read folds every operand of a key that no write, compaction or earlier read folded. The
//! read-time write-back ([`crate::fold_back`]) makes the *second* read cheap; a read right
//! after a large fill still paid for the whole fill's operands. The writers count each key's
//! operands here; at [`Folder::spawn`]'s threshold a key is due, and the thread folds the due
//! keys in rounds. It sleeps [`REST_PER_ROUND`] times as long as its last round took (at least
//! [`MIN_REST`]), so it takes at most about a fifth of a core whatever the write rate, and a
//! key is folded at most once a round.
//!
//! This module only keeps the counts and runs the rounds; what folding a key means (a locked
//! read that captures its fold, then the write-back) is the store's closure.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::{Condvar, Mutex};

/// Keys folded per call of the fold closure: the store holds its writers' lock for one call.
pub(crate) const KEYS_PER_CALL: usize = 16;
/// The thread rests this many times as long as its last round took ...
const REST_PER_ROUND: u32 = 4;
/// ... and at least this long.
const MIN_REST: Duration = Duration::from_millis(5);
/// Keys counted at most: past this many, the counts start over (a key forgotten is folded by
/// its next read or compaction, as without the folder). Bounds the memory a store with many
/// keys written once each (old buckets) would otherwise keep. Also the most keys waiting for
/// a round: past it, a key that falls due is left to its next read.
const MAX_COUNTED_KEYS: usize = 1 << 16;

/// A key, as RocksDB stores it.
pub(crate) type Key = Box<[u8]>;

#[derive(Default)]
struct State {
    /// Operands written per key since its last fold, for keys not yet due.
    counts: HashMap<Key, u32>,
    /// Keys that reached the threshold, in the order they did.
    due: Vec<Key>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    threshold: u32,
}

/// Counts operands per key and folds due keys on its own thread; stopped (and joined) on drop.
pub(crate) struct Folder {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Folder {
    /// Starts the thread: a key is due once `threshold` (at least 1) operands were written to
    /// it since its last fold, and `fold` is called with at most [`KEYS_PER_CALL`] due keys at
    /// a time.
    pub(crate) fn spawn(threshold: u32, fold: impl Fn(&[Key]) + Send + 'static) -> std::io::Result<Folder> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            threshold: threshold.max(1),
        });
        let thread = std::thread::Builder::new()
            .name("traqq-rocks-folder".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, fold)
            })?;
        Ok(Folder {
            shared,
            thread: Some(thread),
        })
    }

    /// Counts one operand written to each of `keys`.
    pub(crate) fn wrote<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) {
        let mut state = self.shared.state.lock();
        let was_idle = state.due.is_empty();
        let State { counts, due, .. } = &mut *state;
        for key in keys {
            if counts.len() >= MAX_COUNTED_KEYS && !counts.contains_key(key) {
                counts.clear();
            }
            let count = counts.entry_ref(key).or_insert(0);
            *count += 1;
            if *count >= self.shared.threshold {
                counts.remove(key);
                if due.len() < MAX_COUNTED_KEYS {
                    due.push(key.into());
                }
            }
        }
        if was_idle && !state.due.is_empty() {
            self.shared.wake.notify_one();
        }
    }

    /// Keys counted and not yet due, and keys due (for tests).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> (usize, usize) {
        let state = self.shared.state.lock();
        (state.counts.len(), state.due.len())
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: waits for due keys, folds them all, rests, until stopped.
fn run(shared: &Shared, fold: impl Fn(&[Key])) {
    loop {
        let due = {
            let mut state = shared.state.lock();
            while state.due.is_empty() && !state.stop {
                shared.wake.wait(&mut state);
            }
            if state.stop {
                return;
            }
            let mut due = std::mem::take(&mut state.due);
            // A key written past the threshold again while it waited is due twice.
            due.sort_unstable();
            due.dedup();
            due
        };
        let started = Instant::now();
        for keys in due.chunks(KEYS_PER_CALL) {
            fold(keys);
        }
        let rest_until = Instant::now() + (started.elapsed() * REST_PER_ROUND).max(MIN_REST);
        let mut state = shared.state.lock();
        // Writers' notices (keys falling due) do not cut the rest short; `drop`'s does.
        while !state.stop && !shared.wake.wait_until(&mut state, rest_until).timed_out() {}
        if state.stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording_folder(threshold: u32) -> (Folder, Arc<Mutex<Vec<Vec<u8>>>>) {
        let folded = Arc::new(Mutex::new(Vec::new()));
        let folder = Folder::spawn(threshold, {
            let folded = Arc::clone(&folded);
            move |keys: &[Key]| {
                assert!(keys.len() <= KEYS_PER_CALL);
                folded.lock().extend(keys.iter().map(|k| k.to_vec()));
            }
        })
        .unwrap();
        (folder, folded)
    }

    fn wait_for(what: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_key_is_folded_once_it_took_the_threshold_of_operands() {
        let (folder, folded) = recording_folder(3);
        folder.wrote([&b"a"[..], b"b"].into_iter());
        folder.wrote([&b"a"[..]].into_iter());
        assert_eq!(folder.pending(), (2, 0), "a has 2 operands, b has 1");
        std::thread::sleep(Duration::from_millis(20));
        assert!(folded.lock().is_empty(), "nothing is due yet");
        folder.wrote([&b"a"[..], b"b"].into_iter());
        wait_for(|| folded.lock().len() == 1);
        assert_eq!(*folded.lock(), vec![b"a".to_vec()]);
        assert_eq!(folder.pending(), (1, 0), "b counts 2, a starts over");
        folder.wrote([&b"b"[..]].into_iter());
        wait_for(|| folded.lock().len() == 2);
        assert_eq!(folded.lock()[1], b"b".to_vec());
    }

    #[test]
    fn due_keys_are_folded_in_calls_of_at_most_keys_per_call() {
        let (folder, folded) = recording_folder(1);
        let keys: Vec<Vec<u8>> = (0..KEYS_PER_CALL * 3 + 1)
            .map(|i| format!("k{i}").into_bytes())
            .collect();
        folder.wrote(keys.iter().map(Vec::as_slice));
        wait_for(|| folded.lock().len() == keys.len());
        let mut folded = folded.lock().clone();
        folded.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(folded, keys);
    }

    #[test]
    fn a_key_due_twice_before_its_round_is_folded_once() {
        let folded = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock();
        let folder = Folder::spawn(1, {
            let (folded, gate) = (Arc::clone(&folded), Arc::clone(&gate));
            move |keys: &[Key]| {
                drop(gate.lock());
                folded.lock().extend(keys.iter().map(|k| k.to_vec()));
            }
        })
        .unwrap();
        // The first round takes "a" and waits at the gate; "b" is due twice meanwhile.
        folder.wrote([&b"a"[..]].into_iter());
        wait_for(|| folder.pending() == (0, 0));
        folder.wrote([&b"b"[..], b"b"].into_iter());
        assert_eq!(folder.pending(), (0, 2));
        drop(held);
        wait_for(|| folded.lock().len() >= 2);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(*folded.lock(), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn counts_start_over_past_the_most_keys_counted() {
        let (folder, _folded) = recording_folder(2);
        let keys: Vec<Vec<u8>> = (0..=MAX_COUNTED_KEYS).map(|i| i.to_le_bytes().to_vec()).collect();
        folder.wrote(keys.iter().map(Vec::as_slice));
        assert_eq!(folder.pending(), (1, 0), "the last key counted alone");
    }

    #[test]
    fn keys_waiting_for_a_round_are_bounded() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock();
        let folder = Folder::spawn(1, {
            let gate = Arc::clone(&gate);
            move |_: &[Key]| drop(gate.lock())
        })
        .unwrap();
        // The thread takes the first key and waits at the gate: the rest wait for it.
        folder.wrote([&b"first"[..]].into_iter());
        wait_for(|| folder.pending() == (0, 0));
        let keys: Vec<Vec<u8>> = (0..=MAX_COUNTED_KEYS).map(|i| i.to_le_bytes().to_vec()).collect();
        folder.wrote(keys.iter().map(Vec::as_slice));
        assert_eq!(
            folder.pending(),
            (0, MAX_COUNTED_KEYS),
            "one key past the bound is left out"
        );
        drop(held);
    }

    #[test]
    fn keys_falling_due_do_not_cut_a_rest_short() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let folder = Folder::spawn(1, {
            let calls = Arc::clone(&calls);
            move |_: &[Key]| {
                // A 20 ms round: the thread then rests at least 80 ms.
                std::thread::sleep(Duration::from_millis(20));
                calls.lock().push(Instant::now());
            }
        })
        .unwrap();
        folder.wrote([&b"a"[..]].into_iter());
        wait_for(|| calls.lock().len() == 1);
        folder.wrote([&b"b"[..]].into_iter());
        wait_for(|| calls.lock().len() == 2);
        let calls = calls.lock();
        let gap = calls[1] - calls[0];
        // The second call ends a rest (>= 80 ms) and a round (20 ms) after the first.
        assert!(gap >= Duration::from_millis(95), "rested only {gap:?}");
    }

    #[test]
    fn drop_stops_the_thread_even_while_it_rests() {
        let (folder, folded) = recording_folder(1);
        folder.wrote([&b"a"[..]].into_iter());
        wait_for(|| folded.lock().len() == 1);
        let started = Instant::now();
        drop(folder);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
