//! Empty: see the `[build-dependencies]` comment in Cargo.toml.
fn main() {}
