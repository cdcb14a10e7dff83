//! Keeping the Python scheduler's notifications in FIFO order with the loop's
//! own callbacks.
//!
//! `greenwheel._abstract_linkable._Scheduler` batches notifications: making
//! an object ready appends it to the scheduler's `ready` deque, and one loop
//! callback (the scheduler's drain) notifies the objects in order. While the
//! drain has switched into a woken greenlet, that greenlet may make more
//! objects ready and then queue a callback of its own (`sleep(0)`, `spawn`).
//! In gevent every ready object queues its own callback, so those objects
//! are notified before the later callback; the suspended drain alone would
//! notify them after it.
//!
//! The fix lives at the one place that sees both: whenever an entry is
//! pushed onto the callback queue while the registered `ready` deque is not
//! empty and no drain is queued, a drain callback is pushed first.
//!
//! Ground rules:
//! - The registered `ready` is exactly a `collections.deque` (checked at
//!   registration), so its length is `Py_SIZE`: no call into Python on the
//!   push path.
//! - `drains_queued` counts queued entries that call the registered drain;
//!   it is only ever an optimisation guard (a drift upwards just leaves the
//!   order as it was without this module, never anything worse).
//! - The registered pair is visited and cleared by the loop's GC hooks (the
//!   drain is a bound method of a scheduler that references the loop).

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyTraverseError;

use super::{Loop, Queued};
use crate::py::callback::Callback;

/// The scheduler's `ready` deque and its drain callable.
pub(crate) struct NotifyOrder {
    ready: Py<PyAny>,
    drain: Py<PyAny>,
}

impl Loop {
    /// Registers (or, with None, forgets) the scheduler whose order to keep.
    pub(super) fn set_notify_order(
        &self,
        py: Python<'_>,
        order: Option<(&Bound<'_, PyAny>, &Bound<'_, PyAny>)>,
    ) -> PyResult<()> {
        let new = match order {
            Some((ready, drain)) => {
                let deque = py
                    .import(intern!(py, "collections"))?
                    .getattr(intern!(py, "deque"))?;
                if !ready.get_type().is(&deque) {
                    return Err(PyTypeError::new_err("ready must be a collections.deque"));
                }
                crate::py::errors::check_callable(drain)?;
                Some(NotifyOrder {
                    ready: ready.clone().unbind(),
                    drain: drain.clone().unbind(),
                })
            }
            None => None,
        };
        let old = std::mem::replace(&mut *self.notify_order.borrow_mut(), new);
        self.drains_queued.set(0);
        drop(old); // after the lock is released: a decref may run Python code
        Ok(())
    }

    /// Pushes `entry` onto the callback queue, after a drain callback if
    /// notifications made ready earlier would otherwise wait behind it.
    pub(super) fn push_callback(&self, py: Python<'_>, entry: Queued) -> PyResult<()> {
        if let Queued::Call(cb) = &entry {
            if self.calls_drain(cb) {
                self.drains_queued.set(self.drains_queued.get() + 1);
                self.callbacks.borrow_mut().push_back(entry);
                return Ok(());
            }
        }
        if self.drains_queued.get() == 0 {
            self.push_drain_if_ready(py)?;
        }
        self.callbacks.borrow_mut().push_back(entry);
        Ok(())
    }

    fn push_drain_if_ready(&self, py: Python<'_>) -> PyResult<()> {
        let drain = {
            let order = self.notify_order.borrow();
            let Some(order) = order.as_ref() else {
                return Ok(());
            };
            // SAFETY: `ready` is a live `collections.deque` (checked at
            // registration), whose `ob_size` is its length.
            if unsafe { ffi::Py_SIZE(order.ready.as_ptr()) } == 0 {
                return Ok(());
            }
            order.drain.clone_ref(py)
        };
        let cb = Py::new(py, Callback::new(drain, PyTuple::empty(py).unbind()))?;
        self.drains_queued.set(self.drains_queued.get() + 1);
        self.callbacks.borrow_mut().push_back(Queued::Call(cb));
        Ok(())
    }

    /// Whether `cb` calls the registered drain.
    fn calls_drain(&self, cb: &Py<Callback>) -> bool {
        let order = self.notify_order.borrow();
        match order.as_ref() {
            Some(order) => cb.get().calls(&order.drain),
            None => false,
        }
    }

    /// Bookkeeping for a `Call` entry taken off the queue, given its function.
    pub(super) fn note_call_popped(&self, func: &Py<PyAny>) {
        if self.drains_queued.get() > 0 {
            let is_drain = self
                .notify_order
                .borrow()
                .as_ref()
                .is_some_and(|order| order.drain.is(func));
            if is_drain {
                self.drains_queued.set(self.drains_queued.get() - 1);
            }
        }
    }

    pub(super) fn traverse_notify_order(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(order) = self.notify_order.try_borrow() {
            if let Some(order) = order.as_ref() {
                visit.call(&order.ready)?;
                visit.call(&order.drain)?;
            }
        }
        Ok(())
    }

    pub(super) fn clear_notify_order(&self) {
        let old = self
            .notify_order
            .try_borrow_mut()
            .ok()
            .and_then(|mut order| order.take());
        self.drains_queued.set(0);
        drop(old);
    }
}
