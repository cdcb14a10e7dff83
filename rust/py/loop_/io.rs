//! Fd watchers of the loop: registration with the poller, dispatch, and the
//! re-arming that gives edge-triggered registrations level semantics.

use std::os::unix::io::RawFd;

use pyo3::prelude::*;

use super::{same, FdEntry, Loop, State};
use crate::poller::Ready;
use crate::py::aio::AioLoopCore;
use crate::py::errors::os_error;
use crate::py::greenlet_api;
use crate::py::watchers::IoWatcher;

impl Loop {
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

    pub(super) fn union_mask(watchers: &[Py<IoWatcher>]) -> u8 {
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
                        // The entry stays (its Vec keeps its capacity): a
                        // socket stops and restarts its watcher on every
                        // wait, and removing it would cost a removal, an
                        // insertion and an allocation each time. Entries go
                        // when the fd is closed (`Loop.closing_fd`); one
                        // left by an fd closed otherwise is an empty Vec
                        // that the fd's next user takes over.
                        st.poller.disarm(w.fd);
                    }
                }
            }
        }
        drop(removed);
    }

    /// Dispatches fd readiness collected by the last poll.
    pub(super) fn dispatch_io(&self, py: Python<'_>, ready: &[Ready]) -> PyResult<bool> {
        let outcome = self.dispatch_ready(py, ready);
        self.io_left.set(0);
        outcome
    }

    /// `dispatch_io`, with `io_left` kept up to date for each fd.
    fn dispatch_ready(&self, py: Python<'_>, ready: &[Ready]) -> PyResult<bool> {
        let mut any = false;
        for (idx, r) in ready.iter().enumerate() {
            self.io_left.set((ready.len() - idx - 1) as u64);
            // The usual fd has one watcher: it is held without allocating.
            let (one, many): (Option<Py<IoWatcher>>, Vec<Py<IoWatcher>>) = {
                let mut st = self.state.borrow_mut();
                let Some(st) = st.as_mut() else {
                    return Err(Self::closed());
                };
                match st.fds.get_mut(&r.fd) {
                    Some(entry) => {
                        entry.needs_rearm = true;
                        match entry.watchers.as_slice() {
                            [] => continue, // stray edge for an fd nobody waits on
                            [w] => (Some(w.clone_ref(py)), Vec::new()),
                            ws => (None, ws.iter().map(|w| w.clone_ref(py)).collect()),
                        }
                    }
                    None => continue, // stray edge for an fd nobody waits on
                }
            };
            let snapshot = match &one {
                Some(w) => std::slice::from_ref(w),
                None => many.as_slice(),
            };
            for w in snapshot {
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
                        let aio = w
                            .aio
                            .try_borrow()
                            .ok()
                            .and_then(|a| a.as_ref().map(|c| c.clone_ref(py)));
                        match aio {
                            // greenwheel.asyncio's watcher: what its callback
                            // (`_io_fired(revents, fd)`) does, without the call.
                            Some(core) => match AioLoopCore::io_fired(core.bind(py), hit, r.fd) {
                                Ok(()) => Ok(()),
                                Err(err) => self.report(py, watcher.bind(py).as_any(), err),
                            },
                            None => {
                                let call = w.core.call_parts(py);
                                let prefix = w.pass_events.get().then_some(hit);
                                self.call_reporting(py, watcher.bind(py).as_any(), call, prefix)
                            }
                        }
                    }
                };
                if let Err(e) = outcome {
                    // Nothing taken from the kernel may be lost: re-arming
                    // makes it report whatever is still ready on the next pass.
                    self.rearm_after_unwind(&ready[idx..]);
                    return Err(e);
                }
            }
            // Re-armed at the start of the next pass, not now: the callback may
            // only have queued the read (asyncio), and a reader that then
            // empties the fd reports it (`io_drained`) and spares the syscall.
            self.with_state(|st| st.rearm_pending.push(r.fd))?;
        }
        Ok(any)
    }

    /// After an exception cut a dispatch short: clear stale `pending` flags
    /// and re-arm every fd in `ready`, so their readiness is reported again.
    pub(super) fn rearm_after_unwind(&self, ready: &[Ready]) {
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return;
        };
        let Some(st) = st.as_mut() else {
            return;
        };
        for r in ready {
            if let Some(entry) = st.fds.get_mut(&r.fd) {
                entry.needs_rearm = true;
                for w in &entry.watchers {
                    w.get().core.set_pending(false);
                }
            }
            st.rearm(r.fd);
        }
    }

    /// A reader emptied `fd` of the events in `drained` (a short read of a
    /// stream socket, or EAGAIN) after the loop dispatched its last event
    /// and before the next kernel poll: every byte that arrives from now on
    /// raises a new edge, so the registration needs no re-arm for it. Only
    /// when the fd's watchers want nothing else and the kernel never
    /// reported a hang-up or error on it (a FIN or RST has one edge only,
    /// already spent). (TCP urgent data and Unix-socket credentials can end
    /// a read early: the rest is then read when more bytes arrive.)
    ///
    /// Why: one `epoll_ctl` per read event was a quarter of the system
    /// calls of an asyncio echo round trip (strace: 40,143 `epoll_ctl` for
    /// 40,020 `recvfrom`; uvloop makes none).
    pub(crate) fn io_drained(&self, fd: RawFd, drained: u8) {
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return;
        };
        let Some(st) = st.as_mut() else {
            return;
        };
        if st.poller.hung_up(fd) {
            return;
        }
        if let Some(entry) = st.fds.get_mut(&fd) {
            let mask = Self::union_mask(&entry.watchers);
            if entry.needs_rearm && mask & !drained == 0 && st.poller.covers(fd, mask) {
                entry.needs_rearm = false;
            }
        }
    }
}

impl State {
    /// Re-arms `fd` if an event was delivered since its last arming and it
    /// still has watchers. A failure means the fd was closed under its
    /// watchers; they are woken on the next pass to see the error.
    fn rearm(&mut self, fd: RawFd) {
        if let Some(entry) = self.fds.get_mut(&fd) {
            if entry.needs_rearm && !entry.watchers.is_empty() {
                entry.needs_rearm = false;
                let mask = Loop::union_mask(&entry.watchers);
                if self.poller.arm(fd, mask).is_err() {
                    self.carry.push(Ready { fd, events: mask });
                }
            }
        }
    }

    /// Re-arms the fds dispatched in the last pass (see `rearm_pending`);
    /// called at the start of the next pass, before it polls the kernel.
    pub(super) fn rearm_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.rearm_pending);
        for fd in pending.drain(..) {
            self.rearm(fd);
        }
        // The Vec keeps its capacity for the next pass.
        self.rearm_pending = pending;
    }
}
