//! The asyncio loop's ready queue (`_ready`).

use std::collections::VecDeque;

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use crate::py::sync::Guarded;

/// The loop's `_ready`: the handles to run in the next batch, in order.
///
/// The subset of `collections.deque` that asyncio's code uses on `_ready`
/// (`append`, `popleft`, `clear`, `len`, truth).
#[pyclass(frozen, module = "greenwheel._core")]
pub(crate) struct ReadyQueue {
    pub(super) items: Guarded<VecDeque<Py<PyAny>>>,
}

#[pymethods]
impl ReadyQueue {
    fn append(&self, handle: Py<PyAny>) {
        self.items.borrow_mut().push_back(handle);
    }

    fn popleft(&self) -> PyResult<Py<PyAny>> {
        let item = self.items.borrow_mut().pop_front();
        item.ok_or_else(|| pyo3::exceptions::PyIndexError::new_err("pop from an empty queue"))
    }

    fn clear(&self) {
        let items = std::mem::take(&mut *self.items.borrow_mut());
        drop(items); // after the borrow: decrefs may run Python code
    }

    fn __len__(&self) -> usize {
        self.items.borrow().len()
    }

    fn __bool__(&self) -> bool {
        !self.items.borrow().is_empty()
    }

    fn __repr__(&self) -> String {
        format!("<ReadyQueue of {} handles>", self.items.borrow().len())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(items) = self.items.try_borrow() {
            for item in items.iter() {
                visit.call(item)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        if let Ok(mut items) = self.items.try_borrow_mut() {
            let taken = std::mem::take(&mut *items);
            drop(items);
            drop(taken);
        }
    }
}
