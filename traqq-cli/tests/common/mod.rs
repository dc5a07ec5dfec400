//! What the CLI test binaries share: running the built `traqq` as a user would.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_traqq");

/// Runs `traqq ARGS` without the environment a test runner may carry.
pub fn traqq(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("TRAQQ_CONFIG")
        // scripts/test exports it for the Redis tests; each test names its own store.
        .env_remove("TRAQQ_REDIS_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Runs `traqq ARGS` with `stdin` as its standard input.
pub fn traqq_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("TRAQQ_CONFIG")
        // scripts/test exports it for the Redis tests; each test names its own store.
        .env_remove("TRAQQ_REDIS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Bytes of an output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `traqq ARGS`, which must succeed, its stdout parsed as JSON.
pub fn query_json(args: &[&str]) -> Value {
    let out = traqq(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

/// The Redis server `scripts/test` starts; `None` skips locally, CI fails without it.
pub fn redis_url() -> Option<String> {
    match std::env::var("TRAQQ_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!("TRAQQ_REDIS_URL is not set under CI"),
        _ => {
            eprintln!("TRAQQ_REDIS_URL is not set: skipping");
            None
        }
    }
}

/// `tag` plus this process and the clock: a prefix no earlier run against the same Redis used.
pub fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}{}x{nanos}", std::process::id())
}
