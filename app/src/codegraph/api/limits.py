"""Cheap limits checked before a request body is parsed and validated.

A JSON body becomes Python objects many times its size (`{}` is 3 bytes, a dict 64),
and validating a huge array can build an error per item: both must be refused before
that work starts, in time and memory that do not grow with the request.
"""

from __future__ import annotations

import numpy as np
from fastapi import Depends, Request

from codegraph.errors import TooLarge
from codegraph.settings import ServerSettings

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_STRUCTURAL = np.zeros(256, dtype=bool)
_STRUCTURAL[[ord(","), ord("["), ord("{")]] = True


class JsonValueCounter:
    """Counts the values of a JSON body chunk by chunk, as it arrives, in constant memory.

    A value is counted per container opened and per separator (every value but the
    first of an array or object needs a comma); commas and brackets inside strings
    are text, even when a string spans chunks. A backslash escapes the next byte
    wherever it is (valid JSON has none outside strings). Vectorized (numpy): the cost is
    linear in the bytes whatever they hold; a byte holds at most one value, so a body
    no longer than the limit never needs counting.
    """

    def __init__(self) -> None:
        self.values = 0
        self._in_string = False
        self._escaped = False  # a backslash ended the last chunk: this one's first byte is escaped

    def feed(self, chunk: bytes) -> int:
        if not chunk:
            return self.values
        data = np.frombuffer(chunk, dtype=np.uint8)
        if self._escaped:  # escaped by the last chunk's backslash: plain text
            data = data.copy()
            data[0] = ord(" ")
        backslash = data == _BACKSLASH
        positions = np.arange(len(data))
        # the length of the run of backslashes ending at each byte (0 if not one)
        run = positions - np.maximum.accumulate(np.where(backslash, -1, positions))
        escaped = np.zeros(len(data), dtype=bool)
        escaped[1:] = run[:-1] % 2 == 1
        quotes = (data == _QUOTE) & ~escaped
        inside = (np.cumsum(quotes) + self._in_string) % 2 == 1
        self.values += int(np.count_nonzero(_STRUCTURAL[data] & ~inside & ~escaped))
        self._in_string = bool(inside[-1])
        self._escaped = bool(run[-1] % 2 == 1)
        return self.values


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
