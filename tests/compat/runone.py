"""Run one test file of gevent's suite, or one stdlib test file under patch_all().

This is the child process of ``harness.py``; one process per file, so a crash
or a hang costs one file. It records every test's outcome as a JSON line in
the file named by ``--record`` the moment the test ends (and a ``start`` line
when it begins), so a file killed at its timeout still reports what finished
and names the test that hung.

The tests themselves are never copied: they are imported from the gevent
wheel that ``harness.py`` installed into its own directory (``--gevent-dir``),
and from the interpreter's own ``test`` package.

``_setup.py`` makes ``import gevent`` mean the implementation under test,
here and in every Python process the test starts: greenwheel through
``greenwheel.as_gevent`` (``--impl greenwheel``), or the real gevent, the
baseline (``--impl gevent``).
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import unittest

import _setup  # beside this file


class _Recorder:
    """Writes one JSON line per test event; flushed at once, so a kill loses nothing."""

    def __init__(self, path: str) -> None:
        self._out = open(path, "a", encoding="utf-8")  # open for the life of the process
        self._failed: set[str] = set()
        self._skipped: set[str] = set()

    @staticmethod
    def test_id(test) -> str:
        method = getattr(test, "_testMethodName", None)
        if method is not None:
            return "%s.%s" % (type(test).__qualname__, method)
        # _ErrorHolder for setUpClass/setUpModule failures, doctests, suites.
        return str(test)

    def write(self, event: str, test_id: str, detail: str = "") -> None:
        self._out.write(json.dumps({"event": event, "test": test_id, "detail": detail}) + "\n")
        self._out.flush()

    def start(self, test) -> None:
        self.write("start", self.test_id(test))

    def fail(self, test, kind: str) -> None:
        test_id = self.test_id(test)
        if test_id not in self._failed:
            self._failed.add(test_id)
            if getattr(test, "_testMethodName", None) is None:
                # No stopTest will follow an error reported for a class or module.
                self.write(kind, test_id)

    def skip(self, test, reason: str) -> None:
        self._skipped.add(self.test_id(test))
        if getattr(test, "_testMethodName", None) is None:
            self.write("skip", self.test_id(test), reason)

    def stop(self, test) -> None:
        test_id = self.test_id(test)
        if test_id in self._failed:
            outcome = "fail"
        elif test_id in self._skipped:
            outcome = "skip"
        else:
            outcome = "pass"
        self.write(outcome, test_id)


def _skip_tests(test_ids: set[str], reason: str) -> None:
    """Report the tests *test_ids* as skipped without running them."""
    original_run = unittest.TestCase.run

    def run(self, result=None):
        if _Recorder.test_id(self) not in test_ids:
            return original_run(self, result)
        if result is None:
            result = self.defaultTestResult()
        result.startTest(self)
        try:
            result.addSkip(self, reason)
        finally:
            result.stopTest(self)
        return result

    unittest.TestCase.run = run


def _hook_unittest(recorder: _Recorder) -> None:
    """Record outcomes from unittest's base result class.

    Every runner in play (unittest.main's TextTestRunner, test.support's
    runner for the stdlib tests) uses a TestResult subclass that calls up to
    these methods, so hooking the base class sees them all.
    """
    result = unittest.TestResult
    originals = {
        name: getattr(result, name)
        for name in (
            "startTest",
            "stopTest",
            "addError",
            "addFailure",
            "addSkip",
            "addSubTest",
            "addUnexpectedSuccess",
        )
    }

    def startTest(self, test):
        recorder.start(test)
        return originals["startTest"](self, test)

    def stopTest(self, test):
        recorder.stop(test)
        return originals["stopTest"](self, test)

    def addError(self, test, err):
        recorder.fail(test, "error")
        return originals["addError"](self, test, err)

    def addFailure(self, test, err):
        recorder.fail(test, "fail")
        return originals["addFailure"](self, test, err)

    def addSkip(self, test, reason):
        recorder.skip(test, reason)
        return originals["addSkip"](self, test, reason)

    def addSubTest(self, test, subtest, err):
        if err is not None:
            recorder.fail(test, "fail")
        return originals["addSubTest"](self, test, subtest, err)

    def addUnexpectedSuccess(self, test):
        recorder.fail(test, "fail")
        return originals["addUnexpectedSuccess"](self, test)

    for name, function in list(locals().items()):
        if name in originals:
            setattr(result, name, function)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("greenwheel", "gevent"), required=True)
    parser.add_argument("--gevent-dir", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--suite", choices=("gevent", "stdlib"), required=True)
    parser.add_argument("name", help="gevent.tests module name, or a stdlib test file path")
    parser.add_argument(
        "--not-run", action="append", default=[], help="a test id to skip (not_run.txt)"
    )
    parser.add_argument("unittest_args", nargs="*", help="passed on to unittest (-k PATTERN, -v)")
    args = parser.parse_args()

    _setup.setup(args.impl, args.gevent_dir)
    _hook_unittest(_Recorder(args.record))
    if args.not_run:
        _skip_tests(set(args.not_run), "cannot finish on this machine under either implementation")
    if args.suite == "gevent":
        sys.argv = [args.name, *args.unittest_args]
        runpy.run_module(args.name, run_name="__main__", alter_sys=True)
    else:
        # gevent's own driver for the stdlib tests: patch_all(), then its
        # disabled-test list applied to the file's source, then the file.
        sys.argv = ["monkey_test", args.name, *args.unittest_args]
        runpy.run_module("gevent.testing.monkey_test", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
