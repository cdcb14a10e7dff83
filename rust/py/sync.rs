//! Thread-safe stand-ins for `Cell`/`RefCell`, so the binding's classes are
//! `Sync` and may be touched, collected and dropped on any thread.
//!
//! Why not `#[pyclass(unsendable)]`: Python's garbage collector runs on
//! whichever thread happens to allocate, so a reference cycle through a loop
//! or watcher of thread A may be traversed, cleared or freed on thread B.
//! PyO3 turns that into a panic (or a leak) for unsendable classes.
//!
//! Ground rules:
//! - All access happens with the GIL held: the loop's own methods, on the
//!   loop's own thread (public entry points check it; see
//!   `Shared::check_owner`), and the GC hooks, on any thread. The only code
//!   that runs without the GIL, the kernel poll inside `py.detach`, takes no
//!   lock (it may hold one taken before). So the locks are uncontended: they
//!   exist for soundness, not for coordination.
//! - Hence no read-modify-write atomics: the GIL already excludes a
//!   concurrent writer, and a locked instruction costs about 20 cycles and a
//!   full barrier on x86. Atomics use `Relaxed` (or `Acquire`/`Release`
//!   where a lock hands data over): the GIL orders every access that
//!   matters. A free-threaded interpreter keeps this true: `_core` does not
//!   declare itself GIL-free (`gil_used` stays true), so importing it turns
//!   such an interpreter's GIL on.
//! - [`Guarded::borrow_mut`] never blocks: contention can only mean re-entry
//!   (a bug: a lock held across a call into Python) or misuse from another
//!   thread; both raise instead of hanging.
//! - GC hooks (`__traverse__`, `__clear__`) use [`Guarded::try_borrow`] and
//!   skip what is busy.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicIsize, AtomicU64, AtomicU8, Ordering};

use crate::wheel::TimerHandle;

macro_rules! atomic_cell {
    ($(#[$doc:meta])* $name:ident, $atomic:ty, $t:ty) => {
        $(#[$doc])*
        pub(crate) struct $name($atomic);

        impl $name {
            pub(crate) const fn new(v: $t) -> Self {
                Self(<$atomic>::new(v))
            }
            pub(crate) fn get(&self) -> $t {
                self.0.load(Ordering::Relaxed)
            }
            pub(crate) fn set(&self, v: $t) {
                self.0.store(v, Ordering::Relaxed)
            }
            /// A load and a store, not a swap (a locked instruction): see
            /// the module's ground rules.
            #[allow(dead_code)] // not every instantiation swaps
            pub(crate) fn replace(&self, v: $t) -> $t {
                let old = self.0.load(Ordering::Relaxed);
                self.0.store(v, Ordering::Relaxed);
                old
            }
        }
    };
}

atomic_cell!(
    /// A `Cell<bool>` that is `Sync`.
    BoolCell, AtomicBool, bool
);
atomic_cell!(
    /// A `Cell<u8>` that is `Sync`.
    U8Cell, AtomicU8, u8
);
atomic_cell!(
    /// A `Cell<i32>` that is `Sync`.
    I32Cell, AtomicI32, i32
);
atomic_cell!(
    /// A `Cell<u64>` that is `Sync`.
    U64Cell, AtomicU64, u64
);
atomic_cell!(
    /// A `Cell<isize>` that is `Sync`.
    IsizeCell, AtomicIsize, isize
);

/// A `RefCell` that is `Sync`: a lock that reports contention instead of
/// waiting for it.
///
/// Not a `std::sync::Mutex`: nobody ever waits on a `Guarded` value (see the
/// module docs), so there are no waiters to wake and the futex protocol is
/// pure cost. Taking the lock is a load and a store, releasing it a release
/// store, where `Mutex` paid two locked instructions (a compare-and-swap and
/// a swap, about 20 cycles each on x86). Timer arm + cancel takes two of
/// these locks per call and an asyncio task step several (issues 18, 19).
pub(crate) struct Guarded<T> {
    /// True while a [`GuardedRef`] exists.
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through a `GuardedRef`, and at most one
// exists at a time: `held` is set by an acquire that found it clear and
// cleared by a release store when the guard drops, and every acquire runs
// with the GIL held (module ground rules; debug builds assert it), so no
// two acquires interleave between their load and store. So `Guarded` hands
// out exclusive access like a `Mutex` does, and needs what `Mutex` needs.
unsafe impl<T: Send> Sync for Guarded<T> {}

/// The guard of a [`Guarded`] value: exclusive access until dropped.
pub(crate) struct GuardedRef<'a, T> {
    lock: &'a Guarded<T>,
}

impl<T> std::ops::Deref for GuardedRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `Guarded`'s `Sync`).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> std::ops::DerefMut for GuardedRef<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the only one, borrowed mutably here.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for GuardedRef<'_, T> {
    fn drop(&mut self) {
        debug_assert!(self.lock.held.load(Ordering::Relaxed));
        // Release: the writes made through this guard happen before the
        // next holder's acquire.
        self.lock.held.store(false, Ordering::Release);
    }
}

/// Whether this thread holds the GIL (true before Python is initialized:
/// the Rust unit tests have no interpreter and no other thread).
fn gil_held() -> bool {
    // SAFETY: both only read the runtime's state; `PyGILState_Check` is
    // only asked once the interpreter exists.
    unsafe { pyo3::ffi::Py_IsInitialized() == 0 || pyo3::ffi::PyGILState_Check() == 1 }
}

/// Contention on a [`Guarded`] value (see the module docs).
#[derive(Debug)]
pub(crate) struct Busy;

impl<T> Guarded<T> {
    pub(crate) const fn new(v: T) -> Self {
        Guarded {
            held: AtomicBool::new(false),
            value: UnsafeCell::new(v),
        }
    }

    /// The value, or [`Busy`] if someone holds it. A panic while held
    /// releases the lock as the guard unwinds (as a recovered poisoned
    /// `Mutex` did): the values are plain data, left consistent by every
    /// holder before any call that can panic.
    #[inline]
    pub(crate) fn try_borrow(&self) -> Result<GuardedRef<'_, T>, Busy> {
        debug_assert!(gil_held(), "a Guarded lock taken without the GIL");
        // A load and a store, not a compare-and-swap: the GIL (held, see
        // above) keeps any other acquire from running between the two.
        if self.held.load(Ordering::Acquire) {
            return Err(Busy);
        }
        self.held.store(true, Ordering::Relaxed);
        Ok(GuardedRef { lock: self })
    }

    /// Like `RefCell::borrow_mut`: panics (a `PanicException` in Python, not
    /// an abort) on contention, which the ground rules make a bug.
    pub(crate) fn borrow_mut(&self) -> GuardedRef<'_, T> {
        match self.try_borrow() {
            Ok(g) => g,
            Err(Busy) => panic!("greenwheel loop state re-entered while in use"),
        }
    }

    /// Same as [`Guarded::borrow_mut`] (reads and writes share one lock).
    pub(crate) fn borrow(&self) -> GuardedRef<'_, T> {
        self.borrow_mut()
    }

    /// [`Guarded::try_borrow`] for writing.
    pub(crate) fn try_borrow_mut(&self) -> Result<GuardedRef<'_, T>, Busy> {
        self.try_borrow()
    }

    /// The value, taking the lock apart (we own it).
    pub(crate) fn into_inner(self) -> T {
        self.value.into_inner()
    }

    /// Exclusive access without locking (we hold `&mut`).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// Replaces the value, returning the old one (drop it after the call).
    pub(crate) fn replace(&self, v: T) -> T {
        std::mem::replace(&mut *self.borrow_mut(), v)
    }
}

/// An `Option<TimerHandle>` in one atomic word (`u64::MAX` is None): the
/// timer start/stop path reads and writes it several times per call.
pub(crate) struct HandleCell(AtomicU64);

impl HandleCell {
    const NONE: u64 = u64::MAX;

    pub(crate) const fn new(v: Option<TimerHandle>) -> Self {
        match v {
            Some(h) => HandleCell(AtomicU64::new(h.to_bits())),
            None => HandleCell(AtomicU64::new(Self::NONE)),
        }
    }

    fn decode(bits: u64) -> Option<TimerHandle> {
        (bits != Self::NONE).then(|| TimerHandle::from_bits(bits))
    }

    pub(crate) fn get(&self) -> Option<TimerHandle> {
        Self::decode(self.0.load(Ordering::Relaxed))
    }

    pub(crate) fn set(&self, v: Option<TimerHandle>) {
        self.0.store(
            v.map_or(Self::NONE, TimerHandle::to_bits),
            Ordering::Relaxed,
        );
    }

    /// The handle, leaving None behind.
    ///
    /// A load, and a store only when there was a handle, rather than a swap:
    /// an atomic swap is a locked instruction on x86 (about 20 cycles), and
    /// timer arm + cancel took two per pair (issue 19). The GIL orders every
    /// access to the cell (see the module docs), so nothing slips in between.
    pub(crate) fn take(&self) -> Option<TimerHandle> {
        let bits = self.0.load(Ordering::Relaxed);
        if bits != Self::NONE {
            self.0.store(Self::NONE, Ordering::Relaxed);
        }
        Self::decode(bits)
    }
}
