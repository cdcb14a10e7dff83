//! `Timeout`: raise an exception in a greenlet once a deadline passes.
//!
//! gevent's `Timeout` is a `BaseException` subclass that arms a loop timer;
//! starting and cancelling one happens around nearly every blocking call with
//! a timeout, so here it is a Rust class that goes straight into the timer
//! wheel: no watcher object, no bound method, no Python frame.
//!
//! Ground rules:
//! - It is an exception, so it may travel between threads (stored in an
//!   `AsyncResult`, re-raised elsewhere). The class is therefore `Sync`: its
//!   state sits behind a `Guarded` lock (every access holds the GIL, see
//!   `sync`; a `Mutex` cost four locked instructions per start + cancel),
//!   and loop operations check that they run on the thread that owns the
//!   loop (`RuntimeError` otherwise).
//! - Armed means: the wheel holds a strong reference to the Timeout (entry
//!   `TimerEntry::Timeout`), `handle` is `Some`, and when `ref` is true the
//!   loop's `activecnt` counts it. Disarming reverses all three.
//! - When it fires it is thrown into the greenlet that called `start()`, unless
//!   that greenlet has died meanwhile (throwing into a dead greenlet would land
//!   in its parent, the hub).
//! - The lock is never held across a call into Python.

use pyo3::exceptions::{PyAssertionError, PyBaseException, PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{intern, PyTraverseError};

use super::async_watcher::thread_token;
use super::errors::delay_ns;
use super::fastpath::hub_and_loop;
use super::greenlet_api;
use super::loop_::Loop;
use super::sync::Guarded;
use crate::wheel::TimerHandle;

struct Armed {
    loop_: Py<Loop>,
    /// [`thread_token`] of the thread that started it.
    owner: usize,
    handle: TimerHandle,
    /// The greenlet that called `start()`.
    target: Py<PyAny>,
}

struct State {
    /// As given by the caller (None: never expires).
    seconds: Option<Py<PyAny>>,
    delay_ns: u64,
    exception: Option<Py<PyAny>>,
    ref_: bool,
    one_shot: bool,
    /// `close()` was called: it may not be started again.
    closed: bool,
    armed: Option<Armed>,
}

/// Timeout(seconds=None, exception=None, ref=True, priority=-1)
#[pyclass(extends = PyBaseException, subclass, frozen, weakref, module = "greenwheel.timeout", name = "Timeout")]
pub(crate) struct Timeout {
    state: Guarded<State>,
}

static NEVER: PyOnceLock<Py<Timeout>> = PyOnceLock::new();

/// Validates `seconds`: None or a number; NaN is a ValueError.
fn parse_seconds(seconds: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
    if seconds.is_none() {
        return Ok(None);
    }
    if seconds.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "Timeout seconds must be a number or None, not str",
        ));
    }
    let secs: f64 = seconds.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "Timeout seconds must be a number or None, not {}",
            seconds
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    delay_ns("Timeout seconds", secs).map(Some)
}

impl Timeout {
    fn new_state(
        seconds: &Bound<'_, PyAny>,
        exception: Option<&Bound<'_, PyAny>>,
        ref_: bool,
        one_shot: bool,
    ) -> PyResult<Self> {
        let delay = parse_seconds(seconds)?;
        Ok(Timeout {
            state: Guarded::new(State {
                seconds: if delay.is_some() {
                    Some(seconds.clone().unbind())
                } else {
                    None
                },
                delay_ns: delay.unwrap_or(0),
                exception: exception
                    .filter(|e| !e.is_none())
                    .map(|e| e.clone().unbind()),
                ref_,
                one_shot,
                closed: false,
                armed: None,
            }),
        })
    }

    /// Disarms if armed. The wheel entry is dropped after the lock is released.
    fn disarm(&self) -> PyResult<()> {
        let armed = {
            let mut st = self.state.borrow_mut();
            if let Some(a) = st.armed.as_ref() {
                if a.owner != thread_token() {
                    return Err(PyRuntimeError::new_err(
                        "a Timeout can only be cancelled in the thread that started it",
                    ));
                }
            }
            let ref_ = st.ref_;
            st.armed.take().map(|a| (a, ref_))
        };
        if let Some((armed, ref_)) = armed {
            let lp = armed.loop_.get();
            let removed = lp.timeout_disarm(armed.handle, ref_);
            drop(removed);
            drop(armed);
        }
        Ok(())
    }

    /// Called by the loop when the wheel says this timeout is due.
    /// Returns the greenlet to throw into and what to throw, if still armed
    /// with that handle.
    pub(crate) fn fire(
        slf: &Bound<'_, Self>,
        handle: TimerHandle,
    ) -> Option<(Py<PyAny>, Py<PyAny>, bool)> {
        let this = slf.get();
        let mut st = this.state.borrow_mut();
        if st.armed.as_ref().map(|a| a.handle) != Some(handle) {
            return None;
        }
        let armed = st.armed.take()?;
        let py = slf.py();
        let raise = match st.exception.as_ref() {
            Some(e)
                if !e.bind(py).is(&*pyo3::types::PyBool::new(py, false))
                    && !e.bind(py).is_instance_of::<PyString>() =>
            {
                e.clone_ref(py)
            }
            _ => slf.clone().into_any().unbind(),
        };
        Some((armed.target, raise, st.ref_))
    }

    fn is_pending(&self) -> bool {
        self.state.borrow_mut().armed.is_some()
    }

    fn start_impl(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (delay, ref_) = {
            let this = slf.get();
            let st = this.state.borrow_mut();
            if st.armed.is_some() {
                drop(st);
                return Err(PyAssertionError::new_err(format!(
                    "{} is already started; to restart it, cancel it first",
                    slf.repr()?
                )));
            }
            if st.seconds.is_none() {
                return Ok(()); // never expires
            }
            if st.closed {
                return Err(PyAssertionError::new_err(
                    "a closed Timeout cannot be started",
                ));
            }
            (st.delay_ns, st.ref_)
        };
        let (_hub, lp, _trusted) = hub_and_loop(py)?;
        let target = greenlet_api::getcurrent(py)?;
        let deadline = lp.get().clock().now_ns().saturating_add(delay);
        let handle = lp
            .borrow()
            .timeout_arm(slf.clone().unbind(), deadline, ref_)?;
        let this = slf.get();
        this.state.borrow_mut().armed = Some(Armed {
            loop_: lp.unbind(),
            owner: thread_token(),
            handle,
            target: target.unbind(),
        });
        Ok(())
    }
}

#[pymethods]
impl Timeout {
    #[new]
    #[pyo3(signature = (seconds = None, exception = None, r#ref = true, priority = -1, _one_shot = false), text_signature = "(seconds=None, exception=None, ref=True, priority=-1, _one_shot=False)")]
    fn py_new(
        py: Python<'_>,
        seconds: Option<&Bound<'_, PyAny>>,
        exception: Option<&Bound<'_, PyAny>>,
        r#ref: bool,
        priority: i32,
        _one_shot: bool,
    ) -> PyResult<Self> {
        let _ = priority; // libev priorities: dispatch order here is deadline order
        let none = py.None();
        Timeout::new_state(
            seconds.unwrap_or(none.bind(py)),
            exception,
            r#ref,
            _one_shot,
        )
    }

    /// Arm the timeout; it fires `seconds` from now in the calling greenlet.
    fn start(slf: &Bound<'_, Self>) -> PyResult<()> {
        Timeout::start_impl(slf)
    }

    /// Return a started Timeout. `timeout` may be a number (a new Timeout of
    /// class `cls` is made) or a Timeout (started unless pending, returned).
    #[classmethod]
    #[pyo3(signature = (timeout = None, exception = None, r#ref = true, _one_shot = false), text_signature = "($cls, timeout=None, exception=None, ref=True, _one_shot=False)")]
    fn start_new<'py>(
        cls: &Bound<'py, PyType>,
        timeout: Option<&Bound<'py, PyAny>>,
        exception: Option<&Bound<'py, PyAny>>,
        r#ref: bool,
        _one_shot: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = cls.py();
        if let Some(t) = timeout {
            if let Ok(existing) = t.cast::<Timeout>() {
                if !existing.get().is_pending() {
                    Timeout::start_impl(existing)?;
                }
                return Ok(existing.clone().into_any());
            }
        }
        let none = py.None();
        let seconds = timeout.unwrap_or(none.bind(py));
        let made = if cls.is(py.get_type::<Timeout>()) {
            Bound::new(
                py,
                Timeout::new_state(seconds, exception, r#ref, _one_shot)?,
            )?
            .into_any()
        } else {
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("ref", r#ref)?;
            if _one_shot {
                kwargs.set_item("_one_shot", true)?;
            }
            cls.call((seconds, exception), Some(&kwargs))?
        };
        Timeout::start_impl(made.cast::<Timeout>()?)?;
        Ok(made)
    }

    /// For internal `timeout=` parameters: None gives a shared Timeout that
    /// never fires (nothing allocated); a number gives a started one-shot.
    #[staticmethod]
    #[pyo3(signature = (timeout, exception = None, r#ref = true), text_signature = "(timeout, exception=None, ref=True)")]
    fn _start_new_or_dummy<'py>(
        py: Python<'py>,
        timeout: &Bound<'py, PyAny>,
        exception: Option<&Bound<'py, PyAny>>,
        r#ref: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        if timeout.is_none() {
            let never = NEVER.get_or_try_init(py, || -> PyResult<_> {
                Py::new(
                    py,
                    Timeout::new_state(&py.None().into_bound(py), None, true, false)?,
                )
            })?;
            return Ok(never.bind(py).clone().into_any());
        }
        let cls = py.get_type::<Timeout>();
        Timeout::start_new(&cls, Some(timeout), exception, r#ref, true)
    }

    /// True while armed.
    #[getter]
    fn pending(&self) -> bool {
        self.is_pending()
    }

    /// The seconds given (None: never expires).
    #[getter]
    fn seconds(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .borrow_mut()
            .seconds
            .as_ref()
            .map(|s| s.clone_ref(py))
    }

    /// What is raised: None (the Timeout itself), False (itself, swallowed by
    /// `with`), an exception class or instance.
    #[getter]
    fn exception(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .borrow_mut()
            .exception
            .as_ref()
            .map(|e| e.clone_ref(py))
    }

    #[setter]
    fn set_exception(&self, value: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut self.state.borrow_mut().exception, value);
        drop(old);
    }

    /// What `Timeout.__init__` does when called through the attribute
    /// (see [`install_init`]): sets seconds, exception and ref again, for subclasses whose own
    /// `__init__` calls `Timeout.__init__(self, seconds, exception, ref=False)`
    /// with arguments other than those their constructor was given. A
    /// running Timeout keeps its deadline; the new settings apply from its
    /// next `start()`.
    #[pyo3(signature = (seconds = None, exception = None, r#ref = true, priority = -1, _one_shot = false))]
    fn _reinit(
        slf: &Bound<'_, Self>,
        seconds: Option<&Bound<'_, PyAny>>,
        exception: Option<&Bound<'_, PyAny>>,
        r#ref: bool,
        priority: i32,
        _one_shot: bool,
    ) -> PyResult<()> {
        let _ = priority; // as in __new__
        let py = slf.py();
        let none = py.None();
        let fresh = Timeout::new_state(
            seconds.unwrap_or(none.bind(py)),
            exception,
            r#ref,
            _one_shot,
        )?;
        let fresh = fresh.state.into_inner();
        // The replaced objects are dropped after the lock is released.
        let (old_seconds, old_exception) = {
            let mut st = slf.get().state.borrow_mut();
            st.delay_ns = fresh.delay_ns;
            st.ref_ = fresh.ref_;
            st.one_shot = fresh.one_shot;
            (
                std::mem::replace(&mut st.seconds, fresh.seconds),
                std::mem::replace(&mut st.exception, fresh.exception),
            )
        };
        drop((old_seconds, old_exception));
        Ok(())
    }

    /// Disarm; the Timeout may be started again (call `close()` when done).
    fn cancel(&self) -> PyResult<()> {
        self.disarm()?;
        if self.state.borrow_mut().one_shot {
            self.close()?;
        }
        Ok(())
    }

    /// Disarm for good.
    fn close(&self) -> PyResult<()> {
        self.disarm()?;
        let mut st = self.state.borrow_mut();
        if st.seconds.is_some() {
            st.closed = true;
        }
        Ok(())
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        if !slf.get().is_pending() {
            Timeout::start_impl(slf)?;
        }
        Ok(slf.clone())
    }

    #[pyo3(signature = (_typ = None, value = None, _tb = None))]
    fn __exit__(
        slf: &Bound<'_, Self>,
        _typ: Option<&Bound<'_, PyAny>>,
        value: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        this.close()?;
        let silent = this
            .state
            .borrow_mut()
            .exception
            .as_ref()
            .is_some_and(|e| e.bind(py).is(&*pyo3::types::PyBool::new(py, false)));
        Ok(silent && value.is_some_and(|v| v.is(slf)))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let this = slf.get();
        let (seconds, exception, pending) = {
            let st = this.state.borrow_mut();
            (
                st.seconds.as_ref().map(|s| s.clone_ref(py)),
                st.exception.as_ref().map(|e| e.clone_ref(py)),
                st.armed.is_some(),
            )
        };
        let seconds = match seconds {
            Some(s) => s.bind(py).str()?.to_string(),
            None => "None".to_owned(),
        };
        let exception = match exception {
            Some(e) => format!(" exception={}", e.bind(py).repr()?),
            None => String::new(),
        };
        Ok(format!(
            "<{} at {:#x} seconds={}{}{}>",
            slf.get_type().name()?,
            slf.as_ptr() as usize,
            seconds,
            exception,
            if pending { " pending" } else { "" }
        ))
    }

    fn __str__(&self, py: Python<'_>) -> PyResult<String> {
        let (seconds, exception) = {
            let st = self.state.borrow_mut();
            (
                st.seconds.as_ref().map(|s| s.clone_ref(py)),
                st.exception.as_ref().map(|e| e.clone_ref(py)),
            )
        };
        let Some(seconds) = seconds else {
            return Ok(String::new());
        };
        let seconds = seconds.bind(py);
        let text = seconds.str()?.to_string();
        let one = seconds.eq(1)?;
        let suffix = if one { "" } else { "s" };
        Ok(match exception {
            None => format!("{text} second{suffix}"),
            Some(e) if e.bind(py).is(&*pyo3::types::PyBool::new(py, false)) => {
                format!("{text} second{suffix} (silent)")
            }
            Some(e) => format!("{text} second{suffix}: {}", e.bind(py).str()?),
        })
    }

    fn __lt__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mine = self
            .state
            .borrow_mut()
            .seconds
            .as_ref()
            .map(|s| s.clone_ref(py));
        let mine = mine.unwrap_or_else(|| py.None());
        let theirs = match other.cast::<Timeout>() {
            Ok(t) => t
                .borrow()
                .seconds(py)
                .unwrap_or_else(|| py.None())
                .into_bound(py),
            Err(_) => other.clone(),
        };
        match mine.bind(py).lt(&theirs) {
            Ok(b) => Ok(pyo3::types::PyBool::new(py, b)
                .to_owned()
                .into_any()
                .unbind()),
            Err(_) => Ok(py.NotImplemented()),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(st) = self.state.try_borrow() {
            if let Some(s) = st.seconds.as_ref() {
                visit.call(s)?;
            }
            if let Some(e) = st.exception.as_ref() {
                visit.call(e)?;
            }
            if let Some(a) = st.armed.as_ref() {
                visit.call(&a.loop_)?;
                visit.call(&a.target)?;
            }
        }
        Ok(())
    }
}

/// Throws a fired timeout into its greenlet (from the loop).
pub(crate) fn deliver(py: Python<'_>, target: Py<PyAny>, raise: Py<PyAny>) -> PyResult<()> {
    let target = target.into_bound(py);
    if target.getattr(intern!(py, "dead"))?.is_truthy()? {
        return Ok(());
    }
    target.call_method1(intern!(py, "throw"), PyTuple::new(py, [raise])?)?;
    Ok(())
}

/// `deliver` as a queued callback (used when a fired timeout must wait a pass).
pub(crate) fn deliver_later(
    py: Python<'_>,
    target: Py<PyAny>,
    raise: Py<PyAny>,
) -> PyResult<Py<super::callback::Callback>> {
    let func = pyo3::types::PyCFunction::new_closure(
        py,
        None,
        None,
        move |args, _kwargs| -> PyResult<()> {
            let py = args.py();
            deliver(py, target.clone_ref(py), raise.clone_ref(py))
        },
    )?;
    Py::new(
        py,
        super::callback::Callback::new(func.into_any().unbind(), PyTuple::empty(py).unbind()),
    )
}

/// PyO3 classes cannot define `__init__`, so `Timeout` would inherit
/// `BaseException.__init__`, which rejects keyword arguments (`ref=False`)
/// and stores the constructor arguments in `.args` (gevent's Timeout has
/// empty args). `__new__` already did all the work for `Timeout(...)`.
///
/// The attribute serves subclasses: their `__init__` may call
/// `Timeout.__init__(self, seconds, exception, ref=False)` with arguments
/// other than their constructor's (gevent's own test helpers do), and those
/// must take effect ([`Timeout::_reinit`]). Construction of `Timeout`
/// itself goes through the type's `tp_init` slot, which is then pointed
/// straight at [`init_nothing`]: through the attribute it would cost a
/// type-dict lookup, an argument tuple and a call on every `Timeout(...)`,
/// the hottest constructor of the library.
pub(crate) fn install_init(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<Timeout>();
    // The method descriptor, so that it binds like a Python method: CPython's
    // generic init slot (which subclasses get) looks `__init__` up on the
    // instance's type and calls it bound.
    ty.setattr("__init__", ty.getattr(intern!(py, "_reinit"))?)?;
    // SAFETY: `ty` is our own heap type, fully initialised, and no instance
    // exists yet; we hold the GIL. Setting `__init__` above made CPython
    // install its generic `slot_tp_init`; replacing it with a function of the
    // same contract that does the same thing (nothing) is invisible to
    // Python code. Python subclasses still get `slot_tp_init` (CPython
    // derives it from the `__init__` attribute they inherit or define), so
    // they reach the same do-nothing attribute as before, only slower.
    unsafe {
        (*ty.as_type_ptr()).tp_init = Some(init_nothing);
    }
    Ok(())
}

/// `Timeout.__init__` as a `tp_init` slot: accepts any arguments.
unsafe extern "C" fn init_nothing(
    _slf: *mut ffi::PyObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> std::ffi::c_int {
    0
}
