"""gevent's private module names that applications import, and what they do here.

``gevent._waiter``, ``_ident``, ``_imap``, ``_socketcommon``, ``_socket3``,
``_tblib``, ``_threading``, ``_tracer`` and ``resolver._addresses`` are private in gevent, yet code
written against gevent imports them (a ``Waiter`` for a callback bridge, the
tracer for a home-made blocking detector...).  greenwheel's are the real
implementation under those names: each test drives one as such code would.
"""

import gc
import pickle
import threading
import time
import traceback

import greenlet
import pytest

import greenwheel as gw
import greenwheel.pool
import greenwheel.socket
from greenwheel import (
    _ident,
    _imap,
    _socket3,
    _socketcommon,
    _tblib,
    _threading,
    _tracer,
    _waiter,
)
from greenwheel.resolver import _addresses


def test_waiter_hands_a_value_from_the_hub_to_a_greenlet():
    waiter = _waiter.Waiter()
    gw.get_hub().loop.run_callback(waiter.switch, "from the hub")
    assert waiter.get() == "from the hub"

    multiple = _waiter.MultipleWaiter()
    for value in (1, 2):
        gw.get_hub().loop.run_callback(multiple.switch, value)
    assert [multiple.get(), multiple.get()] == [1, 2]  # none is lost


def test_ident_registry_reuses_the_idents_of_dead_objects():
    class Target:
        pass

    registry = _ident.IdentRegistry()
    first, second = Target(), Target()
    assert [registry.get_ident(first), registry.get_ident(second)] == [0, 1]
    assert registry.get_ident(first) == 0 and len(registry) == 2
    del first
    gc.collect()
    assert len(registry) == 1
    assert registry.get_ident(Target()) == 0  # the smallest free one


def test_imap_iterators_are_the_pools():
    pool = gw.pool.Pool(3)
    assert isinstance(pool.imap(abs, [-1]), _imap.IMap)
    assert list(pool.imap(lambda x: x * 2, range(5))) == [0, 2, 4, 6, 8]
    assert sorted(pool.imap_unordered(abs, [-3, -1, -2])) == [1, 2, 3]
    assert isinstance(pool.imap_unordered(abs, []), _imap.IMapUnordered)


def test_socketcommon_waits_and_resolves_cooperatively():
    left, right = gw.socket.socketpair()
    try:
        later = gw.spawn_later(0.05, right.send, b"x")
        started = time.monotonic()
        _socketcommon.wait_read(left.fileno(), timeout=5)
        assert left.recv(1) == b"x" and time.monotonic() - started < 4
        later.join()
    finally:
        left.close()
        right.close()
    assert _socketcommon.SOCK_STREAM == gw.socket.SOCK_STREAM  # the stdlib's constants
    # A numeric IPv6 address with a scope needs no look-up: the same tuple back.
    addr = ("2607:f8b0:4000:80e::200e", 80, 0, 9)

    class Sock:
        family = _socketcommon.AF_INET6

    assert _socketcommon._resolve_addr(Sock, addr) is addr
    assert _socketcommon.getaddrinfo("127.0.0.1", 80)[0][4][0] == "127.0.0.1"


def test_threading_queue_hands_items_between_os_threads():
    queue = _threading.Queue()
    got = []

    def consumer():
        cookie = queue.allocate_cookie()
        got.append(queue.get(cookie))
        queue.task_done()

    thread = threading.Thread(target=consumer)
    thread.start()
    queue.put("item")
    thread.join(10)
    assert got == ["item"] and queue.unfinished_tasks == 0
    started = time.monotonic()
    with pytest.raises(_threading.EmptyTimeout):
        queue.get(queue.allocate_cookie(), 0.05)
    assert 0.04 < time.monotonic() - started < 5
    with pytest.raises(ValueError):
        queue.task_done()
    lock = _threading.Lock()
    assert lock.acquire() and not lock.acquire(False)
    lock.release()


def test_addresses_tell_numeric_addresses_from_names():
    assert _addresses.is_ipv4_addr("192.0.2.1") and _addresses.is_ipv4_addr(b"10.0.0.1")
    for not_v4 in ("1.2.3", "0x7f.0.0.1", "example.com", "", None, "::1"):
        assert not _addresses.is_ipv4_addr(not_v4), not_v4
    assert _addresses.is_ipv6_addr("::1") and _addresses.is_ipv6_addr("fe80::1%eth0")
    for not_v6 in ("fe80::1%", "192.0.2.1", "zz::", None):
        assert not _addresses.is_ipv6_addr(not_v6), not_v6
    with pytest.raises(_addresses.AddressSyntaxError):
        _addresses.ipv4_packed("256.0.0.1")
    assert _addresses.ipv6_packed("::1") == b"\0" * 15 + b"\1"


def test_tracer_counts_switches_and_chains_with_the_previous_function():
    seen = []

    def user_trace(event, args):
        seen.append(event)

    previous = greenlet.settrace(user_trace)
    try:
        tracer = _tracer.GreenletTracer()
        assert greenlet.gettrace() is tracer and tracer.previous_trace_function is user_trace
        gw.sleep(0)
        assert tracer.greenlet_switch_counter >= 2 and seen  # both saw the switches
        hub = gw.get_hub()
        assert tracer.did_block_hub(hub) is False  # it switched
        tracer.monitor_current_greenlet_blocking()
        blocked = tracer.did_block_hub(hub)  # no switch since: this greenlet holds the thread
        assert blocked == (True, greenlet.getcurrent())
        tracer.kill()
        assert greenlet.gettrace() is user_trace
    finally:
        greenlet.settrace(previous)


def test_tracers_killed_out_of_order_leave_the_chain_whole():
    outer = _tracer.GreenletTracer()
    inner = _tracer.GreenletTracer()
    outer.kill()  # not on top: it stays, forwarding to what was below it
    assert greenlet.gettrace() is inner and inner.previous_trace_function is outer
    gw.sleep(0)
    assert inner.greenlet_switch_counter > 0 and outer.greenlet_switch_counter == 0
    inner.kill()  # skips the dead outer one too
    assert greenlet.gettrace() is None


def test_max_switch_tracer_measures_the_longest_stretch():
    hub = gw.get_hub()
    tracer = _tracer.MaxSwitchTracer(hub, 0.05)
    try:
        gw.sleep(0)
        assert not tracer.did_block_hub(hub)
        time.sleep(0.1)  # the real sleep: no switch for 0.1 s
        gw.sleep(0)
        blocked = tracer.did_block_hub(hub)
        assert blocked and tracer.max_blocking >= 0.1
    finally:
        tracer.kill()
    assert greenlet.gettrace() is None


def test_socket3_is_the_cooperative_socket_module():
    server = _socket3.socket()
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        # accept() in a greenlet, the connection from this one: they overlap.
        accepted = gw.spawn(server.accept)
        client = _socket3.create_connection(server.getsockname(), timeout=5)
        conn, _ = accepted.get(timeout=5)
        client.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        assert isinstance(conn, greenwheel.socket.socket)
        conn.close()
        client.close()
    finally:
        server.close()
    assert set(_socket3.__all__) == set(greenwheel.socket.__all__)


@pytest.mark.parametrize("name", ["queue", "subprocess", "contextvars"])
def test_all_is_what_the_module_implements_imports_and_adds(name):
    # gevent's declaration of a module that stands in for a standard one:
    # its own objects, the standard library's (the very same objects), and
    # names the standard module does not have.
    import importlib

    ours = importlib.import_module("greenwheel." + name)
    std = importlib.import_module(name)
    parts = [getattr(ours, attr, []) or [] for attr in ("__implements__", "__imports__")]
    extensions = getattr(ours, "__extensions__", [])
    assert sorted(parts[0] + parts[1] + extensions) == sorted(ours.__all__)
    for imported in parts[1]:
        assert getattr(ours, imported) is getattr(std, imported), imported
    for implemented in parts[0]:
        assert getattr(ours, implemented) is not getattr(std, implemented, None), implemented
    for extension in extensions:
        assert not hasattr(std, extension), extension


def _fails_two_levels_down():
    def inner():
        raise KeyError("deep")

    inner()


def test_tblib_tracebacks_survive_pickling():
    try:
        _fails_two_levels_down()
    except KeyError as ex:
        original = traceback.extract_tb(ex.__traceback__)
        copy = pickle.loads(pickle.dumps(_tblib.Traceback(ex.__traceback__)))
        data = _tblib.dump_traceback(ex.__traceback__)
    where = [(f.filename, f.lineno, f.name) for f in original]
    assert [f[2] for f in where][-2:] == ["_fails_two_levels_down", "inner"]
    rebuilt = copy.as_traceback()
    assert [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(rebuilt)] == where
    # A real traceback: an exception can be raised with it.
    with pytest.raises(KeyError) as info:
        raise KeyError("again").with_traceback(_tblib.load_traceback(data))
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert names[-2:] == ["_fails_two_levels_down", "inner"]
    # From a formatted traceback's text, too.
    text = "".join(traceback.format_list(original))
    parsed = _tblib.Traceback.from_string("Traceback (most recent call last):\n" + text)
    assert parsed.as_traceback().tb_next is not None
    with pytest.raises(_tblib.TracebackParseError):
        _tblib.Traceback.from_string("no traceback here")
