//! Watchers bound to one loop: timers, fd readiness, signals, and the
//! idle / prepare / check / fork phase hooks.
//!
//! Layout:
//! - `base`: the state every kind shares ([`WatcherCore`]) and [`invoke`],
//!   the call of a watcher's callback from the loop;
//! - `methods`: `watcher_methods!`, the Python methods every class shares;
//! - one module per kind (`timer`, `io`, `signal`, `phase`): its own state,
//!   its [`Watcher`] implementation and its own Python methods (`io_raw`:
//!   `IoWatcher.recv_within` on CPython's calling convention).
//!
//! Invariants:
//! - `active` is true exactly while the loop holds a strong reference to the
//!   watcher (in the wheel, an fd list, a signal slot or a phase list); a
//!   stopped watcher is unreachable from the loop, so it is freed when Python
//!   drops it.
//! - A watcher with `ref = true` counts in `Loop.activecnt` while active;
//!   `set_ref` on an active watcher moves the count so it never drifts.
//! - `stop()` is safe at any time, including from the watcher's own callback
//!   and for a watcher whose event is already in the loop's current batch:
//!   the loop re-checks each watcher's state right before calling it.
//! - The state lives in the `Sync` cells of `py/sync.rs`; none is held while
//!   Python runs.

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::types::PyTuple;
use pyo3::{PyClass, PyTraverseError};

use super::loop_::Loop;

// First: the kind modules below expand its macro.
#[macro_use]
mod methods;

mod base;
mod io;
mod io_raw;
mod phase;
mod signal;
mod timer;

pub(crate) use base::{invoke, WatcherCore};
pub(crate) use io::IoWatcher;
pub(crate) use io_raw::install as install_io_raw;
pub(crate) use phase::{Phase, PhaseWatcher};
pub(crate) use signal::SignalWatcher;
pub(crate) use timer::TimerWatcher;

/// What a watcher kind provides to the code all kinds share ([`start`],
/// `do_stop` and `watcher_methods!`).
pub(crate) trait Watcher: PyClass<Frozen = True> + Sync {
    /// What `start()` takes besides the callback and its arguments.
    type StartOptions;

    fn core(&self) -> &WatcherCore;

    /// The kind's part of `start()`, after the callback is stored: put the
    /// watcher in the loop (a no-op or a re-arm if it is there already).
    fn arm(slf: &Bound<'_, Self>, options: Self::StartOptions) -> PyResult<()>;

    /// The kind's part of `stop()`: take the watcher out of the loop (a
    /// no-op if it is not there).
    fn disarm(&self, lp: &Loop, py: Python<'_>) -> PyResult<()>;

    /// What `repr()` shows of the kind's own state (leading space included).
    fn repr_extra(&self) -> String;

    /// Python references the kind holds beyond [`WatcherCore`], for GC.
    fn visit_extra(&self, _visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        Ok(())
    }

    /// Drops the references [`visit_extra`](Self::visit_extra) visits.
    fn clear_extra(&self) {}

    /// `stop()`: only from the loop's own thread.
    fn do_stop(&self, py: Python<'_>) -> PyResult<()> {
        let lp = self.core().loop_.get();
        lp.check_owner()?;
        self.disarm(lp, py)
    }
}

/// `start()` for every kind: store `callback(*args)` (TypeError if it is not
/// callable), then arm.
pub(crate) fn start<W: Watcher>(
    slf: &Bound<'_, W>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    options: W::StartOptions,
) -> PyResult<()> {
    slf.get().core().set_call(callback, args)?;
    W::arm(slf, options)
}
