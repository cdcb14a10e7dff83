"""greenwheel._interfaces: the loop, its watchers and callbacks provide the
zope.interface descriptions gevent publishes (gevent._interfaces)."""

import pytest
from zope.interface.verify import verifyObject

import greenwheel
from greenwheel._core import Loop
from greenwheel._interfaces import ICallback, ILoop, IWatcher


@pytest.fixture
def loop():
    lp = Loop(default=False)
    yield lp
    lp.destroy()


def test_loop_provides_iloop(loop):
    assert verifyObject(ILoop, loop)
    assert ILoop.providedBy(loop)


def test_hub_loop_provides_iloop():
    assert verifyObject(ILoop, greenwheel.get_hub().loop)


def test_callbacks_provide_icallback(loop):
    cb = loop.run_callback(lambda: None)
    assert verifyObject(ICallback, cb)
    ts = loop.run_callback_threadsafe(lambda: None)
    assert verifyObject(ICallback, ts)
    loop.run()


@pytest.mark.parametrize(
    "make",
    [
        lambda lp: lp.timer(1),
        lambda lp: lp.io(0, 1),
        lambda lp: lp.async_(),
        lambda lp: lp.idle(),
        lambda lp: lp.prepare(),
        lambda lp: lp.check(),
        lambda lp: lp.fork(),
        lambda lp: lp.stat("."),
        lambda lp: lp.child(1),
    ],
)
def test_watchers_provide_iwatcher(loop, make):
    watcher = make(loop)
    try:
        assert verifyObject(IWatcher, watcher)
    finally:
        watcher.close()
