//! `POST /v1/events` bodies (traqq-server `parse_events_body`): one object, an array, or
//! NDJSON; the first input byte chooses the NDJSON content type (odd) or not (even). Parsed
//! events are then recorded by a fresh in-memory engine, as the handler does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traqq_core::event::EventLimits;
use traqq_fuzz::check_event;
use traqq_server::{parse_events_body, Request, RequestLimits};

const MAX_BATCH: usize = 100;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let ndjson = mode & 1 == 1;
    let limits = RequestLimits {
        max_batch_events: MAX_BATCH,
        event: EventLimits::default(),
    };
    let events = match parse_events_body(body, ndjson, limits) {
        Ok(Request::Record(event)) => {
            assert!(!ndjson, "an NDJSON body parsed as a single record");
            vec![event]
        }
        Ok(Request::RecordBatch(events)) => {
            assert!(
                events.len() <= MAX_BATCH,
                "batch of {} events accepted",
                events.len()
            );
            events
        }
        Ok(other) => panic!("a body parsed as {:?}", other.command()),
        Err(bad) => {
            assert!(!bad.message.is_empty());
            return;
        }
    };
    // The other content type must not panic either.
    let _ = parse_events_body(body, !ndjson, limits);
    for event in events.iter().flatten() {
        check_event(event, limits.event);
    }
    let n = events.len();
    let traqq = traqq_fuzz::engine();
    let outcome = traqq
        .record_results(events.into_iter().map(|e| e.map_err(traqq_storage::Error::from)))
        .expect("the memory store never fails");
    assert_eq!(outcome.recorded + outcome.rejected.len(), n);
    if outcome.recorded > 0 {
        // Today's metrics (events without a time) can be read back.
        let _ = traqq.query_days(0).expect("query of today");
    }
});
