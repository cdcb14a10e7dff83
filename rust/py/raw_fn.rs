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
//! arm + cancel through `#[pymethods]`), and for `Loop.make_ready` /
//! `Loop.park` (every wake-up and every wait): [`install_method`] puts a
//! plain method descriptor on the class in place of PyO3's.
//!
//! Ground rules:
//! - A definition is immutable static data; CPython only reads it.
//! - A function body runs inside [`guard`]: a Rust error becomes the Python
//!   exception, and a panic becomes `PanicException` instead of unwinding
//!   into C (which would abort the process).
//! - In a function that switches greenlets (`sleep`, `Loop.park`), whatever
//!   returns before the switch (argument parsing, error and panic paths) is
//!   out of line and the rest inlined: the frames under a parked greenlet
//!   are copied out and back by greenlet on every switch. Left to LLVM,
//!   `sleep`'s frames grew from 560 to 736 bytes (issue 20), which cost
//!   sleep(0) more in copying (+53 instructions and +4 L1 misses each) than
//!   any instruction saved elsewhere.
//! - A method checks its `self` through [`ExactType::cast`] (CPython's method
//!   descriptor already guarantees the class; the check keeps each method
//!   sound on its own). A `METH_O` method is [`meth_o`] around its body.
//! - PyO3's attach count is not raised here (that costs two thread-local
//!   accesses per call), so PyO3 may not know the thread is attached: a
//!   `Py<T>` dropped plainly could be queued in its deferred-decref pool
//!   instead of released. Owned references a body lets go of are released
//!   through `Bound` (`Py::drop_ref(py)`), which always decrefs at once.

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeCheck;
use pyo3::{Borrowed, PyClass};

/// A `PyMethodDef` that may live in a `static`.
pub(crate) struct MethodDef(pub(crate) ffi::PyMethodDef);

// SAFETY: the definition is immutable static data (pointers to static
// strings and to a function); CPython only reads it, from any thread.
unsafe impl Sync for MethodDef {}

/// What a raw function's body may return: nothing (the call returns None)
/// or a value.
pub(crate) trait Returned {
    /// The new reference the C convention returns.
    fn into_return(self, py: Python<'_>) -> *mut ffi::PyObject;
}

impl Returned for () {
    fn into_return(self, py: Python<'_>) -> *mut ffi::PyObject {
        py.None().into_ptr()
    }
}

impl Returned for Bound<'_, PyAny> {
    fn into_return(self, _py: Python<'_>) -> *mut ffi::PyObject {
        self.into_ptr()
    }
}

/// Runs `body` and translates its outcome to the C convention: a new
/// reference, or NULL with the Python error set.
///
/// Inlined into each raw function and kept to the success path: the frame
/// of a function that switches greenlets (`sleep`, `Loop.park`) stays on the
/// stack of the parked greenlet, and greenlet copies that stack out and back
/// on every switch, so the error and panic paths live out of line.
#[inline(always)]
pub(crate) fn guard<R: Returned>(
    py: Python<'_>,
    body: impl FnOnce() -> PyResult<R>,
) -> *mut ffi::PyObject {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value.into_return(py),
        Ok(Err(err)) => raise(py, err),
        Err(payload) => raise_panic(py, payload),
    }
}

/// Sets `err` as the current Python exception; the NULL to return.
#[cold]
#[inline(never)]
fn raise(py: Python<'_>, err: PyErr) -> *mut ffi::PyObject {
    err.restore(py);
    std::ptr::null_mut()
}

/// Sets the `PanicException` a caught panic becomes; the NULL to return.
#[cold]
#[inline(never)]
fn raise_panic(py: Python<'_>, payload: Box<dyn std::any::Any + Send>) -> *mut ffi::PyObject {
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic in greenwheel._core".to_owned());
    raise(py, PanicException::new_err(message))
}

/// The `callback` of a raw method that takes it first, positionally or by
/// name (`by_name`), with Python's errors for a missing or doubled one: the
/// callback and the index of the first positional argument after it.
#[inline]
pub(crate) fn callback_arg<T>(
    function: &str,
    npos: usize,
    by_name: Option<T>,
    first: impl FnOnce() -> T,
) -> PyResult<(T, usize)> {
    match (npos, by_name) {
        (0, Some(callback)) => Ok((callback, 0)),
        (0, None) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{function}() missing 1 required positional argument: 'callback'"
        ))),
        (_, Some(_)) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{function}() got multiple values for argument 'callback'"
        ))),
        (_, None) => Ok((first(), 1)),
    }
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

/// The type object of the `#[pyclass]` `T`, recorded by [`ExactType::install`]
/// so that a raw method can check its `self` with one pointer comparison
/// instead of PyO3's lazily initialised type check.
///
/// Meant for final classes (no `subclass`), where an exact match is the only
/// match; an instance of a subclass is accepted through the full check, and
/// the first subclass that passes it is remembered and matched by pointer
/// too: `AioLoopCore`'s methods always run on a `GreenwheelEventLoop`, and
/// the full check was about 35 instructions of every `call_soon`
/// (callgrind, `asyncio.sleep(0)` yields).
pub(crate) struct ExactType<T> {
    ty: AtomicPtr<ffi::PyTypeObject>,
    /// The first subclass of `T` seen by `cast`, or NULL. It holds a strong
    /// reference to it, never released, so the address stays that type's.
    sub: AtomicPtr<ffi::PyTypeObject>,
    // `fn() -> T`: the static is `Sync` whatever `T` is (no `T` is stored).
    class: PhantomData<fn() -> T>,
}

impl<T: PyClass> ExactType<T> {
    pub(crate) const fn new() -> Self {
        ExactType {
            ty: AtomicPtr::new(std::ptr::null_mut()),
            sub: AtomicPtr::new(std::ptr::null_mut()),
            class: PhantomData,
        }
    }

    /// Records `T`'s type object and makes each of `defs` a method of it
    /// (see [`install_method`]).
    pub(crate) fn install(&self, py: Python<'_>, defs: &[&'static MethodDef]) -> PyResult<()> {
        let ty = py.get_type::<T>();
        // The module keeps the class alive for as long as its methods can run.
        self.ty.store(ty.as_type_ptr(), Ordering::Relaxed);
        defs.iter().try_for_each(|def| install_method(&ty, def))
    }

    /// `slf` as a `T` (a `TypeError` if it is not one).
    ///
    /// # Safety
    /// `slf` must be a live object pointer borrowed for the call.
    #[inline(always)]
    pub(crate) unsafe fn cast<'a, 'py>(
        &self,
        py: Python<'py>,
        slf: *mut ffi::PyObject,
    ) -> PyResult<Borrowed<'a, 'py, T>> {
        // SAFETY: the caller's contract.
        let obj = unsafe { Borrowed::from_ptr(py, slf) };
        // SAFETY: `slf` is live, so reading its type is sound.
        let ty = unsafe { ffi::Py_TYPE(slf) };
        if ty == self.ty.load(Ordering::Relaxed) || ty == self.sub.load(Ordering::Relaxed) {
            // SAFETY: the type is `T`'s or the subclass of `T` that passed
            // the full check (held alive by `sub`, so no other type has its
            // address; a class's bases can change only to ones with the
            // same layout, so it stays one).
            return Ok(unsafe { obj.cast_unchecked::<T>() });
        }
        let obj = not_exact::<T>(obj)?;
        if self.sub.load(Ordering::Relaxed).is_null() {
            // SAFETY: `ty` is the live type of a live object; the reference
            // taken here is `sub`'s, never released.
            unsafe { ffi::Py_INCREF(ty.cast()) };
            self.sub.store(ty, Ordering::Relaxed);
        }
        Ok(obj)
    }
}

/// [`ExactType::cast`]'s checked path, out of line: CPython's method
/// descriptor only calls a method with an instance of its class, so for a
/// final class it is not taken in practice.
#[cold]
#[inline(never)]
fn not_exact<'a, 'py, T: PyTypeCheck>(
    obj: Borrowed<'a, 'py, PyAny>,
) -> PyResult<Borrowed<'a, 'py, T>> {
    Ok(obj.cast::<T>()?)
}

/// The whole of a raw `METH_O` method of `T`: `self` checked against `ty`,
/// then `body(self, arg)` run inside [`guard`].
///
/// # Safety
/// `slf` and `arg` must be the arguments CPython passed to a `METH_O`
/// function (live, borrowed for the call, the GIL held).
#[inline(always)]
pub(crate) unsafe fn meth_o<'py, T, R>(
    ty: &ExactType<T>,
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    body: impl FnOnce(Python<'py>, &T, Borrowed<'_, 'py, PyAny>) -> PyResult<R>,
) -> *mut ffi::PyObject
where
    T: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync,
    R: Returned,
{
    // SAFETY: CPython calls METH_O functions with the GIL held.
    let py = unsafe { Python::assume_attached() };
    guard(py, || {
        // SAFETY: the caller's contract.
        let this = unsafe { ty.cast(py, slf) }?;
        // SAFETY: as above.
        let arg = unsafe { Borrowed::from_ptr(py, arg) };
        body(py, this.get(), arg)
    })
}
