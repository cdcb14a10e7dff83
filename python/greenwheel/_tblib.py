"""Tracebacks that survive pickling (gevent's ``_tblib`` names).

A traceback object cannot be pickled, so an exception sent to another
process (or kept after its frames should be freed) loses where it came
from.  :class:`Traceback` keeps what a traceback shows -- for each level the
file, the line number and the function name, plus the module's ``__name__``
-- as plain attributes, and :meth:`Traceback.as_traceback` turns that back
into a real traceback object that ``raise exc.with_traceback(tb)`` and the
:mod:`traceback` module accept.  :func:`dump_traceback` /
:func:`load_traceback` do the round trip through bytes.

How a real traceback is rebuilt: for each level, a tiny piece of code that
raises, compiled as if it were that file at that line and named after that
function, is run once; the frame it leaves behind stands for the original
one (with none of the original's local variables), and the levels are
chained with ``types.TracebackType``.
"""

import pickle
import re
import types

__all__ = ["Traceback", "TracebackParseError", "Frame", "Code"]


class TracebackParseError(Exception):
    """:meth:`Traceback.from_string` found no traceback in the text."""


class Code:
    """The parts of a code object a traceback shows."""

    def __init__(self, co_filename, co_name):
        self.co_filename = co_filename
        self.co_name = co_name
        self.co_argcount = 0
        self.co_varnames = ()

    def __repr__(self):
        return "<Code %s %r>" % (self.co_name, self.co_filename)


class Frame:
    """The parts of a frame a traceback shows (no local variables)."""

    def __init__(self, co_filename, co_name, f_lineno, module_name=None):
        self.f_code = Code(co_filename, co_name)
        self.f_lineno = f_lineno
        self.f_globals = {"__file__": co_filename, "__name__": module_name or "?"}
        self.f_locals = {}

    @classmethod
    def from_frame(cls, frame, lineno=None):
        code = frame.f_code
        return cls(
            code.co_filename,
            code.co_name,
            frame.f_lineno if lineno is None else lineno,
            frame.f_globals.get("__name__"),
        )

    def clear(self):
        """Nothing to clear (frame API)."""


class _Raised(Exception):
    # What the stand-in code raises; never seen outside this module.
    pass


def _stand_in_frame(frame):
    # A real frame object whose code claims frame's file, line and function.
    lineno = max(int(frame.f_lineno), 1)
    source = "\n" * (lineno - 1) + "raise __greenwheel_tblib_raised"
    code = compile(source, frame.f_code.co_filename, "exec")
    code = code.replace(co_name=frame.f_code.co_name)
    namespace = {
        "__file__": frame.f_code.co_filename,
        "__name__": frame.f_globals.get("__name__", "?"),
        "__greenwheel_tblib_raised": _Raised,
    }
    try:
        exec(code, namespace)
    except _Raised as ex:
        tb = ex.__traceback__.tb_next  # skip this function's own level
        return tb.tb_frame, tb.tb_lasti
    raise AssertionError("the stand-in code did not raise")  # pragma: no cover


class Traceback:
    """A picklable copy of a traceback: :attr:`tb_frame` (a :class:`Frame`),
    :attr:`tb_lineno` and :attr:`tb_next` (the next level, or None), as a
    traceback object has them."""

    def __init__(self, tb):
        # *tb*: a traceback object, or a Traceback (copied).
        levels = []
        while tb is not None:
            frame = tb.tb_frame
            if not isinstance(frame, Frame):
                frame = Frame.from_frame(frame, tb.tb_lineno)
            levels.append((frame, tb.tb_lineno))
            tb = tb.tb_next
        if not levels:
            raise ValueError("a traceback needs at least one level")
        self.tb_frame, self.tb_lineno = levels[0]
        self.tb_next = None
        node = self
        for frame, lineno in levels[1:]:
            nxt = Traceback.__new__(Traceback)
            nxt.tb_frame, nxt.tb_lineno, nxt.tb_next = frame, lineno, None
            node.tb_next = nxt
            node = nxt

    def _levels(self):
        node = self
        while node is not None:
            yield node
            node = node.tb_next

    def as_traceback(self):
        """A real traceback object with the same levels."""
        result = None
        for node in reversed(list(self._levels())):
            frame, lasti = _stand_in_frame(node.tb_frame)
            result = types.TracebackType(result, frame, lasti, node.tb_lineno)
        return result

    def to_dict(self):
        """The levels as plain data (JSON-friendly)."""
        return {
            "levels": [
                {
                    "filename": n.tb_frame.f_code.co_filename,
                    "name": n.tb_frame.f_code.co_name,
                    "lineno": n.tb_lineno,
                    "module": n.tb_frame.f_globals.get("__name__"),
                }
                for n in self._levels()
            ]
        }

    @classmethod
    def from_dict(cls, data):
        levels = data.get("levels") if isinstance(data, dict) else None
        if not levels:
            raise TracebackParseError("no traceback levels in %r" % (data,))
        return cls._from_levels(
            [(d["filename"], d["name"], int(d["lineno"]), d.get("module")) for d in levels]
        )

    #: One "File ..., line N, in NAME" line of a formatted traceback.
    _LINE = re.compile(r'^\s*File "(?P<file>.+)", line (?P<line>\d+)(?:, in (?P<name>.+))?$')

    @classmethod
    def from_string(cls, text, strict=True):
        """The levels named by a formatted traceback's ``File "...", line N, in f``
        lines.  With *strict*, the text must start at ``Traceback (most recent call
        last):``."""
        lines = text.splitlines()
        if strict:
            while lines and not lines[0].startswith("Traceback (most recent call last):"):
                lines.pop(0)
            if not lines:
                raise TracebackParseError("no 'Traceback (most recent call last):' header")
        levels = []
        for line in lines:
            match = cls._LINE.match(line)
            if match:
                levels.append((match["file"], match["name"] or "?", int(match["line"]), None))
        if not levels:
            raise TracebackParseError("no traceback levels in the text")
        return cls._from_levels(levels)

    @classmethod
    def _from_levels(cls, levels):
        first = None
        previous = None
        for filename, name, lineno, module in levels:
            node = cls.__new__(cls)
            node.tb_frame = Frame(filename, name, lineno, module)
            node.tb_lineno = lineno
            node.tb_next = None
            if previous is None:
                first = node
            else:
                previous.tb_next = node
            previous = node
        return first

    def __repr__(self):
        levels = list(self._levels())
        return "<Traceback %d levels, innermost %s:%s in %s>" % (
            len(levels),
            levels[-1].tb_frame.f_code.co_filename,
            levels[-1].tb_lineno,
            levels[-1].tb_frame.f_code.co_name,
        )


def dump_traceback(tb):
    """A traceback (object or :class:`Traceback`) as bytes (None for None)."""
    if tb is None:
        return None
    return pickle.dumps(Traceback(tb).to_dict(), protocol=pickle.HIGHEST_PROTOCOL)


def load_traceback(data):
    """The real traceback object that :func:`dump_traceback` made *data* from."""
    if data is None:
        return None
    return Traceback.from_dict(pickle.loads(data)).as_traceback()
