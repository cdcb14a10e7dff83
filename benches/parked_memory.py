"""Memory per parked greenlet: greenwheel against a bare greenlet and gevent.

    python3 benches/parked_memory.py [-n 100000] [--repeat 1] [--trace] [--cases a,b,...]
                                     [--tree DIR ...]

Each case runs in a child process of its own (a fresh interpreter, so no
case inherits another's arenas) and reports the RSS grown by parking N
greenlets, divided by N:

* ``bare``: a ``greenlet.greenlet`` whose Python function bumps a counter
  and switches back to the main greenlet, where it stays.  This is the
  floor: the greenlet object, its C-stack slice (copied to the heap when
  the next greenlet starts), its Python frame and the first page of the
  16 KiB frame-stack chunk CPython gives each greenlet.
* ``greenwheel``: ``greenwheel.spawn(f)`` with ``f`` bumping the counter
  and calling ``greenwheel.sleep(60)``.
* ``gevent``: the same with gevent.
* ``greenwheel_raw``: ``greenwheel.spawn_raw`` (a plain greenlet parented to
  the hub, no Greenlet object) parked in ``greenwheel.sleep(60)``: the
  Greenlet class's share is ``greenwheel`` minus this.

"All parked" is a counter every function bumps before it parks: the
spawner yields until it reaches N (no timing).  A warm-up round parks a
few first, so one-time costs (the hub, code objects, the first arenas) are
not charged to the measured ones, and the cyclic GC is off while spawning
(as in benches/workloads.py's memory rows).

greenwheel is imported from this tree's ``python/`` directory; each
``--tree DIR`` (another checkout's ``python/`` directory) adds the greenwheel
cases once more, imported from there, to compare two versions in one run.

Alongside RSS each case reports the mean C-stack bytes a parked greenlet
saved to the heap (greenlet's ``_stack_saved``), and with ``--trace`` a
second child per case repeats the run under tracemalloc and prints the
bytes per greenlet by allocation site (stack copies and objects made by C
code are attributed to the Python line that was running).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

WARMUP = 1000
PARK_SECONDS = 60

CASES = ("bare", "greenwheel", "greenwheel_raw", "gevent")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- the cases, each returning (spawn_parked(k) -> list of greenlets) --------


def _bare():
    from greenlet import getcurrent, greenlet

    main = getcurrent()
    parked = [0]

    def park():
        parked[0] += 1
        main.switch()

    def spawn_parked(k):
        glets = [greenlet(park) for _ in range(k)]
        for glet in glets:
            glet.switch()
        assert parked[0] >= k
        return glets

    def cleanup(glets):
        # Unparked greenlets would be killed (GreenletExit thrown in) when
        # collected; that is fine at exit, nothing to do.
        pass

    return spawn_parked, cleanup


def _hub_library(lib, raw: bool):
    parked = [0]
    sleep = lib.sleep

    def park():
        parked[0] += 1
        sleep(PARK_SECONDS)

    spawn = lib.spawn_raw if raw else lib.spawn

    def spawn_parked(k):
        target = parked[0] + k
        glets = [spawn(park) for _ in range(k)]
        while parked[0] < target:
            sleep(0)
        return glets

    def cleanup(glets):
        pass

    return spawn_parked, cleanup


def _case(name):
    if name == "bare":
        return _bare()
    if name == "greenwheel":
        import greenwheel

        return _hub_library(greenwheel, raw=False)
    if name == "greenwheel_raw":
        import greenwheel

        return _hub_library(greenwheel, raw=True)
    if name == "gevent":
        import gevent

        return _hub_library(gevent, raw=False)
    raise SystemExit("unknown case %r (known: %s)" % (name, ", ".join(CASES)))


def _stack_saved(glets) -> float:
    # The last parked greenlet may still own the live stack (nothing ran
    # over it since): count the others.
    sizes = [g._stack_saved for g in glets[:-1]]
    return sum(sizes) / len(sizes) if sizes else 0.0


def child(name: str, n: int, trace: bool) -> dict:
    spawn_parked, cleanup = _case(name)
    warm = spawn_parked(WARMUP)
    gc.collect()
    gc.disable()
    if trace:
        import tracemalloc

        tracemalloc.start(1)
        before_snap = tracemalloc.take_snapshot()
    before = rss_bytes()
    parked = spawn_parked(n)
    gc.collect()
    after = rss_bytes()
    out = {
        "case": name,
        "n": n,
        "rss_per": (after - before) / n,
        "stack_saved": _stack_saved(parked),
    }
    if trace:
        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
        filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
        stats = snap.filter_traces(filters).compare_to(before_snap.filter_traces(filters), "lineno")
        total = sum(s.size_diff for s in stats)
        out["traced_per"] = total / n
        out["sites"] = [
            (str(s.traceback), s.size_diff / n, s.count_diff / n)
            for s in stats
            if abs(s.size_diff) >= n // 4
        ][:15]
    cleanup(warm)
    cleanup(parked)
    return out


TREE = str(Path(__file__).resolve().parent.parent / "python")


def run_child(name: str, n: int, trace: bool, tree: str = TREE) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "-n", str(n)]
    if trace:
        cmd.append("--trace")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        raise SystemExit("case %s failed:\n%s" % (name, proc.stderr))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="greenlets parked per case")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case (the minimum is kept)")
    ap.add_argument("--trace", action="store_true", help="also a tracemalloc breakdown")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument(
        "--tree",
        action="append",
        default=[],
        help="another checkout's python/ directory: its greenwheel cases are added",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.trace)))
        return

    # (label, case, tree)
    runs = [(name, name, TREE) for name in args.cases.split(",")]
    for k, tree in enumerate(args.tree, 1):
        tree = str(Path(tree).resolve())
        runs += [
            ("%s@%d" % (name, k), name, tree)
            for name in args.cases.split(",")
            if name.startswith("greenwheel")
        ]
    for k, tree in enumerate(args.tree, 1):
        print("@%d: greenwheel from %s" % (k, tree))
    cases = [label for label, _, _ in runs]
    results = {}
    for _ in range(args.repeat):
        # Interleaved, so a busy moment on a shared machine hits every case.
        for label, name, tree in runs:
            r = run_child(name, args.n, False, tree)
            best = results.get(label)
            if best is None or r["rss_per"] < best["rss_per"]:
                results[label] = r
    floor = results.get("bare", {}).get("rss_per")
    print("N=%d per case, best of %d; bytes per parked greenlet" % (args.n, args.repeat))
    print("%-16s %10s %8s %12s" % ("case", "RSS", "x bare", "stack saved"))
    for name in cases:
        r = results[name]
        ratio = "%.2fx" % (r["rss_per"] / floor) if floor else "-"
        print("%-16s %10.0f %8s %12.0f" % (name, r["rss_per"], ratio, r["stack_saved"]))
    if args.trace:
        for label, name, tree in runs:
            r = run_child(name, args.n, True, tree)
            print(
                "\n%s: tracemalloc %.0f B/greenlet (RSS under tracing %.0f)"
                % (label, r["traced_per"], r["rss_per"])
            )
            for site, size, count in r["sites"]:
                print("  %8.1f B %6.2f blocks  %s" % (size, count, site))


if __name__ == "__main__":
    main()
