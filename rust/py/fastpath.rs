//! Rust versions of the hub's hottest entry points (`greenwheel.sleep`).
//!
//! `sleep(0)` is the yield every cooperative program is full of; in Python it
//! costs a frame, a bound method and a `Callback` object per call. Here it is
//! a queue push and one switch through greenlet's C API.
//!
//! Ground rules:
//! - The hub is found exactly as the Python layer finds it
//!   (`greenwheel._hub._state.hub`, else `get_hub()`), so there is a single
//!   source of truth for "this thread's hub" and nothing to go stale.
//! - Exceptions thrown into a sleeping greenlet (kill, Timeout) withdraw its
//!   pending wake-up before propagating, so nothing switches into it later.

use std::cell::RefCell;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3::Borrowed;

use super::errors::delay_ns;
use super::greenlet_api;
use super::loop_::Loop;
use super::raw_fn::{guard, MethodDef};
use crate::wheel::TimerHandle;

static HUB_STATE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

thread_local! {
    /// This thread's hub and its loop, as registered by `greenwheel._hub`
    /// (`get_hub()` sets it, `Hub.destroy()` clears it). Saves two attribute
    /// lookups on every `sleep()`; when empty, the Python state is asked.
    static CURRENT: RefCell<Option<(Py<PyAny>, Py<Loop>)>> = const { RefCell::new(None) };
}

/// _set_current_hub(hub)
/// --
///
/// Register `hub` (or None) as this thread's hub for the Rust fast paths.
/// Called by `greenwheel._hub`; not part of the public API.
#[pyfunction]
pub(crate) fn _set_current_hub(hub: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    let entry = match hub {
        Some(h) => {
            if !greenlet_api::is_greenlet(h.py(), h)? {
                return Err(PyTypeError::new_err("the hub must be a greenlet"));
            }
            let lp = h.getattr(intern!(h.py(), "loop"))?.cast_into::<Loop>()?;
            lp.get().check_owner()?;
            Some((h.clone().unbind(), lp.unbind()))
        }
        None => None,
    };
    let old = CURRENT.with(|c| c.replace(entry));
    drop(old); // outside the RefCell borrow: a decref may run Python code
    Ok(())
}

/// This thread's hub and loop: the registered pair (trusted: a greenlet whose
/// loop this thread owns, checked at registration), else via the Python state.
pub(crate) fn hub_and_loop(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Bound<'_, Loop>, bool)> {
    let cached = CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .map(|(h, l)| (h.clone_ref(py), l.clone_ref(py)))
    });
    if let Some((h, l)) = cached {
        if !l.get().is_destroyed() {
            return Ok((h.into_bound(py), l.into_bound(py), true));
        }
    }
    hub_and_loop_slow(py)
}

// Why pywsgi holds a response for the rest of its poll: a response sent to
// a client thread that sleeps in its poll wakes that thread, and the wake-up
// is paid by the sender, in the kernel (`sock_def_readable` ->
// `try_to_wake_up`: 17.6% of the server's CPU time in a Flask run under wrk
// -c100, about 14 us per response on this machine's VM). Sent in one burst,
// the first response wakes the client and the others find it awake. Flask
// under wrk -c100 went from 11.9k to 15.3k requests/s (compare.py, one run,
// 2026-12-05); on a logging server (the handler's Python path) from 10.0k to
// 13.0k (wrk A/B).
//
// Hello world pays the two greenlet switches and gains little, its responses
// coming 7 us apart to a client that is mostly awake: 1-4% of its rate
// (compare.py, best of 3 against the tree before). Holding only responses
// that came 10 us or more after the loop's last one cost it 10% instead (wrk
// A/B, same build; why is not understood).
//
// The last connection of the poll, a lone one, and one resumed from a
// callback (its first request) send at once, without a switch; nothing an
// application queued delays its response, as in gevent.

/// _yield_to_poll()
/// --
///
/// When the current greenlet was resumed by the dispatch of a kernel poll
/// that found other fds ready too, and they are still to be dispatched,
/// yield until they have been (the greenlet runs again before the next
/// poll). Returns whether it yielded. Not part of the public API.
///
/// pywsgi calls this before the first write of each response, in the
/// native request loop (`wsgi_serve.rs`) and in the handler's `_sendall`:
/// the responses of one poll's connections then leave together.
#[pyfunction]
pub(crate) fn _yield_to_poll(py: Python<'_>) -> PyResult<bool> {
    let (hub, lp, trusted) = hub_and_loop(py)?;
    let lp = lp.get();
    if !lp.more_io_in_pass() {
        return Ok(false);
    }
    lp.yield_current(py, &hub, trusted)?;
    Ok(true)
}

/// `hub_and_loop` without a usable registration: ask the Python state. Out of
/// line so the hot caller's stack frame (copied on every greenlet switch)
/// stays small.
#[cold]
#[inline(never)]
fn hub_and_loop_slow(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Bound<'_, Loop>, bool)> {
    // A registration whose loop was destroyed behind our back (e.g. from
    // another thread) is forgotten.
    let old = CURRENT.with(|c| c.replace(None));
    drop(old);
    let hub = current_hub(py)?;
    let lp = hub.getattr(intern!(py, "loop"))?.cast_into::<Loop>()?;
    Ok((hub, lp, false))
}
static GET_HUB: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// This thread's hub, created on first use.
pub(crate) fn current_hub(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let state = HUB_STATE.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("greenwheel._hub")?.getattr("_state")?.unbind())
    })?;
    let hub = state.bind(py).getattr(intern!(py, "hub"))?;
    if !hub.is_none() {
        return Ok(hub);
    }
    let get_hub = GET_HUB.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("greenwheel._hub")?.getattr("get_hub")?.unbind())
    })?;
    get_hub.bind(py).call0()
}

/// The error gevent raises for a blocking call made from the hub itself.
#[cold]
pub(crate) fn blocking_from_hub(py: Python<'_>) -> PyErr {
    match py
        .import("greenwheel._exceptions")
        .and_then(|m| m.getattr("BlockingSwitchOutError"))
        .and_then(|cls| {
            cls.call1(("Impossible to call blocking function in the event loop callback",))
        }) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// gevent's error for a switch into a greenlet that waits for something else.
#[cold]
fn invalid_switch(py: Python<'_>, glet: &Bound<'_, PyAny>) -> PyErr {
    let message = format!(
        "Invalid switch into {}: woken before its sleep ended",
        glet.repr().map(|r| r.to_string()).unwrap_or_default()
    );
    match py
        .import("greenwheel._exceptions")
        .and_then(|m| m.getattr("InvalidSwitchError"))
        .and_then(|cls| cls.call1((message,)))
    {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// A delay argument: a number (TypeError for anything else, None included),
/// never NaN (ValueError). Negative means "now".
pub(crate) struct Seconds(pub(crate) f64);

impl Seconds {
    pub(crate) const ZERO: Seconds = Seconds(0.0);
}

impl<'a, 'py> FromPyObject<'a, 'py> for Seconds {
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let not_a_number = || {
            PyTypeError::new_err(format!(
                "seconds must be a number, not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        };
        if obj.is_none()
            || obj.is_instance_of::<pyo3::types::PyString>()
            || obj.is_instance_of::<pyo3::types::PyBytes>()
            || obj.is_instance_of::<pyo3::types::PyByteArray>()
        {
            return Err(not_a_number());
        }
        let secs: f64 = obj.extract().map_err(|_| not_a_number())?;
        delay_ns("seconds", secs)?;
        Ok(Seconds(secs))
    }
}

/// `sleep(seconds=0, ref=True)`, a plain `METH_FASTCALL | METH_KEYWORDS`
/// function (see `raw_fn`: its frame sits under every sleeping greenlet).
pub(crate) static SLEEP_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"sleep".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: sleep_raw,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: c"sleep(seconds=0, ref=True)\n--\n\nSuspend the current greenlet for at least `seconds`. `sleep(0)` yields:\nevery greenlet that is ready runs once before this one continues. With\n`ref=False` the sleep does not keep the loop alive.".as_ptr(),
});

unsafe extern "C" fn sleep_raw(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // This frame stays on the stack of every sleeping greenlet (greenlet
    // copies it to the heap while the greenlet is parked, and back on every
    // switch), so it holds only what the switch itself needs: parsing,
    // arming and the aftermath are out of line, and each catches its own
    // errors and panics as `guard` does, so nothing unwinds from here.
    // SAFETY: CPython calls METH_FASTCALL functions with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: the vectorcall convention: `args` holds `nargs` positional
    // values followed by one value per name in `kwnames` (a tuple of str, or
    // NULL), all borrowed for the duration of the call.
    let Some((seconds, r#ref)) = (unsafe { sleep_parse(py, args, nargs, kwnames) }) else {
        return std::ptr::null_mut();
    };
    if seconds <= 0.0 {
        return sleep_zero(py);
    }
    let Some(armed) = sleep_arm(py, seconds, r#ref) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `armed.hub` is a greenlet (checked when it was registered or
    // looked up: `hub_and_loop`), kept alive by `armed`; GIL held. NULL args
    // and kwargs mean "none". Returns a new reference or NULL with an
    // exception set.
    let result = unsafe {
        (armed.switch)(
            armed.hub.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    sleep_woken(py, armed, result)
}

/// [`sleep_args`] out of line (see `sleep_raw`); None with the Python error
/// set if the arguments are wrong.
///
/// # Safety
/// As for [`sleep_args`].
#[inline(never)]
unsafe fn sleep_parse(
    py: Python<'_>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> Option<(f64, bool)> {
    // SAFETY: the caller passes a vectorcall's arguments.
    attempt(py, || unsafe { sleep_args(py, args, nargs, kwnames) })
        .map(|(seconds, r#ref)| (seconds.0, r#ref))
}

/// Runs `body` inside `guard`, for a step whose value the caller needs: None
/// means the Python error is set (a panic became `PanicException`).
#[inline(always)]
pub(crate) fn attempt<T>(py: Python<'_>, body: impl FnOnce() -> PyResult<T>) -> Option<T> {
    let mut out = None;
    let done = guard(py, || {
        out = Some(body()?);
        Ok(())
    });
    if done.is_null() {
        return None;
    }
    // SAFETY: on success `guard` returns a new reference (to None).
    unsafe { ffi::Py_DECREF(done) };
    out
}

/// `sleep(0)`: yield to every greenlet that is ready (out of line, see
/// `sleep_raw`).
#[inline(never)]
fn sleep_zero(py: Python<'_>) -> *mut ffi::PyObject {
    guard(py, || {
        let (hub, lp, trusted) = hub_and_loop(py)?;
        lp.get().yield_current(py, &hub, trusted)
    })
}

/// A timed sleep between arming its wake-up and switching to the hub.
struct Armed<'py> {
    hub: Bound<'py, PyAny>,
    lp: Bound<'py, Loop>,
    current: Bound<'py, PyAny>,
    handle: TimerHandle,
    r#ref: bool,
    switch: greenlet_api::SwitchFn,
}

/// Arms the wake-up of the current greenlet `secs` from now; None with the
/// Python error set if it cannot sleep (out of line, see `sleep_raw`).
#[inline(never)]
fn sleep_arm(py: Python<'_>, secs: f64, r#ref: bool) -> Option<Armed<'_>> {
    attempt(py, || {
        let (hub, lp, _) = hub_and_loop(py)?;
        let current = greenlet_api::getcurrent(py)?;
        if current.is(&hub) {
            return Err(blocking_from_hub(py));
        }
        let switch = greenlet_api::switch_fn(py)?;
        let lpr = lp.get();
        // Measured from now (not the loop's cached time) so it is never short.
        let deadline = lpr
            .clock()
            .now_ns()
            .saturating_add(delay_ns("seconds", secs)?);
        let handle = lpr.sleep_arm(current.clone().unbind(), deadline, r#ref)?;
        Ok(Armed {
            hub,
            lp,
            current,
            handle,
            r#ref,
            switch,
        })
    })
}

/// After the switch back: withdraw the wake-up whatever woke us (it must
/// not fire into us later), then pass on the switch's error, or fail if
/// something other than the wake-up switched us back (out of line, see
/// `sleep_raw`).
#[inline(never)]
fn sleep_woken<'py>(
    py: Python<'py>,
    armed: Armed<'py>,
    result: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: `result` is what `PyGreenlet_Switch` returned: a new reference
    // or NULL with an exception set, which this takes (fetches) at once, so
    // the cancel below runs with no exception pending.
    let result = unsafe { Bound::from_owned_ptr_or_err(py, result) };
    guard(py, move || {
        let Armed {
            hub,
            lp,
            current,
            handle,
            r#ref,
            ..
        } = armed;
        drop(hub);
        let woken_early = lp.get().sleep_cancel(py, handle, &current, r#ref);
        result?;
        if woken_early {
            return Err(invalid_switch(py, &current));
        }
        Ok(())
    })
}

/// Parses `(seconds=0, ref=True)` from a vectorcall.
///
/// Out of line: it returns before the switch, so its locals (keyword
/// parsing, error messages) need not sit in `sleep_raw`'s frame, which stays
/// on the stack of every sleeping greenlet and is copied on every switch.
///
/// # Safety
/// `args`, `nargs` and `kwnames` must be a vectorcall's arguments (see
/// `sleep_raw`).
#[inline(never)]
unsafe fn sleep_args(
    py: Python<'_>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<(Seconds, bool)> {
    let npos = usize::try_from(nargs).unwrap_or(0);
    if npos > 2 {
        return Err(PyTypeError::new_err(format!(
            "sleep() takes at most 2 arguments ({npos} given)"
        )));
    }
    let mut seconds = (npos >= 1).then(|| {
        // SAFETY: index 0 < npos, inside the positional part.
        unsafe { Borrowed::from_ptr(py, *args) }
    });
    let mut r#ref = (npos == 2).then(|| {
        // SAFETY: index 1 < npos == 2, inside the positional part.
        unsafe { Borrowed::from_ptr(py, *args.add(1)) }
    });
    if !kwnames.is_null() {
        // SAFETY: non-NULL kwnames is a live tuple (vectorcall convention).
        let names = unsafe { Borrowed::from_ptr(py, kwnames) };
        let names = names.cast::<PyTuple>()?;
        for (k, name) in names.iter().enumerate() {
            // SAFETY: the keyword values follow the positional ones, one
            // per name.
            let value = unsafe { Borrowed::from_ptr(py, *args.add(npos + k)) };
            let slot = match name.extract::<&str>()? {
                "seconds" => &mut seconds,
                "ref" => &mut r#ref,
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "sleep() got an unexpected keyword argument '{other}'"
                    )))
                }
            };
            if slot.replace(value).is_some() {
                return Err(PyTypeError::new_err(format!(
                    "sleep() got multiple values for argument '{name}'"
                )));
            }
        }
    }
    let seconds = match seconds {
        Some(obj) => obj.extract::<Seconds>()?,
        None => Seconds::ZERO,
    };
    let r#ref = match r#ref {
        Some(obj) => obj
            .extract::<bool>()
            .map_err(|_| PyTypeError::new_err("sleep() argument 'ref' must be a bool"))?,
        None => true,
    };
    Ok((seconds, r#ref))
}
