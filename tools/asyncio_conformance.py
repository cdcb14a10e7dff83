"""CPython's own asyncio tests against greenwheel's event loop, and against the default loop.

Runs modules of the interpreter's ``test.test_asyncio`` package (not copied:
imported from the installed interpreter) once per loop, each module in its own
child process. The loop is chosen by the event loop policy, installed again
before every test (the modules reset the policy in their teardown hooks), so
only the tests that get their loop from the policy (``asyncio.new_event_loop``,
``asyncio.run``, ``IsolatedAsyncioTestCase``) exercise greenwheel; tests that
construct a specific loop class run on that class in both columns.

    python tools/asyncio_conformance.py [--loops default,greenwheel] [MODULE ...]

Prints, per module and in total, the tests passed with each loop, and lists
the tests that pass with the default loop but not with greenwheel's.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

MODULES = [
    "test_tasks",
    "test_futures",
    "test_streams",
    "test_server",
    "test_sock_lowlevel",
    "test_timeouts",
    "test_taskgroups",
    "test_locks",
    "test_queues",
    "test_events",
    "test_subprocess",
    "test_sendfile",
    "test_runners",
    "test_waitfor",
    "test_pep492",
    "test_context",
    "test_threads",
    "test_buffered_proto",
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXCLUSIONS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "asyncio_conformance_exclusions.txt"
)


def _exclusions():
    patterns = []
    with open(EXCLUSIONS) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                patterns.append(line)
    return patterns


def _excluded(test, patterns):
    import fnmatch

    return any(fnmatch.fnmatchcase(test, p) for p in patterns)


def _child(module, loop, swap):
    import asyncio
    import importlib
    import unittest

    created = [0]  # greenwheel (or uvloop) loops the tests got
    policy = None
    if loop == "greenwheel":
        sys.path.insert(0, os.path.join(ROOT, "python"))
        from greenwheel.asyncio import EventLoopPolicy as policy
        from greenwheel.asyncio import GreenwheelEventLoop

        if swap:
            # Tests that build asyncio.SelectorEventLoop themselves (most of
            # test_events, test_sock_lowlevel, test_sendfile, test_server)
            # get greenwheel's loop too; the selector they pass is not used.
            class Swapped(GreenwheelEventLoop):
                def __init__(self, selector=None):
                    created[0] += 1
                    super().__init__()

            asyncio.SelectorEventLoop = Swapped
            asyncio.unix_events.SelectorEventLoop = Swapped
    elif loop == "uvloop":
        from uvloop import EventLoopPolicy as policy

    outcomes = {}
    if policy is not None:
        base_policy = policy

        class policy(base_policy):  # counts the loops the tests got from it
            def new_event_loop(self):
                created[0] += 1
                return super().new_event_loop()

    class Result(unittest.TestResult):
        def startTest(self, test):
            asyncio.set_event_loop_policy(policy() if policy is not None else None)
            super().startTest(test)

        def addSuccess(self, test):
            outcomes[test.id()] = "pass"

        def addFailure(self, test, err):
            outcomes[test.id()] = "fail"
            super().addFailure(test, err)

        def addError(self, test, err):
            outcomes[test.id()] = "error"
            super().addError(test, err)

        def addSkip(self, test, reason):
            outcomes[test.id()] = "skip"

        def addExpectedFailure(self, test, err):
            outcomes[test.id()] = "xfail"

        def addUnexpectedSuccess(self, test):
            outcomes[test.id()] = "xpass"

    mod = importlib.import_module("test.test_asyncio." + module)
    suite = unittest.defaultTestLoader.loadTestsFromModule(mod)
    result = Result()
    # Module-level fixtures (setUpModule/tearDownModule) run through the suite.
    suite.run(result)
    details = {}
    for test, text in result.failures + result.errors:
        details[test.id() if hasattr(test, "id") else str(test)] = text[-1500:]
    print(
        "@@RESULT@@" + json.dumps({"outcomes": outcomes, "details": details, "loops": created[0]}),
        flush=True,
    )
    # Leave without the interpreter's exit hooks: a test that leaves a process
    # pool's workers stuck would otherwise hang the exit (and lose the result).
    os._exit(0)


def _run(module, loop, timeout, swap):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", module, "--loop", loop]
    if not swap:
        cmd.append("--no-swap")
    t0 = time.monotonic()
    # Output to files and the child in its own process group: processes a
    # test forks (a process pool's workers) may outlive it holding its pipes;
    # the whole group is killed once the child is done or out of time.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    took = time.monotonic() - t0
    for line in stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@") :]), None, took
    if timed_out:
        return None, "timeout after %ds: %s" % (timeout, stderr[-800:]), took
    return None, "crashed (rc %s): %s" % (proc.returncode, stderr[-800:]), took


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("modules", nargs="*")
    parser.add_argument("--loops", default="default,greenwheel")
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--child")
    parser.add_argument("--loop")
    parser.add_argument(
        "--no-swap",
        dest="swap",
        action="store_false",
        help="leave asyncio.SelectorEventLoop alone (only policy-made loops are greenwheel's)",
    )
    parser.add_argument("--details", action="store_true", help="print failure tracebacks")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.loop, args.swap)
        return
    loops = args.loops.split(",")
    totals = {loop: 0 for loop in loops}
    regressions = []
    excluded = []
    patterns = _exclusions()
    loops_made = {}
    print("%-22s" % "module" + "".join("%14s" % loop for loop in loops))
    for module in args.modules or MODULES:
        row = {}
        for loop in loops:
            res, err, took = _run(module, loop, args.timeout, args.swap)
            row[loop] = (res, err, took)
        cells = []
        for loop in loops:
            res, err, took = row[loop]
            if res is None:
                cells.append("%14s" % "ERR")
                print("  %s/%s: %s" % (module, loop, err), file=sys.stderr)
                continue
            passed = sum(1 for v in res["outcomes"].values() if v == "pass")
            totals[loop] += passed
            cells.append("%14s" % ("%d/%d %3.0fs" % (passed, len(res["outcomes"]), took)))
            if res["loops"]:
                loops_made.setdefault(loop, []).append("%s:%d" % (module, res["loops"]))
        print("%-22s" % module + "".join(cells), flush=True)
        base = row[loops[0]][0]
        for loop in loops[1:]:
            res = row[loop][0]
            if base is None or res is None:
                continue
            for test, outcome in sorted(base["outcomes"].items()):
                if outcome == "pass" and res["outcomes"].get(test) != "pass":
                    if _excluded(test, patterns):
                        excluded.append((loop, test))
                        continue
                    regressions.append((loop, test, res["outcomes"].get(test)))
                    if args.details and test in res["details"]:
                        print(res["details"][test], file=sys.stderr)
    print("%-22s" % "TOTAL passed" + "".join("%14d" % totals[loop] for loop in loops))
    for loop, made in loops_made.items():
        print("%s loops made: %s" % (loop, " ".join(made)))
    if excluded:
        print("\nexcluded (assert on the default loop's internals, see %s):" % EXCLUSIONS)
        for loop, test in excluded:
            print("  %-10s %s" % (loop, test))
    if regressions:
        print("\npassing with %s but not with:" % loops[0])
        for loop, test, outcome in regressions:
            print("  %-10s %-8s %s" % (loop, outcome, test))


if __name__ == "__main__":
    main()
