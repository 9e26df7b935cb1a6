"""The log a host's writes go through, chosen by [replication] mode."""

from __future__ import annotations

from typing import Any, Protocol

from codegraph.replication.applier import Applier
from codegraph.replication.local import LocalLog


class Log(Protocol):
    mode: str
    stalled: str  # why this host stopped applying the log, or ""

    def start(self) -> None: ...

    def close(self) -> None: ...

    def submit(
        self, mutation: dict[str, Any], key: str | None
    ) -> tuple[dict[str, Any], int, bool]: ...

    def status(self) -> dict[str, Any]: ...

    def ready(self) -> tuple[bool, str]: ...


def open_log(applier: Applier) -> Log:
    """The log of [replication] mode, applying its entries through applier."""
    if applier.settings.replication.mode == "jetstream":
        from codegraph.replication.jetstream import JetStreamLog  # needs nats-py

        return JetStreamLog(applier)
    return LocalLog(applier)
