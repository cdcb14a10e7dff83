"""Greenlet semantics: starting, results, kill, join/get, repr, links."""

import math
import re
import time

import pytest

import greenwheel as gw
from greenwheel import Greenlet, GreenletExit


def simple_greenlet(*args, **kwargs):
    return args, kwargs


# --- creation and starting -----------------------------------------------------


def test_greenlet_does_not_start_until_asked():
    log = []
    g = Greenlet(log.append, 1)
    gw.sleep(0)
    assert log == []
    assert not g.started and not g and not g.dead and not g.ready()
    g.start()
    assert g.started and bool(g)
    g.start()  # starting twice is a no-op
    g.join()
    assert log == [1]
    assert g.dead and g.ready() and g.successful() and not g.started


def test_spawn_order_is_preserved_and_runs_at_next_yield():
    log = []
    for i in range(10):
        gw.spawn(log.append, i)
    assert log == []
    gw.sleep(0)
    assert log == list(range(10))


def test_start_later_and_spawn_later():
    log = []
    start = time.monotonic()
    b = gw.spawn_later(0.02, log.append, "b")
    a = Greenlet(log.append, "a")
    a.start_later(0.005)
    gw.joinall([a, b])
    assert log == ["a", "b"]
    assert time.monotonic() - start >= 0.02
    assert b.started is False and b.successful()


def test_spawn_later_rejects_bad_seconds_and_missing_function():
    with pytest.raises(ValueError):
        gw.spawn_later(math.nan, print)
    with pytest.raises(TypeError):
        gw.spawn_later("1", print)
    with pytest.raises(TypeError):
        gw.spawn_later(1)
    with pytest.raises(ValueError):
        Greenlet(print).start_later(math.nan)


@pytest.mark.parametrize("bad", [1, "text", object()])
def test_non_callable_rejected_at_call(bad):
    with pytest.raises(TypeError):
        Greenlet(bad)
    with pytest.raises(TypeError):
        gw.spawn(bad)


def test_subclass_overriding_run():
    class Worker(Greenlet):
        def __init__(self, n):
            Greenlet.__init__(self)
            self.n = n

        def _run(self):
            return self.n * 2

    w = Worker.spawn(21)
    assert w.get() == 42
    assert re.fullmatch(r"<Worker at 0x[0-9a-f]+: _run>", repr(Worker(1)))


def test_value_exception_and_exc_info(capsys):
    ok = gw.spawn(lambda: "v")
    bad = gw.spawn(lambda: {}["missing"])
    gw.joinall([ok, bad])
    assert ok.value == "v" and ok.exception is None and ok.exc_info is None
    assert ok.successful() and ok.ready()
    assert bad.value is None and isinstance(bad.exception, KeyError)
    assert not bad.successful() and bad.ready()
    t, v, tb = bad.exc_info
    assert t is KeyError and v is bad.exception and tb is not None
    err = capsys.readouterr().err
    assert "KeyError: 'missing'" in err
    assert "<Greenlet at 0x" in err and "failed with KeyError" in err


def test_uncaught_exception_printed_with_greenlet_repr(capsys):
    g = gw.spawn(simple_greenlet_fail, 1, 2)
    g.join()
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "in simple_greenlet_fail" in err
    assert re.search(
        r"<Greenlet at 0x[0-9a-f]+: simple_greenlet_fail\(1, 2\)> failed with ValueError", err
    )


def simple_greenlet_fail(*args):
    raise ValueError(args)


# --- repr / name / ident -----------------------------------------------------------


def test_repr_like_gevent():
    g = Greenlet(simple_greenlet, 1, 2, 3, foo=4)
    assert re.fullmatch(r"<Greenlet at 0x[0-9a-f]+: simple_greenlet\(1, 2, 3, foo=4\)>", repr(g))
    assert hex(id(g)) in repr(g)
    g.start()
    g.join()
    # Cached before the function and arguments were dropped.
    assert re.fullmatch(r"<Greenlet at 0x[0-9a-f]+: simple_greenlet\(1, 2, 3, foo=4\)>", repr(g))

    long = Greenlet(simple_greenlet, "x" * 100)
    assert "'" + "x" * 49 + ")" in repr(long)

    named = Greenlet(simple_greenlet)
    named.name = "worker"
    assert re.fullmatch(r'<Greenlet "worker" at 0x[0-9a-f]+: simple_greenlet>', repr(named))

    plain = Greenlet()
    assert re.fullmatch(r"<Greenlet at 0x[0-9a-f]+: _run>", repr(plain))

    bound = Greenlet([].append)
    assert "<built-in method append of list object" in repr(bound)


def test_name_and_minimal_ident():
    a, b = Greenlet(), Greenlet()
    assert "Greenlet-" not in repr(a)
    ia, ib = a.minimal_ident, b.minimal_ident
    assert ia != ib and ia >= 0 and ib >= 0
    assert a.name == "Greenlet-%d" % ia
    assert '"Greenlet-%d"' % ia in repr(a)
    a.name = "custom"
    assert a.name == "custom"


def test_minimal_ident_reused_after_death():
    import gc

    a = Greenlet()
    ident = a.minimal_ident
    del a
    gc.collect()
    assert Greenlet().minimal_ident == ident


# --- join / get ----------------------------------------------------------------------


def test_join_and_get():
    g = gw.spawn(lambda: (gw.sleep(0.005), "done")[1])
    assert g.join() is None
    assert g.get() == "done"
    assert g.get(block=False) == "done"


def test_join_timeout_returns_none_and_leaves_greenlet_alone():
    g = gw.spawn(gw.sleep, 10)
    start = time.monotonic()
    assert g.join(timeout=0.01) is None
    assert time.monotonic() - start >= 0.01
    assert not g.ready()
    g.kill()


def test_get_raises_timeout_when_not_ready():
    g = gw.spawn(gw.sleep, 10)
    with pytest.raises(gw.Timeout):
        g.get(block=False)
    with pytest.raises(gw.Timeout):
        g.get(timeout=0.005)
    g.kill()
    assert isinstance(g.get(), GreenletExit)


def test_get_reraises_with_original_traceback(quiet_hub):
    def fails():
        raise ValueError("inner")

    g = gw.spawn(fails)
    for _ in range(2):
        with pytest.raises(ValueError, match="inner") as info:
            g.get()
        assert info.traceback[-1].name == "fails"


def test_join_from_several_greenlets():
    target = gw.spawn(gw.sleep, 0.005)
    joiners = [gw.spawn(target.join) for _ in range(5)]
    gw.joinall(joiners)
    assert target.dead and all(j.successful() for j in joiners)


def test_greenlet_as_context_manager():
    with gw.spawn(lambda: 3) as g:
        pass
    assert g.value == 3

    victim = gw.spawn(gw.sleep, 10)
    with pytest.raises(KeyError):
        with victim:
            raise KeyError
    victim.join()
    assert isinstance(victim.exception, KeyError)


# --- kill ------------------------------------------------------------------------------


def test_kill_is_successful_with_exception_as_value():
    g = gw.spawn(gw.sleep, 10)
    gw.sleep(0)
    g.kill()
    assert g.dead and g.ready() and g.successful()
    assert isinstance(g.value, GreenletExit)
    assert g.exception is None


def test_kill_unstarted_greenlet_never_runs():
    log = []
    g = Greenlet(log.append, 1)
    g.kill()
    assert g.dead and g.ready() and g.successful()
    g.start()
    gw.sleep(0.001)
    assert log == []

    spawned = gw.spawn(log.append, 2)
    spawned.kill()
    later = gw.spawn_later(0.001, log.append, 3)
    later.kill()
    gw.sleep(0.005)
    assert log == []
    assert spawned.dead and later.dead


def test_kill_with_custom_exception(quiet_hub):
    g = gw.spawn(gw.sleep, 10)
    gw.sleep(0)
    g.kill(KeyError)
    assert isinstance(g.exception, KeyError)
    unstarted = Greenlet(print)
    unstarted.kill(ValueError("why"))
    assert isinstance(unstarted.exception, ValueError)
    assert str(unstarted.exception) == "why"


def test_kill_non_blocking_delivers_later():
    log = []

    def victim():
        try:
            gw.sleep(10)
        except GreenletExit:
            log.append("killed")

    g = gw.spawn(victim)
    gw.sleep(0)
    g.kill(block=False)
    assert log == [] and not g.dead
    g.join()
    assert log == ["killed"]


def test_kill_timeout_when_target_swallows(quiet_hub):
    def stubborn():
        while True:
            try:
                gw.sleep(10)
            except GreenletExit:
                pass

    g = gw.spawn(stubborn)
    gw.sleep(0)
    start = time.monotonic()
    g.kill(timeout=0.01)
    assert time.monotonic() - start >= 0.01
    assert not g.dead
    # Something it does not swallow ends it.
    g.kill(KeyError, block=False)
    g.join()
    assert isinstance(g.exception, KeyError)


def test_kill_ready_greenlet_is_noop():
    g = gw.spawn(lambda: 1)
    g.join()
    g.kill()
    g.kill(block=False)
    assert g.value == 1


def test_kill_rejects_bad_timeout():
    g = gw.spawn(gw.sleep, 10)
    with pytest.raises(ValueError):
        g.kill(timeout=math.nan)
    g.kill()


def test_greenlet_kills_itself():
    log = []

    def suicidal():
        gw.getcurrent().kill()
        log.append("not reached")

    g = gw.spawn(suicidal)
    g.join()
    assert log == [] and g.successful() and isinstance(g.value, GreenletExit)


def test_killall():
    log = []

    def worker(i):
        try:
            gw.sleep(10)
        except GreenletExit:
            log.append(i)

    greenlets = [gw.spawn(worker, i) for i in range(5)]
    gw.sleep(0)
    gw.killall(greenlets)
    assert sorted(log) == list(range(5))
    assert all(g.dead for g in greenlets)

    unstarted = [gw.spawn(log.append, "never") for _ in range(3)]
    gw.killall(unstarted)
    gw.sleep(0)
    assert "never" not in log

    more = [gw.spawn(gw.sleep, 10) for _ in range(3)]
    gw.sleep(0)
    gw.killall(iter(more), block=False)
    assert not any(g.dead for g in more)
    gw.joinall(more)
    assert all(g.dead for g in more)


def test_killall_timeout_raises(quiet_hub):
    def stubborn():
        while True:
            try:
                gw.sleep(10)
            except GreenletExit:
                pass

    g = gw.spawn(stubborn)
    gw.sleep(0)
    with pytest.raises(gw.Timeout):
        gw.killall([g], timeout=0.01)
    assert not g.dead
    gw.kill(g, KeyError)
    g.join()


def test_killall_raw_greenlets():
    log = []

    def raw():
        try:
            gw.sleep(10)
        except GreenletExit:
            log.append("raw")

    r = gw.spawn_raw(raw)
    gw.sleep(0)
    gw.killall([r])
    assert log == ["raw"] and r.dead


# --- joinall -----------------------------------------------------------------------------


def test_joinall_returns_finished_greenlets():
    gs = [gw.spawn(gw.sleep, d) for d in (0.01, 0.001, 10)]
    done = gw.joinall(gs, timeout=0.05)
    assert done == [gs[1], gs[0]]
    assert gw.joinall(gs, count=0) == []
    gs[2].kill()
    assert set(gw.joinall(gs)) == set(gs)


def test_joinall_raise_error(quiet_hub):
    def fails():
        gw.sleep(0.001)
        raise KeyError("x")

    gs = [gw.spawn(gw.sleep, 0.05), gw.spawn(fails)]
    with pytest.raises(KeyError):
        gw.joinall(gs, raise_error=True)
    assert not gs[0].ready()
    gs[0].kill()


# --- links ---------------------------------------------------------------------------------


def test_rawlink_called_from_hub_once():
    calls = []

    def callback(source):
        calls.append((source, gw.getcurrent()))

    g = gw.spawn(lambda: 1)
    g.rawlink(callback)
    g.join()
    gw.sleep(0)
    assert calls == [(g, gw.get_hub())]


def test_link_callable_runs_in_own_greenlet_and_may_block():
    calls = []

    def callback(source):
        gw.sleep(0.001)  # allowed: not in the hub
        calls.append((source.value, gw.getcurrent() is not gw.get_hub()))

    g = gw.spawn(lambda: 7)
    g.link(callback)
    g.join()
    gw.sleep(0.01)
    assert calls == [(7, True)]


def test_link_value_and_link_exception_callables(quiet_hub):
    log = []
    ok = gw.spawn(lambda: 1)
    bad = gw.spawn(lambda: 1 / 0)
    for g in (ok, bad):
        g.link_value(lambda s: log.append(("value", s)))
        g.link_exception(lambda s: log.append(("exception", s)))
    gw.joinall([ok, bad])
    gw.sleep(0.001)
    assert sorted(log, key=repr) == sorted([("value", ok), ("exception", bad)], key=repr)


def test_links_added_after_death_still_fire():
    g = gw.spawn(lambda: 1)
    g.join()
    log = []
    g.rawlink(log.append)
    g.link(lambda s: log.append(("link", s)))
    gw.sleep(0.001)
    assert log == [g, ("link", g)]


def test_unlink():
    log = []
    g = gw.spawn(gw.sleep, 0.001)
    g.rawlink(log.append)
    g.link(log.append)
    g.unlink(log.append)
    g.unlink(log.append)
    g.unlink(log.append)  # nothing left: no error
    g.join()
    gw.sleep(0.001)
    assert log == []


def test_unlink_all_and_has_links():
    g = gw.spawn(gw.sleep, 0.001)
    assert not g.has_links()
    g.rawlink(print)
    g.rawlink(print)
    assert g.has_links() == 2
    g.unlink_all()
    assert not g.has_links()
    g.join()


def test_rawlink_requires_callable():
    g = gw.spawn(lambda: 1)
    with pytest.raises(TypeError):
        g.rawlink(None)
    with pytest.raises(TypeError):
        g.link(42)


def test_link_error_is_reported_and_other_links_still_run(quiet_hub):
    log = []

    def bad_link(source):
        raise RuntimeError("bad link")

    g = gw.spawn(lambda: 1)
    g.rawlink(bad_link)
    g.rawlink(log.append)
    g.join()
    gw.sleep(0.001)
    assert log == [g]
    assert "RuntimeError: bad link" in quiet_hub.captured.getvalue()


def test_link_to_current_greenlet_raises_linked_completed():
    g = gw.spawn(lambda: 1)
    g.link()
    with pytest.raises(gw.LinkedCompleted) as info:
        gw.sleep(1)
    assert info.value.source is g
    assert str(info.value) == "%r completed successfully" % (g,)


def test_link_to_current_failed(quiet_hub):
    def fails():
        raise ValueError

    g = gw.spawn(fails)
    g.link()
    with pytest.raises(gw.LinkedFailed) as info:
        gw.sleep(1)
    assert str(info.value) == "%r failed with ValueError" % (g,)
    assert not isinstance(info.value, gw.LinkedCompleted)


def test_link_to_current_killed():
    g = gw.spawn(gw.sleep, 10)
    g.link()
    with pytest.raises(gw.LinkedKilled) as info:
        g.kill(block=False)
        gw.sleep(1)
    assert str(info.value) == "%r returned GreenletExit" % (g,)
    assert isinstance(info.value, gw.LinkedCompleted)
    assert isinstance(info.value, gw.LinkedFailed)


def test_link_to_current_after_death_raises_immediately():
    g = gw.spawn(lambda: 1)
    g.join()
    with pytest.raises(gw.LinkedCompleted):
        g.link()
    g.link_exception()  # does not apply: nothing raised


def test_link_to_other_greenlet():
    log = []

    def receiver():
        try:
            gw.sleep(10)
        except gw.LinkedExited as ex:
            log.append(type(ex))

    r = gw.spawn(receiver)
    raw_log = []

    def raw_receiver():
        try:
            gw.sleep(10)
        except gw.LinkedCompleted as ex:
            raw_log.append(ex.source)

    raw = gw.spawn_raw(raw_receiver)
    source = gw.spawn(gw.sleep, 0.001)
    source.link(r)
    source.link(raw)
    gw.sleep(0)
    r.join()
    gw.sleep(0)
    assert log == [gw.LinkedCompleted]
    assert raw_log == [source]


def test_link_value_and_link_exception_to_greenlet(quiet_hub):
    ok = gw.spawn(lambda: 1)
    ok.link_exception()  # does not fire
    bad = gw.spawn(lambda: 1 / 0)
    bad.link_value()  # does not fire
    gw.joinall([ok, bad])
    gw.sleep(0.001)

    ok2 = gw.spawn(lambda: 1)
    ok2.link_value()
    with pytest.raises(gw.LinkedCompleted):
        gw.sleep(1)


def test_link_to_dead_receiver_is_ignored():
    receiver = gw.spawn(lambda: None)
    receiver.join()
    source = gw.spawn(lambda: 1)
    source.link(receiver)
    source.join()
    gw.sleep(0.001)  # nothing raised anywhere


def test_unlink_receiver_greenlet():
    g = gw.spawn(gw.sleep, 0.001)
    g.link()
    g.unlink()
    g.join()
    gw.sleep(0.002)


def test_spawn_link_helpers(quiet_hub):
    with pytest.raises(gw.LinkedCompleted):
        gw.spawn_link(lambda: 1)
        gw.sleep(1)
    with pytest.raises(gw.LinkedCompleted):
        gw.spawn_link_value(lambda: 1)
        gw.sleep(1)
    with pytest.raises(gw.LinkedFailed):
        gw.spawn_link_exception(lambda: 1 / 0)
        gw.sleep(1)
    quiet = gw.spawn_link_exception(lambda: 1)
    gw.sleep(0.001)
    assert quiet.successful()
    g = Greenlet.spawn_link_value(lambda: 2)
    with pytest.raises(gw.LinkedCompleted):
        g.join()


# --- throw / misc ----------------------------------------------------------------------------


def test_throw_from_hub_into_unstarted_greenlet_reports_death():
    log = []
    linked = gw.event.Event()
    g = Greenlet(log.append, 1)
    g.rawlink(lambda s: (log.append("linked"), linked.set()))
    gw.get_hub().loop.run_callback(g.throw)
    # The link runs from a later loop callback: wait for it rather than for a
    # wall-clock interval (a 1 ms sleep could end first on a loaded machine).
    assert linked.wait(timeout=10)
    assert g.dead and g.successful() and isinstance(g.value, GreenletExit)
    assert log == ["linked"]


def test_loop_property():
    assert Greenlet().loop is gw.get_hub().loop


def test_system_exit_in_greenlet_reaches_main():
    def leave():
        raise SystemExit(5)

    g = gw.spawn(leave)
    with pytest.raises(SystemExit):
        gw.sleep(0.01)
    g.join()
    assert isinstance(g.exception, SystemExit)


def test_run_attribute_is_the_function_until_the_greenlet_ends():
    import weakref

    class Job:
        def __call__(self, x):
            return x + 1

    job = Job()
    g = Greenlet(job, 1)
    assert g._run is job
    ref = weakref.ref(job)
    del job
    g.start()
    assert g.get() == 2
    # The finished greenlet no longer keeps its function alive.
    assert ref() is None
    assert g._run() is None  # back to the (no-op) default method
    plain = Greenlet()
    assert plain._run() is None
    plain.start()
    assert plain.get() is None


def test_run_assigned_after_construction_and_subclass_run_argument():
    g = Greenlet()
    g._run = lambda: "assigned"
    g.start()
    assert g.get() == "assigned"

    class Sub(Greenlet):
        def _run(self):
            return "method"

    assert Sub.spawn().get() == "method"
    assert Sub.spawn(lambda: "argument").get() == "argument"


def test_greenlets_accept_new_attributes():
    # Slots hold the hot fields, but greenlets still take arbitrary attributes.
    g = gw.spawn(simple_greenlet)
    g.request_id = 7
    g.join()
    assert g.request_id == 7
    assert g.__dict__ == {"request_id": 7}


def test_args_and_kwargs_replaced_before_start_are_used():
    # run() accepts what f(*args, **kwargs) accepts: any iterable, any mapping.
    from types import MappingProxyType

    g = Greenlet(simple_greenlet)
    g.args = [1, 2]
    g.kwargs = MappingProxyType({"k": 3})
    g.start()
    assert g.get() == ((1, 2), {"k": 3})
    # Finishing released them without touching the read-only mapping.
    assert g.args == () and g.kwargs == {}


def test_function_and_arguments_released_even_if_reporting_raises(quiet_hub):
    class Reporter(Greenlet):
        def _report_result(self, result):
            raise RuntimeError("reporting failed")

    g = Reporter(simple_greenlet, 1)
    g.start()
    gw.sleep(0)
    assert g.dead
    assert g.args == ()
    assert g._run_fn is None
    # The error escaped the greenlet, so the hub reported it.
    assert "RuntimeError: reporting failed" in quiet_hub.captured.getvalue()


def test_failure_traceback_starts_at_the_function():
    def inner():
        raise KeyError("deep")

    def outer():
        inner()

    g = gw.spawn(outer)
    g.join()
    tb = g.exc_info[2]
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert names == ["outer", "inner"]


def test_native_function_greenlets_run_and_sleep():
    # A greenlet whose function is native has no Python frame at all.
    glets = [gw.spawn(gw.sleep, 0.001 * (i % 3)) for i in range(50)]
    glets.append(gw.spawn(sorted, [3, 1, 2]))
    gw.joinall(glets)
    assert all(g.successful() for g in glets)
    assert glets[-1].value == [1, 2, 3]
