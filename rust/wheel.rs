//! Hierarchical hashed timing wheel: the timer core of greenwheel's event loop.
//!
//! Pure Rust, no I/O, no clock, no `unsafe`. The binding layer owns the clock
//! and calls [`TimerWheel::next_deadline`] to size its poll timeout and
//! [`TimerWheel::expire`] after every wake-up.
//!
//! # Ground rules
//!
//! * **Time** is a caller-supplied `u64` count of nanoseconds on one monotonic
//!   clock. The wheel never reads a clock. Every `u64` is a valid deadline,
//!   `u64::MAX` included (it means "effectively never"); no input panics and no
//!   arithmetic overflows.
//! * A **tick** is `tick_ns` nanoseconds ([`DEFAULT_TICK_NS`] = 1 ms unless
//!   [`TimerWheel::with_tick`] says otherwise). Deadline `d` lies in tick
//!   `d / tick_ns`. Ticks only decide *where* an entry is stored; the full
//!   nanosecond deadline is kept, and it alone decides *when* the entry is due.
//! * The **cursor** `elapsed` is the tick of the largest `now` seen so far
//!   (construction or [`TimerWheel::expire`]). It never moves backwards: a
//!   `now` that goes back is treated as no advance (but entries are still only
//!   returned if `deadline <= now` for the `now` actually passed).
//! * **Never early**: `expire(now)` returns exactly the entries with
//!   `deadline <= now`, all of them, and nothing else.
//! * **Ordering**: each batch returned by `expire` is sorted by
//!   `(deadline, arming sequence)`. The sequence is a global `u64` counter
//!   bumped by every [`TimerWheel::arm`] and [`TimerWheel::rearm`], so equal
//!   deadlines fire in the order they were (re)armed. Only the due batch is
//!   sorted; the wheel itself keeps no order, so arming stays O(1).
//!
//! # Layout
//!
//! Ticks are read as base-64 numbers. There are `LEVELS` = 6 levels of
//! `SLOTS` = 64 slots; a slot on level `L` spans `64^L` ticks and level `L`
//! as a whole spans `64^(L+1)` ticks, so the six levels together reach
//! `2^36` ticks past the cursor (about 795 days at 1 ms, 68.7 s at 1 ns).
//!
//! An entry whose tick is `t` (`t` is clamped up to the cursor when the
//! deadline is already past) is placed on the level of the most significant
//! base-64 digit in which `t` and the cursor differ, in the slot named by `t`'s
//! digit there; if they differ at or above bit 36 it goes on the **overflow
//! list** instead. So level 0 holds the entries of the cursor's current run of
//! 64 ticks, one tick per slot, and entries already due sit in the cursor's own
//! level-0 slot.
//!
//! Storage is a slab (`Vec` of entries plus a free list threaded through the
//! unused ones, so memory is reused rather than grown) addressed by `u32`
//! indices. [`TimerHandle`] is `(index, generation)`; the generation of a slab
//! entry is bumped whenever the entry is freed, so stale handles are detected.
//! A slot whose generation would wrap is retired instead of reused. Each slot
//! (and the overflow list) is an intrusive doubly linked list through `prev` /
//! `next` indices stored in the entries, which gives O(1) unlink. Each level has
//! a 64-bit occupancy bitmap, so the earliest occupied slot of a level is one
//! `trailing_zeros`.
//!
//! # Invariants
//!
//! With `E` the cursor and `digit(t, L) = (t >> 6L) & 63`:
//!
//! 1. Every live entry is on exactly one list (a slot or the overflow list);
//!    every other slab entry is on the free list or retired. `len` counts the
//!    live entries.
//! 2. An entry on slot `s` of level `L` has a tick `t` (clamped to `>= E`)
//!    with the same digits as `E` above level `L`, and `digit(t, L) == s`.
//!    Hence a non-empty level-`L` slot has `s > digit(E, L)` for `L >= 1` and
//!    `s >= digit(E, 0)` for level 0, and the earliest pending slot is the
//!    lowest occupied slot of the lowest non-empty level.
//! 3. Bit `s` of `occupied[L]` is set iff slot `s` of level `L` is non-empty.
//! 4. `level0_min[s]` is a lower bound of the deadlines in level-0 slot `s`
//!    (`u64::MAX` when empty). It is exact except after a cancel or rearm took
//!    the minimum out of a slot holding more than `RESCAN_LIMIT` (16) entries; the
//!    bound is then at most one tick early and is made exact again by the next
//!    `expire` that reaches the slot.
//! 5. `overflow_min` is a lower bound of the deadlines on the overflow list
//!    (`u64::MAX` when empty), and its tick is `> E`.
//! 6. When `cur_sorted` is set, the cursor's own level-0 slot is sorted by
//!    `(deadline, seq)` from its head and `cur_tail` is its last entry (or
//!    `NIL`); its head deadline is then the exact minimum.
//!
//! # Advancing and cascading
//!
//! `expire(now)` moves the cursor towards `target = max(now / tick_ns, E)` by
//! *events* rather than ticks. The next event is the start tick of the lowest
//! occupied slot of the lowest non-empty level, or the tick of `overflow_min`
//! if that is not later (ties go to the overflow list). While the next event is
//! `<= target`, the cursor jumps to it (no occupied slot lies in between, so
//! every invariant survives the jump) and the event is processed:
//!
//! * a slot on level `L >= 1` is emptied and its entries re-placed relative to
//!   the new cursor; they land on lower levels (**cascading**), so an entry
//!   cascades at most 5 times per placement (6 from the overflow list);
//! * the overflow list is emptied and re-placed: entries now within 2^36 ticks
//!   move onto the levels, the rest go back with an exact `overflow_min`;
//! * a level-0 slot before `target` is due in full;
//! * the level-0 slot of `target` itself is due only up to `now`: it is sorted
//!   once (and stays sorted while the cursor stays on that tick, see
//!   invariant 6; an arm landing in its middle undoes that and costs another
//!   sort at the next partial expiry) and popped from the head while
//!   `deadline <= now`.
//!
//! Then the cursor is set to `target`. Empty ticks are never visited, so a jump
//! of days costs what the occupied slots on the way cost, not millions of ticks.
//!
//! # Complexity
//!
//! * `arm`, `cancel`, `rearm`, `contains`, `get`: O(1) (a cancel that removes a
//!   level-0 slot's minimum rescans at most `RESCAN_LIMIT` (16) entries).
//! * `next_deadline`: O(levels), bitmap lookups only.
//! * `expire`: O(events + cascaded entries + k log k) for `k` due entries,
//!   plus a one-off O(m log m) sort of the current tick's `m` entries when that
//!   tick is only partly due (repeated partial expiries within one tick then
//!   cost O(due)). The overflow list is re-examined in full when the cursor
//!   reaches the tick of its lower bound; all of that 2^36-tick epoch's
//!   entries then move onto the levels at once, so there is one such O(overflow)
//!   pass per epoch that holds overflow entries (plus one per bound left stale
//!   by a cancel). With 1 ms ticks an epoch is ~795 days.
//!
//! `next_deadline()` is never later than the earliest pending deadline. It is
//! that exact deadline when the earliest entry sits on level 0 (see invariant 4
//! for the one exception); when it sits higher up it is the start of its slot,
//! and the `expire` at that time cascades it down. Calling `expire` at
//! `next_deadline()` therefore fires each timer at its exact deadline, after at
//! most a few cascade wake-ups.

/// Default tick length: 1 ms in nanoseconds.
pub const DEFAULT_TICK_NS: u64 = 1_000_000;

/// log2 of `SLOTS`: each level consumes one base-64 digit of the tick.
const LEVEL_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << LEVEL_BITS;
/// Mask selecting one base-64 digit.
const SLOT_MASK: u64 = (SLOTS as u64) - 1;
/// Number of wheel levels; ticks farther than `2^(LEVELS * LEVEL_BITS)` from
/// the cursor go on the overflow list.
const LEVELS: usize = 6;
/// Number of intrusive lists: one per slot, plus the overflow list.
const NUM_LISTS: usize = LEVELS * SLOTS + 1;
/// List id of the overflow list (slot lists are `level * SLOTS + slot`).
const OVERFLOW: u16 = (LEVELS * SLOTS) as u16;
/// List id of an entry that is on no list (free, or in an expiring batch).
const UNLINKED: u16 = u16::MAX;
/// Null link. Also caps the slab at `u32::MAX` entries.
const NIL: u32 = u32::MAX;
/// How many entries `cancel`/`rearm` may walk to restore an exact level-0
/// slot minimum (keeps them O(1); see invariant 4).
const RESCAN_LIMIT: usize = 16;

/// Identifies an armed timer. Stale once the timer fired, was cancelled or the
/// wheel was cleared; a stale handle is never confused with a later timer that
/// reuses its storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    index: u32,
    generation: u32,
}

impl TimerHandle {
    /// The handle as one integer (for atomic storage). Never `u64::MAX`:
    /// index `u32::MAX` is the list terminator, never a slab slot.
    pub const fn to_bits(self) -> u64 {
        ((self.index as u64) << 32) | self.generation as u64
    }

    /// The inverse of [`TimerHandle::to_bits`]. Any value is accepted: a
    /// handle that does not match a live timer is simply stale (every
    /// wheel operation checks the generation).
    pub fn from_bits(bits: u64) -> Self {
        TimerHandle {
            index: (bits >> 32) as u32,
            generation: bits as u32,
        }
    }
}

struct Entry<T> {
    /// `Some` iff the entry is live.
    value: Option<T>,
    deadline: u64,
    /// Arming sequence (tie-breaker).
    seq: u64,
    generation: u32,
    prev: u32,
    /// Next on the entry's list, or next free entry when free.
    next: u32,
    /// Which list the entry is on, or `UNLINKED`.
    list: u16,
}

/// A hierarchical hashed timing wheel holding payloads of type `T`.
/// See the module documentation for the design.
pub struct TimerWheel<T> {
    entries: Vec<Entry<T>>,
    free_head: u32,
    len: usize,
    tick_ns: u64,
    /// The cursor: current tick.
    elapsed: u64,
    next_seq: u64,
    heads: [u32; NUM_LISTS],
    occupied: [u64; LEVELS],
    level0_min: [u64; SLOTS],
    overflow_min: u64,
    cur_sorted: bool,
    cur_tail: u32,
    /// Due entries `(deadline, seq, index)` gathered by `expire`.
    batch: Vec<(u64, u64, u32)>,
    /// Scratch for sorting the current slot.
    sort_buf: Vec<(u64, u64, u32)>,
}

#[inline]
fn digit(tick: u64, level: usize) -> usize {
    ((tick >> (level as u32 * LEVEL_BITS)) & SLOT_MASK) as usize
}

#[inline]
fn list_id(level: usize, slot: usize) -> u16 {
    (level * SLOTS + slot) as u16
}

impl<T> TimerWheel<T> {
    /// A wheel whose cursor starts at `now_ns`, with [`DEFAULT_TICK_NS`] ticks.
    pub fn new(now_ns: u64) -> Self {
        Self::with_tick(now_ns, DEFAULT_TICK_NS)
    }

    /// A wheel whose cursor starts at `now_ns`, with ticks of `tick_ns`
    /// nanoseconds (0 is taken as 1).
    pub fn with_tick(now_ns: u64, tick_ns: u64) -> Self {
        let tick_ns = tick_ns.max(1);
        TimerWheel {
            entries: Vec::new(),
            free_head: NIL,
            len: 0,
            tick_ns,
            elapsed: now_ns / tick_ns,
            next_seq: 0,
            heads: [NIL; NUM_LISTS],
            occupied: [0; LEVELS],
            level0_min: [u64::MAX; SLOTS],
            overflow_min: u64::MAX,
            cur_sorted: false,
            cur_tail: NIL,
            batch: Vec::new(),
            sort_buf: Vec::new(),
        }
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arms a timer for `deadline_ns`. A deadline at or before the current time
    /// is due at the next [`expire`](Self::expire). O(1).
    ///
    /// # Panics
    ///
    /// Only if `u32::MAX - 1` timers are pending at once (slab index space).
    pub fn arm(&mut self, deadline_ns: u64, value: T) -> TimerHandle {
        let seq = self.bump_seq();
        let index = match self.free_head {
            NIL => {
                let index = u32::try_from(self.entries.len())
                    .ok()
                    .filter(|&i| i != NIL)
                    .unwrap_or_else(|| panic!("TimerWheel: slab index space exhausted"));
                self.entries.push(Entry {
                    value: Some(value),
                    deadline: deadline_ns,
                    seq,
                    generation: 0,
                    prev: NIL,
                    next: NIL,
                    list: UNLINKED,
                });
                index
            }
            index => {
                let e = &mut self.entries[index as usize];
                debug_assert!(e.value.is_none() && e.list == UNLINKED);
                self.free_head = e.next;
                e.value = Some(value);
                e.deadline = deadline_ns;
                e.seq = seq;
                e.prev = NIL;
                e.next = NIL;
                index
            }
        };
        self.len += 1;
        self.place(index);
        TimerHandle {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Cancels a pending timer and returns its payload; `None` for a stale or
    /// unknown handle. O(1).
    pub fn cancel(&mut self, h: TimerHandle) -> Option<T> {
        let index = self.live(h)?;
        self.unlink(index);
        self.release(index)
    }

    /// Moves a pending timer to `deadline_ns`, keeping its payload. For tie
    /// ordering this counts as a fresh arm. Returns false for a stale handle.
    /// O(1).
    pub fn rearm(&mut self, h: TimerHandle, deadline_ns: u64) -> bool {
        let Some(index) = self.live(h) else {
            return false;
        };
        self.unlink(index);
        let seq = self.bump_seq();
        let e = &mut self.entries[index as usize];
        e.deadline = deadline_ns;
        e.seq = seq;
        self.place(index);
        true
    }

    /// True while `h` is pending.
    pub fn contains(&self, h: TimerHandle) -> bool {
        self.live(h).is_some()
    }

    /// The deadline of a pending timer.
    pub fn deadline(&self, h: TimerHandle) -> Option<u64> {
        self.live(h).map(|i| self.entries[i as usize].deadline)
    }

    /// The payload of a pending timer.
    pub fn get(&self, h: TimerHandle) -> Option<&T> {
        let i = self.live(h)?;
        self.entries[i as usize].value.as_ref()
    }

    /// The payload of a pending timer, mutably.
    pub fn get_mut(&mut self, h: TimerHandle) -> Option<&mut T> {
        let i = self.live(h)?;
        self.entries[i as usize].value.as_mut()
    }

    /// When [`expire`](Self::expire) should next be called, in nanoseconds;
    /// `None` when empty. Never later than the earliest pending deadline; equal
    /// to it when that entry sits on level 0 (module docs, invariant 4), else
    /// the start of its slot. May be in the past (call `expire` right away).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let mut best = None;
        for level in 0..LEVELS {
            let bits = self.occupied[level];
            if bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                best = Some(if level == 0 {
                    self.level0_min[slot]
                } else {
                    self.slot_start(level, slot).saturating_mul(self.tick_ns)
                });
                break;
            }
        }
        if self.heads[OVERFLOW as usize] != NIL {
            best = Some(best.map_or(self.overflow_min, |b: u64| b.min(self.overflow_min)));
        }
        debug_assert!(best.is_some(), "len > 0 but no list is occupied");
        best
    }

    /// Removes every timer with `deadline <= now_ns` and appends them to `out`
    /// sorted by `(deadline, arming sequence)`. Advances the cursor to
    /// `now_ns`, cascading higher levels on the way; a `now_ns` earlier than a
    /// previous one does not move the cursor.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<(TimerHandle, T)>) {
        let target = (now_ns / self.tick_ns).max(self.elapsed);
        debug_assert!(self.batch.is_empty());
        while let Some((list, start)) = self.next_event() {
            if start > target {
                break;
            }
            self.move_cursor(start);
            if list == OVERFLOW {
                self.cascade(OVERFLOW);
                continue;
            }
            let level = usize::from(list) / SLOTS;
            if level > 0 {
                self.cascade(list);
            } else if start < target {
                self.drain_slot(usize::from(list), now_ns);
            } else {
                self.drain_current(usize::from(list), now_ns);
                // Every other event starts after `target` (invariant 2; the
                // overflow list wins ties and was handled before).
                debug_assert!(match self.next_event() {
                    Some((l, s)) => s > target || l == list,
                    None => true,
                });
                break;
            }
        }
        self.move_cursor(target);
        self.emit(out);
    }

    /// Drops every pending timer. Their handles become stale; the slab's
    /// memory is kept for reuse.
    pub fn clear(&mut self) {
        self.heads = [NIL; NUM_LISTS];
        self.occupied = [0; LEVELS];
        self.level0_min = [u64::MAX; SLOTS];
        self.overflow_min = u64::MAX;
        self.cur_sorted = false;
        self.cur_tail = NIL;
        for index in 0..self.entries.len() {
            let e = &mut self.entries[index];
            if e.value.is_some() {
                e.list = UNLINKED;
                e.prev = NIL;
                e.next = NIL;
                // `index < entries.len() <= NIL`, so the cast is lossless.
                drop(self.release(index as u32));
            }
        }
        debug_assert_eq!(self.len, 0);
    }

    /// Every pending payload, in no particular order (for GC traversal).
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }

    // ----- internals -------------------------------------------------------

    fn bump_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq
    }

    /// Slab index of a live handle.
    fn live(&self, h: TimerHandle) -> Option<u32> {
        let e = self.entries.get(h.index as usize)?;
        (e.generation == h.generation && e.value.is_some()).then_some(h.index)
    }

    /// Frees an unlinked live entry: takes its payload, bumps its generation
    /// and puts it on the free list (or retires it if the generation is spent).
    fn release(&mut self, index: u32) -> Option<T> {
        let e = &mut self.entries[index as usize];
        debug_assert_eq!(e.list, UNLINKED);
        let value = e.value.take();
        debug_assert!(value.is_some());
        self.len -= 1;
        if let Some(generation) = e.generation.checked_add(1) {
            e.generation = generation;
            e.next = self.free_head;
            self.free_head = index;
        }
        value
    }

    /// First tick covered by `slot` on `level`, relative to the cursor.
    fn slot_start(&self, level: usize, slot: usize) -> u64 {
        let shift = level as u32 * LEVEL_BITS;
        let span_mask = (1u64 << (shift + LEVEL_BITS)) - 1;
        (self.elapsed & !span_mask) | ((slot as u64) << shift)
    }

    /// The list an entry with `deadline` belongs on, relative to the cursor.
    fn list_for(&self, deadline: u64) -> u16 {
        let tick = (deadline / self.tick_ns).max(self.elapsed);
        let diff = tick ^ self.elapsed;
        if diff <= SLOT_MASK {
            return list_id(0, digit(tick, 0));
        }
        let level = ((63 - diff.leading_zeros()) / LEVEL_BITS) as usize;
        if level >= LEVELS {
            OVERFLOW
        } else {
            list_id(level, digit(tick, level))
        }
    }

    /// The next event: `(list, start tick)`.
    fn next_event(&self) -> Option<(u16, u64)> {
        let mut best = None;
        for level in 0..LEVELS {
            let bits = self.occupied[level];
            if bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                debug_assert!(if level == 0 {
                    slot >= digit(self.elapsed, 0)
                } else {
                    slot > digit(self.elapsed, level)
                });
                best = Some((list_id(level, slot), self.slot_start(level, slot)));
                break;
            }
        }
        if self.heads[OVERFLOW as usize] != NIL {
            let tick = self.overflow_min / self.tick_ns;
            debug_assert!(tick > self.elapsed);
            match best {
                Some((_, start)) if start < tick => {}
                _ => best = Some((OVERFLOW, tick)),
            }
        }
        best
    }

    fn move_cursor(&mut self, tick: u64) {
        debug_assert!(tick >= self.elapsed);
        if tick != self.elapsed {
            self.elapsed = tick;
            self.cur_sorted = false;
            self.cur_tail = NIL;
        }
    }

    /// Links an unlinked live entry onto the list its deadline calls for.
    fn place(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let list = self.list_for(deadline);
        if list == OVERFLOW {
            self.overflow_min = self.overflow_min.min(deadline);
            self.push_front(OVERFLOW, index);
            return;
        }
        let (level, slot) = (usize::from(list) / SLOTS, usize::from(list) % SLOTS);
        self.occupied[level] |= 1 << slot;
        if level != 0 {
            self.push_front(list, index);
            return;
        }
        self.level0_min[slot] = self.level0_min[slot].min(deadline);
        if !(self.cur_sorted && slot == digit(self.elapsed, 0)) {
            self.push_front(list, index);
            return;
        }
        // Keep the current slot sorted when the entry goes at either end.
        let head = self.heads[slot];
        if head == NIL || deadline < self.entries[head as usize].deadline {
            if head == NIL {
                self.cur_tail = index;
            }
            self.push_front(list, index);
        } else if deadline >= self.entries[self.cur_tail as usize].deadline {
            // Its seq is the newest, so it also goes last among equal deadlines.
            let tail = self.cur_tail;
            let e = &mut self.entries[index as usize];
            e.list = list;
            e.prev = tail;
            e.next = NIL;
            self.entries[tail as usize].next = index;
            self.cur_tail = index;
        } else {
            self.cur_sorted = false;
            self.cur_tail = NIL;
            self.push_front(list, index);
        }
    }

    fn push_front(&mut self, list: u16, index: u32) {
        let head = self.heads[usize::from(list)];
        let e = &mut self.entries[index as usize];
        e.list = list;
        e.prev = NIL;
        e.next = head;
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.heads[usize::from(list)] = index;
    }

    /// Takes a live entry off its list, keeping bitmaps and minima valid.
    fn unlink(&mut self, index: u32) {
        let e = &mut self.entries[index as usize];
        let (list, prev, next, deadline) = (e.list, e.prev, e.next, e.deadline);
        debug_assert!(list != UNLINKED);
        e.list = UNLINKED;
        e.prev = NIL;
        e.next = NIL;
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[usize::from(list)] = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        let empty = self.heads[usize::from(list)] == NIL;
        if list == OVERFLOW {
            if empty {
                self.overflow_min = u64::MAX;
            }
            return;
        }
        let (level, slot) = (usize::from(list) / SLOTS, usize::from(list) % SLOTS);
        if empty {
            self.occupied[level] &= !(1 << slot);
        }
        if level != 0 {
            return;
        }
        let current = self.cur_sorted && slot == digit(self.elapsed, 0);
        if empty {
            self.level0_min[slot] = u64::MAX;
            if current {
                self.cur_tail = NIL;
            }
        } else if current {
            if self.cur_tail == index {
                self.cur_tail = prev;
            }
            self.level0_min[slot] = self.entries[self.heads[slot] as usize].deadline;
        } else if deadline <= self.level0_min[slot] {
            self.rescan_level0_min(slot);
        }
    }

    /// Recomputes a level-0 slot's exact minimum if it holds at most
    /// `RESCAN_LIMIT` entries; otherwise the old lower bound stays.
    fn rescan_level0_min(&mut self, slot: usize) {
        let mut min = u64::MAX;
        let mut index = self.heads[slot];
        for _ in 0..RESCAN_LIMIT {
            if index == NIL {
                self.level0_min[slot] = min;
                return;
            }
            let e = &self.entries[index as usize];
            min = min.min(e.deadline);
            index = e.next;
        }
        if index == NIL {
            self.level0_min[slot] = min;
        }
    }

    /// Detaches a whole list (a slot on level >= 1, or the overflow list) and
    /// re-places its entries relative to the cursor.
    fn cascade(&mut self, list: u16) {
        let mut index = std::mem::replace(&mut self.heads[usize::from(list)], NIL);
        if list == OVERFLOW {
            self.overflow_min = u64::MAX;
        } else {
            let (level, slot) = (usize::from(list) / SLOTS, usize::from(list) % SLOTS);
            debug_assert!(level > 0);
            self.occupied[level] &= !(1 << slot);
        }
        while index != NIL {
            let next = self.entries[index as usize].next;
            self.place(index);
            debug_assert!(list == OVERFLOW || self.entries[index as usize].list < list);
            index = next;
        }
    }

    /// Moves a whole level-0 slot (whose tick is before the target) to the batch.
    fn drain_slot(&mut self, slot: usize, now_ns: u64) {
        let mut index = std::mem::replace(&mut self.heads[slot], NIL);
        self.occupied[0] &= !(1 << slot);
        self.level0_min[slot] = u64::MAX;
        while index != NIL {
            let e = &mut self.entries[index as usize];
            debug_assert!(e.deadline <= now_ns, "would fire early");
            e.list = UNLINKED;
            self.batch.push((e.deadline, e.seq, index));
            index = e.next;
        }
    }

    /// Moves the due part (`deadline <= now_ns`) of the cursor's own slot to
    /// the batch, sorting the slot first unless it already is.
    fn drain_current(&mut self, slot: usize, now_ns: u64) {
        debug_assert_eq!(slot, digit(self.elapsed, 0));
        if self.level0_min[slot] > now_ns {
            return;
        }
        if !self.cur_sorted {
            self.sort_current(slot);
        }
        let mut index = self.heads[slot];
        while index != NIL {
            let e = &mut self.entries[index as usize];
            if e.deadline > now_ns {
                break;
            }
            e.list = UNLINKED;
            self.batch.push((e.deadline, e.seq, index));
            index = e.next;
        }
        self.heads[slot] = index;
        if index == NIL {
            self.occupied[0] &= !(1 << slot);
            self.level0_min[slot] = u64::MAX;
            self.cur_tail = NIL;
        } else {
            let e = &mut self.entries[index as usize];
            e.prev = NIL;
            self.level0_min[slot] = e.deadline;
        }
    }

    /// Sorts the cursor's own level-0 slot by `(deadline, seq)`.
    fn sort_current(&mut self, slot: usize) {
        let mut buf = std::mem::take(&mut self.sort_buf);
        buf.clear();
        let mut index = self.heads[slot];
        while index != NIL {
            let e = &self.entries[index as usize];
            buf.push((e.deadline, e.seq, index));
            index = e.next;
        }
        buf.sort_unstable();
        let mut prev = NIL;
        for &(_, _, index) in &buf {
            self.entries[index as usize].prev = prev;
            if prev == NIL {
                self.heads[slot] = index;
            } else {
                self.entries[prev as usize].next = index;
            }
            prev = index;
        }
        if prev != NIL {
            self.entries[prev as usize].next = NIL;
        }
        self.level0_min[slot] = buf.first().map_or(u64::MAX, |&(d, _, _)| d);
        self.cur_sorted = true;
        self.cur_tail = prev;
        self.sort_buf = buf;
    }

    /// Sorts the batch and hands its payloads out, freeing the entries.
    fn emit(&mut self, out: &mut Vec<(TimerHandle, T)>) {
        let mut batch = std::mem::take(&mut self.batch);
        batch.sort_unstable();
        out.reserve(batch.len());
        for &(_, _, index) in &batch {
            let generation = self.entries[index as usize].generation;
            if let Some(value) = self.release(index) {
                out.push((TimerHandle { index, generation }, value));
            }
        }
        batch.clear();
        self.batch = batch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    #[test]
    fn handle_bits_round_trip_and_stale_bits_are_harmless() {
        let mut w: TimerWheel<u32> = TimerWheel::new(0);
        let h = w.arm(5_000_000, 7);
        assert_ne!(h.to_bits(), u64::MAX);
        assert_eq!(TimerHandle::from_bits(h.to_bits()), h);
        assert_eq!(w.cancel(TimerHandle::from_bits(u64::MAX)), None);
        assert_eq!(w.cancel(TimerHandle::from_bits(h.to_bits() ^ 1)), None);
        assert_eq!(w.cancel(TimerHandle::from_bits(h.to_bits())), Some(7));
    }

    const MS: u64 = 1_000_000;

    /// Checks every structural invariant of the module docs. O(n).
    fn check<T>(w: &TimerWheel<T>) {
        assert!(w.tick_ns >= 1);
        assert!(w.batch.is_empty());
        let mut live = 0usize;
        let mut earliest = u64::MAX;
        for list in 0..NUM_LISTS {
            let (mut prev, mut index) = (NIL, w.heads[list]);
            let (mut count, mut min, mut sorted) = (0usize, u64::MAX, true);
            let mut last_key = None;
            while index != NIL {
                let e = &w.entries[index as usize];
                assert!(e.value.is_some(), "dead entry on list {list}");
                assert_eq!(usize::from(e.list), list);
                assert_eq!(e.prev, prev, "broken back link on list {list}");
                if list == usize::from(OVERFLOW) {
                    assert!(e.deadline >= w.overflow_min);
                    assert!(e.deadline / w.tick_ns > w.elapsed);
                } else {
                    assert_eq!(usize::from(w.list_for(e.deadline)), list);
                }
                let key = (e.deadline, e.seq);
                if last_key.is_some_and(|k| k > key) {
                    sorted = false;
                }
                last_key = Some(key);
                min = min.min(e.deadline);
                count += 1;
                prev = index;
                index = e.next;
            }
            live += count;
            earliest = earliest.min(min);
            if list == usize::from(OVERFLOW) {
                if count == 0 {
                    assert_eq!(w.overflow_min, u64::MAX);
                }
                continue;
            }
            let (level, slot) = (list / SLOTS, list % SLOTS);
            assert_eq!(w.occupied[level] >> slot & 1 == 1, count > 0);
            if count > 0 {
                if level == 0 {
                    assert!(slot >= digit(w.elapsed, 0));
                } else {
                    assert!(slot > digit(w.elapsed, level));
                }
            }
            if level == 0 {
                assert!(w.level0_min[slot] <= min);
                if count == 0 {
                    assert_eq!(w.level0_min[slot], u64::MAX);
                }
                if w.cur_sorted && slot == digit(w.elapsed, 0) {
                    assert!(sorted, "current slot not sorted");
                    assert_eq!(w.cur_tail, prev);
                    assert_eq!(w.level0_min[slot], min);
                }
            }
        }
        assert_eq!(live, w.len);
        let (mut free, mut index) = (0usize, w.free_head);
        while index != NIL {
            let e = &w.entries[index as usize];
            assert!(e.value.is_none() && e.list == UNLINKED);
            free += 1;
            index = e.next;
        }
        let retired = w
            .entries
            .iter()
            .filter(|e| e.value.is_none() && e.generation == u32::MAX)
            .count();
        assert_eq!(live + free + retired, w.entries.len());
        match w.next_deadline() {
            None => assert_eq!(w.len, 0),
            Some(nd) => assert!(nd <= earliest, "next_deadline {nd} > earliest {earliest}"),
        }
    }

    fn level_of<T>(w: &TimerWheel<T>, h: TimerHandle) -> usize {
        usize::from(w.entries[h.index as usize].list) / SLOTS
    }

    fn expire<T>(w: &mut TimerWheel<T>, now: u64) -> Vec<(TimerHandle, T)> {
        let mut out = Vec::new();
        w.expire(now, &mut out);
        check(w);
        out
    }

    fn values<T>(v: Vec<(TimerHandle, T)>) -> Vec<T> {
        v.into_iter().map(|(_, x)| x).collect()
    }

    /// Runs the wheel to empty the way the event loop does: expire at
    /// `next_deadline()` each time. Returns `(now, payload)` per fired timer
    /// and asserts that every timer fires exactly at its deadline.
    fn drive(w: &mut TimerWheel<u64>) -> Vec<(u64, u64)> {
        let mut fired = Vec::new();
        let budget = 8 * w.len() + 8;
        for _ in 0..budget {
            let Some(nd) = w.next_deadline() else {
                return fired;
            };
            for (h, v) in expire(w, nd) {
                assert!(!w.contains(h));
                fired.push((nd, v));
            }
        }
        panic!("drive did not finish within {budget} wake-ups");
    }

    #[test]
    fn constructors_and_tick_clamp() {
        let w: TimerWheel<()> = TimerWheel::new(5 * MS + 3);
        assert_eq!(w.tick_ns, DEFAULT_TICK_NS);
        assert_eq!(w.elapsed, 5);
        assert!(w.is_empty() && w.next_deadline().is_none());
        assert_eq!(w.len(), 0);
        let w: TimerWheel<()> = TimerWheel::with_tick(7, 0);
        assert_eq!((w.tick_ns, w.elapsed), (1, 7));
        let w: TimerWheel<()> = TimerWheel::with_tick(u64::MAX, u64::MAX);
        assert_eq!(w.elapsed, 1);
    }

    #[test]
    fn fires_in_deadline_order() {
        let mut w = TimerWheel::new(0);
        for (i, d) in [50u64, 3, 900_000, 7, 64, 4096 * MS, 1, 63 * MS, 65 * MS]
            .iter()
            .enumerate()
        {
            w.arm(*d * 1000, i);
        }
        check(&w);
        let got = values(expire(&mut w, u64::MAX / 2));
        assert_eq!(got, vec![6, 1, 3, 0, 4, 2, 7, 8, 5]);
        assert!(w.is_empty());
    }

    #[test]
    fn ties_fire_in_arming_order_and_rearm_counts_as_fresh_arm() {
        let mut w = TimerWheel::new(0);
        let hs: Vec<_> = (0..10).map(|i| w.arm(70 * MS, i)).collect();
        // Same deadline, different slots of arrival: some cascade, some not.
        w.arm(70 * MS, 10);
        assert!(w.rearm(hs[2], 70 * MS));
        assert!(w.rearm(hs[0], 70 * MS));
        assert!(values(expire(&mut w, 70 * MS - 1)).is_empty());
        assert_eq!(
            values(expire(&mut w, 70 * MS)),
            vec![1, 3, 4, 5, 6, 7, 8, 9, 10, 2, 0]
        );
    }

    #[test]
    fn ties_across_levels_keep_arming_order() {
        // The first timer is armed far away (level 3), the second one later
        // close by (level 0); both have the same deadline.
        let mut w = TimerWheel::with_tick(0, 1);
        let d = 300_000;
        let far = w.arm(d, "first");
        assert_eq!(level_of(&w, far), 3);
        expire(&mut w, d - 10);
        let near = w.arm(d, "second");
        assert_eq!(level_of(&w, near), 0);
        assert_eq!(values(expire(&mut w, d)), vec!["first", "second"]);
    }

    #[test]
    fn cancel_returns_payload_and_prevents_firing() {
        let mut w = TimerWheel::new(0);
        let a = w.arm(5 * MS, "a");
        let b = w.arm(5 * MS, "b");
        let c = w.arm(500 * MS, "c");
        assert_eq!(w.len(), 3);
        assert_eq!(w.cancel(b), Some("b"));
        assert_eq!(w.cancel(b), None);
        assert_eq!(w.cancel(c), Some("c"));
        assert_eq!(w.len(), 1);
        check(&w);
        assert_eq!(values(expire(&mut w, 10_000 * MS)), vec!["a"]);
        assert!(!w.contains(a));
    }

    #[test]
    fn stale_handles_after_cancel_expire_reuse_and_clear() {
        let mut w = TimerWheel::new(0);
        let h1 = w.arm(MS, 1);
        assert_eq!(w.cancel(h1), Some(1));
        let h2 = w.arm(MS, 2); // reuses the slab entry
        assert_eq!(h1.index, h2.index);
        assert_ne!(h1, h2);
        assert!(!w.contains(h1));
        assert_eq!(w.get(h1), None);
        assert_eq!(w.get_mut(h1), None);
        assert_eq!(w.deadline(h1), None);
        assert!(!w.rearm(h1, 5));
        assert_eq!(w.cancel(h1), None);
        assert_eq!(w.get(h2), Some(&2));
        let fired = expire(&mut w, MS);
        assert_eq!(fired, vec![(h2, 2)]);
        assert_eq!(w.cancel(h2), None);
        assert!(!w.rearm(h2, 0));
        let h3 = w.arm(2 * MS, 3);
        assert_eq!(h3.index, h2.index);
        assert!(!w.contains(h2) && w.contains(h3));
        // Unknown index.
        let bogus = TimerHandle {
            index: 12345,
            generation: 0,
        };
        assert!(!w.contains(bogus) && w.cancel(bogus).is_none());
        w.clear();
        check(&w);
        assert!(w.is_empty() && !w.contains(h3));
        let h4 = w.arm(3 * MS, 4);
        assert_eq!(h4.index, h3.index);
        assert_ne!(h4, h3);
        assert_eq!(values(expire(&mut w, 3 * MS)), vec![4]);
    }

    #[test]
    fn exhausted_generation_retires_the_slot() {
        let mut w = TimerWheel::new(0);
        let h = w.arm(MS, 0);
        w.entries[h.index as usize].generation = u32::MAX - 1;
        let h = TimerHandle {
            generation: u32::MAX - 1,
            ..h
        };
        assert_eq!(w.cancel(h), Some(0));
        let h = w.arm(MS, 1);
        assert_eq!(h.generation, u32::MAX);
        assert_eq!(w.cancel(h), Some(1));
        check(&w);
        let h2 = w.arm(MS, 2);
        assert_ne!(h2.index, h.index, "retired slot must not be reused");
        assert!(!w.contains(h));
        check(&w);
    }

    #[test]
    fn get_mut_deadline_and_contains() {
        let mut w = TimerWheel::new(0);
        let h = w.arm(42, vec![1]);
        assert!(w.contains(h));
        assert_eq!(w.deadline(h), Some(42));
        if let Some(v) = w.get_mut(h) {
            v.push(2);
        }
        assert_eq!(w.get(h), Some(&vec![1, 2]));
        assert!(w.rearm(h, 7 * MS));
        assert_eq!(w.deadline(h), Some(7 * MS));
        assert_eq!(values(expire(&mut w, 7 * MS)), vec![vec![1, 2]]);
    }

    #[test]
    fn rearm_moves_between_levels_and_keeps_payload() {
        let mut w = TimerWheel::new(0);
        let h = w.arm(10 * MS, "x");
        let other = w.arm(20 * MS, "y");
        assert!(w.rearm(h, 3_600_000 * MS)); // one hour: level 3
        assert_eq!(level_of(&w, h), 3);
        check(&w);
        assert_eq!(values(expire(&mut w, 30 * MS)), vec!["y"]);
        assert!(w.rearm(h, 31 * MS)); // back to level 0
        assert_eq!(level_of(&w, h), 0);
        assert_eq!(w.next_deadline(), Some(31 * MS));
        assert!(!w.rearm(other, 1));
        assert_eq!(values(expire(&mut w, 31 * MS)), vec!["x"]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_are_due_at_next_expire() {
        let mut w = TimerWheel::new(1_000 * MS);
        w.arm(0, "zero");
        w.arm(999 * MS, "past");
        w.arm(1_000 * MS, "now");
        w.arm(1_000 * MS + 1, "future");
        check(&w);
        assert_eq!(w.next_deadline(), Some(0));
        assert_eq!(
            values(expire(&mut w, 1_000 * MS)),
            vec!["zero", "past", "now"]
        );
        assert_eq!(w.next_deadline(), Some(1_000 * MS + 1));
        // Past deadline armed after the cursor moved on.
        expire(&mut w, 5_000 * MS);
        w.arm(4_000 * MS, "late");
        assert!(w.next_deadline() <= Some(4_000 * MS));
        assert_eq!(values(expire(&mut w, 5_000 * MS)), vec!["late"]);
    }

    #[test]
    fn u64_max_deadline_and_clock() {
        for tick in [1, 3, DEFAULT_TICK_NS, u64::MAX] {
            let mut w = TimerWheel::with_tick(0, tick);
            let h = w.arm(u64::MAX, "never");
            w.arm(u64::MAX - 1, "almost");
            check(&w);
            assert!(w.next_deadline().is_some_and(|d| d < u64::MAX));
            assert!(values(expire(&mut w, u64::MAX - 2)).is_empty());
            assert_eq!(values(expire(&mut w, u64::MAX - 1)), vec!["almost"]);
            assert!(w.contains(h));
            assert_eq!(values(expire(&mut w, u64::MAX)), vec!["never"]);
            // The clock at its very end: everything is "past or now".
            w.arm(u64::MAX, "a");
            w.arm(0, "b");
            w.arm(u64::MAX, "c");
            assert_eq!(values(expire(&mut w, u64::MAX)), vec!["b", "a", "c"]);
            assert!(w.is_empty());
        }
        let mut w = TimerWheel::with_tick(u64::MAX, 1);
        w.arm(u64::MAX, 1u64);
        w.arm(5, 2);
        assert_eq!(drive(&mut w), vec![(5, 2), (u64::MAX, 1)]);
    }

    #[test]
    fn huge_jumps_skip_empty_ticks() {
        // 1 ns ticks: jumping 2^62 ticks would never finish if ticks were walked.
        let mut w = TimerWheel::with_tick(0, 1);
        let ds = [5u64, 64, 4097, 1 << 20, 1 << 35, 1 << 36, 1 << 50, 1 << 61];
        for (i, d) in ds.iter().enumerate() {
            w.arm(*d, i);
        }
        w.arm(1 << 62, 99);
        assert_eq!(
            values(expire(&mut w, 1 << 61)),
            (0..ds.len()).collect::<Vec<_>>()
        );
        assert_eq!(w.len(), 1);
        assert_eq!(values(expire(&mut w, u64::MAX)), vec![99]);
        // Days in 1 ms ticks, with timers spread all over.
        let mut w = TimerWheel::new(0);
        for i in 0..10_000u64 {
            w.arm(i * i * 7919 % (30 * 86_400_000) * MS, i);
        }
        let got = expire(&mut w, 40 * 86_400_000 * MS);
        assert_eq!(got.len(), 10_000);
        assert!(got
            .windows(2)
            .all(|p| (p[0].1 * p[0].1 * 7919 % (30 * 86_400_000))
                <= (p[1].1 * p[1].1 * 7919 % (30 * 86_400_000))));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut w = TimerWheel::new(100 * MS);
        w.arm(50 * MS, "past");
        w.arm(150 * MS, "a");
        w.arm(200 * MS, "b");
        // Backwards: cursor stays, and only deadlines <= the given now fire.
        assert!(values(expire(&mut w, 10 * MS)).is_empty());
        assert_eq!(values(expire(&mut w, 60 * MS)), vec!["past"]);
        assert_eq!(values(expire(&mut w, 150 * MS)), vec!["a"]);
        assert_eq!(w.elapsed, 150);
        assert!(values(expire(&mut w, 0)).is_empty());
        assert_eq!(w.elapsed, 150);
        w.arm(149 * MS, "late");
        assert!(values(expire(&mut w, 140 * MS)).is_empty());
        assert_eq!(values(expire(&mut w, 149 * MS)), vec!["late"]);
        assert_eq!(values(expire(&mut w, 200 * MS)), vec!["b"]);
    }

    #[test]
    fn cascades_across_every_level_boundary() {
        for level in 1..=LEVELS as u32 {
            let span = 1u64 << (LEVEL_BITS * level); // first tick of level `level`
            for start in [0, 1, span - 1, span + 3, 3 * span - 2, (1 << 40) + 17] {
                let mut w = TimerWheel::with_tick(start, 1);
                let mut want = Vec::new();
                // Around the next multiple of `span`, and `span` ticks ahead.
                let b = (start / span + 1) * span;
                for d in [
                    b - 1,
                    b,
                    b + 1,
                    start + span - 1,
                    start + span,
                    start + span + 1,
                ] {
                    if d > start {
                        w.arm(d, d);
                        want.push(d);
                    }
                }
                want.sort_unstable();
                want.dedup();
                check(&w);
                // Never early: one tick before each deadline nothing fires.
                let mut w2 = TimerWheel::with_tick(start, 1);
                for &d in &want {
                    w2.arm(d, d);
                }
                for &d in &want {
                    let got = values(expire(&mut w2, d - 1));
                    assert!(got.iter().all(|&x| x < d), "early at level {level}");
                    assert!(values(expire(&mut w2, d)).contains(&d));
                }
                let fired = drive(&mut w);
                let mut got: Vec<u64> = fired.iter().map(|&(_, v)| v).collect();
                got.dedup();
                assert_eq!(got, want, "level {level} start {start}");
                assert!(fired.iter().all(|&(now, d)| now == d));
            }
        }
    }

    #[test]
    fn entries_land_on_the_expected_level() {
        let mut w = TimerWheel::with_tick(0, 1);
        for level in 0..LEVELS {
            let lo = if level == 0 { 0 } else { 1u64 << (6 * level) };
            let hi = (1u64 << (6 * (level + 1))) - 1;
            for d in [lo, hi] {
                let h = w.arm(d, 0);
                assert_eq!(level_of(&w, h), level, "deadline {d}");
            }
        }
        let h = w.arm(1 << 36, 0);
        assert_eq!(w.entries[h.index as usize].list, OVERFLOW);
        check(&w);
    }

    #[test]
    fn overflow_level_is_reexamined_when_time_reaches_it() {
        let mut w = TimerWheel::new(0);
        let wheel_span_ns = (1u64 << 36) * MS;
        let a = w.arm(wheel_span_ns + 5 * MS + 7, 1u64);
        let b = w.arm(3 * wheel_span_ns + 11, 2);
        let c = w.arm(2 * wheel_span_ns, 3);
        for h in [a, b, c] {
            assert_eq!(w.entries[h.index as usize].list, OVERFLOW);
        }
        assert_eq!(
            w.next_deadline(),
            Some(2 * wheel_span_ns).min(Some(wheel_span_ns + 5 * MS + 7))
        );
        // Cancel the earliest: the bound goes stale but stays a lower bound.
        assert_eq!(w.cancel(a), Some(1));
        check(&w);
        assert!(values(expire(&mut w, 2 * wheel_span_ns - 1)).is_empty());
        assert_eq!(w.next_deadline(), Some(2 * wheel_span_ns));
        w.arm(2 * wheel_span_ns + MS, 4);
        let fired = drive(&mut w);
        assert_eq!(
            fired,
            vec![
                (2 * wheel_span_ns, 3),
                (2 * wheel_span_ns + MS, 4),
                (3 * wheel_span_ns + 11, 2)
            ]
        );
    }

    #[test]
    fn next_deadline_is_exact_on_level_0_and_a_lower_bound_above() {
        let mut w = TimerWheel::new(0);
        w.arm(5 * MS + 123, ());
        w.arm(9 * MS, ());
        assert_eq!(w.next_deadline(), Some(5 * MS + 123));
        let mut w = TimerWheel::new(0);
        let h = w.arm(1_000 * MS + 5, ()); // level 1, slot 15 = [960, 1024) ms
        assert_eq!(level_of(&w, h), 1);
        assert_eq!(w.next_deadline(), Some(960 * MS));
        assert!(values(expire(&mut w, 960 * MS)).is_empty());
        assert_eq!(level_of(&w, h), 0);
        assert_eq!(w.next_deadline(), Some(1_000 * MS + 5));
        // Cancelling the minimum of a small slot keeps it exact.
        let mut w = TimerWheel::new(0);
        let hs: Vec<_> = (0..5).map(|i| w.arm(7 * MS + 10 - i, ())).collect();
        assert_eq!(w.next_deadline(), Some(7 * MS + 6));
        w.cancel(hs[4]);
        assert_eq!(w.next_deadline(), Some(7 * MS + 7));
        w.rearm(hs[3], 8 * MS);
        assert_eq!(w.next_deadline(), Some(7 * MS + 8));
    }

    #[test]
    fn current_tick_is_consumed_in_order_without_rescans() {
        let mut w = TimerWheel::with_tick(0, 1_000);
        let mut hs = Vec::new();
        for i in (0..500u64).rev() {
            hs.push(w.arm(5_000 + i, i));
        }
        // Partial expiries inside tick 5.
        assert_eq!(values(expire(&mut w, 5_009)), (0..10).collect::<Vec<_>>());
        assert!(w.cur_sorted);
        assert_eq!(w.next_deadline(), Some(5_010));
        // Cancel the head and the tail: still exact.
        assert_eq!(w.cancel(hs[499 - 10]), Some(10));
        assert_eq!(w.cancel(hs[0]), Some(499));
        assert_eq!(w.next_deadline(), Some(5_011));
        check(&w);
        // Arms at either end keep it sorted; one in the middle does not.
        w.arm(5_001, 1000);
        w.arm(5_999, 1001);
        assert!(w.cur_sorted);
        check(&w);
        assert_eq!(values(expire(&mut w, 5_011)), vec![1000, 11]);
        w.arm(5_100, 1002);
        assert!(!w.cur_sorted);
        check(&w);
        let got = values(expire(&mut w, 5_100));
        assert_eq!(got.len(), 90);
        // 100 and 1002 share a deadline; 100 was armed first.
        assert_eq!(got[88..], [100, 1002]);
        assert_eq!(values(expire(&mut w, 6_000)).len(), 399);
        assert!(w.is_empty());
    }

    #[test]
    fn big_slot_cancel_keeps_a_lower_bound() {
        let mut w = TimerWheel::with_tick(0, 1_000);
        let hs: Vec<_> = (0..(RESCAN_LIMIT as u64 + 10))
            .map(|i| w.arm(7_000 + i, i))
            .collect();
        w.cancel(hs[0]);
        check(&w);
        // Too many entries to rescan within O(1): the old minimum stays as a
        // lower bound (same tick), and the next expire makes it exact.
        assert_eq!(w.next_deadline(), Some(7_000));
        assert!(values(expire(&mut w, 7_000)).is_empty());
        assert_eq!(w.next_deadline(), Some(7_001));
        assert_eq!(values(expire(&mut w, 7_001)), vec![1]);
        assert_eq!(w.next_deadline(), Some(7_002));
    }

    #[test]
    fn memory_is_reused() {
        let mut w = TimerWheel::new(0);
        let mut hs = Vec::with_capacity(1_000_000);
        let mut cap = 0;
        for round in 0..3u64 {
            hs.clear();
            for i in 0..1_000_000u64 {
                hs.push(w.arm((i * 7_919 % 100_000_000) * MS + round, i));
            }
            for &h in &hs {
                assert!(w.cancel(h).is_some());
            }
            assert!(w.is_empty());
            if round == 0 {
                cap = w.entries.capacity();
            }
            assert_eq!(w.entries.capacity(), cap);
            assert_eq!(w.entries.len(), 1_000_000);
        }
        // Arm/expire cycles reuse the same entries too.
        let mut out = Vec::new();
        for i in 0..1_000_000u64 {
            w.arm(i * MS, i);
            if i % 1000 == 999 {
                out.clear();
                w.expire(i * MS, &mut out);
                assert_eq!(out.len(), 1000);
            }
        }
        assert_eq!(w.entries.capacity(), cap);
        assert!(w.entries.len() <= 1_000_000);
        check(&w);
    }

    #[test]
    fn values_lists_exactly_the_pending_payloads() {
        let mut w = TimerWheel::new(0);
        let hs: Vec<_> = (0..10u64).map(|i| w.arm(i * 100 * MS, i)).collect();
        w.cancel(hs[3]);
        w.rearm(hs[9], 0);
        expire(&mut w, 250 * MS); // fires 0, 1, 2 and 9
        let mut got: Vec<u64> = w.values().copied().collect();
        got.sort_unstable();
        assert_eq!(got, vec![4, 5, 6, 7, 8]);
    }

    #[test]
    fn clear_drops_payloads() {
        use std::rc::Rc;
        let token = Rc::new(());
        let mut w = TimerWheel::new(0);
        for i in 0..100 {
            w.arm(i * 1_000 * MS, Rc::clone(&token));
        }
        assert_eq!(Rc::strong_count(&token), 101);
        w.clear();
        assert_eq!(Rc::strong_count(&token), 1);
        check(&w);
        w.arm(5, Rc::clone(&token));
        assert_eq!(values(expire(&mut w, 5)).len(), 1);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    // ----- property tests against a reference model ------------------------

    /// A delta that spans every level boundary for every tick length: small
    /// values, or a random value of random bit length (exponent 0..=63).
    fn delta() -> impl Strategy<Value = u64> {
        prop_oneof![
            2 => 0u64..100,
            5 => (0u32..64).prop_flat_map(|e| {
                let hi = if e == 63 { u64::MAX } else { (2u64 << e) - 1 };
                (1u64 << e)..=hi
            }),
        ]
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Arm at `now + delta`.
        Arm(u64),
        /// Arm at `now - delta` (in the past).
        ArmPast(u64),
        /// Arm at an absolute deadline (`u64::MAX`, 0, ...).
        ArmAt(u64),
        /// Arm right around the next multiple of `64^level` ticks.
        ArmBoundary(u32, i8),
        Cancel(usize),
        CancelStale(usize),
        Rearm(usize, u64),
        RearmPast(usize, u64),
        /// `expire(now + delta)`.
        Advance(u64),
        /// `expire` right around the next multiple of `64^level` ticks.
        AdvanceBoundary(u32, i8),
        /// `expire(now - delta)`: time going backwards.
        Back(u64),
        /// `expire(next_deadline())`.
        Wake,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => delta().prop_map(Op::Arm),
            1 => delta().prop_map(Op::ArmPast),
            1 => prop_oneof![Just(u64::MAX), Just(0u64), Just(u64::MAX - 1)].prop_map(Op::ArmAt),
            2 => (0u32..=7, -2i8..=2).prop_map(|(l, o)| Op::ArmBoundary(l, o)),
            2 => any::<usize>().prop_map(Op::Cancel),
            1 => any::<usize>().prop_map(Op::CancelStale),
            2 => (any::<usize>(), delta()).prop_map(|(i, d)| Op::Rearm(i, d)),
            1 => (any::<usize>(), delta()).prop_map(|(i, d)| Op::RearmPast(i, d)),
            3 => delta().prop_map(Op::Advance),
            2 => (0u32..=7, -2i8..=2).prop_map(|(l, o)| Op::AdvanceBoundary(l, o)),
            1 => delta().prop_map(Op::Back),
            2 => Just(Op::Wake),
        ]
    }

    fn tick() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(1u64),
            Just(0u64),
            Just(1_000u64),
            Just(DEFAULT_TICK_NS),
            1u64..5_000,
            Just(u64::MAX / 3),
        ]
    }

    fn start() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            any::<u64>(),
            (0u32..64).prop_map(|e| 1u64 << e),
            (0u32..64).prop_map(|e| (1u64 << e).wrapping_sub(1)),
            (0u64..1 << 40).prop_map(|x| u64::MAX - x),
        ]
    }

    /// Absolute time around the next multiple of `64^level` ticks after `now`.
    fn boundary(now: u64, tick: u64, level: u32, off: i8) -> u64 {
        let span = 1u64
            .checked_shl(LEVEL_BITS * level)
            .unwrap_or(u64::MAX)
            .saturating_mul(tick);
        let b = (now / span).saturating_add(1).saturating_mul(span);
        if off >= 0 {
            b.saturating_add(off as u64)
        } else {
            b.saturating_sub(u64::from(off.unsigned_abs()))
        }
    }

    #[derive(Default)]
    struct Model {
        /// `(deadline, seq, id)` of every pending timer.
        pending: BTreeSet<(u64, u64, u64)>,
        /// id -> (deadline, seq)
        by_id: HashMap<u64, (u64, u64)>,
        seq: u64,
    }

    impl Model {
        fn arm(&mut self, id: u64, deadline: u64) {
            if let Some((d, s)) = self.by_id.remove(&id) {
                self.pending.remove(&(d, s, id));
            }
            self.seq += 1;
            self.pending.insert((deadline, self.seq, id));
            self.by_id.insert(id, (deadline, self.seq));
        }
        fn remove(&mut self, id: u64) {
            let (d, s) = self.by_id.remove(&id).expect("model: unknown id");
            assert!(self.pending.remove(&(d, s, id)));
        }
        fn expire(&mut self, now: u64) -> Vec<u64> {
            let due: Vec<_> = self
                .pending
                .iter()
                .take_while(|&&(d, _, _)| d <= now)
                .copied()
                .collect();
            for &(_, _, id) in &due {
                self.remove(id);
            }
            due.into_iter().map(|(_, _, id)| id).collect()
        }
    }

    fn run_ops(tick_ns: u64, start: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut w: TimerWheel<u64> = TimerWheel::with_tick(start, tick_ns);
        let tick = tick_ns.max(1);
        let mut m = Model::default();
        let mut now = start;
        let mut live: Vec<(TimerHandle, u64)> = Vec::new();
        let mut dead: Vec<TimerHandle> = Vec::new();
        let mut next_id = 0u64;
        for op in ops {
            let mut arm_at = |w: &mut TimerWheel<u64>, m: &mut Model, d: u64| {
                let id = next_id;
                next_id += 1;
                live.push((w.arm(d, id), id));
                m.arm(id, d);
            };
            let mut expire_at = None;
            match op {
                Op::Arm(d) => arm_at(&mut w, &mut m, now.saturating_add(d)),
                Op::ArmPast(d) => arm_at(&mut w, &mut m, now.saturating_sub(d)),
                Op::ArmAt(d) => arm_at(&mut w, &mut m, d),
                Op::ArmBoundary(l, o) => arm_at(&mut w, &mut m, boundary(now, tick, l, o)),
                Op::Cancel(i) if !live.is_empty() => {
                    let (h, id) = live.swap_remove(i % live.len());
                    prop_assert_eq!(w.cancel(h), Some(id));
                    prop_assert_eq!(w.cancel(h), None);
                    m.remove(id);
                    dead.push(h);
                }
                Op::CancelStale(i) if !dead.is_empty() => {
                    let h = dead[i % dead.len()];
                    prop_assert!(!w.contains(h));
                    prop_assert_eq!(w.cancel(h), None);
                    prop_assert!(!w.rearm(h, now));
                    prop_assert_eq!(w.get(h), None);
                }
                Op::Rearm(i, d) | Op::RearmPast(i, d) if !live.is_empty() => {
                    let (h, id) = live[i % live.len()];
                    let nd = if matches!(op, Op::Rearm(..)) {
                        now.saturating_add(d)
                    } else {
                        now.saturating_sub(d)
                    };
                    prop_assert!(w.rearm(h, nd));
                    prop_assert_eq!(w.deadline(h), Some(nd));
                    prop_assert_eq!(w.get(h), Some(&id));
                    m.arm(id, nd);
                }
                Op::Advance(d) => {
                    now = now.saturating_add(d);
                    expire_at = Some(now);
                }
                Op::AdvanceBoundary(l, o) => {
                    now = now.max(boundary(now, tick, l, o));
                    expire_at = Some(now);
                }
                Op::Back(d) => expire_at = Some(now.saturating_sub(d)),
                Op::Wake => {
                    if let Some(nd) = w.next_deadline() {
                        now = now.max(nd);
                        expire_at = Some(nd);
                    }
                }
                _ => {}
            }
            if let Some(t) = expire_at {
                let mut out = Vec::new();
                w.expire(t, &mut out);
                let want = m.expire(t);
                let got: Vec<u64> = out.iter().map(|&(_, id)| id).collect();
                prop_assert_eq!(&got, &want, "expire({})", t);
                for (h, id) in out {
                    let pos = live.iter().position(|&(_, lid)| lid == id);
                    prop_assert!(pos.is_some());
                    if let Some(pos) = pos {
                        prop_assert_eq!(live.swap_remove(pos).0, h);
                    }
                    prop_assert!(!w.contains(h));
                    dead.push(h);
                }
            }
            prop_assert_eq!(w.len(), m.pending.len());
            prop_assert_eq!(w.is_empty(), m.pending.is_empty());
            match (w.next_deadline(), m.pending.first()) {
                (None, None) => {}
                (Some(nd), Some(&(d, _, _))) => prop_assert!(nd <= d, "next {} > {}", nd, d),
                (a, b) => prop_assert!(false, "next_deadline {:?} vs model {:?}", a, b),
            }
            check(&w);
        }
        // Finally run it dry the event-loop way: every timer fires at exactly
        // its deadline, in model order.
        let want: Vec<(u64, u64)> = m.pending.iter().map(|&(d, _, id)| (d, id)).collect();
        let mut got = Vec::new();
        let budget = 8 * w.len() + 16;
        for _ in 0..budget {
            let Some(nd) = w.next_deadline() else { break };
            let mut out = Vec::new();
            w.expire(nd, &mut out);
            got.extend(out.into_iter().map(|(_, id)| (nd, id)));
            check(&w);
        }
        prop_assert!(w.is_empty(), "not drained within {} wake-ups", budget);
        prop_assert_eq!(got, want);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(384))]

        #[test]
        fn matches_reference_model(
            tick_ns in tick(),
            start in start(),
            ops in prop::collection::vec(op(), 1..80),
        ) {
            run_ops(tick_ns, start, ops)?;
        }

        #[test]
        fn drive_fires_each_timer_exactly_at_its_deadline(
            tick_ns in tick(),
            start in start(),
            deltas in prop::collection::vec(delta(), 0..60),
            cancels in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut w = TimerWheel::with_tick(start, tick_ns);
            let mut hs: Vec<_> = deltas
                .iter()
                .map(|&d| {
                    let at = start.saturating_add(d);
                    (w.arm(at, at), at)
                })
                .collect();
            for c in cancels {
                if !hs.is_empty() {
                    let (h, at) = hs.swap_remove(c % hs.len());
                    prop_assert_eq!(w.cancel(h), Some(at));
                }
            }
            let mut want: Vec<u64> = hs.iter().map(|&(_, at)| at).collect();
            want.sort_unstable();
            let fired = drive(&mut w);
            prop_assert!(fired.iter().all(|&(now, at)| now == at));
            prop_assert_eq!(fired.into_iter().map(|(_, at)| at).collect::<Vec<_>>(), want);
        }
    }
}
