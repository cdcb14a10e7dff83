//! greenwheel's engine.
//!
//! The pure-Rust core ([`wheel`], [`poller`], [`clock`]) has no Python in it,
//! so `cargo test` and the criterion benches run on it directly. The PyO3
//! binding that exposes `greenwheel._core` lives in `py` and is compiled only
//! with the `python` feature (maturin turns it on).

pub mod clock;
pub mod poller;
pub mod wheel;

#[cfg(feature = "python")]
mod py;
