//! The loop's clock: `CLOCK_MONOTONIC` in nanoseconds.
//!
//! Ground rules:
//! - The same clock as Python's `time.monotonic()`, so user code can compare
//!   `loop.now()` with `time.monotonic()` and a timer armed for `t` seconds is
//!   never seen to fire before `time.monotonic()` has advanced by `t`.
//! - Never goes backwards (the kernel guarantees it for `CLOCK_MONOTONIC`).
//! - Conversions from user-supplied seconds saturate instead of overflowing.

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// Current `CLOCK_MONOTONIC` reading in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call,
    // and CLOCK_MONOTONIC is supported on every platform this crate targets.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) cannot fail");
    (ts.tv_sec as u64)
        .saturating_mul(NS_PER_SEC)
        .saturating_add(ts.tv_nsec as u64)
}

/// Converts a delay in seconds to nanoseconds.
///
/// Negative delays (and -inf) are zero ("due now"); +inf and anything past
/// `u64::MAX` ns saturate to `u64::MAX` ("never"). NaN is the caller's job to
/// reject before calling; here it maps to zero so no input can panic.
pub fn secs_to_ns(secs: f64) -> u64 {
    if secs.is_nan() || secs <= 0.0 {
        return 0;
    }
    let ns = secs * NS_PER_SEC as f64;
    if ns >= u64::MAX as f64 {
        u64::MAX
    } else {
        // Round up so that a delay is never shortened by truncation.
        ns.ceil() as u64
    }
}

/// Converts nanoseconds on the monotonic clock to seconds.
pub fn ns_to_secs(ns: u64) -> f64 {
    ns as f64 / NS_PER_SEC as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_back() {
        let mut last = monotonic_ns();
        for _ in 0..1000 {
            let now = monotonic_ns();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn secs_conversion_saturates() {
        assert_eq!(secs_to_ns(-1.0), 0);
        assert_eq!(secs_to_ns(f64::NEG_INFINITY), 0);
        assert_eq!(secs_to_ns(f64::NAN), 0);
        assert_eq!(secs_to_ns(f64::INFINITY), u64::MAX);
        assert_eq!(secs_to_ns(1e300), u64::MAX);
        assert_eq!(secs_to_ns(1.5), 1_500_000_000);
        // Never shorter than asked: 1e-10 s rounds up to 1 ns.
        assert_eq!(secs_to_ns(1e-10), 1);
    }
}
