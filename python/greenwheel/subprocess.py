"""Cooperative :mod:`subprocess` (gevent.subprocess).

:class:`Popen` is the standard class with its waiting parts replaced:

* the ``stdin``/``stdout``/``stderr`` pipes are non-blocking and served by
  the loop (reading or writing blocks only the calling greenlet);
* :meth:`Popen.wait` (with or without a timeout) and :meth:`Popen.poll`
  learn of the child's exit without blocking the loop (``SIGCHLD`` plus a
  polling safety net, see :mod:`greenwheel._child`);
* :meth:`Popen.communicate` feeds stdin and drains stdout and stderr in
  greenlets, honours *timeout* (raising :exc:`TimeoutExpired`; calling it
  again resumes and returns everything read), then waits.

:func:`call`, :func:`check_call`, :func:`check_output`, :func:`run`,
:func:`getoutput` and :func:`getstatusoutput` use it.  Everything else
(``PIPE``, ``STDOUT``, ``DEVNULL``, ``CalledProcessError``,
``TimeoutExpired``, ``CompletedProcess``...) is the standard module's.
``patch_subprocess()`` installs these in :mod:`subprocess`.

Starting a child still waits (blocking, typically well under a
millisecond) for ``exec`` to report success through the standard library's
error pipe.
"""

import io
import os
import subprocess as __subprocess__
import sys

from . import _child
from ._event import AsyncResult
from ._fileobject import FileObjectPosix as FileObject  # noqa: F401 - in __all__
from ._fileobject import _raw_of, open_green, share_with_child
from ._greenlet import Greenlet
from ._typecheck import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__target__ = "subprocess"
__implements__ = [
    "Popen",
    "call",
    "check_call",
    "check_output",
    "run",
    "getoutput",
    "getstatusoutput",
]

_StdPopen = _child._original("subprocess", "Popen")

PIPE = __subprocess__.PIPE
STDOUT = __subprocess__.STDOUT
DEVNULL = __subprocess__.DEVNULL
SubprocessError = __subprocess__.SubprocessError
CalledProcessError = __subprocess__.CalledProcessError
TimeoutExpired = __subprocess__.TimeoutExpired
CompletedProcess = __subprocess__.CompletedProcess
list2cmdline = __subprocess__.list2cmdline


def _green_stream(stream, bufsize):
    """The same kind of stream as *stream*, over a cooperative copy of its descriptor."""
    if stream is None:
        return None
    writing = stream.writable()
    fd = os.dup(stream.fileno())
    text = isinstance(stream, io.TextIOBase)
    options = {}
    if text:
        options = dict(
            encoding=stream.encoding,
            errors=stream.errors,
            line_buffering=stream.line_buffering,
            write_through=stream.write_through,
        )
    elif isinstance(stream, io.RawIOBase):
        bufsize = 0
    elif bufsize in (0, 1):
        bufsize = -1
    try:
        stream.close()
    except OSError:
        pass
    mode = ("w" if writing else "r") + ("" if text else "b")
    return open_green(fd, mode, bufsize if not text else -1, **options)


def _prepare_stdio(args, bufsize, popenargs, kwargs):
    # Popen(args, bufsize, executable, stdin, stdout, stderr, ...)
    for index, name in ((1, "stdin"), (2, "stdout"), (3, "stderr")):
        if name in kwargs:
            share_with_child(kwargs[name])
        elif len(popenargs) > index:
            share_with_child(popenargs[index])


# (A base class found at run time: the type checker cannot follow it.)
class Popen(_StdPopen):  # type: ignore[valid-type, misc]
    """``subprocess.Popen`` whose pipes and waits block only the calling greenlet.

    Takes exactly the standard arguments.
    """

    if _TYPE_CHECKING:
        #: Set to the return code once the exit status is collected.
        result: AsyncResult[int]
        stdin: Any
        stdout: Any
        stderr: Any
        _communication_started: bool
        _communicating_greenlets: "_Communicating | None"

    # (Annotations naming typing's types are in quotes: those types are
    # imported only for the type checker.)
    def __init__(self, args: "Any", bufsize: int = -1, *popenargs: "Any", **kwargs: "Any") -> None:
        self._communicating_greenlets = None
        #: Set to the return code once the exit status is collected (as in
        #: gevent); :meth:`rawlink` callbacks hang off it.
        self.result = AsyncResult()
        self._reporting = False
        _prepare_stdio(args, bufsize, popenargs, kwargs)
        # Before the child exists, so that its exit cannot be missed.
        _child.install_sigchld()
        _StdPopen.__init__(self, args, bufsize, *popenargs, **kwargs)
        _child.watch(self.pid, owned=True)
        self.stdin = _green_stream(self.stdin, bufsize)
        self.stdout = _green_stream(self.stdout, bufsize)
        self.stderr = _green_stream(self.stderr, bufsize)

    # -- exit status ----------------------------------------------------------------------

    def _consume(self, status):
        self._handle_exitstatus(status)
        _child.forget(self.pid)
        self.result.set(self.returncode)

    def rawlink(self, callback: "Callable[[Popen], object]") -> None:
        """Call ``callback(self)`` from the hub once the process has exited.

        The link protocol of :func:`greenwheel.wait` / ``iwait``: they can
        wait for Popen objects too.  A greenlet collects the exit status if
        nobody else does.
        """
        if not callable(callback):
            raise TypeError(f"Expected callable: {callback!r}")
        if not self.result.ready() and not self._reporting:
            self._reporting = True
            Greenlet.spawn(self._report_exit)
        self.result.rawlink(lambda _result: callback(self))

    def _report_exit(self):
        self.wait()
        if not self.result.ready():  # the status came some other way (ECHILD: 0)
            self.result.set(self.returncode)

    def _internal_poll(self, _deadstate=None, **_ignored):
        if self.returncode is None and self.pid is not None:
            try:
                status = _child.reap(self.pid)
            except OSError:
                status = None
                if _deadstate is not None:
                    self.returncode = _deadstate
            if status is None and self.pid not in _child._children:
                # Not watched (e.g. unpickled or forgotten): ask directly.
                try:
                    pid, status = _child._real_waitpid(self.pid, _child.WNOHANG)
                    if pid != self.pid:
                        status = None
                except ChildProcessError:
                    status = 0
            if status is not None:
                self._consume(status)
        return self.returncode

    def _wait(self, timeout):
        if self.returncode is not None:
            return self.returncode
        status = _child.wait_child(self.pid, timeout)
        if status is None:
            raise TimeoutExpired(self.args, timeout)
        if self.returncode is None:
            self._consume(status)
        return self.returncode

    # -- communicate ------------------------------------------------------------------------

    def communicate(self, input: "Any" = None, timeout: "float | None" = None) -> "tuple[Any, Any]":
        """Send *input* to stdin, read stdout and stderr to the end, wait for the exit.

        Returns ``(stdout_data, stderr_data)`` (None for streams that are
        not pipes).  With *timeout*, raises :exc:`TimeoutExpired` when it
        passes; the reading goes on, and calling ``communicate()`` again
        returns all of the output.
        """
        from ._clock import monotonic  # the clock joinall() and wait() run on
        from ._greenlet import joinall

        if self._communication_started and input:
            raise ValueError("Cannot send input after starting communication")
        deadline = None if timeout is None else monotonic() + timeout
        glets = self._communicating_greenlets
        if glets is None:
            self._communication_started = True
            glets = self._communicating_greenlets = _Communicating(self, input)
        running = list(glets)
        done = joinall(running, timeout=timeout)
        if len(done) != len(running):
            raise TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]  # (not None here)
        reader_out, reader_err = glets.reader_out, glets.reader_err
        for glet in running:
            if not glet.successful():
                glet.get()  # re-raise
        stdout = reader_out.value if reader_out is not None else None
        stderr = reader_err.value if reader_err is not None else None
        remaining = None if deadline is None else max(0.0, deadline - monotonic())
        self.wait(timeout=remaining)
        return stdout, stderr

    def __exit__(self, exc_type, exc_value, traceback):
        # Greenlets that communicate() started may still be parked in the
        # pipes (communicate() timed out, or its caller was killed): closing
        # a buffered pipe under a parked reader of this thread raises
        # "RuntimeError: reentrant call".  Stop them first; each closes its
        # own pipe as it unwinds.
        glets = self._communicating_greenlets
        if glets is not None:
            from ._greenlet import killall

            still_running = [g for g in glets if not g.dead]
            if still_running:
                killall(still_running)
        # A greenlet of someone else's may be reading a pipe too: its
        # reentrant-call error must not hide the exception unwinding this
        # block, nor keep the child from being reaped.  The descriptor is
        # closed under it instead (the reader gets EBADF, as when any
        # cooperative file is closed while another greenlet waits on it).
        for pipe in (self.stdout, self.stderr):
            if pipe:
                try:
                    pipe.close()
                except RuntimeError:
                    raw = _raw_of(pipe)
                    if raw is not None:
                        raw.close()
        try:
            if self.stdin:
                self.stdin.close()  # may flush, and fail
        finally:
            if exc_type is KeyboardInterrupt:
                # As the standard library: a Ctrl-C does not wait forever.
                if self._sigint_wait_secs > 0:
                    try:
                        self._wait(timeout=self._sigint_wait_secs)
                    except TimeoutExpired:
                        pass
                self._sigint_wait_secs = 0
            else:
                self.wait()


class _Communicating:
    """The greenlets of one communicate(): feeding stdin, draining stdout and stderr.

    Iterating gives those that exist (a stream that is not a pipe has none).
    """

    __slots__ = ("feeder", "reader_out", "reader_err")

    def __init__(self, popen, input):
        self.feeder = self.reader_out = self.reader_err = None
        if popen.stdin is not None:
            self.feeder = Greenlet.spawn(_feed, popen.stdin, input)
        if popen.stdout is not None:
            self.reader_out = Greenlet.spawn(_drain, popen.stdout)
        if popen.stderr is not None:
            self.reader_err = Greenlet.spawn(_drain, popen.stderr)

    def _existing(self):
        return [g for g in (self.feeder, self.reader_out, self.reader_err) if g is not None]

    def __iter__(self):
        return iter(self._existing())

    def __len__(self):
        return len(self._existing())


def _feed(stream, data):
    try:
        if data:
            stream.write(data)
            stream.flush()
    except BrokenPipeError:
        pass  # the child stopped reading: as the standard library does
    except OSError as e:
        if e.errno != 22:  # EINVAL: the child exited
            raise
    finally:
        try:
            stream.close()
        except BrokenPipeError:
            pass


def _drain(stream):
    try:
        return stream.read()
    finally:
        stream.close()


# --- the helpers ------------------------------------------------------------------------------


def call(*popenargs: "Any", timeout: "float | None" = None, **kwargs: "Any") -> int:
    """Run a command, wait (cooperatively) and return its exit code."""
    with Popen(*popenargs, **kwargs) as process:
        try:
            return process.wait(timeout=timeout)
        except BaseException:
            process.kill()
            raise


def check_call(*popenargs: "Any", **kwargs: "Any") -> int:
    """:func:`call`, raising :exc:`CalledProcessError` on a non-zero exit code."""
    retcode = call(*popenargs, **kwargs)
    if retcode:
        cmd = kwargs.get("args")
        if cmd is None:
            cmd = popenargs[0]
        raise CalledProcessError(retcode, cmd)
    return 0


def run(
    *popenargs: "Any",
    input: "Any" = None,
    capture_output: bool = False,
    timeout: "float | None" = None,
    check: bool = False,
    **kwargs: "Any",
) -> "CompletedProcess[Any]":
    """Run a command and return a :class:`CompletedProcess` (as :func:`subprocess.run`)."""
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = PIPE
        kwargs["stderr"] = PIPE
    with Popen(*popenargs, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except TimeoutExpired as exc:
            process.kill()
            exc.stdout, exc.stderr = process.communicate()
            raise
        except BaseException:
            process.kill()
            raise
        retcode = process.poll()
        if check and retcode:
            raise CalledProcessError(retcode, process.args, output=stdout, stderr=stderr)
    return CompletedProcess(process.args, retcode, stdout, stderr)


def check_output(*popenargs: "Any", timeout: "float | None" = None, **kwargs: "Any") -> "Any":
    """Run a command and return its standard output (as :func:`subprocess.check_output`)."""
    if "stdout" in kwargs:
        raise ValueError("stdout argument not allowed, it will be overridden.")
    if "check" in kwargs:  # as gevent and Python 3.11+: it is always checked
        raise ValueError("check argument not allowed, it will be overridden.")
    if "input" in kwargs and kwargs["input"] is None:
        text = (
            kwargs.get("universal_newlines")
            or kwargs.get("text")
            or kwargs.get("encoding")
            or kwargs.get("errors")
        )
        kwargs["input"] = "" if text else b""
    return run(*popenargs, stdout=PIPE, timeout=timeout, check=True, **kwargs).stdout


def getstatusoutput(
    cmd: "str | bytes | list[Any]", *, encoding: "str | None" = None, errors: "str | None" = None
) -> "tuple[int, str]":
    """``(exitcode, output)`` of a shell command (output without its last newline)."""
    try:
        data = check_output(
            cmd, shell=True, text=True, stderr=STDOUT, encoding=encoding, errors=errors
        )
        exitcode = 0
    except CalledProcessError as ex:
        data = ex.output
        exitcode = ex.returncode
    if data[-1:] == "\n":
        data = data[:-1]
    return exitcode, data


def getoutput(
    cmd: "str | bytes | list[Any]", *, encoding: "str | None" = None, errors: "str | None" = None
) -> str:
    """The output of a shell command (without its last newline)."""
    return getstatusoutput(cmd, encoding=encoding, errors=errors)[1]


# The rest of the standard module.
__imports__ = []
for _name in getattr(__subprocess__, "__all__", []):
    if _name in globals():
        continue
    globals()[_name] = getattr(__subprocess__, _name)
    __imports__.append(_name)
del _name

# The standard module's own objects re-exported by name (gevent's lists: its
# test suite checks that __all__ is exactly these three).
__imports__ = [
    "PIPE",
    "STDOUT",
    "DEVNULL",
    "SubprocessError",
    "CalledProcessError",
    "TimeoutExpired",
    "CompletedProcess",
    "list2cmdline",
] + __imports__
__extensions__ = ["FileObject"]

__all__ = __implements__ + __imports__ + __extensions__

if sys.platform == "win32":  # pragma: no cover
    raise ImportError("greenwheel.subprocess is POSIX only")
