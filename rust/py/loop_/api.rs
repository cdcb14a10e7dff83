//! The Python-facing methods of `Loop` (see `greenwheel/_core.pyi`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::os::unix::io::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyTraverseError;

use super::{close_fds, make_pipe, CallbackPass, Loop, LoopClock, Queued, State, TimerEntry};
use crate::clock::ns_to_secs;
use crate::poller::{FdMap, Poller, READ};
use crate::py::async_watcher::{lock, AsyncWatcher, Shared};
use crate::py::callback::Callback;
use crate::py::errors::os_error;
use crate::py::greenlet_api;
use crate::py::sync::{BoolCell, Guarded, I32Cell, IsizeCell, U64Cell};
use crate::py::watchers::{IoWatcher, Phase, PhaseWatcher, SignalWatcher, TimerWatcher};
use crate::wheel::TimerWheel;

/// The calling OS thread's identifier as CPython's `threading.get_ident()`
/// computes it (`pthread_self()` as an integer).
fn current_thread_ident() -> u64 {
    // SAFETY: pthread_self has no preconditions and always succeeds.
    let me = unsafe { libc::pthread_self() };
    me as u64
}

#[pymethods]
impl Loop {
    #[new]
    #[pyo3(signature = (flags = None, default = None))]
    fn new(
        py: Python<'_>,
        flags: Option<&Bound<'_, PyAny>>,
        default: Option<bool>,
    ) -> PyResult<Self> {
        let _ = flags; // libev backend flags: the backend here is always epoll/kqueue
        let is_main = py
            .import("threading")?
            .call_method0("current_thread")?
            .is(&py.import("threading")?.call_method0("main_thread")?);
        let poller = Poller::new().map_err(os_error)?;
        let (sig_read, sig_write) = make_pipe().map_err(os_error)?;
        let shared = Arc::new(Shared::new(poller.waker()));
        let clock = LoopClock::new();
        let mut st = State {
            wheel: TimerWheel::new(clock.now_ns()),
            poller,
            fds: FdMap::default(),
            asyncs: Vec::new(),
            signals: BTreeMap::new(),
            prepare: Vec::new(),
            check: Vec::new(),
            idle: Vec::new(),
            fork: Vec::new(),
            ready: Vec::new(),
            carry: Vec::new(),
            rearm_pending: Vec::new(),
            timer_batch: Vec::new(),
            last_poll_ns: 0,
            inflight_sleeps: HashSet::new(),
            sig_read,
        };
        if let Err(e) = st.poller.arm(sig_read, READ) {
            close_fds(&[sig_read, sig_write]);
            return Err(os_error(e));
        }
        Ok(Loop {
            state: Guarded::new(Some(st)),
            callbacks: Guarded::new(VecDeque::new()),
            sched: super::sched::Scheduler::new(),
            resume_seq: U64Cell::new(0),
            requeued_sleeps: U64Cell::new(0),
            pass: CallbackPass::new(),
            error_handler: Guarded::new(None),
            shared,
            activecnt: IsizeCell::new(0),
            now_ns: U64Cell::new(clock.now_ns()),
            clock,
            iteration: U64Cell::new(0),
            kernel_polls: U64Cell::new(0),
            io_left: U64Cell::new(0),
            break_requested: BoolCell::new(false),
            destroyed: BoolCell::new(false),
            signal_pending: BoolCell::new(false),
            default: default.unwrap_or(is_main) && is_main,
            sig_write: I32Cell::new(sig_write),
            owner_ident: current_thread_ident(),
        })
    }

    /// An object with `handle_error(context, type, value, tb)`, or None.
    #[getter]
    fn error_handler(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.error_handler
            .borrow()
            .as_ref()
            .map(|h| h.clone_ref(py))
    }

    #[setter]
    fn set_error_handler(&self, value: Option<Py<PyAny>>) {
        let old = self.error_handler.replace(value);
        drop(old);
    }

    /// True for the main thread's loop (until it is destroyed).
    #[getter]
    fn default(&self) -> bool {
        self.default && !self.destroyed.get()
    }

    /// The granularity of timers, in seconds (the wheel's tick).
    #[getter]
    fn approx_timer_resolution(&self) -> f64 {
        ns_to_secs(crate::wheel::DEFAULT_TICK_NS)
    }

    /// A non-zero identifier while the loop is alive (0 after destroy).
    #[getter]
    fn ptr(slf: &Bound<'_, Self>) -> usize {
        if slf.get().state.borrow().is_some() {
            slf.as_ptr() as usize
        } else {
            0
        }
    }

    /// How many passes the loop has made.
    #[getter]
    fn iteration(&self) -> u64 {
        self.iteration.get()
    }

    /// Callbacks waiting to run.
    #[getter]
    fn pendingcnt(&self) -> usize {
        self.callbacks.borrow_mut().len()
    }

    /// Referenced active watchers.
    #[getter]
    fn activecnt(&self) -> isize {
        self.activecnt.get()
    }

    /// Timers armed in the wheel (referenced or not).
    #[getter]
    fn timer_count(&self) -> PyResult<usize> {
        self.with_state(|st| st.wheel.len())
    }

    /// Write end of the signal wake-up pipe, for `signal.set_wakeup_fd`.
    #[getter]
    fn sigfd(&self) -> RawFd {
        self.sig_write.get()
    }

    /// Cached loop time in seconds (monotonic), updated once per iteration.
    fn now(&self) -> f64 {
        ns_to_secs(self.now_ns.get())
    }

    /// Refresh the cached time.
    fn update_now(&self) {
        self.refresh_now();
    }

    /// Same as `update_now()` (libuv naming).
    fn update(&self) {
        self.refresh_now();
    }

    /// Run until nothing referenced is left, `break_()`, or one pass with
    /// `once`/`nowait`. Returns True if referenced work remains.
    #[pyo3(signature = (nowait = false, once = false))]
    fn run(&self, py: Python<'_>, nowait: bool, once: bool) -> PyResult<bool> {
        self.check_usable()?;
        self.break_requested.set(false);
        loop {
            self.run_callbacks(py)?;
            if self.break_requested.replace(false) {
                break;
            }
            self.run_phase(py, Phase::Prepare)?;
            // Like libev, `once`/`nowait` always make one pass (that pass does
            // not block when nothing referenced is left).
            if self.activecnt.get() <= 0 && !self.has_callbacks() && !(nowait || once) {
                return Ok(false);
            }
            self.pass(py, nowait, once)?;
            if nowait || once || self.break_requested.replace(false) {
                break;
            }
        }
        Ok(self.activecnt.get() > 0 || self.has_callbacks())
    }

    /// Make `run()` return after the current pass.
    #[pyo3(signature = (how = 2))]
    fn break_(&self, how: i32) {
        let _ = how;
        self.break_requested.set(true);
    }

    /// Drop the objects whose notification is queued: their hub is being
    /// destroyed and the loop kept for the next one. Internal, used by
    /// `greenwheel._abstract_linkable`.
    fn _forget_ready(&self) -> PyResult<()> {
        // (Not check_usable: a destroyed loop has nothing queued, and
        // Hub.destroy() may come after loop.destroy().)
        self.check_owner()?;
        self.forget_ready();
        Ok(())
    }

    /// Queue `func(*args)` to run at the next pass (FIFO).
    #[pyo3(signature = (func, *args))]
    fn run_callback(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<Callback>> {
        self.check_usable()?;
        crate::py::errors::check_callable(func)?;
        let cb = Py::new(
            py,
            Callback::new(func.clone().unbind(), args.clone().unbind()),
        )?;
        self.push_callback(Queued::Call(cb.clone_ref(py)));
        Ok(cb)
    }

    /// Switch into greenlet `glet` (not started yet) at the next pass, in
    /// FIFO order with the other callbacks. Skipped if `glet` has started by
    /// then (someone switched into it directly). Cheaper than
    /// `run_callback(glet.switch)`: no bound method, no `Callback` object.
    fn start_soon(&self, glet: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_usable()?;
        if !greenlet_api::is_greenlet(glet.py(), glet)? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "expected a greenlet, not {}",
                glet.get_type().name()?
            )));
        }
        self.push_callback(Queued::Start(glet.clone().unbind()));
        Ok(())
    }

    /// `sleep(0)` for greenlet `hub`'s children: queue a resume of the current
    /// greenlet, switch to `hub`, and return once the loop resumes us.
    /// Raises `BlockingSwitchOutError` when called from `hub` itself.
    fn yield_now(&self, py: Python<'_>, hub: &Bound<'_, PyAny>) -> PyResult<()> {
        self.yield_current(py, hub, false)
    }

    /// `run_callback` from any OS thread; wakes the loop.
    #[pyo3(signature = (func, *args))]
    fn run_callback_threadsafe(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<Callback>> {
        if self.destroyed.get() {
            return Err(Self::closed());
        }
        crate::py::errors::check_callable(func)?;
        let cb = Py::new(
            py,
            Callback::new(func.clone().unbind(), args.clone().unbind()),
        )?;
        // The shared queue holds `(callable, args)` pairs; a `Callback` with
        // no arguments stands for itself (it is not callable, so no user
        // call looks like that): see `dispatch_asyncs`.
        lock(&self.shared.threadsafe)
            .push((cb.clone_ref(py).into_any(), PyTuple::empty(py).unbind()));
        self.shared.wake();
        Ok(cb)
    }

    /// A timer `after` seconds from its start; `repeat` > 0 re-arms it.
    #[pyo3(signature = (after, repeat = 0.0, r#ref = true, priority = None), text_signature = "($self, after, repeat=0.0, ref=True, priority=None)")]
    fn timer(
        slf: &Bound<'_, Self>,
        after: f64,
        repeat: f64,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<TimerWatcher>> {
        Py::new(
            slf.py(),
            TimerWatcher::new(slf.clone().unbind(), after, repeat, r#ref, priority)?,
        )
    }

    /// Watch `fd` for `events` (READ, WRITE or both).
    #[pyo3(signature = (fd, events, r#ref = true, priority = None), text_signature = "($self, fd, events, ref=True, priority=None)")]
    fn io(
        slf: &Bound<'_, Self>,
        fd: i64,
        events: i64,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<IoWatcher>> {
        Py::new(
            slf.py(),
            IoWatcher::new(slf.clone().unbind(), fd, events, r#ref, priority)?,
        )
    }

    /// A watcher whose `send()` may be called from any thread.
    #[pyo3(signature = (r#ref = true, priority = None), text_signature = "($self, ref=True, priority=None)")]
    fn async_(
        slf: &Bound<'_, Self>,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<AsyncWatcher>> {
        let shared = Arc::clone(&slf.get().shared);
        Py::new(
            slf.py(),
            AsyncWatcher::new(slf.clone().unbind(), shared, r#ref, priority),
        )
    }

    /// Only called for names ordinary lookup did not find: answers `async`,
    /// `async_()`'s historical name (a keyword, so it is served from here
    /// rather than declared).
    fn __getattr__(slf: &Bound<'_, Self>, name: &str) -> PyResult<Py<PyAny>> {
        if name == "async" {
            return Ok(slf.getattr("async_")?.unbind());
        }
        Err(pyo3::exceptions::PyAttributeError::new_err(format!(
            "'greenwheel._core.Loop' object has no attribute '{name}'"
        )))
    }

    /// Runs its callback once in the child process after `os.fork()`
    /// (from the first pass after `reinit()`).
    #[pyo3(signature = (r#ref = true, priority = None), text_signature = "($self, ref=True, priority=None)")]
    fn fork(
        slf: &Bound<'_, Self>,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<PhaseWatcher>> {
        Self::phase_watcher(slf, Phase::Fork, r#ref, priority)
    }

    /// A watcher of the child process `pid` (see `greenwheel.core`).
    #[pyo3(signature = (pid, trace = 0, r#ref = true), text_signature = "($self, pid, trace=0, ref=True)")]
    fn child<'py>(
        slf: &Bound<'py, Self>,
        pid: i64,
        trace: i32,
        r#ref: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("greenwheel.core")?
            .getattr("_ChildWatcher")?
            .call1((slf, pid, trace, r#ref))
    }

    /// A watcher of the file system entry at `path`, polled every
    /// `interval` seconds (see `greenwheel.core`).
    #[pyo3(signature = (path, interval = 0.0, r#ref = true, priority = None), text_signature = "($self, path, interval=0.0, ref=True, priority=None)")]
    fn stat<'py>(
        slf: &Bound<'py, Self>,
        path: &Bound<'py, PyAny>,
        interval: f64,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("greenwheel.core")?
            .getattr("_StatWatcher")?
            .call1((slf, path, interval, r#ref, priority))
    }

    /// Run a callback from the loop when `signum` arrives (main thread only).
    #[pyo3(signature = (signum, r#ref = true, priority = None), text_signature = "($self, signum, ref=True, priority=None)")]
    fn signal(
        slf: &Bound<'_, Self>,
        signum: i32,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<SignalWatcher>> {
        Py::new(
            slf.py(),
            SignalWatcher::new(slf.clone().unbind(), signum, r#ref, priority)?,
        )
    }

    /// Runs its callback on passes that would otherwise block.
    #[pyo3(signature = (r#ref = true, priority = None), text_signature = "($self, ref=True, priority=None)")]
    fn idle(
        slf: &Bound<'_, Self>,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<PhaseWatcher>> {
        Self::phase_watcher(slf, Phase::Idle, r#ref, priority)
    }

    /// Runs its callback before each poll.
    #[pyo3(signature = (r#ref = true, priority = None), text_signature = "($self, ref=True, priority=None)")]
    fn prepare(
        slf: &Bound<'_, Self>,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<PhaseWatcher>> {
        Self::phase_watcher(slf, Phase::Prepare, r#ref, priority)
    }

    /// Runs its callback after each poll.
    #[pyo3(signature = (r#ref = true, priority = None), text_signature = "($self, ref=True, priority=None)")]
    fn check(
        slf: &Bound<'_, Self>,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<PhaseWatcher>> {
        Self::phase_watcher(slf, Phase::Check, r#ref, priority)
    }

    /// Tell the loop `fd` is about to be closed: drops its kernel
    /// registration. Returns True if watchers were still active on it.
    fn closing_fd(&self, fd: i64) -> PyResult<bool> {
        self.check_usable()?;
        let Ok(fd) = RawFd::try_from(fd) else {
            return Ok(false);
        };
        self.with_state(|st| {
            st.poller.forget(fd);
            // `io_stop` keeps an fd's entry while the fd is open; a closed
            // fd's empty entry goes here (an empty Vec: no object dropped
            // under the borrow).
            let active = st.fds.get(&fd).is_some_and(|e| !e.watchers.is_empty());
            if !active {
                st.fds.remove(&fd);
            }
            active
        })
    }

    /// Re-create the poller after `os.fork()`, re-registering active fds.
    /// The signal pipe is re-created too (the child must not share it with
    /// the parent), so `sigfd` changes: re-install it with
    /// `signal.set_wakeup_fd` after calling this.
    fn reinit(&self, py: Python<'_>) -> PyResult<()> {
        self.check_usable()?;
        let waker = self
            .with_state(|st| st.poller.reinit())?
            .map_err(os_error)?;
        self.shared.replace_waker(Some(waker));
        let (sig_read, sig_write) = make_pipe().map_err(os_error)?;
        let old_read = self.with_state(|st| {
            st.poller.forget(st.sig_read);
            std::mem::replace(&mut st.sig_read, sig_read)
        })?;
        close_fds(&[old_read, self.sig_write.replace(sig_write)]);
        self.with_state(|st| st.poller.arm(sig_read, READ))?
            .map_err(os_error)?;
        // Anything sent before the fork may have hit the old waker.
        self.shared.async_pending.store(true, Ordering::Release);
        // Fork watchers run once, from the next pass.
        let forks: Vec<Py<PhaseWatcher>> =
            self.with_state(|st| st.fork.iter().map(|w| w.clone_ref(py)).collect())?;
        for w in forks {
            if let Some((f, a)) = w.get().core.call_parts(py) {
                let cb = Py::new(py, Callback::new(f, a))?;
                self.push_callback(Queued::Call(cb));
            }
        }
        Ok(())
    }

    /// The epoll/kqueue descriptor, or -1 after destroy.
    fn fileno(&self) -> RawFd {
        self.state
            .borrow()
            .as_ref()
            .map_or(-1, |st| st.poller.fileno())
    }

    /// Stop every watcher and free the poller; the loop is unusable after.
    /// From another thread only once the owning thread has exited (nothing
    /// can be running the loop then).
    fn destroy(&self, py: Python<'_>) -> PyResult<()> {
        if let Err(err) = self.shared.check_owner() {
            if self.owner_alive(py)? {
                return Err(err);
            }
        }
        self.teardown(py, true)
    }

    /// Route an exception to `error_handler` (or print it).
    fn handle_error(
        &self,
        py: Python<'_>,
        context: &Bound<'_, PyAny>,
        r#type: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        tb: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let _ = (r#type, tb);
        let err = PyErr::from_value(value.clone());
        self.report(py, context, err)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let this = slf.get();
        format!(
            "<greenwheel._core.Loop at {:#x} {}iteration={} pending={} active={}>",
            slf.as_ptr() as usize,
            if this.default { "default " } else { "" },
            this.iteration.get(),
            this.callbacks.borrow_mut().len(),
            this.activecnt.get(),
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(h) = self.error_handler.try_borrow() {
            visit.call(&*h)?;
        }
        self.traverse_sched(&visit)?;
        if let Ok(cbs) = self.callbacks.try_borrow() {
            for entry in cbs.iter() {
                match entry {
                    Queued::Call(cb) => visit.call(cb)?,
                    Queued::Resume { glet, .. } => visit.call(glet)?,
                    Queued::Start(glet) => visit.call(glet)?,
                    Queued::Drain => {}
                }
            }
        }
        if let Ok(st) = self.state.try_borrow() {
            if let Some(st) = st.as_ref() {
                for entry in st.wheel.values() {
                    match entry {
                        TimerEntry::Watcher(t) => visit.call(t)?,
                        TimerEntry::Timeout(t) => visit.call(t)?,
                        TimerEntry::Sleep { glet, .. } => visit.call(glet)?,
                        TimerEntry::Aio(h) => visit.call(h)?,
                        TimerEntry::Kick(core) => visit.call(core)?,
                    }
                }
                for e in st.fds.values() {
                    for w in &e.watchers {
                        visit.call(w)?;
                    }
                }
                for w in &st.asyncs {
                    visit.call(w)?;
                }
                for slot in st.signals.values() {
                    visit.call(&slot.previous)?;
                    for w in &slot.watchers {
                        visit.call(w)?;
                    }
                }
                for w in st
                    .prepare
                    .iter()
                    .chain(st.check.iter())
                    .chain(st.idle.iter())
                    .chain(st.fork.iter())
                {
                    visit.call(w)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let handler = self
            .error_handler
            .try_borrow_mut()
            .ok()
            .and_then(|mut h| h.take());
        drop(handler);
        if let Err(err) = self.teardown(py, false) {
            err.write_unraisable(py, None);
        }
    }
}
