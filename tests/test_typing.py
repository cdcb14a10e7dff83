"""What a user's ``mypy --strict`` sees of greenwheel's public API.

A small program is checked the way a user checks theirs (its own directory,
no configuration of ours); the test pins every error and every
``reveal_type`` line, so a regression in the annotations shows up as a diff.
"""

import os
import subprocess
import sys
import textwrap

import pytest

import greenwheel
from greenwheel.event import AsyncResult
from greenwheel.pool import IMap
from greenwheel.queue import Channel, Queue

USER_PROGRAM = """\
import greenwheel
from greenwheel.event import AsyncResult, Event
from greenwheel.local import local
from greenwheel.lock import BoundedSemaphore, Lock, RLock, Semaphore
from greenwheel.pool import Group, Pool
from greenwheel.queue import Channel, Queue


def work(n: int) -> str:
    return str(n)


x: int = greenwheel.sleep(1)
g = greenwheel.spawn(work, 1)
reveal_type(g)
reveal_type(g.get())
reveal_type(g.value)
greenwheel.spawn(work, "1")
reveal_type(greenwheel.Greenlet(work, 2))
reveal_type(greenwheel.spawn_later(0.5, work, 3))
reveal_type(greenwheel.joinall([g], timeout=1))
reveal_type(greenwheel.wait([g]))
reveal_type(greenwheel.wait())
for ready in greenwheel.iwait([g], count=1):
    reveal_type(ready)
greenwheel.kill(g)
greenwheel.killall([g], block=False)
reveal_type(greenwheel.get_hub())

result: AsyncResult[int] = AsyncResult()
result.set(1)
reveal_type(result.get())
reveal_type(Event().wait(timeout=0.1))

q: Queue[int] = Queue()
q.put("one")
reveal_type(q.get())
reveal_type(Channel[bytes]().get)

with greenwheel.Timeout(1):
    pass
reveal_type(greenwheel.with_timeout(1, work, 4))
reveal_type(greenwheel.with_timeout(1, work, 4, timeout_value=None))

pool = Pool(2)
reveal_type(pool.spawn(work, 5))
reveal_type(pool.map(work, [6, 7]))
reveal_type(pool.imap(work, [8]))
for text in Group().imap_unordered(work, [9]):
    reveal_type(text)
pool.spawn(work)

with Lock(), RLock(), Semaphore(2), BoundedSemaphore():
    pass
reveal_type(Semaphore().acquire(timeout=1))

data = local()
data.anything = 1

import signal

from greenwheel.server import StreamServer
from greenwheel.socket import create_connection, socket
from greenwheel.threadpool import ThreadPool


def handle(sock: socket, address: tuple[str, int]) -> None:
    reveal_type(sock.recv(1024))


server = StreamServer(("127.0.0.1", 0), handle)
server.start()
reveal_type(create_connection(("127.0.0.1", server.server_port)))
threads = ThreadPool(2)
reveal_type(threads.spawn(work, 1))
reveal_type(threads.apply(work, (1,)))
threads.spawn(work, "1")
greenwheel.signal_handler(signal.SIGUSR1, print, "received").cancel()

from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from greenwheel.pywsgi import WSGIHandler, WSGIServer


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


wsgi = WSGIServer(("127.0.0.1", 0), hello, log=None, keepalive_timeout=5.0)
reveal_type(wsgi.application)
reveal_type(wsgi.handler_class)
reveal_type(wsgi.get_environ())
reveal_type(WSGIHandler.start_response)
WSGIServer(("127.0.0.1", 0), work)
WSGIServer(("127.0.0.1", 0), hello, max_headers="many")
"""

# file:line: what mypy prints. Line numbers are those of USER_PROGRAM.
EXPECTED = [
    'user.py:13: error: Incompatible types in assignment (expression has type "None", '
    'variable has type "int")  [assignment]',
    'user.py:15: note: Revealed type is "greenwheel._greenlet.Greenlet[str]"',
    'user.py:16: note: Revealed type is "str"',
    'user.py:17: note: Revealed type is "str"',
    'user.py:18: error: Argument 2 to "spawn" has incompatible type "str"; expected "int"'
    "  [arg-type]",
    'user.py:19: note: Revealed type is "greenwheel._greenlet.Greenlet[str]"',
    'user.py:20: note: Revealed type is "greenwheel._greenlet.Greenlet[str]"',
    'user.py:21: note: Revealed type is "list[greenwheel._greenlet.Greenlet[str]]"',
    'user.py:22: note: Revealed type is "list[greenwheel._greenlet.Greenlet[str]]"',
    'user.py:23: note: Revealed type is "bool"',
    'user.py:25: note: Revealed type is "greenwheel._greenlet.Greenlet[str]"',
    'user.py:28: note: Revealed type is "greenwheel._hub.Hub"',
    'user.py:32: note: Revealed type is "int"',
    'user.py:33: note: Revealed type is "bool"',
    'user.py:36: error: Argument 1 to "put" of "SimpleQueue" has incompatible type "str"; '
    'expected "int"  [arg-type]',
    'user.py:37: note: Revealed type is "int"',
    'user.py:38: note: Revealed type is "def (block: bool =, timeout: float | None =) -> bytes"',
    'user.py:42: note: Revealed type is "str"',
    'user.py:43: note: Revealed type is "str | None"',
    'user.py:46: note: Revealed type is "greenwheel._greenlet.Greenlet[str]"',
    'user.py:47: note: Revealed type is "list[str]"',
    'user.py:48: note: Revealed type is "greenwheel._pool.IMap[str]"',
    'user.py:50: note: Revealed type is "str"',
    'user.py:51: error: Missing positional argument "n" in call to "spawn" of "Group"  [call-arg]',
    'user.py:55: note: Revealed type is "bool"',
    'user.py:68: note: Revealed type is "bytes"',
    'user.py:73: note: Revealed type is "greenwheel._socket.socket"',
    'user.py:75: note: Revealed type is "greenwheel._threadpool.ThreadResult[str]"',
    'user.py:76: note: Revealed type is "str"',
    'user.py:77: error: Argument 2 to "spawn" of "ThreadPool" has incompatible type "str"; '
    'expected "int"  [arg-type]',
    'user.py:92: note: Revealed type is "def (dict[str, Any], wsgiref.types.StartResponse) '
    '-> typing.Iterable[bytes]"',
    'user.py:93: note: Revealed type is "type[greenwheel._pywsgi_handler.WSGIHandler]"',
    'user.py:94: note: Revealed type is "dict[str, Any]"',
    'user.py:95: note: Revealed type is "def (self: greenwheel._pywsgi_handler.WSGIHandler, '
    "status: str, headers: list[tuple[str, str]], exc_info: tuple[type[BaseException], "
    'BaseException, types.TracebackType] | tuple[None, None, None] | None =) -> def (bytes)"',
    'user.py:96: error: Argument 2 to "WSGIServer" has incompatible type "Callable[[int], str]"; '
    'expected "Callable[[dict[str, Any], StartResponse], Iterable[bytes]] | None"  [arg-type]',
    'user.py:97: error: Argument "max_headers" to "WSGIServer" has incompatible type "str"; '
    'expected "int"  [arg-type]',
]


def test_user_program_under_mypy_strict(tmp_path):
    pytest.importorskip("mypy")
    (tmp_path / "user.py").write_text(USER_PROGRAM)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-absolute-path",
            "--hide-error-context",
            "--no-pretty",
            "--cache-dir",
            str(tmp_path / "cache"),
            "user.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Full names in reveal_type (mypy shortens str to str unless asked).
    lines = [line.replace(str(tmp_path) + "/", "") for line in proc.stdout.splitlines()]
    assert proc.stderr == ""
    assert lines == EXPECTED, "\n".join(lines)
    assert proc.returncode == 1  # the deliberate errors above


def test_generic_classes_subscript_at_run_time():
    # Greenlet[int] in an annotation evaluated at run time, a subclass of
    # Greenlet[str], and isinstance: the generic base changes none of them.
    def work() -> str:
        return "done"

    class Named(greenwheel.Greenlet[str]):
        pass

    assert greenwheel.Greenlet[int].__origin__ is greenwheel.Greenlet
    glet = Named.spawn(work)
    assert isinstance(glet, greenwheel.Greenlet) and type(glet) is Named
    assert glet.get() == "done"
    typed = greenwheel.Greenlet[str](work)
    typed.start()
    assert typed.get() == "done" and type(typed) is greenwheel.Greenlet
    assert Named.__mro__[:2] == (Named, greenwheel.Greenlet)
    assert greenwheel.Greenlet.__mro__[1].__name__ == "greenlet"

    queue = Queue[int]()
    queue.put(1)
    assert queue.get() == 1 and type(queue) is Queue
    assert Queue[int].__origin__ is Queue and Channel[str].__origin__ is Channel
    result = AsyncResult[int]()
    result.set(2)
    assert result.get() == 2
    assert IMap[str].__origin__ is IMap


def test_program_text_is_what_the_lines_refer_to():
    # EXPECTED names lines by number: keep them pointing at the right code.
    lines = USER_PROGRAM.splitlines()
    assert lines[12] == "x: int = greenwheel.sleep(1)"
    assert lines[17] == 'greenwheel.spawn(work, "1")'
    assert lines[35] == 'q.put("one")'
    assert lines[50] == "pool.spawn(work)"
    assert lines[76] == 'threads.spawn(work, "1")'
    assert lines[95] == 'WSGIServer(("127.0.0.1", 0), work)'
    assert lines[96] == 'WSGIServer(("127.0.0.1", 0), hello, max_headers="many")'
    assert textwrap.dedent(USER_PROGRAM) == USER_PROGRAM


def test_the_annotations_cost_nothing_at_run_time():
    # Importing greenwheel does not import typing (as before it was
    # annotated; see greenwheel._typecheck), and the generic classes keep
    # the bases they had: no typing.Generic in any MRO.
    import greenlet

    paths = {
        os.path.dirname(os.path.dirname(greenwheel.__file__)),
        os.path.dirname(os.path.dirname(greenlet.__file__)),
    }
    code = (
        "import sys\n"
        "import greenwheel, greenwheel.event, greenwheel.pool, greenwheel.queue\n"
        "import greenwheel.lock, greenwheel.local, greenwheel.server, greenwheel.socket\n"
        "print('typing' in sys.modules)\n"
        "classes = [greenwheel.Greenlet, greenwheel.event.AsyncResult, greenwheel.pool.IMap,\n"
        "           greenwheel.queue.Queue, greenwheel.queue.Channel]\n"
        "print([[base.__name__ for base in cls.__mro__] for cls in classes])\n"
    )
    # -S: no site customisation that might import typing first.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sorted(paths))}
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    imported, mros = out.stdout.splitlines()
    assert imported == "False"
    assert mros == str(
        [
            ["Greenlet", "greenlet", "object"],
            ["AsyncResult", "AbstractLinkable", "object"],
            ["IMap", "IMapUnordered", "Greenlet", "greenlet", "object"],
            ["Queue", "SimpleQueue", "_IterateByGet", "object"],
            ["Channel", "_IterateByGet", "object"],
        ]
    )
