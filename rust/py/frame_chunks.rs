//! A bounded free list for CPython's frame-stack chunks.
//!
//! Since CPython 3.11 a thread's Python frames live in "data stack chunks"
//! of 16 KiB, obtained from the *arena allocator* (`mmap`/`munmap` by
//! default). greenlet gives every greenlet a chunk list of its own and
//! returns the chunk through the same allocator when the greenlet finishes.
//! So every short-lived greenlet costs an `mmap`, a page fault on first
//! touch and a `munmap`: about a third of the time of spawning and joining
//! trivial greenlets. Keeping a few freed chunks and handing them to the
//! next greenlet removes all three.
//!
//! The hook is CPython's public `PyObject_SetArenaAllocator`: our allocator
//! wraps the one installed before it and passes every request through
//! except 16 KiB ones, which are served from and returned to the free list.
//! pymalloc's own arenas (1 MiB) are never cached.
//!
//! Ground rules and invariants:
//! - Every block in the list came from an arena-allocator `alloc` of exactly
//!   [`CHUNK_BYTES`] (ours or the one before), so handing it out again for
//!   that size, or giving it back to the wrapped allocator with that size,
//!   is what the wrapped allocator would have done.
//! - The list is bounded ([`CAPACITY`]); beyond it blocks go straight back
//!   to the wrapped allocator, so idle memory held here is at most
//!   `CAPACITY * CHUNK_BYTES`.
//! - The functions never block and never panic (they are called from C,
//!   sometimes without the GIL, e.g. from `PyThreadState_Delete`): if the
//!   lock is busy, or was left held by a thread that vanished in `fork()`,
//!   the request simply bypasses the list.
//! - Installed at most once per process; `GREENWHEEL_FRAME_CACHE=0` in the
//!   environment leaves CPython's allocator untouched.

use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

use pyo3::ffi;
use pyo3::prelude::*;

/// CPython's `DATA_STACK_CHUNK_SIZE` (3.11 to 3.14). Larger chunks (one
/// frame bigger than this) are rare and pass through uncached.
const CHUNK_BYTES: usize = 16 * 1024;

/// Freed chunks kept for reuse: 4 MiB of address space at most.
const CAPACITY: usize = 256;

struct Slots {
    len: usize,
    blocks: [usize; CAPACITY],
}

struct ChunkCache {
    /// The arena allocator that was installed before ours.
    base: ffi::PyObjectArenaAllocator,
    slots: Mutex<Slots>,
}

// SAFETY: `base.ctx` is the wrapped allocator's opaque context, which that
// allocator already lets any thread use; everything else is behind the mutex.
unsafe impl Send for ChunkCache {}
// SAFETY: as above.
unsafe impl Sync for ChunkCache {}

static CACHE: OnceLock<ChunkCache> = OnceLock::new();

impl ChunkCache {
    fn base_alloc(&self, size: usize) -> *mut c_void {
        match self.base.alloc {
            Some(alloc) => alloc(self.base.ctx, size),
            None => std::ptr::null_mut(),
        }
    }

    fn base_free(&self, ptr: *mut c_void, size: usize) {
        if let Some(free) = self.base.free {
            free(self.base.ctx, ptr, size);
        }
    }

    fn pop(&self) -> Option<*mut c_void> {
        let mut slots = self.slots.try_lock().ok()?;
        debug_assert!(slots.len <= CAPACITY);
        let len = slots.len.checked_sub(1)?;
        let block = *slots.blocks.get(len)?;
        slots.len = len;
        Some(block as *mut c_void)
    }

    /// Keeps `ptr` if there is room; false means the caller must free it.
    fn push(&self, ptr: *mut c_void) -> bool {
        let Ok(mut slots) = self.slots.try_lock() else {
            return false;
        };
        let len = slots.len;
        match slots.blocks.get_mut(len) {
            Some(slot) => {
                *slot = ptr as usize;
                slots.len = len + 1;
                true
            }
            None => false,
        }
    }
}

/// The `ctx` we install is a pointer to the `CACHE` value.
fn cache_from(ctx: *mut c_void) -> &'static ChunkCache {
    // SAFETY: `install` registers these functions with `ctx` pointing at the
    // value inside `CACHE`, which is initialised first and never dropped.
    unsafe { &*(ctx as *const ChunkCache) }
}

extern "C" fn cached_alloc(ctx: *mut c_void, size: usize) -> *mut c_void {
    let cache = cache_from(ctx);
    if size == CHUNK_BYTES {
        if let Some(block) = cache.pop() {
            return block;
        }
    }
    cache.base_alloc(size)
}

extern "C" fn cached_free(ctx: *mut c_void, ptr: *mut c_void, size: usize) {
    let cache = cache_from(ctx);
    if ptr.is_null() || size != CHUNK_BYTES || !cache.push(ptr) {
        cache.base_free(ptr, size);
    }
}

/// Installs the cache in front of CPython's arena allocator, once.
pub(crate) fn install(_py: Python<'_>) {
    if std::env::var_os("GREENWHEEL_FRAME_CACHE").is_some_and(|v| v == "0") {
        return;
    }
    if CACHE.get().is_some() {
        return;
    }
    let mut base = ffi::PyObjectArenaAllocator::default();
    // SAFETY: `base` is a valid struct for CPython to fill; we hold the GIL.
    unsafe { ffi::PyObject_GetArenaAllocator(&mut base) };
    if base.alloc.is_none() || base.free.is_none() {
        return;
    }
    let cache = CACHE.get_or_init(|| ChunkCache {
        base,
        slots: Mutex::new(Slots {
            len: 0,
            blocks: [0; CAPACITY],
        }),
    });
    let mut ours = ffi::PyObjectArenaAllocator {
        ctx: cache as *const ChunkCache as *mut c_void,
        alloc: Some(cached_alloc),
        free: Some(cached_free),
    };
    // SAFETY: the struct is valid and its functions stay valid for the life
    // of the process (this extension is never unloaded); CPython copies it.
    // Memory the previous allocator handed out may come back through ours:
    // it is cached or passed on to that allocator with its size, unchanged.
    unsafe { ffi::PyObject_SetArenaAllocator(&mut ours) };
}

/// _frame_cache_info()
/// --
///
/// `(installed, cached, capacity)` of the frame-chunk free list (for tests
/// and diagnostics; not part of the public API).
#[pyfunction]
pub(crate) fn _frame_cache_info() -> (bool, usize, usize) {
    match CACHE.get() {
        Some(cache) => {
            // try_lock: a lock left held across fork() must not hang this.
            let cached = cache.slots.try_lock().map(|s| s.len).unwrap_or(0);
            (true, cached, CAPACITY)
        }
        None => (false, 0, CAPACITY),
    }
}
