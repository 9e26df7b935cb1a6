"""The replicated log's entries judged alone (codegraph.replication.entries): what every
host decides from an entry, before it touches its store."""

from __future__ import annotations

import time

import orjson
import pytest

from codegraph import __version__
from codegraph.errors import InvalidInput, Unavailable
from codegraph.replication.entries import (
    FORMAT,
    OPERATIONS,
    SINCE,
    NeedsNewerRelease,
    decode,
    encode,
    publishable,
)


def test_a_write_comes_back_as_it_went_in():
    mutation = {"op": "upsert", "nodes": [{"id": "a", "kind": "class", "name": "A"}], "edges": []}
    entry = decode(encode(mutation, 12.5, "f" * 64))
    assert (entry.mutation, entry.fingerprint) == (mutation, "f" * 64)
    assert orjson.loads(encode(mutation, 12.5, None))["ts"] == 12.5  # its host's clock
    assert orjson.loads(encode(mutation, 1.0, None))["r"] == __version__  # who published it


@pytest.mark.parametrize(
    "data",
    [b"\xff not json", b"[1, 2]", b'{"ts": 1}', b'{"ts": 1, "m": {"nodes": []}}', b"{}"],
    ids=["bytes", "a list", "no operation", "no op name", "empty"],
)
def test_what_is_not_an_entry_is_refused_not_skipped(data, engine):
    entry = decode(data)
    assert entry.mutation["op"] == "refused" and "entry refused" in entry.mutation["why"]
    with pytest.raises(InvalidInput, match="entry refused"):  # what every host's store says
        engine.store.plan(entry.mutation, 1.0, 1)


def test_an_operation_of_a_newer_release_asks_for_that_release():
    data = orjson.dumps({"ts": 1, "m": {"op": "merge_graphs"}, "r": "3.1.0"})
    with pytest.raises(NeedsNewerRelease, match=r"needs release 3\.1\.0 or later"):
        decode(data)
    with pytest.raises(NeedsNewerRelease, match="needs a newer release"):
        decode(orjson.dumps({"ts": 1, "m": {"op": "merge_graphs"}}))


def test_every_operation_the_store_plans_is_known_here():
    assert {"upsert", "patch", "delete_nodes", "delete_edges", "adopt"} <= OPERATIONS


def test_an_entry_stored_after_its_deadline_is_refused_as_not_applied(engine):
    mutation = {"op": "delete_nodes", "ids": ["a"]}
    data = encode(mutation, 100.0, None, deadline=110.0)
    assert decode(data, stored_at=109.9).mutation == mutation  # in time
    late = decode(data, stored_at=110.5)
    assert late.mutation["op"] == "late" and "0.5 s after its deadline" in late.mutation["why"]
    with pytest.raises(Unavailable, match="was not applied"):  # 503: what every host says
        engine.store.plan(late.mutation, 1.0, 1)
    assert decode(encode(mutation, 100.0, None), stored_at=1e12).mutation == mutation  # format 1


def test_a_newer_entry_format_asks_for_a_newer_release(engine):
    newer = {"op": "entry_format", "version": FORMAT + 1}
    with pytest.raises(NeedsNewerRelease, match=rf"reads up to {FORMAT}.*release 9\.0\.0"):
        decode(orjson.dumps({"ts": 1, "m": newer, "r": "9.0.0"}))
    plan = engine.store.plan(
        decode(encode({"op": "entry_format", "version": 2}, 1, None)).mutation, 1, 1
    )
    engine.store.commit(plan)
    assert engine.store.entry_format == 2
    with pytest.raises(InvalidInput, match="whole number"):
        engine.store.plan({"op": "entry_format", "version": "2"}, 1, 2)


@pytest.mark.parametrize(
    ("mutation", "problem"),
    [
        (
            {"op": "upsert", "nodes": [{"id": "a", "name": "A"}], "edges": []},
            "0.kind: Field required",
        ),
        ({"op": "upsert", "nodes": [], "edges": [{"source": "a"}]}, "0.target: Field required"),
        ({"op": "patch", "id": "a", "changes": {"colour": "red"}}, "colour: Extra inputs"),
        ({"op": "delete_nodes", "ids": "a"}, "Input should be a valid list"),
        ({"op": "adopt", "backup_id": "b", "digest": "not hex"}, "digest: String should match"),
        ({"op": "upsert", "nodes": []}, "it has no 'edges'"),
    ],
    ids=["node without kind", "edge without target", "unknown field", "ids", "digest", "no edges"],
)
def test_an_entry_no_request_could_make_is_refused_alike(mutation, problem, engine):
    entry = decode(encode(mutation, 1.0, None))
    assert entry.mutation["op"] == "refused", entry
    assert (
        "that no request could make" in entry.mutation["why"] and problem in entry.mutation["why"]
    )
    with pytest.raises(InvalidInput, match="no request could make"):
        engine.store.plan(entry.mutation, 1.0, 1)


def test_every_operation_a_request_makes_passes_its_check():
    node = {"id": "a", "kind": "class", "name": "A", "embedding": None}
    made = [
        {
            "op": "upsert",
            "nodes": [node],
            "edges": [{"source": "a", "target": "a", "type": "calls"}],
        },
        {"op": "patch", "id": "a", "changes": {"name": "B"}},
        {"op": "delete_nodes", "ids": ["a"]},
        {"op": "delete_edges", "edges": [{"source": "a", "target": "a", "type": "calls"}]},
        {"op": "pause_writes", "reason": "restore"},
        {"op": "resume_writes"},
        {"op": "adopt", "backup_id": "b1", "digest": "0" * 64},
        {"op": "entry_format", "version": 2},
        {"op": "fence", "withdraws": "0f" * 16},
    ]
    assert {m["op"] for m in made} == OPERATIONS
    for mutation in made:
        assert decode(encode(mutation, 1.0, None)).mutation == mutation


def test_a_new_operation_is_published_only_once_the_fleet_s_format_reaches_it(monkeypatch):
    monkeypatch.setitem(SINCE, "merge_graphs", 3)
    assert publishable("merge_graphs", 3) is None and publishable("upsert", 1) is None
    problem = publishable("merge_graphs", 2)
    assert problem and "needs the fleet's entry format 3; it is 2" in problem


def test_an_entry_is_dated_alike_however_a_host_reads_it():
    """A host applies an entry as its consumer delivers it, or as it reads it from the
    stream's leader by sequence (when its consumer lags); both must date it to the same
    number, or the hosts' records differ (they did: nats-py rounds one and truncates the
    other). The ack subject and the ISO time are what nats-server sends, parsed as
    nats-py parses them."""
    from nats.aio.msg import Msg
    from nats.js.api import RawStreamMsg

    from codegraph.replication.messages import delivered_stored_at as _delivered_stored_at
    from codegraph.replication.messages import read_stored_at as _read_stored_at

    differed = 0
    for nanoseconds in range(1_764_730_000_123_456_000, 1_764_730_000_123_466_000, 37):
        whole, fraction = divmod(nanoseconds, 1_000_000_000)
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{fraction:09d}Z"
        read = RawStreamMsg.from_response({"time": iso}).time
        for reply in (  # the two layouts of the ack subject (without and with a domain)
            f"$JS.ACK.codegraph.cg-app1.1.42.42.{nanoseconds}.0",
            f"$JS.ACK._.ACCOUNTHASH.codegraph.cg-app1.1.42.42.{nanoseconds}.0.rnd",
        ):
            assert _delivered_stored_at(reply) == _read_stored_at(read), (reply, iso)
        delivered = Msg.Metadata._from_reply(reply).timestamp
        differed += delivered.timestamp() != read.timestamp()
    assert differed > 0  # nats-py's own times: the disagreement this guards against
