//! Timers of the loop: `TimerWatcher`s, `Timeout`s and `sleep()` wake-ups,
//! all in one timer wheel (`TimerEntry`). Expired entries are checked against
//! their owner's current handle before firing, so a stop, restart or wake-up
//! that happened meanwhile is never overridden.

use std::collections::VecDeque;

use pyo3::prelude::*;

use super::{Loop, Queued, TimerEntry};
use crate::py::aio::AioLoopCore;
use crate::py::greenlet_api;
use crate::py::timeout::Timeout;
use crate::py::watchers::TimerWatcher;
use crate::wheel::TimerHandle;

/// The largest timer batch buffer a loop keeps between passes (entries).
const KEPT_TIMER_BATCH: usize = 1024;

impl Loop {
    pub(crate) fn timer_start(&self, slf: &Bound<'_, TimerWatcher>, update: bool) -> PyResult<()> {
        self.check_usable()?;
        let w = slf.get();
        let now = if update {
            self.refresh_now()
        } else {
            self.now_ns.get()
        };
        let deadline = now.saturating_add(w.after_ns);
        let mut displaced = None;
        self.with_state(|st| {
            if let Some(h) = w.handle.take() {
                displaced = st.wheel.cancel(h);
            }
            w.handle.set(Some(
                st.wheel
                    .arm(deadline, TimerEntry::Watcher(slf.clone().unbind())),
            ));
        })?;
        w.deadline_ns.set(deadline);
        w.core.mark_active(self, true);
        if let Some(entry) = displaced {
            entry.release(slf.py());
        }
        Ok(())
    }

    pub(crate) fn timer_stop(&self, py: Python<'_>, w: &TimerWatcher) {
        let mut removed = None;
        if let Some(h) = w.handle.take() {
            if let Ok(mut st) = self.state.try_borrow_mut() {
                if let Some(st) = st.as_mut() {
                    removed = st.wheel.cancel(h);
                }
            }
        }
        w.core.mark_active(self, false);
        if let Some(entry) = removed {
            entry.release(py);
        }
    }

    /// Expires due timers and runs them. On unwind, re-queues the rest.
    ///
    /// The batch Vec is the state's `timer_batch`, reused while it holds
    /// at most [`KEPT_TIMER_BATCH`] entries' room.
    pub(super) fn dispatch_timers(&self, py: Python<'_>) -> PyResult<bool> {
        let now = self.now_ns.get();
        // The state's buffer (a nested pass, from a callback, finds it
        // taken and uses a fresh one).
        let batch = self.with_state(|st| {
            let mut batch = std::mem::take(&mut st.timer_batch);
            st.wheel.expire(now, &mut batch);
            if batch.is_empty() {
                st.timer_batch = batch;
                None
            } else {
                Some(batch)
            }
        })?;
        let Some(mut batch) = batch else {
            return Ok(false);
        };
        // Everything in the batch is due: `pending` until its turn comes.
        let mut sleeps = Vec::new();
        for (handle, entry) in batch.iter() {
            match entry {
                TimerEntry::Watcher(w) => w.get().core.set_pending(true),
                TimerEntry::Sleep { .. } => sleeps.push(*handle),
                TimerEntry::Timeout(_) | TimerEntry::Aio(_) | TimerEntry::Kick(_) => {}
            }
        }
        if !sleeps.is_empty() {
            self.with_state(|st| st.inflight_sleeps.extend(sleeps))?;
        }
        let mut rest = batch.drain(..);
        while let Some((handle, entry)) = rest.next() {
            let outcome = match entry {
                TimerEntry::Watcher(watcher) => self.fire_watcher(py, handle, &watcher),
                TimerEntry::Timeout(timeout) => self.fire_timeout(py, handle, &timeout),
                TimerEntry::Sleep { glet, ref_ } => self.fire_sleep(py, handle, glet, ref_),
                TimerEntry::Aio(h) => self.fire_aio(py, handle, &h),
                TimerEntry::Kick(core) => self.fire_kick(py, handle, &core),
            };
            if let Err(e) = outcome {
                self.requeue_timers(py, rest.collect())?;
                return Err(e);
            }
        }
        drop(rest);
        // Empty again: back for the next pass (unless a nested pass put
        // one back meanwhile, the loop was destroyed, or a burst of timers
        // made it big: not kept for ever).
        if batch.capacity() > KEPT_TIMER_BATCH {
            return Ok(true);
        }
        if let Ok(mut st) = self.state.try_borrow_mut() {
            if let Some(st) = st.as_mut() {
                if st.timer_batch.capacity() == 0 {
                    st.timer_batch = batch;
                }
            }
        }
        Ok(true)
    }

    pub(super) fn fire_watcher(
        &self,
        py: Python<'_>,
        handle: TimerHandle,
        watcher: &Py<TimerWatcher>,
    ) -> PyResult<()> {
        let bound = watcher.bind(py);
        let w = bound.get();
        if w.handle.get() != Some(handle) {
            return Ok(()); // stopped or re-armed by an earlier callback
        }
        w.core.set_pending(false);
        if w.repeat_ns > 0 {
            let deadline = self.now_ns.get().saturating_add(w.repeat_ns);
            let entry = TimerEntry::Watcher(watcher.clone_ref(py));
            let h = self.with_state(|st| st.wheel.arm(deadline, entry))?;
            w.handle.set(Some(h));
            w.deadline_ns.set(deadline);
        } else {
            w.handle.set(None);
            w.core.mark_active(self, false);
            // A fired one-shot timer lets go of its callback and arguments
            // (`callback` and `args` read None), as gevent's do.
            let call = w.core.take_call();
            return self.call_reporting(py, bound.as_any(), call, None);
        }
        let call = w.core.call_parts(py);
        self.call_reporting(py, bound.as_any(), call, None)
    }

    pub(super) fn fire_sleep(
        &self,
        py: Python<'_>,
        handle: TimerHandle,
        glet: Py<PyAny>,
        ref_: bool,
    ) -> PyResult<()> {
        if !self.with_state(|st| st.inflight_sleeps.remove(&handle))? {
            return Ok(()); // the sleeper was woken otherwise and withdrew it
        }
        if ref_ {
            self.adjust_activecnt(-1);
        }
        let glet = glet.into_bound(py);
        // Only `sleep_arm` makes Sleep entries, with getcurrent()'s result.
        if let Err(err) = greenlet_api::switch_known(py, greenlet_api::Greenlet(&glet)) {
            self.report(py, &glet, err)?;
        }
        Ok(())
    }

    /// Arms a wake-up of the current greenlet `glet` at `deadline` (see
    /// `fastpath::sleep`).
    pub(crate) fn sleep_arm(
        &self,
        glet: Py<PyAny>,
        deadline: u64,
        ref_: bool,
    ) -> PyResult<TimerHandle> {
        self.check_usable()?;
        let h = self.with_state(|st| st.wheel.arm(deadline, TimerEntry::Sleep { glet, ref_ }))?;
        if ref_ {
            self.adjust_activecnt(1);
        }
        Ok(h)
    }

    /// Withdraws a sleep's wake-up. True if it was still pending (so the
    /// sleeper was woken by something else).
    pub(crate) fn sleep_cancel(
        &self,
        py: Python<'_>,
        handle: TimerHandle,
        glet: &Bound<'_, PyAny>,
        ref_: bool,
    ) -> bool {
        let (removed, inflight) = match self.state.try_borrow_mut() {
            Ok(mut st) => match st.as_mut() {
                Some(st) => {
                    let removed = st.wheel.cancel(handle);
                    let inflight = removed.is_none() && st.inflight_sleeps.remove(&handle);
                    (removed, inflight)
                }
                None => (None, false),
            },
            Err(_) => (None, false),
        };
        // Still in the wheel, or due in the batch being dispatched (then
        // `fire_sleep` skips it): either way it never fires, so its count is
        // settled here.
        let was_pending = removed.is_some() || inflight;
        if was_pending && ref_ {
            self.adjust_activecnt(-1);
        }
        // Released through `py` (see `raw_fn`: `sleep` calls this with
        // PyO3's attach count possibly at zero), after the borrow ended.
        if let Some(entry) = removed {
            entry.release(py);
        }
        if !was_pending && self.requeued_sleeps.get() > 0 {
            // It may have been re-queued as a plain resume (see
            // `requeue_timers`): withdraw that too.
            let withdrawn: VecDeque<Queued> = {
                let mut q = self.callbacks.borrow_mut();
                let (keep, gone): (VecDeque<Queued>, VecDeque<Queued>) =
                    std::mem::take(&mut *q).into_iter().partition(
                        |e| !matches!(e, Queued::Resume { glet: g, seq: 0 } if g.bind(py).is(glet)),
                    );
                *q = keep;
                gone
            };
            self.requeued_sleeps.set(
                self.requeued_sleeps
                    .get()
                    .saturating_sub(withdrawn.len() as u64),
            );
            for entry in withdrawn {
                entry.release(py);
            }
        }
        was_pending
    }

    pub(super) fn fire_timeout(
        &self,
        py: Python<'_>,
        handle: TimerHandle,
        timeout: &Py<Timeout>,
    ) -> PyResult<()> {
        let bound = timeout.bind(py);
        let Some((target, raise, ref_)) = Timeout::fire(bound, handle) else {
            return Ok(()); // cancelled or restarted meanwhile
        };
        if ref_ {
            self.adjust_activecnt(-1);
        }
        if let Err(err) = crate::py::timeout::deliver(py, target, raise) {
            self.report(py, bound.as_any(), err)?;
        }
        Ok(())
    }

    /// Puts expired-but-undispatched timers back as due now, in order.
    pub(super) fn requeue_timers(
        &self,
        py: Python<'_>,
        rest: Vec<(TimerHandle, TimerEntry)>,
    ) -> PyResult<()> {
        for (handle, entry) in rest {
            match entry {
                TimerEntry::Watcher(watcher) => {
                    let w = watcher.get();
                    w.core.set_pending(false);
                    if w.handle.get() == Some(handle) {
                        let again = TimerEntry::Watcher(watcher.clone_ref(py));
                        let h = self.with_state(|st| st.wheel.arm(0, again))?;
                        w.handle.set(Some(h));
                    }
                }
                TimerEntry::Sleep { glet, ref_ } => {
                    // Wake it on the next pass (seq 0 marks a sleeper's
                    // resume, which `sleep_cancel` can withdraw), unless the
                    // sleeper already withdrew it.
                    if self.with_state(|st| st.inflight_sleeps.remove(&handle))? {
                        if ref_ {
                            self.adjust_activecnt(-1);
                        }
                        self.requeued_sleeps.set(self.requeued_sleeps.get() + 1);
                        self.push_callback(Queued::Resume { glet, seq: 0 });
                    }
                }
                TimerEntry::Aio(h) => {
                    // Due now: armed again at 0, unless cancelled meanwhile.
                    if h.get().wheel_handle() == Some(handle) {
                        let again = TimerEntry::Aio(h.clone_ref(py));
                        let re = self.with_state(|st| st.wheel.arm(0, again))?;
                        crate::py::aio::TimerHandle::armed_as(h.bind(py), re);
                    }
                }
                TimerEntry::Kick(core) => {
                    // Due now: armed again at 0, unless disarmed meanwhile.
                    if core.get().kick_handle() == Some(handle) {
                        let again = TimerEntry::Kick(core.clone_ref(py));
                        let re = self.with_state(|st| st.wheel.arm(0, again))?;
                        core.get().kick_armed_as(re);
                    }
                }
                TimerEntry::Timeout(timeout) => {
                    // Fire it on the next pass rather than lose it.
                    let bound = timeout.bind(py);
                    if let Some((target, raise, ref_)) = Timeout::fire(bound, handle) {
                        if ref_ {
                            self.adjust_activecnt(-1);
                        }
                        let deliver = crate::py::timeout::deliver_later(py, target, raise)?;
                        self.push_callback(Queued::Call(deliver));
                    }
                }
            }
        }
        Ok(())
    }

    /// An asyncio timer handle is due: unless it was cancelled or re-armed
    /// meanwhile (its handle moved on), hand it to its event loop.
    fn fire_aio(
        &self,
        py: Python<'_>,
        handle: TimerHandle,
        timer: &Py<crate::py::aio::TimerHandle>,
    ) -> PyResult<()> {
        let bound = timer.bind(py);
        if bound.get().wheel_handle() != Some(handle) {
            return Ok(());
        }
        crate::py::aio::TimerHandle::unarmed(bound);
        if let Err(err) = crate::py::aio::timer_fired(bound) {
            self.report(py, bound.as_any(), err)?;
        }
        Ok(())
    }

    /// An asyncio loop's kick is due: unless it was disarmed or re-armed
    /// meanwhile, run the loop's batch, its error reported as a timer
    /// callback's would be (the loop object as the context).
    fn fire_kick(
        &self,
        py: Python<'_>,
        handle: TimerHandle,
        core: &Py<AioLoopCore>,
    ) -> PyResult<()> {
        let bound = core.bind(py);
        if bound.get().kick_handle() != Some(handle) {
            return Ok(());
        }
        bound.get().kick_unarmed();
        if let Err(err) = AioLoopCore::_drain(bound) {
            self.report(py, bound.as_any(), err)?;
        }
        Ok(())
    }

    /// Arms an asyncio loop's kick, due at once (the clock read afresh, as a
    /// zero-delay timer's `start` reads it): its batch runs in this pass's
    /// timer dispatch or the next one's. It does not keep the loop alive.
    pub(crate) fn aio_kick_arm(&self, core: Py<AioLoopCore>) -> PyResult<TimerHandle> {
        self.check_usable()?;
        let deadline = self.refresh_now();
        self.with_state(|st| st.wheel.arm(deadline, TimerEntry::Kick(core)))
    }

    /// Arms an asyncio timer handle `after_ns` from now (the clock read
    /// afresh, so it never fires before its `when`). Asyncio's timers do
    /// not keep the loop alive (a running asyncio loop does).
    pub(crate) fn aio_timer_arm(
        &self,
        timer: Py<crate::py::aio::TimerHandle>,
        after_ns: u64,
    ) -> PyResult<TimerHandle> {
        self.check_usable()?;
        let deadline = self.refresh_now().saturating_add(after_ns);
        self.with_state(|st| st.wheel.arm(deadline, TimerEntry::Aio(timer)))
    }

    /// Disarms an asyncio timer handle; the caller drops the returned entry
    /// after releasing its own locks.
    pub(crate) fn aio_timer_disarm(&self, handle: TimerHandle) -> Option<TimerEntry> {
        let mut st = self.state.try_borrow_mut().ok()?;
        st.as_mut()?.wheel.cancel(handle)
    }

    /// Arms a `Timeout` in the wheel (see `py/timeout.rs`).
    pub(crate) fn timeout_arm(
        &self,
        timeout: Py<Timeout>,
        deadline: u64,
        ref_: bool,
    ) -> PyResult<TimerHandle> {
        self.shared.check_owner()?;
        let h = self.with_state(|st| st.wheel.arm(deadline, TimerEntry::Timeout(timeout)))?;
        if ref_ {
            self.adjust_activecnt(1);
        }
        Ok(h)
    }

    /// Disarms a `Timeout`; the caller drops the returned entry after
    /// releasing its own locks.
    pub(crate) fn timeout_disarm(&self, handle: TimerHandle, ref_: bool) -> Option<TimerEntry> {
        let mut st = self.state.try_borrow_mut().ok()?;
        let removed = st.as_mut()?.wheel.cancel(handle);
        if removed.is_some() && ref_ {
            self.adjust_activecnt(-1);
        }
        removed
    }
}
