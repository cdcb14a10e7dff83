//! Thread-safe stand-ins for `Cell`/`RefCell`, so the binding's classes are
//! `Sync` and may be touched, collected and dropped on any thread.
//!
//! Why not `#[pyclass(unsendable)]`: Python's garbage collector runs on
//! whichever thread happens to allocate, so a reference cycle through a loop
//! or watcher of thread A may be traversed, cleared or freed on thread B.
//! PyO3 turns that into a panic (or a leak) for unsendable classes.
//!
//! Ground rules:
//! - All access except `try_*` happens with the GIL held, on the loop's own
//!   thread (public entry points check it; see `Shared::check_owner`), so the
//!   locks are uncontended: they exist for soundness, not for coordination.
//! - Atomics use `Relaxed`: the GIL already orders every access that matters.
//! - [`Guarded::borrow_mut`] never blocks: contention can only mean re-entry
//!   (a bug: a lock held across a call into Python) or misuse from another
//!   thread; both raise instead of hanging.
//! - GC hooks (`__traverse__`, `__clear__`) use [`Guarded::try_borrow`] and
//!   skip what is busy.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicIsize, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

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
            #[allow(dead_code)] // not every instantiation swaps
            pub(crate) fn replace(&self, v: $t) -> $t {
                self.0.swap(v, Ordering::Relaxed)
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

/// A `RefCell` that is `Sync`: a mutex that reports contention instead of
/// waiting for it.
pub(crate) struct Guarded<T>(Mutex<T>);

/// The guard of a [`Guarded`] value.
pub(crate) type GuardedRef<'a, T> = MutexGuard<'a, T>;

/// Contention on a [`Guarded`] value (see the module docs).
#[derive(Debug)]
pub(crate) struct Busy;

impl<T> Guarded<T> {
    pub(crate) const fn new(v: T) -> Self {
        Guarded(Mutex::new(v))
    }

    /// The value, or [`Busy`] if someone holds it. A poisoned lock (a panic
    /// while held) is recovered: the values are plain data, left consistent
    /// by every holder before any call that can panic.
    pub(crate) fn try_borrow(&self) -> Result<GuardedRef<'_, T>, Busy> {
        match self.0.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(Busy),
        }
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

    /// Exclusive access without locking (we hold `&mut`).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the value, returning the old one (drop it after the call).
    pub(crate) fn replace(&self, v: T) -> T {
        std::mem::replace(&mut *self.borrow_mut(), v)
    }
}

impl<T: Default> Guarded<T> {
    pub(crate) fn take(&self) -> T {
        std::mem::take(&mut *self.borrow_mut())
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

    pub(crate) fn take(&self) -> Option<TimerHandle> {
        Self::decode(self.0.swap(Self::NONE, Ordering::Relaxed))
    }
}
