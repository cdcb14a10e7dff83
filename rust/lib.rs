//! greenwheel's engine.
//!
//! The pure-Rust core ([`wheel`], [`poller`], [`clock`]) has no Python in it,
//! so `cargo test` and the criterion benches run on it directly. The PyO3
//! binding that exposes `greenwheel._core` lives in `py` and is compiled only
//! with the `python` feature (maturin turns it on).

// Cargo.toml denies unwrap/expect crate-wide; a test that panics on a broken
// assumption is the point of the test, so tests may use them.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod clock;
pub mod poller;
pub mod wheel;

#[cfg(feature = "python")]
mod py;
