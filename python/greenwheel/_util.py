"""Debugging helpers (gevent.util): run-info dumps, greenlet trees, wrap_errors.

Everything here is for people looking at a live process (a signal handler
that dumps the state of a stuck server, a test that checks a block of code
yields).  Output formats are meant for humans and carry no guarantee, as in
gevent.  What greenwheel does not record is not invented: greenlets keep no
spawning stack or spawn-tree locals (recording them costs every spawn), so
the trees show the greenlet parent chain and running stacks only.
"""

import gc
import sys
import threading
import time
import traceback

from greenlet import getcurrent
from greenlet import greenlet as _RawGreenlet

from ._tracer import GreenletTracer

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

    def __init__(self, errors, func):
        self.__errors = errors
        self.__func = func

    def __call__(self, *args, **kwargs):
        func = self.__func
        try:
            return func(*args, **kwargs)
        except self.__errors as ex:
            return ex

    def __str__(self):
        return str(self.__func)

    def __repr__(self):
        return repr(self.__func)

    def __getattr__(self, name):
        return getattr(self.__func, name)


def _root_of(glet):
    while glet.parent is not None:
        glet = glet.parent
    return glet


def _format_stack(frame, limit, indent):
    lines = []
    for entry in traceback.format_stack(frame, limit):
        lines.extend(indent + line for line in entry.rstrip("\n").split("\n"))
    return lines


class GreenletTree:
    """One greenlet and the greenlets it is the parent of, recursively.

    :meth:`forest` gives one tree per native thread (its root is the
    thread's main greenlet); :meth:`current_tree` the calling thread's.
    """

    #: Which details :meth:`format_lines` renders when *details* is true.
    #: ``spawning_stacks`` and ``locals`` are accepted for gevent's sake;
    #: greenwheel does not record either, so they add nothing.
    DEFAULT_DETAILS = {
        "running_stacks": True,
        "running_stack_limit": None,
        "spawning_stacks": True,
        "locals": True,
    }

    def __init__(self, greenlet):
        self.greenlet = greenlet
        self.child_trees = []

    def add_child(self, tree):
        """Add *tree* below this one (a greenlet whose parent is ours)."""
        if tree is self:
            return
        self.child_trees.append(tree)

    @property
    def root(self):
        """True for a thread's main greenlet (it has no parent)."""
        return self.greenlet.parent is None

    def is_current_tree(self):
        """True if this tree belongs to the calling thread."""
        return self.greenlet is _root_of(getcurrent())

    @classmethod
    def forest(cls):
        """One tree per native thread that has greenlets, the caller's first."""
        trees = {}
        for obj in gc.get_objects():
            if isinstance(obj, _RawGreenlet):
                trees[id(obj)] = cls(obj)
        current = getcurrent()
        trees.setdefault(id(current), cls(current))
        roots = []
        for tree in trees.values():
            parent = tree.greenlet.parent
            if parent is None:
                roots.append(tree)
                continue
            parent_tree = trees.get(id(parent))
            if parent_tree is None:
                # A parent gc does not track (it found the child first):
                # give it a node so the child is not lost.
                parent_tree = trees[id(parent)] = cls(parent)
                if parent.parent is None:
                    roots.append(parent_tree)
            parent_tree.add_child(tree)
        mine = _root_of(current)
        roots.sort(key=lambda tree: tree.greenlet is not mine)
        return roots

    @classmethod
    def current_tree(cls):
        """The calling thread's tree."""
        for tree in cls.forest():
            if tree.is_current_tree():
                return tree
        return cls(_root_of(getcurrent()))  # pragma: no cover - forest always has it

    def format_lines(self, details=True):
        """The tree as text lines: a line per greenlet, with its details."""
        return self._lines(details, sys._getframe(1))

    def format(self, details=True):
        """Like :meth:`format_lines`, as one string."""
        return "\n".join(self._lines(details, sys._getframe(1)))

    def __str__(self):
        return "\n".join(self._lines(False, None))

    def _lines(self, details, caller):
        # *caller* stands in for the running greenlet's stack: gr_frame is
        # None while a greenlet runs, and our own frames are no use.
        if details is True:
            details = self.DEFAULT_DETAILS
        elif not details:
            details = {}
        else:
            details = dict(self.DEFAULT_DETAILS, **details)
        lines = []
        self._render(lines, "", "", details, caller)
        return lines

    def _render(self, lines, first, rest, details, caller):
        glet = self.greenlet
        lines.append(first + repr(glet))
        pad = rest + (" :  " if self.child_trees else "    ")
        if details:
            lines.append(pad + "  Parent: %r" % (glet.parent,))
            if details.get("running_stacks"):
                frame = caller if glet is getcurrent() else glet.gr_frame
                if frame is not None:
                    lines.append(pad + "  Running:")
                    limit = details.get("running_stack_limit")
                    lines.extend(_format_stack(frame, limit, pad + "    "))
        for i, child in enumerate(self.child_trees):
            last = i == len(self.child_trees) - 1
            below = rest + ("      " if last else " :    ")
            child._render(lines, rest + " +--- ", below, details, caller)


def _thread_names():
    return {ident: thread.name for ident, thread in getattr(threading, "_active", {}).items()}


def format_run_info(
    thread_stacks=True, greenlet_stacks=True, limit=None, current_thread_ident=None
):
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


def print_run_info(thread_stacks=True, greenlet_stacks=True, limit=None, file=None):
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


def clear_stack_frames(frame):
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

    def __init__(self, max_blocking_time=None, hub_only=False):
        self.max_blocking_time = max_blocking_time
        self.hub_only = hub_only
        self.max_blocked = 0.0

    def __enter__(self):
        from ._hub import get_hub

        self.max_blocked = 0.0
        self.tracer = _BodyTracer(get_hub(), self.hub_only)
        # The greenlet running the body is the one watched.
        self.tracer.monitor_current_greenlet_blocking()
        return self

    def __exit__(self, t, v, tb):
        tracer = self.tracer
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
