//! One event's JSON: `IncomingEvent::parse_slice`/`parse_slice_with`/`parse_str`, its
//! properties and event time, and op generation from it (traqq-core). Text goes through the
//! flat-object scanner first and bytes straight to serde_json, so comparing the two checks
//! that the scanner reads every line it accepts exactly as serde_json does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traqq_core::event::{EventLimits, IncomingEvent};
use traqq_fuzz::{check_event, record};

fuzz_target!(|data: &[u8]| {
    let limits = EventLimits::default();
    let parsed = IncomingEvent::parse_slice_with(data, limits);
    let plain = IncomingEvent::parse_slice(data);
    assert_eq!(
        parsed.is_ok(),
        plain.is_ok(),
        "parse_slice and parse_slice_with(default) disagree"
    );
    if let (Ok(a), Ok(b)) = (&parsed, &plain) {
        assert_eq!(a, b);
    }
    // Text and bytes parse alike; so does reparsing into an event that held another one
    // (`record_json_lines`), which is left empty on error.
    if let Ok(text) = std::str::from_utf8(data) {
        match (IncomingEvent::parse_str(text), &parsed) {
            // Debug text tells floats apart bit for bit (`-0.0` from `0.0`).
            (Ok(a), Ok(b)) => assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "parse_str and parse_slice disagree"
            ),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("parse_str: {a:?}, parse_slice: {b:?}"),
        }
        let mut reused = IncomingEvent::default();
        let earlier = r#"{"event":"earlier","a":1,"b":"x","c":{"d":true},"e":2.5,"f":"y"}"#;
        reused.reparse_str_with(earlier, limits).unwrap();
        match (reused.reparse_str_with(text, limits), &parsed) {
            (Ok(()), Ok(b)) => assert_eq!(&reused, b, "reparse and parse_slice disagree"),
            (Err(_), Err(_)) => {
                assert_eq!(reused.properties().count(), 0, "a failed reparse left properties")
            }
            (a, b) => panic!("reparse: {a:?}, parse_slice: {b:?}"),
        }
    }
    // Tight limits: the caps hold whatever the input.
    let tight = EventLimits {
        max_properties: 3,
        max_name_length: 5,
    };
    if let Ok(event) = IncomingEvent::parse_slice_with(data, tight) {
        check_event(&event, tight);
    }
    // The Value path (`from_value`, used by `from_json`) on the same document.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(event) = IncomingEvent::from_value(&value) {
            check_event(&event, limits);
            record(&event);
        }
    }
    let Ok(event) = parsed else { return };
    check_event(&event, limits);
    record(&event);
    let owned = event.clone().into_owned();
    assert_eq!(owned, event, "into_owned changed the event");
});
