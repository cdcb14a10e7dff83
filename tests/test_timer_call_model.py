"""Model-based test of what a reused TimerWatcher calls (issue 19).

Restarting a watcher with the callback it already holds and no arguments
skips the stored-call lock on a pointer comparison (``bare_callback`` in
rust/py/watchers/base.rs). This drives random sequences of everything that
writes the stored call - ``start`` (positional, keyword, with and without
arguments), the ``callback`` and ``args`` setters, ``stop`` and firing - and
checks after every step that ``callback``/``args`` read what a plain model
says, and that a firing calls exactly the modelled callback with the
modelled arguments.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from greenwheel._core import Loop


class Rec:
    """A callable with an identity, recording its calls into a shared log."""

    def __init__(self, name, log):
        self.name = name
        self.log = log

    def __call__(self, *args):
        self.log.append((self.name, args))

    def __repr__(self):
        return f"Rec({self.name})"


ARGS = [(), (1,), (1, 2)]

OPS = st.one_of(
    st.tuples(st.just("start"), st.integers(0, 2), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("start_kw"), st.integers(0, 2)),
    st.tuples(st.just("set_callback"), st.integers(-1, 2)),
    st.tuples(st.just("set_args"), st.integers(-1, 2)),
    st.tuples(st.just("stop")),
    st.tuples(st.just("fire")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_reused_timer_calls_what_the_model_says(ops):
    loop = Loop()
    try:
        log = []
        recs = [Rec(i, log) for i in range(3)]
        t = loop.timer(-1.0)  # due at once whenever armed
        # The model: the stored call (callback, args) or None, and whether
        # `args` was set to None (it then reads None; the call gets no args).
        call, args_none, active = None, False, False
        for op in ops:
            kind = op[0]
            if kind == "start":
                _, k, j, with_kw = op
                if with_kw:
                    t.start(recs[k], *ARGS[j], update=False)
                else:
                    t.start(recs[k], *ARGS[j])
                call, args_none, active = (recs[k], ARGS[j]), False, True
            elif kind == "start_kw":
                t.start(callback=recs[op[1]])
                call, args_none, active = (recs[op[1]], ()), False, True
            elif kind == "set_callback":
                if op[1] < 0:
                    t.callback = None
                    call = None
                else:
                    t.callback = recs[op[1]]
                    call = (recs[op[1]], call[1] if call else ())
            elif kind == "set_args":
                func = call[0] if call else None
                if op[1] < 0:
                    t.args = None
                    call, args_none = (func, ()), True
                else:
                    t.args = tuple(ARGS[op[1]])
                    call, args_none = (func, ARGS[op[1]]), False
            elif kind == "stop":
                t.stop()
                active = False
            elif kind == "fire" and active and call and isinstance(call[0], Rec):
                del log[:]
                loop.run()
                # A fired one-shot timer lets go of its call.
                expected = [(call[0].name, () if args_none else call[1])]
                assert log == expected, (ops, op)
                call, active = None, False
            assert t.active == active, (ops, op)
            assert t.callback is (call[0] if call else None), (ops, op)
            assert t.args == (None if args_none or not call else call[1]), (ops, op)
        t.stop()
    finally:
        loop.destroy()
