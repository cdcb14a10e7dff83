//! `TimerWatcher.start` and `TimerWatcher.stop` on CPython's own calling
//! convention (installed by [`install`], see `raw_fn`).
//!
//! Why: arming and cancelling a reused timer is a few dozen instructions in
//! the wheel, but through `#[pymethods]` each call also paid for PyO3's
//! argument description walk, a fresh `*args` tuple (which then never matched
//! the stored one, so the callback was swapped on every start) and the
//! generic trampoline: about 350 instructions per arm + cancel pair.
//!
//! Ground rules:
//! - Same behaviour as the `#[pymethods]` versions they replace, to the error
//!   message: `start(callback, *args, update=None)` and `stop()`.
//! - Bodies run inside `raw_fn::guard`, so errors are Python exceptions and a
//!   panic never unwinds into C.
//! - `self` is checked to be a `TimerWatcher` ([`ExactType::cast`]: CPython's
//!   method descriptor already guarantees it; the check keeps this code sound
//!   on its own).

use pyo3::exceptions::PyTypeError;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::Borrowed;

use super::raw_fn::{callback_arg, guard, ExactType, MethodDef};
use super::watchers::{TimerWatcher, Watcher};

static START_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"start".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: start_raw,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: c"start($self, callback, *args, update=None)\n--\n\nArm the timer `after` seconds from now and call `callback(*args)` when due.".as_ptr(),
});

static STOP_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"stop".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunction: stop_raw,
    },
    ml_flags: ffi::METH_NOARGS,
    ml_doc: c"stop($self, /)\n--\n\nStop watching. Safe at any time, also from the callback."
        .as_ptr(),
});

/// `TimerWatcher`'s type object, for the raw methods' `self` check (the
/// class is final: no `subclass`).
static TIMER_TYPE: ExactType<TimerWatcher> = ExactType::new();

/// Puts the raw `start` and `stop` on `TimerWatcher`.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    TIMER_TYPE.install(py, &[&START_DEF, &STOP_DEF])
}

unsafe extern "C" fn start_raw(
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
        let this = unsafe { TIMER_TYPE.cast(py, slf) }?;
        let npos = usize::try_from(nargs).unwrap_or(0);
        // SAFETY: index < npos, inside the positional part.
        let arg = |i: usize| unsafe { Borrowed::from_ptr(py, *args.add(i)) };
        // No keywords is the common case: decided here, without the call.
        let (by_name, update) = if kwnames.is_null() {
            (None, true)
        } else {
            // SAFETY: as above, for the keyword part that follows.
            unsafe { keywords(py, args, npos, kwnames) }?
        };
        let (callback, first_arg) = callback_arg("TimerWatcher.start", npos, by_name, || arg(0))?;
        this.get()
            .core
            .set_call_from(callback, (first_arg..npos).map(arg))?;
        // Through the borrowed reference: no incref/decref of `self`.
        TimerWatcher::arm(&this, update)
    })
}

/// The keywords `start` takes: `callback` (when not positional) and
/// `update` (None or absent means true).
///
/// # Safety
/// `args`, `npos` and `kwnames` must be a vectorcall's arguments.
#[cold]
unsafe fn keywords<'a, 'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    npos: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<(Option<Borrowed<'a, 'py, PyAny>>, bool)> {
    let mut callback = None;
    let mut update = true;
    if kwnames.is_null() {
        return Ok((callback, update));
    }
    // SAFETY: non-NULL kwnames is a live tuple (vectorcall convention).
    let names = unsafe { Borrowed::from_ptr(py, kwnames) };
    let names = names.cast::<PyTuple>()?;
    for (k, name) in names.iter().enumerate() {
        // SAFETY: the keyword values follow the positional ones, one per name.
        let value = unsafe { Borrowed::from_ptr(py, *args.add(npos + k)) };
        match name.extract::<&str>()? {
            "callback" => callback = Some(value),
            "update" if value.is_none() => update = true,
            "update" => {
                update = value.extract::<bool>().map_err(|_| {
                    PyTypeError::new_err(
                        "TimerWatcher.start() argument 'update' must be a bool or None",
                    )
                })?
            }
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "TimerWatcher.start() got an unexpected keyword argument '{name}'"
                )))
            }
        }
    }
    Ok((callback, update))
}

unsafe extern "C" fn stop_raw(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls METH_NOARGS methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    guard(py, || {
        // SAFETY: `slf` is borrowed for the call.
        let this = unsafe { TIMER_TYPE.cast(py, slf) }?;
        this.get().do_stop(py)
    })
}
