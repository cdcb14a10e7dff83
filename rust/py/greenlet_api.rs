//! greenlet's C API, imported from the `greenlet._C_API` capsule.
//!
//! The hot paths of the hub (yielding to the loop, resuming a greenlet) switch
//! through these function pointers instead of Python method calls: no bound
//! method objects, no argument parsing, no interpreter frames.
//!
//! Ground rules:
//! - The table layout is greenlet's public `greenlet.h` (12 slots, stable
//!   since greenlet 1.0): slot 0 is the greenlet type, 4 `PyGreenlet_GetCurrent`,
//!   6 `PyGreenlet_Switch`.
//! - Every object handed to `switch` is checked to be a greenlet first, so a
//!   wrong argument is a `TypeError`, never undefined behaviour.
//! - The capsule pointer is immortal once imported: the greenlet extension is
//!   never unloaded, so the table is cached for the life of the process.

use std::ffi::c_void;
use std::sync::OnceLock;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// Slot of the greenlet type object in the table.
const TYPE_SLOT: usize = 0;
/// Slot of `PyGreenlet_GetCurrent`.
const GET_CURRENT_SLOT: usize = 4;
/// Slot of `PyGreenlet_Switch`.
const SWITCH_SLOT: usize = 6;
/// Slot of `PyGreenlet_STARTED`.
const STARTED_SLOT: usize = 9;
/// Number of slots `greenlet.h` promises.
const API_SLOTS: usize = 12;
// Every slot read below lies inside the table.
const _: () = assert!(
    TYPE_SLOT < API_SLOTS
        && GET_CURRENT_SLOT < API_SLOTS
        && SWITCH_SLOT < API_SLOTS
        && STARTED_SLOT < API_SLOTS
);

type StartedFn = unsafe extern "C" fn(*mut ffi::PyObject) -> std::ffi::c_int;
type GetCurrentFn = unsafe extern "C" fn() -> *mut ffi::PyObject;
pub(crate) type SwitchFn = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *mut ffi::PyObject,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

struct Api {
    greenlet_type: usize,
    get_current: GetCurrentFn,
    switch: SwitchFn,
    started: StartedFn,
}

static API: OnceLock<Api> = OnceLock::new();

fn load(py: Python<'_>) -> PyResult<Api> {
    py.import("greenlet")?;
    // SAFETY: the name is a valid NUL-terminated C string; PyCapsule_Import
    // needs the GIL, which `py` proves we hold.
    let table =
        unsafe { ffi::PyCapsule_Import(c"greenlet._C_API".as_ptr(), 0) } as *const *mut c_void;
    if table.is_null() {
        return Err(PyErr::take(py)
            .unwrap_or_else(|| PyRuntimeError::new_err("greenlet._C_API is missing")));
    }
    // SAFETY: `table` points to greenlet's static array of API_SLOTS pointers
    // (see greenlet.h); we read four of them, all within bounds.
    let (ty, get_current, switch, started) = unsafe {
        (
            *table.add(TYPE_SLOT),
            *table.add(GET_CURRENT_SLOT),
            *table.add(SWITCH_SLOT),
            *table.add(STARTED_SLOT),
        )
    };
    if ty.is_null() || get_current.is_null() || switch.is_null() || started.is_null() {
        return Err(PyRuntimeError::new_err("greenlet._C_API has empty slots"));
    }
    // SAFETY: the slots hold functions with exactly these C signatures
    // (greenlet.h: PyGreenlet_GetCurrent, PyGreenlet_Switch, PyGreenlet_STARTED).
    let (get_current, switch, started) = unsafe {
        (
            std::mem::transmute::<*mut c_void, GetCurrentFn>(get_current),
            std::mem::transmute::<*mut c_void, SwitchFn>(switch),
            std::mem::transmute::<*mut c_void, StartedFn>(started),
        )
    };
    Ok(Api {
        greenlet_type: ty as usize,
        get_current,
        switch,
        started,
    })
}

fn api(py: Python<'_>) -> PyResult<&'static Api> {
    if let Some(api) = API.get() {
        return Ok(api);
    }
    let loaded = load(py)?;
    Ok(API.get_or_init(|| loaded))
}

/// `PyGreenlet_Switch` itself, for a caller that must switch from a frame as
/// small as possible (see `fastpath::sleep_raw`): the greenlet it switches
/// to must be a greenlet (the caller checks), the GIL held; NULL args and
/// kwargs mean "no arguments".
pub(crate) fn switch_fn(py: Python<'_>) -> PyResult<SwitchFn> {
    Ok(api(py)?.switch)
}

/// Whether `obj` is a greenlet (or a subclass instance).
pub(crate) fn is_greenlet(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let api = api(py)?;
    // SAFETY: `obj` is a live object and the type pointer is greenlet's
    // static type object; PyObject_TypeCheck only reads type fields.
    Ok(unsafe {
        ffi::PyObject_TypeCheck(obj.as_ptr(), api.greenlet_type as *mut ffi::PyTypeObject)
    } != 0)
}

/// `greenlet.getcurrent()`.
pub(crate) fn getcurrent(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let api = api(py)?;
    // SAFETY: GIL held; returns a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, (api.get_current)()) }
}

/// `glet.switch()`: runs `glet` until something switches back here; returns
/// what was passed back (or raises what was thrown in).
pub(crate) fn switch<'py>(
    py: Python<'py>,
    glet: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    if !is_greenlet(py, glet)? {
        return Err(PyTypeError::new_err(format!(
            "expected a greenlet, not {}",
            glet.get_type().name()?
        )));
    }
    switch_checked(py, glet)
}

/// A greenlet known to be one: it came from [`getcurrent`] and was kept in
/// loop state that only this module's callers fill.
pub(crate) struct Greenlet<'a, 'py>(pub(crate) &'a Bound<'py, PyAny>);

/// [`switch`] for a value already known to be a greenlet (skips the subtype
/// walk on the hottest path: resuming a greenlet queued by `yield_now`).
#[inline(always)]
pub(crate) fn switch_known<'py>(
    py: Python<'py>,
    glet: Greenlet<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    switch_checked(py, glet.0)
}

#[inline(always)]
fn switch_checked<'py>(py: Python<'py>, glet: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let api = api(py)?;
    let args = PyTuple::empty(py);
    // SAFETY: callers guarantee `glet` is a greenlet (checked in `switch`,
    // or obtained from `getcurrent` for `switch_known`); `args` is a valid tuple and
    // kwargs may be NULL per greenlet.h. The call returns a new reference or
    // NULL with an exception set. No Rust borrow of loop state is live across
    // it (callers uphold the module rule in py/mod.rs).
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            (api.switch)(glet.as_ptr(), args.as_ptr(), std::ptr::null_mut()),
        )
    }
}

/// Whether a greenlet has started running (false before its first switch;
/// true while running and after it finished).
pub(crate) fn has_started(py: Python<'_>, glet: Greenlet<'_, '_>) -> PyResult<bool> {
    let api = api(py)?;
    // SAFETY: `glet` is a greenlet (see `Greenlet`); PyGreenlet_STARTED only
    // reads its state and needs the GIL, which `py` proves we hold.
    Ok(unsafe { (api.started)(glet.0.as_ptr()) } != 0)
}
