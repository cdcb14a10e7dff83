//! Per-operation cost of the timer wheel as the number of pending timers grows.
//!
//! For each size N (1k, 100k, 1M, 10M) the wheel is pre-filled once with N
//! timers on varied deadlines, then we measure:
//!
//! * `arm`: one extra arm (deadlines log-uniform over 1 ms .. 26 days, so they
//!   land on every level). Timed in chunks of 1024; the chunk is cancelled
//!   untimed afterwards so N stays constant.
//! * `cancel`: one cancel of such an extra timer (armed untimed, cancelled in
//!   shuffled order).
//! * `expire`: one event-loop step: advance the clock by 1 ms and expire the
//!   due batch (~16 timers). Every step first arms 16 timers (untimed) at
//!   now + 1..1000 ms, so the due batch mixes level-0 entries and entries
//!   cascaded from level 1. Here the N pre-filled timers lie >= 1.6 days out,
//!   beyond the span the benchmark advances through.
//!
//! Run: `cargo bench --bench wheel -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use _core::wheel::{TimerHandle, TimerWheel};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const MS: u64 = 1_000_000;
const SIZES: [usize; 4] = [1_000, 100_000, 1_000_000, 10_000_000];
const CHUNK: usize = 1024;
/// Timers armed (and, in steady state, expired) per `expire` step.
const STEP_BATCH: usize = 16;

/// xorshift64*: cheap deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Log-uniform in `[2^lo, 2^hi)`.
    fn log_uniform(&mut self, lo: u32, hi: u32) -> u64 {
        let e = lo + (self.next() % u64::from(hi - lo)) as u32;
        (1u64 << e) | (self.next() & ((1u64 << e) - 1))
    }
}

/// N timers at `now = 0` with deadlines log-uniform in [2^lo, 2^hi) ns.
fn prefill(n: usize, lo: u32, hi: u32) -> TimerWheel<u64> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
    let mut w = TimerWheel::new(0);
    for i in 0..n as u64 {
        w.arm(rng.log_uniform(lo, hi), i);
    }
    w
}

fn bench_wheel(c: &mut Criterion) {
    let mut group = c.benchmark_group("wheel");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);

    let mut rng = Rng(42);
    // 1 ms .. ~26 days, ns precision: every level gets some.
    let deadlines: Vec<u64> = (0..CHUNK).map(|_| rng.log_uniform(20, 51)).collect();
    let mut order: Vec<usize> = (0..CHUNK).collect();
    for i in (1..CHUNK).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }

    for n in SIZES {
        // Pre-filled over 1 ms .. 26 days (all levels).
        let mut w = prefill(n, 20, 51);
        let mut handles: Vec<TimerHandle> = Vec::with_capacity(CHUNK);

        group.bench_with_input(BenchmarkId::new("arm", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let k = left.min(CHUNK as u64) as usize;
                    handles.clear();
                    let t = Instant::now();
                    for (i, &d) in deadlines[..k].iter().enumerate() {
                        handles.push(w.arm(d, i as u64));
                    }
                    total += t.elapsed();
                    for &h in &handles {
                        black_box(w.cancel(h));
                    }
                    left -= k as u64;
                }
                total
            });
        });

        group.bench_with_input(BenchmarkId::new("cancel", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let k = left.min(CHUNK as u64) as usize;
                    handles.clear();
                    handles.extend((0..CHUNK).map(|i| w.arm(deadlines[i], i as u64)));
                    let t = Instant::now();
                    for &i in &order[..k] {
                        black_box(w.cancel(handles[i]));
                    }
                    total += t.elapsed();
                    for &h in &handles {
                        w.cancel(h);
                    }
                    left -= k as u64;
                }
                total
            });
        });
        assert_eq!(w.len(), n);
        drop(w);

        // Pre-filled >= 2^47 ns (1.6 days) out: never due while we step.
        let mut w = prefill(n, 47, 51);
        let mut now = 0u64;
        let mut out = Vec::with_capacity(4 * STEP_BATCH);
        let mut step = |w: &mut TimerWheel<u64>, now: &mut u64, out: &mut Vec<_>| {
            for i in 0..STEP_BATCH {
                w.arm(*now + MS + rng.next() % (1000 * MS), i as u64);
            }
            *now += MS;
            out.clear();
            let t = Instant::now();
            w.expire(*now, out);
            let e = t.elapsed();
            black_box(&out);
            e
        };
        // Reach the steady state (as many due as armed per step).
        for _ in 0..1200 {
            step(&mut w, &mut now, &mut out);
        }
        group.bench_with_input(BenchmarkId::new("expire_step16", n), &n, |b, _| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| step(&mut w, &mut now, &mut out))
                    .sum::<Duration>()
            });
        });
        assert!(w.len() >= n);
        drop(w);
    }
    group.finish();
}

criterion_group!(benches, bench_wheel);
criterion_main!(benches);
