//! `IoWatcher`: readiness of a file descriptor, and the cooperative
//! sockets' fast paths on it (`wait`, `read_nowait`, `drained`).

use std::os::unix::io::RawFd;

use pyo3::exceptions::{PyBaseException, PyTimeoutError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple, PyType};
use pyo3::PyTraverseError;

use super::{start, Watcher, WatcherCore};
use crate::poller::ALL;
use crate::py::aio::AioLoopCore;
use crate::py::errors::delay_ns;
use crate::py::fastpath::blocking_from_hub;
use crate::py::greenlet_api;
use crate::py::loop_::{Loop, LoopClock};
use crate::py::sockio::recv_once;
use crate::py::sync::{BoolCell, Guarded, U64Cell, U8Cell};

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
    /// The last greenlet that waited here and its bound `switch` (the
    /// callback while it waits). A socket is usually waited on by one
    /// greenlet again and again: reusing its `switch` spares creating and
    /// freeing a bound method per wait.
    last_switch: Guarded<Option<(Py<PyAny>, Py<PyAny>)>>,
    /// Set on the fd watchers of `greenwheel.asyncio`'s loop: the loop
    /// dispatches to this core's `io_fired` in Rust instead of calling its
    /// `_io_fired` callback (a tuple, a Python-level call and PyO3's
    /// argument parsing per event, ~300 instructions; callgrind).
    pub(crate) aio: Guarded<Option<Py<AioLoopCore>>>,
}

impl IoWatcher {
    /// A stream socket's `recv(bufsize)` bounded by `timeout` seconds (None:
    /// no bound), on this read watcher of its fd: the bytes read, `b""` at
    /// EOF. Skips the read that can only say EAGAIN while `drained`; waits
    /// (`wait`, with `timeout_args` raised at the deadline) and reads again
    /// until bytes or EOF come. Read errors are `OSError`s.
    ///
    /// What `socket._recv_within` is (the raw method of `io_raw`), and
    /// pywsgi's native request loop calls without a Python frame between it
    /// and the wait.
    pub(crate) fn recv_within(
        slf: &Bound<'_, Self>,
        hub: &Bound<'_, PyAny>,
        bufsize: isize,
        timeout: Option<f64>,
        timeout_args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyBytes>> {
        let py = slf.py();
        let this = slf.get();
        if !this.drained() {
            if let Some(data) = this.read_nowait(py, bufsize, 0)? {
                return Ok(data);
            }
        }
        // On time.monotonic()'s clock, as `wait` wants it.
        let deadline = timeout.map(|t| LoopClock::system_ns() as f64 / 1e9 + t);
        loop {
            IoWatcher::wait(slf, hub, true, deadline, Some(timeout_args))?;
            if let Some(data) = this.read_nowait(py, bufsize, 0)? {
                return Ok(data);
            }
        }
    }

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
            last_switch: Guarded::new(None),
            aio: Guarded::new(None),
        })
    }
}

impl Watcher for IoWatcher {
    /// `pass_events`: the callback gets the ready mask first.
    type StartOptions = bool;

    fn core(&self) -> &WatcherCore {
        &self.core
    }

    fn arm(slf: &Bound<'_, Self>, pass_events: bool) -> PyResult<()> {
        let this = slf.get();
        this.pass_events.set(pass_events);
        // A callback watches now, not the greenlet that waited last: let it
        // go (a parked pywsgi connection's greenlet has ended, and would
        // otherwise stay alive with the socket). Dropped after the lock is
        // released, as the decref may run Python code.
        let last = this
            .last_switch
            .try_borrow()
            .ok()
            .and_then(|mut l| l.take());
        drop(last);
        this.core.loop_.get().io_start(slf, false)
    }

    fn disarm(&self, lp: &Loop, py: Python<'_>) -> PyResult<()> {
        lp.io_stop(py, self);
        Ok(())
    }

    fn repr_extra(&self) -> String {
        format!(" fd={} events={}", self.fd, self.events.get())
    }

    fn visit_extra(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(resume) = self.resume.try_borrow() {
            if let Some(glet) = resume.as_ref() {
                visit.call(glet)?;
            }
        }
        if let Ok(last) = self.last_switch.try_borrow() {
            if let Some((glet, switch)) = last.as_ref() {
                visit.call(glet)?;
                visit.call(switch)?;
            }
        }
        if let Ok(aio) = self.aio.try_borrow() {
            if let Some(core) = aio.as_ref() {
                visit.call(core)?;
            }
        }
        Ok(())
    }

    fn clear_extra(&self) {
        let old = self.resume.try_borrow().ok().and_then(|mut r| r.take());
        drop(old);
        let old = self
            .last_switch
            .try_borrow()
            .ok()
            .and_then(|mut r| r.take());
        drop(old);
        let old = self.aio.try_borrow().ok().and_then(|mut r| r.take());
        drop(old);
    }
}

impl IoWatcher {
    /// `glet.switch`, the same bound method as last time when `glet` waited
    /// here last (see `last_switch`).
    fn switch_of<'py>(&self, glet: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = glet.py();
        // Cloned out under the lock, which is released before anything runs.
        let cached = match self.last_switch.try_borrow() {
            Ok(last) => last
                .as_ref()
                .filter(|(g, _)| g.is(glet))
                .map(|(_, switch)| switch.clone_ref(py)),
            Err(_) => None,
        };
        if let Some(switch) = cached {
            return Ok(switch.into_bound(py));
        }
        let switch = glet.getattr(pyo3::intern!(py, "switch"))?;
        // The old pair is dropped after the lock is released: a decref may
        // run Python code (a finished greenlet's last reference).
        let old = self
            .last_switch
            .replace(Some((glet.clone().unbind(), switch.clone().unbind())));
        drop(old);
        Ok(switch)
    }
}

/// The error of a wait whose deadline passed: what `glet.throw(*args)` raises
/// in `glet`, the current greenlet (so an exception class gets its arguments
/// exactly as `throw` would give them).
///
/// The usual `(exception class, value)` is made here, as `throw` would make
/// it (the class called with the value: with its items for a tuple, with
/// none for None), because a `throw` into the current greenlet costs about
/// 40,000 instructions of C++ exception unwinding inside greenlet
/// (callgrind: `__cxa_rethrow` under `g_switch_finish`), and a parked pywsgi
/// connection is a timed-out wait.
#[cold]
fn timed_out(glet: &Bound<'_, PyAny>, args: Option<&Bound<'_, PyTuple>>) -> PyErr {
    let py = glet.py();
    if let Some(args) = args {
        if let Ok((kind, value)) = args.extract::<(Bound<'_, PyType>, Bound<'_, PyAny>)>() {
            if kind.is_subclass_of::<PyBaseException>().unwrap_or(false)
                && !value.is_instance_of::<PyBaseException>()
            {
                return PyErr::from_type(kind, value.unbind());
            }
        }
    }
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
        start(slf, callback, args, pass_events)
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
                // `deadline` is on the system clock (time.monotonic()); the
                // wait is timed on the loop's clock (virtual in tests).
                let clock = this.core.loop_.get().clock();
                let ns = clock.deadline_from_system(delay_ns("deadline", secs)?);
                if ns <= clock.now_ns() {
                    return Err(timed_out(&current, timeout_args));
                }
                Some(ns)
            }
            None => None,
        };
        let switch = this.switch_of(&current)?;
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
