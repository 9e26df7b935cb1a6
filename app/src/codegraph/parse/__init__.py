"""Source files to nodes and edges; one parser per supported language.

The parsing itself runs in a separate process (parse.worker), bounded in time and
memory; this module checks the request, groups files by language and counts outcomes.
"""

from __future__ import annotations

from collections.abc import Callable

from codegraph import metrics
from codegraph.errors import InvalidInput, TooLarge
from codegraph.parse.python import parse_python
from codegraph.parse.worker import ParseWorker

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


def parse_files(
    files: list[dict], worker: ParseWorker, *, max_bytes: int
) -> tuple[list[dict], list[dict]]:
    """Nodes and edges of every file; all files are checked before any is parsed."""
    paths = [file["path"] for file in files]
    if len(set(paths)) != len(paths):
        raise InvalidInput("each file path may appear only once per request")
    size = sum(len(file["content"]) for file in files)
    if size > max_bytes:
        raise TooLarge(
            f"{size} characters of source in one request; the limit is {max_bytes} "
            "(server.max_parse_bytes)"
        )
    by_language: dict[str, list[tuple[str, str]]] = {}
    for file in files:
        language = language_of(file["path"], file.get("language"))
        by_language.setdefault(language, []).append((file["path"], file["content"]))
    try:
        parsed = worker.parse(by_language)
    except (InvalidInput, TooLarge):
        for language, batch in by_language.items():
            metrics.PARSE_OPERATIONS.labels(language=language, status="error").inc(len(batch))
        raise
    nodes, edges = [], []
    for language, (found_nodes, found_edges) in parsed.items():
        metrics.PARSE_OPERATIONS.labels(language=language, status="ok").inc(
            len(by_language[language])
        )
        nodes.extend(found_nodes)
        edges.extend(found_edges)
    return nodes, edges
