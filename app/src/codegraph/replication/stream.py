"""The fleet's JetStream stream: how to reach it, and its configuration, reconciled.

`codegraph-admin stream` (run by the codegraph role once per fleet) creates the stream
or brings it to the wanted configuration, idempotently, and says what it changed.
"""

from __future__ import annotations

import ssl
from dataclasses import asdict, dataclass
from typing import Any

import nats
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from codegraph.auth import parse_keys_file
from codegraph.settings import Settings

PASSWORD_KEY = "CODEGRAPH_NATS_PASSWORD"  # noqa: S105 (the name of its line in the keys file)
ADMIN_PASSWORD_KEY = "CODEGRAPH_NATS_ADMIN_PASSWORD"  # noqa: S105 (in replication.admin_keys_file)
DUPLICATE_WINDOW_SECONDS = 120  # a write retried with the same Idempotency-Key within it


def connection_options(settings: Settings, *, admin: bool = False) -> dict[str, Any]:
    """nats.connect's arguments for this host: its servers, user, password and TLS. The
    service's user may only publish and follow the stream; admin: the NATS admin user,
    who may create and change it (its password readable by root only)."""
    replication = settings.replication
    if admin:
        user, path, key = replication.admin_user, replication.admin_keys_file, ADMIN_PASSWORD_KEY
    else:
        user, path, key = replication.user, settings.auth.keys_file, PASSWORD_KEY
    try:
        with open(path) as keys_file:
            password = parse_keys_file(keys_file.read()).get(key)
    except OSError as error:
        raise OSError(f"cannot read {key} from {path}: {error.strerror}") from None
    options: dict[str, Any] = {
        "servers": replication.servers,
        "user": user,
        "password": password,
        "dont_randomize": True,  # this host's own server first
        "connect_timeout": 2,
    }
    if any(server.startswith("tls://") for server in replication.servers):
        options["tls"] = ssl.create_default_context(cafile=replication.ca_file or None)
    return options


@dataclass(frozen=True)
class StreamSpec:
    """What the stream must be; the fields compared with what it is."""

    replicas: int
    max_age_seconds: float
    max_bytes: int
    max_msg_size: int

    def config(self, name: str, subject: str) -> js_api.StreamConfig:
        return js_api.StreamConfig(
            name=name,
            subjects=[subject],
            storage=js_api.StorageType.FILE,
            retention=js_api.RetentionPolicy.LIMITS,
            discard=js_api.DiscardPolicy.OLD,  # past its limits the oldest entries go
            num_replicas=self.replicas,
            max_age=self.max_age_seconds,
            max_bytes=self.max_bytes,
            max_msg_size=self.max_msg_size,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            allow_direct=True,
        )


def _differences(current: js_api.StreamConfig, wanted: js_api.StreamConfig) -> dict[str, Any]:
    fields = ("subjects", "num_replicas", "max_age", "max_bytes", "max_msg_size")
    fields += ("duplicate_window", "discard", "storage")
    return {
        name: {"from": getattr(current, name), "to": getattr(wanted, name)}
        for name in fields
        if getattr(current, name) != getattr(wanted, name)
    }


class StreamMissing(Exception):
    """The stream does not exist, and creating it was not asked for."""


async def ensure_stream(
    settings: Settings, spec: StreamSpec, *, check: bool, create: bool = False
) -> dict[str, Any]:
    """Update the stream to spec; with check, only say what would change. A missing stream
    is created only with create: a new fleet's first deploy. A stream lost from a running
    fleet is not quietly made anew (its hosts would take its entries as the next ones of
    the old one): docs/replication.md, 'The stream was lost or created again'."""
    replication = settings.replication
    wanted = spec.config(replication.stream, replication.subject)
    options = connection_options(settings, admin=True)
    connection = await nats.connect(**options, max_reconnect_attempts=2)
    try:
        js = connection.jetstream(timeout=10)
        try:
            current = (await js.stream_info(replication.stream)).config
        except NotFoundError:
            if not create:
                raise StreamMissing(
                    f"stream {replication.stream} does not exist. A new fleet's first deploy "
                    "creates it (codegraph_stream_create=true); a stream lost from a running "
                    "fleet is created again only by the procedure in docs/replication.md"
                ) from None
            if not check:
                await js.add_stream(wanted)
            return {
                "changed": True,
                "action": "create",
                "stream": replication.stream,
                **asdict(spec),
            }
        differences = _differences(current, wanted)
        if differences and not check:
            await js.update_stream(wanted)
        return {
            "changed": bool(differences),
            "action": "update" if differences else "none",
            "stream": replication.stream,
            "differences": differences,
        }
    finally:
        await connection.close()
