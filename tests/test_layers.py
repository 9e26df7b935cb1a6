"""The store keeps its key layout and the engine its locks: what the rest of the
service may use of them is checked here, on the source, so that a shortcut shows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "app/src/codegraph"
STORE = PACKAGE / "store"
# Modules allowed to touch the engine's locks: the engine (which writes the lock order
# down once) and the indexer (which owns its pause lock).
LOCK_OWNERS = {PACKAGE / "engine.py", PACKAGE / "vector/indexer.py"}
LOCKS = {"write_lock", "_write_lock", "pause_lock"}
STORE_HANDLES = {"db", "cf"}  # RocksDB itself and its column families


def _outside_store() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if STORE not in path.parents)


def _public(module: str) -> set[str]:
    tree = ast.parse((STORE / f"{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def _is_key_separator(value: object) -> bool:
    return isinstance(value, bytes) and b"\0" in value


def violations(path: Path) -> list[str]:
    """What one module outside store/ does that only store/ (or the engine) may do."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("codegraph.store."):
            module = node.module.removeprefix("codegraph.store.")
            hidden = {alias.name for alias in node.names} - _public(module)
            found += [f"imports {module}.{name} (not in its __all__)" for name in sorted(hidden)]
        elif isinstance(node, ast.Attribute) and node.attr in STORE_HANDLES:
            found.append(f"line {node.lineno}: reaches into the store (.{node.attr})")
        elif isinstance(node, ast.Attribute) and node.attr in LOCKS and path not in LOCK_OWNERS:
            found.append(f"line {node.lineno}: takes an engine lock itself (.{node.attr})")
        elif isinstance(node, ast.Constant) and _is_key_separator(node.value):
            found.append(f"line {node.lineno}: decodes store keys (a NUL separator)")
    return found


@pytest.mark.parametrize("path", _outside_store(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_only_the_store_knows_its_layout(path):
    assert not violations(path), violations(path)


def test_the_check_catches_a_shortcut(tmp_path):
    """What maintenance.py did before the store had an API for it."""
    shortcut = tmp_path / "shortcut.py"
    shortcut.write_text(
        "from codegraph.store.graph import COLUMN_FAMILIES, queued_ids\n"
        "def check(engine, key):\n"
        "    with engine.indexer.pause_lock, engine.write_lock:\n"
        "        snapshots = {n: engine.store.cf[n].snapshot() for n in COLUMN_FAMILIES}\n"
        '    return key[1:].split(b"\\0")\n'
    )
    found = violations(shortcut)
    assert len(found) == 6, found
