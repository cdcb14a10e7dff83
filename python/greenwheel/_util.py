"""Debugging helpers (gevent.util): run-info dumps, greenlet trees, wrap_errors.

Everything here is for people looking at a live process (a signal handler
that dumps the state of a stuck server, a test that checks a block of code
yields).  Output formats are meant for humans and carry no guarantee, as in
gevent.  What greenwheel does not record is not invented: greenlets keep no
spawning stack (recording it would cost every spawn), so the trees show no
"Spawned at" stacks.
"""

from __future__ import annotations

import gc
import pprint
import sys
import threading
import time
import traceback

from greenlet import getcurrent
from greenlet import greenlet as _RawGreenlet

from ._tracer import GreenletTracer
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import IO, Any, Self

__all__ = [
    "GreenletTree",
    "assert_switches",
    "clear_stack_frames",
    "format_run_info",
    "print_run_info",
    "wrap_errors",
]


class Lazy:
    """A method decorator: computed on first access, then stored on the instance.

    gevent's ``gevent._util.Lazy``. A non-data descriptor, so the stored
    value (an instance attribute of the same name) wins from then on.
    """

    def __init__(self, func):
        self.func = func
        self.__name__ = func.__name__
        self.__doc__ = func.__doc__

    def __get__(self, inst, cls):
        if inst is None:
            return self
        value = self.func(inst)
        inst.__dict__[self.__name__] = value
        return value


class LazyOnClass:
    """Like :class:`Lazy`, but the value is computed once and stored on the class.

    gevent's ``gevent._util.LazyOnClass``: for values every instance shares.
    """

    @classmethod
    def lazy(cls, cls_dict, func):
        """Put a LazyOnClass for *func* into the class namespace *cls_dict*."""
        cls_dict[func.__name__] = cls(func)

    def __init__(self, func, name=None):
        self.func = func
        self.name = name or func.__name__

    def __get__(self, inst, cls):
        if inst is None:
            return self
        value = self.func(inst)
        setattr(cls, self.name, value)
        return value


class wrap_errors:
    """wrap_errors(errors, func): call *func*, returning the exception instead
    of raising it when it is one of *errors* (a class or a tuple of classes).

    For greenlets whose expected failures should be values rather than
    tracebacks printed by the hub::

        job = spawn(wrap_errors(ValueError, int), "x")
        job.join()
        isinstance(job.value, ValueError)  # True, and nothing was printed

    ``str()``, ``repr()`` and attribute lookups are those of *func*.
    """

    def __init__(
        self,
        errors: type[BaseException] | tuple[type[BaseException], ...],
        func: Callable[..., Any],
    ) -> None:
        self.__errors = errors
        self.__func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        func = self.__func
        try:
            return func(*args, **kwargs)
        except self.__errors as ex:
            return ex

    def __str__(self) -> str:
        return str(self.__func)

    def __repr__(self) -> str:
        return repr(self.__func)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__func, name)


def _format_stack(frame, limit, indent):
    lines = []
    for entry in traceback.format_stack(frame, limit):
        lines.extend(indent + line for line in entry.rstrip("\n").split("\n"))
    return lines


class GreenletTree:
    """One greenlet and the greenlets below it, recursively (gevent's layout).

    As in gevent, the tree follows who *spawned* whom
    (``spawning_greenlet``, recorded while ``config.track_greenlet_tree`` is
    on); a greenlet whose spawner is gone, or a raw greenlet, hangs from its
    thread's root greenlet.  The root is the thread's main greenlet, or the
    first greenlet up the parent chain that has a true
    ``greenlet_tree_is_root`` attribute; greenlets with a true
    ``greenlet_tree_is_ignored`` attribute are left out.

    :meth:`forest` gives one tree per native thread (the caller's first);
    :meth:`current_tree` the calling thread's.  The text of
    :meth:`format_lines` is gevent's: a label per greenlet (with
    ``; finished with value ...``, ``; finished with exception ...`` or
    ``; not running``), then its details -- parent, running stack, spawn
    tree locals, greenlet locals -- and its children drawn below it.
    """

    #: Which details :meth:`format_lines` renders when *details* is true.
    #: ``spawning_stacks`` is accepted for gevent's sake: greenwheel does not
    #: record spawning stacks (it would cost every spawn).
    DEFAULT_DETAILS = {
        "running_stacks": True,
        "running_stack_limit": None,
        "spawning_stacks": True,
        "locals": True,
    }

    def __init__(self, greenlet):
        self.greenlet = greenlet
        self.child_trees = []
        self._current = False

    def __getattr__(self, name: str) -> Any:
        # gevent's trees answer for their greenlet (tree.minimal_ident...).
        if name.startswith("__") or name in ("greenlet", "child_trees", "_current"):
            raise AttributeError(name)
        return getattr(self.greenlet, name)

    def add_child(self, tree: GreenletTree) -> None:
        """Add *tree* below this one."""
        if tree is self:
            return
        self.child_trees.append(tree)

    @property
    def root(self) -> bool:
        """True for a thread's main greenlet (it has no parent)."""
        return self.greenlet.parent is None

    def is_current_tree(self) -> bool:
        """True if this tree is the calling thread's (as made by :meth:`forest`)."""
        return self._current

    @staticmethod
    def _root_greenlet(glet):
        while glet.parent is not None and not getattr(glet, "greenlet_tree_is_root", False):
            glet = glet.parent
        return glet

    @staticmethod
    def _spawner(glet):
        ref = getattr(glet, "spawning_greenlet", None)
        return ref() if ref is not None else None

    @classmethod
    def _forest(cls):
        # {root greenlet: tree}, in order, the caller's first.
        mine = cls._root_greenlet(getcurrent())
        trees = {id(mine): cls(mine)}
        trees[id(mine)]._current = True
        roots = {id(mine): trees[id(mine)]}
        # type(), not isinstance(): isinstance() also asks the object for its
        # __class__, and a greenlet-local object answers that by setting itself
        # up for the asking greenlet (running its __init__ there).
        glets = [
            obj
            for obj in gc.get_objects()
            if issubclass(type(obj), _RawGreenlet)
            and not getattr(obj, "greenlet_tree_is_ignored", False)
        ]
        for glet in glets:
            above = cls._spawner(glet)
            if above is None:  # a raw greenlet, or its spawner is gone
                above = cls._root_greenlet(glet)
            if above is cls._root_greenlet(above) and id(above) not in roots:
                roots[id(above)] = trees[id(above)] = cls(above)
            parent_tree = trees.get(id(above))
            if parent_tree is None:
                parent_tree = trees[id(above)] = cls(above)
            tree = trees.get(id(glet))
            if tree is None:
                tree = trees[id(glet)] = cls(glet)
            parent_tree.add_child(tree)
        return roots, trees[id(mine)]

    @classmethod
    def forest(cls) -> list[GreenletTree]:
        """One tree per native thread that has greenlets, the caller's first."""
        return list(cls._forest()[0].values())

    @classmethod
    def current_tree(cls) -> GreenletTree:
        """The calling thread's tree."""
        return cls._forest()[1]

    def format_lines(self, details: bool | dict[str, Any] = True) -> list[str]:
        """The tree as text lines; *details* true (or a dict updating
        :attr:`DEFAULT_DETAILS`) adds each greenlet's details."""
        return self._lines(details, sys._getframe(1))

    def format(self, details: bool | dict[str, Any] = True) -> str:
        """Like :meth:`format_lines`, as one string."""
        return "\n".join(self._lines(details, sys._getframe(1)))

    def __str__(self):
        return "\n".join(self._lines(False, None))

    def _lines(self, details, caller):
        # *caller* stands in for the running greenlet's stack: gr_frame is
        # None while a greenlet runs, and our own frames are no use.
        if isinstance(details, dict):
            details = dict(self.DEFAULT_DETAILS, **details)
        elif details:
            details = dict(self.DEFAULT_DETAILS)
        else:
            details = {}
        return [text for _kind, text in self._render(0, details, caller)]

    def _label(self):
        glet = self.greenlet
        label = repr(glet)
        if not glet:  # not started, or finished
            ready = getattr(glet, "ready", None)
            if ready is not None and ready():
                label += "; finished"
                if glet.value is not None:
                    label += " with value " + repr(glet.value)[:30]
                elif getattr(glet, "exception", None) is not None:
                    label += " with exception " + repr(glet.exception)
            else:
                label += "; not running"
        return label

    def _details(self, details, caller):
        # This greenlet's detail lines (unindented).
        glet = self.greenlet
        out = ["Parent: " + repr(glet.parent)]
        if glet and details.get("running_stacks"):
            frame = caller if glet is getcurrent() else glet.gr_frame
            if frame is not None:
                out.append("Running:")
                out.extend(_stack_lines(frame, details.get("running_stack_limit")))
        spawner = self._spawner(glet)
        tree_locals = getattr(glet, "spawn_tree_locals", None)
        if tree_locals and tree_locals is not getattr(spawner, "spawn_tree_locals", None):
            out.append("Spawn Tree Locals")
            out.extend(pprint.pformat(tree_locals).splitlines())
        if details.get("locals", True):
            from ._local import all_local_dicts_for_greenlet

            found = all_local_dicts_for_greenlet(glet)
            if found:
                out.append("Greenlet Locals:")
                for (kind, ident), values in found:
                    if values:  # a local not set in this greenlet says nothing
                        out.append("  Local %s at %s" % (kind, hex(ident)))
                        out.extend(("    " + pprint.pformat(values)).splitlines())
        return out

    def _sort_key(self):
        # Raw greenlets first, then by ident, running before finished.
        from ._hub import Hub

        glet = self.greenlet
        # The hub counts as a raw greenlet (gevent's has no minimal_ident).
        ident = -1 if isinstance(glet, Hub) else getattr(glet, "minimal_ident", -1)
        ready = getattr(glet, "ready", None)
        return (ident, ready() if ready is not None else False, id(glet.parent))

    def _render(self, depth, details, caller):
        # ("line" | "data", text) entries; a parent re-indents its children's
        # entries, drawing ':' beside the details of the top level's
        # non-last children and '|' beside their subtrees.
        entries = [("line", self._label())]
        if details:
            marker = ":" if depth == 0 else " "
            for text in self._details(details, caller):
                entries.append(("data", " " + marker + "    " + text))
        children = sorted(self.child_trees, key=GreenletTree._sort_key)
        for i, child in enumerate(children):
            last = i == len(children) - 1
            sub = child._render(depth + 1, details, caller)
            entries.append(("line", " +--- " + sub[0][1]))
            data_marker = ":" if depth == 0 and not last else " "
            line_marker = " " if last else "|"
            for kind, text in sub[1:]:
                if kind == "data":
                    entries.append(("data", " " + data_marker + "    " + text))
                else:
                    entries.append(("line", " " + line_marker + "   " + text))
        return entries


def _stack_lines(frame, limit):
    return "".join(traceback.format_stack(frame, limit)).splitlines()


def _thread_names():
    return {ident: thread.name for ident, thread in getattr(threading, "_active", {}).items()}


def format_run_info(
    thread_stacks: bool = True,
    greenlet_stacks: bool = True,
    limit: int | None = None,
    current_thread_ident: int | None = None,
) -> list[str]:
    """The state of every native thread and greenlet, as text lines.

    *thread_stacks* adds each thread's Python stack, *greenlet_stacks* each
    suspended greenlet's; *limit* is passed to :func:`traceback.format_stack`.
    *current_thread_ident* names the thread to mark as current (default:
    the caller's).
    """
    return _run_info(thread_stacks, greenlet_stacks, limit, current_thread_ident, sys._getframe(1))


def _run_info(thread_stacks, greenlet_stacks, limit, current_thread_ident, caller):
    # *caller*: the frame to show for the calling thread and greenlet.
    if current_thread_ident is None:
        current_thread_ident = threading.get_ident()
    lines = []
    banner = "*" * 80
    lines += [banner, "* Threads", banner]
    names = _thread_names()
    for ident, frame in sorted(sys._current_frames().items()):
        mark = " (CURRENT)" if ident == current_thread_ident else ""
        lines.append("Thread 0x%x (%s)%s" % (ident, names.get(ident, "?"), mark))
        if thread_stacks:
            if ident == threading.get_ident():
                frame = caller
            lines.extend(_format_stack(frame, limit, "\t"))
        else:
            lines.append("\t...stack elided...")
        lines.append("")
    lines += [banner, "* Greenlets", banner]
    details = {"running_stacks": greenlet_stacks, "running_stack_limit": limit}
    for tree in GreenletTree.forest():
        lines.append("---- Thread boundary")
        lines.extend(tree._lines(details, caller))
    return lines


def print_run_info(
    thread_stacks: bool = True,
    greenlet_stacks: bool = True,
    limit: int | None = None,
    file: IO[str] | None = None,
) -> None:
    """Write :func:`format_run_info` to *file* (default: ``sys.stderr``)."""
    out = sys.stderr if file is None else file
    try:
        caller = sys._getframe(1)
    except ValueError:  # called straight from C (a loop callback): no Python caller
        caller = None
    for line in _run_info(thread_stacks, greenlet_stacks, limit, None, caller):
        print(line, file=out)


class _FailedToSwitch(AssertionError):
    pass


def clear_stack_frames(frame: FrameType | None) -> None:
    """Clear the local variables of *frame* and of every frame that called it,
    as far as the interpreter allows: a frame still executing (the caller's
    own, a generator's) keeps its locals. Helps release objects referenced
    only from a traceback's frames."""
    while frame is not None:
        try:
            frame.clear()
        except RuntimeError:  # still executing: nothing can be cleared
            pass
        frame = frame.f_back


class _BodyTracer(GreenletTracer):
    # assert_switches' tracer: besides the switch count, whether the body
    # switched (into the hub, with hub_only) and its longest stretch without.

    def __init__(self, hub, hub_only):
        self.hub = hub
        self.hub_only = hub_only
        self.switched = False
        self.last_switch = time.perf_counter()
        self.max_blocked = 0.0
        GreenletTracer.__init__(self)

    def _trace(self, event, args):
        GreenletTracer._trace(self, event, args)
        if event in ("switch", "throw") and (not self.hub_only or args[1] is self.hub):
            now = time.perf_counter()
            self.max_blocked = max(self.max_blocked, now - self.last_switch)
            self.last_switch = now
            self.switched = True


class assert_switches:
    """assert_switches(max_blocking_time=None, hub_only=False): a context
    manager that fails (:exc:`AssertionError`) when its body does not yield.

    Without *max_blocking_time*, the body must switch greenlets at least once
    (into the hub with *hub_only*).  With it, the body may run without
    switching as long as no stretch between two switches (between two
    switches into the hub, with *hub_only*) lasted longer than that many
    seconds; with *hub_only* it must also have switched into the hub at
    least once.  An exception raised by the body is never replaced.

    While the body runs, :attr:`tracer` is the greenlet trace function
    watching it (a :class:`greenwheel._tracer.GreenletTracer`, chained with
    any other, so blocks nest).
    """

    tracer = None

    def __init__(self, max_blocking_time: float | None = None, hub_only: bool = False) -> None:
        self.max_blocking_time = max_blocking_time
        self.hub_only = hub_only
        self.max_blocked = 0.0

    def __enter__(self) -> Self:
        from ._hub import get_hub

        self.max_blocked = 0.0
        self.tracer = _BodyTracer(get_hub(), self.hub_only)
        # The greenlet running the body is the one watched.
        self.tracer.monitor_current_greenlet_blocking()
        return self

    def __exit__(self, t: object, v: object, tb: object) -> None:
        tracer: _BodyTracer = self.tracer  # type: ignore[assignment]  # (set by __enter__)
        self.tracer = None
        tracer.kill()
        tracer.hub = None
        if t is not None:
            return None
        self.max_blocked = max(tracer.max_blocked, time.perf_counter() - tracer.last_switch)
        limit = self.max_blocking_time
        # The headline is gevent's ("To the hub in 0.1000 seconds (max allowed
        # 0.0010 seconds)"): tools that read these reports look for it.
        headline = "%s in %.4f seconds" % (
            "To the hub" if self.hub_only else "To any greenlet",
            self.max_blocked,
        )
        if limit is not None:
            headline += " (max allowed %.4f seconds)" % (limit,)
        if limit is None or self.hub_only:
            # hub_only asks for a visit to the hub, however quick the body (as in gevent).
            if not tracer.switched:
                where = "the hub" if self.hub_only else "another greenlet"
                raise _FailedToSwitch("%s: the body did not switch to %s" % (headline, where))
        if limit is not None and self.max_blocked > limit:
            raise _FailedToSwitch("%s: the body ran that long without switching" % (headline,))
        return None
