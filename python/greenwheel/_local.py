"""Greenlet-local storage: the :class:`threading.local` interface, per greenlet.

Import it from :mod:`greenwheel.local`::

    data = local()
    data.user = "alice"        # seen only by the current greenlet

Each greenlet that touches a :class:`local` gets its own attribute dict.
Subclasses may define ``__init__`` (called once per greenlet, with the
arguments the instance was created with), methods, properties and class
attributes as defaults; ``__slots__`` of a subclass are shared by all
greenlets.  A greenlet's dict is dropped when the greenlet finishes (a
:class:`~greenwheel.Greenlet`) or is garbage collected (a raw greenlet), and
every greenlet's dict when the local object itself goes away.
"""

from __future__ import annotations

from weakref import ref

from greenlet import getcurrent

from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, Self, TypeAlias

    from greenlet import greenlet as _RawGreenlet

    #: A greenlet's entry: (weak reference to it, its attribute dict, its cleanup).
    _Entry: TypeAlias = tuple[Any, dict[str, Any], Any]

__all__ = ["all_local_dicts_for_greenlet", "local"]

#: id(local) -> weak reference, for every live local: what
#: :func:`all_local_dicts_for_greenlet` looks through (by id, not a WeakSet:
#: a subclass may be unhashable, a Mapping say).
_all_locals: dict[int, Any] = {}


class _GreenletDied:
    """Link / weakref callback: drop one greenlet's dict from a local."""

    __slots__ = ("key", "wrdicts")

    def __init__(self, key: int, wrdicts: ref[_Dicts]) -> None:
        self.key = key
        self.wrdicts = wrdicts

    def __call__(self, _unused: object) -> None:
        dicts = self.wrdicts()
        if dicts is not None:
            dicts.pop(self.key, None)


class _Dicts(dict[int, "_Entry"]):
    """id(greenlet) -> (weakref to the greenlet, its attribute dict, its cleanup)."""

    __slots__ = ("__weakref__",)


class _LocalDied:
    """Weakref callback: a local went away; unlink its cleanups from live greenlets."""

    __slots__ = ("dicts", "key")

    def __init__(self, dicts: _Dicts, key: int) -> None:
        self.dicts: _Dicts | None = dicts
        self.key = key

    def __call__(self, wref: ref[Any]) -> None:
        if _all_locals.get(self.key) is wref:
            del _all_locals[self.key]
        dicts: _Dicts = self.dicts  # type: ignore[assignment]  # (a weakref callback runs once)
        self.dicts = None
        for wrglet, _, cleanup in list(dicts.values()):
            glet = wrglet()
            unlink = getattr(glet, "unlink", None)
            if unlink is not None:
                try:
                    unlink(cleanup)
                except Exception:  # a broken greenlet must not break GC
                    pass
        dicts.clear()


# Names stored in the local object itself (shared, never greenlet-local).
_IMPL_ATTRS = frozenset(("_local__dicts", "_local__args", "_local__ref"))

_obj_getattribute = object.__getattribute__
_obj_setattr = object.__setattr__
_obj_delattr = object.__delattr__


def _new_dict(self: local, glet: _RawGreenlet, key: int) -> dict[str, Any]:
    """Create the calling greenlet's dict for local *self* and run ``__init__``."""
    dicts = _obj_getattribute(self, "_local__dicts")
    localdict: dict[str, Any] = {}
    cleanup = _GreenletDied(key, ref(dicts))
    rawlink = getattr(glet, "rawlink", None)
    if rawlink is not None and not glet.dead:
        # A Greenlet: dropped as soon as it finishes.
        rawlink(cleanup)
        wrglet = ref(glet)
    else:
        # A raw greenlet (or the main one): dropped when it is collected.
        wrglet = ref(glet, cleanup)
    dicts[key] = (wrglet, localdict, cleanup)
    return localdict


def _get_dict(self: local) -> dict[str, Any]:
    glet = getcurrent()
    key = id(glet)
    entry: _Entry | None = _obj_getattribute(self, "_local__dicts").get(key)
    if entry is not None and entry[0]() is glet:
        return entry[1]
    localdict = _new_dict(self, glet, key)
    args, kwargs = _obj_getattribute(self, "_local__args")
    cls = type(self)
    if cls.__init__ is not object.__init__:
        cls.__init__(self, *args, **kwargs)
    return localdict


def _type_lookup(cls: type, name: str) -> tuple[Any, bool]:
    """Find *name* on the class like the interpreter does (MRO, no instance)."""
    for base in cls.__mro__:
        attrs = base.__dict__
        if name in attrs:
            return attrs[name], True
    return None, False


class local:
    """An object whose attributes are private to each greenlet."""

    __slots__ = ("_local__dicts", "_local__args", "_local__ref", "__weakref__")

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        dicts = _Dicts()
        _obj_setattr(self, "_local__dicts", dicts)
        _obj_setattr(self, "_local__args", (args, kwargs))
        # Held by the object itself: when it dies, live greenlets are unlinked.
        wref = ref(self, _LocalDied(dicts, id(self)))
        _obj_setattr(self, "_local__ref", wref)
        # The creating greenlet's dict exists before __init__ runs (Python
        # calls __init__ right after __new__), so __init__ is not run twice.
        glet = getcurrent()
        _new_dict(self, glet, id(glet))
        _all_locals[id(self)] = wref
        return self

    def __getattribute__(self, name: str) -> Any:
        if name in _IMPL_ATTRS:
            return _obj_getattribute(self, name)
        localdict = _get_dict(self)
        if name == "__dict__":
            return localdict
        cls = type(self)
        if cls is local:
            if name in localdict:
                return localdict[name]
            return _obj_getattribute(self, name)
        attr, found = _type_lookup(cls, name)
        if found:
            attr_type = type(attr)
            get = getattr(attr_type, "__get__", None)
            if get is not None and (
                hasattr(attr_type, "__set__") or hasattr(attr_type, "__delete__")
            ):
                # Data descriptors (properties, slots) win over the dict.
                return get(attr, self, cls)
            if name in localdict:
                return localdict[name]
            if get is not None:
                return get(attr, self, cls)
            return attr
        if name in localdict:
            return localdict[name]
        getattr_hook, has_hook = _type_lookup(cls, "__getattr__")
        if has_hook:
            return getattr_hook(self, name)
        raise AttributeError(f"{cls.__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "__dict__":
            raise AttributeError(
                f"{type(self).__name__!r} object attribute '__dict__' is read-only"
            )
        if name in _IMPL_ATTRS:
            raise AttributeError(f"{type(self).__name__!r} object attribute {name!r} is read-only")
        localdict = _get_dict(self)
        cls = type(self)
        if cls is not local:
            attr, found = _type_lookup(cls, name)
            if found:
                setter = getattr(type(attr), "__set__", None)
                if setter is not None:
                    setter(attr, self, value)
                    return
        localdict[name] = value

    def __delattr__(self, name: str) -> None:
        if name == "__dict__":
            raise AttributeError(
                f"{type(self).__name__!r} object attribute '__dict__' is read-only"
            )
        if name in _IMPL_ATTRS:
            raise AttributeError(f"{type(self).__name__!r} object attribute {name!r} is read-only")
        localdict = _get_dict(self)
        cls = type(self)
        if cls is not local:
            attr, found = _type_lookup(cls, name)
            if found:
                deleter = getattr(type(attr), "__delete__", None)
                if deleter is not None:
                    deleter(attr, self)
                    return
        try:
            del localdict[name]
        except KeyError:
            raise AttributeError(name) from None

    def __copy__(self) -> Self:
        # A new local whose current-greenlet dict is a copy of ours, with the
        # values of a subclass's __slots__ (shared by all greenlets) copied too.
        cls = type(self)
        args, kwargs = _obj_getattribute(self, "_local__args")
        duplicate = cls.__new__(cls, *args, **kwargs)
        _get_dict(duplicate).update(_get_dict(self))
        for name in _subclass_slots(cls):
            try:
                value = _obj_getattribute(self, name)
            except AttributeError:
                continue  # a slot never set stays unset
            _obj_setattr(duplicate, name, value)
        return duplicate


def _subclass_slots(cls: type) -> list[str]:
    """The slot names subclasses of :class:`local` declare (not local's own)."""
    names = []
    for base in cls.__mro__:
        if base is local:
            break
        slots = base.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for name in slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = "_%s%s" % (base.__name__.lstrip("_"), name)  # private name mangling
            names.append(name)
    return names


def all_local_dicts_for_greenlet(
    greenlet: _RawGreenlet,
) -> list[tuple[tuple[type, int], dict[str, Any]]]:
    """What every :class:`local` holds for *greenlet*: a debugging aid, as in gevent.

    Returns a list of ``((type(local), id(local)), attribute_dict)`` pairs,
    one for each local the greenlet has used and that is still alive.
    """
    key = id(greenlet)
    found = []
    for wref in list(_all_locals.values()):
        obj = wref()
        if obj is None:
            continue
        entry = _obj_getattribute(obj, "_local__dicts").get(key)
        if entry is not None and entry[0]() is greenlet:
            found.append(((type(obj), id(obj)), entry[1]))
    return found
