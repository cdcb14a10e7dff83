//! The asyncio loop's ready queue (`_ready`).

use std::collections::VecDeque;

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use super::handles;
use crate::py::sync::{BoolCell, Guarded};

/// The loop's `_ready`: the handles to run in the next batch, in order.
///
/// The subset of `collections.deque` that asyncio's code uses on `_ready`
/// (`append`, `popleft`, `clear`, `len`, truth).
#[pyclass(frozen, module = "greenwheel._core")]
pub(crate) struct ReadyQueue {
    pub(super) items: Guarded<VecDeque<Py<PyAny>>>,
    /// Some greenlet runs the queue's loop (`AioLoopCore::set_runners`
    /// keeps it): the traverse then reports nothing (handles.rs, cyclic GC).
    pub(super) loop_running: BoolCell,
}

#[pymethods]
impl ReadyQueue {
    fn append(&self, handle: Py<PyAny>) {
        self.items.borrow_mut().push_back(handle);
    }

    fn popleft(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let item = self.items.borrow_mut().pop_front();
        let item =
            item.ok_or_else(|| pyo3::exceptions::PyIndexError::new_err("pop from an empty queue"))?;
        // Handed to Python code: tracked again (see handles.rs, cyclic GC).
        handles::retrack(item.bind(py));
        Ok(item)
    }

    fn clear(&self, py: Python<'_>) {
        let items = std::mem::take(&mut *self.items.borrow_mut());
        release(py, items);
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
        if self.loop_running.get() {
            return Ok(());
        }
        if let Ok(items) = self.items.try_borrow() {
            for item in items.iter() {
                // Before visiting the item itself: gc.get_referents' visit
                // takes a reference to what it visits.
                handles::traverse_owned(item, 1, &visit)?;
                visit.call(item)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        if let Ok(mut items) = self.items.try_borrow_mut() {
            let taken = std::mem::take(&mut *items);
            drop(items);
            // SAFETY: __clear__ runs with the GIL held (from the collector).
            release(unsafe { Python::assume_attached() }, taken);
        }
    }
}

/// Drop the queue's references to `items`, the handles that outlive that
/// tracked again first (see handles.rs, cyclic GC); after the queue's borrow,
/// as the decrefs may run Python code.
fn release(py: Python<'_>, items: VecDeque<Py<PyAny>>) {
    for item in &items {
        handles::retrack_shared(item.bind(py));
    }
    drop(items);
}
