"""The log a host's writes go through, chosen by [replication] mode."""

from __future__ import annotations

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


def open_log(engine: Engine) -> Log:
    if engine.settings.replication.mode == "jetstream":
        from codegraph.replication.jetstream import JetStreamLog  # needs nats-py

        return JetStreamLog(engine)
    return LocalLog(engine)
