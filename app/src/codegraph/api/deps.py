"""What routers get from the application: the engine, a write's Idempotency-Key, and
how a write's answer carries its place in the log."""

from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response

from codegraph.auth import key_scope
from codegraph.engine import Engine, Written


def _engine(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(_engine)]


def _idempotency_key(
    request: Request,
    key: Annotated[
        str | None,
        # printable, without "#" (the log writes a key used again as KEY#2, KEY#3...)
        Header(alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[!\x22$-~]+$"),
    ] = None,
) -> str | None:
    """The key, scoped to the API key that sent it (however the scheme is spelled): two
    clients with keys of their own never collide on one Idempotency-Key. (A client that
    switches API keys during a rotation sends a retry of an earlier write with the
    earlier API key.)"""
    if key is None:
        return None
    return f"{key_scope(request.headers.get('authorization', '').encode())}:{key}"


# A client's key for a write it may retry: the same key within two minutes is the same
# write (applied once; the retry gets the first one's answer), on any host of the fleet.
IdempotencyKey = Annotated[str | None, Depends(_idempotency_key)]


def answered(response: Response, written: Written) -> dict[str, Any]:
    """The write's result; its sequence in the log goes in X-CodeGraph-Seq (send it back
    as X-CodeGraph-Min-Seq to read this write from any host)."""
    response.headers["X-CodeGraph-Seq"] = str(written.seq)
    if written.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return written.result
