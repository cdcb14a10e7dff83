//! asyncio's `Handle` and `TimerHandle`, natively: what `call_soon`,
//! `call_later` and `call_at` return, and what a batch runs.
//!
//! Ground rules:
//! - A handle offers what asyncio's offers to users and to asyncio's own code
//!   (`cancel`, `cancelled`, `get_context`, `when`, `_run`, the private
//!   attributes asyncio reads, reprs in asyncio's words, a TimerHandle's
//!   ordering and hash), so code written against asyncio's handles works.
//! - Cancelling drops the callback and its arguments (asyncio does too), so
//!   a kept handle keeps nothing alive; the call is cloned out before it
//!   runs, so no borrow is held while Python code runs.

use crate::py::aio_transport::{passes_through, TransportIO};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyTuple};
use pyo3::PyTraverseError;

use super::{asyncio_attr, copy_context, AioLoopCore};
use crate::py::loop_::Loop;
use crate::py::sync::{BoolCell, Guarded, HandleCell, IsizeCell};

/// What a handle calls: `context.run(callback, *args)`.
pub(super) struct Call {
    callback: Py<PyAny>,
    args: Args,
    context: Py<PyAny>,
}

/// A call's positional arguments.
///
/// A single one is kept as itself, not in a tuple: a Future schedules each
/// of its done callbacks as `call_soon(callback, future)`, so every task's
/// wake-up and every `gather` child's completion has one, and the tuple was
/// a GC-tracked object per call, alive while the handle waits in the queue
/// (145k of them at once among the collector's 2.3M objects in `staggered`,
/// where the wake-ups of the timers that expired together wait). The tuple
/// asyncio's `_args` shows is made only when asked for.
pub(super) enum Args {
    Tuple(Py<PyTuple>),
    One(Py<PyAny>),
    /// No arguments, and the callback is this transport reader's bound
    /// `read_ready` (a reader handle of `add_reader`): `run` calls the
    /// reader directly, so a read does not touch the bound method object,
    /// a cache line missed per read with many connections (callgrind
    /// --cache-sim, keep-alive HTTP with 100 connections).
    Reader(Py<TransportIO>),
}

impl Call {
    /// Run the call it owns (moved out of its handle, no references cloned):
    /// released after a run that returned, or that raised SystemExit or
    /// KeyboardInterrupt (that error returned); given back with the error
    /// when the callback raised one for the exception handler, which the
    /// caller reports showing a handle that holds the call.
    fn run_owned(self, py: Python<'_>) -> PyResult<Option<(Call, PyErr)>> {
        match run_in_context(self.context.bind(py), self.callback.bind(py), &self.args) {
            Ok(()) => {
                self.release(py);
                Ok(None)
            }
            Err(err) if passes_through(py, &err) => {
                self.release(py);
                Err(err)
            }
            Err(err) => Ok(Some((self, err))),
        }
    }

    /// Drop the call's references (with the GIL known held: no check per
    /// reference, as dropping a `Py` makes).
    pub(super) fn release(self, py: Python<'_>) {
        drop(self.callback.into_bound(py));
        drop(self.context.into_bound(py));
        match self.args {
            Args::Tuple(t) => drop(t.into_bound(py)),
            Args::One(a) => drop(a.into_bound(py)),
            Args::Reader(r) => drop(r.into_bound(py)),
        }
    }
}

impl Args {
    fn clone_ref(&self, py: Python<'_>) -> Args {
        match self {
            Args::Tuple(t) => Args::Tuple(t.clone_ref(py)),
            Args::One(a) => Args::One(a.clone_ref(py)),
            Args::Reader(r) => Args::Reader(r.clone_ref(py)),
        }
    }

    /// As asyncio keeps them: a tuple.
    fn tuple<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        match self {
            Args::Tuple(t) => Ok(t.bind(py).clone()),
            Args::One(a) => PyTuple::new(py, [a]),
            Args::Reader(_) => Ok(PyTuple::empty(py)),
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Args::Tuple(t) => visit.call(t),
            Args::One(a) => visit.call(a),
            Args::Reader(r) => visit.call(r),
        }
    }
}

/// A handle's call and context.
struct State {
    /// The call until the handle is cancelled (asyncio drops the callback
    /// and its arguments then, so a kept handle keeps nothing alive).
    call: Option<Call>,
    /// Kept after a cancel: `get_context()` still answers. None only while
    /// the handle waits in its loop's spares (see `recycle`).
    context: Option<Py<PyAny>>,
}

/// What [`Handle`] and [`TimerHandle`] share: asyncio's `Handle` state.
pub(super) struct HandleCore {
    /// Its call and context, under one lock (a `call_soon` fills both in
    /// and its recycling empties both: one lock each, not two).
    state: Guarded<State>,
    pub(super) cancelled: BoolCell,
    pub(super) event_loop: Py<PyAny>,
    /// Where the handle was made, in debug mode (asyncio's
    /// `_source_traceback`), else None.
    source_traceback: Option<Py<PyAny>>,
    /// The repr a handle cancelled in debug mode keeps (asyncio's `_repr`).
    cancelled_repr: Guarded<Option<String>>,
}

impl HandleCore {
    pub(super) fn new(
        py: Python<'_>,
        event_loop: &Bound<'_, AioLoopCore>,
        callback: Py<PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let context = resolve_context(py, context)?;
        let source_traceback = if event_loop.get().debug.get() {
            Some(source_traceback(py)?)
        } else {
            None
        };
        Ok(HandleCore {
            state: Guarded::new(State {
                call: Some(Call {
                    callback,
                    args,
                    context: context.clone_ref(py),
                }),
                context: Some(context),
            }),
            cancelled: BoolCell::new(false),
            event_loop: event_loop.clone().into_any().unbind(),
            source_traceback,
            cancelled_repr: Guarded::new(None),
        })
    }

    /// The handle's context (None only for a spare, which nobody sees).
    fn context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .borrow()
            .context
            .as_ref()
            .map(|c| c.clone_ref(py))
    }

    /// The call to make, unless cancelled (cloned out: no borrow is held
    /// while it runs).
    fn call(&self, py: Python<'_>) -> Option<(Py<PyAny>, Args, Py<PyAny>)> {
        self.state.borrow().call.as_ref().map(|c| {
            (
                c.callback.clone_ref(py),
                c.args.clone_ref(py),
                c.context.clone_ref(py),
            )
        })
    }

    /// Whether the handle's loop is in debug mode now (asyncio asks the
    /// loop at each use, not at the handle's creation).
    fn loop_debug(&self, py: Python<'_>) -> bool {
        self.event_loop
            .bind(py)
            .cast::<AioLoopCore>()
            .is_ok_and(|l| l.get().debug.get())
    }

    /// Mark cancelled and drop the call; false if it already was. `handle` is the Python
    /// object owning this core.
    fn cancel(&self, handle: &Bound<'_, PyAny>) -> PyResult<bool> {
        if self.cancelled.get() {
            return Ok(false);
        }
        self.cancelled.set(true);
        // asyncio: the loop in debug mode keeps the repr (callback and
        // arguments included, "cancelled" too) before the call is dropped.
        if self.loop_debug(handle.py()) {
            let text = handle.repr()?.to_string();
            *self.cancelled_repr.borrow_mut() = Some(text);
        }
        let call = self.state.borrow_mut().call.take();
        drop(call); // after the borrow: a decref may run Python code
        Ok(true)
    }

    /// `context.run(callback, *args)`; an exception other than SystemExit or
    /// KeyboardInterrupt goes to the loop's exception handler, as asyncio's
    /// `Handle._run` does.
    pub(super) fn run(&self, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = handle.py();
        let direct = self
            .state
            .borrow()
            .call
            .as_ref()
            .and_then(|c| match &c.args {
                Args::Reader(r) => Some((r.clone_ref(py), c.context.clone_ref(py))),
                _ => None,
            });
        if let Some((reader, context)) = direct {
            return self.run_reader(handle, reader.bind(py), context.bind(py));
        }
        let Some((callback, args, context)) = self.call(py) else {
            return Ok(());
        };
        let outcome = run_in_context(context.bind(py), callback.bind(py), &args);
        match outcome {
            Ok(_) => Ok(()),
            Err(err) if passes_through(py, &err) => Err(err),
            Err(err) => self.report(handle, &callback, &args, err),
        }
    }

    /// A reader handle's call to `read_ready(reader)`, made directly in its
    /// context: what calling the bound method does (see `Args::Reader`).
    /// An error goes where `run` sends it; the exception handler is shown
    /// the handle's callback, or, if the read cancelled the handle
    /// meanwhile (dropping its call), an equal bound method of the reader.
    fn run_reader(
        &self,
        handle: &Bound<'_, PyAny>,
        reader: &Bound<'_, TransportIO>,
        context: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = handle.py();
        let outcome = in_context(context, || reader.get().read_ready(py));
        match outcome {
            Ok(()) => Ok(()),
            Err(err) if passes_through(py, &err) => Err(err),
            Err(err) => {
                let (callback, args) = match self.call(py) {
                    Some((callback, args, _)) => (callback, args),
                    None => (
                        reader.getattr(pyo3::intern!(py, "read_ready"))?.unbind(),
                        Args::Tuple(PyTuple::empty(py).unbind()),
                    ),
                };
                self.report(handle, &callback, &args, err)
            }
        }
    }

    /// `run` for a handle nobody but the running batch can reach (see
    /// [`recyclable`]): the call is moved out for the run instead of cloned,
    /// sparing three reference count pairs per handle (every task step and
    /// wake-up). Nobody can look at the handle meanwhile; if the callback
    /// raises, the call is put back before the exception handler sees the
    /// handle, so it shows the handle as `run` would.
    pub(super) fn run_private(&self, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = handle.py();
        let taken = self.state.borrow_mut().call.take();
        let Some(call) = taken else {
            return Ok(());
        };
        let Some((call, err)) = call.run_owned(py)? else {
            return Ok(());
        };
        let (callback, args) = (call.callback.clone_ref(py), call.args.clone_ref(py));
        self.state.borrow_mut().call = Some(call);
        self.report(handle, &callback, &args, err)
    }

    /// The exception handler's context for a callback that raised, as
    /// asyncio builds it (`Exception in callback <source>`).
    fn report(
        &self,
        handle: &Bound<'_, PyAny>,
        callback: &Py<PyAny>,
        args: &Args,
        err: PyErr,
    ) -> PyResult<()> {
        let py = handle.py();
        let source = self.callback_source(py, callback, args)?;
        let context = PyDict::new(py);
        context.set_item("message", format!("Exception in callback {source}"))?;
        context.set_item("exception", err.value(py))?;
        context.set_item("handle", handle)?;
        if let Some(tb) = &self.source_traceback {
            context.set_item("source_traceback", tb)?;
        }
        self.event_loop
            .bind(py)
            .call_method1("call_exception_handler", (context,))?;
        Ok(())
    }

    /// asyncio's `format_helpers._format_callback_source`: since 3.13 it
    /// shows the arguments only in debug mode (it takes the loop's `debug`).
    fn callback_source<'py>(
        &self,
        py: Python<'py>,
        callback: &Py<PyAny>,
        args: &Args,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = args.tuple(py)?;
        let format = format_helpers(py)?.getattr("_format_callback_source")?;
        if !takes_debug(py, &format)? {
            return format.call1((callback, args));
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item("debug", self.loop_debug(py))?;
        format.call((callback, args), Some(&kwargs))
    }

    /// asyncio's `_repr_info` words: the class, `cancelled`, (`when=`), the
    /// callback's source, where the handle was created.
    fn repr(&self, py: Python<'_>, class: &str, when: Option<f64>) -> PyResult<String> {
        if let Some(kept) = self.cancelled_repr.borrow().as_ref() {
            return Ok(kept.clone());
        }
        let mut info = vec![class.to_owned()];
        if self.cancelled.get() {
            info.push("cancelled".to_owned());
        }
        if let Some(when) = when {
            info.push(format!("when={}", PyFloat::new(py, when).repr()?));
        }
        if let Some((callback, args, _)) = self.call(py) {
            let source = self.callback_source(py, &callback, &args)?;
            info.push(source.str()?.to_string());
        }
        if let Some(tb) = &self.source_traceback {
            // asyncio: "created at FILE:LINE" of the last entry.
            let last = tb.bind(py).get_item(-1)?;
            info.push(format!(
                "created at {}:{}",
                last.getattr("filename")?,
                last.getattr("lineno")?
            ));
        }
        Ok(format!("<{}>", info.join(" ")))
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(state) = self.state.try_borrow() {
            if let Some(c) = state.call.as_ref() {
                visit.call(&c.callback)?;
                c.args.traverse(visit)?;
                visit.call(&c.context)?;
            }
            if let Some(c) = state.context.as_ref() {
                visit.call(c)?;
            }
        }
        visit.call(&self.event_loop)?;
        if let Some(tb) = &self.source_traceback {
            visit.call(tb)?;
        }
        Ok(())
    }

    fn clear(&self) {
        if let Ok(mut state) = self.state.try_borrow_mut() {
            let taken = state.call.take();
            drop(state);
            drop(taken);
        }
    }
}

// -- cyclic GC: handles the loop alone holds are not tracked ---------------
//
// Measured on 200k `asyncio.sleep` sleepers (benches `staggered`): with every
// handle tracked, a third of the run was the collector walking the handles
// queued in `_ready` and armed in the wheel (200k of each at the peaks), at
// every collection of their generation; 58k sleepers/s against 170k with the
// collector off. A handle the loop alone holds cannot be garbage before the
// loop (or its queue) is, so while queued or armed it is untracked and its
// holder reports its references instead:
// - `ReadyQueue` and `AioLoopCore` traverse call `traverse_owned`, which
//   visits an untracked handle's references (its callback, arguments,
//   context and loop) when the holder's references are all it has, so a
//   loop abandoned with pending handles is still found as a cycle;
// - a handle the loop lets go of while others hold it (a `TimerHandle` that
//   `asyncio.sleep` keeps, one popped from Python) is tracked again first
//   (`retrack` / `retrack_shared`), so from then on the collector sees it.
// An untracked handle that someone else also holds is not visited (its
// references count as outside ones): at worst a cycle through it waits for
// the handle to leave the loop, never is it cleared while reachable.
//
// What running changes: while a greenlet runs the loop (`run_forever`,
// `await_`: the loop's `_runners`), that greenlet's frame holds the loop, so
// the queue and the armed handles are reachable and nothing they hold can
// be garbage; the queue and the loop then report none of their handles.
// (Nor could the loop and that greenlet be garbage together while handles
// wait: a queued batch is the loop's kick, an armed handle an entry of the
// hub's wheel, both held from the hub.)
// Leaving references out only ever keeps objects alive (the collector takes
// them for outside references), never frees a reachable one; and no Python
// code runs during a collection, so its passes all see the same answer.
// Reporting them cost every full collection a walk of all queued and armed
// handles: in `spawn_join` (200k tasks queued at once) 370M of the 2.0G
// instructions the collector spent (callgrind), which rloop, whose queue
// the collector never sees, does not pay.

// Fired timer handles: a timer handle that runs while someone else holds it
// (`asyncio.sleep` keeps its handle until the task wakes, in a later batch)
// is not tracked again at once: the loop keeps it untracked in `fired_now`
// and lets go of it at the end of the next batch (`release_fired`), tracking
// it again only if it is still held elsewhere; by then a sleeper's handle is
// usually gone. Tracked at once, every sleeper's handle joined the
// collector's young generation and, when many timers expire together, its
// full collections too: in `staggered` (200k sleepers), 94.4k sleepers/s with
// them left untracked against 80.1k, rloop 85.5k (compare.py, one run). A
// cycle through such a handle is found two batches later (or when the loop
// stops running or closes, which let go of them all).

/// Stop the collector tracking `obj` (a Handle / TimerHandle the loop now holds).
pub(super) fn untrack(obj: &Bound<'_, PyAny>) {
    // SAFETY: `obj` is a live object of a GC type (the pyclasses here have
    // __traverse__), the GIL is held; untracking a tracked object is what
    // PyObject_GC_UnTrack is for, and it is a no-op on an untracked one.
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) }
}

/// Track `obj` again if it is a GC object left untracked by `untrack`.
pub(super) fn retrack(obj: &Bound<'_, PyAny>) {
    let p = obj.as_ptr();
    // SAFETY: `p` is live (borrowed) and the GIL is held. PyObject_GC_Track
    // requires a GC object that is not tracked, which the two checks ensure.
    unsafe {
        if ffi::PyObject_IS_GC(p) != 0 && ffi::PyObject_GC_IsTracked(p) == 0 {
            ffi::PyObject_GC_Track(p.cast());
        }
    }
}

/// `retrack`, if anything but the caller's one reference (the loop's,
/// about to be dropped) holds `obj`; otherwise it is freed untracked.
pub(super) fn retrack_shared(obj: &Bound<'_, PyAny>) {
    // SAFETY: `p` is live (borrowed) and the GIL is held.
    if unsafe { ffi::Py_REFCNT(obj.as_ptr()) } > 1 {
        retrack(obj);
    }
}

/// From a holder's `__traverse__`: visit the references of `item` if it is
/// one of the untracked handles and its `owners` references (the holder's)
/// are all it has (see the notes above).
pub(super) fn traverse_owned(
    item: &Py<PyAny>,
    owners: isize,
    visit: &PyVisit<'_>,
) -> Result<(), PyTraverseError> {
    let p = item.as_ptr();
    // SAFETY: the holder keeps `item` alive and traverse runs with the GIL
    // held (the collector calls it); reading the refcount and the tracked bit
    // has no side effect.
    let owned = unsafe { ffi::Py_REFCNT(p) == owners && ffi::PyObject_GC_IsTracked(p) == 0 };
    if !owned {
        return Ok(());
    }
    // SAFETY: the collector runs traverse on an attached thread (GIL held);
    // the token is used only to look at the item's type and fields, with no
    // call into Python and no allocation.
    let py = unsafe { Python::assume_attached() };
    let bound = item.bind(py);
    if let Ok(handle) = bound.cast_exact::<Handle>() {
        handle.get().core.traverse(visit)?;
    } else if let Ok(handle) = bound.cast_exact::<TimerHandle>() {
        let h = handle.get();
        h.core.traverse(visit)?;
        visit.call(&h.gw_loop)?;
    }
    Ok(())
}

/// The context a new handle runs in: the one given, else a copy of the
/// current one (asyncio's `Handle.__init__`).
fn resolve_context(py: Python<'_>, context: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    match context {
        Some(context) if !context.is_none(py) => Ok(context),
        _ => copy_context(py),
    }
}

// -- spares: call_soon handles are reused ----------------------------------
//
// A `call_soon` handle that ran while only the loop held it (every handle of
// a task's step and wake-up: the Task drops what call_soon returns) cannot
// be seen by anyone again; instead of freeing it, the loop keeps it, emptied,
// and the next `call_soon` fills it in. That saves its allocation, and above
// all the cyclic GC's count of new GC objects, which decides how often the
// collector runs (measured in `staggered` and `sleep0`, see the commit).
// A spare holds nothing but its loop, which the loop's traverse reports
// (`traverse_owned`); one with weak references, a source traceback (debug
// mode) or other holders is never taken.

/// Whether the handle `item` (exact `Handle`, untracked: made by
/// `call_soon`) can become a spare: the caller's reference is its only one
/// and nothing refers to it weakly.
pub(super) fn recyclable(item: &Bound<'_, Handle>) -> bool {
    let p = item.as_ptr();
    if item.get().core.source_traceback.is_some() {
        return false;
    }
    // SAFETY: `p` is live (borrowed) and the GIL is held; the weak list
    // slot, when the type has one, is a `PyObject *` at `tp_weaklistoffset`
    // (a positive offset for a pyclass with `weakref`), NULL while no weak
    // reference exists.
    unsafe {
        if ffi::Py_REFCNT(p) != 1 || ffi::PyObject_GC_IsTracked(p) != 0 {
            return false;
        }
        let offset = (*ffi::Py_TYPE(p)).tp_weaklistoffset;
        offset <= 0 || (*p.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>()).is_null()
    }
}

impl HandleCore {
    /// Empty a handle becoming a spare; what it held is returned, to be
    /// dropped after the caller's borrows.
    pub(super) fn recycle(&self) -> (Option<Call>, Option<Py<PyAny>>) {
        // Only a cancel sets the kept repr.
        if self.cancelled.get() {
            self.cancelled.set(false);
            *self.cancelled_repr.borrow_mut() = None;
        }
        let mut state = self.state.borrow_mut();
        (state.call.take(), state.context.take())
    }

    /// Fill in a spare for a new `call_soon`.
    pub(super) fn refill(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let context = resolve_context(py, context)?;
        let call = Call {
            callback,
            args,
            context: context.clone_ref(py),
        };
        let old = {
            let mut state = self.state.borrow_mut();
            (state.call.replace(call), state.context.replace(context))
        };
        // (None for a spare, which `recycle` emptied; dropped after the
        // borrow all the same: a decref may run Python code.)
        drop(old);
        Ok(())
    }

    /// Take the call and context out of a queued, not cancelled handle that
    /// is to become a spare at once (see detached calls); None, leaving the
    /// handle as it was, if it has no call.
    pub(super) fn detach(&self) -> Option<(Call, Option<Py<PyAny>>)> {
        if self.cancelled.get() {
            return None;
        }
        let mut state = self.state.borrow_mut();
        let call = state.call.take()?;
        Some((call, state.context.take()))
    }
}

// -- detached calls: a call_soon handle nobody holds gives its object back --
//
// Every task's first step and every done callback a Future schedules is a
// `call_soon` whose handle the caller drops at once (asyncio's C Task and
// Future do). Spares (above) reuse such handles once they have run; but a
// burst of them queued together, as `gather` over 200k new tasks makes, was
// 200k handle objects alive at once, one more GC allocation per task than
// rloop, whose handles are no GC objects. The collector's young-generation
// count is allocations minus frees, so that one object per task was a sixth
// more young collections and, in `spawn_join`, one more full collection
// (10 against rloop's 9 for 200k tasks; the same 9 with this change).
// compare.py, the tree before in the same run, best of 3: 221k -> 245k
// tasks/s, rloop 220k; best of 5: 244k -> 261k, rloop 237k. Instructions
// per task are unchanged (26.3k, callgrind): the gain is the collector's.
//
// So at each `call_soon`, the handle the one before returned is looked at
// again: if it is still queued and only the queue holds it (`recyclable`:
// the caller dropped it, nobody refers to it weakly), its call moves into
// the queue entry by itself (`DetachedCall`) and the handle object serves
// the new call. Nobody can tell: nothing else refers to the object (it is
// untracked, so not even `gc.get_objects()` lists it), Python code that pops
// the entry (`_run_debug`, tests) gets a handle made for it (`into_handle`),
// and a call that raises shows the exception handler such a handle. A caller
// that keeps its handle keeps it intact. Debug mode detaches nothing (its
// handles carry source tracebacks, and `call_soon` then takes no spares).

/// A queued call whose handle object went to a later `call_soon`.
pub(super) struct DetachedCall {
    call: Call,
    /// The handle's loop (the exception handler's, and the one a handle
    /// made for the call reports).
    event_loop: Py<PyAny>,
}

impl DetachedCall {
    pub(super) fn new(call: Call, event_loop: Py<PyAny>) -> Self {
        DetachedCall { call, event_loop }
    }

    /// A handle object for the call, as the handle it came from was (not in
    /// debug mode, as no handle with a source traceback is detached);
    /// tracked, for Python code.
    pub(super) fn into_handle(self, py: Python<'_>) -> PyResult<Py<Handle>> {
        let context = self.call.context.clone_ref(py);
        Py::new(
            py,
            Handle {
                core: HandleCore {
                    state: Guarded::new(State {
                        call: Some(self.call),
                        context: Some(context),
                    }),
                    cancelled: BoolCell::new(false),
                    event_loop: self.event_loop,
                    source_traceback: None,
                    cancelled_repr: Guarded::new(None),
                },
            },
        )
    }

    /// `context.run(callback, *args)`, as its handle's `_run` would: an
    /// exception other than SystemExit or KeyboardInterrupt goes to the
    /// loop's exception handler, shown a handle made for the call.
    pub(super) fn run(self, py: Python<'_>) -> PyResult<()> {
        let DetachedCall { call, event_loop } = self;
        match call.run_owned(py) {
            Ok(Some((call, err))) => {
                let (callback, args) = (call.callback.clone_ref(py), call.args.clone_ref(py));
                let handle = DetachedCall { call, event_loop }
                    .into_handle(py)?
                    .into_bound(py);
                handle
                    .get()
                    .core
                    .report(handle.as_any(), &callback, &args, err)
            }
            outcome => {
                drop(event_loop.into_bound(py));
                outcome.map(drop)
            }
        }
    }

    pub(super) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.call.callback)?;
        self.call.args.traverse(visit)?;
        visit.call(&self.call.context)?;
        visit.call(&self.event_loop)
    }

    pub(super) fn release(self, py: Python<'_>) {
        self.call.release(py);
        drop(self.event_loop.into_bound(py));
    }
}

/// `context.run(callback, *args)` without its method lookup and argument
/// tuple.
fn run_in_context(
    context: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    args: &Args,
) -> PyResult<()> {
    let py = context.py();
    in_context(context, || {
        match args {
            Args::Tuple(t) if t.bind(py).is_empty() => callback.call0(),
            Args::Reader(_) => callback.call0(),
            Args::Tuple(t) => callback.call1(t.bind(py)),
            // SAFETY: both are live objects borrowed for the call and the
            // GIL is held; PyObject_CallOneArg returns a new reference, or
            // NULL with the error set.
            Args::One(a) => unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    ffi::PyObject_CallOneArg(callback.as_ptr(), a.as_ptr()),
                )
            },
        }
        .map(drop)
    })
}

/// Runs `body` inside `context`: enter it, run, exit it (what
/// `Context.run` does around its call).
fn in_context<R>(context: &Bound<'_, PyAny>, body: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    let py = context.py();
    // SAFETY: `context` is a live object (borrowed for this call) and the
    // GIL is held. PyContext_Enter checks that it is a Context (TypeError
    // otherwise) and that it is not entered already (RuntimeError), as
    // Context.run does; on failure it returns -1 with the error set.
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let outcome = body();
    // SAFETY: the same context, entered above on this thread and not exited
    // since (a callback that enters contexts exits them before returning);
    // the body's own error, if any, is already fetched into `outcome`, so
    // no error indicator is set across the call.
    if unsafe { ffi::PyContext_Exit(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    outcome
}

/// Where a handle is being made: `format_helpers.extract_stack` of the
/// calling Python frame (asyncio's handles take their own caller's and then
/// drop the `call_soon` frame; natively there is no such frame to drop).
fn source_traceback(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let frame = py.import("sys")?.getattr("_getframe")?.call1((0,))?;
    Ok(format_helpers(py)?
        .getattr("extract_stack")?
        .call1((frame,))?
        .unbind())
}

/// Whether `_format_callback_source` takes `debug` (3.13 on), looked once.
fn takes_debug(py: Python<'_>, format: &Bound<'_, PyAny>) -> PyResult<bool> {
    static TAKES: PyOnceLock<bool> = PyOnceLock::new();
    TAKES
        .get_or_try_init(py, || {
            let names = format.getattr("__code__")?.getattr("co_varnames")?;
            names.contains("debug")
        })
        .copied()
}

fn format_helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static MODULE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    asyncio_attr(py, &MODULE, "format_helpers", &[])
}

/// The methods and attributes asyncio's `Handle` offers users and asyncio's
/// own code, for a pyclass with a `core: HandleCore` field.
macro_rules! handle_methods {
    ($ty:ty) => {
        #[pymethods]
        impl $ty {
            fn cancelled(&self) -> bool {
                self.core.cancelled.get()
            }

            fn get_context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
                self.core.context(py)
            }

            fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
                slf.get().core.run(slf.as_any())
            }

            #[getter]
            fn _cancelled(&self) -> bool {
                self.core.cancelled.get()
            }

            #[getter]
            fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
                self.core.call(py).map(|(callback, _, _)| callback)
            }

            #[getter]
            fn _args(&self, py: Python<'_>) -> PyResult<Option<Py<PyTuple>>> {
                self.core
                    .call(py)
                    .map(|(_, args, _)| args.tuple(py).map(Bound::unbind))
                    .transpose()
            }

            #[getter]
            fn _context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
                self.core.context(py)
            }

            #[getter]
            fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
                self.core.event_loop.clone_ref(py)
            }

            #[getter]
            fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
                self.core
                    .source_traceback
                    .as_ref()
                    .map(|tb| tb.clone_ref(py))
            }
        }
    };
}

/// A callback scheduled with `call_soon` (asyncio's `Handle`, natively).
#[pyclass(frozen, weakref, module = "greenwheel._core")]
pub(crate) struct Handle {
    pub(super) core: HandleCore,
}

handle_methods!(Handle);

#[pymethods]
impl Handle {
    /// Cancel the call if it has not run yet.
    pub(super) fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().core.cancel(slf.as_any())?;
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.core.repr(py, "Handle", None)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.core.traverse(&visit)
    }

    fn __clear__(&self) {
        self.core.clear();
    }
}

/// A callback scheduled with `call_later` / `call_at` (asyncio's
/// `TimerHandle`, natively), armed as a one-shot timer in the loop's wheel.
#[pyclass(frozen, weakref, module = "greenwheel._core")]
pub(crate) struct TimerHandle {
    pub(super) core: HandleCore,
    /// The loop time it is due at (`when()`).
    pub(super) when: f64,
    /// The hub's loop, whose wheel holds it while armed.
    pub(super) gw_loop: Py<Loop>,
    /// Its wheel entry while armed; None once fired, cancelled or disarmed
    /// by `close()` (asyncio's `_scheduled`).
    pub(super) wheel: HandleCell,
    /// Its index in the loop's list of armed handles while armed, else -1.
    pub(super) slot: IsizeCell,
    /// In its loop's fired lists: that loop tracks it again if need be.
    pub(super) held_fired: BoolCell,
}

handle_methods!(TimerHandle);

impl TimerHandle {
    /// Stop and forget the wheel timer, if armed (cancel, close).
    pub(super) fn disarm(slf: &Bound<'_, Self>) {
        if let Some(h) = TimerHandle::unarmed(slf) {
            let removed = slf.get().gw_loop.get().aio_timer_disarm(h);
            if let Some(entry) = removed {
                entry.release(slf.py());
            }
        }
    }

    /// Its wheel entry while armed (the loop checks an expiry against it).
    pub(crate) fn wheel_handle(&self) -> Option<crate::wheel::TimerHandle> {
        self.wheel.get()
    }

    /// Now in the loop's wheel as `h`.
    pub(crate) fn armed_as(slf: &Bound<'_, Self>, h: crate::wheel::TimerHandle) {
        slf.get().wheel.set(Some(h));
    }

    /// Out of the wheel (fired, cancelled, disarmed): the wheel entry it
    /// had, if any.
    pub(crate) fn unarmed(slf: &Bound<'_, Self>) -> Option<crate::wheel::TimerHandle> {
        slf.get().wheel.take()
    }
}

#[pymethods]
impl TimerHandle {
    /// Cancel the call if it has not run yet, disarming its timer.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.core.cancel(slf.as_any())? {
            TimerHandle::disarm(slf);
            let event_loop = this.core.event_loop.bind(py);
            if let Ok(core) = event_loop.cast::<AioLoopCore>() {
                core.get().forget_armed(this);
            }
            // Whoever cancels holds it: the collector must see it again
            // (held in the fired lists, the loop decides when it lets go:
            // asyncio.sleep cancels its handle as the task wakes).
            if !this.held_fired.get() {
                retrack(slf.as_any());
            }
        }
        Ok(())
    }

    fn when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.wheel.get().is_some()
    }

    fn __hash__(&self) -> u64 {
        // asyncio hashes the deadline: equal handles hash alike.
        let bits = if self.when == 0.0 {
            0
        } else {
            self.when.to_bits()
        };
        bits ^ (bits >> 32)
    }

    /// asyncio's ordering: by deadline; equality also compares the call.
    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get(), other.get());
        let equal = || -> PyResult<bool> {
            if a.when != b.when || a.core.cancelled.get() != b.core.cancelled.get() {
                return Ok(false);
            }
            match (a.core.call(py), b.core.call(py)) {
                (None, None) => Ok(true),
                (Some((fa, aa, _)), Some((fb, ab, _))) => {
                    Ok(fa.bind(py).eq(fb)? && aa.tuple(py)?.eq(ab.tuple(py)?)?)
                }
                _ => Ok(false),
            }
        };
        let outcome = match op {
            CompareOp::Lt => a.when < b.when,
            CompareOp::Gt => a.when > b.when,
            CompareOp::Le => a.when < b.when || equal()?,
            CompareOp::Ge => a.when > b.when || equal()?,
            CompareOp::Eq => equal()?,
            CompareOp::Ne => !equal()?,
        };
        Ok(PyBool::new(py, outcome).to_owned().into_any().unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.core.repr(py, "TimerHandle", Some(self.when))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.core.traverse(&visit)?;
        visit.call(&self.gw_loop)?;
        Ok(())
    }

    fn __clear__(&self) {
        self.core.clear();
    }
}
