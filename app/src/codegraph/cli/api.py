"""codegraph-api: serve the API (and /metrics on a second port).

SIGHUP (systemctl reload codegraph) re-reads the API keys, the log level and
the TLS certificate without dropping connections. systemd is told when the
service is ready (Type=notify), so `systemctl start` returns once it serves.
"""

from __future__ import annotations

import logging
import signal
import sys

import uvicorn
from prometheus_client import make_asgi_app

from codegraph import __version__, metrics
from codegraph.api.app import create_app
from codegraph.api.server import HttpLimits, Listener, Server, protocol_class
from codegraph.auth import ApiKeys
from codegraph.cli import base_parser, settings_or_none
from codegraph.engine import Engine
from codegraph.errors import DatabaseInUse
from codegraph.logs import set_level, setup_logging
from codegraph.settings import ConfigError, ServerSettings, Settings, load_settings

log = logging.getLogger("codegraph.server")


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


def _uvicorn_config(
    app: object, server: ServerSettings, limits: HttpLimits, *, access_log: bool
) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        ssl_certfile=server.tls_cert or None,
        ssl_keyfile=server.tls_key or None,
        log_config=None,
        access_log=access_log,
        server_header=False,
        loop="uvloop",
        http=protocol_class(limits),
        lifespan="off",
        timeout_keep_alive=server.keepalive_timeout_seconds,
        timeout_graceful_shutdown=15,
    )
    config.load()
    return config


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
        if server_settings.tls:
            metrics.TLS_CERT_EXPIRY.set(metrics.certificate_expiry(server_settings.tls_cert))
        limits = HttpLimits(
            max_header_bytes=server_settings.max_header_bytes,
            header_timeout=server_settings.header_timeout_seconds,
            body_timeout=server_settings.body_timeout_seconds,
            tls_timeout=server_settings.tls_timeout_seconds,
        )
        app = create_app(engine, keys)
        api = _uvicorn_config(app, server_settings, limits, access_log=server_settings.access_log)
        scrape = _uvicorn_config(make_asgi_app(), server_settings, limits, access_log=False)
        contexts = [context for context in (api.ssl, scrape.ssl) if context]
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
            engine.close()
            log.info("stopped")

        listeners = [
            Listener(api, server_settings.host, server_settings.port),
            Listener(scrape, server_settings.host, server_settings.metrics_port),
        ]
        Server(listeners, limits, on_shutdown=close).run()
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
