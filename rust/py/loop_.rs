//! `Loop`: the event loop exposed to Python as `greenwheel._core.Loop`.
//!
//! One pass of `run()`:
//! 1. run the callbacks queued before the pass started (FIFO; callbacks
//!    queued while dispatching wait for the next pass, as in gevent);
//! 2. prepare watchers;
//! 3. poll with the GIL released, for as long as the next timer allows (zero
//!    when callbacks or idle watchers are waiting);
//! 4. Python signal handlers (`PyErr_CheckSignals`), then signal watchers;
//! 5. fd watchers, timers (deadline order, ties in arming order), async
//!    watchers and thread-safe callbacks, check watchers, then idle watchers
//!    if nothing else happened.
//!
//! `run()` returns when no referenced watcher is active and no callback is
//! queued, after `break_()`, or after one pass with `once`/`nowait`.
//!
//! Ground rules (see also `py/mod.rs`):
//! - `state` is borrowed only in short stretches with no Python calls, no
//!   Python allocation that could trigger GC, and no `Py` drop inside; any
//!   `Py` taken out is dropped after the borrow ends.
//! - Every event taken out of the kernel or the wheel is either dispatched or
//!   put back: if the error handler raises and `run()` unwinds mid-batch,
//!   the rest of the batch is re-queued.
//! - An exception from a callback goes to `error_handler.handle_error(context,
//!   type, value, tb)`; with no handler it is printed (and SystemExit /
//!   KeyboardInterrupt propagate out of `run()`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::unix::io::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyTraverseError;

use super::async_watcher::{lock, AsyncWatcher, Shared};
use super::callback::Callback;
use super::errors::os_error;
use super::greenlet_api;
use super::sync::{BoolCell, Guarded, I32Cell, IsizeCell, U64Cell};
use super::timeout::Timeout;
use super::watchers::{invoke, IoWatcher, Phase, PhaseWatcher, SignalWatcher, TimerWatcher};
use crate::clock::{monotonic_ns, ns_to_secs};
use crate::poller::{Poller, Ready, READ};
use crate::wheel::{TimerHandle, TimerWheel};

/// How long a burst of callback-only passes may go without polling the
/// kernel. Each pass still runs only the callbacks queued before it started
/// (gevent's ordering), but a `sleep(0)` ping-pong need not cost an
/// `epoll_wait` per switch; fd readiness is at most this late.
const POLL_INTERVAL_NS: u64 = 1_000_000;

/// How long one pass may spend running queued callbacks before the loop
/// looks at timers and I/O again (CPython's default switch interval, which is
/// also what gevent uses), and how often that is checked.
const CALLBACK_BURST_NS: u64 = 5_000_000;
const CALLBACK_CHECK_EVERY: usize = 64;

/// Timers due sooner than this are waited for by polling with a zero timeout,
/// because the kernel's poll timeout has millisecond granularity.
const SPIN_BELOW_NS: u64 = 1_000_000;

/// One entry of the FIFO callback queue.
enum Queued {
    /// `Loop.run_callback`: call the function.
    Call(Py<Callback>),
    /// `Loop.yield_now`: switch back into a greenlet (no Python call at all).
    Resume { glet: Py<PyAny>, seq: u64 },
    /// `Loop.start_soon`: first switch into a greenlet, unless something
    /// started it meanwhile.
    Start(Py<PyAny>),
}

/// A payload of the timer wheel.
pub(crate) enum TimerEntry {
    Watcher(Py<TimerWatcher>),
    Timeout(Py<Timeout>),
    /// `greenwheel.sleep(t)`: switch straight back into the greenlet (no
    /// watcher object, no Python callback).
    Sleep {
        glet: Py<PyAny>,
        ref_: bool,
    },
}

/// Watchers on one fd.
struct FdEntry {
    watchers: Vec<Py<IoWatcher>>,
    /// An event was delivered since the fd was last armed, so the kernel
    /// registration must be re-armed (edge-triggered) if watchers stay.
    needs_rearm: bool,
}

/// Handlers installed for one signal number.
struct SignalSlot {
    /// What `signal.getsignal()` returned before we installed ours.
    previous: Py<PyAny>,
    watchers: Vec<Py<SignalWatcher>>,
}

/// Loop state; see the module docs for the borrowing rules.
struct State {
    wheel: TimerWheel<TimerEntry>,
    poller: Poller,
    fds: HashMap<RawFd, FdEntry>,
    asyncs: Vec<Py<AsyncWatcher>>,
    /// Ordered so signal watchers dispatch in a stable order.
    signals: BTreeMap<i32, SignalSlot>,
    prepare: Vec<Py<PhaseWatcher>>,
    check: Vec<Py<PhaseWatcher>>,
    idle: Vec<Py<PhaseWatcher>>,
    /// Reused scratch buffer for poll results.
    ready: Vec<Ready>,
    /// Readiness taken out of the kernel but not dispatched (an exception
    /// unwound `run()`, or a re-arm failed): dispatched first on the next pass.
    carry: Vec<Ready>,
    /// When the kernel was last polled (monotonic ns).
    last_poll_ns: u64,
    /// Sleep wake-ups taken out of the wheel for the batch being dispatched.
    /// A sleeper woken otherwise meanwhile removes its handle here, so the
    /// batch does not switch into a greenlet that has moved on.
    inflight_sleeps: HashSet<TimerHandle>,
    /// Read end of the signal wake-up pipe.
    sig_read: RawFd,
}

/// The event loop.
#[pyclass(frozen, weakref, module = "greenwheel._core")]
pub(crate) struct Loop {
    state: Guarded<Option<State>>,
    callbacks: Guarded<VecDeque<Queued>>,
    /// Identifies `Queued::Resume` entries so a failed yield can withdraw its own.
    resume_seq: U64Cell,
    /// Sleep wake-ups re-queued as `Resume { seq: 0 }` and not yet run.
    requeued_sleeps: U64Cell,
    error_handler: Guarded<Option<Py<PyAny>>>,
    shared: Arc<Shared>,
    /// Referenced active watchers.
    activecnt: IsizeCell,
    now_ns: U64Cell,
    iteration: U64Cell,
    break_requested: BoolCell,
    /// `destroy()` ran (or GC cleared the loop): every entry point raises.
    destroyed: BoolCell,
    /// A Python signal handler of ours ran; signal watchers are pending.
    signal_pending: BoolCell,
    default: bool,
    /// Write end of the signal wake-up pipe (replaced by `reinit()`).
    sig_write: I32Cell,
}

/// Creates a non-blocking, close-on-exec pipe.
fn make_pipe() -> std::io::Result<(RawFd, RawFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe() to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for fd in fds {
        // SAFETY: `fd` was just returned by pipe() and is owned here.
        let ok = unsafe {
            libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
            ) == 0
                && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
        };
        if !ok {
            let err = std::io::Error::last_os_error();
            close_fds(&fds);
            return Err(err);
        }
    }
    Ok((fds[0], fds[1]))
}

fn close_fds(fds: &[RawFd]) {
    for &fd in fds {
        if fd >= 0 {
            // SAFETY: the loop owns its pipe fds and closes each exactly once.
            unsafe { libc::close(fd) };
        }
    }
}

/// Whether `p` is the object behind `target`.
fn same<T: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync>(
    py: Python<'_>,
    p: &Py<T>,
    target: *const T,
) -> bool {
    let _ = py;
    std::ptr::eq(p.get(), target)
}

/// Empties the signal pipe (its bytes only say "a signal came").
fn drain(fd: RawFd) {
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: `buf` is a valid writable buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
    }
}

impl Loop {
    fn closed() -> PyErr {
        PyRuntimeError::new_err("the loop has been destroyed")
    }

    /// Entry-point check: the loop's own thread, and not destroyed.
    pub(crate) fn check_usable(&self) -> PyResult<()> {
        self.shared.check_owner()?;
        if self.destroyed.get() {
            return Err(Self::closed());
        }
        Ok(())
    }

    /// Stops every watcher and releases the poller and pipe. Used by
    /// `destroy()` and by GC (`__clear__`, possibly on another thread, so it
    /// takes nothing it cannot get and restores no signal handlers there).
    fn teardown(&self, py: Python<'_>, restore_signals: bool) -> PyResult<()> {
        self.destroyed.set(true);
        let taken = match self.state.try_borrow_mut() {
            Ok(mut st) => st.take(),
            Err(_) => return Ok(()),
        };
        let Some(mut st) = taken else { return Ok(()) };
        let mut timers = Vec::new();
        st.wheel.expire(u64::MAX, &mut timers);
        for (handle, entry) in &timers {
            match entry {
                TimerEntry::Watcher(t) => {
                    let t = t.get();
                    t.handle.set(None);
                    t.core.mark_active(self, false);
                }
                TimerEntry::Timeout(t) => {
                    let _ = Timeout::fire(t.bind(py), *handle);
                }
                // The sleeper stays blocked; it is woken (GreenletExit) when
                // its hub is destroyed.
                TimerEntry::Sleep { .. } => {}
            }
        }
        for entry in st.fds.values() {
            for w in &entry.watchers {
                w.get().core.mark_active(self, false);
            }
        }
        for w in st
            .prepare
            .iter()
            .chain(st.check.iter())
            .chain(st.idle.iter())
        {
            w.get().core.mark_active(self, false);
        }
        for w in &st.asyncs {
            w.get().deactivate(self);
        }
        let signals = std::mem::take(&mut st.signals);
        for slot in signals.values() {
            for w in &slot.watchers {
                w.get().core.mark_active(self, false);
            }
        }
        close_fds(&[st.sig_read, self.sig_write.replace(-1)]);
        self.shared.replace_waker(None);
        let callbacks = std::mem::take(&mut *self.callbacks.borrow_mut());
        let threadsafe = std::mem::take(&mut *lock(&self.shared.threadsafe));
        self.activecnt.set(0);
        // Everything is unhooked: now drop (decrefs may run Python code).
        drop(callbacks);
        drop(threadsafe);
        drop(timers);
        drop(st);
        if restore_signals {
            for (signum, slot) in signals {
                py.import("signal")?
                    .call_method1("signal", (signum, slot.previous))?;
            }
        }
        Ok(())
    }

    /// Runs `f` on the state; errors if the loop was destroyed.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> PyResult<R> {
        let mut st = self.state.borrow_mut();
        st.as_mut().map(f).ok_or_else(Self::closed)
    }

    /// Whether `destroy()` ran (or GC tore the loop down).
    pub(crate) fn is_destroyed(&self) -> bool {
        self.destroyed.get()
    }

    /// RuntimeError unless called on the loop's own thread.
    pub(crate) fn check_owner(&self) -> PyResult<()> {
        self.shared.check_owner()
    }

    pub(crate) fn adjust_activecnt(&self, delta: isize) {
        let n = self.activecnt.get() + delta;
        debug_assert!(n >= 0, "activecnt went negative");
        self.activecnt.set(n.max(0));
    }

    fn refresh_now(&self) -> u64 {
        let now = monotonic_ns();
        self.now_ns.set(now);
        now
    }

    /// Routes an exception raised by a callback to the error handler.
    /// Returns Err only when the handler itself raised (or, without a
    /// handler, for SystemExit/KeyboardInterrupt): `run()` then unwinds.
    fn report(&self, py: Python<'_>, context: &Bound<'_, PyAny>, err: PyErr) -> PyResult<()> {
        let handler = self
            .error_handler
            .borrow()
            .as_ref()
            .map(|h| h.clone_ref(py));
        match handler {
            Some(h) => {
                let tb = err.traceback(py);
                let value = err.value(py);
                // So a handler that re-raises `value` keeps the callback's frames.
                if let Some(tb) = tb.as_ref() {
                    value.setattr(pyo3::intern!(py, "__traceback__"), tb)?;
                }
                h.call_method1(py, "handle_error", (context, err.get_type(py), value, tb))?;
                Ok(())
            }
            None => {
                if err.is_instance_of::<PySystemExit>(py)
                    || err.is_instance_of::<PyKeyboardInterrupt>(py)
                {
                    return Err(err);
                }
                err.write_unraisable(py, Some(context));
                Ok(())
            }
        }
    }

    fn call_reporting(
        &self,
        py: Python<'_>,
        context: &Bound<'_, PyAny>,
        call: Option<(Py<PyAny>, Py<PyTuple>)>,
        prefix: Option<u8>,
    ) -> PyResult<()> {
        if let Some((f, a)) = call {
            if let Err(err) = invoke(py, &f, &a, prefix) {
                self.report(py, context, err)?;
            }
        }
        Ok(())
    }

    // ----- timers

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
        drop(displaced);
        Ok(())
    }

    pub(crate) fn timer_stop(&self, w: &TimerWatcher) {
        let mut removed = None;
        if let Some(h) = w.handle.take() {
            if let Ok(mut st) = self.state.try_borrow_mut() {
                if let Some(st) = st.as_mut() {
                    removed = st.wheel.cancel(h);
                }
            }
        }
        w.core.mark_active(self, false);
        drop(removed);
    }

    /// Expires due timers and runs them. On unwind, re-queues the rest.
    fn dispatch_timers(&self, py: Python<'_>) -> PyResult<bool> {
        let now = self.now_ns.get();
        let mut batch: Vec<(TimerHandle, TimerEntry)> = Vec::new();
        self.with_state(|st| st.wheel.expire(now, &mut batch))?;
        if batch.is_empty() {
            return Ok(false);
        }
        // Everything in the batch is due: `pending` until its turn comes.
        let mut sleeps = Vec::new();
        for (handle, entry) in &batch {
            match entry {
                TimerEntry::Watcher(w) => w.get().core.set_pending(true),
                TimerEntry::Sleep { .. } => sleeps.push(*handle),
                TimerEntry::Timeout(_) => {}
            }
        }
        if !sleeps.is_empty() {
            self.with_state(|st| st.inflight_sleeps.extend(sleeps))?;
        }
        let mut rest = batch.into_iter();
        while let Some((handle, entry)) = rest.next() {
            let outcome = match entry {
                TimerEntry::Watcher(watcher) => self.fire_watcher(py, handle, &watcher),
                TimerEntry::Timeout(timeout) => self.fire_timeout(py, handle, &timeout),
                TimerEntry::Sleep { glet, ref_ } => self.fire_sleep(py, handle, glet, ref_),
            };
            if let Err(e) = outcome {
                self.requeue_timers(py, rest.collect())?;
                return Err(e);
            }
        }
        Ok(true)
    }

    fn fire_watcher(
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
        }
        let call = w.core.call_parts(py);
        self.call_reporting(py, bound.as_any(), call, None)
    }

    fn fire_sleep(
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
        drop(removed);
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
            drop(withdrawn);
        }
        was_pending
    }

    fn fire_timeout(
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
        if let Err(err) = super::timeout::deliver(py, target, raise) {
            self.report(py, bound.as_any(), err)?;
        }
        Ok(())
    }

    /// Puts expired-but-undispatched timers back as due now, in order.
    fn requeue_timers(&self, py: Python<'_>, rest: Vec<(TimerHandle, TimerEntry)>) -> PyResult<()> {
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
                        self.callbacks
                            .borrow_mut()
                            .push_back(Queued::Resume { glet, seq: 0 });
                    }
                }
                TimerEntry::Timeout(timeout) => {
                    // Fire it on the next pass rather than lose it.
                    let bound = timeout.bind(py);
                    if let Some((target, raise, ref_)) = Timeout::fire(bound, handle) {
                        if ref_ {
                            self.adjust_activecnt(-1);
                        }
                        let deliver = super::timeout::deliver_later(py, target, raise)?;
                        self.callbacks.borrow_mut().push_back(Queued::Call(deliver));
                    }
                }
            }
        }
        Ok(())
    }

    fn phase_watcher(
        slf: &Bound<'_, Self>,
        phase: Phase,
        ref_: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<PhaseWatcher>> {
        let watcher = PhaseWatcher::new(slf.clone().unbind(), phase, ref_, priority);
        Py::new(slf.py(), watcher)
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

    // ----- fds

    /// Starts an fd watcher. `known_unready`: the caller just saw the fd
    /// would block (EAGAIN) for these events, so an existing edge-triggered
    /// registration will report the next change and need not be re-armed
    /// (saves an `epoll_ctl` per wait; see `IoWatcher.wait`).
    pub(crate) fn io_start(&self, slf: &Bound<'_, IoWatcher>, known_unready: bool) -> PyResult<()> {
        self.check_usable()?;
        let w = slf.get();
        if w.core.is_active() {
            self.io_stop(slf.py(), w);
        }
        let fd = w.fd;
        let result = self.with_state(|st| {
            let entry = st.fds.entry(fd).or_insert_with(|| FdEntry {
                watchers: Vec::new(),
                needs_rearm: false,
            });
            entry.watchers.push(slf.clone().unbind());
            let mask = Self::union_mask(&entry.watchers) | w.events.get();
            let res = if known_unready && st.poller.covers(fd, mask) {
                Ok(())
            } else {
                st.poller.arm(fd, mask)
            };
            match res {
                Ok(()) => {
                    if let Some(e) = st.fds.get_mut(&fd) {
                        e.needs_rearm = false;
                    }
                    Ok(())
                }
                Err(err) => {
                    let mut popped = None;
                    if let Some(e) = st.fds.get_mut(&fd) {
                        popped = e.watchers.pop();
                        if e.watchers.is_empty() {
                            st.fds.remove(&fd);
                        }
                    }
                    Err((err, popped))
                }
            }
        })?;
        match result {
            Ok(_) => {
                w.core.mark_active(self, true);
                Ok(())
            }
            Err((err, popped)) => {
                drop(popped);
                Err(os_error(err))
            }
        }
    }

    fn union_mask(watchers: &[Py<IoWatcher>]) -> u8 {
        watchers.iter().fold(0, |m, w| m | w.get().events.get())
    }

    pub(crate) fn io_stop(&self, py: Python<'_>, w: &IoWatcher) {
        if !w.core.is_active() {
            return;
        }
        w.core.mark_active(self, false);
        let target: *const IoWatcher = w;
        let mut removed = None;
        if let Ok(mut st) = self.state.try_borrow_mut() {
            if let Some(st) = st.as_mut() {
                if let Some(entry) = st.fds.get_mut(&w.fd) {
                    if let Some(pos) = entry.watchers.iter().position(|p| same(py, p, target)) {
                        removed = Some(entry.watchers.remove(pos));
                    }
                    if entry.watchers.is_empty() {
                        st.fds.remove(&w.fd);
                        st.poller.disarm(w.fd);
                    }
                }
            }
        }
        drop(removed);
    }

    /// Dispatches fd readiness collected by the last poll.
    fn dispatch_io(&self, py: Python<'_>, ready: &[Ready]) -> PyResult<bool> {
        let mut any = false;
        for (idx, r) in ready.iter().enumerate() {
            let snapshot: Vec<Py<IoWatcher>> = {
                let mut st = self.state.borrow_mut();
                let Some(st) = st.as_mut() else {
                    return Err(Self::closed());
                };
                match st.fds.get_mut(&r.fd) {
                    Some(entry) => {
                        entry.needs_rearm = true;
                        entry.watchers.iter().map(|w| w.clone_ref(py)).collect()
                    }
                    None => continue, // stray edge for an fd nobody waits on
                }
            };
            for w in &snapshot {
                let w = w.get();
                if w.core.is_active() && w.events.get() & r.events != 0 {
                    w.core.set_pending(true);
                }
            }
            for watcher in snapshot {
                let w = watcher.get();
                let hit = w.events.get() & r.events;
                if !w.core.is_active() || hit == 0 || !w.core.take_pending() {
                    continue;
                }
                any = true;
                // Bind first: the lock must be released before any switch.
                let resume = w.resume.borrow_mut().as_ref().map(|g| g.clone_ref(py));
                let outcome = match resume {
                    // `IoWatcher.wait`: switch straight into the waiting greenlet.
                    Some(glet) => {
                        let glet = glet.into_bound(py);
                        match greenlet_api::switch_known(py, greenlet_api::Greenlet(&glet)) {
                            Ok(_) => Ok(()),
                            Err(err) => self.report(py, &glet, err),
                        }
                    }
                    None => {
                        let call = w.core.call_parts(py);
                        let prefix = w.pass_events.get().then_some(hit);
                        self.call_reporting(py, watcher.bind(py).as_any(), call, prefix)
                    }
                };
                if let Err(e) = outcome {
                    // Nothing taken from the kernel may be lost: re-arming
                    // makes it report whatever is still ready on the next pass.
                    self.rearm_after_unwind(py, &ready[idx..]);
                    return Err(e);
                }
            }
            self.rearm_fds(py, std::iter::once(r.fd))?;
        }
        Ok(any)
    }

    /// After an exception cut a dispatch short: clear stale `pending` flags
    /// and re-arm every fd in `ready`, so their readiness is reported again.
    fn rearm_after_unwind(&self, py: Python<'_>, ready: &[Ready]) {
        if let Ok(mut st) = self.state.try_borrow_mut() {
            if let Some(st) = st.as_mut() {
                for r in ready {
                    if let Some(entry) = st.fds.get_mut(&r.fd) {
                        entry.needs_rearm = true;
                        for w in &entry.watchers {
                            w.get().core.set_pending(false);
                        }
                    }
                }
            }
        }
        let _ = self.rearm_fds(py, ready.iter().map(|r| r.fd));
    }

    /// Re-arms fds that got an event and still have watchers (edge-triggered
    /// registrations otherwise would not report remaining readiness).
    fn rearm_fds(&self, py: Python<'_>, fds: impl Iterator<Item = RawFd>) -> PyResult<()> {
        let _ = py;
        let mut st = self.state.borrow_mut();
        let Some(st) = st.as_mut() else {
            return Err(Self::closed());
        };
        for fd in fds {
            if let Some(entry) = st.fds.get_mut(&fd) {
                if entry.needs_rearm && !entry.watchers.is_empty() {
                    entry.needs_rearm = false;
                    let mask = Self::union_mask(&entry.watchers);
                    // A failure means the fd was closed under its watchers;
                    // they are woken on the next pass to see the error.
                    if st.poller.arm(fd, mask).is_err() {
                        st.carry.push(Ready { fd, events: mask });
                    }
                }
            }
        }
        Ok(())
    }

    // ----- async watchers and thread-safe callbacks

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

    fn dispatch_asyncs(&self, py: Python<'_>) -> PyResult<bool> {
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
            let cb = Py::new(py, Callback::new(f, a))?;
            self.callbacks.borrow_mut().push_back(Queued::Call(cb));
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

    fn dispatch_signals(&self, py: Python<'_>) -> PyResult<bool> {
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

    fn on_signal(&self, py: Python<'_>, signum: i32) {
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

    // ----- phases

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

    fn phase_list(st: &mut State, phase: Phase) -> &mut Vec<Py<PhaseWatcher>> {
        match phase {
            Phase::Prepare => &mut st.prepare,
            Phase::Check => &mut st.check,
            Phase::Idle => &mut st.idle,
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

    fn run_phase(&self, py: Python<'_>, phase: Phase) -> PyResult<bool> {
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

    // ----- callbacks

    /// Runs the callbacks queued before this call (later ones wait a pass).
    fn run_callbacks(&self, py: Python<'_>) -> PyResult<bool> {
        let count = self.callbacks.borrow_mut().len();
        let started = monotonic_ns();
        for n in 0..count {
            // Like gevent: a long burst of callbacks yields to the rest of
            // the loop (timers, I/O) after a switch interval; the remainder
            // keeps its place at the head of the queue.
            if n > 0
                && n % CALLBACK_CHECK_EVERY == 0
                && monotonic_ns().saturating_sub(started) >= CALLBACK_BURST_NS
            {
                break;
            }
            let next = self.callbacks.borrow_mut().pop_front();
            match next {
                None => break,
                Some(Queued::Call(cb)) => {
                    let call = cb.get().take();
                    if let Some((f, a)) = call {
                        if let Err(err) = f.bind(py).call1(a.bind(py).clone()) {
                            self.report(py, cb.bind(py).as_any(), err)?;
                        }
                    }
                }
                Some(Queued::Start(glet)) => {
                    let glet = glet.into_bound(py);
                    let known = greenlet_api::Greenlet(&glet);
                    // Only `start_soon` queues Start, after checking the type.
                    let started = greenlet_api::has_started(py, greenlet_api::Greenlet(&glet))?;
                    if !started {
                        if let Err(err) = greenlet_api::switch_known(py, known) {
                            self.report(py, &glet, err)?;
                        }
                    }
                }
                Some(Queued::Resume { glet, seq }) => {
                    if seq == 0 {
                        self.requeued_sleeps
                            .set(self.requeued_sleeps.get().saturating_sub(1));
                    }
                    let glet = glet.into_bound(py);
                    // Only `yield_current` queues Resume, with getcurrent()'s result.
                    if let Err(err) = greenlet_api::switch_known(py, greenlet_api::Greenlet(&glet))
                    {
                        self.report(py, &glet, err)?;
                    }
                }
            }
        }
        Ok(count > 0)
    }

    /// See `yield_now`.
    /// `trusted_hub`: `hub` is this thread's registered hub (a greenlet, and
    /// this loop's owner thread is the caller's), so those checks are skipped.
    pub(crate) fn yield_current(
        &self,
        py: Python<'_>,
        hub: &Bound<'_, PyAny>,
        trusted_hub: bool,
    ) -> PyResult<()> {
        if trusted_hub {
            if self.destroyed.get() {
                return Err(Self::closed());
            }
        } else {
            self.check_usable()?;
        }
        let current = greenlet_api::getcurrent(py)?;
        if current.is(hub) {
            return Err(super::fastpath::blocking_from_hub(py));
        }
        // Seq 0 is reserved for re-queued sleepers (see `sleep_cancel`).
        let seq = self.resume_seq.get().wrapping_add(1).max(1);
        self.resume_seq.set(seq);
        self.callbacks.borrow_mut().push_back(Queued::Resume {
            glet: current.unbind(),
            seq,
        });
        let switched = if trusted_hub {
            greenlet_api::switch_known(py, greenlet_api::Greenlet(hub))
        } else {
            greenlet_api::switch(py, hub)
        };
        match switched {
            Ok(_) => Ok(()),
            Err(err) => {
                // Woken by an exception (kill, Timeout): the queued resume
                // must not later switch into whatever we do next.
                let withdrawn = {
                    let mut q = self.callbacks.borrow_mut();
                    let pos = q
                        .iter()
                        .rposition(|e| matches!(e, Queued::Resume { seq: s, .. } if *s == seq));
                    pos.and_then(|p| q.remove(p))
                };
                drop(withdrawn);
                Err(err)
            }
        }
    }

    fn has_callbacks(&self) -> bool {
        !self.callbacks.borrow_mut().is_empty()
            || self.shared.async_pending.load(Ordering::Acquire)
            || !lock(&self.shared.threadsafe).is_empty()
    }

    /// One pass: poll the kernel (unless a burst of callbacks polled it less
    /// than [`POLL_INTERVAL_NS`] ago), then dispatch everything that is due.
    fn pass(&self, py: Python<'_>, nowait: bool, once: bool) -> PyResult<()> {
        let busy = self.has_callbacks() || self.signal_pending.get();
        let (mut ready, last_poll) = self.with_state(|st| {
            let mut ready = std::mem::take(&mut st.ready);
            ready.clear();
            ready.append(&mut st.carry);
            (ready, st.last_poll_ns)
        })?;
        let skip_kernel =
            busy && !nowait && !once && monotonic_ns().saturating_sub(last_poll) < POLL_INTERVAL_NS;
        if !skip_kernel {
            let timeout = self.poll_timeout(nowait || busy)?;
            let polled = {
                let mut guard = self.state.borrow_mut();
                let st = guard.as_mut().ok_or_else(Self::closed)?;
                let poller = &mut st.poller;
                let buf = &mut ready;
                // Holding the state lock while the GIL is released is fine:
                // no Python code of this thread runs meanwhile, and other
                // threads only `try_borrow` it (GC) or use `Shared`.
                let polled = py.detach(move || poller.poll(timeout, buf));
                st.last_poll_ns = monotonic_ns();
                polled
            };
            if let Err(e) = polled {
                self.with_state(|st| st.carry.append(&mut ready))?;
                return Err(os_error(e));
            }
        }
        self.iteration.set(self.iteration.get() + 1);
        self.refresh_now();

        // Signals first: SIGINT must reach Python promptly.
        let sig_read = self.with_state(|st| st.sig_read)?;
        if ready.iter().any(|r| r.fd == sig_read) {
            drain(sig_read);
            ready.retain(|r| r.fd != sig_read);
        }
        if let Err(err) = py.check_signals() {
            let ctx = py.None();
            if let Err(e) = self.report(py, ctx.bind(py), err) {
                // Keep what the kernel reported; it was edge-triggered.
                self.with_state(|st| st.carry.append(&mut ready))?;
                return Err(e);
            }
        }
        let mut any = self.dispatch_signals(py)?;
        any |= self.dispatch_io(py, &ready)?;
        any |= self.dispatch_timers(py)?;
        any |= self.dispatch_asyncs(py)?;
        self.with_state(|st| st.ready = ready)?;
        if !skip_kernel {
            self.run_phase(py, Phase::Check)?;
        }
        if !any && !self.has_callbacks() {
            self.run_phase(py, Phase::Idle)?;
        }
        Ok(())
    }

    /// How long the kernel poll may block.
    fn poll_timeout(&self, no_wait: bool) -> PyResult<Option<Duration>> {
        let idle_waiting = self.with_state(|st| !st.idle.is_empty())?;
        if no_wait || idle_waiting || self.activecnt.get() <= 0 {
            return Ok(Some(Duration::ZERO));
        }
        let Some(deadline) = self.with_state(|st| st.wheel.next_deadline())? else {
            return Ok(None);
        };
        let remaining = deadline.saturating_sub(monotonic_ns());
        // epoll/kqueue timeouts are whole milliseconds (rounded up): a timer
        // due sooner than that is waited for with zero-timeout polls instead,
        // so it is not a millisecond late.
        Ok(Some(if remaining < SPIN_BELOW_NS {
            Duration::ZERO
        } else {
            Duration::from_nanos(remaining)
        }))
    }
}

/// The Python-level handler `signal.signal()` gets for a watched signal.
#[pyclass(frozen, weakref, module = "greenwheel._core")]
struct SignalHandler {
    loop_: Py<Loop>,
}

#[pymethods]
impl SignalHandler {
    #[pyo3(signature = (signum, _frame = None))]
    fn __call__(&self, py: Python<'_>, signum: i32, _frame: Option<&Bound<'_, PyAny>>) {
        self.loop_.get().on_signal(py, signum);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)
    }
}

#[pymethods]
impl Loop {
    #[new]
    #[pyo3(signature = (flags = None, default = None))]
    fn new(
        py: Python<'_>,
        flags: Option<&Bound<'_, PyAny>>,
        default: Option<bool>,
    ) -> PyResult<Self> {
        let _ = flags; // libev backend flags: the backend here is always epoll/kqueue
        let is_main = py
            .import("threading")?
            .call_method0("current_thread")?
            .is(&py.import("threading")?.call_method0("main_thread")?);
        let poller = Poller::new().map_err(os_error)?;
        let (sig_read, sig_write) = make_pipe().map_err(os_error)?;
        let shared = Arc::new(Shared::new(poller.waker()));
        let mut st = State {
            wheel: TimerWheel::new(monotonic_ns()),
            poller,
            fds: HashMap::new(),
            asyncs: Vec::new(),
            signals: BTreeMap::new(),
            prepare: Vec::new(),
            check: Vec::new(),
            idle: Vec::new(),
            ready: Vec::new(),
            carry: Vec::new(),
            last_poll_ns: 0,
            inflight_sleeps: HashSet::new(),
            sig_read,
        };
        if let Err(e) = st.poller.arm(sig_read, READ) {
            close_fds(&[sig_read, sig_write]);
            return Err(os_error(e));
        }
        Ok(Loop {
            state: Guarded::new(Some(st)),
            callbacks: Guarded::new(VecDeque::new()),
            resume_seq: U64Cell::new(0),
            requeued_sleeps: U64Cell::new(0),
            error_handler: Guarded::new(None),
            shared,
            activecnt: IsizeCell::new(0),
            now_ns: U64Cell::new(monotonic_ns()),
            iteration: U64Cell::new(0),
            break_requested: BoolCell::new(false),
            destroyed: BoolCell::new(false),
            signal_pending: BoolCell::new(false),
            default: default.unwrap_or(is_main) && is_main,
            sig_write: I32Cell::new(sig_write),
        })
    }

    /// An object with `handle_error(context, type, value, tb)`, or None.
    #[getter]
    fn error_handler(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.error_handler
            .borrow()
            .as_ref()
            .map(|h| h.clone_ref(py))
    }

    #[setter]
    fn set_error_handler(&self, value: Option<Py<PyAny>>) {
        let old = self.error_handler.replace(value);
        drop(old);
    }

    /// True for the main thread's loop.
    #[getter]
    fn default(&self) -> bool {
        self.default
    }

    /// A non-zero identifier while the loop is alive (0 after destroy).
    #[getter]
    fn ptr(slf: &Bound<'_, Self>) -> usize {
        if slf.get().state.borrow().is_some() {
            slf.as_ptr() as usize
        } else {
            0
        }
    }

    /// How many passes the loop has made.
    #[getter]
    fn iteration(&self) -> u64 {
        self.iteration.get()
    }

    /// Callbacks waiting to run.
    #[getter]
    fn pendingcnt(&self) -> usize {
        self.callbacks.borrow_mut().len()
    }

    /// Referenced active watchers.
    #[getter]
    fn activecnt(&self) -> isize {
        self.activecnt.get()
    }

    /// Timers armed in the wheel (referenced or not).
    #[getter]
    fn timer_count(&self) -> PyResult<usize> {
        self.with_state(|st| st.wheel.len())
    }

    /// Write end of the signal wake-up pipe, for `signal.set_wakeup_fd`.
    #[getter]
    fn sigfd(&self) -> RawFd {
        self.sig_write.get()
    }

    /// Cached loop time in seconds (monotonic), updated once per iteration.
    fn now(&self) -> f64 {
        ns_to_secs(self.now_ns.get())
    }

    /// Refresh the cached time.
    fn update_now(&self) {
        self.refresh_now();
    }

    /// Same as `update_now()` (libuv naming).
    fn update(&self) {
        self.refresh_now();
    }

    /// Run until nothing referenced is left, `break_()`, or one pass with
    /// `once`/`nowait`. Returns True if referenced work remains.
    #[pyo3(signature = (nowait = false, once = false))]
    fn run(&self, py: Python<'_>, nowait: bool, once: bool) -> PyResult<bool> {
        self.check_usable()?;
        self.break_requested.set(false);
        loop {
            self.run_callbacks(py)?;
            if self.break_requested.replace(false) {
                break;
            }
            self.run_phase(py, Phase::Prepare)?;
            // Like libev, `once`/`nowait` always make one pass (that pass does
            // not block when nothing referenced is left).
            if self.activecnt.get() <= 0 && !self.has_callbacks() && !(nowait || once) {
                return Ok(false);
            }
            self.pass(py, nowait, once)?;
            if nowait || once || self.break_requested.replace(false) {
                break;
            }
        }
        Ok(self.activecnt.get() > 0 || self.has_callbacks())
    }

    /// Make `run()` return after the current pass.
    #[pyo3(signature = (how = 2))]
    fn break_(&self, how: i32) {
        let _ = how;
        self.break_requested.set(true);
    }

    /// Queue `func(*args)` to run at the next pass (FIFO).
    #[pyo3(signature = (func, *args))]
    fn run_callback(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<Callback>> {
        self.check_usable()?;
        super::errors::check_callable(func)?;
        let cb = Py::new(
            py,
            Callback::new(func.clone().unbind(), args.clone().unbind()),
        )?;
        self.callbacks
            .borrow_mut()
            .push_back(Queued::Call(cb.clone_ref(py)));
        Ok(cb)
    }

    /// Switch into greenlet `glet` (not started yet) at the next pass, in
    /// FIFO order with the other callbacks. Skipped if `glet` has started by
    /// then (someone switched into it directly). Cheaper than
    /// `run_callback(glet.switch)`: no bound method, no `Callback` object.
    fn start_soon(&self, glet: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_usable()?;
        if !greenlet_api::is_greenlet(glet.py(), glet)? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "expected a greenlet, not {}",
                glet.get_type().name()?
            )));
        }
        self.callbacks
            .borrow_mut()
            .push_back(Queued::Start(glet.clone().unbind()));
        Ok(())
    }

    /// `sleep(0)` for greenlet `hub`'s children: queue a resume of the current
    /// greenlet, switch to `hub`, and return once the loop resumes us.
    /// Raises `BlockingSwitchOutError` when called from `hub` itself.
    fn yield_now(&self, py: Python<'_>, hub: &Bound<'_, PyAny>) -> PyResult<()> {
        self.yield_current(py, hub, false)
    }

    /// `run_callback` from any OS thread; wakes the loop.
    #[pyo3(signature = (func, *args))]
    fn run_callback_threadsafe(
        &self,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        if self.destroyed.get() {
            return Err(Self::closed());
        }
        super::errors::check_callable(func)?;
        lock(&self.shared.threadsafe).push((func.clone().unbind(), args.clone().unbind()));
        self.shared.wake();
        Ok(())
    }

    /// A timer `after` seconds from its start; `repeat` > 0 re-arms it.
    #[pyo3(signature = (after, repeat = 0.0, r#ref = true, priority = None), text_signature = "($self, after, repeat=0.0, ref=True, priority=None)")]
    fn timer(
        slf: &Bound<'_, Self>,
        after: f64,
        repeat: f64,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<TimerWatcher>> {
        Py::new(
            slf.py(),
            TimerWatcher::new(slf.clone().unbind(), after, repeat, r#ref, priority)?,
        )
    }

    /// Watch `fd` for `events` (READ, WRITE or both).
    #[pyo3(signature = (fd, events, r#ref = true, priority = None), text_signature = "($self, fd, events, ref=True, priority=None)")]
    fn io(
        slf: &Bound<'_, Self>,
        fd: i64,
        events: i64,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<IoWatcher>> {
        Py::new(
            slf.py(),
            IoWatcher::new(slf.clone().unbind(), fd, events, r#ref, priority)?,
        )
    }

    /// A watcher whose `send()` may be called from any thread.
    #[pyo3(signature = (r#ref = true, priority = None), text_signature = "($self, ref=True, priority=None)")]
    fn async_(
        slf: &Bound<'_, Self>,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<AsyncWatcher>> {
        let shared = Arc::clone(&slf.get().shared);
        Py::new(
            slf.py(),
            AsyncWatcher::new(slf.clone().unbind(), shared, r#ref, priority),
        )
    }

    /// Run a callback from the loop when `signum` arrives (main thread only).
    #[pyo3(signature = (signum, r#ref = true, priority = None), text_signature = "($self, signum, ref=True, priority=None)")]
    fn signal(
        slf: &Bound<'_, Self>,
        signum: i32,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<SignalWatcher>> {
        Py::new(
            slf.py(),
            SignalWatcher::new(slf.clone().unbind(), signum, r#ref, priority)?,
        )
    }

    /// Runs its callback on passes that would otherwise block.
    #[pyo3(signature = (r#ref = true, priority = None), text_signature = "($self, ref=True, priority=None)")]
    fn idle(
        slf: &Bound<'_, Self>,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<PhaseWatcher>> {
        Self::phase_watcher(slf, Phase::Idle, r#ref, priority)
    }

    /// Runs its callback before each poll.
    #[pyo3(signature = (r#ref = true, priority = None), text_signature = "($self, ref=True, priority=None)")]
    fn prepare(
        slf: &Bound<'_, Self>,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<PhaseWatcher>> {
        Self::phase_watcher(slf, Phase::Prepare, r#ref, priority)
    }

    /// Runs its callback after each poll.
    #[pyo3(signature = (r#ref = true, priority = None), text_signature = "($self, ref=True, priority=None)")]
    fn check(
        slf: &Bound<'_, Self>,
        r#ref: bool,
        priority: Option<i32>,
    ) -> PyResult<Py<PhaseWatcher>> {
        Self::phase_watcher(slf, Phase::Check, r#ref, priority)
    }

    /// Tell the loop `fd` is about to be closed: drops its kernel
    /// registration. Returns True if watchers were still active on it.
    fn closing_fd(&self, fd: i64) -> PyResult<bool> {
        self.check_usable()?;
        let Ok(fd) = RawFd::try_from(fd) else {
            return Ok(false);
        };
        self.with_state(|st| {
            st.poller.forget(fd);
            st.fds.get(&fd).is_some_and(|e| !e.watchers.is_empty())
        })
    }

    /// Re-create the poller after `os.fork()`, re-registering active fds.
    /// The signal pipe is re-created too (the child must not share it with
    /// the parent), so `sigfd` changes: re-install it with
    /// `signal.set_wakeup_fd` after calling this.
    fn reinit(&self) -> PyResult<()> {
        self.check_usable()?;
        let waker = self
            .with_state(|st| st.poller.reinit())?
            .map_err(os_error)?;
        self.shared.replace_waker(Some(waker));
        let (sig_read, sig_write) = make_pipe().map_err(os_error)?;
        let old_read = self.with_state(|st| {
            st.poller.forget(st.sig_read);
            std::mem::replace(&mut st.sig_read, sig_read)
        })?;
        close_fds(&[old_read, self.sig_write.replace(sig_write)]);
        self.with_state(|st| st.poller.arm(sig_read, READ))?
            .map_err(os_error)?;
        // Anything sent before the fork may have hit the old waker.
        self.shared.async_pending.store(true, Ordering::Release);
        Ok(())
    }

    /// The epoll/kqueue descriptor, or -1 after destroy.
    fn fileno(&self) -> RawFd {
        self.state
            .borrow()
            .as_ref()
            .map_or(-1, |st| st.poller.fileno())
    }

    /// Stop every watcher and free the poller; the loop is unusable after.
    fn destroy(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.check_owner()?;
        self.teardown(py, true)
    }

    /// Route an exception to `error_handler` (or print it).
    fn handle_error(
        &self,
        py: Python<'_>,
        context: &Bound<'_, PyAny>,
        r#type: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        tb: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let _ = (r#type, tb);
        let err = PyErr::from_value(value.clone());
        self.report(py, context, err)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let this = slf.get();
        format!(
            "<greenwheel._core.Loop at {:#x} {}iteration={} pending={} active={}>",
            slf.as_ptr() as usize,
            if this.default { "default " } else { "" },
            this.iteration.get(),
            this.callbacks.borrow_mut().len(),
            this.activecnt.get(),
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(h) = self.error_handler.try_borrow() {
            visit.call(&*h)?;
        }
        if let Ok(cbs) = self.callbacks.try_borrow() {
            for entry in cbs.iter() {
                match entry {
                    Queued::Call(cb) => visit.call(cb)?,
                    Queued::Resume { glet, .. } => visit.call(glet)?,
                    Queued::Start(glet) => visit.call(glet)?,
                }
            }
        }
        if let Ok(st) = self.state.try_borrow() {
            if let Some(st) = st.as_ref() {
                for entry in st.wheel.values() {
                    match entry {
                        TimerEntry::Watcher(t) => visit.call(t)?,
                        TimerEntry::Timeout(t) => visit.call(t)?,
                        TimerEntry::Sleep { glet, .. } => visit.call(glet)?,
                    }
                }
                for e in st.fds.values() {
                    for w in &e.watchers {
                        visit.call(w)?;
                    }
                }
                for w in &st.asyncs {
                    visit.call(w)?;
                }
                for slot in st.signals.values() {
                    visit.call(&slot.previous)?;
                    for w in &slot.watchers {
                        visit.call(w)?;
                    }
                }
                for w in st
                    .prepare
                    .iter()
                    .chain(st.check.iter())
                    .chain(st.idle.iter())
                {
                    visit.call(w)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let handler = self
            .error_handler
            .try_borrow_mut()
            .ok()
            .and_then(|mut h| h.take());
        drop(handler);
        if let Err(err) = self.teardown(py, false) {
            err.write_unraisable(py, None);
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(st) = self.state.get_mut().take() {
            close_fds(&[st.sig_read, self.sig_write.replace(-1)]);
        }
    }
}
