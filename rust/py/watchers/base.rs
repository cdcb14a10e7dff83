//! What every watcher kind shares: its state ([`WatcherCore`]: the loop, the
//! callback and arguments, the active / pending / ref flags) and the call of
//! that callback from the loop ([`invoke`]).

use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::PyTraverseError;

use crate::py::errors::check_callable;
use crate::py::loop_::Loop;
use crate::py::sync::{BoolCell, Guarded, GuardedRef, I32Cell};

/// State every watcher kind shares.
pub(crate) struct WatcherCore {
    pub(crate) loop_: Py<Loop>,
    call: Guarded<Option<(Py<PyAny>, Py<PyTuple>)>>,
    /// The callback's address while `call` holds it with no arguments, else
    /// null: `start(same_callback)` on a reused watcher (the common case)
    /// sees that nothing changes from one pointer comparison, without taking
    /// the `call` lock (a locked compare-and-swap, issue 19). Only compared,
    /// never dereferenced; every write of `call` goes through
    /// [`WatcherCore::store_call`], which keeps it in step (the GIL orders
    /// the two). While non-null the callback is alive (`call` owns a
    /// reference), so the address cannot be reused by another object.
    bare_callback: AtomicPtr<ffi::PyObject>,
    active: BoolCell,
    pub(super) pending: BoolCell,
    pub(super) ref_: BoolCell,
    pub(super) priority: I32Cell,
    /// `args` was set to None: the callback gets no arguments and `args`
    /// reads None (gevent's watchers allow that).
    args_none: BoolCell,
}

impl WatcherCore {
    pub(crate) fn new(loop_: Py<Loop>, ref_: bool, priority: Option<i32>) -> Self {
        WatcherCore {
            loop_,
            call: Guarded::new(None),
            bare_callback: AtomicPtr::new(std::ptr::null_mut()),
            active: BoolCell::new(false),
            pending: BoolCell::new(false),
            ref_: BoolCell::new(ref_),
            priority: I32Cell::new(priority.unwrap_or(0)),
            args_none: BoolCell::new(false),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.get()
    }

    pub(crate) fn set_pending(&self, pending: bool) {
        self.pending.set(pending);
    }

    /// Clears `pending`, returning whether it was set (the watcher is due).
    pub(crate) fn take_pending(&self) -> bool {
        self.pending.replace(false)
    }

    /// Stores the callback; raises TypeError if it is not callable.
    pub(crate) fn set_call(
        &self,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        check_callable(callback)?;
        self.args_none.set(false);
        let old = {
            let mut call = self.call.borrow_mut();
            // A reused watcher restarted with the same call (the common case)
            // keeps its references: no reference-count churn.
            if let Some((f, a)) = call.as_ref() {
                if f.is(callback) && a.is(args) {
                    return Ok(());
                }
            }
            self.store_call(
                &mut call,
                Some((callback.clone().unbind(), args.clone().unbind())),
            )
        };
        drop(old); // after the lock is released: a decref may run Python code
        Ok(())
    }

    /// [`set_call`](Self::set_call) for a callback and arguments that arrive
    /// as a vectorcall's borrowed values: the argument tuple is only built
    /// when the call differs from the stored one.
    ///
    /// Inline up to the common case (a reused watcher started again with
    /// the same bare callback); the rest is [`replace_call_from`]. As one
    /// function, the common case paid the whole function's register saves
    /// and restores: 34 instructions where it needs a handful (issue 19).
    ///
    /// [`replace_call_from`]: Self::replace_call_from
    #[inline(always)]
    pub(crate) fn set_call_from<'a, 'py>(
        &self,
        callback: Borrowed<'a, 'py, PyAny>,
        args: impl ExactSizeIterator<Item = Borrowed<'a, 'py, PyAny>> + Clone,
    ) -> PyResult<()> {
        check_callable(&callback)?;
        self.args_none.set(false);
        if args.len() == 0 && callback.as_ptr() == self.bare_callback.load(Ordering::Relaxed) {
            debug_assert!(self.call.try_borrow().is_ok_and(|c| c
                .as_ref()
                .is_some_and(|(f, a)| f.is(&*callback) && a.bind(callback.py()).is_empty())));
            return Ok(());
        }
        self.replace_call_from(callback, args)
    }

    /// [`set_call_from`](Self::set_call_from) past its common case.
    #[inline(never)]
    fn replace_call_from<'a, 'py>(
        &self,
        callback: Borrowed<'a, 'py, PyAny>,
        args: impl ExactSizeIterator<Item = Borrowed<'a, 'py, PyAny>> + Clone,
    ) -> PyResult<()> {
        let py = callback.py();
        let old = {
            let mut call = self.call.borrow_mut();
            if let Some((f, a)) = call.as_ref() {
                let a = a.bind(py);
                if f.is(&*callback)
                    && a.len() == args.len()
                    && a.iter_borrowed().zip(args.clone()).all(|(x, y)| x.is(&*y))
                {
                    return Ok(());
                }
            }
            // Building the tuple only increfs: no Python code runs here.
            let new_args = PyTuple::new(py, args)?;
            self.store_call(
                &mut call,
                Some((callback.to_owned().unbind(), new_args.unbind())),
            )
        };
        // After the lock is released (a decref may run Python code), and
        // through `drop_ref`: see `raw_fn` on references dropped there.
        if let Some((f, a)) = old {
            f.drop_ref(py);
            a.drop_ref(py);
        }
        Ok(())
    }

    /// A new reference to the callback and its args, for one invocation.
    pub(crate) fn call_parts(&self, py: Python<'_>) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        self.call
            .borrow()
            .as_ref()
            .map(|(f, a)| (f.clone_ref(py), a.clone_ref(py)))
    }

    /// Flips `active` and keeps the loop's referenced-watcher count in step.
    ///
    /// A load and a store rather than a swap: an atomic swap is a locked
    /// instruction on x86 (about 20 cycles), and this runs twice per timer
    /// arm + cancel; the GIL already orders every access (see `sync`).
    pub(crate) fn mark_active(&self, lp: &Loop, active: bool) {
        if self.active.get() != active {
            self.active.set(active);
            if self.ref_.get() {
                lp.adjust_activecnt(if active { 1 } else { -1 });
            }
        }
        if !active && self.pending.get() {
            self.pending.set(false);
        }
    }

    pub(super) fn set_ref(&self, py: Python<'_>, value: bool) {
        if self.ref_.replace(value) != value && self.active.get() {
            self.loop_
                .bind(py)
                .borrow()
                .adjust_activecnt(if value { 1 } else { -1 });
        }
    }

    /// Replaces the stored call under its lock, keeping `bare_callback` in
    /// step; returns the old one (drop it after the lock is released).
    fn store_call(
        &self,
        call: &mut GuardedRef<'_, Option<(Py<PyAny>, Py<PyTuple>)>>,
        new: Option<(Py<PyAny>, Py<PyTuple>)>,
    ) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        let bare = match &new {
            // SAFETY: `a` is a live tuple (`new` owns a reference), and a
            // tuple's size never changes after creation.
            Some((f, a)) if unsafe { ffi::PyTuple_GET_SIZE(a.as_ptr()) } == 0 => f.as_ptr(),
            _ => std::ptr::null_mut(),
        };
        self.bare_callback.store(bare, Ordering::Relaxed);
        std::mem::replace(&mut **call, new)
    }

    pub(super) fn clear_call(&self) {
        drop(self.take_call());
    }

    /// Takes the callback and its arguments out (for a one-shot event).
    pub(crate) fn take_call(&self) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        let mut call = self.call.borrow_mut();
        self.store_call(&mut call, None)
    }

    /// The `callback` setter: a callable (the arguments stay), or None
    /// (forget the callback and arguments).
    pub(super) fn set_callback(
        &self,
        py: Python<'_>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        // PyO3 hands both `= None` and `del` over as None: either forgets.
        let Some(value) = value.filter(|v| !v.is_none()) else {
            self.clear_call();
            return Ok(());
        };
        check_callable(value)?;
        let old = {
            let mut call = self.call.borrow_mut();
            let args = match call.as_ref() {
                Some((_, a)) => a.clone_ref(py),
                None => PyTuple::empty(py).unbind(),
            };
            self.store_call(&mut call, Some((value.clone().unbind(), args)))
        };
        drop(old); // after the lock: a decref may run Python code
        Ok(())
    }

    /// The `args` getter: None without a callback or after `args = None`.
    pub(super) fn get_args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        if self.args_none.get() {
            return None;
        }
        self.call_parts(py).map(|(_, a)| a)
    }

    /// The `args` setter: a tuple, or None (no arguments).
    pub(super) fn set_args(
        &self,
        py: Python<'_>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        // PyO3 hands both `= None` and `del` over as None: either means no
        // arguments.
        let (args, none) = if let Some(value) = value.filter(|v| !v.is_none()) {
            let Ok(t) = value.cast_exact::<PyTuple>() else {
                return Err(PyTypeError::new_err(format!(
                    "args must be a tuple or None, not {}",
                    value.get_type().name()?
                )));
            };
            (t.clone(), false)
        } else {
            (PyTuple::empty(py), true)
        };
        let old = {
            let mut call = self.call.borrow_mut();
            let func = match call.as_ref() {
                Some((f, _)) => f.clone_ref(py),
                None => py.None(),
            };
            self.store_call(&mut call, Some((func, args.unbind())))
        };
        self.args_none.set(none);
        drop(old); // after the lock: a decref may run Python code
        Ok(())
    }

    /// The `priority` setter: only while stopped, as in libev.
    pub(super) fn set_priority(&self, value: i32) -> PyResult<()> {
        if self.active.get() {
            return Err(PyAttributeError::new_err(
                "cannot set the priority of an active watcher",
            ));
        }
        self.priority.set(value);
        Ok(())
    }

    pub(super) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Ok(call) = self.call.try_borrow() {
            if let Some((f, a)) = call.as_ref() {
                visit.call(f)?;
                visit.call(a)?;
            }
        }
        Ok(())
    }

    pub(super) fn describe(
        &self,
        py: Python<'_>,
        kind: &str,
        addr: usize,
        extra: &str,
    ) -> PyResult<String> {
        let mut s = format!("<{kind} at {addr:#x}");
        if self.active.get() {
            s.push_str(" active");
        }
        if self.pending.get() {
            s.push_str(" pending");
        }
        if !self.ref_.get() {
            s.push_str(" ref=False");
        }
        s.push_str(extra);
        if let Some((f, a)) = self.call_parts(py) {
            s.push_str(&format!(" callback={}", f.bind(py).repr()?));
            if !a.bind(py).is_empty() {
                s.push_str(&format!(" args={}", a.bind(py).repr()?));
            }
        }
        s.push('>');
        Ok(s)
    }
}

/// Calls `callback(*args)` (with `prefix` arguments first, if any).
pub(crate) fn invoke(
    py: Python<'_>,
    callback: &Py<PyAny>,
    args: &Py<PyTuple>,
    prefix: Option<u8>,
) -> PyResult<()> {
    let args = args.bind(py);
    match prefix {
        None => callback.bind(py).call1(args.clone())?,
        Some(events) => {
            let mut full: Vec<Bound<'_, PyAny>> = Vec::with_capacity(args.len() + 1);
            full.push(events.into_pyobject(py)?.into_any());
            full.extend(args.iter());
            callback
                .bind(py)
                .call(PyTuple::new(py, full)?, None::<&Bound<'_, PyDict>>)?
        }
    };
    Ok(())
}
