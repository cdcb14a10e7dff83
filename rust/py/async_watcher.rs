//! `AsyncWatcher`: wakes a loop from any OS thread.
//!
//! Ground rules:
//! - `send()` may run on any thread, with or without other Python threads
//!   racing it; it only sets atomics and triggers the shared waker, so it can
//!   never observe loop state half-updated.
//! - Everything else (`start`, `stop`, dispatch) happens on the loop's own
//!   thread; calling those from elsewhere raises `RuntimeError`.
//! - A send is never lost: the per-watcher `sent` flag is set before the
//!   loop-wide flag and the wake-up, and the loop clears the loop-wide flag
//!   before reading the per-watcher ones (see `Loop::dispatch_asyncs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::Waker;
use pyo3::exceptions::PyRuntimeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyTraverseError;

use super::errors::check_callable;
use super::loop_::Loop;

/// An identifier of the calling thread, unique among live threads: its
/// `pthread_t`.
///
/// Why not a `thread_local!`'s address: in a dynamically loaded extension a
/// Rust thread-local is reached through `__tls_get_addr` (the general-dynamic
/// TLS model), about 11 instructions plus a call; `pthread_self` reads the
/// thread pointer. Every `start`/`stop` of a watcher checks its owner, so this
/// is 2 of the loop's calls per timer arm + cancel (issue 19, callgrind).
#[inline]
pub(crate) fn thread_token() -> usize {
    // SAFETY: `pthread_self` has no preconditions and cannot fail.
    let id = unsafe { libc::pthread_self() };
    // `pthread_t` is an integer on Linux and a pointer on macOS and the BSDs:
    // either way a value unique among live threads.
    id as usize
}

/// Loop state other threads may touch.
pub(crate) struct Shared {
    /// [`thread_token`] of the thread that owns the loop.
    owner: usize,
    /// Replaced by `Loop.reinit()` after fork; None once the loop is destroyed.
    waker: Mutex<Option<Arc<Waker>>>,
    /// Some async watcher was sent since the loop last looked.
    pub(crate) async_pending: AtomicBool,
    /// `run_callback_threadsafe` queue.
    pub(crate) threadsafe: Mutex<Vec<(Py<PyAny>, Py<PyTuple>)>>,
}

/// Locks a mutex, recovering from poisoning: the data is plain state that a
/// panicking holder cannot have left half-written in a harmful way.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(waker: Arc<Waker>) -> Self {
        Shared {
            owner: thread_token(),
            waker: Mutex::new(Some(waker)),
            async_pending: AtomicBool::new(false),
            threadsafe: Mutex::new(Vec::new()),
        }
    }

    /// Wakes the loop's poll (from any thread).
    pub(crate) fn wake(&self) {
        // A failed eventfd write means the counter is saturated, i.e. a wake-up
        // is already pending, so ignoring it loses nothing.
        if let Some(w) = lock(&self.waker).as_ref() {
            let _ = w.wake();
        }
    }

    /// Installs the waker of a new poller (`reinit`), or None (`destroy`),
    /// which closes the old one once no thread is using it.
    pub(crate) fn replace_waker(&self, waker: Option<Arc<Waker>>) {
        let old = std::mem::replace(&mut *lock(&self.waker), waker);
        drop(old);
    }

    /// Whether the caller runs on the loop's own thread.
    pub(crate) fn is_owner(&self) -> bool {
        thread_token() == self.owner
    }

    /// RuntimeError unless called on the loop's own thread.
    pub(crate) fn check_owner(&self) -> PyResult<()> {
        if thread_token() == self.owner {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err(
                "this loop belongs to another thread; only AsyncWatcher.send() and \
                 Loop.run_callback_threadsafe() may be called from other threads",
            ))
        }
    }
}

struct AsyncState {
    call: Option<(Py<PyAny>, Py<PyTuple>)>,
    active: bool,
    ref_: bool,
    priority: i32,
}

/// Wakes the loop from any OS thread.
#[pyclass(frozen, weakref, module = "greenwheel._core")]
pub(crate) struct AsyncWatcher {
    loop_: Py<Loop>,
    shared: Arc<Shared>,
    sent: AtomicBool,
    state: Mutex<AsyncState>,
}

impl AsyncWatcher {
    pub(crate) fn new(
        loop_: Py<Loop>,
        shared: Arc<Shared>,
        ref_: bool,
        priority: Option<i32>,
    ) -> Self {
        AsyncWatcher {
            loop_,
            shared,
            sent: AtomicBool::new(false),
            state: Mutex::new(AsyncState {
                call: None,
                active: false,
                ref_,
                priority: priority.unwrap_or(0),
            }),
        }
    }

    /// Marks the watcher stopped (the loop is being torn down).
    pub(crate) fn deactivate(&self, lp: &Loop) {
        self.set_active(lp, false);
    }

    /// Whether the watcher keeps the loop alive (`ref`): a thread is doing
    /// work the loop waits for (the virtual clock waits for it in real time).
    pub(crate) fn is_ref(&self) -> bool {
        lock(&self.state).ref_
    }

    /// Consumes a pending send if the watcher is active; returns the call.
    pub(crate) fn take_fired(&self, py: Python<'_>) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        let st = lock(&self.state);
        if !st.active || !self.sent.swap(false, Ordering::AcqRel) {
            return None;
        }
        st.call
            .as_ref()
            .map(|(f, a)| (f.clone_ref(py), a.clone_ref(py)))
    }

    fn set_active(&self, lp: &Loop, active: bool) {
        let mut st = lock(&self.state);
        if st.active != active {
            st.active = active;
            if st.ref_ {
                lp.adjust_activecnt(if active { 1 } else { -1 });
            }
        }
    }
}

#[pymethods]
impl AsyncWatcher {
    /// Start: `callback(*args)` runs from the loop after each `send()`.
    #[pyo3(signature = (callback, *args))]
    fn start(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let this = slf.get();
        this.shared.check_owner()?;
        check_callable(callback)?;
        let old = lock(&this.state)
            .call
            .replace((callback.clone().unbind(), args.clone().unbind()));
        drop(old);
        let lp = this.loop_.get();
        if !lock(&this.state).active {
            lp.async_start(slf.clone().unbind())?;
            this.sent.store(false, Ordering::Release);
            this.set_active(lp, true);
        }
        Ok(())
    }

    /// Stop watching (loop thread only).
    fn stop(&self) -> PyResult<()> {
        self.shared.check_owner()?;
        let lp = self.loop_.get();
        self.set_active(lp, false);
        let removed = lp.async_stop(self);
        drop(removed);
        Ok(())
    }

    /// Stop and release the callback.
    fn close(&self) -> PyResult<()> {
        self.stop()?;
        let old = lock(&self.state).call.take();
        drop(old);
        Ok(())
    }

    /// Make the watcher pending and wake its loop. Safe from any thread.
    fn send(&self) {
        self.sent.store(true, Ordering::Release);
        self.shared.async_pending.store(true, Ordering::Release);
        self.shared.wake();
    }

    /// `send()`, usable as a one-argument callback.
    fn send_ignoring_arg(&self, _ignored: &Bound<'_, PyAny>) {
        self.send();
    }

    /// The loop this watcher belongs to.
    #[getter]
    #[pyo3(name = "loop")]
    fn get_loop(&self, py: Python<'_>) -> Py<Loop> {
        self.loop_.clone_ref(py)
    }

    #[getter]
    fn callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.state)
            .call
            .as_ref()
            .map(|(f, _)| f.clone_ref(py))
    }

    #[getter]
    fn args(&self, py: Python<'_>) -> Py<PyTuple> {
        match lock(&self.state).call.as_ref() {
            Some((_, a)) => a.clone_ref(py),
            None => PyTuple::empty(py).unbind(),
        }
    }

    #[getter]
    fn active(&self) -> bool {
        lock(&self.state).active
    }

    /// True after `send()` until the loop runs the callback.
    #[getter]
    fn pending(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }

    #[getter]
    #[pyo3(name = "ref")]
    fn get_ref(&self) -> bool {
        lock(&self.state).ref_
    }

    #[setter]
    #[pyo3(name = "ref")]
    fn set_ref(&self, value: bool) -> PyResult<()> {
        self.shared.check_owner()?;
        let lp = self.loop_.get();
        let mut st = lock(&self.state);
        if st.ref_ != value {
            st.ref_ = value;
            if st.active {
                lp.adjust_activecnt(if value { 1 } else { -1 });
            }
        }
        Ok(())
    }

    #[getter]
    fn priority(&self) -> i32 {
        lock(&self.state).priority
    }

    #[setter]
    fn set_priority(&self, value: i32) {
        lock(&self.state).priority = value;
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let this = slf.get();
        let st = lock(&this.state);
        format!(
            "<AsyncWatcher at {:#x}{}{}>",
            slf.as_ptr() as usize,
            if st.active { " active" } else { "" },
            if this.sent.load(Ordering::Acquire) {
                " pending"
            } else {
                ""
            },
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Ok(st) = self.state.try_lock() {
            if let Some((f, a)) = st.call.as_ref() {
                visit.call(f)?;
                visit.call(a)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = lock(&self.state).call.take();
        drop(old);
    }
}
