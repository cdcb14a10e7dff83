"""Typing support that costs nothing at run time.

Importing greenwheel does not import :mod:`typing` (it did not before the
package was annotated, and ``greenwheel.monkey`` wants the modules it loads
before patching kept few).  Annotations are strings
(``from __future__ import annotations``), names only annotations use are
imported under ``if TYPE_CHECKING:``, and what a class statement or a
decorator needs at run time comes from here:

* ``TYPE_CHECKING`` is False at run time; type checkers take any name
  ``TYPE_CHECKING`` in a condition as true.
* ``Generic[T]`` among a class's bases is :class:`typing.Generic` for a type
  checker and ``object`` at run time, so the class's bases and MRO are
  exactly what they would be without it.  A generic class that should
  subscript at run time (``Greenlet[int]``) defines
  ``__class_getitem__ = classmethod(types.GenericAlias)``, as ``list`` does.
* ``TypeVar`` and ``ParamSpec`` make placeholders; ``overload`` returns the
  function (the implementation, defined last, is what the name is bound to).
"""

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Generic as Generic
    from typing import ParamSpec as ParamSpec
    from typing import TypeVar as TypeVar
    from typing import overload as overload
else:

    class Generic:
        __slots__ = ()

        def __class_getitem__(cls, params):
            return object

    def TypeVar(name, *constraints, **options):
        return None

    def ParamSpec(name, **options):
        return None

    def overload(func):
        return func


__all__ = ["TYPE_CHECKING", "Generic", "ParamSpec", "TypeVar", "overload"]
