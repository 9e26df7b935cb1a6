"""The HTTP server: uvicorn with limits on what a client may send before it is answered.

uvicorn (httptools) reads a request's headers with no size limit and no time limit:
a 100 MB header is read whole, and a connection that never finishes its headers is
kept for ever. `GuardedProtocol` adds both, and an idle limit while a body arrives:
- headers past `max_header_bytes` are answered 431 and the connection closed, having
  buffered at most that much plus one read;
- headers not complete within `header_timeout` (from the connection's start, or from
  the first byte of a request on a kept-alive connection) get 408 and a close;
- a body that stops arriving for `body_timeout` gets 408 and a close;
- a TLS handshake (or closing handshake) not done within `tls_timeout` is dropped
  (asyncio's own defaults are 60 and 30 s);
- after such an answer the connection lingers (reading and discarding what the client
  still sends, so it can read the answer) for at most LINGER_SECONDS, then is aborted.
Both ports (the API and /metrics) are served by this one server and these limits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from codegraph import metrics

log = logging.getLogger("codegraph.server")
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    tls_timeout: float


def notify_systemd(state: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header size and time limits (see the module)."""

    limits: HttpLimits  # set on the subclass `protocol_class` makes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_bytes = 0
        self._reading_headers = True
        self._last_body_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._arm(self.limits.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if (
            self._reading_headers
            and self._header_bytes > self.limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._refuse(
                431,
                f"request headers over {self.limits.max_header_bytes} bytes "
                "(server.max_header_bytes)",
                "header_too_large",
            )

    # parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:  # the next request on a kept-alive connection
            self._reading_headers = True
            self._header_bytes = 0
            self._arm(self.limits.header_timeout, self._header_timed_out)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._last_body_at = self.loop.time()
        self._arm(self.limits.body_timeout, self._body_idle)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._last_body_at = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # timers
    def _header_timed_out(self) -> None:
        self._timer = None
        self._refuse(
            408,
            f"request headers not complete within {self.limits.header_timeout:g} s "
            "(server.header_timeout_seconds)",
            "header_timeout",
        )

    def _body_idle(self) -> None:
        self._timer = None
        idle = self.loop.time() - self._last_body_at
        if self.flow.read_paused or idle < self.limits.body_timeout:
            # we stopped reading (the application is behind), or data came meanwhile
            self._arm(max(self.limits.body_timeout - idle, 0.1), self._body_idle)
            return
        self._refuse(
            408,
            f"request body stalled for {self.limits.body_timeout:g} s "
            "(server.body_timeout_seconds)",
            "body_timeout",
        )

    def _refuse(self, status: int, detail: str, reason: str) -> None:
        """Answer status with detail (unless a response is under way) and close."""
        self._disarm()
        metrics.HTTP_REFUSED.labels(reason=reason).inc()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            body = orjson.dumps({"detail": detail})
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                "content-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + body)
        if cycle is not None:
            cycle.disconnected = True  # the application's receive() now says disconnect
            cycle.message_event.set()
        self.transport.close()
        self.loop.call_later(LINGER_SECONDS, self.transport.abort)


def protocol_class(limits: HttpLimits) -> type[GuardedProtocol]:
    return type("GuardedProtocolWithLimits", (GuardedProtocol,), {"limits": limits})


@dataclass(frozen=True)
class Listener:
    config: uvicorn.Config  # the application, TLS context and protocol of this port
    host: str
    port: int


class Server(uvicorn.Server):
    """uvicorn's server on several listeners (the API port and the metrics port), with
    the TLS handshake timeout uvicorn does not offer; it tells systemd when it serves and
    closes the engine on the way out (uvicorn re-raises SIGTERM after shutdown, so
    nothing runs after that)."""

    def __init__(
        self, listeners: list[Listener], limits: HttpLimits, on_shutdown: Callable[[], None]
    ) -> None:
        super().__init__(listeners[0].config)
        self.listeners = listeners
        self.limits = limits
        self.on_shutdown = on_shutdown

    async def startup(self, sockets: list | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.servers = []
        for listener in self.listeners:
            config = listener.config

            def create_protocol(_loop=None, config=config) -> asyncio.Protocol:
                return config.http_protocol_class(
                    config=config, server_state=self.server_state, app_state={}, _loop=_loop
                )

            tls = (
                {
                    "ssl_handshake_timeout": self.limits.tls_timeout,
                    "ssl_shutdown_timeout": self.limits.tls_timeout,
                }
                if config.ssl
                else {}
            )
            try:
                server = await loop.create_server(
                    create_protocol,
                    host=listener.host,
                    port=listener.port,
                    ssl=config.ssl,
                    backlog=config.backlog,
                    **tls,
                )
            except OSError as error:
                log.error("cannot listen on %s:%d: %s", listener.host, listener.port, error)
                for started in self.servers:
                    started.close()
                raise SystemExit(1) from None
            self.servers.append(server)
        self.started = True
        notify_systemd("READY=1")

    async def shutdown(self, sockets: list | None = None) -> None:
        notify_systemd("STOPPING=1")
        await super().shutdown(sockets)
        self.on_shutdown()
