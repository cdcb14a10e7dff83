//! Wake-ups from outside the loop's thread: async watchers, thread-safe
//! callbacks and signal watchers.

use std::sync::atomic::Ordering;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{same, Loop, Queued, SignalHandler, SignalSlot};
use crate::py::async_watcher::{lock, AsyncWatcher};
use crate::py::callback::Callback;
use crate::py::watchers::SignalWatcher;

impl Loop {
    pub(crate) fn async_start(&self, w: Py<AsyncWatcher>) -> PyResult<()> {
        self.check_usable()?;
        self.with_state(|st| st.asyncs.push(w))
    }

    pub(crate) fn async_stop(&self, w: &AsyncWatcher) -> Option<Py<AsyncWatcher>> {
        let target: *const AsyncWatcher = w;
        let mut st = self.state.try_borrow_mut().ok()?;
        let st = st.as_mut()?;
        let pos = st
            .asyncs
            .iter()
            .position(|p| std::ptr::eq(p.get(), target))?;
        Some(st.asyncs.remove(pos))
    }

    pub(super) fn dispatch_asyncs(&self, py: Python<'_>) -> PyResult<bool> {
        let mut any = false;
        // Clear the loop-wide flag before reading the per-watcher ones, so a
        // send racing with us re-sets it and is seen next pass.
        if self.shared.async_pending.swap(false, Ordering::AcqRel) {
            let snapshot: Vec<Py<AsyncWatcher>> =
                self.with_state(|st| st.asyncs.iter().map(|w| w.clone_ref(py)).collect())?;
            for w in snapshot {
                if let Some(call) = w.get().take_fired(py) {
                    any = true;
                    if let Err(e) = self.call_reporting(py, w.bind(py).as_any(), Some(call), None) {
                        // Watchers not reached yet keep their `sent` flag;
                        // make the next pass look at them again.
                        self.shared.async_pending.store(true, Ordering::Release);
                        return Err(e);
                    }
                }
            }
        }
        let queued = std::mem::take(&mut *lock(&self.shared.threadsafe));
        for (f, a) in queued {
            any = true;
            let cb = match f.bind(py).cast::<Callback>() {
                Ok(cb) if a.bind(py).is_empty() => cb.clone().unbind(),
                _ => Py::new(py, Callback::new(f, a))?,
            };
            self.push_callback(Queued::Call(cb));
        }
        Ok(any)
    }

    // ----- signals

    pub(crate) fn signal_start(&self, slf: &Bound<'_, SignalWatcher>) -> PyResult<()> {
        self.check_usable()?;
        let py = slf.py();
        let w = slf.get();
        if w.core.is_active() {
            return Ok(());
        }
        let signum = w.signum;
        let installed = self.with_state(|st| st.signals.contains_key(&signum))?;
        if !installed {
            if !self.default {
                return Err(PyValueError::new_err(
                    "signal watchers need the main thread's default loop",
                ));
            }
            let signal = py.import("signal")?;
            let previous = signal.call_method1("getsignal", (signum,))?;
            let lp = w.core.loop_.clone_ref(py);
            let handler = Py::new(py, SignalHandler { loop_: lp })?;
            signal.call_method1("signal", (signum, handler))?;
            self.with_state(|st| {
                st.signals.insert(
                    signum,
                    SignalSlot {
                        previous: previous.unbind(),
                        watchers: Vec::new(),
                    },
                )
            })?;
        }
        self.with_state(|st| {
            if let Some(slot) = st.signals.get_mut(&signum) {
                slot.watchers.push(slf.clone().unbind());
            }
        })?;
        w.core.mark_active(self, true);
        Ok(())
    }

    pub(crate) fn signal_stop(&self, py: Python<'_>, w: &SignalWatcher) -> PyResult<()> {
        if !w.core.is_active() {
            return Ok(());
        }
        w.core.mark_active(self, false);
        let target: *const SignalWatcher = w;
        let mut removed = None;
        let mut restore = None;
        if let Ok(mut st) = self.state.try_borrow_mut() {
            if let Some(st) = st.as_mut() {
                if let Some(slot) = st.signals.get_mut(&w.signum) {
                    if let Some(pos) = slot.watchers.iter().position(|p| same(py, p, target)) {
                        removed = Some(slot.watchers.remove(pos));
                    }
                    if slot.watchers.is_empty() {
                        restore = st.signals.remove(&w.signum);
                    }
                }
            }
        }
        drop(removed);
        if let Some(slot) = restore {
            py.import("signal")?
                .call_method1("signal", (w.signum, slot.previous))?;
        }
        Ok(())
    }

    pub(super) fn dispatch_signals(&self, py: Python<'_>) -> PyResult<bool> {
        if !self.signal_pending.replace(false) {
            return Ok(false);
        }
        let pending: Vec<Py<SignalWatcher>> = self.with_state(|st| {
            st.signals
                .values()
                .flat_map(|slot| slot.watchers.iter())
                .map(|w| w.clone_ref(py))
                .collect()
        })?;
        let mut any = false;
        for watcher in pending {
            let bound = watcher.bind(py);
            let w = bound.get();
            if !w.core.is_active() || !w.fired.replace(false) {
                continue;
            }
            w.core.set_pending(false);
            let call = w.core.call_parts(py);
            any = true;
            if let Err(e) = self.call_reporting(py, bound.as_any(), call, None) {
                // Fired watchers not reached yet keep `fired`; look again
                // on the next pass.
                self.signal_pending.set(true);
                return Err(e);
            }
        }
        Ok(any)
    }

    pub(super) fn on_signal(&self, py: Python<'_>, signum: i32) {
        let watchers: Vec<Py<SignalWatcher>> = match self.state.try_borrow() {
            Ok(st) => st
                .as_ref()
                .and_then(|st| st.signals.get(&signum))
                .map(|slot| slot.watchers.iter().map(|w| w.clone_ref(py)).collect())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        for w in &watchers {
            let w = w.get();
            w.fired.set(true);
            w.core.set_pending(true);
        }
        self.signal_pending.set(true);
        self.shared.wake();
    }
}
