"""greenwheel.asyncio's event loop vs asyncio's default loop, uvloop and rloop, side by side.

Runs the asyncio implementations of benches/workloads.py (the same coroutines
compare.py measures), each workload and loop in its own child process, and
prints the rates and the ratios. greenwheel's loop is installed through its
event loop policy, so the workloads' own ``asyncio.new_event_loop()`` makes it.

    python benches/asyncio_loops.py [WORKLOAD ...] [--quick]
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = [
    "sleep0",
    "spawn_join",
    "timeout",
    "timer_10k",
    "staggered",
    "event_pingpong",
    "queue_pingpong",
    "tcp_echo",
]
LOOPS = ("asyncio", "uvloop", "rloop", "greenwheel")
#: The loops greenwheel's is compared with (a ratio column each).
PEERS = LOOPS[:-1]


def child(name, loop, quick):
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    import asyncio

    import workloads

    lib = loop
    if loop == "greenwheel":
        import greenwheel.asyncio

        asyncio.set_event_loop_policy(greenwheel.asyncio.EventLoopPolicy())
        lib = "asyncio"
    print(json.dumps(workloads.run_workload(name, lib, quick)), flush=True)
    os._exit(0)  # as compare.py's children: no teardown of parked tasks


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workloads", nargs="*")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.quick)
    print(
        "%-15s" % "workload"
        + "".join("%12s" % loop for loop in LOOPS)
        + "".join("%11s" % f"gw/{peer}" for peer in PEERS)
    )
    for name in args.workloads or WORKLOADS:
        rates = {}
        for loop in LOOPS:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", name, loop]
            if args.quick:
                cmd.append("--quick")
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            try:
                outcome = json.loads(out.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                outcome = {}
            rates[loop] = outcome.get("value")
            if "skip" in outcome:  # e.g. an API the loop does not implement
                print("  %s/%s skipped: %s" % (name, loop, outcome["skip"]), file=sys.stderr)
            elif rates[loop] is None:
                print("  %s/%s failed: %s" % (name, loop, out.stderr[-300:]), file=sys.stderr)
        cells = "".join(
            "%12s" % ("-" if rates[loop] is None else "%.0f" % rates[loop]) for loop in LOOPS
        )
        gw = rates["greenwheel"]
        ratios = "".join(
            "%11s" % ("%.2f" % (gw / rates[peer]) if gw and rates[peer] else "-") for peer in PEERS
        )
        print("%-15s" % name + cells + ratios, flush=True)


if __name__ == "__main__":
    main()
