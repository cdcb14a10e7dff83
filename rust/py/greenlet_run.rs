//! `Greenlet.run` in Rust: the body every spawned greenlet starts in.
//!
//! In Python this wrapper is one more interpreter frame under every
//! greenlet's function, and greenlet materialises a frame object for it
//! whenever the greenlet parks. In Rust there is no frame at all, so a
//! greenlet whose function is itself native (`spawn(sleep, 1)`,
//! `spawn(sock.recv, n)`) holds no CPython frame stack while it waits: no
//! 16 KiB frame chunk, no frame object, and less C stack for greenlet to copy
//! on every switch. It takes a chunk (from the `frame_chunks` free list) only
//! for the Python reporting at the end. gevent's `run` is compiled Cython
//! for the same reason.
//!
//! Ground rules:
//! - Same steps and order as the Python method it replaces: honour a kill
//!   before start (`_CANCELLED`), mark `_STARTED`, close the start event,
//!   call the function with the greenlet's `args`/`kwargs`, report the result
//!   or the exception through the Python methods `_report_result` /
//!   `_report_error` (subclasses and the hub stay in Python), and always
//!   release the function and arguments (`_free`), even if reporting raised.
//! - The markers (and the `Greenlet` class) are read from
//!   `greenwheel._greenlet` once and cached: module constants that never
//!   change.
//! - What stays on the stack of a running (parked) greenlet is `run_raw`'s
//!   frame alone, holding the function and its arguments: every other step
//!   is out of line, so greenlet copies as few bytes as possible per park.
//! - No Rust state is held across any of the Python calls.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{Borrowed, PyTypeInfo};

use super::fastpath::attempt;
use super::greenlet_api;
use super::raw_fn::{guard, MethodDef};

/// The start-event markers of `greenwheel._greenlet`, and its `Greenlet`.
struct Markers {
    cancelled: Py<PyAny>,
    started: Py<PyAny>,
    scheduled: Py<PyAny>,
    greenlet_class: Py<PyAny>,
}

static MARKERS: PyOnceLock<Markers> = PyOnceLock::new();

fn markers(py: Python<'_>) -> PyResult<&Markers> {
    MARKERS.get_or_try_init(py, || -> PyResult<_> {
        let module = py.import("greenwheel._greenlet")?;
        Ok(Markers {
            cancelled: module.getattr("_CANCELLED")?.unbind(),
            started: module.getattr("_STARTED")?.unbind(),
            scheduled: module.getattr("_SCHEDULED")?.unbind(),
            greenlet_class: module.getattr("Greenlet")?.unbind(),
        })
    })
}

/// `_greenlet_run(greenlet=<current>, /)`, a plain `METH_FASTCALL` function
/// (see `raw_fn`: its frame sits under every parked greenlet's function).
///
/// `Greenlet.run` is this function itself, not a method: greenlet looks up
/// `run` when it starts a greenlet and holds the result until the function
/// returns, and a method would be a bound-method object per parked greenlet
/// (64 bytes) plus one more C frame (`method_vectorcall`) on its stack.
/// Without an argument it runs the current greenlet, which is the one
/// greenlet is starting; `Greenlet.run(glet)` names it (as gevent's unbound
/// method, e.g. from a subclass's own `run`).
pub(crate) static RUN_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"_greenlet_run".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFast: run_raw,
    },
    ml_flags: ffi::METH_FASTCALL,
    ml_doc: c"_greenlet_run(greenlet=<the current greenlet>, /)\n--\n\nThe body of `Greenlet.run` (installed as that attribute by\n`greenwheel._greenlet`; not part of the public API).".as_ptr(),
});

unsafe extern "C" fn run_raw(
    _module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // greenlet copies this frame (and its callers') to the heap for as long
    // as the greenlet is parked, and back on every switch: it holds only the
    // call; the steps before and after are out of line and each catches its
    // own errors and panics as `guard` does, so nothing unwinds from here.
    // SAFETY: CPython calls METH_FASTCALL functions with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: the vectorcall convention: `args` holds `nargs` borrowed
    // positional values, alive for the call.
    let Some((glet, prepared)) = (unsafe { start(py, args, nargs) }) else {
        return std::ptr::null_mut();
    };
    let Some(call) = prepared else {
        // Killed before it ran: nothing to call or report.
        return py.None().into_ptr();
    };
    let (func, args, kwargs) = &call;
    let kwargs_ptr = match kwargs {
        Some(kwargs) if !kwargs.is_empty() => kwargs.as_ptr(),
        _ => std::ptr::null_mut(),
    };
    // SAFETY: all three are live objects of the right types (kwargs may be
    // NULL); we hold the GIL. Returns a new reference or NULL with an
    // exception set, which `end` takes before anything else runs.
    let outcome = unsafe { ffi::PyObject_Call(func.as_ptr(), args.as_ptr(), kwargs_ptr) };
    end(&glet, call, outcome)
}

/// Which greenlet to run, then [`prepare`], out of line (see `run_raw`):
/// None with the Python error set if either failed.
///
/// # Safety
/// `args` and `nargs` must be a vectorcall's positional arguments.
#[inline(never)]
unsafe fn start<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> Option<(Bound<'py, PyAny>, Option<Call<'py>>)> {
    attempt(py, || {
        let glet = match nargs {
            0 => {
                let glet = greenlet_api::getcurrent(py)?;
                let markers = markers(py)?;
                // Called by greenlet, `run` finds the greenlet it starts
                // current and not started. Anything else is a call from
                // elsewhere, which must not run the caller's own function.
                if !glet.is_instance(markers.greenlet_class.bind(py))?
                    || glet
                        .getattr(intern!(py, "_start_event"))?
                        .is(&markers.started)
                {
                    return Err(PyTypeError::new_err(
                        "Greenlet.run() without an argument runs the greenlet being started \
                         (greenlet calls it); use start() or spawn(), or Greenlet.run(glet)",
                    ));
                }
                glet
            }
            1 => {
                // SAFETY: index 0 < nargs == 1, a borrowed live object.
                let glet = unsafe { Borrowed::from_ptr(py, *args) }.to_owned();
                if !glet.is_instance(markers(py)?.greenlet_class.bind(py))? {
                    return Err(PyTypeError::new_err(format!(
                        "Greenlet.run() expects a Greenlet, not {}",
                        glet.get_type().name()?
                    )));
                }
                glet
            }
            n => {
                return Err(PyTypeError::new_err(format!(
                    "Greenlet.run() takes at most 1 argument ({n} given)"
                )))
            }
        };
        let prepared = prepare(&glet)?;
        Ok((glet, prepared))
    })
}

/// After the call (out of line, see `run_raw`): take its outcome (`outcome`
/// is the call's new reference or NULL with the exception set), release
/// the function and arguments, report.
#[inline(never)]
fn end(glet: &Bound<'_, PyAny>, call: Call<'_>, outcome: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let py = glet.py();
    // SAFETY: see above; the exception (if any) is fetched at once, before
    // the decrefs below can run Python code.
    let outcome = unsafe { Bound::from_owned_ptr_or_err(py, outcome) };
    drop(call);
    guard(py, move || finish(glet, outcome))
}

/// What `prepare` hands to the call: the function and its arguments.
/// No keyword arguments is None (what `Greenlet._kwargs` holds for a spawn
/// without any).
type Call<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyTuple>,
    Option<Bound<'py, PyDict>>,
);

/// The steps before the call; None if the greenlet was killed before start.
#[inline(never)]
fn prepare<'py>(glet: &Bound<'py, PyAny>) -> PyResult<Option<Call<'py>>> {
    let py = glet.py();
    let markers = markers(py)?;
    let event = glet.getattr(intern!(py, "_start_event"))?;
    if event.is(&markers.cancelled) {
        // Killed before it ran; the loop's queued start still switched here.
        // The kill already reported the outcome.
        return Ok(None);
    }
    glet.setattr(intern!(py, "_start_event"), &markers.started)?;
    // A start_later() timer normally just fired; if someone switched to us
    // directly, it must not switch into us again later. The markers' close()
    // does nothing, and skipping that Python call keeps a greenlet whose
    // function is native off the frame stack entirely.
    if !event.is_none() && !event.is(&markers.scheduled) && !event.is(&markers.started) {
        event.call_method0(intern!(py, "close"))?;
    }
    let mut func = glet.getattr(intern!(py, "_run_fn"))?;
    if func.is_none() {
        // No function passed: the `_run` method (a subclass's, or the no-op).
        func = glet.getattr(intern!(py, "_run"))?;
    }
    // Any iterable and any mapping, as `f(*args, **kwargs)` accepts.
    let args = coerce::<PyTuple>(glet.getattr(intern!(py, "args"))?)?;
    let kwargs = glet.getattr(intern!(py, "_kwargs"))?;
    let kwargs = if kwargs.is_none() {
        None
    } else {
        Some(coerce::<PyDict>(kwargs)?)
    };
    Ok(Some((func, args, kwargs)))
}

/// `obj` itself if it is a `T`, else `T(obj)` (tuple of an iterable, dict of
/// a mapping).
fn coerce<'py, T: PyTypeInfo>(obj: Bound<'py, PyAny>) -> PyResult<Bound<'py, T>> {
    match obj.cast_into::<T>() {
        Ok(value) => Ok(value),
        Err(err) => {
            let obj = err.into_inner();
            Ok(obj.py().get_type::<T>().call1((obj,))?.cast_into::<T>()?)
        }
    }
}

/// Report the outcome, then release the function and arguments.
#[inline(never)]
fn finish(glet: &Bound<'_, PyAny>, outcome: PyResult<Bound<'_, PyAny>>) -> PyResult<()> {
    let py = glet.py();
    let reported = match outcome {
        Ok(result) => glet
            .call_method1(intern!(py, "_report_result"), (result,))
            .map(drop),
        Err(err) => {
            let exc_info = (err.get_type(py), err.value(py).clone(), err.traceback(py));
            glet.call_method1(intern!(py, "_report_error"), (exc_info,))
                .map(drop)
        }
    };
    // Like a `finally:` clause: freed even when reporting raised, and that
    // error (if any) wins over one from `_free`.
    let freed = glet.call_method0(intern!(py, "_free")).map(drop);
    reported.and(freed)
}
