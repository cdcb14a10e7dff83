//! Argument checking shared by the binding: turns bad user input into the
//! Python exception a user expects, before it reaches the pure-Rust core.

use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Validates a delay in seconds: NaN is a `ValueError`; negative means "due
/// now" and +inf "never" (see [`crate::clock::secs_to_ns`]).
pub(crate) fn delay_ns(what: &str, secs: f64) -> PyResult<u64> {
    if secs.is_nan() {
        return Err(PyValueError::new_err(format!("{what} must not be NaN")));
    }
    Ok(crate::clock::secs_to_ns(secs))
}

/// A callback must be callable; say which argument was not.
///
/// Inline, with the error out of line: `start()` of every watcher checks its
/// callback, and as a call this was about 30 instructions of a timer's
/// ~900-instruction arm + cancel (issue 19, callgrind); inline it is the
/// `PyCallable_Check` call and one branch.
#[inline(always)]
pub(crate) fn check_callable(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: `obj` is a live object (a `Bound` holds a reference).
    if unsafe { pyo3::ffi::PyCallable_Check(obj.as_ptr()) } != 0 {
        Ok(())
    } else {
        Err(not_callable(obj))
    }
}

#[cold]
#[inline(never)]
fn not_callable(obj: &Bound<'_, PyAny>) -> PyErr {
    match obj.get_type().name() {
        Ok(name) => PyTypeError::new_err(format!("callback must be callable, not {name}")),
        Err(err) => err,
    }
}

/// An `io::Error` as `OSError(errno, strerror)` so `e.errno` is set.
pub(crate) fn os_error(err: std::io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(code) => {
            // io::Error's Display appends " (os error N)"; Python's OSError
            // already shows "[Errno N]", so keep just the strerror text.
            let text = err.to_string();
            let strerror = text.split(" (os error").next().unwrap_or(&text).to_owned();
            PyOSError::new_err((code, strerror))
        }
        None => PyOSError::new_err(err.to_string()),
    }
}
