//! The asyncio loop's fd registrations: `add_reader` / `add_writer` and
//! what fires them, natively.
//!
//! asyncio's selector loop keeps a `(reader, writer)` pair of handles per fd
//! in its selector and, after each poll, queues the handles of the fds that
//! became ready (`_process_events`). Here each registered fd has an io
//! watcher of the hub's loop; when it fires, the fd's events are recorded,
//! and the next batch queues the handles (`process_io`) just as asyncio
//! would: a cancelled reader or writer is removed instead of queued.
//!
//! Ground rules:
//! - One watcher per fd, watching exactly what the registered handles need
//!   (its mask); a change of mask replaces the watcher.
//! - Registrations alone do not keep the hub's loop alive (ref=False): a
//!   running asyncio loop keeps it alive itself.
//! - A watcher that fires while nobody runs the loop is stopped (the fd is
//!   level-triggered and would fire on every pass) and restarted by
//!   `_resume_io` when the loop runs again; its events stay recorded.
//! - No borrow of the registry is held across a call into Python (handle
//!   cancels and watcher starts, stops and closes happen after it is
//!   released).

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::handles::{Args, Handle, HandleCore};
use super::ready::Item;
use super::{AioLoopCore, FdEntry};
use crate::py::aio_transport::bound_read_ready;
use crate::py::loop_::Loop;
use crate::py::watchers::{self, IoWatcher};

/// The loop's event bits (`_core.READ`, `_core.WRITE`).
const READ: i64 = crate::poller::READ as i64;
const WRITE: i64 = crate::poller::WRITE as i64;

/// selectors' `_fileobj_to_fd`: an int, or an object's `fileno()`.
fn fileobj_to_fd(fileobj: &Bound<'_, PyAny>) -> PyResult<i32> {
    let fd: i64 = match fileobj.extract::<i64>() {
        Ok(fd) => fd,
        Err(_) => match fileobj.call_method0(pyo3::intern!(fileobj.py(), "fileno")) {
            Ok(fd) => fd.extract::<i64>()?,
            Err(_) => {
                return Err(PyValueError::new_err(format!(
                    "Invalid file object: {}",
                    fileobj.repr()?
                )))
            }
        },
    };
    if fd < 0 || fd > i64::from(i32::MAX) {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    Ok(fd as i32)
}

/// Which of the pair an operation is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Reader,
    Writer,
}

impl Side {
    fn bit(self) -> i64 {
        match self {
            Side::Reader => READ,
            Side::Writer => WRITE,
        }
    }
}

/// What is left to do, outside the registry's borrow, after it changed.
#[derive(Default)]
struct Aftermath {
    /// The handle the change displaced (cancel it).
    displaced: Option<Py<Handle>>,
    /// A watcher to close (the fd's mask changed, or it left).
    close: Option<Py<IoWatcher>>,
    /// A watcher to start, for these events.
    start: Option<(Py<IoWatcher>, i32)>,
}

impl Aftermath {
    fn finish(self, py: Python<'_>, io_fired: &Bound<'_, PyAny>) -> PyResult<bool> {
        let had = self.displaced.is_some();
        if let Some(watcher) = self.close {
            watcher.bind(py).call_method0(pyo3::intern!(py, "close"))?;
        }
        if let Some((watcher, fd)) = self.start {
            let args = PyTuple::new(py, [fd])?;
            watchers::start(watcher.bind(py), io_fired, &args, true)?;
        }
        if let Some(handle) = self.displaced {
            Handle::cancel(handle.bind(py))?;
        }
        Ok(had)
    }
}

impl AioLoopCore {
    /// An fd's io watcher fired with `revents` (`_io_fired`, also called
    /// by the loop's dispatch directly: see `IoWatcher::aio`).
    pub(crate) fn io_fired(slf: &Bound<'_, Self>, revents: u8, fd: i32) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let running = this.runners.get() > 0;
        let pause = {
            let mut fds = this.fds.borrow_mut();
            let Some(entry) = fds.get_mut(&fd) else {
                return Ok(());
            };
            if entry.seen == 0 {
                this.io_ready.borrow_mut().push(fd);
            }
            entry.seen |= i64::from(revents) & (READ | WRITE);
            if running {
                None
            } else {
                entry.paused = true;
                Some(entry.watcher.clone_ref(py))
            }
        };
        match pause {
            Some(watcher) => {
                watcher.bind(py).call_method0(pyo3::intern!(py, "stop"))?;
                Ok(())
            }
            None => AioLoopCore::schedule(slf),
        }
    }

    /// A new fd watcher for `mask`, dispatched straight to this core unless
    /// a subclass overrides `_io_fired` (then the watcher calls it).
    fn fd_watcher(
        slf: &Bound<'_, Self>,
        gw_loop: Py<Loop>,
        fd: i32,
        mask: i64,
    ) -> PyResult<Py<IoWatcher>> {
        let watcher = Py::new(
            slf.py(),
            IoWatcher::new(gw_loop, i64::from(fd), mask, false, None)?,
        )?;
        let name = pyo3::intern!(slf.py(), "_io_fired");
        let ours = slf.py().get_type::<AioLoopCore>().getattr(name)?;
        if slf.get_type().getattr(name)?.is(&ours) {
            *watcher.get().aio.borrow_mut() = Some(slf.clone().unbind());
        }
        Ok(watcher)
    }

    fn io_fired_callback<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kick = self.kick.borrow();
        let k = kick.as_ref().ok_or_else(super::not_set_up)?;
        Ok(k.io_fired.clone_ref(py).into_bound(py))
    }

    /// `_add_reader` / `_add_writer`.
    fn add(
        slf: &Bound<'_, Self>,
        side: Side,
        fileobj: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Py<PyTuple>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_open()?;
        let fd = fileobj_to_fd(&fileobj)?;
        let io_fired = this.io_fired_callback(py)?;
        let gw_loop = {
            let kick = this.kick.borrow();
            kick.as_ref()
                .ok_or_else(super::not_set_up)?
                .gw_loop
                .clone_ref(py)
        };
        // A transport's `_read_ready` (see `Args::Reader`).
        let direct = if side == Side::Reader && args.bind(py).is_empty() {
            bound_read_ready(&callback)
        } else {
            None
        };
        let args = match direct {
            Some(reader) => Args::Reader(reader),
            None => Args::Tuple(args),
        };
        let core = HandleCore::new(py, slf, callback.unbind(), args, None)?;
        let handle = Py::new(py, Handle { core })?;
        // A watcher for the new mask, made before the registry is borrowed
        // (making a Python object may run the garbage collector).
        let old_mask = this.fds.borrow().get(&fd).map(|e| e.mask);
        let mask = old_mask.unwrap_or(0) | side.bit();
        let new_watcher = if old_mask == Some(mask) {
            None
        } else {
            Some(Self::fd_watcher(slf, gw_loop, fd, mask)?)
        };
        let mut after = Aftermath::default();
        {
            let mut fds = this.fds.borrow_mut();
            let entry = match (fds.contains_key(&fd), &new_watcher) {
                (true, _) => fds.get_mut(&fd),
                (false, Some(watcher)) => Some(fds.entry(fd).or_insert(FdEntry {
                    fileobj: fileobj.clone().unbind(),
                    reader: None,
                    writer: None,
                    watcher: watcher.clone_ref(py),
                    mask: 0,
                    seen: 0,
                    paused: false,
                })),
                (false, None) => None,
            };
            let Some(entry) = entry else {
                return Err(PyRuntimeError::new_err("fd registry changed during add"));
            };
            let slot = match side {
                Side::Reader => &mut entry.reader,
                Side::Writer => &mut entry.writer,
            };
            after.displaced = slot.replace(handle.clone_ref(py));
            if let Some(watcher) = new_watcher {
                if entry.mask != 0 {
                    after.close =
                        Some(std::mem::replace(&mut entry.watcher, watcher.clone_ref(py)));
                }
                entry.mask = mask;
                entry.paused = false;
                after.start = Some((watcher, fd));
            }
        }
        after.finish(py, &io_fired)?;
        Ok(handle)
    }

    /// `_remove_reader` / `_remove_writer`: whether there was one.
    fn remove(slf: &Bound<'_, Self>, side: Side, fileobj: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.closed.get() {
            return Ok(false);
        }
        let fd = fileobj_to_fd(fileobj)?;
        // The watcher for a narrower mask is made before the registry is
        // borrowed (making a Python object may run the garbage collector).
        let (old_mask, gw_loop) = match this.fds.borrow().get(&fd) {
            Some(e) => (e.mask, e.watcher.get().core.loop_.clone_ref(py)),
            None => return Ok(false),
        };
        let mask = old_mask & !side.bit();
        let new_watcher = if mask != 0 && mask != old_mask {
            Some(Self::fd_watcher(slf, gw_loop, fd, mask)?)
        } else {
            None
        };
        let mut after = Aftermath::default();
        {
            let mut fds = this.fds.borrow_mut();
            let Some(entry) = fds.get_mut(&fd) else {
                return Ok(false);
            };
            after.displaced = match side {
                Side::Reader => entry.reader.take(),
                Side::Writer => entry.writer.take(),
            };
            if mask == 0 {
                if let Some(gone) = fds.remove(&fd) {
                    after.close = Some(gone.watcher);
                }
            } else if let Some(watcher) = new_watcher {
                after.close = Some(std::mem::replace(&mut entry.watcher, watcher.clone_ref(py)));
                entry.mask = mask;
                entry.seen &= mask;
                entry.paused = false;
                after.start = Some((watcher, fd));
            }
        }
        let io_fired = this.io_fired_callback(py)?;
        after.finish(py, &io_fired)
    }

    /// The batch's io step (asyncio's `_process_events`): queue the reader
    /// and writer handles of the fds that fired; a cancelled one is removed
    /// instead.
    pub(super) fn process_io(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let ready = std::mem::take(&mut *this.io_ready.borrow_mut());
        for fd in ready {
            // Only the handles of the events seen are taken, and the file
            // object only for a cancelled one: each is a reference count
            // written on an object the request does not otherwise touch (the
            // socket object, an idle writer), a cache line missed per event
            // with many connections (callgrind --cache-sim).
            let (seen, [reader, writer]) = {
                let mut fds = this.fds.borrow_mut();
                let Some(entry) = fds.get_mut(&fd) else {
                    continue; // unregistered since it fired
                };
                let seen = std::mem::take(&mut entry.seen) & entry.mask;
                let take = |bit: i64, h: &Option<Py<Handle>>| {
                    h.as_ref()
                        .filter(|_| seen & bit != 0)
                        .map(|h| h.clone_ref(py))
                };
                (
                    seen,
                    [take(READ, &entry.reader), take(WRITE, &entry.writer)],
                )
            };
            if seen == 0 {
                continue;
            }
            for (handle, side) in [(reader, Side::Reader), (writer, Side::Writer)] {
                let Some(handle) = handle else { continue };
                if handle.get().core.cancelled.get() {
                    // The registration as it is now (the reader's removal
                    // may have changed it).
                    let fileobj = match this.fds.borrow().get(&fd) {
                        Some(entry) => entry.fileobj.clone_ref(py),
                        None => continue,
                    };
                    AioLoopCore::remove(slf, side, fileobj.bind(py))?;
                } else {
                    this.ready
                        .get()
                        .items
                        .borrow_mut()
                        .push(Item::Handle(handle.into_any()));
                }
            }
        }
        Ok(())
    }
}

#[pymethods]
impl AioLoopCore {
    /// asyncio's `_add_reader(fd, callback, *args)`.
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Py<PyTuple>,
    ) -> PyResult<Py<Handle>> {
        AioLoopCore::add(slf, Side::Reader, fd, callback, args)
    }

    /// asyncio's `_add_writer(fd, callback, *args)`.
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Py<PyTuple>,
    ) -> PyResult<Py<Handle>> {
        AioLoopCore::add(slf, Side::Writer, fd, callback, args)
    }

    /// asyncio's `_remove_reader(fd)`: whether a reader was registered.
    fn _remove_reader(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<bool> {
        AioLoopCore::remove(slf, Side::Reader, &fd)
    }

    /// asyncio's `_remove_writer(fd)`: whether a writer was registered.
    fn _remove_writer(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<bool> {
        AioLoopCore::remove(slf, Side::Writer, &fd)
    }

    /// An fd's io watcher fired with `revents`: record them for the next
    /// batch. With nobody running the loop, stop the watcher (see the
    /// module docs).
    fn _io_fired(slf: &Bound<'_, Self>, revents: i64, fd: i32) -> PyResult<()> {
        // (Only the READ and WRITE bits count: the cast keeps them.)
        Self::io_fired(slf, (revents & (READ | WRITE)) as u8, fd)
    }

    /// Restart the watchers stopped while nobody ran the loop, and queue a
    /// batch for what they recorded.
    fn _resume_io(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let paused: Vec<(Py<IoWatcher>, i32)> = {
            let mut fds = this.fds.borrow_mut();
            fds.iter_mut()
                .filter(|(_, e)| e.paused)
                .map(|(fd, e)| {
                    e.paused = false;
                    (e.watcher.clone_ref(py), *fd)
                })
                .collect()
        };
        let io_fired = this.io_fired_callback(py)?;
        for (watcher, fd) in paused {
            let args = PyTuple::new(py, [fd])?;
            watchers::start(watcher.bind(py), &io_fired, &args, true)?;
        }
        if !this.io_ready.borrow().is_empty() {
            AioLoopCore::schedule(slf)?;
        }
        Ok(())
    }

    /// Forget every registration, closing the watchers (`close()`).
    fn _close_io(&self, py: Python<'_>) -> PyResult<()> {
        let fds = std::mem::take(&mut *self.fds.borrow_mut());
        self.io_ready.borrow_mut().clear();
        for (_, entry) in fds {
            entry
                .watcher
                .bind(py)
                .call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }

    /// asyncio's selector map, read-only: `{fd: (fileobj, events, (reader,
    /// writer))}` with selectors' event bits.
    fn _io_registrations(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        type Row = (i32, Py<PyAny>, i64, [Option<Py<Handle>>; 2]);
        let rows: Vec<Row> = self
            .fds
            .borrow()
            .iter()
            .map(|(fd, e)| {
                // selectors.EVENT_READ is 1, EVENT_WRITE is 2.
                let events = i64::from(e.mask & READ != 0) | (i64::from(e.mask & WRITE != 0) << 1);
                (*fd, e.fileobj.clone_ref(py), events, e.handles(py))
            })
            .collect();
        let out = PyDict::new(py);
        for (fd, fileobj, events, [reader, writer]) in rows {
            out.set_item(fd, (fileobj, events, (reader, writer)))?;
        }
        Ok(out.unbind())
    }
}
