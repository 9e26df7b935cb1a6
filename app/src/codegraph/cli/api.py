"""codegraph-api: serve the API (and /metrics on a second port).

SIGHUP (systemctl reload codegraph) re-reads the API keys, the log level and
the TLS certificate without dropping connections. systemd is told when the
service is ready (Type=notify), so `systemctl start` returns once it serves.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

import uvicorn
from prometheus_client import start_http_server

from codegraph import __version__, metrics
from codegraph.api.app import create_app
from codegraph.auth import ApiKeys
from codegraph.cli import base_parser, settings_or_none
from codegraph.engine import Engine
from codegraph.errors import DatabaseInUse
from codegraph.logs import set_level, setup_logging
from codegraph.settings import ConfigError, Settings, load_settings

log = logging.getLogger("codegraph.server")


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


class Server(uvicorn.Server):
    """uvicorn's server, telling systemd about readiness and closing the engine on the
    way out (uvicorn re-raises SIGTERM after shutdown, so nothing runs after that)."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_shutdown = on_shutdown

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            notify_systemd("READY=1")

    async def shutdown(self, sockets: list | None = None) -> None:
        notify_systemd("STOPPING=1")
        await super().shutdown(sockets)
        self.on_shutdown()


def _reloader(config_path: str, keys: ApiKeys, contexts: list):
    def reload(signum: int, frame: object) -> None:
        keys.reload()
        try:
            settings = load_settings(config_path)
        except ConfigError as error:
            log.error("configuration not reloaded: %s", error)
            return
        set_level(settings.server.log_level)
        if settings.server.tls:
            for context in contexts:
                context.load_cert_chain(settings.server.tls_cert, settings.server.tls_key)
            metrics.TLS_CERT_EXPIRY.set(metrics.certificate_expiry(settings.server.tls_cert))
        log.info(
            "reloaded: API keys, log level %s%s",
            settings.server.log_level,
            ", TLS certificate" if settings.server.tls else "",
        )

    return reload


def serve(config_path: str, settings: Settings) -> int:
    setup_logging(settings.server.log_level, settings.server.log_file)
    server_settings = settings.server
    try:
        keys = ApiKeys(settings.auth.keys_file)
        engine = Engine(settings)
    except ConfigError as error:
        log.error("cannot start: %s", error)
        return 2
    except DatabaseInUse as error:
        log.error("cannot start: %s", error)
        return 3
    try:
        metrics.watch(engine.figures)
        tls = (
            {"certfile": server_settings.tls_cert, "keyfile": server_settings.tls_key}
            if server_settings.tls
            else {}
        )
        metrics_server, _ = start_http_server(
            server_settings.metrics_port, server_settings.host, **tls
        )
        if server_settings.tls:
            metrics.TLS_CERT_EXPIRY.set(metrics.certificate_expiry(server_settings.tls_cert))
        app = create_app(engine, keys, max_request_bytes=server_settings.max_request_bytes)
        config = uvicorn.Config(
            app,
            host=server_settings.host,
            port=server_settings.port,
            ssl_certfile=server_settings.tls_cert or None,
            ssl_keyfile=server_settings.tls_key or None,
            log_config=None,
            access_log=server_settings.access_log,
            server_header=False,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            timeout_graceful_shutdown=15,
        )
        config.load()
        contexts = [c for c in (config.ssl, getattr(metrics_server.socket, "context", None)) if c]
        signal.signal(signal.SIGHUP, _reloader(config_path, keys, contexts))
        scheme = "https" if server_settings.tls else "http"
        log.info(
            "codegraph %s serving %s://%s:%d (metrics on port %d), RocksDB profile %s",
            __version__,
            scheme,
            server_settings.host,
            server_settings.port,
            server_settings.metrics_port,
            settings.database.profile,
        )

        def close() -> None:
            metrics_server.shutdown()
            engine.close()
            log.info("stopped")

        Server(config, on_shutdown=close).run()
    except BaseException:
        if engine.gate.closed_for is None:
            engine.close()
        raise
    return 0


def main(argv: list[str] | None = None) -> int:
    args = base_parser("codegraph-api", __doc__.splitlines()[0]).parse_args(argv)
    settings = settings_or_none("codegraph-api", args.config)
    return 2 if settings is None else serve(args.config, settings)


if __name__ == "__main__":
    sys.exit(main())
