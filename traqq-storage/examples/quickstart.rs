//! Records a few sample events in memory and prints a 7-day query as JSON.
//!
//! `cargo run -p traqq-storage --example quickstart`

use traqq_storage::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into(), "event~geo".into()],
            add_value: vec![AddValueConfig {
                key: "event~geo".into(),
                add_key: "amount".into(),
            }],
            top: vec!["geo".into()],
            distribution: Vec::new(),
        },
        ..TraqqConfig::default()
    };
    let traqq = Traqq::new(config, MemoryStorage::new(), "myapp")?;
    let lines = [
        r#"{"event":"view","ip":"1.2.3.4","geo":"US"}"#,
        r#"{"event":"view","ip":"5.6.7.8","geo":"DE"}"#,
        r#"{"event":"purchase","ip":"1.2.3.4","geo":"US","amount":99.99}"#,
        r#"{"event":"purchase","ip":"9.9.9.9","geo":"US","amount":"10.01"}"#,
    ];
    let outcome = traqq.record_json_lines(lines)?;
    println!(
        "recorded {} events, rejected {}",
        outcome.recorded,
        outcome.rejected.len()
    );

    let result = traqq.query_days(7)?;
    for path in [
        "bmp/ip",
        "add/event",
        "adv/event~geo/amount",
        "adv:i/event~geo/amount",
        "top/geo",
    ] {
        for r in result.find_str(path) {
            println!("{path:<24} {}", serde_json::to_string(&r.result)?);
        }
    }
    Ok(())
}
