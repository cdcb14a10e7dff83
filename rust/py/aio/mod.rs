//! greenwheel.asyncio's hot path, natively: `call_soon`, `call_later`,
//! `call_at`, `create_task`, `create_future`, their handles, the ready
//! queue, the fd registrations and the batch that runs them.
//!
//! `GreenwheelEventLoop` (python/greenwheel/_asyncio_loop.py) is asyncio's
//! selector loop scheduled by the hub's loop. Profiled on 100 tasks yielding
//! with `asyncio.sleep(0)`, about half of each yield went to asyncio's
//! Python `call_soon` (four Python frames: `call_soon`, `_check_closed`,
//! `_call_soon`, `Handle.__init__`) and to `Handle._run`'s frame. Here those
//! are one native call each: [`AioLoopCore`] is the Rust base class of the
//! loop (its methods shadow asyncio's), `handles.rs` holds the handles it
//! returns, `ready.rs` the ready queue, `io.rs` the fd registrations, and
//! [`AioLoopCore::_drain`] runs a batch.
//!
//! Ground rules:
//! - The loop's state these read (`_closed`, `_debug`, `_task_factory`,
//!   whether a batch is queued, how many greenlets run the loop) lives here,
//!   exposed as the attributes asyncio's own code reads and writes
//!   (`self._closed = True` in `BaseEventLoop.close()` sets it here), so
//!   there is one copy.
//! - Debug mode takes the same paths plus asyncio's debug checks (thread,
//!   callback) and source tracebacks; `create_task` with a task factory or
//!   in debug mode is asyncio's own method.
//! - The ready queue is the loop's `_ready`: asyncio's code and
//!   `call_soon_threadsafe` (another thread, holding the GIL) append to it
//!   like a deque. Every access holds the GIL, so the locks are never
//!   contended; no borrow is held across a call into Python (a handle's
//!   callback may call `call_soon` again, or switch greenlets).
//! - A batch runs the handles that were ready when it started, as asyncio's
//!   `_run_once` does; those they schedule wait for the next batch.

mod handles;
mod io;
mod ready;
mod soon_attr;

use handles::Args;
pub(crate) use handles::{Handle, TimerHandle};
pub(crate) use ready::ReadyQueue;

use handles::{DetachedCall, HandleCore};
use ready::Item;

use std::sync::atomic::{AtomicPtr, Ordering};

use crate::poller::FdMap;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use pyo3::PyTraverseError;

use pyo3::ffi;
use pyo3::Borrowed;

use super::aio_transport::passes_through;
use super::errors::delay_ns;
use super::loop_::{Loop, LoopClock};
use super::raw_fn::{callback_arg, guard, ExactType, MethodDef};
use super::sync::HandleCell;
use super::sync::{BoolCell, Guarded, IsizeCell, U64Cell};
use super::watchers::IoWatcher;

/// One fd's registration (asyncio's selector key): its reader and writer
/// handles and the io watcher that watches for what they need.
struct FdEntry {
    /// asyncio keeps the object registered (a socket, a pipe), not only its fd.
    fileobj: Py<PyAny>,
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
    watcher: Py<IoWatcher>,
    /// The events the watcher watches (READ | WRITE bits of the loop).
    mask: i64,
    /// Events seen since the last batch, for its io step.
    seen: i64,
    /// Stopped because nobody ran the loop when it fired (level-triggered:
    /// it would fire on every pass meanwhile); restarted by `_resume_io`.
    paused: bool,
}

impl FdEntry {
    fn handles(&self, py: Python<'_>) -> [Option<Py<Handle>>; 2] {
        [
            self.reader.as_ref().map(|h| h.clone_ref(py)),
            self.writer.as_ref().map(|h| h.clone_ref(py)),
        ]
    }
}

/// What a loop schedules with, set once by `_aio_setup`.
struct Kick {
    /// The hub's loop, whose wheel arms the timer handles and the kick.
    gw_loop: Py<Loop>,
    /// This loop's `_io_fired` (bound), what an fd's io watcher calls.
    io_fired: Py<PyAny>,
}

/// The Rust base class of `GreenwheelEventLoop` (see the module docs).
#[pyclass(frozen, subclass, module = "greenwheel._core")]
pub(crate) struct AioLoopCore {
    ready: Py<ReadyQueue>,
    closed: BoolCell,
    debug: BoolCell,
    /// The kick's wheel entry while a batch is queued (`_drain_queued`): a
    /// zero-delay entry whose expiry
    /// runs `_drain` natively (`TimerEntry::Kick`). It was a timer watcher
    /// calling the bound `_drain`: its start and the Python-level call
    /// through PyO3's trampoline were about 700 instructions a batch
    /// (callgrind), and a lone keep-alive connection runs a batch a request.
    kick_at: HandleCell,
    /// The registered fds (asyncio's selector map), hashed as the loop's
    /// own fd maps are (SipHash was ~90 instructions a lookup, and an echo
    /// round trip makes four).
    fds: Guarded<FdMap<FdEntry>>,
    /// The fds with events seen since the last batch, in order.
    io_ready: Guarded<Vec<i32>>,
    /// Greenlets running the loop (`run_forever` and `await_`); handles run
    /// only while there is one.
    runners: IsizeCell,
    kick: Guarded<Option<Kick>>,
    /// asyncio's `_task_factory` (None: tasks are `asyncio.Task`s).
    task_factory: Guarded<Option<Py<PyAny>>>,
    /// The timer handles whose wheel timer is armed, each at its `slot`, so
    /// that `close()` can disarm them (asyncio's close drops its scheduled
    /// handles) and a cancel or fire leaves in O(1).
    armed: Guarded<Vec<Py<TimerHandle>>>,
    /// Emptied `call_soon` handles to reuse (handles.rs, spares).
    spares: Guarded<Vec<Py<Handle>>>,
    /// The ready queue's number of the entry the last `call_soon` queued
    /// ([`NO_ENTRY`]: none to look at), whose handle the next one may take
    /// over (handles.rs, detached calls).
    last_soon: U64Cell,
    /// Timer handles that ran in this batch while someone else held them,
    /// still untracked (handles.rs, fired timer handles).
    fired_now: Guarded<Vec<Py<TimerHandle>>>,
    /// Those of the batch before, let go of at the end of this one.
    fired_before: Guarded<Vec<Py<TimerHandle>>>,
    /// `call_soon` bound to this loop, what `loop.call_soon` gives
    /// (soon_attr.rs).
    soon_bound: soon_attr::BoundCache,
    /// The loop was given a `call_soon` of its own (`loop.call_soon = f`),
    /// kept in its instance dict (soon_attr.rs).
    soon_set: BoolCell,
    /// `_forever` (the Waiter of the greenlet in `run_forever()`, or None)
    /// and asyncio's `_stopping`, which every batch reads: stored here, as
    /// properties of those names, because a generic `getattr` of an
    /// instance attribute cost about 450 instructions a batch each
    /// (callgrind), and a keep-alive server with few connections ready per
    /// poll runs a batch per one or two requests. None: not assigned yet
    /// (reading it raises `AttributeError`, as the missing attribute did).
    forever: Guarded<Option<Py<PyAny>>>,
    stopping: Guarded<Option<Py<PyAny>>>,
}

/// At most this many spares per loop (a task's step and wake-up reuse them
/// at once; a batch of 200k wake-ups needs no more than a few).
const MAX_SPARES: usize = 256;

/// `last_soon` when there is no entry to look at.
const NO_ENTRY: u64 = u64::MAX;

impl AioLoopCore {
    /// Queue a batch unless one is queued or nobody runs the loop.
    fn schedule(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if this.kick_at.get().is_some() || this.runners.get() <= 0 {
            return Ok(());
        }
        let armed = {
            let kick = this.kick.borrow();
            let Some(kick) = kick.as_ref() else {
                return Err(not_set_up());
            };
            // (No Python code runs here: the borrow may stay.)
            kick.gw_loop.get().aio_kick_arm(slf.clone().unbind())?
        };
        this.kick_at.set(Some(armed));
        Ok(())
    }

    /// The kick's wheel entry, while armed.
    pub(crate) fn kick_handle(&self) -> Option<crate::wheel::TimerHandle> {
        self.kick_at.get()
    }

    /// The kick is in the wheel again as `h` (`requeue_timers`).
    pub(crate) fn kick_armed_as(&self, h: crate::wheel::TimerHandle) {
        self.kick_at.set(Some(h));
    }

    /// The kick left the wheel (it fired, or the hub's loop was
    /// destroyed): no batch is queued.
    pub(crate) fn kick_unarmed(&self) {
        self.kick_at.set(None);
    }

    /// `self._forever` (see the field `forever`).
    fn forever_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        read_stored(py, &self.forever, "_forever")
    }

    /// `self._stopping` (see the field `forever`).
    fn stopping_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        read_stored(py, &self.stopping, "_stopping")
    }

    /// Queue `handle` and a batch to run it; its entry's number.
    fn push_ready(slf: &Bound<'_, Self>, handle: Py<PyAny>) -> PyResult<u64> {
        let number = slf
            .get()
            .ready
            .get()
            .items
            .borrow_mut()
            .push(Item::Handle(handle));
        AioLoopCore::schedule(slf)?;
        Ok(number)
    }

    /// The handle of the last `call_soon`, if it is still queued and nobody
    /// else holds it: its call stays queued without it, and it comes back
    /// emptied, for the next call (handles.rs, detached calls).
    fn detach_last<'py>(slf: &Bound<'py, Self>) -> Option<Bound<'py, Handle>> {
        let py = slf.py();
        let this = slf.get();
        let number = this.last_soon.replace(NO_ENTRY);
        if number == NO_ENTRY {
            return None;
        }
        let (handle, context) = {
            let mut items = this.ready.get().items.borrow_mut();
            let slot = items.get_mut(number)?;
            let Item::Handle(queued) = &*slot else {
                return None;
            };
            let handle = queued.bind(py).cast_exact::<Handle>().ok()?;
            // Made by this loop's `call_soon` (a spare serves its own loop
            // only), so only the queue's reference can be left.
            debug_assert!(handle.get().core.event_loop.bind(py).is(slf));
            if !handles::recyclable(handle) {
                return None;
            }
            let core = &handle.get().core;
            let (call, context) = core.detach()?;
            let detached = DetachedCall::new(call, core.event_loop.clone_ref(py));
            let Item::Handle(handle) = std::mem::replace(slot, Item::Call(detached)) else {
                unreachable!("the slot held a handle a moment ago");
            };
            (handle, context)
        };
        // After the queue's borrow: a decref may run Python code (not this
        // one, whose call holds the same context, but as a rule).
        drop(context.map(|c| c.into_bound(py)));
        // SAFETY: cast_exact above checked the type.
        Some(unsafe { handle.into_bound(py).cast_into_unchecked::<Handle>() })
    }

    /// asyncio's checks on entry to `call_soon` / `call_at`: a closed loop
    /// refuses; debug mode also checks the thread and the callback.
    #[inline]
    fn check_call(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        method: &str,
    ) -> PyResult<()> {
        let this = slf.get();
        this.check_open()?;
        if this.debug.get() {
            slf.call_method0("_check_thread")?;
            slf.call_method1("_check_callback", (callback, method))?;
        }
        Ok(())
    }

    /// asyncio's `_check_closed`: a closed loop refuses new work.
    #[inline]
    fn check_open(&self) -> PyResult<()> {
        if self.closed.get() {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(())
    }

    /// Keep `handle` (recyclable: nobody else holds it) as a spare.
    fn keep_spare(&self, handle: Bound<'_, Handle>) {
        let py = handle.py();
        let (call, context) = {
            let mut spares = self.spares.borrow_mut();
            if spares.len() >= MAX_SPARES {
                return;
            }
            let held = handle.get().core.recycle();
            spares.push(handle.unbind());
            held
        };
        // After the borrows: a decref may run Python code.
        if let Some(call) = call {
            call.release(py);
        }
        drop(context.map(|c| c.into_bound(py)));
    }

    /// Let go of the fired timer handles of the batch before this one (all
    /// of them with `all`: the loop stops running or closes), tracking
    /// again those still held elsewhere (handles.rs, fired timer handles).
    fn release_fired(&self, py: Python<'_>, all: bool) {
        let mut old = std::mem::take(&mut *self.fired_before.borrow_mut());
        let now = std::mem::take(&mut *self.fired_now.borrow_mut());
        if all {
            old.extend(now);
        } else {
            *self.fired_before.borrow_mut() = now;
        }
        let_go_fired(py, old);
    }

    /// Take `handle` out of the armed list (it fired or was cancelled).
    fn forget_armed(&self, handle: &TimerHandle) {
        let slot = handle.slot.replace(-1);
        if slot < 0 {
            return;
        }
        let removed = {
            let mut armed = self.armed.borrow_mut();
            let at = slot as usize;
            debug_assert!(at < armed.len());
            if at >= armed.len() {
                return;
            }
            let removed = armed.swap_remove(at);
            if let Some(moved) = armed.get(at) {
                moved.get().slot.set(slot);
            }
            removed
        };
        debug_assert!(std::ptr::eq(removed.get(), handle));
        drop(removed); // after the borrow: the last reference may go here
    }
}

fn not_set_up() -> PyErr {
    PyRuntimeError::new_err("the asyncio loop is not set up")
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
            ready: Py::new(py, ReadyQueue::new())?,
            last_soon: U64Cell::new(NO_ENTRY),
            closed: BoolCell::new(false),
            debug: BoolCell::new(false),
            fds: Guarded::new(FdMap::default()),
            io_ready: Guarded::new(Vec::new()),
            runners: IsizeCell::new(0),
            kick: Guarded::new(None),
            kick_at: HandleCell::new(None),
            task_factory: Guarded::new(None),
            armed: Guarded::new(Vec::new()),
            spares: Guarded::new(Vec::new()),
            fired_now: Guarded::new(Vec::new()),
            fired_before: Guarded::new(Vec::new()),
            soon_bound: soon_attr::BoundCache::new(),
            soon_set: BoolCell::new(false),
            forever: Guarded::new(None),
            stopping: Guarded::new(None),
        })
    }

    /// Give the loop the hub's loop, whose wheel runs its batches and arms
    /// its timer handles (once, from `GreenwheelEventLoop.__init__`).
    fn _aio_setup(slf: &Bound<'_, Self>, gw_loop: Py<Loop>) -> PyResult<()> {
        let io_fired = slf.getattr("_io_fired")?.unbind();
        let mut kick = slf.get().kick.borrow_mut();
        if kick.is_some() {
            return Err(PyRuntimeError::new_err(
                "the asyncio loop is already set up",
            ));
        }
        *kick = Some(Kick { gw_loop, io_fired });
        Ok(())
    }

    /// asyncio's `call_soon(callback, *args, context=None)` (PyO3's entry;
    /// the class's `call_soon` is `call_soon_raw`, installed over it).
    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        AioLoopCore::soon(slf, callback, Args::Tuple(args), context)
    }

    /// asyncio's `call_at(when, callback, *args, context=None)`: a timer
    /// handle armed in the wheel, never early (the wheel reads the clock
    /// `time()` reads, refreshed as it arms).
    #[pyo3(signature = (when, callback, *args, context = None))]
    fn call_at(
        slf: &Bound<'_, Self>,
        when: Option<f64>,
        callback: Bound<'_, PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let Some(when) = when else {
            return Err(PyTypeError::new_err("when cannot be None"));
        };
        AioLoopCore::arm(slf, when, callback, args, context)
    }

    /// asyncio's `call_later(delay, callback, *args, context=None)`.
    #[pyo3(signature = (delay, callback, *args, context = None))]
    fn call_later(
        slf: &Bound<'_, Self>,
        delay: Option<f64>,
        callback: Bound<'_, PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let Some(delay) = delay else {
            return Err(PyTypeError::new_err("delay must not be None"));
        };
        let when = now_secs() + delay;
        AioLoopCore::arm(slf, when, callback, args, context)
    }

    /// Disarm every armed timer handle and the kick (`close()`: pending
    /// calls are lost, as asyncio documents, and nothing stays in the wheel).
    fn _disarm_timers(&self, py: Python<'_>) {
        if let Some(h) = self.kick_at.take() {
            let entry = {
                let kick = self.kick.borrow();
                kick.as_ref()
                    .and_then(|k| k.gw_loop.get().aio_timer_disarm(h))
            };
            // After the borrow: the entry's reference to this loop goes here.
            if let Some(entry) = entry {
                entry.release(py);
            }
        }
        let spares = std::mem::take(&mut *self.spares.borrow_mut());
        drop(spares);
        self.release_fired(py, true);
        let armed = std::mem::take(&mut *self.armed.borrow_mut());
        for handle in &armed {
            let h = handle.get();
            h.slot.set(-1);
            TimerHandle::disarm(handle.bind(py));
            handles::retrack(handle.bind(py).as_any());
        }
        drop(armed);
    }

    /// The number of armed timer handles.
    fn _armed_count(&self) -> usize {
        self.armed.borrow().len()
    }

    /// One batch, run by the kick in the hub (`Loop::fire_kick`): the io
    /// events seen, then the handles ready now (not those they schedule,
    /// which wait for the next batch, after a poll), with this loop as the
    /// running loop.
    ///
    /// SystemExit or KeyboardInterrupt from a handle goes to the greenlet in
    /// `run_forever` (as asyncio's `run_forever` would raise it); with only
    /// `await_()` callers it propagates into the hub, which hands it to the
    /// main greenlet. After a batch that `stop()`ped the loop,
    /// `run_forever`'s greenlet resumes.
    pub(crate) fn _drain(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.runners.get() <= 0 {
            return Ok(());
        }
        // Batches run in the hub, where no asyncio loop ever runs (a
        // greenwheel loop refuses to run there, see `_check_hub`), so the
        // running loop to restore is None: no `_get_running_loop()` call,
        // which costs a getpid() system call on 3.11.
        let set_running = set_running_loop(py)?;
        set_running.call1((slf,))?;
        let outcome = AioLoopCore::batch(slf);
        this.release_fired(py, false);
        let restored = set_running.call1((py.None(),));
        let forever = this.forever_value(py)?;
        let escaped = match outcome {
            Ok(()) => None,
            Err(err) if !forever.is_none() && passes_through(py, &err) => Some(err),
            Err(err) => return Err(err),
        };
        restored?;
        if !this.ready.get().items.borrow().is_empty() {
            AioLoopCore::schedule(slf)?;
        }
        if let Some(err) = escaped {
            forever.call_method1(pyo3::intern!(py, "throw"), (err.value(py),))?;
        } else if !forever.is_none() && this.stopping_value(py)?.is_truthy()? {
            forever.call_method1(pyo3::intern!(py, "switch"), (py.None(),))?;
        }
        Ok(())
    }

    /// asyncio's `create_task(coro, *, name=None, context=None)`: with no
    /// task factory and not in debug mode, an `asyncio.Task` made here;
    /// otherwise asyncio's own method (the factory's calling conventions,
    /// which differ between versions, and the debug source traceback).
    #[pyo3(signature = (coro, *, name = None, context = None))]
    fn create_task(
        slf: &Bound<'_, Self>,
        coro: Bound<'_, PyAny>,
        name: Option<Py<PyAny>>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_open()?;
        // Only what was given (each a dict insertion, 250 instructions):
        // None is the default of both, in asyncio's method and in Task.
        let kwargs = PyDict::new(py);
        if let Some(name) = name.filter(|n| !n.is_none(py)) {
            kwargs.set_item(pyo3::intern!(py, "name"), name)?;
        }
        if let Some(context) = context.filter(|c| !c.is_none(py)) {
            kwargs.set_item(pyo3::intern!(py, "context"), context)?;
        }
        if this.debug.get() || this.task_factory.borrow().is_some() {
            let base = asyncio_attr(
                py,
                &BASE_CREATE_TASK,
                "base_events",
                &["BaseEventLoop", "create_task"],
            )?;
            return Ok(base.call((slf, coro), Some(&kwargs))?.unbind());
        }
        kwargs.set_item(pyo3::intern!(py, "loop"), slf)?;
        let task = asyncio_attr(py, &TASK, "tasks", &["Task"])?;
        Ok(task.call((coro,), Some(&kwargs))?.unbind())
    }

    #[getter]
    fn _task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task_factory.borrow().as_ref().map(|f| f.clone_ref(py))
    }

    #[setter(_task_factory)]
    fn set_task_factory_attr(&self, value: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut *self.task_factory.borrow_mut(), value);
        drop(old); // after the borrow: a decref may run Python code
    }

    /// asyncio's `create_future()`: a Future of this loop.
    ///
    /// While this loop is the running one, `Future()` (which takes the
    /// running loop) makes the same future as `Future(loop=self)` without
    /// a keywords dict: building and releasing it was about 440 of the
    /// 1,750 instructions a future cost (callgrind), and a stream read
    /// makes one.
    fn create_future(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        static FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        static RUNNING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let future = asyncio_attr(py, &FUTURE, "futures", &["Future"])?;
        let running = asyncio_attr(py, &RUNNING, "events", &["_get_running_loop"])?;
        if running.call0()?.is(slf) {
            return Ok(future.call0()?.unbind());
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item(pyo3::intern!(py, "loop"), slf)?;
        Ok(future.call((), Some(&kwargs))?.unbind())
    }

    /// Queue a batch if there is work and a runner (`_schedule_drain`).
    fn _schedule_drain(slf: &Bound<'_, Self>) -> PyResult<()> {
        AioLoopCore::schedule(slf)
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
            let item = match item {
                Item::Handle(handle) => handle.into_bound(py),
                Item::Call(call) => {
                    call.run(py)?;
                    continue;
                }
            };
            if let Ok(handle) = item.cast_exact::<TimerHandle>() {
                // Held elsewhere too (asyncio.sleep keeps its handle): kept
                // untracked a batch longer (handles.rs, fired timer handles).
                // SAFETY: `item` is live (owned here) and the GIL is held.
                if unsafe { ffi::Py_REFCNT(item.as_ptr()) } > 1 {
                    handle.get().held_fired.set(true);
                    slf.get()
                        .fired_now
                        .borrow_mut()
                        .push(handle.clone().unbind());
                }
                let core = &handle.get().core;
                if !core.cancelled.get() {
                    core.run(&item)?;
                }
                continue;
            }
            if let Ok(handle) = item.cast_exact::<Handle>() {
                let core = &handle.get().core;
                // (A spare serves its own loop's call_soon only.)
                let own = core.event_loop.is(slf);
                // Nobody else can reach it: it runs without its call copied
                // out.
                let private = own && handles::recyclable(handle);
                if !private {
                    handles::retrack_shared(&item);
                }
                if !core.cancelled.get() {
                    if private {
                        core.run_private(&item)?;
                    } else {
                        core.run(&item)?;
                    }
                }
                // Kept as a spare unless the run let someone take it (the
                // exception handler's context).
                if own && handles::recyclable(handle) {
                    // SAFETY: cast_exact above checked the type.
                    let handle = unsafe { item.cast_into_unchecked::<Handle>() };
                    slf.get().keep_spare(handle);
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

    #[getter(_forever)]
    fn get_forever<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.forever_value(py)
    }

    #[setter(_forever)]
    fn set_forever(&self, value: Py<PyAny>) {
        store(&self.forever, value)
    }

    #[getter(_stopping)]
    fn get_stopping<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.stopping_value(py)
    }

    #[setter(_stopping)]
    fn set_stopping(&self, value: Py<PyAny>) {
        store(&self.stopping, value)
    }

    /// A batch is queued (the kick is armed).
    #[getter]
    fn _drain_queued(&self) -> bool {
        self.kick_at.get().is_some()
    }

    #[getter]
    fn _runners(&self) -> isize {
        self.runners.get()
    }

    #[setter(_runners)]
    fn set_runners(&self, py: Python<'_>, value: isize) {
        self.runners.set(value);
        self.ready.get().loop_running.set(value > 0);
        if value <= 0 {
            self.release_fired(py, true);
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.ready)?;
        self.soon_bound.traverse(&visit)?;
        if let Ok(kick) = self.kick.try_borrow() {
            if let Some(k) = kick.as_ref() {
                visit.call(&k.gw_loop)?;
                visit.call(&k.io_fired)?;
            }
        }
        if let Ok(factory) = self.task_factory.try_borrow() {
            if let Some(f) = factory.as_ref() {
                visit.call(f)?;
            }
        }
        if let Ok(fds) = self.fds.try_borrow() {
            for entry in fds.values() {
                visit.call(&entry.fileobj)?;
                visit.call(&entry.watcher)?;
                if let Some(h) = &entry.reader {
                    visit.call(h)?;
                }
                if let Some(h) = &entry.writer {
                    visit.call(h)?;
                }
            }
        }
        // While a greenlet runs the loop, the handles it holds are left out
        // (handles.rs, cyclic GC: what running changes).
        let running = self.runners.get() > 0;
        if let (false, Ok(armed)) = (running, self.armed.try_borrow()) {
            for handle in armed.iter() {
                // Armed: this list's reference and the wheel's (checked
                // before the visit, which may take one: gc.get_referents).
                handles::traverse_owned(handle.as_any(), 2, &visit)?;
                visit.call(handle)?;
            }
        }
        for stored in [&self.forever, &self.stopping] {
            if let Ok(v) = stored.try_borrow() {
                if let Some(v) = v.as_ref() {
                    visit.call(v)?;
                }
            }
        }
        if let Ok(spares) = self.spares.try_borrow() {
            for handle in spares.iter() {
                handles::traverse_owned(handle.as_any(), 1, &visit)?;
                visit.call(handle)?;
            }
        }
        for fired in [&self.fired_now, &self.fired_before] {
            if let (false, Ok(fired)) = (running, fired.try_borrow()) {
                for handle in fired.iter() {
                    handles::traverse_owned(handle.as_any(), 1, &visit)?;
                    visit.call(handle)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // SAFETY: __clear__ runs with the GIL held (from the collector).
        drop(self.soon_bound.take(unsafe { Python::assume_attached() }));
        if let Ok(mut kick) = self.kick.try_borrow_mut() {
            let taken = kick.take();
            drop(kick);
            drop(taken);
        }
        if let Ok(mut armed) = self.armed.try_borrow_mut() {
            let taken = std::mem::take(&mut *armed);
            drop(armed);
            // SAFETY: __clear__ runs with the GIL held (from the collector).
            let py = unsafe { Python::assume_attached() };
            for handle in &taken {
                handles::retrack(handle.bind(py).as_any());
            }
            drop(taken);
        }
        if let Ok(mut spares) = self.spares.try_borrow_mut() {
            let taken = std::mem::take(&mut *spares);
            drop(spares);
            drop(taken);
        }
        for fired in [&self.fired_now, &self.fired_before] {
            if let Ok(mut fired) = fired.try_borrow_mut() {
                let taken = std::mem::take(&mut *fired);
                drop(fired);
                // SAFETY: __clear__ runs with the GIL held (from the collector).
                let_go_fired(unsafe { Python::assume_attached() }, taken);
            }
        }
        if let Ok(mut factory) = self.task_factory.try_borrow_mut() {
            let taken = factory.take();
            drop(factory);
            drop(taken);
        }
        for stored in [&self.forever, &self.stopping] {
            if let Ok(mut v) = stored.try_borrow_mut() {
                let taken = v.take();
                drop(v);
                drop(taken);
            }
        }
        if let Ok(mut fds) = self.fds.try_borrow_mut() {
            let taken = std::mem::take(&mut *fds);
            drop(fds);
            drop(taken);
        }
    }
}

impl AioLoopCore {
    /// `call_soon`'s work: the checks, a handle (a spare if there is one),
    /// queued.
    fn soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        AioLoopCore::check_call(slf, &callback, "call_soon")?;
        let this = slf.get();
        let debug = this.debug.get();
        let spare = if debug {
            None
        } else {
            AioLoopCore::detach_last(slf)
                .map(Bound::unbind)
                .or_else(|| this.spares.borrow_mut().pop())
        };
        let handle = match spare {
            Some(handle) => {
                // (Still untracked: spares are never tracked again.)
                handle
                    .get()
                    .core
                    .refill(py, callback.unbind(), args, context)?;
                handle
            }
            None => {
                let core = HandleCore::new(py, slf, callback.unbind(), args, context)?;
                let handle = Py::new(py, Handle { core })?;
                handles::untrack(handle.bind(py).as_any());
                handle
            }
        };
        let number = AioLoopCore::push_ready(slf, handle.clone_ref(py).into_any())?;
        if !debug {
            this.last_soon.set(number);
        }
        Ok(handle)
    }

    /// A batch's work, with the running loop set (see `_drain`).
    fn batch(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        AioLoopCore::process_io(slf)?;
        if this.debug.get() {
            slf.call_method1(pyo3::intern!(py, "_run_debug"), (this.ready.clone_ref(py),))?;
            Ok(())
        } else {
            AioLoopCore::_run_ready(slf)
        }
    }

    /// `call_at`'s work: the checks, the handle, its armed wheel timer.
    fn arm(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: Bound<'_, PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        AioLoopCore::check_call(slf, &callback, "call_at")?;
        let this = slf.get();
        let gw_loop = {
            let kick = this.kick.borrow();
            kick.as_ref().ok_or_else(not_set_up)?.gw_loop.clone_ref(py)
        };
        let core = HandleCore::new(py, slf, callback.unbind(), Args::Tuple(args), context)?;
        let handle = Bound::new(
            py,
            TimerHandle {
                core,
                when,
                gw_loop: gw_loop.clone_ref(py),
                wheel: HandleCell::new(None),
                slot: IsizeCell::new(-1),
                held_fired: BoolCell::new(false),
            },
        )?;
        let after_ns = delay_ns("when", (when - now_secs()).max(0.0))?;
        // An entry of the loop's wheel (no watcher object); the loop reads
        // its clock afresh as it arms, so the deadline is never before `when`.
        let h = gw_loop
            .get()
            .aio_timer_arm(handle.clone().unbind(), after_ns)?;
        handles::untrack(handle.as_any());
        TimerHandle::armed_as(&handle, h);
        {
            let mut armed = this.armed.borrow_mut();
            handle.get().slot.set(armed.len() as isize);
            armed.push(handle.clone().unbind());
        }
        Ok(handle.unbind())
    }
}

/// A stored attribute's value (a new reference: the borrow ends before the
/// caller can run Python code with it), or the missing attribute's error.
fn read_stored<'py>(
    py: Python<'py>,
    field: &Guarded<Option<Py<PyAny>>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let value = field.borrow().as_ref().map(|v| v.clone_ref(py));
    value.map(|v| v.into_bound(py)).ok_or_else(|| {
        pyo3::exceptions::PyAttributeError::new_err(format!(
            "'GreenwheelEventLoop' object has no attribute '{name}'"
        ))
    })
}

/// Assign a stored attribute (PyO3 refuses `del`: asyncio never deletes
/// these). The old value is released after the borrow ends (its release
/// may run Python code).
fn store(field: &Guarded<Option<Py<PyAny>>>, value: Py<PyAny>) {
    let old = field.replace(Some(value));
    drop(old);
}

static BASE_CREATE_TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `asyncio.<module>.<path...>`, looked up once into `cell`.
fn asyncio_attr<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    path: &[&str],
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || {
        let mut obj = py.import(format!("asyncio.{module}"))?.into_any();
        for name in path {
            obj = obj.getattr(*name)?;
        }
        Ok::<_, PyErr>(obj.unbind())
    })
    .map(|f| f.bind(py))
}

/// A timer handle's wheel entry expired (the loop checked it is current):
/// queue the handle for the next batch, unless it was cancelled or its loop
/// closed meanwhile.
pub(crate) fn timer_fired(handle: &Bound<'_, TimerHandle>) -> PyResult<()> {
    let py = handle.py();
    let h = handle.get();
    let event_loop = h.core.event_loop.bind(py);
    let Ok(core) = event_loop.cast::<AioLoopCore>() else {
        return Ok(());
    };
    let this = core.get();
    this.forget_armed(h);
    if h.core.cancelled.get() || this.closed.get() {
        handles::retrack(handle.as_any());
        return Ok(());
    }
    AioLoopCore::push_ready(core, handle.clone().into_any().unbind()).map(drop)
}

/// asyncio's `_set_running_loop` (a C function).
fn set_running_loop(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static FUNCTION: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    asyncio_attr(py, &FUNCTION, "events", &["_set_running_loop"])
}

/// asyncio's `BaseEventLoop.time()`: `time.monotonic()`, the clock the
/// wheel reads.
fn now_secs() -> f64 {
    LoopClock::system_ns() as f64 / 1e9
}

// -- call_soon on CPython's calling convention ------------------------------
//
// PyO3's argument parsing (`*args` and the `context` keyword) was 530 of the
// 616 instructions of each `call_soon` (callgrind, asyncio.sleep(0) yields),
// the call every task step and wake-up makes; parsed here by hand.

static CALL_SOON_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"call_soon".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: call_soon_raw,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: c"call_soon($self, callback, *args, context=None)\n--\n\nasyncio's call_soon: a Handle that calls callback(*args) in the next batch.".as_ptr(),
});

static GET_DEBUG_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"get_debug".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunction: get_debug_raw,
    },
    ml_flags: ffi::METH_NOARGS,
    ml_doc: c"get_debug($self, /)\n--\n\nasyncio's get_debug: whether the loop is in debug mode."
        .as_ptr(),
});

/// asyncio's `get_debug()`, natively and without PyO3's method trampoline:
/// asyncio's C `Future` calls it for every future it makes (a stream
/// read's waiter, ...). As `BaseEventLoop`'s Python method reading the
/// native `_debug` it cost about 450 instructions, twice an echo round trip
/// over streams; as a `#[pymethods]` method still about 250 (callgrind).
unsafe extern "C" fn get_debug_raw(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls METH_NOARGS methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    guard(py, || {
        // SAFETY: `slf` is borrowed for the call.
        let this = unsafe { LOOP_TYPE.cast(py, slf) }?;
        Ok(pyo3::types::PyBool::new(py, this.get().debug.get())
            .to_owned()
            .into_any())
    })
}

/// Lets go of fired timer handles taken out of the loop's fired lists,
/// tracking again those still held elsewhere (handles.rs, fired timer
/// handles). Called after the lists' borrows end: the last reference to a
/// handle may go here.
fn let_go_fired(py: Python<'_>, fired: Vec<Py<TimerHandle>>) {
    for handle in &fired {
        handle.get().held_fired.set(false);
        handles::retrack_shared(handle.bind(py).as_any());
    }
    drop(fired);
}

/// `AioLoopCore`'s type object (`GreenwheelEventLoop`, its subclass, takes
/// the full check in `ExactType::cast`).
static LOOP_TYPE: ExactType<AioLoopCore> = ExactType::new();

unsafe extern "C" fn call_soon_raw(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls METH_FASTCALL methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    guard(py, || {
        // SAFETY: `slf` and the vectorcall arguments (`nargs` positional
        // values, then one per name in `kwnames`) are borrowed for the call.
        let this = unsafe { LOOP_TYPE.cast(py, slf) }?;
        let npos = usize::try_from(nargs).unwrap_or(0);
        // SAFETY: index < npos, inside the positional part.
        let arg = |i: usize| unsafe { Borrowed::from_ptr(py, *args.add(i)) };
        let (by_name, context) = if kwnames.is_null() {
            (None, None)
        } else if kwnames == CONTEXT_ONLY.load(Ordering::Relaxed) {
            // SAFETY: kwnames is `("context",)`: one keyword value follows
            // the positional ones.
            let value = unsafe { Borrowed::from_ptr(py, *args.add(npos)) };
            (None, Some(value.to_owned().unbind()))
        } else {
            // SAFETY: as above, for the keyword part that follows.
            unsafe { soon_keywords(py, args, npos, kwnames) }?
        };
        let (callback, _) = callback_arg("call_soon", npos, by_name, || arg(0).to_owned())?;
        let call_args = match npos {
            0 | 1 => Args::Tuple(PyTuple::empty(py).unbind()),
            2 => Args::One(arg(1).to_owned().unbind()),
            // SAFETY: as above, for the positional values after the
            // callback.
            _ => Args::Tuple(unsafe { rest_tuple(py, args, npos) }?.unbind()),
        };
        let handle = AioLoopCore::soon(&this, callback, call_args, context)?;
        Ok(handle.into_bound(py).into_any())
    })
}

/// The positional arguments after the first, as a tuple (the callback's
/// arguments: asyncio's Future passes one, itself, for each done callback).
///
/// Why not `PyTuple::new` from an iterator: about 145 instructions a call
/// there against a third of it here (callgrind), twice a streams echo
/// round trip.
///
/// # Safety
/// `args` must hold `npos` live object pointers, borrowed for the call, and
/// `npos` must be at least 2.
unsafe fn rest_tuple<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    npos: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let len = npos - 1;
    // SAFETY: PyTuple_New returns a new tuple of `len` empty slots or NULL
    // with an exception set (then a PyErr here).
    let tuple =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyTuple_New(len as ffi::Py_ssize_t)) }?;
    for i in 0..len {
        // SAFETY: `i + 1 < npos` (the caller's contract); each slot of the
        // fresh tuple is filled once, with a new reference it then owns.
        unsafe {
            let item = *args.add(i + 1);
            ffi::Py_INCREF(item);
            ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i as ffi::Py_ssize_t, item);
        }
    }
    // SAFETY: PyTuple_New made a tuple.
    Ok(unsafe { tuple.cast_into_unchecked::<PyTuple>() })
}

/// The first `("context",)` keyword-names tuple `call_soon` was called
/// with, kept (one reference, never released, so its address is never
/// another tuple's): CPython's Task and Future pass the same tuple on every
/// call (`call_soon(step, context=...)`), which is then known by its address.
static CONTEXT_ONLY: AtomicPtr<ffi::PyObject> = AtomicPtr::new(std::ptr::null_mut());

/// What `call_soon` got by name: (`callback`, `context`).
type SoonKeywords<'py> = (Option<Bound<'py, PyAny>>, Option<Py<PyAny>>);

/// `call_soon`'s keywords: `context`, and `callback` when not positional.
///
/// # Safety
/// `args`, `npos` and `kwnames` must be a vectorcall's arguments.
#[cold]
unsafe fn soon_keywords<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    npos: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<SoonKeywords<'py>> {
    // SAFETY: non-NULL kwnames is a live tuple (vectorcall convention).
    let names = unsafe { Borrowed::from_ptr(py, kwnames) };
    let names = names.cast::<PyTuple>()?;
    let (mut callback, mut context) = (None, None);
    for (k, name) in names.iter().enumerate() {
        // SAFETY: the keyword values follow the positional ones, one per name.
        let value = unsafe { Borrowed::from_ptr(py, *args.add(npos + k)) };
        match name.extract::<&str>()? {
            "context" => context = Some(value.to_owned().unbind()),
            "callback" => callback = Some(value.to_owned()),
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "call_soon() got an unexpected keyword argument '{name}'"
                )))
            }
        }
    }
    if names.len() == 1 && callback.is_none() && CONTEXT_ONLY.load(Ordering::Relaxed).is_null() {
        // Kept for good (see CONTEXT_ONLY): a tuple is immutable, and the
        // reference leaked here keeps its address its own.
        CONTEXT_ONLY.store(names.to_owned().into_ptr(), Ordering::Relaxed);
    }
    Ok((callback, context))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AioLoopCore>()?;
    LOOP_TYPE.install(m.py(), &[&CALL_SOON_DEF, &GET_DEBUG_DEF])?;
    soon_attr::install(m)?;
    m.add_class::<Handle>()?;
    m.add_class::<TimerHandle>()?;
    m.add_class::<ReadyQueue>()?;
    Ok(())
}
