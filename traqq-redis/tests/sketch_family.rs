//! traqq's sketches of Redis's family against a real Redis: the registers `PFADD` sets are the
//! ones `Sketch::insert` sets, `PFCOUNT` counts what `Sketch::count` counts, and a sketch moved
//! as Redis's string works in Redis (and back) exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use traqq_storage::traqq_core::sketch::{RawSketch, Sketch, SketchFamily};

#[test]
fn redis_and_traqq_count_the_same_values_register_for_register() {
    let Some(url) = common::single_url() else {
        return;
    };
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let key = format!("sketchfamily:{}", std::process::id());
    let moved = format!("{key}:moved");
    for n in [1usize, 2, 10, 100, 1_000, 3_000, 10_000, 100_000] {
        redis::cmd("DEL")
            .arg(&key)
            .arg(&moved)
            .query::<()>(&mut redis)
            .unwrap();
        let values: Vec<String> = (0..n).map(|i| format!("user-{n}-{i}")).collect();
        let mut native = Sketch::new_in(SketchFamily::Redis);
        for chunk in values.chunks(1_000) {
            redis::cmd("PFADD")
                .arg(&key)
                .arg(chunk)
                .query::<()>(&mut redis)
                .unwrap();
            chunk.iter().for_each(|v| native.insert(v));
        }
        // Redis's string (sparse or dense, as Redis chose) holds traqq's registers.
        let string: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut redis).unwrap();
        let from_redis = Sketch::from_raw(&RawSketch {
            family: SketchFamily::Redis,
            bytes: string,
        })
        .unwrap();
        let as_moved = Sketch::from_raw(&native.to_raw()).unwrap();
        assert_eq!(from_redis, as_moved, "{n} values: registers");
        let pfcount: u64 = redis::cmd("PFCOUNT").arg(&key).query(&mut redis).unwrap();
        assert_eq!(native.count(), pfcount, "{n} values: count");
        assert_eq!(
            from_redis.count(),
            pfcount,
            "{n} values: count of the moved sketch"
        );

        // traqq's string in Redis: PFCOUNT reads it, PFADD extends it, PFMERGE unions it.
        redis::cmd("SET")
            .arg(&moved)
            .arg(native.to_raw().bytes)
            .query::<()>(&mut redis)
            .unwrap();
        let pfcount: u64 = redis::cmd("PFCOUNT").arg(&moved).query(&mut redis).unwrap();
        assert_eq!(pfcount, native.count(), "{n} values: PFCOUNT of traqq's string");
        let more: Vec<String> = (0..50).map(|i| format!("more-{n}-{i}")).collect();
        redis::cmd("PFADD")
            .arg(&moved)
            .arg(&more)
            .query::<()>(&mut redis)
            .unwrap();
        more.iter().for_each(|v| native.insert(v));
        let pfcount: u64 = redis::cmd("PFCOUNT").arg(&moved).query(&mut redis).unwrap();
        assert_eq!(pfcount, native.count(), "{n} values: PFADD onto traqq's string");
        let string: Vec<u8> = redis::cmd("GET").arg(&moved).query(&mut redis).unwrap();
        let back = Sketch::from_raw(&RawSketch {
            family: SketchFamily::Redis,
            bytes: string,
        })
        .unwrap();
        assert_eq!(
            back,
            Sketch::from_raw(&native.to_raw()).unwrap(),
            "{n} values: back"
        );
    }
    redis::cmd("DEL")
        .arg(&key)
        .arg(&moved)
        .query::<()>(&mut redis)
        .unwrap();
}
