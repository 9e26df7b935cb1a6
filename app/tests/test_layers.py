"""The service's modules import each other without cycles, and the lower layers (the
store, the logs) import nothing above them: the engine, the procedures (recovery, fleet
restore), the API and the commands, not even for annotations. Imports under
`if TYPE_CHECKING:` (annotations only) do not make a cycle at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import codegraph

PACKAGE = Path(codegraph.__file__).parent
LOWER = ("codegraph.store", "codegraph.replication", "codegraph.vector", "codegraph.parse")
UPPER = ("codegraph.engine", "codegraph.recovery", "codegraph.fleet_restore", "codegraph.api")
UPPER += ("codegraph.cli", "codegraph.maintenance")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


class _Imports(ast.NodeVisitor):
    def __init__(self, annotations: bool) -> None:
        self.found: set[str] = set()
        self.annotations = annotations

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
        if name == "TYPE_CHECKING" and not self.annotations:
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module:
            self.found.add(node.module)
            self.found.update(f"{node.module}.{alias.name}" for alias in node.names)


def imports(name: str, *, annotations: bool = False) -> set[str]:
    """The package's modules that module name imports at run time (and, with
    annotations, under TYPE_CHECKING too)."""
    visitor = _Imports(annotations)
    visitor.visit(ast.parse(MODULES[name].read_text()))
    return {found for found in visitor.found if found in MODULES and found != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others():
    graph = {name: imports(name) for name in MODULES}
    assert cycles(graph) == []


def test_the_store_and_the_logs_import_nothing_above_them():
    upward = {
        name: sorted(found for found in imports(name, annotations=True) if found.startswith(UPPER))
        for name in MODULES
        if name.startswith(LOWER)
    }
    assert {name: found for name, found in upward.items() if found} == {}


def test_the_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
