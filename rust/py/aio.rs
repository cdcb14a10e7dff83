//! greenwheel.asyncio's hot path: `call_soon`, its handles, the ready queue
//! and the batch that runs them.
//!
//! `GreenwheelEventLoop` (python/greenwheel/_asyncio_loop.py) is asyncio's
//! selector loop scheduled by the hub's loop. Profiled on 100 tasks yielding
//! with `asyncio.sleep(0)`, about half of each yield went to asyncio's
//! Python `call_soon` (four Python frames: `call_soon`, `_check_closed`,
//! `_call_soon`, `Handle.__init__`) and to `Handle._run`'s frame. Here those
//! are one native call each: [`AioLoopCore`] is the Rust base class of the
//! loop (its `call_soon` shadows asyncio's), [`Handle`] is the handle it
//! returns, and [`AioLoopCore::_run_ready`] runs a batch.
//!
//! Ground rules:
//! - The loop's state that `call_soon` reads (`_closed`, `_debug`, whether a
//!   batch is queued, how many greenlets run the loop) lives here, exposed as
//!   the attributes asyncio's own code reads and writes (`self._closed =
//!   True` in `BaseEventLoop.close()` sets it here), so there is one copy.
//! - In debug mode `call_soon` is asyncio's own (`BaseEventLoop.call_soon`:
//!   the thread and callback checks, source tracebacks); the fast path is for
//!   the non-debug loop, where asyncio checks nothing but `_closed` either.
//! - The ready queue ([`ReadyQueue`]) is the loop's `_ready`: asyncio's code
//!   and `call_soon_threadsafe` (another thread, holding the GIL) append to
//!   it like a deque. Every access holds the GIL, so its lock is never
//!   contended; no borrow is held across a call into Python (a handle's
//!   callback may call `call_soon` again, or switch greenlets).
//! - A batch runs the handles that were ready when it started, as asyncio's
//!   `_run_once` does; those they schedule wait for the next batch.

use std::collections::VecDeque;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use pyo3::PyTraverseError;

use super::sync::{BoolCell, Guarded, IsizeCell};

/// What a [`Handle`] calls: `context.run(callback, *args)`.
struct Call {
    callback: Py<PyAny>,
    args: Py<PyTuple>,
    context: Py<PyAny>,
}

/// A callback scheduled with `call_soon` (asyncio's `Handle`, natively).
///
/// Offers what asyncio's Handle offers to users and to asyncio's own code:
/// `cancel()`, `cancelled()`, `get_context()`, `_run()`, the `_cancelled`,
/// `_callback`, `_args`, `_context` and `_loop` attributes, and its repr.
#[pyclass(frozen, weakref, module = "greenwheel._core")]
pub(crate) struct Handle {
    /// The call until the handle is cancelled (asyncio drops the callback
    /// and its arguments then, so a kept handle keeps nothing alive).
    call: Guarded<Option<Call>>,
    /// Kept after a cancel: `get_context()` still answers.
    context: Py<PyAny>,
    cancelled: BoolCell,
    event_loop: Py<PyAny>,
}

impl Handle {
    /// The call to make, unless cancelled (cloned out: no borrow is held
    /// while it runs).
    fn call(&self, py: Python<'_>) -> Option<(Py<PyAny>, Py<PyTuple>, Py<PyAny>)> {
        self.call.borrow().as_ref().map(|c| {
            (
                c.callback.clone_ref(py),
                c.args.clone_ref(py),
                c.context.clone_ref(py),
            )
        })
    }

    /// `context.run(callback, *args)`; an exception other than SystemExit or
    /// KeyboardInterrupt goes to the loop's exception handler, as asyncio's
    /// `Handle._run` does.
    fn run(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let Some((callback, args, context)) = slf.get().call(py) else {
            return Ok(());
        };
        let mut argv = Vec::with_capacity(1 + args.bind(py).len());
        argv.push(callback.clone_ref(py).into_bound(py));
        argv.extend(args.bind(py).iter());
        let outcome = context
            .bind(py)
            .call_method1(pyo3::intern!(py, "run"), PyTuple::new(py, argv)?);
        match outcome {
            Ok(_) => Ok(()),
            Err(err)
                if err.is_instance_of::<PySystemExit>(py)
                    || err.is_instance_of::<PyKeyboardInterrupt>(py) =>
            {
                Err(err)
            }
            Err(err) => report(slf, &callback, &args, err),
        }
    }
}

/// The exception handler's context for a callback that raised, as asyncio
/// builds it (`Exception in callback <source>`).
fn report(
    slf: &Bound<'_, Handle>,
    callback: &Py<PyAny>,
    args: &Py<PyTuple>,
    err: PyErr,
) -> PyResult<()> {
    let py = slf.py();
    let source = format_helpers(py)?
        .getattr("_format_callback_source")?
        .call1((callback, args))?;
    let context = PyDict::new(py);
    context.set_item("message", format!("Exception in callback {source}"))?;
    context.set_item("exception", err.value(py))?;
    context.set_item("handle", slf)?;
    slf.get()
        .event_loop
        .bind(py)
        .call_method1("call_exception_handler", (context,))?;
    Ok(())
}

fn format_helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static MODULE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("asyncio.format_helpers")?.into_any().unbind())
        })
        .map(|m| m.bind(py))
}

#[pymethods]
impl Handle {
    /// Cancel the call if it has not run yet.
    fn cancel(&self) {
        if !self.cancelled.replace(true) {
            let call = self.call.borrow_mut().take();
            drop(call); // after the borrow: a decref may run Python code
        }
    }

    fn cancelled(&self) -> bool {
        self.cancelled.get()
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        Handle::run(slf)
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.cancelled.get()
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.call(py).map(|(callback, _, _)| callback)
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.call(py).map(|(_, args, _)| args)
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.event_loop.clone_ref(py)
    }

    /// Handles made here never record where they were made (that is debug
    /// mode, which makes asyncio's own handles).
    #[getter]
    fn _source_traceback(&self) -> Option<Py<PyAny>> {
        None
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut info = vec!["Handle".to_owned()];
        if self.cancelled.get() {
            info.push("cancelled".to_owned());
        }
        if let Some((callback, args, _)) = self.call(py) {
            let source = format_helpers(py)?
                .getattr("_format_callback_source")?
                .call1((callback, args))?;
            info.push(source.str()?.to_string());
        }
        Ok(format!("<{}>", info.join(" ")))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(call) = self.call.try_borrow() {
            if let Some(c) = call.as_ref() {
                visit.call(&c.callback)?;
                visit.call(&c.args)?;
                visit.call(&c.context)?;
            }
        }
        visit.call(&self.context)?;
        visit.call(&self.event_loop)?;
        Ok(())
    }

    fn __clear__(&self) {
        if let Ok(mut call) = self.call.try_borrow_mut() {
            let taken = call.take();
            drop(call);
            drop(taken);
        }
    }
}

/// The loop's `_ready`: the handles to run in the next batch, in order.
///
/// The subset of `collections.deque` that asyncio's code uses on `_ready`
/// (`append`, `popleft`, `clear`, `len`, truth).
#[pyclass(frozen, module = "greenwheel._core")]
pub(crate) struct ReadyQueue {
    items: Guarded<VecDeque<Py<PyAny>>>,
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

/// The objects a loop schedules its batches with, set once by `_aio_setup`.
struct Kick {
    /// The loop's zero-delay timer watcher that runs a batch.
    timer: Py<PyAny>,
    /// The bound method the timer calls (`GreenwheelEventLoop._drain`).
    drain: Py<PyAny>,
}

/// The Rust base class of `GreenwheelEventLoop` (see the module docs).
#[pyclass(frozen, subclass, module = "greenwheel._core")]
pub(crate) struct AioLoopCore {
    ready: Py<ReadyQueue>,
    closed: BoolCell,
    debug: BoolCell,
    /// A batch is queued on the kick timer.
    drain_queued: BoolCell,
    /// Greenlets running the loop (`run_forever` and `await_`); handles run
    /// only while there is one.
    runners: IsizeCell,
    kick: Guarded<Option<Kick>>,
}

impl AioLoopCore {
    /// Queue a batch unless one is queued or nobody runs the loop.
    fn schedule(&self, py: Python<'_>) -> PyResult<()> {
        if self.drain_queued.get() || self.runners.get() <= 0 {
            return Ok(());
        }
        let kick = self
            .kick
            .borrow()
            .as_ref()
            .map(|k| (k.timer.clone_ref(py), k.drain.clone_ref(py)));
        let Some((timer, drain)) = kick else {
            return Err(PyRuntimeError::new_err("the asyncio loop is not set up"));
        };
        self.drain_queued.set(true);
        timer
            .bind(py)
            .call_method1(pyo3::intern!(py, "start"), (drain,))?;
        Ok(())
    }
}

fn base_call_soon(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CALL_SOON: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CALL_SOON
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("asyncio.base_events")?
                    .getattr("BaseEventLoop")?
                    .getattr("call_soon")?
                    .unbind(),
            )
        })
        .map(|f| f.bind(py))
}

fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    static COPY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let copy = COPY.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("contextvars")?.getattr("copy_context")?.unbind())
    })?;
    Ok(copy.bind(py).call0()?.unbind())
}

#[pymethods]
impl AioLoopCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Ok(AioLoopCore {
            ready: Py::new(
                py,
                ReadyQueue {
                    items: Guarded::new(VecDeque::new()),
                },
            )?,
            closed: BoolCell::new(false),
            debug: BoolCell::new(false),
            drain_queued: BoolCell::new(false),
            runners: IsizeCell::new(0),
            kick: Guarded::new(None),
        })
    }

    /// Give the loop the timer that runs its batches and the method it
    /// calls (once, from `GreenwheelEventLoop.__init__`).
    fn _aio_setup(&self, timer: Py<PyAny>, drain: Py<PyAny>) -> PyResult<()> {
        let mut kick = self.kick.borrow_mut();
        if kick.is_some() {
            return Err(PyRuntimeError::new_err(
                "the asyncio loop is already set up",
            ));
        }
        *kick = Some(Kick { timer, drain });
        Ok(())
    }

    /// asyncio's `call_soon(callback, *args, context=None)`.
    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.debug.get() {
            let kwargs = PyDict::new(py);
            kwargs.set_item("context", context)?;
            let mut argv = Vec::with_capacity(2 + args.bind(py).len());
            argv.push(slf.clone().into_any());
            argv.push(callback.into_bound(py));
            argv.extend(args.bind(py).iter());
            return Ok(base_call_soon(py)?
                .call(PyTuple::new(py, argv)?, Some(&kwargs))?
                .unbind());
        }
        if this.closed.get() {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        let context = match context {
            Some(context) if !context.is_none(py) => context,
            _ => copy_context(py)?,
        };
        let handle = Py::new(
            py,
            Handle {
                call: Guarded::new(Some(Call {
                    callback,
                    args,
                    context: context.clone_ref(py),
                })),
                context,
                cancelled: BoolCell::new(false),
                event_loop: slf.clone().into_any().unbind(),
            },
        )?;
        this.ready
            .get()
            .items
            .borrow_mut()
            .push_back(handle.clone_ref(py).into_any());
        this.schedule(py)?;
        Ok(handle.into_any())
    }

    /// Queue a batch if there is work and a runner (`_schedule_drain`).
    fn _schedule_drain(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().schedule(slf.py())
    }

    /// Run the handles ready now, in order; not those they schedule. A
    /// SystemExit or KeyboardInterrupt stops the batch and propagates (the
    /// handles after it stay queued, as with asyncio's `_run_once`).
    fn _run_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let ready = slf.get().ready.get();
        let count = ready.items.borrow().len();
        let cancelled = pyo3::intern!(py, "_cancelled");
        let run = pyo3::intern!(py, "_run");
        for _ in 0..count {
            let Some(item) = ready.items.borrow_mut().pop_front() else {
                break; // cleared by a callback (loop.close() from inside a batch)
            };
            let item = item.into_bound(py);
            if let Ok(handle) = item.cast_exact::<Handle>() {
                if !handle.get().cancelled.get() {
                    Handle::run(handle)?;
                }
            } else if !item.getattr(cancelled)?.is_truthy()? {
                item.call_method0(run)?;
            }
        }
        Ok(())
    }

    #[getter]
    fn _ready(&self, py: Python<'_>) -> Py<ReadyQueue> {
        self.ready.clone_ref(py)
    }

    /// asyncio's `BaseEventLoop.__init__` assigns a fresh deque; the loop's
    /// queue stays (it is empty then), so nothing is lost.
    #[setter(_ready)]
    fn set_ready(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if value.len()? != 0 {
            return Err(PyRuntimeError::new_err(
                "the loop's ready queue cannot be replaced by a non-empty one",
            ));
        }
        Ok(())
    }

    #[getter]
    fn _closed(&self) -> bool {
        self.closed.get()
    }

    #[setter(_closed)]
    fn set_closed(&self, value: bool) {
        self.closed.set(value);
    }

    #[getter]
    fn _debug(&self) -> bool {
        self.debug.get()
    }

    #[setter(_debug)]
    fn set_debug_flag(&self, value: bool) {
        self.debug.set(value);
    }

    #[getter]
    fn _drain_queued(&self) -> bool {
        self.drain_queued.get()
    }

    #[setter(_drain_queued)]
    fn set_drain_queued(&self, value: bool) {
        self.drain_queued.set(value);
    }

    #[getter]
    fn _runners(&self) -> isize {
        self.runners.get()
    }

    #[setter(_runners)]
    fn set_runners(&self, value: isize) {
        self.runners.set(value);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.ready)?;
        if let Ok(kick) = self.kick.try_borrow() {
            if let Some(k) = kick.as_ref() {
                visit.call(&k.timer)?;
                visit.call(&k.drain)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        if let Ok(mut kick) = self.kick.try_borrow_mut() {
            let taken = kick.take();
            drop(kick);
            drop(taken);
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AioLoopCore>()?;
    m.add_class::<Handle>()?;
    m.add_class::<ReadyQueue>()?;
    Ok(())
}
