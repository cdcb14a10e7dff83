"""The Python layer's import layering (issue 20): the hub is the lowest layer.

``_hub`` used to import the thread pool, the resolver and the monitor inside
its methods, and ``_config`` imported ``_hub`` and ``_greenlet``: every module
of the circle needed all the others. Now each imports only modules below it,
and the hub gets its pool and monitor from what ``_providers`` registered.
"""

import ast
import importlib.util
import os

from _childproc import ROOT, run_python

_spec = importlib.util.spec_from_file_location(
    "import_graph", os.path.join(ROOT, "tools", "import_graph.py")
)
import_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(import_graph)

#: Lowest first: a module may import (at run time, at module level or inside a
#: function) only modules listed before it.
LAYERS = [
    "_config",
    "_hub",
    "_wait",
    "_greenlet",
    "_threadpool",
    "_socket",
    "_resolver",
    "_monitor",
    "_providers",
]


def test_each_module_of_the_hub_circle_imports_only_modules_below_it():
    graph = import_graph.graph()
    upward = []
    for importer in LAYERS:
        for imported, kinds in sorted(graph[importer].items()):
            runtime = kinds - {"types"}  # TYPE_CHECKING imports never run
            if imported in LAYERS and runtime and LAYERS.index(imported) >= LAYERS.index(importer):
                upward.append("%s -> %s (%s)" % (importer, imported, "+".join(sorted(runtime))))
    assert upward == [], "imports of a module at the same or a higher layer: %s" % upward


def test_the_hub_imports_nothing_by_name_either():
    # An import by name (importlib.import_module("greenwheel._threadpool"))
    # would bring the circle back without an import statement.
    with open(os.path.join(import_graph.PACKAGE, "_hub.py")) as f:
        tree = ast.parse(f.read())
    dynamic = sorted(
        {
            node.id if isinstance(node, ast.Name) else node.attr
            for node in ast.walk(tree)
            if (isinstance(node, ast.Name) and node.id in ("__import__", "importlib"))
            or (isinstance(node, ast.Attribute) and node.attr == "import_module")
        }
    )
    assert dynamic == []


def test_a_fresh_process_gets_the_pool_resolver_and_monitor_from_import_greenwheel_alone():
    # What _providers registers must be in place after `import greenwheel`
    # (the suite's own process has imported everything long before), and
    # importing the package must not load the pool, the monitor or what they
    # import: greenwheel.monkey wants the modules loaded before it patches few.
    out = run_python(
        """
        import sys
        before = set(sys.modules)
        import greenwheel
        watched = ["greenwheel._threadpool", "greenwheel._monitor", "greenwheel._socket",
                   "greenwheel._resolver", "concurrent.futures", "socket", "logging"]
        print("loaded by import:", sorted(m for m in watched if m in set(sys.modules) - before))
        hub = greenwheel.get_hub()
        pool = hub.threadpool
        print("pool:", type(pool).__name__, pool.apply(sum, ([1, 2],)), pool.maxsize,
              pool is hub.threadpool)
        resolver = hub.resolver
        print("resolver:", type(resolver).__module__, resolver.gethostbyname("127.0.0.1"))
        monitor = hub.start_periodic_monitoring_thread()
        print("monitor:", type(monitor).__name__, monitor is hub.periodic_monitoring_thread)
        monitor.kill()
        pool.kill()
        """,
        timeout=60,
    ).stdout.splitlines()
    assert out == [
        "loaded by import: []",
        "pool: ThreadPool 3 10 True",
        "resolver: greenwheel._resolver 127.0.0.1",
        "monitor: PeriodicMonitoringThread True",
    ], out


def test_no_import_cycle_anywhere_in_the_package():
    # Beyond the hub's circle: the thread patching imported its primitives
    # back from monkey, which imports it (now both build on _monkey_base).
    graph = import_graph.graph()
    runtime = {
        importer: {t for t, kinds in targets.items() if kinds - {"types"} and t != importer}
        for importer, targets in graph.items()
    }
    assert import_graph.cycles(sorted(graph), runtime) == []
