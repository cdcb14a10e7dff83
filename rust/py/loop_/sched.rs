//! The notification scheduler: the one place where events, semaphores and
//! queues get their waiters woken, owned by the loop.
//!
//! Making an object ready (`Event.set`, `Semaphore.release`, `Queue.put`)
//! never switches: `Loop.make_ready(obj)` appends it to `ready`, and the first
//! append queues a single drain (`Queued::Drain`) on the callback queue. The
//! drain notifies the ready objects in order through the object's own
//! protocol (`_single_link()`, `_notify_links()`, both Python methods of
//! `greenwheel._abstract_linkable`). It keeps going while nothing else is
//! queued on the loop (an object made ready meanwhile is notified exactly
//! when a callback of its own would have run), and yields to the loop after
//! [`BATCH`] objects so timers and I/O are never starved.
//!
//! Hand-over: when the drain has just resumed the single waiter of an
//! object, all the hub would do once that greenlet parks again is pop the
//! next ready object and resume *its* single waiter. `Loop.park(hub)` does
//! that in the parking greenlet itself (spending the drain's `budget`),
//! which halves the greenlet switches of a ping-pong.
//!
//! Order with the loop's other callbacks: while the drain is suspended in a
//! greenlet it woke, that greenlet may make more objects ready and then queue
//! a callback of its own (`sleep(0)`, `spawn`). In gevent every ready object
//! queues its own callback, so those objects are notified before the later
//! callback. So whenever an entry is pushed while `ready` is not empty and no
//! drain is queued, a drain is pushed first (`push_callback`).
//!
//! What stays in Python (`_Scheduler`): the door for other OS threads (an
//! inbox and an async watcher; a thread's `make_ready` goes through it) and
//! `hold`/`unhold`, which keep the loop alive while a greenlet waits for a
//! thread. Those are about threads, not about notification order.
//!
//! `make_ready` and `park` are called on every wake-up and every wait, so
//! they are installed on `Loop` as plain CPython methods (`METH_O`, see
//! `raw_fn`), not through `#[pymethods]`: no argument-description walk, no
//! trampoline, and a smaller frame under every parked greenlet.
//!
//! Ground rules:
//! - `ready`, `draining`, `budget` and `drains_queued` are touched only on the
//!   loop's own thread (`make_ready` refuses others by returning False).
//! - No borrow of `ready` or `callbacks` is held across a call into Python:
//!   every link switches greenlets and may re-enter any of these methods.
//! - `drains_queued` counts queued `Queued::Drain` entries; `draining` is
//!   true from the queueing of the regular drain until a drain finishes
//!   (the drains the order rule adds do not set it, and any finishing drain
//!   re-queues one if objects are left).
//! - `budget` is positive only while a drain waits for the greenlet it just
//!   resumed: how many hand-overs may still happen before the loop gets a
//!   turn.
//! - `make_ready` and `park` run as raw methods, without PyO3's attach count
//!   (see `raw_fn`): they let go of references only through `Bound`, never
//!   by dropping a plain `Py`.

use std::collections::VecDeque;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyTuple};
use pyo3::PyTraverseError;

use super::{Loop, Queued};
use crate::py::greenlet_api;
use crate::py::raw_fn::{meth_o, ExactType, MethodDef};

/// How many objects one drain notifies (hand-overs included) before the
/// loop gets a chance to poll (timers, I/O, signals).
const BATCH: isize = 64;

/// The scheduler's state, a field of `Loop`.
pub(crate) struct Scheduler {
    /// Objects whose notification is due, in order.
    ready: crate::py::sync::Guarded<VecDeque<Py<PyAny>>>,
    /// A regular drain is queued or running (see the module rules).
    draining: crate::py::sync::BoolCell,
    /// Hand-overs left for the greenlet the running drain resumed.
    budget: crate::py::sync::IsizeCell,
    /// `Queued::Drain` entries on the callback queue.
    drains_queued: crate::py::sync::IsizeCell,
}

impl Scheduler {
    pub(super) fn new() -> Self {
        Scheduler {
            ready: crate::py::sync::Guarded::new(VecDeque::new()),
            draining: crate::py::sync::BoolCell::new(false),
            budget: crate::py::sync::IsizeCell::new(0),
            drains_queued: crate::py::sync::IsizeCell::new(0),
        }
    }

    fn has_ready(&self) -> bool {
        !self.ready.borrow_mut().is_empty()
    }

    fn pop_ready(&self) -> Option<Py<PyAny>> {
        self.ready.borrow_mut().pop_front()
    }
}

impl Loop {
    /// `Loop.make_ready`: queue `obj`'s notification. False (and nothing
    /// done) when called from another thread than the loop's.
    fn make_ready_(&self, obj: &Bound<'_, PyAny>) -> bool {
        if !self.shared.is_owner() {
            return false;
        }
        if self.destroyed.get() {
            // Nobody is left to notify: the hub and its greenlets are gone.
            return true;
        }
        self.sched
            .ready
            .borrow_mut()
            .push_back(obj.clone().unbind());
        if !self.sched.draining.get() {
            self.sched.draining.set(true);
            self.queue_drain();
        }
        true
    }

    fn queue_drain(&self) {
        self.sched
            .drains_queued
            .set(self.sched.drains_queued.get() + 1);
        self.callbacks.borrow_mut().push_back(Queued::Drain);
    }

    /// Pushes `entry` onto the callback queue, after a drain if objects made
    /// ready earlier would otherwise wait behind it (see the module docs).
    /// Cannot fail: a drain is a `Queued::Drain` marker, not a Python object.
    pub(super) fn push_callback(&self, entry: Queued) {
        if self.sched.drains_queued.get() == 0 && self.sched.has_ready() {
            self.queue_drain();
        }
        self.callbacks.borrow_mut().push_back(entry);
    }

    /// Runs a `Queued::Drain` entry just popped off the callback queue.
    pub(super) fn run_drain(&self, py: Python<'_>) -> PyResult<()> {
        let sched = &self.sched;
        debug_assert!(
            sched.drains_queued.get() > 0,
            "drain popped but not counted"
        );
        sched
            .drains_queued
            .set((sched.drains_queued.get() - 1).max(0));
        let result = self.drain_batch(py);
        sched.budget.set(0);
        // Cleared before the re-check: an object made ready meanwhile either
        // sees `draining` false (and queues a drain) or is seen here.
        sched.draining.set(false);
        if !self.destroyed.get() && sched.has_ready() {
            sched.draining.set(true);
            self.queue_drain();
        }
        result
    }

    /// Notifies ready objects until the batch is spent or the loop has
    /// another callback queued. Err only if the error handler raised.
    fn drain_batch(&self, py: Python<'_>) -> PyResult<()> {
        let sched = &self.sched;
        let mut left = BATCH;
        while let Some(obj) = sched.pop_ready() {
            let obj = obj.into_bound(py);
            match obj.call_method0(intern!(py, "_single_link")) {
                Err(err) => {
                    self.report(py, &obj, err)?;
                    left -= 1;
                }
                Ok(link) if link.is_none() => {
                    if let Err(err) = obj.call_method0(intern!(py, "_notify_links")) {
                        self.report(py, &obj, err)?;
                    }
                    left -= 1;
                }
                Ok(link) => {
                    // One greenlet to resume and nothing to do after it:
                    // while it runs, greenlets that park may hand over to the
                    // next object's waiter themselves (`park`), each
                    // spending the budget.
                    sched.budget.set(left - 1);
                    let called = link.call1((&obj,));
                    left = sched.budget.replace(0);
                    if let Err(err) = called {
                        let context = PyTuple::new(py, [&link, &obj])?;
                        self.report(py, context.as_any(), err)?;
                    }
                }
            }
            // Another callback queued meanwhile runs first, as it would have
            // if every object had queued its own callback.
            if left <= 0 || !self.callbacks.borrow_mut().is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// `Loop.park(hub)`: switch the current greenlet out until something
    /// resumes it, and return what it was resumed with. If the running drain
    /// has budget left and nothing else is queued, resume the next ready
    /// object's single waiter directly instead of switching to `hub`.
    ///
    /// Inlined into `park_raw`, and every call it makes either returns
    /// before the switch (`take_hand_over`) or is the switch itself: the
    /// frames under a parked greenlet are copied by greenlet on every switch,
    /// so they are kept to one.
    #[inline(always)]
    fn park_<'py>(&self, py: Python<'py>, hub: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        debug_assert!(self.shared.is_owner(), "park from another thread");
        if let Some((link, obj)) = self.take_hand_over(py)? {
            return call_link(py, &link, &obj);
        }
        if !greenlet_api::is_greenlet(py, hub)? {
            return Err(not_a_greenlet(hub));
        }
        greenlet_api::switch_known(py, greenlet_api::Greenlet(hub))
    }

    /// The link and object of a hand-over `park` may do now, already taken
    /// off `ready` with the budget spent. Out of line: keeps `park`'s frame
    /// (copied on every greenlet switch) small.
    #[inline(never)]
    fn take_hand_over<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        let sched = &self.sched;
        if sched.budget.get() <= 0 || !self.callbacks.borrow_mut().is_empty() {
            return Ok(None);
        }
        let Some(obj) = sched.pop_ready() else {
            return Ok(None);
        };
        let obj = obj.into_bound(py);
        let link = match obj.call_method0(intern!(py, "_single_link")) {
            Ok(link) if !link.is_none() => link,
            other => {
                // Not ours to notify here: back to the head of the line,
                // where the drain will find it. (`_single_link` switches no
                // greenlet, so no drain ran meanwhile; anything made ready
                // meanwhile, by a finalizer at most, went behind it.)
                sched.ready.borrow_mut().push_front(obj.unbind());
                return other.map(|_| None);
            }
        };
        sched.budget.set(sched.budget.get() - 1);
        Ok(Some((link, obj)))
    }

    /// `Loop._forget_ready`: drops the objects waiting for notification
    /// (their hub is being destroyed while the loop lives on). A drain still
    /// queued then finds nothing to do.
    pub(super) fn forget_ready(&self) {
        let old = std::mem::take(&mut *self.sched.ready.borrow_mut());
        drop(old); // after the borrow ends: a decref may run Python code
    }

    /// GC: visits the ready objects.
    pub(super) fn traverse_sched(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(ready) = self.sched.ready.try_borrow() {
            for obj in ready.iter() {
                visit.call(obj)?;
            }
        }
        Ok(())
    }

    /// Forgets the ready objects (destroy, GC).
    pub(super) fn clear_sched(&self) {
        let old = self
            .sched
            .ready
            .try_borrow_mut()
            .ok()
            .map(|mut ready| std::mem::take(&mut *ready));
        self.sched.drains_queued.set(0);
        self.sched.draining.set(false);
        self.sched.budget.set(0);
        drop(old); // after the borrow ends: a decref may run Python code
    }
}

static MAKE_READY_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"make_ready".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunction: make_ready_raw,
    },
    ml_flags: ffi::METH_O,
    ml_doc: c"make_ready($self, obj, /)\n--\n\nQueue the notification of `obj` (an event, \
semaphore or queue made ready): its `_single_link()` / `_notify_links()` run from the loop \
soon. Returns False, doing nothing, from another thread than the loop's. Internal."
        .as_ptr(),
});

static PARK_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"park".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunction: park_raw,
    },
    ml_flags: ffi::METH_O,
    ml_doc: c"park($self, hub, /)\n--\n\nSwitch the current greenlet (a child of greenlet \
`hub`, already linked where its waker finds it) out until something switches back in; \
return the value switched in. May resume the next ready object's single waiter directly \
instead of switching to `hub` (a hand-over). Internal."
        .as_ptr(),
});

/// `link(obj)`: a waiter's link called with the object that woke it (a
/// greenlet's `switch`, usually). What `call1` does, without its frame: the
/// call runs the woken greenlet while this frame sits on the waker's stack.
#[inline(always)]
fn call_link<'py>(
    py: Python<'py>,
    link: &Bound<'py, PyAny>,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: both are live objects and the GIL is held; the result is a new
    // reference or NULL with an exception set.
    let ret = unsafe { ffi::PyObject_CallOneArg(link.as_ptr(), obj.as_ptr()) };
    if ret.is_null() {
        return Err(fetch_error(py));
    }
    // SAFETY: a non-NULL result of a call is a new reference.
    Ok(unsafe { Bound::from_owned_ptr(py, ret) })
}

/// The exception a failed call left set (out of line: see [`call_link`]).
#[cold]
#[inline(never)]
fn fetch_error(py: Python<'_>) -> PyErr {
    PyErr::fetch(py)
}

/// `park`'s error for a `hub` that is not a greenlet.
#[cold]
#[inline(never)]
fn not_a_greenlet(hub: &Bound<'_, PyAny>) -> PyErr {
    let name = hub
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    PyTypeError::new_err(format!("expected a greenlet, not {name}"))
}

/// `Loop`'s type object, for the raw methods' `self` check.
static LOOP_TYPE: ExactType<Loop> = ExactType::new();

/// Puts the raw `make_ready` and `park` on `Loop`.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    LOOP_TYPE.install(py, &[&MAKE_READY_DEF, &PARK_DEF])
}

unsafe extern "C" fn make_ready_raw(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a METH_O method its own arguments.
    unsafe {
        meth_o(&LOOP_TYPE, slf, arg, |py, this, obj| {
            Ok(PyBool::new(py, this.make_ready_(&obj))
                .to_owned()
                .into_any())
        })
    }
}

unsafe extern "C" fn park_raw(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a METH_O method its own arguments.
    unsafe { meth_o(&LOOP_TYPE, slf, arg, |py, this, hub| this.park_(py, &hub)) }
}
