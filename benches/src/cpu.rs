//! Criterion [`Measurement`]s of CPU time instead of wall time: this thread's ([`ThreadCpu`])
//! or the whole process's ([`ProcessCpu`]).
//!
//! The benchmark machine is shared (2 cores, several builds at once): wall time there mostly
//! measures the neighbours. Thread CPU time (`CLOCK_THREAD_CPUTIME_ID`, nanoseconds) leaves
//! out the time the thread waited for a core; where that clock is missing it falls back to
//! wall time. It still includes what sharing caches with the neighbours costs. Process CPU
//! time adds every other thread of the process, for stores that work on background threads
//! (RocksDB's flushes and compactions, sled's IO threads).

use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

use crate::procfs::{process_cpu, thread_cpu};

/// Thread CPU time (see the module docs). Use with `Criterion::default().with_measurement(ThreadCpu)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadCpu;

/// CPU time of the whole process, all threads (see the module docs). Use with
/// `Criterion::default().with_measurement(ProcessCpu)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessCpu;

static WALL: WallTime = WallTime;

/// Implements [`Measurement`] for `$name` with the CPU clock `$clock` (falling back to wall time).
macro_rules! cpu_measurement {
    ($name:ty, $clock:path) => {
        impl Measurement for $name {
            type Intermediate = (Instant, Option<Duration>);
            type Value = Duration;

            fn start(&self) -> Self::Intermediate {
                (Instant::now(), $clock())
            }

            fn end(&self, (wall, cpu): Self::Intermediate) -> Duration {
                match (cpu, $clock()) {
                    (Some(a), Some(b)) => b.saturating_sub(a),
                    _ => wall.elapsed(),
                }
            }

            fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
                *v1 + *v2
            }

            fn zero(&self) -> Duration {
                Duration::ZERO
            }

            fn to_f64(&self, value: &Duration) -> f64 {
                value.as_nanos() as f64
            }

            fn formatter(&self) -> &dyn ValueFormatter {
                // The same nanosecond values as wall time, so the same formatting.
                WALL.formatter()
            }
        }
    };
}

cpu_measurement!(ThreadCpu, thread_cpu);
cpu_measurement!(ProcessCpu, process_cpu);

/// The criterion set-up every bench of this crate uses: thread CPU time, 20 samples of ~4 s
/// (a full run of one bench file takes a minute or two on 2 shared cores).
pub fn criterion() -> criterion::Criterion<ThreadCpu> {
    criterion::Criterion::default()
        .with_measurement(ThreadCpu)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}
