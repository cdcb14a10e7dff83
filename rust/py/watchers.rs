//! Watchers bound to one loop: timers, fd readiness, signals, and the
//! idle / prepare / check phase hooks.
//!
//! Invariants:
//! - `active` is true exactly while the loop holds a strong reference to the
//!   watcher (in the wheel, an fd list, a signal slot or a phase list); a
//!   stopped watcher is unreachable from the loop, so it is freed when Python
//!   drops it.
//! - A watcher with `ref = true` counts in `Loop.activecnt` while active;
//!   `set_ref` on an active watcher moves the count so it never drifts.
//! - `stop()` is safe at any time, including from the watcher's own callback
//!   and for a watcher whose event is already in the loop's current batch:
//!   the loop re-checks each watcher's state right before calling it.
//! - The state lives in the `Sync` cells of `py/sync.rs`; none is held while
//!   Python runs.

use std::os::unix::io::RawFd;

use pyo3::exceptions::{PyAttributeError, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use pyo3::PyTraverseError;

use super::errors::{check_callable, delay_ns};
use super::fastpath::blocking_from_hub;
use super::greenlet_api;
use super::loop_::Loop;
use super::sockio::recv_once;
use super::sync::{BoolCell, Guarded, HandleCell, I32Cell, U64Cell, U8Cell};
use crate::clock::{monotonic_ns, ns_to_secs};
use crate::poller::ALL;

/// State every watcher kind shares.
pub(crate) struct WatcherCore {
    pub(crate) loop_: Py<Loop>,
    call: Guarded<Option<(Py<PyAny>, Py<PyTuple>)>>,
    active: BoolCell,
    pending: BoolCell,
    ref_: BoolCell,
    priority: I32Cell,
    /// `args` was set to None: the callback gets no arguments and `args`
    /// reads None (gevent's watchers allow that).
    args_none: BoolCell,
}

impl WatcherCore {
    pub(crate) fn new(loop_: Py<Loop>, ref_: bool, priority: Option<i32>) -> Self {
        WatcherCore {
            loop_,
            call: Guarded::new(None),
            active: BoolCell::new(false),
            pending: BoolCell::new(false),
            ref_: BoolCell::new(ref_),
            priority: I32Cell::new(priority.unwrap_or(0)),
            args_none: BoolCell::new(false),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.get()
    }

    pub(crate) fn set_pending(&self, pending: bool) {
        self.pending.set(pending);
    }

    /// Clears `pending`, returning whether it was set (the watcher is due).
    pub(crate) fn take_pending(&self) -> bool {
        self.pending.replace(false)
    }

    /// Stores the callback; raises TypeError if it is not callable.
    pub(crate) fn set_call(
        &self,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        check_callable(callback)?;
        self.args_none.set(false);
        let old = {
            let mut call = self.call.borrow_mut();
            // A reused watcher restarted with the same call (the common case)
            // keeps its references: no reference-count churn.
            if let Some((f, a)) = call.as_ref() {
                if f.is(callback) && a.is(args) {
                    return Ok(());
                }
            }
            call.replace((callback.clone().unbind(), args.clone().unbind()))
        };
        drop(old); // after the lock is released: a decref may run Python code
        Ok(())
    }

    /// [`set_call`](Self::set_call) for a callback and arguments that arrive
    /// as a vectorcall's borrowed values: the argument tuple is only built
    /// when the call differs from the stored one.
    pub(crate) fn set_call_from<'a, 'py>(
        &self,
        callback: Borrowed<'a, 'py, PyAny>,
        args: impl ExactSizeIterator<Item = Borrowed<'a, 'py, PyAny>> + Clone,
    ) -> PyResult<()> {
        check_callable(&callback)?;
        self.args_none.set(false);
        let py = callback.py();
        let old = {
            let mut call = self.call.borrow_mut();
            if let Some((f, a)) = call.as_ref() {
                let a = a.bind(py);
                if f.is(&*callback)
                    && a.len() == args.len()
                    && a.iter_borrowed().zip(args.clone()).all(|(x, y)| x.is(&*y))
                {
                    return Ok(());
                }
            }
            // Building the tuple only increfs: no Python code runs here.
            let new_args = PyTuple::new(py, args)?;
            call.replace((callback.to_owned().unbind(), new_args.unbind()))
        };
        // After the lock is released (a decref may run Python code), and
        // through `drop_ref`: see `raw_fn` on references dropped there.
        if let Some((f, a)) = old {
            f.drop_ref(py);
            a.drop_ref(py);
        }
        Ok(())
    }

    /// A new reference to the callback and its args, for one invocation.
    pub(crate) fn call_parts(&self, py: Python<'_>) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        self.call
            .borrow()
            .as_ref()
            .map(|(f, a)| (f.clone_ref(py), a.clone_ref(py)))
    }

    /// Flips `active` and keeps the loop's referenced-watcher count in step.
    pub(crate) fn mark_active(&self, lp: &Loop, active: bool) {
        if self.active.replace(active) != active && self.ref_.get() {
            lp.adjust_activecnt(if active { 1 } else { -1 });
        }
        if !active {
            self.pending.set(false);
        }
    }

    fn set_ref(&self, py: Python<'_>, value: bool) {
        if self.ref_.replace(value) != value && self.active.get() {
            self.loop_
                .bind(py)
                .borrow()
                .adjust_activecnt(if value { 1 } else { -1 });
        }
    }

    fn clear_call(&self) {
        let old = self.call.take();
        drop(old);
    }

    /// Takes the callback and its arguments out (for a one-shot event).
    pub(crate) fn take_call(&self) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        self.call.take()
    }

    /// The `callback` setter: a callable (the arguments stay), or None
    /// (forget the callback and arguments).
    fn set_callback(&self, py: Python<'_>, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        // PyO3 hands both `= None` and `del` over as None: either forgets.
        let Some(value) = value.filter(|v| !v.is_none()) else {
            self.clear_call();
            return Ok(());
        };
        check_callable(value)?;
        let old = {
            let mut call = self.call.borrow_mut();
            let args = match call.as_ref() {
                Some((_, a)) => a.clone_ref(py),
                None => PyTuple::empty(py).unbind(),
            };
            call.replace((value.clone().unbind(), args))
        };
        drop(old); // after the lock: a decref may run Python code
        Ok(())
    }

    /// The `args` getter: None without a callback or after `args = None`.
    fn get_args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        if self.args_none.get() {
            return None;
        }
        self.call_parts(py).map(|(_, a)| a)
    }

    /// The `args` setter: a tuple, or None (no arguments).
    fn set_args(&self, py: Python<'_>, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        // PyO3 hands both `= None` and `del` over as None: either means no
        // arguments.
        let (args, none) = if let Some(value) = value.filter(|v| !v.is_none()) {
            let Ok(t) = value.cast_exact::<PyTuple>() else {
                return Err(PyTypeError::new_err(format!(
                    "args must be a tuple or None, not {}",
                    value.get_type().name()?
                )));
            };
            (t.clone(), false)
        } else {
            (PyTuple::empty(py), true)
        };
        let old = {
            let mut call = self.call.borrow_mut();
            let func = match call.as_ref() {
                Some((f, _)) => f.clone_ref(py),
                None => py.None(),
            };
            call.replace((func, args.unbind()))
        };
        self.args_none.set(none);
        drop(old); // after the lock: a decref may run Python code
        Ok(())
    }

    /// The `priority` setter: only while stopped, as in libev.
    fn set_priority(&self, value: i32) -> PyResult<()> {
        if self.active.get() {
            return Err(PyAttributeError::new_err(
                "cannot set the priority of an active watcher",
            ));
        }
        self.priority.set(value);
        Ok(())
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Ok(call) = self.call.try_borrow() {
            if let Some((f, a)) = call.as_ref() {
                visit.call(f)?;
                visit.call(a)?;
            }
        }
        Ok(())
    }

    fn describe(&self, py: Python<'_>, kind: &str, addr: usize, extra: &str) -> PyResult<String> {
        let mut s = format!("<{kind} at {addr:#x}");
        if self.active.get() {
            s.push_str(" active");
        }
        if self.pending.get() {
            s.push_str(" pending");
        }
        if !self.ref_.get() {
            s.push_str(" ref=False");
        }
        s.push_str(extra);
        if let Some((f, a)) = self.call_parts(py) {
            s.push_str(&format!(" callback={}", f.bind(py).repr()?));
            if !a.bind(py).is_empty() {
                s.push_str(&format!(" args={}", a.bind(py).repr()?));
            }
        }
        s.push('>');
        Ok(s)
    }
}

/// The Python methods every watcher class shares (a second `#[pymethods]`
/// block per class, hence PyO3's `multiple-pymethods`). Each type provides
/// `fn core(&self)`, `fn do_stop(&self, py)` and `fn repr_extra(&self)`.
///
/// `watcher_methods!(T, "T", raw_stop)` leaves `stop` out, for a class that
/// installs its own (`TimerWatcher`, see `timer_raw`).
macro_rules! watcher_methods {
    ($ty:ident, $kind:literal) => {
        watcher_methods!($ty, $kind, raw_stop);

        #[pymethods]
        impl $ty {
            /// Stop watching. Safe at any time, also from the callback.
            fn stop(&self, py: Python<'_>) -> PyResult<()> {
                self.do_stop(py)
            }
        }
    };
    ($ty:ident, $kind:literal, raw_stop) => {
        #[pymethods]
        impl $ty {
            /// The loop this watcher belongs to.
            #[getter]
            #[pyo3(name = "loop")]
            fn get_loop(&self, py: Python<'_>) -> Py<Loop> {
                self.core().loop_.clone_ref(py)
            }

            /// The callback, or None.
            #[getter]
            fn callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
                self.core().call_parts(py).map(|(f, _)| f)
            }

            #[setter]
            #[pyo3(name = "callback")]
            fn set_callback_py(
                &self,
                py: Python<'_>,
                value: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<()> {
                self.core().set_callback(py, value)
            }

            /// The arguments passed to the callback (None without a callback).
            #[getter]
            fn args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
                self.core().get_args(py)
            }

            #[setter]
            #[pyo3(name = "args")]
            fn set_args_py(
                &self,
                py: Python<'_>,
                value: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<()> {
                self.core().set_args(py, value)
            }

            /// True between start() and stop().
            #[getter]
            fn active(&self) -> bool {
                self.core().is_active()
            }

            /// True while the event happened and the callback is about to run.
            #[getter]
            fn pending(&self) -> bool {
                self.core().pending.get()
            }

            /// Whether an active watcher keeps `Loop.run()` from returning.
            #[getter]
            #[pyo3(name = "ref")]
            fn get_ref(&self) -> bool {
                self.core().ref_.get()
            }

            #[setter]
            #[pyo3(name = "ref")]
            fn set_ref_py(&self, py: Python<'_>, value: bool) {
                self.core().set_ref(py, value);
            }

            /// Priority (kept for gevent compatibility; events dispatch in
            /// arrival order).
            #[getter]
            fn priority(&self) -> i32 {
                self.core().priority.get()
            }

            #[setter]
            #[pyo3(name = "priority")]
            fn set_priority_py(&self, value: i32) -> PyResult<()> {
                self.core().set_priority(value)
            }

            /// Stop and release the callback and its arguments.
            fn close(&self, py: Python<'_>) -> PyResult<()> {
                self.do_stop(py)?;
                self.core().clear_call();
                Ok(())
            }

            fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
                slf
            }

            #[pyo3(signature = (*_exc))]
            fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<()> {
                self.close(py)
            }

            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                let this = slf.get();
                let extra = this.repr_extra();
                this.core()
                    .describe(slf.py(), $kind, slf.as_ptr() as usize, &extra)
            }

            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                self.core().traverse(&visit)?;
                self.visit_extra(&visit)
            }

            fn __clear__(&self) {
                self.core().clear_call();
                self.clear_extra();
            }
        }
    };
}

/// Python references a watcher kind holds beyond [`WatcherCore`], for GC.
trait ExtraRefs {
    fn visit_extra(&self, _visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        Ok(())
    }

    fn clear_extra(&self) {}
}

impl ExtraRefs for TimerWatcher {}
impl ExtraRefs for SignalWatcher {}
impl ExtraRefs for PhaseWatcher {}

impl ExtraRefs for IoWatcher {
    fn visit_extra(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(resume) = self.resume.try_borrow() {
            if let Some(glet) = resume.as_ref() {
                visit.call(glet)?;
            }
        }
        Ok(())
    }

    fn clear_extra(&self) {
        let old = self.resume.try_borrow().ok().and_then(|mut r| r.take());
        drop(old);
    }
}

// ---------------------------------------------------------------- timers

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

    fn core(&self) -> &WatcherCore {
        &self.core
    }

    pub(crate) fn do_stop(&self, py: Python<'_>) -> PyResult<()> {
        let lp = self.core.loop_.get();
        lp.check_owner()?;
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
        let this = slf.get();
        this.core.set_call(callback, args)?;
        let lp = this.core.loop_.get();
        lp.timer_start(slf, update)
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

// ------------------------------------------------------------ fd readiness

/// Readiness of a file descriptor.
#[pyclass(frozen, weakref, module = "greenwheel._core")]
pub(crate) struct IoWatcher {
    pub(crate) core: WatcherCore,
    pub(crate) fd: RawFd,
    pub(crate) events: U8Cell,
    pub(crate) pass_events: BoolCell,
    /// Set while a greenlet blocks in `wait()`: the loop switches into it
    /// directly instead of calling the callback.
    pub(crate) resume: Guarded<Option<Py<PyAny>>>,
    /// `read_nowait` emptied the kernel's receive queue when the loop's
    /// `kernel_polls` was `drained_at - 1` (0: no such knowledge). While the
    /// count is unchanged, every byte that arrived since is behind an edge
    /// still queued in the kernel, so a wait needs no recv first.
    drained_at: U64Cell,
}

impl IoWatcher {
    pub(crate) fn new(
        loop_: Py<Loop>,
        fd: i64,
        events: i64,
        ref_: bool,
        priority: Option<i32>,
    ) -> PyResult<Self> {
        let fd = RawFd::try_from(fd)
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| {
                PyValueError::new_err(format!("fd must be a non-negative int, not {fd}"))
            })?;
        Ok(IoWatcher {
            core: WatcherCore::new(loop_, ref_, priority),
            fd,
            events: U8Cell::new(check_events(events)?),
            pass_events: BoolCell::new(false),
            resume: Guarded::new(None),
            drained_at: U64Cell::new(0),
        })
    }

    fn core(&self) -> &WatcherCore {
        &self.core
    }

    fn do_stop(&self, py: Python<'_>) -> PyResult<()> {
        let lp = self.core.loop_.get();
        lp.check_owner()?;
        lp.io_stop(py, self);
        Ok(())
    }

    fn repr_extra(&self) -> String {
        format!(" fd={} events={}", self.fd, self.events.get())
    }
}

/// The error of a wait whose deadline passed: what `glet.throw(*args)` raises
/// in `glet`, the current greenlet (so an exception class gets its arguments
/// exactly as `throw` would give them).
#[cold]
fn timed_out(glet: &Bound<'_, PyAny>, args: Option<&Bound<'_, PyTuple>>) -> PyErr {
    let py = glet.py();
    let thrown = match args {
        Some(args) => glet.call_method1(pyo3::intern!(py, "throw"), args.clone()),
        None => return PyTimeoutError::new_err("timed out"),
    };
    match thrown {
        Err(err) => err,
        // `throw` into the current greenlet raises; returning means something
        // switched back into us with a value instead.
        Ok(_) => PyTimeoutError::new_err("timed out"),
    }
}

/// gevent's error for two greenlets waiting on one watcher.
#[cold]
fn concurrent_use(py: Python<'_>, watcher: &Bound<'_, IoWatcher>) -> PyResult<PyErr> {
    let cls = py
        .import("greenwheel._exceptions")?
        .getattr("ConcurrentObjectUseError")?;
    let message = format!(
        "This socket is already used by another greenlet: {}",
        watcher.repr()?
    );
    Ok(PyErr::from_value(cls.call1((message,))?))
}

fn check_events(events: i64) -> PyResult<u8> {
    match u8::try_from(events) {
        Ok(mask) if mask != 0 && mask & !ALL == 0 => Ok(mask),
        _ => Err(PyValueError::new_err(format!(
            "events must be READ (1), WRITE (2) or both (3), not {events}"
        ))),
    }
}

watcher_methods!(IoWatcher, "IoWatcher");

#[pymethods]
impl IoWatcher {
    /// Start watching; with `pass_events` the callback gets the ready mask first.
    #[pyo3(signature = (callback, *args, pass_events = false))]
    fn start(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        pass_events: bool,
    ) -> PyResult<()> {
        let this = slf.get();
        this.core.set_call(callback, args)?;
        this.pass_events.set(pass_events);
        let lp = this.core.loop_.get();
        lp.io_start(slf, false)
    }

    /// Block the current greenlet until the fd is ready, then stop.
    ///
    /// The fast path of cooperative sockets: the loop switches straight back
    /// into the greenlet (no callback, no `Waiter`). With `known_unready`
    /// (the caller just got EAGAIN on this fd, which it owns and closes
    /// through `Loop.closing_fd`), an existing kernel registration is reused
    /// instead of re-armed. While waiting, `callback` is the greenlet's
    /// `switch`, so `Hub.cancel_wait` can throw into it.
    ///
    /// `deadline` (seconds on `time.monotonic()`'s clock) bounds the wait: a
    /// wheel entry that switches straight into the greenlet, as `sleep(t)`
    /// arms, and once it has passed the greenlet raises
    /// `getcurrent().throw(*timeout_args)` (default `TimeoutError("timed
    /// out")`, which is `socket.timeout`). A deadline already past raises
    /// without waiting.
    #[pyo3(signature = (hub, known_unready = false, deadline = None, timeout_args = None))]
    fn wait(
        slf: &Bound<'_, Self>,
        hub: &Bound<'_, PyAny>,
        known_unready: bool,
        deadline: Option<f64>,
        timeout_args: Option<&Bound<'_, PyTuple>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let current = greenlet_api::getcurrent(py)?;
        if current.is(hub) {
            return Err(blocking_from_hub(py));
        }
        if this.core.is_active() {
            return Err(concurrent_use(py, slf)?);
        }
        let deadline_ns = match deadline {
            Some(secs) => {
                let ns = delay_ns("deadline", secs)?;
                if ns <= monotonic_ns() {
                    return Err(timed_out(&current, timeout_args));
                }
                Some(ns)
            }
            None => None,
        };
        let switch = current.getattr(pyo3::intern!(py, "switch"))?;
        this.core.set_call(&switch, &PyTuple::empty(py))?;
        let old = this.resume.replace(Some(current.clone().unbind()));
        drop(old);
        let lp = this.core.loop_.get();
        let armed = lp
            .io_start(slf, known_unready)
            .and_then(|()| match deadline_ns {
                Some(ns) => lp.sleep_arm(current.clone().unbind(), ns, true).map(Some),
                None => Ok(None),
            });
        let timer = match armed {
            Ok(timer) => timer,
            Err(err) => {
                lp.io_stop(py, this);
                let old = this.resume.replace(None);
                drop(old);
                this.core.clear_call();
                return Err(err);
            }
        };
        let result = greenlet_api::switch(py, hub);
        lp.io_stop(py, this);
        let old = this.resume.replace(None);
        drop(old);
        this.core.clear_call();
        // Whatever woke us, the wheel entry must not fire into us later; if
        // it is gone, it fired: the deadline passed.
        let expired = timer.is_some_and(|h| !lp.sleep_cancel(py, h, &current, true));
        result?;
        if expired {
            return Err(timed_out(&current, timeout_args));
        }
        Ok(())
    }

    /// `recv(bufsize, flags)` on the (non-blocking) fd: the bytes read
    /// (`b""` at EOF), or None if it would block. A short read without flags
    /// (some bytes, fewer than asked for) is remembered for `drained`, unless
    /// the kernel reported a hang-up or error on the fd.
    #[pyo3(signature = (bufsize, flags = 0))]
    fn read_nowait(
        &self,
        py: Python<'_>,
        bufsize: isize,
        flags: i32,
    ) -> PyResult<Option<Py<PyBytes>>> {
        let read = recv_once(py, self.fd, bufsize, flags)?;
        let lp = self.core.loop_.get();
        // After a hang-up the short read may have stopped at the FIN (or an
        // error): the EOF is still to be read, and its edge is already spent.
        self.drained_at.set(match read {
            Some((_, true)) if flags == 0 && !lp.fd_hung_up(self.fd) => lp.kernel_polls() + 1,
            _ => 0,
        });
        Ok(read.map(|(bytes, _)| bytes))
    }

    /// True while the last `read_nowait` emptied the receive queue (a short
    /// read, with no hang-up or error ever reported for the fd: a FIN or
    /// RST has only the one edge, spent before that read) and the loop has
    /// not polled the kernel since: a recv now would say EAGAIN
    /// unless new data arrived, and new data has an edge coming. For stream
    /// sockets only, whose short reads mean an empty queue. (TCP urgent data
    /// and Unix-socket credentials can end a read early: a peer sending those
    /// has the rest read when more bytes arrive or the wait times out.)
    #[getter]
    fn drained(&self) -> bool {
        let at = self.drained_at.get();
        at != 0 && at == self.core.loop_.get().kernel_polls() + 1
    }

    /// The file descriptor.
    #[getter]
    fn fd(&self) -> RawFd {
        self.fd
    }

    /// The event mask (READ | WRITE). Settable while stopped.
    #[getter]
    fn events(&self) -> u8 {
        self.events.get()
    }

    #[setter]
    fn set_events(&self, events: i64) -> PyResult<()> {
        if self.core.is_active() {
            return Err(PyValueError::new_err(
                "cannot change events of an active watcher",
            ));
        }
        self.events.set(check_events(events)?);
        Ok(())
    }
}

// ----------------------------------------------------------------- signals

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

    fn core(&self) -> &WatcherCore {
        &self.core
    }

    fn do_stop(&self, py: Python<'_>) -> PyResult<()> {
        let lp = self.core.loop_.get();
        lp.check_owner()?;
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
        let this = slf.get();
        this.core.set_call(callback, args)?;
        let lp = this.core.loop_.get();
        lp.signal_start(slf)
    }

    /// The signal number.
    #[getter]
    fn signum(&self) -> i32 {
        self.signum
    }
}

// ------------------------------------------------------------------ phases

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

    fn core(&self) -> &WatcherCore {
        &self.core
    }

    fn do_stop(&self, py: Python<'_>) -> PyResult<()> {
        let lp = self.core.loop_.get();
        lp.check_owner()?;
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
        let this = slf.get();
        this.core.set_call(callback, args)?;
        let lp = this.core.loop_.get();
        lp.phase_start(slf)
    }

    /// "idle", "prepare" or "check".
    #[getter]
    fn phase(&self) -> &'static str {
        self.phase.name()
    }
}

/// Calls `callback(*args)` (with `prefix` arguments first, if any).
pub(crate) fn invoke(
    py: Python<'_>,
    callback: &Py<PyAny>,
    args: &Py<PyTuple>,
    prefix: Option<u8>,
) -> PyResult<()> {
    let args = args.bind(py);
    match prefix {
        None => callback.bind(py).call1(args.clone())?,
        Some(events) => {
            let mut full: Vec<Bound<'_, PyAny>> = Vec::with_capacity(args.len() + 1);
            full.push(events.into_pyobject(py)?.into_any());
            full.extend(args.iter());
            callback
                .bind(py)
                .call(PyTuple::new(py, full)?, None::<&Bound<'_, PyDict>>)?
        }
    };
    Ok(())
}
