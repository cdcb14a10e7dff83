//! `LoopClock`: the one place the binding reads the time.
//!
//! Every "now" in `py/` is `LoopClock::now_ns` of the loop concerned
//! (`Loop::clock`): the loop's cached time (`Loop.now()`, refreshed each
//! iteration and by `update_now()`), the deadlines of timers, sleeps,
//! `Timeout`s and `IoWatcher.wait`, the poll timeout, and the pacing of
//! callback bursts and kernel polls. The one other reading is
//! [`LoopClock::system_ns`], behind `_core.monotonic_ns()`, which has no loop.
//!
//! Ground rules:
//! - Today this is `CLOCK_MONOTONIC` ([`crate::clock::monotonic_ns`]), the
//!   clock of Python's `time.monotonic()`: `IoWatcher.wait` takes deadlines
//!   on that clock, and a timer armed for `t` seconds is never seen to fire
//!   before `time.monotonic()` has advanced by `t`.
//! - It is the first step toward a virtual clock for tests (one that jumps
//!   ahead when the loop would otherwise block): that clock replaces
//!   `now_ns` here and nothing else. It must keep advancing for the pacing
//!   readings (`CALLBACK_BURST_NS`, `POLL_INTERVAL_NS` in `loop_/mod.rs`),
//!   or those must read [`LoopClock::system_ns`], or a busy loop would never
//!   poll the kernel.
//! - Zero-sized and inlined: reading it costs exactly the `clock_gettime`.

use crate::clock::monotonic_ns;

/// The loop's clock (see the module docs).
pub(crate) struct LoopClock(());

impl LoopClock {
    pub(crate) const fn new() -> Self {
        LoopClock(())
    }

    /// Now, in nanoseconds on the loop's clock.
    #[inline(always)]
    pub(crate) fn now_ns(&self) -> u64 {
        Self::system_ns()
    }

    /// Now on the system's monotonic clock (Python's `time.monotonic()`),
    /// whatever the loop's clock is.
    #[inline(always)]
    pub(crate) fn system_ns() -> u64 {
        monotonic_ns()
    }
}
