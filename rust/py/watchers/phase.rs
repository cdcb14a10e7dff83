//! `PhaseWatcher`: the idle, prepare, check and fork hooks of a loop
//! iteration.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{start, Watcher, WatcherCore};
use crate::py::loop_::Loop;

/// When a [`PhaseWatcher`] runs within a loop iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the loop polls.
    Prepare,
    /// Right after the loop polls.
    Check,
    /// When nothing else is pending (keeps the loop from blocking).
    Idle,
    /// Once in the child after `os.fork()` (queued by `Loop.reinit()`).
    Fork,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Check => "check",
            Phase::Idle => "idle",
            Phase::Fork => "fork",
        }
    }
}

/// An idle, prepare or check watcher (see `phase`).
#[pyclass(frozen, weakref, module = "greenwheel._core")]
pub(crate) struct PhaseWatcher {
    pub(crate) core: WatcherCore,
    pub(crate) phase: Phase,
}

impl PhaseWatcher {
    pub(crate) fn new(loop_: Py<Loop>, phase: Phase, ref_: bool, priority: Option<i32>) -> Self {
        PhaseWatcher {
            core: WatcherCore::new(loop_, ref_, priority),
            phase,
        }
    }
}

impl Watcher for PhaseWatcher {
    type StartOptions = ();

    fn core(&self) -> &WatcherCore {
        &self.core
    }

    fn arm(slf: &Bound<'_, Self>, (): ()) -> PyResult<()> {
        slf.get().core.loop_.get().phase_start(slf)
    }

    fn disarm(&self, lp: &Loop, py: Python<'_>) -> PyResult<()> {
        lp.phase_stop(py, self);
        Ok(())
    }

    fn repr_extra(&self) -> String {
        format!(" phase={}", self.phase.name())
    }
}

watcher_methods!(PhaseWatcher, "PhaseWatcher");

#[pymethods]
impl PhaseWatcher {
    /// Start: `callback(*args)` runs once per loop iteration in this phase.
    #[pyo3(signature = (callback, *args))]
    fn start(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        start(slf, callback, args, ())
    }

    /// "idle", "prepare" or "check".
    #[getter]
    fn phase(&self) -> &'static str {
        self.phase.name()
    }
}
