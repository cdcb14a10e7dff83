//! The virtual clock's side of the loop: when it moves, and its Python API
//! (`Loop._use_virtual_clock`, `_advance_clock`, `_virtual_clock`,
//! `_clock_now`). The clock itself is `clock.rs`.
//!
//! The virtual clock stands still while the loop has work. A pass that would
//! block until the next timer instead polls the kernel for the autojump
//! threshold of real time (zero by default: a poll that does not wait), and
//! if that poll found nothing ready (no fd, signal, async watcher or
//! thread-safe callback), the clock jumps to the next timer's deadline, which
//! then fires in the same pass. So:
//! - only timers move the clock, and only when nothing else is left to run:
//!   the order in which greenlets wake is the order of their deadlines, and
//!   each sees `now()` equal to its own deadline;
//! - real I/O still works: readiness the kernel already has is seen before
//!   any jump (a peer that answers later than the threshold does not stop
//!   the clock, as with trio's `MockClock`: give such tests a threshold);
//! - while another thread may wake the loop (a referenced async watcher is
//!   active: every thread-pool task in flight holds one, and so does the
//!   hub's scheduler while a greenlet waits and `threading` threads run), a
//!   jump would fire timeouts the thread was about to beat, so the loop
//!   waits for real instead, for up to the time left to the next deadline,
//!   and the clock advances by the real time waited (to the deadline
//!   exactly if nothing came).

use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use super::{Loop, LoopClock};
use crate::clock::{ns_to_secs, secs_to_ns};

/// What a pass on the virtual clock does after its poll.
pub(super) struct Jump {
    /// The next timer's deadline: where the clock jumps if nothing woke the
    /// loop.
    to: u64,
    /// Threads were working for the loop: the system time when the poll,
    /// which waited for real, began.
    real_wait_from: Option<u64>,
}

impl Loop {
    /// The poll timeout of a pass on the virtual clock, and the jump to make
    /// if the poll finds nothing (see the module docs).
    pub(super) fn virtual_poll_plan(
        &self,
        no_wait: bool,
    ) -> PyResult<(Option<Duration>, Option<Jump>)> {
        let (idle_waiting, next, threads) = self.with_state(|st| {
            (
                !st.idle.is_empty(),
                st.wheel.next_deadline(),
                st.asyncs.iter().any(|w| w.get().is_ref()),
            )
        })?;
        if no_wait || idle_waiting || self.activecnt.get() <= 0 {
            return Ok((Some(Duration::ZERO), None));
        }
        // No timer: only the outside world can wake the loop, as on the
        // system clock.
        let Some(deadline) = next else {
            return Ok((None, None));
        };
        let now = self.clock.now_ns();
        if deadline <= now {
            return Ok((Some(Duration::ZERO), None));
        }
        if threads {
            let wait = Duration::from_nanos(deadline - now);
            let jump = Jump {
                to: deadline,
                real_wait_from: Some(LoopClock::system_ns()),
            };
            return Ok((Some(wait), Some(jump)));
        }
        let wait = Duration::from_nanos(self.clock.autojump_ns());
        let jump = Jump {
            to: deadline,
            real_wait_from: None,
        };
        Ok((Some(wait), Some(jump)))
    }

    /// After the poll of a pass planned by `virtual_poll_plan`: jumps if
    /// nothing woke the loop (`polled_nothing`: the kernel reported no fd).
    pub(super) fn settle_jump(&self, jump: Jump, polled_nothing: bool) {
        let woken = !polled_nothing || self.has_callbacks() || self.signal_pending.get();
        if !woken {
            self.clock.advance_to(jump.to);
        } else if let Some(from) = jump.real_wait_from {
            let waited = LoopClock::system_ns().saturating_sub(from);
            let to = self.clock.now_ns().saturating_add(waited).min(jump.to);
            self.clock.advance_to(to);
        }
    }
}

/// A finite, non-negative number of seconds, or ValueError naming `what`.
fn seconds(what: &str, secs: f64) -> PyResult<u64> {
    if secs.is_finite() && secs >= 0.0 {
        Ok(secs_to_ns(secs))
    } else {
        Err(PyValueError::new_err(format!(
            "{what} must be a finite number >= 0, not {secs}"
        )))
    }
}

#[pymethods]
impl Loop {
    /// For tests: switch this loop to a virtual clock that jumps to the next
    /// timer's deadline whenever the loop would otherwise block (after a
    /// poll that waited `autojump_threshold` real seconds and found nothing).
    /// Starts at the current time; one-way. Calling it again only changes
    /// the threshold.
    #[pyo3(signature = (autojump_threshold = 0.0))]
    fn _use_virtual_clock(&self, autojump_threshold: f64) -> PyResult<()> {
        self.check_usable()?;
        let threshold = seconds("autojump_threshold", autojump_threshold)?;
        let start = self.now_ns.get().max(LoopClock::system_ns());
        self.clock.make_virtual(start, threshold);
        self.refresh_now();
        Ok(())
    }

    /// For tests: move the virtual clock `seconds` ahead now (timers that
    /// became due fire at the next pass). RuntimeError on the system clock.
    fn _advance_clock(&self, seconds: f64) -> PyResult<()> {
        self.check_usable()?;
        let delta = self::seconds("seconds", seconds)?;
        if !self.clock.is_virtual() {
            return Err(PyRuntimeError::new_err(
                "the loop runs on the system clock (see _use_virtual_clock)",
            ));
        }
        self.clock
            .advance_to(self.clock.now_ns().saturating_add(delta));
        self.refresh_now();
        Ok(())
    }

    /// True once `_use_virtual_clock()` switched this loop.
    #[getter]
    fn _virtual_clock(&self) -> bool {
        self.clock.is_virtual()
    }

    /// The loop's clock now, in seconds (not cached, unlike `now()`): what
    /// deadlines of waits on this loop are measured against.
    fn _clock_now(&self) -> f64 {
        ns_to_secs(self.clock.now_ns())
    }
}
