"""greenwheel.select and greenwheel.selectors: cooperative readiness waiting."""

import os
import select as stdselect
import selectors as stdselectors
import time

import pytest

import greenwheel as gw
from _netutil import run_in_thread
from greenwheel import select as gselect
from greenwheel import selectors as gselectors
from greenwheel import socket as gsocket


@pytest.fixture
def pair():
    a, b = gsocket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_module_surface():
    assert gselect.error is stdselect.error
    assert gselect.POLLIN == stdselect.POLLIN and gselect.POLLOUT == stdselect.POLLOUT
    assert "select" in gselect.__all__ and "poll" in gselect.__all__
    assert gselectors.EVENT_READ == stdselectors.EVENT_READ
    assert gselectors.DefaultSelector is gselectors.GeventSelector
    assert issubclass(gselectors.DefaultSelector, stdselectors.BaseSelector)


# --- select() ------------------------------------------------------------------------


def test_select_ready_at_once(pair):
    a, b = pair
    assert gselect.select([a], [a], [], 1) == ([], [a], [])
    b.sendall(b"x")
    r, w, x = gselect.select([a, b], [], [], None)
    assert r == [a] and w == [] and x == []


def test_select_waits_while_other_greenlets_run(pair):
    a, b = pair
    events = []

    def writer():
        events.append("writer ran")
        b.sendall(b"wake")

    gw.spawn(writer)
    r, w, x = gselect.select([a.fileno()], [], [], 5)
    assert events == ["writer ran"]
    assert r == [a.fileno()]
    assert a.recv(10) == b"wake"


def test_select_timeout_returns_empty(pair):
    a, _ = pair
    start = time.monotonic()
    assert gselect.select([a], [], [], 0.03) == ([], [], [])
    assert 0.02 <= time.monotonic() - start < 5
    # timeout=0 polls without waiting.
    assert gselect.select([a], [], [], 0) == ([], [], [])


def test_select_woken_by_a_thread_writer(pair):
    a, b = pair
    peer_fd = os.dup(b.fileno())

    def write_from_thread():
        os.write(peer_fd, b"t")

    try:
        gw.spawn(run_in_thread, write_from_thread)
        r, _, _ = gselect.select([a], [], [], 5)
    finally:
        os.close(peer_fd)
    assert r == [a]


def test_select_bad_arguments(pair):
    a, _ = pair
    with pytest.raises(ValueError):
        gselect.select([a], [], [], -1)
    with pytest.raises((ValueError, TypeError)):
        gselect.select([object()], [], [], 0)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        gselect.select([r], [], [], 0)


def test_select_with_nothing_to_watch_sleeps():
    start = time.monotonic()
    assert gselect.select([], [], [], 0.02) == ([], [], [])
    assert time.monotonic() - start >= 0.015


def test_select_hangup_is_readable(pair):
    a, b = pair
    g = gw.spawn(gselect.select, [a], [], [], 5)
    gw.sleep(0)
    b.close()
    assert g.get() == ([a], [], [])
    assert a.recv(1) == b""


# --- poll() -----------------------------------------------------------------------------


def test_poll_register_modify_unregister(pair):
    a, b = pair
    p = gselect.poll()
    p.register(a, gselect.POLLIN)
    assert p.poll(0) == []
    b.sendall(b"x")
    assert p.poll(1000) == [(a.fileno(), gselect.POLLIN)]
    p.modify(a, gselect.POLLIN | gselect.POLLOUT)
    assert p.poll() == [(a.fileno(), gselect.POLLIN | gselect.POLLOUT)]
    p.unregister(a)
    with pytest.raises(KeyError):
        p.unregister(a)
    assert p.poll(0) == []


def test_poll_waits_cooperatively_and_times_out(pair):
    a, b = pair
    p = gselect.poll()
    p.register(a.fileno(), gselect.POLLIN)
    start = time.monotonic()
    assert p.poll(30) == []
    assert 0.02 <= time.monotonic() - start < 5
    gw.spawn(b.sendall, b"y")
    assert p.poll(None) == [(a.fileno(), gselect.POLLIN)]
    assert p.poll(-1) == [(a.fileno(), gselect.POLLIN)]


def test_poll_reports_hangup_and_invalid_descriptors(pair):
    a, b = pair
    p = gselect.poll()
    p.register(a, gselect.POLLIN)
    g = gw.spawn(p.poll, 5000)
    gw.sleep(0)
    b.close()
    [(fd, events)] = g.get()
    assert fd == a.fileno()
    assert events & (gselect.POLLIN | gselect.POLLHUP)
    r, w = os.pipe()
    os.close(w)
    q = gselect.poll()
    q.register(r, gselect.POLLIN)
    os.close(r)
    assert q.poll(0) == [(r, gselect.POLLNVAL)]


# --- selectors ----------------------------------------------------------------------------


def test_selector_register_select_and_unregister(pair):
    a, b = pair
    with gselectors.DefaultSelector() as sel:
        key = sel.register(a, gselectors.EVENT_READ, data="a-data")
        assert key.fd == a.fileno() and key.data == "a-data"
        assert sel.get_key(a) is key
        assert list(sel.get_map()) == [a.fileno()]
        assert sel.select(0) == []
        gw.spawn(b.sendall, b"z")
        ready = sel.select(5)
        assert [(k.fileobj, ev) for k, ev in ready] == [(a, gselectors.EVENT_READ)]
        assert a.recv(1) == b"z"
        sel.modify(a, gselectors.EVENT_READ | gselectors.EVENT_WRITE, data="rw")
        ready = sel.select()
        assert [(k.data, ev) for k, ev in ready] == [("rw", gselectors.EVENT_WRITE)]
        sel.unregister(a)
        with pytest.raises(KeyError):
            sel.get_key(a)


def test_selector_timeout_and_other_greenlets(pair):
    a, _ = pair
    ran = []
    sel = gselectors.DefaultSelector()
    sel.register(a, gselectors.EVENT_READ)
    gw.spawn(ran.append, "other")
    start = time.monotonic()
    assert sel.select(0.03) == []
    assert 0.02 <= time.monotonic() - start < 5
    assert ran == ["other"]
    sel.close()
    with pytest.raises(RuntimeError):
        sel.select(0)


def test_selector_many_sockets():
    pairs = [gsocket.socketpair() for _ in range(50)]
    sel = gselectors.DefaultSelector()
    for i, (a, _) in enumerate(pairs):
        sel.register(a, gselectors.EVENT_READ, data=i)

    def writers():
        for i in (7, 31, 49):
            pairs[i][1].sendall(b"!")

    gw.spawn(writers)
    seen = set()
    with gw.Timeout(5):
        while len(seen) < 3:
            for key, _ in sel.select():
                key.fileobj.recv(1)
                seen.add(key.data)
    assert seen == {7, 31, 49}
    sel.close()
    for a, b in pairs:
        a.close()
        b.close()


def test_selector_close_wakes_a_parked_greenlet(pair):
    a, _ = pair
    sel = gselectors.DefaultSelector()
    sel.register(a, gselectors.EVENT_READ)
    g = gw.spawn(sel.select)
    gw.sleep(0)
    sel.close()
    with gw.Timeout(5):
        with pytest.raises(OSError):
            g.get()


# --- a ready answer is still a switch point ----------------------------------------------------


def _consumer_starves_nobody(wait_ready):
    """Call *wait_ready* (which finds a descriptor ready) once: another
    greenlet, spawned just before, must have run by then."""
    ran = []
    g = gw.spawn(ran.append, True)
    wait_ready()
    assert ran == [True]
    g.join()


def test_select_poll_and_selector_yield_even_when_ready(pair):
    a, _ = pair  # always writable
    _consumer_starves_nobody(lambda: gselect.select([], [a], [], 5))
    _consumer_starves_nobody(lambda: gselect.select([], [a], []))
    poller = gselect.poll()
    poller.register(a, gselect.POLLOUT)
    _consumer_starves_nobody(lambda: poller.poll(5000))
    _consumer_starves_nobody(lambda: poller.poll())
    sel = gselectors.DefaultSelector()
    sel.register(a, gselectors.EVENT_WRITE)
    _consumer_starves_nobody(lambda: sel.select(5))
    _consumer_starves_nobody(lambda: sel.select())
    sel.close()


def test_poll_ready_answer_is_fresh_after_the_switch(pair):
    # The other greenlets' turn may consume what was ready: poll answers as
    # the kernel does after that turn, and goes on waiting if nothing is left.
    a, b = pair
    b.sendall(b"x")
    poller = gselect.poll()
    poller.register(a, gselect.POLLIN)
    gw.spawn(a.recv, 1)  # runs during poll's switch and empties a
    gw.spawn_later(0.05, b.sendall, b"y")
    assert poller.poll(5000) == [(a.fileno(), gselect.POLLIN)]
    assert a.recv(1) == b"y"


def test_select_asks_each_fileno_once_when_ready():
    # As the standard select(): objects whose fileno() has side effects see
    # one call each, and the answer holds the objects given.
    r, w = os.pipe()
    calls = []

    class Tracked:
        def fileno(self):
            calls.append(1)
            return w

    try:
        objs = [Tracked(), Tracked()]
        assert gselect.select([], objs, [], 5) == ([], objs, [])
        assert len(calls) == 2
    finally:
        os.close(r)
        os.close(w)


# --- a closed selector ----------------------------------------------------------------------------


def test_selector_after_close_behaves_like_the_stdlib(pair):
    a, _ = pair
    sel = gselectors.DefaultSelector()
    sel.register(a, gselectors.EVENT_READ)
    sel.close()
    sel.close()  # idempotent
    assert sel.get_map() is None
    with pytest.raises(RuntimeError):
        sel.get_key(a)
    with pytest.raises(RuntimeError):
        sel.select(0)
    with pytest.raises(KeyError):
        sel.unregister(a)
    with pytest.raises(KeyError):
        sel.modify(a, gselectors.EVENT_WRITE)
    with gselectors.DefaultSelector() as other:
        other.register(a, gselectors.EVENT_READ)
    assert other.get_map() is None


def test_selector_register_of_a_closed_descriptor_is_a_value_error():
    sock = gsocket.socket()
    os.close(sock.fileno())
    sel = gselectors.DefaultSelector()  # may even take that number
    try:
        with pytest.raises(ValueError, match="Invalid file descriptor"):
            sel.register(sock, gselectors.EVENT_READ)
        assert sel.get_map() is not None and len(sel.get_map()) == 0
    finally:
        sel.close()
        try:
            sock.close()
        except OSError:
            pass


# --- the kernel's answer, replaceable -----------------------------------------------------------


def test_original_select_can_be_replaced_to_drive_the_waiting_path(monkeypatch, pair):
    a, b = pair
    asked = []

    def never_ready(rlist, wlist, xlist, timeout):
        asked.append(timeout)
        return [], [], []

    monkeypatch.setattr(gselect, "_original_select", never_ready)
    gw.spawn(b.sendall, b"x")  # wakes the watcher; the fake kernel still says no
    assert gselect.select([a], [], [], 0.05) == ([], [], [])
    assert asked and set(asked) == {0}


def test_select_on_a_descriptor_closed_before_the_wait(monkeypatch):
    # The fake kernel does not see that the descriptor was closed, so the
    # wait itself meets it: no watcher can start, and that is not an error
    # of its own (the real kernel's next answer reports EBADF).
    sock = gsocket.socket()
    os.close(sock.fileno())
    monkeypatch.setattr(gselect, "_original_select", lambda *args: ([], [], []))
    try:
        assert gselect.select([sock], [], [], 0.01) == ([], [], [])
        monkeypatch.undo()
        with pytest.raises(OSError):
            gselect.select([sock], [], [], 0.01)
    finally:
        try:
            sock.close()
        except OSError:
            pass
