//! Idle, prepare, check and fork watchers.

use pyo3::prelude::*;

use super::{same, Loop, State};
use crate::py::watchers::{Phase, PhaseWatcher};

impl Loop {
    pub(crate) fn phase_start(&self, slf: &Bound<'_, PhaseWatcher>) -> PyResult<()> {
        self.check_usable()?;
        let w = slf.get();
        if w.core.is_active() {
            return Ok(());
        }
        let phase = w.phase;
        self.with_state(|st| Self::phase_list(st, phase).push(slf.clone().unbind()))?;
        w.core.mark_active(self, true);
        Ok(())
    }

    pub(super) fn phase_list(st: &mut State, phase: Phase) -> &mut Vec<Py<PhaseWatcher>> {
        match phase {
            Phase::Prepare => &mut st.prepare,
            Phase::Check => &mut st.check,
            Phase::Idle => &mut st.idle,
            Phase::Fork => &mut st.fork,
        }
    }

    pub(crate) fn phase_stop(&self, py: Python<'_>, w: &PhaseWatcher) {
        if !w.core.is_active() {
            return;
        }
        w.core.mark_active(self, false);
        let target: *const PhaseWatcher = w;
        let mut removed = None;
        if let Ok(mut st) = self.state.try_borrow_mut() {
            if let Some(st) = st.as_mut() {
                let list = Self::phase_list(st, w.phase);
                if let Some(pos) = list.iter().position(|p| same(py, p, target)) {
                    removed = Some(list.remove(pos));
                }
            }
        }
        drop(removed);
    }

    pub(super) fn run_phase(&self, py: Python<'_>, phase: Phase) -> PyResult<bool> {
        let snapshot: Vec<Py<PhaseWatcher>> = self.with_state(|st| {
            Self::phase_list(st, phase)
                .iter()
                .map(|w| w.clone_ref(py))
                .collect()
        })?;
        let any = !snapshot.is_empty();
        for watcher in snapshot {
            let bound = watcher.bind(py);
            let w = bound.get();
            if !w.core.is_active() {
                continue;
            }
            let call = w.core.call_parts(py);
            self.call_reporting(py, bound.as_any(), call, None)?;
        }
        Ok(any)
    }

    pub(super) fn phase_watcher(
        slf: &Bound<'_, Self>,
        phase: Phase,
        ref_: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<PhaseWatcher>> {
        let watcher = PhaseWatcher::new(slf.clone().unbind(), phase, ref_, priority);
        Py::new(slf.py(), watcher)
    }
}
