//! `TimerWatcher`: a one-shot or repeating timer in the loop's wheel. Its
//! `start` and `stop` are plain CPython methods (see `timer_raw`).

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{start, Watcher, WatcherCore};
use crate::clock::ns_to_secs;
use crate::py::errors::delay_ns;
use crate::py::loop_::Loop;
use crate::py::sync::{HandleCell, U64Cell};

/// A one-shot or repeating timer.
#[pyclass(frozen, weakref, module = "greenwheel._core")]
pub(crate) struct TimerWatcher {
    pub(crate) core: WatcherCore,
    pub(crate) after_ns: u64,
    pub(crate) after: f64,
    pub(crate) repeat_ns: u64,
    pub(crate) repeat: f64,
    /// The wheel entry while armed; compared with expired handles so a stale
    /// expiry (stopped or re-armed meanwhile) is ignored.
    pub(crate) handle: HandleCell,
    /// Deadline in loop nanoseconds while armed.
    pub(crate) deadline_ns: U64Cell,
}

impl TimerWatcher {
    pub(crate) fn new(
        loop_: Py<Loop>,
        after: f64,
        repeat: f64,
        ref_: bool,
        priority: Option<i32>,
    ) -> PyResult<Self> {
        let after_ns = delay_ns("after", after)?;
        let repeat_ns = delay_ns("repeat", repeat)?;
        Ok(TimerWatcher {
            core: WatcherCore::new(loop_, ref_, priority),
            after_ns,
            after,
            repeat_ns,
            repeat: if repeat > 0.0 { repeat } else { 0.0 },
            handle: HandleCell::new(None),
            deadline_ns: U64Cell::new(0),
        })
    }
}

impl Watcher for TimerWatcher {
    /// `update`: refresh the loop's time first (gevent's `update=True`).
    type StartOptions = bool;

    fn core(&self) -> &WatcherCore {
        &self.core
    }

    fn arm(slf: &Bound<'_, Self>, update: bool) -> PyResult<()> {
        slf.get().core.loop_.get().timer_start(slf, update)
    }

    fn disarm(&self, lp: &Loop, py: Python<'_>) -> PyResult<()> {
        lp.timer_stop(py, self);
        Ok(())
    }

    fn repr_extra(&self) -> String {
        format!(" after={} repeat={}", self.after, self.repeat)
    }
}

watcher_methods!(TimerWatcher, "TimerWatcher", raw_stop);

#[pymethods]
impl TimerWatcher {
    // `start` and `stop` are plain CPython methods: see `timer_raw`.

    /// Restart from now with the same delay (and a new callback).
    #[pyo3(signature = (callback, *args, update = true))]
    fn again(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        update: bool,
    ) -> PyResult<()> {
        start(slf, callback, args, update)
    }

    /// The loop time (seconds) the timer is due, or the delay if not armed.
    #[getter]
    fn at(&self) -> f64 {
        if self.handle.get().is_some() {
            ns_to_secs(self.deadline_ns.get())
        } else {
            self.after
        }
    }

    /// The delay given at creation.
    #[getter]
    fn after(&self) -> f64 {
        self.after
    }

    /// The repeat interval (0 for one-shot).
    #[getter]
    fn repeat(&self) -> f64 {
        self.repeat
    }
}
