//! The asyncio loop's ready queue (`_ready`).
//!
//! Ground rules:
//! - An entry is a handle object, or the call of a `call_soon` handle that
//!   nobody held any more, kept without its object ([`Item::Call`], see
//!   handles.rs, detached calls). Python code sees handle objects only:
//!   `popleft` makes one for a detached call.
//! - Each entry has a number, its place in the order of every push the queue
//!   ever took, so the loop can find the entry of its last `call_soon` again
//!   while it is queued ([`Items::get_mut`]).

use std::collections::VecDeque;

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use super::handles::{self, DetachedCall};
use crate::py::sync::{BoolCell, Guarded};

/// One entry of the ready queue.
pub(super) enum Item {
    /// A handle object (a `Handle`, a `TimerHandle`, or whatever asyncio's
    /// code appended).
    Handle(Py<PyAny>),
    /// A `call_soon` handle's call, its object gone to the next `call_soon`.
    Call(DetachedCall),
}

impl Item {
    /// Drop the entry's references (tracking a handle object again first if
    /// it outlives the queue's reference: handles.rs, cyclic GC).
    fn release(self, py: Python<'_>) {
        match self {
            Item::Handle(handle) => {
                handles::retrack_shared(handle.bind(py));
                drop(handle.into_bound(py));
            }
            Item::Call(call) => call.release(py),
        }
    }
}

/// The queued entries and how many have left the front.
pub(super) struct Items {
    queue: VecDeque<Item>,
    /// Entries taken from the front (or cleared) since the queue was made:
    /// the entry at `queue[i]` was pushed as number `popped + i`.
    popped: u64,
}

impl Items {
    /// Queue `item` at the back; its number.
    pub(super) fn push(&mut self, item: Item) -> u64 {
        let number = self.popped + self.queue.len() as u64;
        self.queue.push_back(item);
        number
    }

    pub(super) fn pop_front(&mut self) -> Option<Item> {
        let item = self.queue.pop_front()?;
        self.popped += 1;
        Some(item)
    }

    /// The entry pushed as `number`, if it is still queued.
    pub(super) fn get_mut(&mut self, number: u64) -> Option<&mut Item> {
        let at = number.checked_sub(self.popped)?;
        self.queue.get_mut(usize::try_from(at).ok()?)
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Every entry, leaving the queue empty (their numbers are never reused).
    fn take_all(&mut self) -> VecDeque<Item> {
        self.popped += self.queue.len() as u64;
        std::mem::take(&mut self.queue)
    }
}

/// The loop's `_ready`: the handles to run in the next batch, in order.
///
/// The subset of `collections.deque` that asyncio's code uses on `_ready`
/// (`append`, `popleft`, `clear`, `len`, truth).
#[pyclass(frozen, module = "greenwheel._core")]
pub(crate) struct ReadyQueue {
    pub(super) items: Guarded<Items>,
    /// Some greenlet runs the queue's loop (`AioLoopCore::set_runners`
    /// keeps it): the traverse then reports nothing (handles.rs, cyclic GC).
    pub(super) loop_running: BoolCell,
}

impl ReadyQueue {
    pub(super) fn new() -> Self {
        ReadyQueue {
            items: Guarded::new(Items {
                queue: VecDeque::new(),
                popped: 0,
            }),
            loop_running: BoolCell::new(false),
        }
    }
}

#[pymethods]
impl ReadyQueue {
    fn append(&self, handle: Py<PyAny>) {
        self.items.borrow_mut().push(Item::Handle(handle));
    }

    fn popleft(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let item = self.items.borrow_mut().pop_front();
        let item =
            item.ok_or_else(|| pyo3::exceptions::PyIndexError::new_err("pop from an empty queue"))?;
        match item {
            Item::Handle(handle) => {
                // Handed to Python code: tracked again (see handles.rs, cyclic GC).
                handles::retrack(handle.bind(py));
                Ok(handle)
            }
            Item::Call(call) => Ok(call.into_handle(py)?.into_any()),
        }
    }

    fn clear(&self, py: Python<'_>) {
        let items = self.items.borrow_mut().take_all();
        release(py, items);
    }

    fn __len__(&self) -> usize {
        self.items.borrow().len()
    }

    fn __bool__(&self) -> bool {
        !self.items.borrow().is_empty()
    }

    fn __repr__(&self) -> String {
        format!("<ReadyQueue of {} handles>", self.items.borrow().len())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self.loop_running.get() {
            return Ok(());
        }
        if let Ok(items) = self.items.try_borrow() {
            for item in items.queue.iter() {
                match item {
                    Item::Handle(handle) => {
                        // Before visiting the item itself: gc.get_referents'
                        // visit takes a reference to what it visits.
                        handles::traverse_owned(handle, 1, &visit)?;
                        visit.call(handle)?;
                    }
                    Item::Call(call) => call.traverse(&visit)?,
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        if let Ok(mut items) = self.items.try_borrow_mut() {
            let taken = items.take_all();
            drop(items);
            // SAFETY: __clear__ runs with the GIL held (from the collector).
            release(unsafe { Python::assume_attached() }, taken);
        }
    }
}

/// Drop the queue's references to `items`; after the queue's borrow, as the
/// decrefs may run Python code.
fn release(py: Python<'_>, items: VecDeque<Item>) {
    for item in items {
        item.release(py);
    }
}
