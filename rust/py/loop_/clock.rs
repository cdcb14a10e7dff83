//! `LoopClock`: the one place the binding reads the time.
//!
//! Every "now" in `py/` is `LoopClock::now_ns` of the loop concerned
//! (`Loop::clock`): the loop's cached time (`Loop.now()`, refreshed each
//! iteration and by `update_now()`), the deadlines of timers, sleeps,
//! `Timeout`s and `IoWatcher.wait`, and the poll timeout. The pacing of
//! callback bursts and kernel polls (`CALLBACK_BURST_NS`, `POLL_INTERVAL_NS`
//! in `loop_/mod.rs`) reads [`LoopClock::system_ns`] instead: it measures
//! real time spent, and must keep advancing whatever the loop's clock does,
//! or a busy loop would never poll the kernel. So does `_core.monotonic_ns()`,
//! which has no loop.
//!
//! Two clocks:
//! - The system clock (the default): `CLOCK_MONOTONIC`
//!   ([`crate::clock::monotonic_ns`]), the clock of Python's
//!   `time.monotonic()`, so a timer armed for `t` seconds is never seen to
//!   fire before `time.monotonic()` has advanced by `t`.
//! - The virtual clock, for tests (`Loop._use_virtual_clock`; see
//!   `loop_/virtual_time.rs` for when it moves): it stands still while the loop
//!   has work, and jumps to the next timer's deadline when the loop would
//!   otherwise block on timers alone, as trio's `MockClock` with an
//!   `autojump_threshold` does. A test that sleeps 100 s then takes no real
//!   time, yet sees `now()` advance by exactly 100 s.
//!
//! Ground rules:
//! - A loop switches to the virtual clock at most once and never back: the
//!   virtual clock starts at the system clock's reading (deadlines armed
//!   before the switch keep their meaning), and may run ahead of it, so
//!   switching back would move `now()` backwards.
//! - The virtual clock never goes backwards either (jumps only go forward).
//! - `IoWatcher.wait` takes deadlines on the system clock (Python computes
//!   them from `time.monotonic()`): [`LoopClock::deadline_from_system`]
//!   turns one into the same remaining time on this clock.
//! - The system clock's reading costs exactly the `clock_gettime` plus one
//!   predictable branch on a flag that never changes on that path.

use crate::clock::monotonic_ns;
use crate::py::sync::{BoolCell, U64Cell};

/// The loop's clock (see the module docs).
pub(crate) struct LoopClock {
    /// True once the loop switched to the virtual clock.
    is_virtual: BoolCell,
    /// The virtual clock's reading (ns); meaningless on the system clock.
    virtual_ns: U64Cell,
    /// How long (real ns) the loop must have found nothing ready before the
    /// virtual clock jumps; 0 jumps as soon as a poll finds nothing.
    autojump_ns: U64Cell,
}

impl LoopClock {
    pub(crate) const fn new() -> Self {
        LoopClock {
            is_virtual: BoolCell::new(false),
            virtual_ns: U64Cell::new(0),
            autojump_ns: U64Cell::new(0),
        }
    }

    /// Now, in nanoseconds on the loop's clock.
    #[inline(always)]
    pub(crate) fn now_ns(&self) -> u64 {
        if self.is_virtual.get() {
            self.virtual_ns.get()
        } else {
            Self::system_ns()
        }
    }

    /// Now on the system's monotonic clock (Python's `time.monotonic()`),
    /// whatever the loop's clock is.
    #[inline(always)]
    pub(crate) fn system_ns() -> u64 {
        monotonic_ns()
    }

    /// Whether this is the virtual clock.
    #[inline(always)]
    pub(crate) fn is_virtual(&self) -> bool {
        self.is_virtual.get()
    }

    /// Switches to the virtual clock, starting at `start_ns` (or leaves it
    /// where it is if already virtual), and sets the autojump threshold.
    pub(crate) fn make_virtual(&self, start_ns: u64, autojump_ns: u64) {
        if !self.is_virtual.get() {
            self.virtual_ns.set(start_ns);
            self.is_virtual.set(true);
        }
        self.autojump_ns.set(autojump_ns);
    }

    /// The autojump threshold in real ns (virtual clock only).
    pub(crate) fn autojump_ns(&self) -> u64 {
        self.autojump_ns.get()
    }

    /// Moves the virtual clock forward to `ns` (never back). No-op on the
    /// system clock.
    pub(crate) fn advance_to(&self, ns: u64) {
        if self.is_virtual.get() && ns > self.virtual_ns.get() {
            self.virtual_ns.set(ns);
        }
    }

    /// A deadline on the system clock, as the same remaining time on this
    /// clock (identity on the system clock).
    #[inline(always)]
    pub(crate) fn deadline_from_system(&self, deadline_ns: u64) -> u64 {
        if self.is_virtual.get() {
            let remaining = deadline_ns.saturating_sub(Self::system_ns());
            self.virtual_ns.get().saturating_add(remaining)
        } else {
            deadline_ns
        }
    }
}
