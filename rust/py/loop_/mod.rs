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

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::os::unix::io::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyTraverseError;

use super::async_watcher::{lock, AsyncWatcher, Shared};
use super::callback::Callback;
use super::greenlet_api;
use super::sync::{BoolCell, Guarded, I32Cell, IsizeCell, U64Cell};
use super::watchers::{invoke, IoWatcher, Phase, PhaseWatcher, SignalWatcher, TimerWatcher};
use crate::poller::{FdMap, Poller, Ready};
use crate::py::aio::AioLoopCore;
use crate::py::errors::os_error;
use crate::py::timeout::Timeout;
use crate::wheel::{TimerHandle, TimerWheel};
pub(crate) use clock::LoopClock;
pub(crate) use sched::install as install_sched;

mod api;
mod clock;
mod io;
mod phases;
mod sched;
mod timers;
mod virtual_time;
mod wakeups;

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

/// The callback pass `run_callbacks` is in, shared with `yield_current` so
/// that a yielding greenlet can take the hub's next step itself.
///
/// While the hub is parked in the switch of a `Resume` or `Start` entry
/// (`hub_parked`), all the hub would do when switched back to is pop the
/// next entry of the pass and, if it is a `Resume`, switch into it. A
/// greenlet calling `sleep(0)` then pops that entry and switches straight
/// into it: one greenlet switch per yield instead of two (through the hub
/// and out again), with the same order, the same pass boundary and the same
/// burst limit. Anything else (a `Call`, the end of the pass) goes through
/// the hub as before.
///
/// Invariant: `left` and `hub_parked` are zero/false outside
/// `run_callbacks` (restored by `PassScope` on every exit).
struct CallbackPass {
    /// Entries of this pass not yet popped (by the hub or a hand-off).
    left: U64Cell,
    /// Entries popped so far in this pass.
    popped: U64Cell,
    /// When the pass started (system clock ns: see `clock.rs`), for the
    /// burst limit.
    started_ns: U64Cell,
    /// The hub is suspended in the switch of a `Resume`/`Start` entry.
    hub_parked: BoolCell,
}

impl CallbackPass {
    const fn new() -> Self {
        CallbackPass {
            left: U64Cell::new(0),
            popped: U64Cell::new(0),
            started_ns: U64Cell::new(0),
            hub_parked: BoolCell::new(false),
        }
    }

    /// Whether the pass may pop one more entry: some are left, and a long
    /// burst has not used up its time (checked every
    /// [`CALLBACK_CHECK_EVERY`] pops, as gevent checks its switch interval).
    fn may_pop(&self) -> bool {
        if self.left.get() == 0 {
            return false;
        }
        let n = self.popped.get();
        !(n > 0
            && n % CALLBACK_CHECK_EVERY as u64 == 0
            && LoopClock::system_ns().saturating_sub(self.started_ns.get()) >= CALLBACK_BURST_NS)
    }

    /// Counts one popped entry.
    fn note_pop(&self) {
        debug_assert!(self.left.get() > 0, "popped past the end of the pass");
        self.left.set(self.left.get().saturating_sub(1));
        self.popped.set(self.popped.get() + 1);
    }
}

/// Restores the outer `CallbackPass` when `run_callbacks` returns or unwinds
/// (a nested `run()` from a callback has a pass of its own).
struct PassScope<'a> {
    pass: &'a CallbackPass,
    saved: (u64, u64, u64, bool),
}

impl<'a> PassScope<'a> {
    fn enter(pass: &'a CallbackPass, count: u64, now_ns: u64) -> Self {
        let saved = (
            pass.left.replace(count),
            pass.popped.replace(0),
            pass.started_ns.replace(now_ns),
            pass.hub_parked.replace(false),
        );
        PassScope { pass, saved }
    }
}

impl Drop for PassScope<'_> {
    fn drop(&mut self) {
        let (left, popped, started, parked) = self.saved;
        self.pass.left.set(left);
        self.pass.popped.set(popped);
        self.pass.started_ns.set(started);
        self.pass.hub_parked.set(parked);
    }
}

/// One entry of the FIFO callback queue.
enum Queued {
    /// `Loop.run_callback`: call the function.
    Call(Py<Callback>),
    /// `Loop.yield_now`: switch back into a greenlet (no Python call at all).
    Resume { glet: Py<PyAny>, seq: u64 },
    /// `Loop.start_soon`: first switch into a greenlet, unless something
    /// started it meanwhile.
    Start(Py<PyAny>),
    /// The notification scheduler's drain (see `sched.rs`).
    Drain,
}

/// Bytes of the hub's stack left unused below the frame that starts a
/// greenlet (see [`start_below_pad`]).
///
/// greenlet runs every greenlet on the one C stack and records a greenlet's
/// stack base where it is first switched into. Each later switch into it
/// from a *deeper* hub frame must first copy the hub's frames below that
/// base to the heap and back (a malloc, two memcpys and a free per switch).
/// The loop starts greenlets from `run_callbacks` but resumes them from
/// `pass`'s I/O and timer dispatch, about 1.1 KB deeper (gdb, release
/// build): a StreamServer handler had 1,368 bytes of hub stack saved and
/// restored on every request (`hub._stack_saved` while the handler ran).
/// Starting each greenlet below a pad deeper than those resume points
/// leaves nothing to copy. The pad is never written: it only moves the
/// stack pointer; in release builds it stays under a page, so no stack
/// probe runs. Unoptimized builds have frames several times larger (the
/// I/O resume path was 4.5 KB deeper than the start in a debug build), so
/// they get a larger pad.
const START_PAD: usize = if cfg!(debug_assertions) {
    16 * 1024
} else {
    3072
};

/// The first switch into a greenlet, made from a frame `START_PAD` bytes
/// deeper than the caller's (see [`START_PAD`]).
#[inline(never)]
fn start_below_pad<'py>(
    py: Python<'py>,
    glet: greenlet_api::Greenlet<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let pad = std::mem::MaybeUninit::<[u8; START_PAD]>::uninit();
    // Escapes the pad's address, so the frame keeps it until the switch
    // returns (the greenlet's stack base lies below it meanwhile).
    std::hint::black_box(&pad);
    greenlet_api::switch_known(py, glet)
}

impl Queued {
    /// Drops the entry's reference at once, even where PyO3 does not know the
    /// thread is attached (`sleep` and the other raw functions of `raw_fn`).
    fn release(self, py: Python<'_>) {
        match self {
            Queued::Call(cb) => cb.drop_ref(py),
            Queued::Resume { glet, .. } | Queued::Start(glet) => glet.drop_ref(py),
            Queued::Drain => {}
        }
    }
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
    /// A greenwheel.asyncio `call_later` / `call_at` handle (no watcher
    /// object: its expiry queues the handle natively, see `aio`).
    Aio(Py<crate::py::aio::TimerHandle>),
    /// A greenwheel.asyncio loop's next batch (its kick): expiry runs the
    /// batch natively, with no watcher object and no Python-level call.
    Kick(Py<AioLoopCore>),
}

impl TimerEntry {
    /// Drops the entry's reference at once, even where PyO3 does not know the
    /// thread is attached (the raw methods of `raw_fn`).
    pub(crate) fn release(self, py: Python<'_>) {
        match self {
            TimerEntry::Watcher(w) => w.drop_ref(py),
            TimerEntry::Timeout(t) => t.drop_ref(py),
            TimerEntry::Sleep { glet, .. } => glet.drop_ref(py),
            TimerEntry::Aio(h) => h.drop_ref(py),
            TimerEntry::Kick(core) => core.drop_ref(py),
        }
    }
}

/// Watchers on one fd.
struct FdEntry {
    watchers: Vec<Py<IoWatcher>>,
    /// An event was delivered since the fd was last armed, so the kernel
    /// registration must be re-armed (edge-triggered) if watchers stay,
    /// unless a reader reports it emptied the fd ([`Loop::io_drained`]).
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
    fds: FdMap<FdEntry>,
    asyncs: Vec<Py<AsyncWatcher>>,
    /// Ordered so signal watchers dispatch in a stable order.
    signals: BTreeMap<i32, SignalSlot>,
    prepare: Vec<Py<PhaseWatcher>>,
    check: Vec<Py<PhaseWatcher>>,
    idle: Vec<Py<PhaseWatcher>>,
    /// Fork watchers: their callbacks are queued by `reinit()` (after fork).
    fork: Vec<Py<PhaseWatcher>>,
    /// Reused scratch buffer for poll results.
    ready: Vec<Ready>,
    /// Readiness taken out of the kernel but not dispatched (an exception
    /// unwound `run()`, or a re-arm failed): dispatched first on the next pass.
    carry: Vec<Ready>,
    /// Fds dispatched in a pass, re-armed at the start of the next one (see
    /// `State::rearm_pending`): a reader that empties its fd meanwhile
    /// spares the `epoll_ctl` (`Loop::io_drained`).
    rearm_pending: Vec<RawFd>,
    /// Reused buffer for the timers a pass takes out of the wheel (always
    /// empty here: `dispatch_timers` takes it while it runs). A fresh Vec
    /// cost an allocation and a free, about 220 instructions, in every
    /// pass that fires a timer: every batch of `greenwheel.asyncio`
    /// (callgrind).
    timer_batch: Vec<(TimerHandle, TimerEntry)>,
    /// When the kernel was last polled (system clock ns: see `clock.rs`).
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
    /// The notification scheduler (see `sched.rs`).
    sched: sched::Scheduler,
    /// Identifies `Queued::Resume` entries so a failed yield can withdraw its own.
    resume_seq: U64Cell,
    /// Sleep wake-ups re-queued as `Resume { seq: 0 }` and not yet run.
    requeued_sleeps: U64Cell,
    /// The callback pass in progress (see [`CallbackPass`]).
    pass: CallbackPass,
    error_handler: Guarded<Option<Py<PyAny>>>,
    shared: Arc<Shared>,
    /// Referenced active watchers.
    activecnt: IsizeCell,
    /// Where every reading of the time comes from (see `clock.rs`).
    clock: LoopClock,
    /// The loop's cached time (`now()`), from `clock` at each iteration.
    now_ns: U64Cell,
    iteration: U64Cell,
    /// Kernel polls so far. Each may take edge-triggered readiness out of the
    /// kernel, so a watcher's "drained and not polled since" knowledge
    /// (`IoWatcher::drained_at`) is only as old as this count.
    kernel_polls: U64Cell,
    /// While `dispatch_io` runs a watcher: how many of the pass's ready fds
    /// come after it (zero otherwise). See [`Loop::more_io_in_pass`].
    io_left: U64Cell,
    break_requested: BoolCell,
    /// `destroy()` ran (or GC cleared the loop): every entry point raises.
    destroyed: BoolCell,
    /// A Python signal handler of ours ran; signal watchers are pending.
    signal_pending: BoolCell,
    default: bool,
    /// Write end of the signal wake-up pipe (replaced by `reinit()`).
    sig_write: I32Cell,
    /// The creating OS thread's identifier as Python reports it
    /// (`threading.get_ident()` of an unpatched interpreter).
    owner_ident: u64,
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
        self.clear_sched();
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
                // The handle reads as no longer scheduled; the asyncio loop
                // on this loop cannot run any more anyway.
                TimerEntry::Aio(h) => {
                    crate::py::aio::TimerHandle::unarmed(h.bind(py));
                }
                TimerEntry::Kick(core) => core.get().kick_unarmed(),
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
            .chain(st.fork.iter())
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

    /// How many times this loop has polled the kernel.
    pub(crate) fn kernel_polls(&self) -> u64 {
        self.kernel_polls.get()
    }

    /// Whether the kernel reported a hang-up or error on `fd` (see
    /// `Poller::hung_up`). True when it cannot tell (state busy or closed):
    /// callers use it to give up an optimisation, never to wait.
    pub(crate) fn fd_hung_up(&self, fd: RawFd) -> bool {
        match self.state.try_borrow() {
            Ok(st) => st.as_ref().map_or(true, |st| st.poller.hung_up(fd)),
            Err(_) => true,
        }
    }

    /// Whether the thread that created the loop still runs (it has a Python
    /// thread state, listed by `sys._current_frames()`).
    fn owner_alive(&self, py: Python<'_>) -> PyResult<bool> {
        let frames = py.import("sys")?.call_method0("_current_frames")?;
        frames.contains(self.owner_ident)
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

    /// The clock every reading of the time goes through.
    #[inline(always)]
    pub(crate) fn clock(&self) -> &LoopClock {
        &self.clock
    }

    fn refresh_now(&self) -> u64 {
        let now = self.clock.now_ns();
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

    // ----- callbacks

    /// Runs the callbacks queued before this call (later ones wait a pass).
    fn run_callbacks(&self, py: Python<'_>) -> PyResult<bool> {
        let count = self.callbacks.borrow_mut().len();
        let pass = &self.pass;
        let _scope = PassScope::enter(pass, count as u64, LoopClock::system_ns());
        // Like gevent: a long burst of callbacks yields to the rest of the
        // loop (timers, I/O) after a switch interval; the remainder keeps
        // its place at the head of the queue. Greenlets resumed in this pass
        // may pop entries too (`yield_current`), so the pass is counted in
        // `self.pass`, not here.
        while pass.may_pop() {
            let next = self.callbacks.borrow_mut().pop_front();
            pass.note_pop();
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
                Some(Queued::Drain) => self.run_drain(py)?,
                Some(Queued::Start(glet)) => {
                    let glet = glet.into_bound(py);
                    let known = greenlet_api::Greenlet(&glet);
                    // Only `start_soon` queues Start, after checking the type.
                    let started = greenlet_api::has_started(py, greenlet_api::Greenlet(&glet))?;
                    if !started {
                        pass.hub_parked.set(true);
                        let switched = start_below_pad(py, known);
                        pass.hub_parked.set(false);
                        if let Err(err) = switched {
                            self.report(py, &glet, err)?;
                        }
                    }
                }
                Some(Queued::Resume { glet, seq }) => {
                    self.note_resume_popped(seq);
                    let glet = glet.into_bound(py);
                    // Only `yield_current` queues Resume, with getcurrent()'s result.
                    pass.hub_parked.set(true);
                    let switched = greenlet_api::switch_known(py, greenlet_api::Greenlet(&glet));
                    pass.hub_parked.set(false);
                    if let Err(err) = switched {
                        self.report(py, &glet, err)?;
                    }
                }
            }
        }
        Ok(count > 0)
    }

    fn note_resume_popped(&self, seq: u64) {
        if seq == 0 {
            self.requeued_sleeps
                .set(self.requeued_sleeps.get().saturating_sub(1));
        }
    }

    /// The hub's next step, taken by the yielding greenlet `current` (see
    /// [`CallbackPass`]): the greenlet to switch into instead of the hub, if
    /// the hub is parked in this pass and its next entry is a `Resume` of
    /// another greenlet. Out of line: keeps `yield_current`'s frame small.
    #[inline(never)]
    fn hand_off(&self, current: *mut pyo3::ffi::PyObject) -> Option<Py<PyAny>> {
        let pass = &self.pass;
        if !pass.hub_parked.get() || !pass.may_pop() {
            return None;
        }
        let mut q = self.callbacks.borrow_mut();
        match q.front() {
            Some(Queued::Resume { glet, .. }) if glet.as_ptr() != current => {}
            _ => return None,
        }
        let Some(Queued::Resume { glet, seq }) = q.pop_front() else {
            return None;
        };
        drop(q);
        pass.note_pop();
        self.note_resume_popped(seq);
        Some(glet)
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
            return Err(crate::py::fastpath::blocking_from_hub(py));
        }
        let current_ptr = current.as_ptr();
        // Seq 0 is reserved for re-queued sleepers (see `sleep_cancel`).
        let seq = self.resume_seq.get().wrapping_add(1).max(1);
        self.resume_seq.set(seq);
        self.push_callback(Queued::Resume {
            glet: current.unbind(),
            seq,
        });
        let switched = if trusted_hub {
            match self.hand_off(current_ptr) {
                // Only `yield_current` queues Resume, with getcurrent()'s result.
                Some(next) => greenlet_api::switch_known(py, greenlet_api::Greenlet(next.bind(py))),
                None => greenlet_api::switch_known(py, greenlet_api::Greenlet(hub)),
            }
        } else {
            greenlet_api::switch(py, hub)
        };
        match switched {
            Ok(_) => Ok(()),
            Err(err) => {
                // Woken by an exception (kill, Timeout): the queued resume
                // must not later switch into whatever we do next.
                self.withdraw_resume(py, seq);
                Err(err)
            }
        }
    }

    /// Removes the queued `Resume` with `seq` (out of line: keeps the
    /// `yield_current` frame, copied on every greenlet switch, small).
    #[cold]
    #[inline(never)]
    fn withdraw_resume(&self, py: Python<'_>, seq: u64) {
        let withdrawn = {
            let mut q = self.callbacks.borrow_mut();
            let pos = q
                .iter()
                .rposition(|e| matches!(e, Queued::Resume { seq: s, .. } if *s == seq));
            pos.and_then(|p| q.remove(p))
        };
        // After the borrow ends (a decref may run Python code).
        if let Some(entry) = withdrawn {
            entry.release(py);
        }
    }

    /// True while `dispatch_io` runs a watcher that is not the last of the
    /// pass's ready fds: a greenlet that yields now (`yield_current`) runs
    /// again once the others were dispatched, before the next kernel poll.
    ///
    /// pywsgi asks this before sending a response (`_yield_to_poll`), so
    /// the responses of the connections one poll found ready leave in one
    /// burst. Queued callbacks do not count: a response does not wait for
    /// work an application queued, as in gevent.
    pub(crate) fn more_io_in_pass(&self) -> bool {
        self.io_left.get() > 0
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
            // First, so a failed re-arm's carry is dispatched in this pass.
            st.rearm_pending();
            let mut ready = std::mem::take(&mut st.ready);
            ready.clear();
            ready.append(&mut st.carry);
            (ready, st.last_poll_ns)
        })?;
        let skip_kernel = busy
            && !nowait
            && !once
            && LoopClock::system_ns().saturating_sub(last_poll) < POLL_INTERVAL_NS;
        if !skip_kernel {
            let (timeout, jump) = if self.clock.is_virtual() {
                self.virtual_poll_plan(nowait || busy)?
            } else {
                (self.poll_timeout(nowait || busy)?, None)
            };
            let polled = {
                let mut guard = self.state.borrow_mut();
                let st = guard.as_mut().ok_or_else(Self::closed)?;
                let poller = &mut st.poller;
                let buf = &mut ready;
                // Holding the state lock while the GIL is released is fine:
                // no Python code of this thread runs meanwhile, and other
                // threads only `try_borrow` it (GC) or use `Shared`.
                let polled = py.detach(move || poller.poll(timeout, buf));
                self.kernel_polls.set(self.kernel_polls.get() + 1);
                st.last_poll_ns = LoopClock::system_ns();
                polled
            };
            if let Err(e) = polled {
                self.with_state(|st| st.carry.append(&mut ready))?;
                return Err(os_error(e));
            }
            if let Some(jump) = jump {
                self.settle_jump(jump, ready.is_empty());
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
        let remaining = deadline.saturating_sub(self.clock.now_ns());
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

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(st) = self.state.get_mut().take() {
            close_fds(&[st.sig_read, self.sig_write.replace(-1)]);
        }
    }
}
