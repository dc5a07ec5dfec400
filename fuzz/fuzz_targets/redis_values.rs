//! traqq-redis's conversions of Redis replies into read results (`values.rs`: `number`,
//! `hash`, `strings`, `count`, `ranked`, `optional_bytes`, through the crate's fuzzing hook).
//!
//! First byte even: the rest is RESP2/RESP3 wire bytes, parsed by the `redis` crate as a
//! server's reply would be. Odd: the rest builds a `redis::Value` tree directly.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use traqq_core::batch::Number;
use traqq_redis::fuzzing as values;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    let value = if mode & 1 == 0 {
        match redis::parse_redis_value(rest) {
            Ok(v) => v,
            Err(_) => return,
        }
    } else {
        match traqq_fuzz::redis_value(&mut u, 4) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    let key = "f:add:d:0:event";
    if let Ok(pairs) = values::hash(key, value.clone()) {
        for (_, n) in pairs {
            if let Number::Float(x) = n {
                assert!(x.is_finite(), "hash field read as {x}");
            }
        }
    }
    let _ = values::strings(key, value.clone());
    let _ = values::count(key, value.clone());
    let _ = values::ranked(key, value.clone());
    let _ = values::optional_bytes(key, value);
    let text = traqq_fuzz::number_text(&mut u).unwrap_or_default();
    match values::number(key, "field", &text) {
        Ok(Number::Float(x)) => assert!(x.is_finite(), "{text:?} read as {x}"),
        Ok(Number::Int(_)) => {}
        Err(e) => assert!(e.to_string().contains(key), "error does not name the key: {e}"),
    }
});
