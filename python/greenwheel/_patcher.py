"""Which greenwheel module stands in for which standard module.

gevent publishes this table as ``gevent._patcher.MAPPING`` (green module name
-> standard module name), and tools that check a green module against its
standard counterpart read it. The keys are greenwheel's module names and,
for code that reaches them through ``greenwheel.as_gevent``, the same
modules under gevent's names. The table is derived from what
``greenwheel.monkey`` patches, so the two cannot drift apart.
"""

from .monkey import _SOURCES

#: Green modules that monkey patching does not install but that model a standard module.
_ALSO = {
    "greenwheel.local": "_threading_local",
    "greenwheel.contextvars": "contextvars",
    "greenwheel.builtins": "builtins",
}


def _mapping():
    table = dict(_ALSO)
    for stdlib_name, green_name in _SOURCES.items():
        table[green_name] = stdlib_name
    for green_name, stdlib_name in list(table.items()):
        table["gevent" + green_name[len("greenwheel") :]] = stdlib_name
    return table


MAPPING = _mapping()
