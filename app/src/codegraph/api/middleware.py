"""Authentication, request metrics and the request-size limits, in one pure-ASGI pass.

A body's size (Content-Length, or bytes as they arrive) and its count of JSON values
(counted as chunks arrive) are held to the limits before the application parses it;
past either, the answer is 413 and the connection is closed, with no more than one
chunk past the limit ever read.

Pure ASGI (not BaseHTTPMiddleware) keeps the per-request cost to a few
microseconds, which matters on the GET /nodes/{id} path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from fastapi import HTTPException

from codegraph import metrics
from codegraph.api.limits import JsonValueCounter
from codegraph.auth import ApiKeys
from codegraph.replication.applied import Applied

log = logging.getLogger("codegraph.auth")
OPEN_PATHS = frozenset({"/health", "/ready"})
_CLOSE = (b"connection", b"close")


async def _reply(send: Any, status: int, detail: str, headers: list | None = None) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ServiceMiddleware:
    def __init__(
        self,
        app: Any,
        *,
        keys: ApiKeys,
        applied: Applied,
        read_wait: float,
        max_request_bytes: int,
        max_request_values: int,
    ) -> None:
        self.app = app
        self.keys = keys
        self.applied = applied
        self.read_wait = read_wait
        self.max_request_bytes = max_request_bytes
        self.max_request_values = max_request_values
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _observe(self, method: str, handler: str, code: int, seconds: float) -> None:
        series = self._series.get((method, handler, code))
        if series is None:  # cache label lookups: they cost more than the increments
            series = (
                metrics.HTTP_REQUESTS.labels(method, handler, str(code)),
                metrics.HTTP_DURATION.labels(method, handler),
            )
            self._series[(method, handler, code)] = series
        series[0].inc()
        series[1].observe(seconds)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        handler = "(unmatched)"

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # where this host is in the log: what a read here reflects
                applied = (b"x-codegraph-applied-seq", str(self.applied.seq).encode())
                message = {**message, "headers": [*message.get("headers", ()), applied]}
            await send(message)

        metrics.HTTP_CONCURRENT.inc()
        try:
            headers = dict(scope["headers"])
            if scope["path"] not in OPEN_PATHS and not self.keys.check(
                headers.get(b"authorization")
            ):
                handler = "(unauthenticated)"
                metrics.AUTH_FAILURES.inc()
                client = scope.get("client") or ("-", 0)
                reason = "no API key" if b"authorization" not in headers else "wrong API key"
                log.warning(
                    "authentication failed: %s for %s %s from %s (status 401)",
                    reason,
                    scope["method"],
                    scope["path"],
                    client[0],
                )
                await _reply(
                    send_and_note,
                    401,
                    "missing or invalid API key",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            wanted = headers.get(b"x-codegraph-min-seq")
            if wanted is not None and not await self._reached(wanted):
                handler = "(behind)"
                await _reply(send_and_note, *self._behind(wanted))
                return
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_request_bytes:
                handler = "(too large)"
                await _reply(
                    send_and_note,
                    413,
                    f"request body over {self.max_request_bytes} bytes (server.max_request_bytes)",
                )
                return
            with_body = scope["method"] in ("POST", "PUT", "PATCH")
            if with_body and not (  # a byte holds at most one value (see JsonValueCounter)
                length is not None and length.isdigit() and int(length) <= self.max_request_values
            ):
                receive = self._counted(receive)
            if length is None and with_body:
                try:
                    receive = await self._buffered(receive)
                except HTTPException as error:  # too many values: as the application would say
                    handler = "(too large)"
                    await _reply(send_and_note, error.status_code, error.detail, [_CLOSE])
                    return
                if receive is None:
                    handler = "(too large)"
                    await _reply(
                        send_and_note,
                        413,
                        f"request body over "
                        f"{self.max_request_bytes} bytes (server.max_request_bytes)",
                    )
                    return
            await self.app(scope, receive, send_and_note)
        finally:
            # the route's template, also when its handler raised (answered 500 further
            # out): a failing route must count against that route (the canary analysis)
            route = scope.get("route")
            if handler == "(unmatched)" and route is not None:
                handler = route.path
            metrics.HTTP_CONCURRENT.dec()
            self._observe(scope["method"], handler, status, time.perf_counter() - started)

    async def _reached(self, wanted: bytes) -> bool:
        """Whether this host has applied the log up to the sequence a client must see,
        waiting up to read_wait for it (no thread held: it polls)."""
        if not wanted.isdigit():
            return False
        target = int(wanted)
        deadline = time.monotonic() + self.read_wait
        while self.applied.seq < target and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return self.applied.seq >= target

    def _behind(self, wanted: bytes) -> tuple[int, str, list]:
        if not wanted.isdigit():
            return 400, "X-CodeGraph-Min-Seq must be a sequence number (X-CodeGraph-Seq)", []
        return (
            503,
            f"this host has applied the log up to {self.applied.seq}, not yet "
            f"{int(wanted)} (X-CodeGraph-Min-Seq) within {self.read_wait:g} s; retry",
            [(b"retry-after", b"1")],
        )

    def _counted(self, receive: Any) -> Any:
        """receive, refusing (413, then closing) a body past max_request_values JSON
        values as soon as the chunk that crosses the limit arrives."""
        counter = JsonValueCounter()
        limit = self.max_request_values

        async def counted() -> dict:
            message = await receive()
            if message["type"] == "http.request" and counter.feed(message.get("body", b"")) > limit:
                raise HTTPException(
                    413,
                    f"request body holds more than {limit} JSON values (server.max_request_values)",
                    headers={"connection": "close"},  # and read no more of it
                )
            return message

        return counted

    async def _buffered(self, receive: Any) -> Any:
        """Read a body sent without Content-Length, up to the limit; None past it."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_request_bytes:
                return None
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
