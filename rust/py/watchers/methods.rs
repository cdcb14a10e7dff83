//! `watcher_methods!`: the Python methods every watcher class shares,
//! stamped out per class. Declared first in `watchers/mod.rs`, so the kind
//! modules after it can use it; it names everything by full path, so an
//! expansion needs nothing in scope.

/// The Python methods every watcher class shares (a second `#[pymethods]`
/// block per class, hence PyO3's `multiple-pymethods`), over the type's
/// [`Watcher`](super::Watcher) implementation.
///
/// `watcher_methods!(T, "T", raw_stop)` leaves `stop` out, for a class that
/// installs its own (`TimerWatcher`, see `timer_raw`).
macro_rules! watcher_methods {
    ($ty:ident, $kind:literal) => {
        watcher_methods!($ty, $kind, raw_stop);

        #[::pyo3::pymethods]
        impl $ty {
            /// Stop watching. Safe at any time, also from the callback.
            fn stop(&self, py: ::pyo3::Python<'_>) -> ::pyo3::PyResult<()> {
                self.do_stop(py)
            }
        }
    };
    ($ty:ident, $kind:literal, raw_stop) => {
        // The trait's methods (`core`, `do_stop`, ...) for the bodies below
        // (the module using the macro may import the trait itself already).
        #[allow(unused_imports)]
        use $crate::py::watchers::Watcher as _;

        #[::pyo3::pymethods]
        impl $ty {
            /// The loop this watcher belongs to.
            #[getter]
            #[pyo3(name = "loop")]
            fn get_loop(&self, py: ::pyo3::Python<'_>) -> ::pyo3::Py<$crate::py::loop_::Loop> {
                self.core().loop_.clone_ref(py)
            }

            /// The callback, or None.
            #[getter]
            fn callback(&self, py: ::pyo3::Python<'_>) -> Option<::pyo3::Py<::pyo3::PyAny>> {
                self.core().call_parts(py).map(|(f, _)| f)
            }

            #[setter]
            #[pyo3(name = "callback")]
            fn set_callback_py(
                &self,
                py: ::pyo3::Python<'_>,
                value: Option<&::pyo3::Bound<'_, ::pyo3::PyAny>>,
            ) -> ::pyo3::PyResult<()> {
                self.core().set_callback(py, value)
            }

            /// The arguments passed to the callback (None without a callback).
            #[getter]
            fn args(&self, py: ::pyo3::Python<'_>) -> Option<::pyo3::Py<::pyo3::types::PyTuple>> {
                self.core().get_args(py)
            }

            #[setter]
            #[pyo3(name = "args")]
            fn set_args_py(
                &self,
                py: ::pyo3::Python<'_>,
                value: Option<&::pyo3::Bound<'_, ::pyo3::PyAny>>,
            ) -> ::pyo3::PyResult<()> {
                self.core().set_args(py, value)
            }

            /// True between start() and stop().
            #[getter]
            fn active(&self) -> bool {
                self.core().is_active()
            }

            /// True while the event happened and the callback is about to run.
            #[getter]
            fn pending(&self) -> bool {
                self.core().pending.get()
            }

            /// Whether an active watcher keeps `Loop.run()` from returning.
            #[getter]
            #[pyo3(name = "ref")]
            fn get_ref(&self) -> bool {
                self.core().ref_.get()
            }

            #[setter]
            #[pyo3(name = "ref")]
            fn set_ref_py(&self, py: ::pyo3::Python<'_>, value: bool) {
                self.core().set_ref(py, value);
            }

            /// Priority (kept for gevent compatibility; events dispatch in
            /// arrival order).
            #[getter]
            fn priority(&self) -> i32 {
                self.core().priority.get()
            }

            #[setter]
            #[pyo3(name = "priority")]
            fn set_priority_py(&self, value: i32) -> ::pyo3::PyResult<()> {
                self.core().set_priority(value)
            }

            /// Stop and release the callback and its arguments.
            fn close(&self, py: ::pyo3::Python<'_>) -> ::pyo3::PyResult<()> {
                self.do_stop(py)?;
                self.core().clear_call();
                Ok(())
            }

            fn __enter__(slf: ::pyo3::Bound<'_, Self>) -> ::pyo3::Bound<'_, Self> {
                slf
            }

            #[pyo3(signature = (*_exc))]
            fn __exit__(
                &self,
                py: ::pyo3::Python<'_>,
                _exc: &::pyo3::Bound<'_, ::pyo3::types::PyTuple>,
            ) -> ::pyo3::PyResult<()> {
                self.close(py)
            }

            fn __repr__(slf: &::pyo3::Bound<'_, Self>) -> ::pyo3::PyResult<String> {
                let this = slf.get();
                let extra = this.repr_extra();
                this.core()
                    .describe(slf.py(), $kind, slf.as_ptr() as usize, &extra)
            }

            fn __traverse__(
                &self,
                visit: ::pyo3::gc::PyVisit<'_>,
            ) -> Result<(), ::pyo3::PyTraverseError> {
                self.core().traverse(&visit)?;
                self.visit_extra(&visit)
            }

            fn __clear__(&self) {
                self.core().clear_call();
                self.clear_extra();
            }
        }
    };
}
