"""What routers get from the application: the engine, a write's Idempotency-Key, and
how a write's answer carries its place in the log."""

from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response

from codegraph.engine import Engine, Written


def _engine(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(_engine)]


# A client's key for a write it may retry: the same key within two minutes is the same
# write (applied once; the retry gets the first one's answer), on any host of the fleet.
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$"),
]


def answered(response: Response, written: Written) -> dict[str, Any]:
    """The write's result; its sequence in the log goes in X-CodeGraph-Seq (send it back
    as X-CodeGraph-Min-Seq to read this write from any host)."""
    response.headers["X-CodeGraph-Seq"] = str(written.seq)
    if written.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return written.result
