"""Source files to nodes and edges; one parser per supported language."""

from __future__ import annotations

from collections.abc import Callable

from codegraph import metrics
from codegraph.errors import InvalidInput
from codegraph.parse.python import parse_python

Parser = Callable[[list[tuple[str, str]]], tuple[list[dict], list[dict]]]
PARSERS: dict[str, Parser] = {"python": parse_python}
EXTENSIONS = {".py": "python", ".pyi": "python"}


def language_of(path: str, declared: str | None) -> str:
    language = (declared or EXTENSIONS.get("." + path.rsplit(".", 1)[-1], "")).lower()
    if language not in PARSERS:
        shown = language or "unknown (no language given and no known extension)"
        raise InvalidInput(
            f"{path}: language {shown} is not supported; supported: {', '.join(sorted(PARSERS))}"
        )
    return language


def parse_files(files: list[dict]) -> tuple[list[dict], list[dict]]:
    """Nodes and edges of every file; all files are checked before any is parsed."""
    paths = [file["path"] for file in files]
    if len(set(paths)) != len(paths):
        raise InvalidInput("each file path may appear only once per request")
    by_language: dict[str, list[tuple[str, str]]] = {}
    for file in files:
        language = language_of(file["path"], file.get("language"))
        by_language.setdefault(language, []).append((file["path"], file["content"]))
    nodes, edges = [], []
    for language, batch in by_language.items():
        try:
            found_nodes, found_edges = PARSERS[language](batch)
        except InvalidInput:
            metrics.PARSE_OPERATIONS.labels(language=language, status="error").inc(len(batch))
            raise
        metrics.PARSE_OPERATIONS.labels(language=language, status="ok").inc(len(batch))
        nodes.extend(found_nodes)
        edges.extend(found_edges)
    return nodes, edges
