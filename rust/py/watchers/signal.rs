//! `SignalWatcher`: runs a callback from the loop when a signal arrives.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{start, Watcher, WatcherCore};
use crate::py::loop_::Loop;
use crate::py::sync::BoolCell;

/// Runs a callback from the loop when a signal arrives.
#[pyclass(frozen, weakref, module = "greenwheel._core")]
pub(crate) struct SignalWatcher {
    pub(crate) core: WatcherCore,
    pub(crate) signum: i32,
    /// The signal arrived since the callback last ran.
    pub(crate) fired: BoolCell,
}

impl SignalWatcher {
    pub(crate) fn new(
        loop_: Py<Loop>,
        signum: i32,
        ref_: bool,
        priority: Option<i32>,
    ) -> PyResult<Self> {
        if !(1..=64).contains(&signum) {
            return Err(PyValueError::new_err(format!(
                "invalid signal number {signum}"
            )));
        }
        Ok(SignalWatcher {
            core: WatcherCore::new(loop_, ref_, priority),
            signum,
            fired: BoolCell::new(false),
        })
    }
}

impl Watcher for SignalWatcher {
    type StartOptions = ();

    fn core(&self) -> &WatcherCore {
        &self.core
    }

    fn arm(slf: &Bound<'_, Self>, (): ()) -> PyResult<()> {
        slf.get().core.loop_.get().signal_start(slf)
    }

    fn disarm(&self, lp: &Loop, py: Python<'_>) -> PyResult<()> {
        lp.signal_stop(py, self)
    }

    fn repr_extra(&self) -> String {
        format!(" signum={}", self.signum)
    }
}

watcher_methods!(SignalWatcher, "SignalWatcher");

#[pymethods]
impl SignalWatcher {
    /// Start: `callback(*args)` runs from the loop each time the signal arrives.
    #[pyo3(signature = (callback, *args))]
    fn start(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        start(slf, callback, args, ())
    }

    /// The signal number.
    #[getter]
    fn signum(&self) -> i32 {
        self.signum
    }
}
