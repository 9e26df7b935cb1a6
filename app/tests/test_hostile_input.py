"""Hostile request bodies: each refused with a clear, small 4xx before expensive work,
or handled correctly; never a 5xx. Each class has the reproduction that found it and
a variant, so the fix has to be the general one."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from codegraph.api.app import create_app
from codegraph.auth import ApiKeys
from conftest import AUTH, node, wait_for_index

SMALL_ANSWER = 4096  # bytes: refusals say what is wrong, they never echo the input


def _refused(response, status: int, *named: str) -> None:
    assert response.status_code == status, response.text[:500]
    assert len(response.content) < SMALL_ANSWER, len(response.content)
    for word in named:
        assert word in response.text, response.text


@pytest.fixture
def client_with(engine, settings):
    """A client of a server with these [server] settings (the client fixture's body limit
    is 1 MiB; production's is 64)."""
    clients = []

    def make(**server):
        for key, value in {"max_request_bytes": 64 << 20, **server}.items():
            setattr(engine.settings.server, key, value)
        clients.append(
            TestClient(create_app(engine, ApiKeys(settings.auth.keys_file)), headers=AUTH)
        )
        return clients[-1].__enter__()

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def roomy(client_with):
    return client_with()


# ------------------------------------------------------- sizes before validation
def test_a_million_empty_nodes_is_413_before_validation(roomy):
    client = roomy
    body = b'{"nodes":[' + b",".join([b"{}"] * 1_000_000) + b"]}"
    _refused(client.post("/nodes", content=body), 413, "max_batch_nodes", "1000000 nodes")
    one_over = {"nodes": [node(f"n{i}") for i in range(10_001)]}  # valid nodes, one too many
    _refused(client.post("/nodes", json=one_over), 413, "max_batch_nodes")
    edges = {"edges": [{}] * 100_001}
    _refused(client.post("/edges", json=edges), 413, "max_batch_edges")
    _refused(client.post("/edges/delete", json=edges), 413, "max_batch_edges")
    assert client.get("/stats").json()["total_nodes"] == 0


def test_too_many_json_values_is_413_before_parsing(client_with):
    client = client_with(max_request_values=100_000)
    body = b'{"nodes":[' + b",".join([b"{}"] * 200_000) + b"]}"
    _refused(client.post("/nodes", content=body), 413, "server.max_request_values")
    numbers = {"mode": "vector", "embedding": [0.5] * 150_000}
    _refused(client.post("/search", json=numbers), 413, "server.max_request_values")
    # commas and brackets inside strings are text, not values
    text = {"nodes": [node("n", text=",[{" * 100_000)]}
    assert client.post("/nodes", json=text).status_code == 200


def test_validation_errors_are_few_and_never_echo_the_input(client):
    answer = client.post("/nodes", json={"nodes": [{}] * 5_000})
    _refused(answer, 422)
    body = answer.json()
    assert len(body["detail"]) == 10 and body["error_count"] == 15_000
    huge = client.post("/search", json={"mode": "vector", "embedding": [0.25] * 60_000})
    _refused(huge, 422, "at most 4096")
    assert "0.25" not in huge.text


# ------------------------------------------------------------- nesting
def _nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deep_attributes_are_422_and_the_deepest_allowed_round_trips(client):
    for depth in (33, 250, 255):
        _refused(
            client.post("/nodes", json={"nodes": [node("deep", attributes=_nested(depth - 1))]}),
            422,
            "nested deeper than 32",
        )
    client.post("/nodes", json={"nodes": [node("a"), node("b")]})
    edge = {"source": "a", "target": "b", "type": "calls", "attributes": _nested(40)}
    _refused(client.post("/edges", json={"edges": [edge]}), 422, "nested deeper")
    _refused(client.patch("/nodes/a", json={"attributes": _nested(100)}), 422, "nested deeper")
    allowed = _nested(31)
    assert (
        client.post("/nodes", json={"nodes": [node("ok", attributes=allowed)]}).status_code == 200
    )
    assert client.get("/nodes/ok").json()["attributes"] == allowed


def test_a_body_nested_a_thousand_deep_is_a_small_422(client):
    for depth in (1_000, 5_000):  # within the JSON parser's limit, and past it
        body = '{"nodes": ' + "[" * depth + "]" * depth + "}"
        _refused(client.post("/nodes", content=body), 422)
        _refused(client.post("/search", content='{"q": ' + "[" * depth + "]" * depth + "}"), 422)


# ------------------------------------------------------- point-in-time dates
@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01 00:00:00",
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00-14:00",
        "9999-12-31 23:59:59",
        "9999-12-31T23:59:59-14:00",
        "2026-02-30 00:00:00",
    ],
)
def test_point_in_time_at_the_ends_of_the_calendar_is_422(client, moment):
    _refused(client.post("/recovery/point-in-time", json={"recovery_time": moment}), 422)


# ------------------------------------------------------------ vectors
def test_embeddings_past_float32_or_without_direction_are_422(client):
    dimension = 32
    for values, named in (
        ([3.5e38] * dimension, "finite 32-bit floats"),
        ([1.0] * (dimension - 1) + [-1e39], "finite 32-bit floats"),
        ([0.0] * dimension, "all zeros"),
        ([1e-50] * dimension, "all zeros"),  # rounds to zero as float32
    ):
        _refused(client.post("/nodes", json={"nodes": [node("v", embedding=values)]}), 422, named)
        search = {"mode": "vector", "embedding": values}
        _refused(client.post("/search", json=search), 422, named)
    assert client.get("/stats").json()["total_nodes"] == 0


def test_extreme_and_tiny_embeddings_that_fit_are_stored_indexed_and_found(client, engine):
    dimension = 32
    big = [3.4e38] + [0.0] * (dimension - 1)  # just inside float32: squares overflow it
    tiny = [0.0] * (dimension - 1) + [1e-45]  # the smallest denormal
    client.post(
        "/nodes", json={"nodes": [node("big", embedding=big), node("tiny", embedding=tiny)]}
    )
    wait_for_index(engine)
    for node_id, values in (("big", big), ("tiny", tiny)):
        read = client.get(f"/nodes/{node_id}", params={"include_embedding": True})
        assert read.status_code == 200
        assert np.allclose(read.json()["embedding"], np.asarray(values, dtype=np.float32))
        hits = client.post("/search", json={"mode": "vector", "embedding": values, "k": 1}).json()
        assert hits["results"][0]["node"]["id"] == node_id
    check = client.post("/integrity/check").json()
    assert check["status"] == "ok", check["problems"]


# ------------------------------------------------------------------ /parse
def test_parse_of_code_too_deep_for_the_parser_is_422(client):
    # (Python 3.13 parses a chain of 3,000 additions that 3.11 cannot: 100,000 neither)
    for source in (
        "x = " + "1 + " * 100_000 + "1",
        "lambda: " * 5000 + "1",
        "f(" * 300 + ")" * 300,
    ):
        answer = client.post("/parse", json={"files": [{"path": "deep.py", "content": source}]})
        _refused(answer, 422, "deep.py")
    nul = client.post("/parse", json={"files": [{"path": "nul.py", "content": "a\x00b"}]})
    _refused(nul, 422, "null bytes")
    assert (
        client.post(
            "/parse", json={"files": [{"path": "ok.py", "content": "def f(): pass"}]}
        ).status_code
        == 200
    )


def test_parsed_ids_follow_the_node_id_rules(client):
    cases = (
        ("pkg/edges", "def f(): pass", "/edges or /neighbors"),
        ("pkg/neighbors", "", "/edges or /neighbors"),
        ("a/" * 300 + "m.py", "x = 1", "at most 512"),
        (
            "m.py",
            "class C:\n" + "".join(f"    def {'m' * 500}{i}(self): pass\n" for i in range(2)),
            "at most 512",
        ),
    )
    for path, source, rule in cases:
        file = {"path": path, "content": source, "language": "python"}
        _refused(client.post("/parse", json={"files": [file]}), 422, rule, "POST /nodes")
    assert client.get("/stats").json()["total_nodes"] == 0


def test_parse_work_is_bounded_in_time_and_size(roomy, engine):
    client = roomy
    server = engine.settings.server
    server.max_parse_bytes = 100_000
    big = "def f():\n    return 1\n" * 6_000  # 132,000 characters
    answer = client.post(
        "/parse", json={"files": [{"path": "big.py", "content": big}], "store": False}
    )
    _refused(answer, 413, "server.max_parse_bytes")
    server.max_parse_bytes = 16 << 20
    client.app.state.parse_worker.timeout = 0.2
    slow = "def f():\n    return 1\n" * 150_000  # about a second of parsing
    answer = client.post(
        "/parse", json={"files": [{"path": "slow.py", "content": slow}], "store": False}
    )
    _refused(answer, 413, "server.parse_timeout_seconds")
    client.app.state.parse_worker.timeout = 30
    again = client.post("/parse", json={"files": [{"path": "a.py", "content": "def g(): pass"}]})
    assert again.status_code == 200  # a fresh worker took over


def test_parse_that_exhausts_its_memory_is_413_and_the_next_one_works(roomy):
    client = roomy
    worker = client.app.state.parse_worker
    worker.memory_bytes = 200 << 20
    worker.close()
    listing = "x = [" + "1," * 1_500_000 + "]"  # an AST of millions of nodes
    answer = client.post(
        "/parse", json={"files": [{"path": "huge.py", "content": listing}], "store": False}
    )
    assert answer.status_code in (413, 422), answer.text
    assert "memory" in answer.text or "too large" in answer.text
    ok = client.post("/parse", json={"files": [{"path": "a.py", "content": "def g(): pass"}]})
    assert ok.status_code == 200
