"""Which greenwheel modules import which: the package's import graph, read from the sources.

    python3 tools/import_graph.py                 # the hub's circle (issue 20)
    python3 tools/import_graph.py --all           # every module of the package
    python3 tools/import_graph.py _hub _socket    # these modules only

Each edge is tagged by where the import statement sits: ``top`` (module level,
runs at import), ``lazy`` (inside a function, runs on first call) or ``types``
(under ``if TYPE_CHECKING:``, never runs). Then the cycles among the run-time
edges (top + lazy) of the modules shown: a module in a cycle cannot be
imported, or reasoned about, without the others.

Read with :mod:`ast`, nothing is imported, so a broken import order is
reported rather than tripped over.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "greenwheel"

#: The modules of issue 20's import circle, the default selection.
CIRCLE = ["_hub", "_greenlet", "_config", "_monitor", "_threadpool", "_resolver", "_socket"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] or ["__init__"]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules *node* (in *module*) imports, as names relative to the package."""
    found = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.startswith("greenwheel."):
                found.append(alias.name[len("greenwheel.") :])
        return found
    if node.level == 0:
        if node.module and node.module.startswith("greenwheel"):
            base = node.module[len("greenwheel") :].lstrip(".")
        else:
            return found
    else:
        package = module.split(".")[:-1] if module != "__init__" else []
        if node.level > 1:
            package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, node.module] if node.module else package)
    if base:
        found.append(base)
    else:
        # ``from . import a, b``: each name is a module of the package.
        found.extend(alias.name for alias in node.names)
    return found


def edges_of(path: Path) -> list[tuple[str, str, str]]:
    """(importer, imported, kind) for every package import in *path*."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[str, str, str]] = []

    def walk(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            child_kind = kind
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                child_kind = "types" if kind == "types" else "lazy"
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    walk_stmt(stmt, "types")
                for stmt in child.orelse:
                    walk_stmt(stmt, kind)
                continue
            walk_stmt(child, child_kind)

    def walk_stmt(node: ast.AST, kind: str) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _resolve(module, node):
                out.append((module, target, kind))
        walk(node, kind)

    walk(tree, "top")
    return out


def graph() -> dict[str, dict[str, set[str]]]:
    """{importer: {imported: {kinds}}} over the whole package."""
    result: dict[str, dict[str, set[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        result.setdefault(_module_name(path), {})
        for importer, imported, kind in edges_of(path):
            result[importer].setdefault(imported, set()).add(kind)
    return result


def cycles(nodes: list[str], deps: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components (more than one module) of *deps* on *nodes*."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(deps.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module names (default: the hub's circle)")
    parser.add_argument("--all", action="store_true", help="every module of the package")
    args = parser.parse_args(argv)
    full = graph()
    chosen = sorted(full) if args.all else (args.modules or CIRCLE)
    unknown = [name for name in chosen if name not in full]
    if unknown:
        parser.error("no such module in %s: %s" % (PACKAGE, ", ".join(unknown)))
    shown = set(chosen)
    runtime: dict[str, set[str]] = {}
    for importer in chosen:
        targets = {t: k for t, k in full[importer].items() if t in shown and t != importer}
        parts = []
        for target in sorted(targets):
            kinds = targets[target]
            parts.append("%s (%s)" % (target, "+".join(sorted(kinds))))
            if kinds - {"types"}:
                runtime.setdefault(importer, set()).add(target)
        print("%-13s -> %s" % (importer, ", ".join(parts) or "-"))
    found = cycles(chosen, runtime)
    print()
    if not found:
        print("no cycles among the run-time imports (top + lazy)")
    for component in found:
        print("cycle (top + lazy): %s" % " <-> ".join(component))
    return 0


if __name__ == "__main__":
    sys.exit(main())
