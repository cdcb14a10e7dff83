"""The patching primitives under greenwheel.monkey, and the record of what was patched.

``greenwheel.monkey`` (the patch_* functions, patch_all) and
``greenwheel._monkey_threads`` (the thread patching) both build on these:
living below both, they let the two import each other in one direction only
(monkey -> _monkey_threads -> _monkey_base), where the thread patching used
to import its primitives back from monkey.  ``greenwheel.monkey`` re-exports
the public ones (``saved``, ``patch_item``, ``get_original``...) as gevent
has them.

Like monkey itself, this runs before the program's own imports: it imports
nothing at module level beyond ``sys``.
"""

import sys

from ._typecheck import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from typing import Any


class MonkeyPatchWarning(RuntimeWarning):
    """Patching happened in a way that leaves some objects unpatched."""

    # Its public home (and gevent's): reprs and pickles name greenwheel.monkey.
    __module__ = "greenwheel.monkey"


#: ``{module name: {attribute name: original object}}`` for everything
#: patched (or removed) so far.
# (Type comments in this module keep ``__annotations__`` out of its namespace.)
saved = {}  # type: dict[str, dict[str, object]]

_NONE = object()


# --- querying ------------------------------------------------------------------------------


def is_module_patched(mod_name: str) -> bool:
    """True if anything in the standard module *mod_name* (e.g. ``"socket"``) was patched."""
    return mod_name in saved


def is_anything_patched() -> bool:
    """True once greenwheel has patched anything in this process (gevent's check)."""
    return any(not name.startswith("_gevent_") for name in saved)


def is_object_patched(mod_name: str, item_name: str) -> bool:
    """True if ``mod_name.item_name`` was replaced (or removed) by greenwheel."""
    return mod_name in saved and item_name in saved[mod_name]


def _get_original(mod_name, items):
    originals = saved.get(mod_name, {})
    module = None
    values = []
    for item in items:
        if item in originals:
            values.append(originals[item])
        else:
            if module is None:
                module = __import__(mod_name, fromlist=["_"])
            values.append(getattr(module, item))
    return values


def get_original(mod_name: str, item_name: "str | list[str] | tuple[str, ...]") -> "Any":
    """The standard library's object, whether or not it has been patched.

    *mod_name* may be a sequence of module names to try in order (the first
    importable one answers); *item_name* may be a sequence of names, and
    then a list of objects is returned.
    """
    mod_names = [mod_name] if isinstance(mod_name, str) else list(mod_name)
    if isinstance(item_name, str):
        names, single = [item_name], True
    else:
        names, single = list(item_name), False
    for i, name in enumerate(mod_names):
        try:
            values = _get_original(name, names)
        except ImportError:
            if i == len(mod_names) - 1:
                raise
            continue
        return values[0] if single else values
    raise ImportError(mod_name)


# --- the patching primitives ----------------------------------------------------------------


def _save(module, attr, value):
    saved.setdefault(module.__name__, {}).setdefault(attr, value)


def patch_item(module: object, attr: str, new_item: object) -> None:
    """Set ``module.attr`` to *new_item*, remembering the original once."""
    old = getattr(module, attr, _NONE)
    if old is not _NONE:
        _save(module, attr, old)
    setattr(module, attr, new_item)


def remove_item(module: object, attr: str) -> None:
    """Delete ``module.attr``, remembering the original once."""
    old = getattr(module, attr, _NONE)
    if old is _NONE:
        return
    _save(module, attr, old)
    delattr(module, attr)


def _import(name):
    __import__(name)
    return sys.modules[name]


def patch_module(
    target_module: object, source_module: object, items: "list[str] | None" = None
) -> bool:
    """Replace attributes of *target_module* with those of *source_module*.

    Both may be modules or module names.  *items* defaults to the source's
    ``__implements__``.  Returns True.
    """
    if isinstance(target_module, str):
        target_module = _import(target_module)
    if isinstance(source_module, str):
        source_module = _import(source_module)
    if items is None:
        items = getattr(source_module, "__implements__", None)
        if items is None:
            raise AttributeError("%r has no __implements__" % (source_module,))
    for attr in items:
        patch_item(target_module, attr, getattr(source_module, attr))
    return True


# --- warnings ---------------------------------------------------------------------------------


def _queue_warning(message, warnings_list):
    if warnings_list is None:
        _process_warnings([message])
    else:
        warnings_list.append(message)


def _process_warnings(messages):
    import warnings

    for message in messages:
        warnings.warn(message, MonkeyPatchWarning, stacklevel=3)


def _module_refs(obj, exclude=(), stdlib_too=True):
    """Modules holding *obj* as a global (``from x import obj``), and subclasses of it."""
    import gc

    stdlib = _stdlib_dirs() if not stdlib_too else ()
    modules = set()
    subclasses = set()
    for referrer in gc.get_referrers(obj):
        if isinstance(referrer, dict) and "__name__" in referrer:
            name = referrer["__name__"]
            if not isinstance(name, str) or _excluded(name, exclude):
                continue
            if stdlib and _in_dirs(referrer.get("__file__"), stdlib):
                continue
            if any(value is obj for value in list(referrer.values())):
                modules.add(name)
        elif isinstance(referrer, type) and obj in getattr(referrer, "__bases__", ()):
            module = getattr(referrer, "__module__", "") or ""
            if not _excluded(module, exclude):
                subclasses.add("%s.%s" % (module, referrer.__qualname__))
    return sorted(modules), sorted(subclasses)


def _excluded(name, exclude):
    return name in exclude or name == "greenwheel" or name.startswith("greenwheel.")


def _stdlib_dirs():
    import sysconfig

    dirs = set()
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(path)
    return tuple(dirs)


def _in_dirs(path, dirs):
    if not path:
        return True  # built-in or frozen: the interpreter's own
    return any(path.startswith(d) and "site-packages" not in path[len(d) :] for d in dirs)
