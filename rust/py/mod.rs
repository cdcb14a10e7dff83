//! The PyO3 binding: `greenwheel._core`.
//!
//! Ground rules for everything under `py/`:
//! - Python callbacks run from Rust may switch greenlets and call straight back
//!   into the loop. No `Guarded` borrow is ever held across a call into Python,
//!   and that includes dropping a `Py<...>` (a decref can run `__del__`).
//!   Values taken out of loop state are dropped after the borrow ends.
//! - The loop and its watchers are `frozen` and `Sync`: all mutation goes
//!   through the `Sync` cells of [`sync`] (atomics, and [`sync::Guarded`] in
//!   place of `RefCell`), so PyO3 never raises "already borrowed" on
//!   re-entry, and the garbage collector may traverse, clear or free them on
//!   any thread (the reason they are not `unsendable`; see [`sync`]). They
//!   still belong to the thread that made them: public entry points check
//!   the owner (`Shared::check_owner`). The one exception is
//!   [`async_watcher::AsyncWatcher`], whose `send()` any thread may call; it
//!   touches only atomics and the shared waker.
//! - Bad input is a Python exception (`TypeError`, `ValueError`, `OSError`
//!   with errno), never a panic. PyO3 turns any panic that slips through into
//!   `PanicException` rather than an abort (`panic = "unwind"`).
//! - Every class holding Python objects implements `__traverse__`/`__clear__`.

mod aio;
mod aio_transport;
mod async_watcher;
mod callback;
mod errors;
mod fastpath;
mod frame_chunks;
mod greenlet_api;
mod greenlet_run;
mod http;
mod loop_;
mod raw_fn;
mod sockio;
mod sync;
mod timeout;
mod timer_raw;
mod watchers;
mod wsgi;
mod wsgi_serve;

use pyo3::prelude::*;

/// The system's monotonic clock, the one loops read, in nanoseconds (see
/// `loop_/clock.rs`).
#[pyfunction]
fn monotonic_ns() -> u64 {
    loop_::LoopClock::system_ns()
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    frame_chunks::install(m.py());
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("READ", crate::poller::READ)?;
    m.add("WRITE", crate::poller::WRITE)?;
    m.add_function(wrap_pyfunction!(monotonic_ns, m)?)?;
    m.add_function(wrap_pyfunction!(fastpath::_set_current_hub, m)?)?;
    m.add_function(wrap_pyfunction!(fastpath::_yield_to_poll, m)?)?;
    m.add_function(wrap_pyfunction!(frame_chunks::_frame_cache_info, m)?)?;
    raw_fn::register(m, &greenlet_run::RUN_DEF)?;
    raw_fn::register(m, &fastpath::SLEEP_DEF)?;
    m.add_class::<loop_::Loop>()?;
    loop_::install_sched(m.py())?;
    m.add_class::<callback::Callback>()?;
    m.add_class::<watchers::TimerWatcher>()?;
    timer_raw::install(m.py())?;
    m.add_class::<watchers::IoWatcher>()?;
    watchers::install_io_raw(m.py())?;
    m.add_class::<watchers::SignalWatcher>()?;
    m.add_class::<watchers::PhaseWatcher>()?;
    m.add_class::<async_watcher::AsyncWatcher>()?;
    m.add_class::<timeout::Timeout>()?;
    timeout::install_init(m.py())?;
    http::register(m)?;
    wsgi::register(m)?;
    wsgi_serve::register(m)?;
    sockio::register(m)?;
    aio::register(m)?;
    aio_transport::register(m)?;
    Ok(())
}
