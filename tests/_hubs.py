"""Hub helpers shared by conftest.py and the tests that import them.

Tests import these from here, never ``from conftest import ...``: with
conftest.py files in more than one directory (tests/integration has one),
the module named ``conftest`` is whichever pytest loaded last.
"""

from greenwheel import _hub


def destroy_hub():
    hub = _hub._get_hub_if_exists()
    if hub is not None:
        hub.destroy(destroy_loop=True)
