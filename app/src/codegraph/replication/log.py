"""The log a host's writes go through, chosen by [replication] mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from codegraph.replication.local import LocalLog

if TYPE_CHECKING:
    from codegraph.engine import Engine


class Log(Protocol):
    mode: str

    def start(self) -> None: ...

    def close(self) -> None: ...

    def submit(
        self, mutation: dict[str, Any], key: str | None
    ) -> tuple[dict[str, Any], int, bool]: ...

    def status(self) -> dict[str, Any]: ...

    def ready(self) -> tuple[bool, str]: ...


def open_log(engine: Engine, adopt: Callable[..., dict[str, Any]] | None = None) -> Log:
    """The log of [replication] mode; adopt: what the fleet's `adopt` entry does here
    (fleet_restore.adopt: the replication layer knows nothing above it)."""
    if engine.settings.replication.mode == "jetstream":
        from codegraph.replication.jetstream import JetStreamLog  # needs nats-py

        return JetStreamLog(engine, adopt)
    return LocalLog(engine)
