//! `loop.call_soon` as a data descriptor: the bound method, made once per
//! loop, without a look in the instance's `__dict__`.
//!
//! asyncio's C `Task` and `Future` look `call_soon` up on the loop for every
//! task step, wake-up and done callback (`getattr(loop, "call_soon")`, then
//! a call with `context=`). As a plain method that lookup missed in the
//! loop's instance dict (two dozen attributes asyncio keeps there) and made
//! a new bound method each time, freed after the call: about 110
//! instructions for the miss (callgrind, `asyncio.sleep(0)` yields) plus the
//! bound method's allocation, GC link and free, and one more object counted
//! towards the collector's young generation per call.
//!
//! A data descriptor is looked up before the instance dict, so its `__get__`
//! answers directly: the loop's cached bound method (`AioLoopCore`'s
//! `soon_bound`, reported by its traverse and dropped by its clear).
//!
//! What users see stays asyncio's:
//! - `loop.call_soon = f` / `del loop.call_soon` (what `unittest.mock`
//!   does) go to `__set__` / `__delete__`, which keep `f` in the instance
//!   dict and mark the loop (`soon_set`); `__get__` then answers from the
//!   dict. (Only a write into `loop.__dict__` itself goes unseen.)
//! - a class that defines `call_soon`, or a patch of the class attribute,
//!   replaces the descriptor in the lookup, as it replaced the method;
//! - on the class, `GreenwheelEventLoop.call_soon` is the method descriptor
//!   it was.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::exceptions::{PyAttributeError, PyRuntimeError};
use pyo3::ffi;
use pyo3::prelude::*;

use super::{AioLoopCore, CALL_SOON_DEF, LOOP_TYPE};
use crate::py::raw_fn::guard;

/// A loop's bound `call_soon`, made at its first lookup: a strong reference
/// or NULL. An atomic pointer, not a lock: the lookup is on every task step.
pub(crate) struct BoundCache(AtomicPtr<ffi::PyObject>);

impl BoundCache {
    pub(crate) const fn new() -> Self {
        BoundCache(AtomicPtr::new(std::ptr::null_mut()))
    }

    fn get<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let p = self.0.load(Ordering::Relaxed);
        // SAFETY: non-NULL, it is the reference this cache holds, released
        // only by `take` (or drop), with the GIL held as here.
        (!p.is_null()).then(|| unsafe { Bound::from_borrowed_ptr(py, p) })
    }

    fn set(&self, bound: Bound<'_, PyAny>) {
        let py = bound.py();
        let old = self.0.swap(bound.into_ptr(), Ordering::Relaxed);
        if !old.is_null() {
            // SAFETY: the reference the cache held; dropped after the swap.
            drop(unsafe { Bound::from_owned_ptr(py, old) });
        }
    }

    /// Its reference, taken out (the loop's clear drops it).
    pub(crate) fn take(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let p = self.0.swap(std::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: the reference the cache held, now the caller's.
        (!p.is_null()).then(|| unsafe { Py::from_owned_ptr(py, p) })
    }

    /// For the loop's traverse.
    pub(crate) fn traverse(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        let p = self.0.load(Ordering::Relaxed);
        if p.is_null() {
            return Ok(());
        }
        // SAFETY: the collector calls traverse with the GIL held; the
        // pointer is the cache's reference, borrowed here without a count
        // of its own (ManuallyDrop: no decref).
        let held = std::mem::ManuallyDrop::new(unsafe {
            Py::<PyAny>::from_owned_ptr(Python::assume_attached(), p)
        });
        visit.call(&*held)
    }
}

impl Drop for BoundCache {
    fn drop(&mut self) {
        let p = *self.0.get_mut();
        if !p.is_null() {
            // SAFETY: the cache's reference. A loop's fields are dropped by
            // its tp_dealloc, with the GIL held; `Py`'s own drop checks.
            drop(unsafe { Py::<PyAny>::from_owned_ptr(Python::assume_attached(), p) });
        }
    }
}

/// The method descriptor `call_soon` was before the descriptor replaced it
/// (one reference, never released: the class keeps it for good too).
static METHOD: AtomicPtr<ffi::PyObject> = AtomicPtr::new(std::ptr::null_mut());

/// The interned name `"call_soon"` (one reference, never released).
static NAME: AtomicPtr<ffi::PyObject> = AtomicPtr::new(std::ptr::null_mut());

/// `__get__`: on the class, the method descriptor; on a loop, its own
/// `call_soon` if it was given one, else its cached bound method.
unsafe extern "C" fn soon_get(
    _descr: *mut ffi::PyObject,
    obj: *mut ffi::PyObject,
    ty: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls tp_descr_get with the GIL held.
    let py = unsafe { Python::assume_attached() };
    guard(py, || {
        let method = METHOD.load(Ordering::Relaxed);
        if method.is_null() {
            return Err(PyRuntimeError::new_err("call_soon is not set up"));
        }
        if obj.is_null() {
            // SAFETY: `method` is live (held by METHOD) and a method
            // descriptor, whose tp_descr_get takes these arguments.
            return unsafe {
                let get = (*ffi::Py_TYPE(method)).tp_descr_get;
                match get {
                    Some(get) => Bound::from_owned_ptr_or_err(py, get(method, obj, ty)),
                    None => Ok(Bound::from_borrowed_ptr(py, method)),
                }
            };
        }
        // SAFETY: `obj` is borrowed for the call.
        let this = unsafe { LOOP_TYPE.cast(py, obj) }?;
        let core = this.get();
        if core.soon_set.get() {
            if let Some(own) = own_call_soon(this.as_any())? {
                return Ok(own);
            }
        }
        if let Some(cached) = core.soon_bound.get(py) {
            return Ok(cached);
        }
        // SAFETY: CALL_SOON_DEF is static and outlives the function object;
        // `obj` is live. A new reference, or NULL with the error set.
        let bound = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyCFunction_NewEx(
                    std::ptr::addr_of!(CALL_SOON_DEF.0).cast_mut(),
                    obj,
                    std::ptr::null_mut(),
                ),
            )
        }?;
        core.soon_bound.set(bound.clone());
        Ok(bound)
    })
}

/// The `call_soon` a loop was given (`loop.call_soon = f`), from its dict.
fn own_call_soon<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = obj.py();
    let dict = instance_dict(obj)?;
    // SAFETY: `dict` is a live dict, NAME a live str (set up before the
    // descriptor is); a borrowed result or NULL (with an error, or none).
    let found =
        unsafe { ffi::PyDict_GetItemWithError(dict.as_ptr(), NAME.load(Ordering::Relaxed)) };
    if found.is_null() {
        return match PyErr::take(py) {
            Some(err) => Err(err),
            None => Ok(None),
        };
    }
    // SAFETY: borrowed from the dict, which `dict` keeps alive.
    Ok(Some(unsafe { Bound::from_borrowed_ptr(py, found) }))
}

fn instance_dict<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `obj` is live; a new reference to its __dict__ (made if need
    // be), or NULL with AttributeError set if it has none.
    unsafe {
        Bound::from_owned_ptr_or_err(
            obj.py(),
            ffi::PyObject_GenericGetDict(obj.as_ptr(), std::ptr::null_mut()),
        )
    }
}

/// `__set__` / `__delete__` (value NULL): the loop's own `call_soon`, kept
/// in its instance dict as without the descriptor.
unsafe extern "C" fn soon_set(
    _descr: *mut ffi::PyObject,
    obj: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> c_int {
    // SAFETY: CPython calls tp_descr_set with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let done = guard(py, || {
        // SAFETY: `obj` is borrowed for the call.
        let this = unsafe { LOOP_TYPE.cast(py, obj) }?;
        let dict = instance_dict(this.as_any())?;
        let name = NAME.load(Ordering::Relaxed);
        if value.is_null() {
            // SAFETY: `dict` is a live dict and `name` a live str.
            if unsafe { ffi::PyDict_DelItem(dict.as_ptr(), name) } < 0 {
                let err = PyErr::fetch(py);
                if err.is_instance_of::<pyo3::exceptions::PyKeyError>(py) {
                    // Python's words for an attribute the object lacks.
                    let class = this.get_type().name()?;
                    return Err(PyAttributeError::new_err(format!(
                        "'{class}' object has no attribute 'call_soon'"
                    )));
                }
                return Err(err);
            }
            this.get().soon_set.set(false);
        } else {
            // SAFETY: as above; `value` is live (borrowed for the call).
            if unsafe { ffi::PyDict_SetItem(dict.as_ptr(), name, value) } < 0 {
                return Err(PyErr::fetch(py));
            }
            this.get().soon_set.set(true);
        }
        Ok(py.None().into_bound(py))
    });
    if done.is_null() {
        return -1;
    }
    // SAFETY: `guard` returned a new reference to None.
    unsafe { ffi::Py_DECREF(done) };
    0
}

/// Replaces `AioLoopCore.call_soon` (the raw method descriptor) with the
/// descriptor (once, at module set-up).
pub(super) fn install(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let ty = py.get_type::<AioLoopCore>();
    let name = pyo3::types::PyString::intern(py, "call_soon");
    let method = ty.getattr(&name)?;
    if METHOD.load(Ordering::Relaxed).is_null() {
        METHOD.store(method.into_ptr(), Ordering::Relaxed);
        NAME.store(name.clone().into_ptr(), Ordering::Relaxed);
    }
    let mut slots = [
        ffi::PyType_Slot {
            slot: ffi::Py_tp_descr_get,
            pfunc: soon_get as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_descr_set,
            pfunc: soon_set as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: 0,
            pfunc: std::ptr::null_mut(),
        },
    ];
    let mut spec = ffi::PyType_Spec {
        name: c"greenwheel._core._CallSoonAttribute".as_ptr(),
        basicsize: std::mem::size_of::<ffi::PyObject>() as c_int,
        itemsize: 0,
        flags: ffi::Py_TPFLAGS_DEFAULT as _,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: the spec and its slots are valid for the call (CPython copies
    // what it keeps; the name is a static string); a new type or NULL.
    let descr_type = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(&mut spec)) }?;
    let descr = descr_type.call0()?;
    ty.setattr(name, descr)
}
