"""Which interpreters greenwheel accepts, and the package metadata users see."""

import sysconfig

import pytest

import greenwheel
from greenwheel import _core, _interpreter


def test_free_threaded_builds_are_refused_with_a_clear_message():
    with pytest.raises(ImportError, match="free-threaded"):
        _interpreter.check(gil_disabled=True, version=(3, 13))


def test_older_pythons_are_refused():
    with pytest.raises(ImportError, match="3.11 or newer"):
        _interpreter.check(gil_disabled=False, version=(3, 10))


def test_this_interpreter_is_accepted():
    assert not sysconfig.get_config_var("Py_GIL_DISABLED")
    _interpreter.check()


def test_the_version_has_one_source():
    # Cargo.toml's version, compiled into the extension and reported by the package.
    assert greenwheel.__version__ == _core.__version__
    assert greenwheel.__version__.count(".") == 2
