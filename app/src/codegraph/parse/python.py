"""Python source to nodes and edges, with the standard library's ast.

Per file: a `file` node; a `class` node per class and a `function` (or
`method`) node per def, nested as written (contains edges); a `module` node per
imported module (imports edges); calls and base classes become calls and
inherits edges when the name resolves to something defined in the same batch.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

from codegraph.errors import InvalidInput

MAX_TEXT_CHARS = 1_048_576  # a node's text, as POST /nodes allows; longer is cut there
# Lines as the parser counts them (only \r\n, \r and \n end a line; str.splitlines
# also splits at form feeds and other separators).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def module_name(path: str) -> str:
    parts = path.removesuffix(".py").strip("/").split("/")
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(part for part in parts if part not in ("", "."))


def _called_name(call: ast.Call) -> str | None:
    function = call.func
    if isinstance(function, ast.Name):
        return function.id
    if isinstance(function, ast.Attribute):
        return function.attr
    return None


def _base_name(base: ast.expr) -> str | None:
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return None


class _FileParser:
    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.source = source
        self.lines = _LINE.findall(source)
        self.module = module_name(path)
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str, str | None]] = []  # caller id, callee name, class
        self.bases: list[tuple[str, str]] = []  # class id, base name

    def parse(self) -> None:
        try:
            tree = ast.parse(self.source, filename=self.path)
        except SyntaxError as error:
            where = f" at line {error.lineno}" if error.lineno else ""
            raise InvalidInput(f"{self.path}: Python syntax error{where}: {error.msg}") from None
        except (RecursionError, MemoryError):  # the parser's own stack and nesting limits
            raise InvalidInput(
                f"{self.path}: nested too deeply (or too large) for the Python parser"
            ) from None
        file_id = f"file:{self.path}"
        self.nodes.append(
            {
                "id": file_id,
                "kind": "file",
                "name": self.path.rsplit("/", 1)[-1],
                "qualified_name": self.module,
                "path": self.path,
                "language": "python",
                "start_line": 1,
                "end_line": max(len(self.lines), 1),
                "docstring": ast.get_docstring(tree),
                "text": None,
                "attributes": {},
            }
        )
        self._imports(tree, file_id)
        self._body(tree.body, file_id, prefix="", owner_class=None)

    def _segment(self, node: ast.stmt) -> str:
        """What ast.get_source_segment gives, from lines split once (it splits the
        whole source again on every call: quadratic in a file's definitions), cut at
        MAX_TEXT_CHARS. Column offsets are in UTF-8 bytes."""
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        end_col = node.end_col_offset if node.end_col_offset is not None else None
        if first == last:
            return self.lines[first].encode()[node.col_offset : end_col].decode()
        parts = [self.lines[first].encode()[node.col_offset :].decode()]
        size = len(parts[0])
        for line in self.lines[first + 1 : last]:
            if size > MAX_TEXT_CHARS:
                break
            parts.append(line)
            size += len(line)
        else:
            parts.append(self.lines[last].encode()[:end_col].decode())
        return "".join(parts)[:MAX_TEXT_CHARS]

    def _imports(self, tree: ast.Module, file_id: str) -> None:
        seen = set()
        for statement in ast.walk(tree):
            if isinstance(statement, ast.Import):
                names = [alias.name for alias in statement.names]
            elif isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
                names = [statement.module]
            else:
                continue
            for name in names:
                if name in seen:
                    continue
                seen.add(name)
                module_id = f"module:{name}"
                self.nodes.append(
                    {
                        "id": module_id,
                        "kind": "module",
                        "name": name.rsplit(".", 1)[-1],
                        "qualified_name": name,
                        "path": None,
                        "language": "python",
                        "start_line": None,
                        "end_line": None,
                        "text": None,
                        "docstring": None,
                        "attributes": {"external": True},
                    }
                )
                self.edges.append(
                    {
                        "source": file_id,
                        "target": module_id,
                        "type": "imports",
                        "attributes": {"line": statement.lineno},
                    }
                )

    def _body(
        self, body: list[ast.stmt], parent_id: str, prefix: str, owner_class: str | None
    ) -> None:
        for statement in body:
            if isinstance(statement, ast.ClassDef):
                self._definition(statement, "class", parent_id, prefix, owner_class)
            elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                kind = "method" if owner_class else "function"
                self._definition(statement, kind, parent_id, prefix, owner_class)

    def _definition(
        self,
        definition: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef,
        kind: str,
        parent_id: str,
        prefix: str,
        owner_class: str | None,
    ) -> None:
        qualname = f"{prefix}{definition.name}"
        node_id = f"{'class' if kind == 'class' else 'function'}:{self.path}:{qualname}"
        self.nodes.append(
            {
                "id": node_id,
                "kind": kind,
                "name": definition.name,
                "qualified_name": f"{self.module}.{qualname}" if self.module else qualname,
                "path": self.path,
                "language": "python",
                "start_line": definition.lineno,
                "end_line": definition.end_lineno or definition.lineno,
                "text": self._segment(definition),
                "docstring": ast.get_docstring(definition),
                "attributes": {"async": True}
                if isinstance(definition, ast.AsyncFunctionDef)
                else {},
            }
        )
        self.edges.append(
            {"source": parent_id, "target": node_id, "type": "contains", "attributes": {}}
        )
        if isinstance(definition, ast.ClassDef):
            self.bases.extend(
                (node_id, name) for base in definition.bases if (name := _base_name(base))
            )
            self._body(definition.body, node_id, f"{qualname}.", owner_class=qualname)
            return
        for inner in _calls_outside_nested_defs(definition):
            name = _called_name(inner)
            if name:
                self.calls.append((node_id, name, owner_class))
        self._body(definition.body, node_id, f"{qualname}.<locals>.", owner_class=None)


def _calls_outside_nested_defs(definition: ast.AST) -> Iterator[ast.Call]:
    stack = list(ast.iter_child_nodes(definition))
    while stack:
        current = stack.pop()
        if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(current, ast.Call):
            yield current
        stack.extend(ast.iter_child_nodes(current))


def parse_python(files: list[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
    """Nodes and edges of a batch of Python files; names resolve across the batch."""
    parsers = []
    for path, source in files:
        parser = _FileParser(path, source)
        parser.parse()
        parsers.append(parser)
    nodes: dict[str, dict] = {}
    edges: list[dict] = []
    by_name: dict[str, list[dict]] = {}
    for parser in parsers:
        for node in parser.nodes:
            nodes.setdefault(node["id"], node)
        edges.extend(parser.edges)
    for node in nodes.values():
        if node["kind"] in ("class", "function", "method"):
            by_name.setdefault(node["name"], []).append(node)

    def resolve(name: str, kinds: tuple[str, ...], path: str, owner: str | None) -> str | None:
        candidates = [n for n in by_name.get(name, []) if n["kind"] in kinds]
        if owner:  # self.method() inside a class: prefer that class's method
            own = [n for n in candidates if n["id"].endswith(f":{owner}.{name}")]
            candidates = own or candidates
        local = [n for n in candidates if n["path"] == path]
        chosen = local or candidates
        return chosen[0]["id"] if len(chosen) == 1 else None

    seen = set()
    for parser in parsers:
        for caller, name, owner in parser.calls:
            target = resolve(name, ("function", "method", "class"), parser.path, owner)
            if target and (caller, target) not in seen:
                seen.add((caller, target))
                edges.append(
                    {"source": caller, "target": target, "type": "calls", "attributes": {}}
                )
        for class_id, name in parser.bases:
            target = resolve(name, ("class",), parser.path, None)
            if target and target != class_id:
                edges.append(
                    {"source": class_id, "target": target, "type": "inherits", "attributes": {}}
                )
    return list(nodes.values()), edges
