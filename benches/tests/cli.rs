//! `traqq-bench gen`: the same arguments give the same bytes in separate processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn gen(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_traqq-bench"))
        .arg("gen")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn gen_is_deterministic_across_processes() {
    let args = ["--events", "2000", "--seed", "9", "--now", "1764288000"];
    let a = gen(&args);
    assert_eq!(a, gen(&args));
    let text = String::from_utf8(a).unwrap();
    assert_eq!(text.lines().count(), 2000);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["event"].is_string(), "{line}");
    }
    assert_ne!(
        text.as_bytes(),
        gen(&["--events", "2000", "--seed", "10", "--now", "1764288000"])
    );
}

#[test]
fn gen_distinct_ips_never_repeats_an_ip() {
    let text = String::from_utf8(gen(&[
        "--events",
        "3000",
        "--ips",
        "distinct",
        "--now",
        "1764288000",
    ]))
    .unwrap();
    let ips: std::collections::HashSet<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["ip"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ips.len(), 3000);
}
