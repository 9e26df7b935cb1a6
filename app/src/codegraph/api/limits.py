"""Cheap limits checked before a request body is parsed and validated.

A JSON body becomes Python objects many times its size (`{}` is 3 bytes, a dict 64),
and validating a huge array can build an error per item: both must be refused before
that work starts, and answered in constant time and memory.
"""

from __future__ import annotations

import re

from fastapi import Depends, HTTPException, Request

from codegraph.errors import TooLarge
from codegraph.settings import ServerSettings

# A JSON string, escapes included (the unrolled form: no backtracking per character).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def json_values(body: bytes) -> int:
    """About how many values a JSON text holds: one per container and per separator.

    Every value but the first of an array or object needs a comma, so this is at
    least (values - containers); commas inside strings are not counted.
    """
    stripped = _STRING.sub(b'""', body)
    return stripped.count(b",") + stripped.count(b"[") + stripped.count(b"{")


def check_body_values(body: bytes, limit: int) -> None:
    """Refuse (413) a body holding more than limit JSON values, before parsing it."""
    # The counts over the raw bytes are an upper bound and cost little (memchr speed);
    # only past the limit are strings taken out to count exactly.
    rough = body.count(b",") + body.count(b"[") + body.count(b"{")
    if rough > limit and json_values(body) > limit:
        raise HTTPException(
            413,
            f"request body holds more than {limit} JSON values (server.max_request_values)",
        )


def _settings(request: Request) -> ServerSettings:
    return request.app.state.engine.settings.server


async def _batch_within_limits(request: Request) -> None:
    """The sizes of a write's node and edge arrays, checked before they are validated."""
    try:
        body = await request.json()  # parsed once; validation reuses it
    except ValueError:
        return  # not JSON (or no body): validation says so
    if not isinstance(body, dict):
        return
    server = _settings(request)
    for key, limit, setting in (
        ("nodes", server.max_batch_nodes, "server.max_batch_nodes"),
        ("edges", server.max_batch_edges, "server.max_batch_edges"),
    ):
        items = body.get(key)
        if isinstance(items, list) and len(items) > limit:
            raise TooLarge(f"{len(items)} {key} in one request; the limit is {limit} ({setting})")


BatchLimits = Depends(_batch_within_limits)
