//! `Callback`: one entry of the loop's FIFO callback queue.
//!
//! The queue holds the object; `stop()` empties it in place so the loop skips
//! it, which keeps cancellation O(1) without searching the queue.

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyTraverseError;

use super::sync::Guarded;

/// A callback queued with `Loop.run_callback`.
#[pyclass(frozen, weakref, module = "greenwheel._core")]
pub(crate) struct Callback {
    /// `(callable, args)` until it runs or is stopped.
    slot: Guarded<Option<(Py<PyAny>, Py<PyTuple>)>>,
}

impl Callback {
    pub(crate) fn new(func: Py<PyAny>, args: Py<PyTuple>) -> Self {
        Callback {
            slot: Guarded::new(Some((func, args))),
        }
    }

    /// Takes the call out (so `pending` turns false before it runs).
    pub(crate) fn take(&self) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        self.slot.borrow_mut().take()
    }
}

#[pymethods]
impl Callback {
    /// The function to call, or None once run or stopped.
    #[getter]
    fn callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.slot
            .borrow_mut()
            .as_ref()
            .map(|(f, _)| f.clone_ref(py))
    }

    /// The arguments, or None once run or stopped.
    #[getter]
    fn args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.slot
            .borrow_mut()
            .as_ref()
            .map(|(_, a)| a.clone_ref(py))
    }

    /// True until the callback has run or been stopped.
    #[getter]
    fn pending(&self) -> bool {
        self.slot.borrow_mut().is_some()
    }

    /// Cancel the callback if it has not run yet.
    fn stop(&self) {
        let taken = self.slot.borrow_mut().take();
        drop(taken); // after the borrow: a decref may run Python code
    }

    /// Same as `stop()`.
    fn close(&self) {
        self.stop();
    }

    fn __bool__(&self) -> bool {
        self.pending()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let call = self
            .slot
            .borrow()
            .as_ref()
            .map(|(f, a)| (f.clone_ref(py), a.clone_ref(py)));
        Ok(match call {
            Some((f, a)) => format!(
                "<Callback pending callback={} args={}>",
                f.bind(py).repr()?,
                a.bind(py).repr()?
            ),
            None => "<Callback done>".to_owned(),
        })
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(slot) = self.slot.try_borrow() {
            if let Some((f, a)) = slot.as_ref() {
                visit.call(f)?;
                visit.call(a)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.stop();
    }
}
