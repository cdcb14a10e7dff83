//! `IoWatcher.recv_within` on CPython's own calling convention (installed
//! by [`install`], see `raw_fn`).
//!
//! Why: a blocking `recv` parks its greenlet inside this call, and greenlet
//! copies every frame between the interpreter and the switch out to the heap
//! and back on each wait. Through `#[pymethods]` those frames included
//! PyO3's trampoline and argument parsing, 688 bytes of a StreamServer
//! handler's 2,824 (gdb, release build).
//!
//! Ground rules:
//! - Same behaviour as the `#[pymethods]` version it replaces:
//!   `recv_within(hub, bufsize, timeout, timeout_args)`, positional only
//!   (its two callers, `socket.recv` and `socket._recv_within`, pass all
//!   four positionally; pywsgi's native loop calls the Rust function).
//! - The body runs inside `raw_fn::guard`, so errors are Python exceptions
//!   and a panic never unwinds into C; what returns before the wait
//!   (argument errors) is out of line.
//! - `self` is checked to be an `IoWatcher` ([`ExactType::cast`]; the class
//!   is final).

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::Borrowed;

use super::IoWatcher;
use crate::py::raw_fn::{guard, ExactType, MethodDef};

static RECV_WITHIN_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"recv_within".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFast: recv_within_raw,
    },
    ml_flags: ffi::METH_FASTCALL,
    ml_doc: c"recv_within($self, hub, bufsize, timeout, timeout_args, /)\n--\n\nA stream socket's `recv(bufsize)` bounded by `timeout` seconds (None: no\nbound), on this read watcher of its fd: the bytes read, `b\"\"` at EOF.\nSkips the read that can only say EAGAIN while `drained`; waits (`wait`,\nwith `timeout_args` raised at the deadline) and reads again until bytes or\nEOF come. Read errors are `OSError`s.".as_ptr(),
});

/// `IoWatcher`'s type object, for the raw method's `self` check.
static IO_TYPE: ExactType<IoWatcher> = ExactType::new();

/// Puts the raw `recv_within` on `IoWatcher`.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    IO_TYPE.install(py, &[&RECV_WITHIN_DEF])
}

unsafe extern "C" fn recv_within_raw(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls METH_FASTCALL methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    guard(py, || {
        // SAFETY: `slf` is borrowed for the call.
        let this = unsafe { IO_TYPE.cast(py, slf) }?;
        if nargs != 4 {
            return Err(arity(nargs));
        }
        // SAFETY: index < nargs == 4: the positional arguments, borrowed
        // for the call.
        let arg = |i: usize| unsafe { Borrowed::from_ptr(py, *args.add(i)) };
        let hub = arg(0);
        let bufsize = arg(1)
            .extract::<isize>()
            .map_err(|e| bad(py, "bufsize", e))?;
        let timeout = arg(2)
            .extract::<Option<f64>>()
            .map_err(|e| bad(py, "timeout", e))?;
        let timeout_args = arg(3)
            .cast::<PyTuple>()
            .map_err(|e| bad(py, "timeout_args", e.into()))?;
        IoWatcher::recv_within(&this, &hub, bufsize, timeout, &timeout_args)
            .map(|data| data.into_bound(py).into_any())
    })
}

/// The `TypeError` for a call without exactly four arguments.
#[cold]
#[inline(never)]
fn arity(nargs: ffi::Py_ssize_t) -> PyErr {
    PyTypeError::new_err(format!(
        "IoWatcher.recv_within() takes exactly 4 positional arguments ({nargs} given)"
    ))
}

/// `err`, raised for the argument `name`, as PyO3's methods word it (a
/// `TypeError` names the argument; other errors pass unchanged).
#[cold]
#[inline(never)]
fn bad(py: Python<'_>, name: &str, err: PyErr) -> PyErr {
    if !err.get_type(py).is(py.get_type::<PyTypeError>()) {
        return err;
    }
    let named = PyTypeError::new_err(format!("argument '{name}': {}", err.value(py)));
    named.set_cause(py, err.cause(py));
    named
}
