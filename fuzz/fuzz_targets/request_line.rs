//! TCP request lines (traqq-server): `parse_line` on each line of the input, and the
//! lines answered in order by a `Dispatcher` over a fresh in-memory engine, as one TCP
//! connection would be (consecutive `record`s as one group commit). Every reply must be one
//! JSON object; a panic anywhere (even one the dispatcher would catch) is a crash.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use traqq_core::event::EventLimits;
use traqq_fuzz::check_event;
use traqq_server::{parse_line, Dispatcher, Metrics, Request, RequestLimits, Session};

const MAX_BATCH: usize = 100;
const TOKEN: &str = "s3cret";

fn check_reply(body: &[u8]) {
    let reply: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", String::from_utf8_lossy(body)));
    assert!(
        reply.get("success").is_some_and(|s| s.is_boolean()),
        "reply without success: {reply}"
    );
}

fuzz_target!(|data: &[u8]| {
    let limits = RequestLimits {
        max_batch_events: MAX_BATCH,
        event: EventLimits::default(),
    };
    // A first line `AUTH` starts a server with a token.
    let (auth, data) = match data.strip_prefix(b"AUTH\n") {
        Some(rest) => (true, rest),
        None => (false, data),
    };
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').take(16).collect();
    for line in &lines {
        match parse_line(line, limits) {
            Ok((Request::Record(Ok(event)), _)) => check_event(&event, limits.event),
            Ok((Request::RecordBatch(events), _)) => {
                assert!(
                    events.len() <= MAX_BATCH,
                    "batch of {} events accepted",
                    events.len()
                );
                events.iter().flatten().for_each(|e| check_event(e, limits.event));
            }
            Ok(_) => {}
            Err(bad) => assert!(!bad.message.is_empty()),
        }
    }

    let traqq = traqq_fuzz::engine();
    let token = auth.then(|| TOKEN.to_owned());
    let dispatcher = Dispatcher::new(Arc::new(traqq), Arc::new(Metrics::default()), token, MAX_BATCH);
    let mut session = Session::default();
    let mut group = Vec::new();
    let mut out = Vec::new();
    let flush = |group: &mut Vec<_>, out: &mut Vec<u8>| {
        if !group.is_empty() {
            let n = group.len();
            let before = out.len();
            dispatcher.answer_group(std::mem::take(group), out);
            let replies: Vec<&[u8]> = out[before..]
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(
                replies.len(),
                n,
                "a group of {n} requests got {} replies",
                replies.len()
            );
            replies.iter().for_each(|r| check_reply(r));
        }
    };
    for line in &lines {
        let pending = dispatcher.parse(line, &session);
        if dispatcher.groupable_events(&pending, &session).is_some() {
            group.push(pending);
            continue;
        }
        flush(&mut group, &mut out);
        let reply = dispatcher.answer(pending, &mut session);
        check_reply(&reply.body);
        if session.should_close() {
            break;
        }
    }
    flush(&mut group, &mut out);
});
