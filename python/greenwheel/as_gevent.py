"""Run unmodified gevent applications on greenwheel.

Importing this module installs an import hook for the whole process: from then
on ``import gevent``, ``import gevent.X`` and ``from gevent.X import Y``
resolve to greenwheel's modules of the same name. The modules are shared, not
copied: ``gevent.hub is greenwheel.hub``, so ``isinstance`` checks, module
state and monkey patching agree whichever name a library used::

    import greenwheel.as_gevent  # first, before anything imports gevent
    import locust                # imports gevent; gets greenwheel

From the command line, without touching the application::

    python -m greenwheel.as_gevent app.py [ARGS...]        # a script
    python -m greenwheel.as_gevent -m package [ARGS...]    # a module, as python -m
    python -m greenwheel.as_gevent -c "code" [ARGS...]     # a command string
    python -m greenwheel.as_gevent locust [ARGS...]        # an installed console script

Why a meta-path finder rather than filling ``sys.modules`` up front: an
application imports only the gevent modules it uses, and importing all of
greenwheel's eagerly would patch nothing but cost start-up time and pull in
optional dependencies (ssl, the WSGI server). The finder maps names lazily,
one module at a time, and a name greenwheel does not have fails with the
usual ``ModuleNotFoundError`` naming the gevent module.

The hook refuses to install when the real gevent is already imported: two
event loops in one process would each believe they own the thread, and the
application would see whichever happened to be imported first.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import shutil
import sys
import types

__all__ = ["GeventAlreadyImported", "install", "installed", "main"]

#: The package name the hook serves.
_ALIAS = "gevent"
#: The package that implements it.
_TARGET = "greenwheel"
#: The gevent release whose API greenwheel follows (COMPAT.md runs its suite).
GEVENT_API_VERSION = "26.9.0"


class GeventAlreadyImported(ImportError):
    """The real gevent was imported before the alias could be installed."""


def _target_name(fullname: str) -> str:
    return _TARGET + fullname[len(_ALIAS) :]


def _is_alias_name(fullname: str) -> bool:
    return fullname == _ALIAS or fullname.startswith(_ALIAS + ".")


class _SharedModuleLoader(importlib.abc.Loader):
    """Loads ``gevent.X`` as the already-importable ``greenwheel.X``.

    ``create_module`` hands back greenwheel's own module object, so both names
    share it. The import system then stamps the alias spec onto the module
    (``module.__spec__`` is always overwritten); ``exec_module`` puts the
    module's own spec back, so ``importlib.reload`` and pickling by reference
    keep using greenwheel's name.
    """

    def __init__(self, target: str) -> None:
        self._target = target
        self._own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self._target)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        if self._own_spec is not None:
            module.__spec__ = self._own_spec

    def _target_loader(self):
        spec = importlib.util.find_spec(self._target)
        return None if spec is None else spec.loader

    # For runpy: 'python -m gevent.monkey' runs greenwheel.monkey's code as __main__.
    def get_code(self, fullname: str):
        loader = self._target_loader()
        return None if loader is None else loader.get_code(self._target)

    def get_source(self, fullname: str):
        loader = self._target_loader()
        return None if loader is None else loader.get_source(self._target)

    def is_package(self, fullname: str) -> bool:
        loader = self._target_loader()
        return bool(loader is not None and loader.is_package(self._target))


def _alias_name(fullname: str) -> str:
    return _ALIAS + fullname[len(_TARGET) :]


def _mirror(fullname: str, module: types.ModuleType) -> None:
    """File greenwheel module *fullname* under its gevent name too."""
    sys.modules.setdefault(_alias_name(fullname), module)


def _mirror_imported() -> None:
    for name, module in list(sys.modules.items()):
        if module is not None and (name == _TARGET or name.startswith(_TARGET + ".")):
            _mirror(name, module)


class _MirroringLoader(importlib.abc.Loader):
    """Loads ``greenwheel.X`` with its own loader, then files it as ``gevent.X`` too.

    ``from gevent import monkey`` does not import ``gevent.monkey``: the import
    system imports a from-list submodule under the package's ``__name__``,
    which is ``greenwheel``. Without the mirror, ``gevent.monkey`` would never
    be in ``sys.modules``, and libraries that detect gevent by looking there
    (psycopg 3 picks its blocking C wait unless
    ``sys.modules["gevent.monkey"].is_module_patched("select")``) would run
    every query one at a time.
    """

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def __getattr__(self, name: str):
        # get_code, get_source, is_package, ... (runpy and the alias's loader use them).
        return getattr(self._inner, name)

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        # The module keeps its own loader: reload, resources and get_code use it.
        spec = module.__spec__
        assert spec is not None  # the import system made the module from a spec
        spec.loader = self._inner
        module.__loader__ = self._inner
        self._inner.exec_module(module)
        _mirror(spec.name, module)


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``gevent`` and ``gevent.*`` to greenwheel's modules, and files
    each greenwheel module imported under its own name as ``gevent.*`` too."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(_TARGET + ".") and target is None:
            return self._find_mirrored(fullname, path)
        if not _is_alias_name(fullname):
            return None
        target_name = _target_name(fullname)
        try:
            found = importlib.util.find_spec(target_name)
        except ModuleNotFoundError:
            # A parent package is missing: the gevent name is just as missing.
            return None
        if found is None:
            return None
        return importlib.machinery.ModuleSpec(
            fullname,
            _SharedModuleLoader(target_name),
            is_package=found.submodule_search_locations is not None,
        )

    def _find_mirrored(self, fullname, path):
        # The spec the finders after this one would give, loaded through the mirror.
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, None)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _MirroringLoader(spec.loader)
                return spec
        return None


_finder = _AliasFinder()


def _real_gevent_modules() -> list[str]:
    """Names of gevent modules already imported that are not greenwheel's."""
    names = []
    for name, module in list(sys.modules.items()):
        if not _is_alias_name(name) or module is None:
            continue
        if not getattr(module, "__name__", "").startswith(_TARGET):
            names.append(name)
    return sorted(names)


def installed() -> bool:
    """Whether the alias hook is installed in this process."""
    return _finder in sys.meta_path


def install() -> None:
    """Install the alias hook (idempotent).

    Raises :class:`GeventAlreadyImported` if the real gevent is already
    imported: its hub and loop would run beside greenwheel's.
    """
    if installed():
        return
    real = _real_gevent_modules()
    if real:
        raise GeventAlreadyImported(
            "greenwheel.as_gevent: the real gevent is already imported (%s); import "
            "greenwheel.as_gevent before anything that imports gevent" % ", ".join(real[:5])
        )
    # Libraries gate on gevent's version (gunicorn's gevent workers refuse
    # anything before 24.10.1), and 'gevent' is the greenwheel package itself:
    # in this process its version names the gevent API it provides, with
    # greenwheel's own release as the local part (26.9.0+greenwheel.0.1.0).
    package = sys.modules[_TARGET]
    own = package._core.__version__
    package.__version__ = "%s+greenwheel.%s" % (GEVENT_API_VERSION, own)  # type: ignore[attr-defined]
    # First in line: an installed gevent must not be found by the path finder.
    sys.meta_path.insert(0, _finder)
    # As in a gevent process, every imported module is in sys.modules under its
    # gevent name (the mirror files the ones imported from now on).
    _mirror_imported()


_USAGE = """\
usage: python -m greenwheel.as_gevent TARGET [ARGS...]

Runs TARGET with 'import gevent' resolving to greenwheel. TARGET is one of:
  path/to/script.py     a Python script (any existing file)
  -m module             a module, as 'python -m module'
  -c command            a command string, as 'python -c command'
  name                  an installed console script (locust, celery, gunicorn, ...)
"""


def _console_script(name: str):
    """The entry point function of console script ``name``, or None."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="console_scripts"):
        if entry.name == name:
            return entry.load
    return None


def _run_file(path: str, argv: list[str]) -> None:
    sys.argv = [path, *argv]
    # As 'python script.py' does: the script's directory comes first on the path.
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    runpy.run_path(path, run_name="__main__")


def main(argv: list[str] | None = None) -> object:
    """Entry point of ``python -m greenwheel.as_gevent``; returns the status for ``sys.exit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write(_USAGE)
        return 0 if args else 2
    install()
    target, rest = args[0], args[1:]
    if target == "-m":
        if not rest:
            sys.stderr.write(_USAGE)
            return 2
        sys.argv = list(rest)
        # As 'python -m' does: the current directory comes first on the path.
        sys.path[0] = os.getcwd()
        runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
        return 0
    if target == "-c":
        if not rest:
            sys.stderr.write(_USAGE)
            return 2
        sys.argv = ["-c", *rest[1:]]
        sys.path[0] = ""
        code = compile(rest[0], "<string>", "exec")
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(code, namespace)
        return 0
    if os.path.exists(target):
        _run_file(target, rest)
        return 0
    load = _console_script(target)
    if load is not None:
        sys.argv = [target, *rest]
        # As setuptools' wrapper does: sys.exit() takes what the function returns.
        return load()()
    found = shutil.which(target)
    if found is not None:
        _run_file(found, rest)
        return 0
    sys.stderr.write("greenwheel.as_gevent: no script, module or console script %r\n" % target)
    sys.stderr.write(_USAGE)
    return 2


if __name__ == "__main__":
    # Run through the importable module, so that a later 'import greenwheel.as_gevent'
    # finds the hook already installed instead of making a second one.
    from greenwheel import as_gevent as _module

    # (main may return what a console script returned: sys.exit prints a non-int.)
    sys.exit(_module.main())  # type: ignore[arg-type]
else:
    install()
