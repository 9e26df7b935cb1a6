"""Least privilege on NATS, with the nats role's own permissions on a real cluster: the
service's user publishes to the stream's subject and reads the stream, and is refused
whatever would change or destroy it; the admin user (codegraph-admin stream) may."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import nats
import pytest
from fleet import NatsCluster, admin_settings, cluster_with_stream
from nats.js.api import ConsumerConfig, DeliverPolicy

from codegraph.replication.stream import connection_options

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[NatsCluster]:
    yield from cluster_with_stream(tmp_path_factory.mktemp("cluster"))


def _as(cluster: NatsCluster, root, *, admin: bool, action) -> tuple[object, list[str]]:
    """action(connection, jetstream)'s result, and the errors the server sent the client."""
    settings = admin_settings(cluster, root)
    errors: list[str] = []

    async def noted(error: Exception) -> None:
        errors.append(str(error))

    async def run() -> object:
        options = connection_options(settings, admin=admin)
        connection = await nats.connect(**options, error_cb=noted)
        try:
            return await action(connection, connection.jetstream(timeout=2))
        finally:
            await connection.close()

    return asyncio.run(run()), errors


async def _refused(call) -> bool:
    """Whether the call got no answer (a refused request is dropped by the server)."""
    try:
        await call
    except (TimeoutError, nats.errors.TimeoutError):
        return True
    return False


def test_the_service_may_publish_read_and_follow_the_stream(cluster, tmp_path):
    async def work(connection, js) -> tuple:
        ack = await js.publish("codegraph.mutations", b'{"ts": 1, "m": {"op": "none"}}')
        info = await js.stream_info("CODEGRAPH")
        entry = await js.get_msg("CODEGRAPH", ack.seq)
        follow = await js.subscribe(  # as the service follows it (the stream named)
            "codegraph.mutations",
            stream="CODEGRAPH",
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST),
        )
        delivered = await follow.next_msg(timeout=5)
        await follow.unsubscribe()
        return ack.seq, info.state.last_seq, entry.seq, delivered.metadata.sequence.stream

    (seq, last, read, delivered), errors = _as(cluster, tmp_path, admin=False, action=work)
    assert seq == last == read == delivered
    assert errors == []


def test_the_service_is_refused_delete_purge_update_and_other_subjects(cluster, tmp_path):
    async def destroy(connection, js) -> dict:
        before = (await js.stream_info("CODEGRAPH")).state.messages
        config = (await js.stream_info("CODEGRAPH")).config
        config.max_msgs = 1
        refused = {
            "delete": await _refused(js.delete_stream("CODEGRAPH")),
            "purge": await _refused(js.purge_stream("CODEGRAPH")),
            "update": await _refused(js.update_stream(config)),
            "foreign subject": await _refused(connection.request("other.subject", b"x", 1)),
        }
        await connection.publish("codegraph.other", b"not the stream's subject")
        await connection.flush()
        await asyncio.sleep(0.5)  # the server's error for that publish comes back async
        after = await js.stream_info("CODEGRAPH")
        return {
            "refused": refused,
            "before": before,
            "after": after.state.messages,
            "max_msgs": after.config.max_msgs,
        }

    async def publish(connection, js) -> None:
        await js.publish("codegraph.mutations", b"{}")

    _as(cluster, tmp_path, admin=False, action=publish)
    outcome, errors = _as(cluster, tmp_path, admin=False, action=destroy)
    assert all(outcome["refused"].values()), outcome
    assert outcome["after"] == outcome["before"] > 0, "the stream lost entries"
    assert outcome["max_msgs"] == -1, "the stream's configuration was changed"
    # a plain publish gets no answer either way: the server's error says it was refused
    assert any('violation for publish to "codegraph.other"' in e.lower() for e in errors), errors


def test_the_admin_may_change_the_stream(cluster, tmp_path):
    async def change(connection, js) -> int:
        config = (await js.stream_info("CODEGRAPH")).config
        config.max_msgs = 1_000_000
        return (await js.update_stream(config)).config.max_msgs

    changed, errors = _as(cluster, tmp_path, admin=True, action=change)
    assert changed == 1_000_000 and errors == []
