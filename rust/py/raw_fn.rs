//! Functions and methods defined straight on CPython's C calling convention.
//!
//! `#[pyfunction]` wraps every function in a generic trampoline (argument
//! descriptions, a GIL-count guard, panic catching) that costs instructions
//! and, more to the point here, a stack frame. For the two functions that
//! sit under every parked greenlet (`sleep` and the greenlet body) that frame
//! is copied out and back by greenlet on every switch and kept for as long as
//! the greenlet is parked, so they are defined with a plain `PyMethodDef`.
//! The same goes for the two methods whose call overhead was most of their
//! cost (`TimerWatcher.start` / `stop`, about 350 of 1,300 instructions per
//! arm + cancel through `#[pymethods]`): [`install_method`] puts a plain
//! method descriptor on the class in place of PyO3's.
//!
//! Ground rules:
//! - A definition is immutable static data; CPython only reads it.
//! - A function body runs inside [`guard`]: a Rust error becomes the Python
//!   exception, and a panic becomes `PanicException` instead of unwinding
//!   into C (which would abort the process).
//! - PyO3's attach count is not raised here (that costs two thread-local
//!   accesses per call), so PyO3 may not know the thread is attached: a
//!   `Py<T>` dropped plainly could be queued in its deferred-decref pool
//!   instead of released. Owned references a body lets go of are released
//!   through `Bound` (`Py::drop_ref(py)`), which always decrefs at once.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;

/// A `PyMethodDef` that may live in a `static`.
pub(crate) struct MethodDef(pub(crate) ffi::PyMethodDef);

// SAFETY: the definition is immutable static data (pointers to static
// strings and to a function); CPython only reads it, from any thread.
unsafe impl Sync for MethodDef {}

/// Runs `body` and translates its outcome to the C convention: a new
/// reference, or NULL with the Python error set.
pub(crate) fn guard(py: Python<'_>, body: impl FnOnce() -> PyResult<()>) -> *mut ffi::PyObject {
    let err = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return py.None().into_ptr(),
        Ok(Err(err)) => err,
        Err(payload) => panic_error(payload),
    };
    err.restore(py);
    std::ptr::null_mut()
}

/// [`guard`] for a body that returns a value (passed on as a new reference).
pub(crate) fn guard_value<'py>(
    py: Python<'py>,
    body: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
) -> *mut ffi::PyObject {
    let err = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => return value.into_ptr(),
        Ok(Err(err)) => err,
        Err(payload) => panic_error(payload),
    };
    err.restore(py);
    std::ptr::null_mut()
}

/// The `PanicException` a caught panic becomes.
#[cold]
fn panic_error(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic in greenwheel._core".to_owned());
    PanicException::new_err(message)
}

/// Adds the function `def` describes to the module `m`.
pub(crate) fn register(m: &Bound<'_, PyModule>, def: &'static MethodDef) -> PyResult<()> {
    let py = m.py();
    let module_name = m.name()?;
    // SAFETY: `def` is static, so it outlives the function object, and
    // CPython never writes through the pointer; `module_name` is a live str.
    let func = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCFunction_NewEx(
                std::ptr::addr_of!(def.0).cast_mut(),
                std::ptr::null_mut(),
                module_name.as_ptr(),
            ),
        )?
    };
    let name = func.getattr(pyo3::intern!(py, "__name__"))?;
    m.add(name.cast_into::<pyo3::types::PyString>()?, func)
}

/// Makes `def` the method of that name on the class `ty`. CPython's method
/// descriptor checks the type of `self` before calling, so `def`'s function
/// gets an instance of `ty`.
pub(crate) fn install_method(
    ty: &Bound<'_, pyo3::types::PyType>,
    def: &'static MethodDef,
) -> PyResult<()> {
    let py = ty.py();
    // SAFETY: `def` is static, so it outlives the descriptor, and CPython
    // never writes through the pointer; `ty` is a live type object.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyDescr_NewMethod(ty.as_type_ptr(), std::ptr::addr_of!(def.0).cast_mut()),
        )?
    };
    let name = descr.getattr(pyo3::intern!(py, "__name__"))?;
    ty.setattr(name.cast_into::<pyo3::types::PyString>()?, descr)
}
