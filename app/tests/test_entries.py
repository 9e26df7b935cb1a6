"""The replicated log's entries judged alone (codegraph.replication.entries): what every
host decides from an entry, before it touches its store."""

from __future__ import annotations

import orjson
import pytest

from codegraph import __version__
from codegraph.errors import InvalidInput
from codegraph.replication.entries import OPERATIONS, NeedsNewerRelease, decode, encode


def test_a_write_comes_back_as_it_went_in():
    mutation = {"op": "upsert", "nodes": [{"id": "a", "kind": "class", "name": "A"}], "edges": []}
    entry = decode(encode(mutation, 12.5, "f" * 64))
    assert (entry.ts, entry.mutation, entry.fingerprint) == (12.5, mutation, "f" * 64)
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
        engine.store.plan(entry.mutation, entry.ts, 1)


def test_an_operation_of_a_newer_release_asks_for_that_release():
    data = orjson.dumps({"ts": 1, "m": {"op": "merge_graphs"}, "r": "3.1.0"})
    with pytest.raises(NeedsNewerRelease, match=r"needs release 3\.1\.0 or later"):
        decode(data)
    with pytest.raises(NeedsNewerRelease, match="needs a newer release"):
        decode(orjson.dumps({"ts": 1, "m": {"op": "merge_graphs"}}))


def test_every_operation_the_store_plans_is_known_here():
    assert {"upsert", "patch", "delete_nodes", "delete_edges", "adopt"} <= OPERATIONS
