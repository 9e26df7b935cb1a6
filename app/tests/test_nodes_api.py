"""Nodes and edges through the API, and the errors every bad input gets."""

import hashlib
import logging

from codegraph.auth import key_scope
from conftest import API_KEY, AUTH, node


def test_upsert_get_update_delete(client):
    created = client.post(
        "/nodes",
        json={
            "nodes": [
                node("file:a.py", kind="file", name="a.py", path="a.py", language="python"),
                node(
                    "function:a.py:load",
                    path="a.py",
                    language="python",
                    start_line=3,
                    end_line=9,
                    text="def load(path): ...",
                    docstring="Load a file.",
                    attributes={"async": False},
                ),
            ],
            "edges": [{"source": "file:a.py", "target": "function:a.py:load", "type": "contains"}],
        },
    )
    assert created.status_code == 200
    assert created.json() == {
        "upserted": 2,
        "created": 2,
        "updated": 0,
        "edges_upserted": 1,
        "edges_created": 1,
    }
    record = client.get("/nodes/function:a.py:load").json()
    assert record["start_line"] == 3 and record["docstring"] == "Load a file."
    assert record["version"] == 1 and record["attributes"] == {"async": False}

    again = client.post("/nodes", json={"nodes": [node("function:a.py:load", text="changed")]})
    assert again.json()["updated"] == 1 and again.json()["created"] == 0
    assert client.get("/nodes/function:a.py:load").json()["version"] == 2

    patched = client.patch("/nodes/function:a.py:load", json={"docstring": "New doc."})
    assert patched.status_code == 200
    assert patched.json()["docstring"] == "New doc." and patched.json()["text"] == "changed"
    assert patched.json()["version"] == 3

    assert client.get("/stats").json()["total_nodes"] == 2
    deleted = client.delete("/nodes/file:a.py")
    assert deleted.json() == {"deleted": 1, "edges_deleted": 1}
    assert client.get("/nodes/file:a.py").status_code == 404
    assert client.get("/nodes/function:a.py:load/edges").json()["edges"] == []
    assert client.get("/stats").json()["total_nodes"] == 1
    assert client.get("/stats").json()["total_edges"] == 0


def test_edges_and_neighbours(client):
    client.post(
        "/nodes",
        json={
            "nodes": [node(n) for n in ("m:a", "m:b", "m:c")],
            "edges": [
                {"source": "m:a", "target": "m:b", "type": "calls", "attributes": {"line": 4}},
                {"source": "m:c", "target": "m:a", "type": "imports"},
            ],
        },
    )
    edges = client.get("/nodes/m:a/edges").json()["edges"]
    assert {(e["source"], e["type"], e["target"]) for e in edges} == {
        ("m:a", "calls", "m:b"),
        ("m:c", "imports", "m:a"),
    }
    assert next(e for e in edges if e["type"] == "calls")["attributes"] == {"line": 4}
    out = client.get("/nodes/m:a/edges", params={"direction": "out"}).json()["edges"]
    assert [e["target"] for e in out] == ["m:b"]
    only_imports = client.get("/nodes/m:a/neighbors", params={"type": "imports"}).json()
    assert [n["id"] for n in only_imports["neighbors"]] == ["m:c"]
    both = client.get("/nodes/m:a/neighbors").json()["neighbors"]
    assert sorted(n["id"] for n in both) == ["m:b", "m:c"]
    removed = client.post(
        "/edges/delete", json={"edges": [{"source": "m:a", "target": "m:b", "type": "calls"}]}
    )
    assert removed.json() == {"edges_deleted": 1}
    assert (
        client.post(
            "/edges/delete", json={"edges": [{"source": "m:a", "target": "m:b", "type": "calls"}]}
        ).status_code
        == 404
    )
    assert (
        client.post(
            "/edges", json={"edges": [{"source": "m:b", "target": "m:c", "type": "inherits"}]}
        ).json()["edges_created"]
        == 1
    )


def test_ids_with_slashes_work_in_paths(client):
    client.post("/nodes", json={"nodes": [node("function:src/pkg/mod.py:Cls.run")]})
    assert client.get("/nodes/function:src/pkg/mod.py:Cls.run").json()["name"] == "Cls.run"
    assert client.get("/nodes/function:src/pkg/mod.py:Cls.run/edges").json()["edges"] == []


def test_list_pages_and_filters(client):
    nodes = [
        node(
            f"n:{i:03d}",
            kind="class" if i % 2 else "function",
            language="python" if i < 10 else "go",
            path=f"src/{i % 3}/x.py",
        )
        for i in range(25)
    ]
    client.post("/nodes", json={"nodes": nodes})
    seen, cursor = [], None
    while True:
        page = client.get(
            "/nodes", params={"limit": 7, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [n["id"] for n in page["nodes"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(n["id"] for n in nodes)
    classes = client.get("/nodes", params={"kind": "class", "limit": 100}).json()["nodes"]
    assert len(classes) == 12 and all(n["kind"] == "class" for n in classes)
    go = client.get("/nodes", params={"language": "go", "limit": 100}).json()["nodes"]
    assert len(go) == 15
    under = client.get("/nodes", params={"path_prefix": "src/1/", "limit": 100}).json()["nodes"]
    assert {n["id"] for n in under} == {f"n:{i:03d}" for i in range(25) if i % 3 == 1}


def test_a_batch_is_atomic(client):
    bad = client.post(
        "/nodes",
        json={
            "nodes": [node("ok:1"), node("ok:2")],
            "edges": [{"source": "ok:1", "target": "missing:node", "type": "calls"}],
        },
    )
    assert bad.status_code == 422
    assert "missing:node" in bad.json()["detail"]
    assert client.get("/nodes/ok:1").status_code == 404  # nothing of the batch was written
    assert client.get("/stats").json()["total_nodes"] == 0


def test_bad_input_is_a_4xx_naming_the_problem(client):
    cases = [
        (
            client.post(
                "/nodes", content=b"{not json", headers={"content-type": "application/json"}
            ),
            422,
            "json",
        ),
        (  # a lone UTF-16 surrogate cannot be stored as UTF-8
            client.post(
                "/nodes",
                content=b'{"nodes": [{"id": "x", "kind": "function", "name": "\\ud800"}]}',
                headers={"content-type": "application/json"},
            ),
            422,
            "surrogate",
        ),
        (client.post("/nodes", json={"nodes": [{"id": "x", "kind": "function"}]}), 422, "name"),
        (client.post("/nodes", json={"nodes": [node("x", start_line="three")]}), 422, "start_line"),
        (
            client.post("/nodes", json={"nodes": [node("x", start_line=9, end_line=2)]}),
            422,
            "end_line",
        ),
        (client.post("/nodes", json={"nodes": [node("x"), node("x")]}), 422, "more than once"),
        (client.post("/nodes", json={"nodes": [node("x", kind="Bad Kind")]}), 422, "kind"),
        (
            client.post("/nodes", json={"nodes": [node("x", embedding=[0.1, 0.2])]}),
            422,
            "dimension",
        ),
        (client.post("/nodes", json={"nodes": [node("x/edges")]}), 422, "must not end"),
        (client.post("/nodes", json={"nodes": [node("x", colour="red")]}), 422, "colour"),
        (
            client.post(
                "/edges", json={"edges": [{"source": "a", "target": "b", "type": "likes"}]}
            ),
            422,
            "type",
        ),
        (client.get("/nodes/does-not-exist"), 404, "does-not-exist"),
        (client.delete("/nodes/does-not-exist"), 404, "does-not-exist"),
        (client.patch("/nodes/does-not-exist", json={"name": "x"}), 404, "does-not-exist"),
        (client.patch("/nodes/x", json={"name": None}), 422, "cannot be cleared"),
        (client.get("/nodes", params={"limit": 0}), 422, "limit"),
        (client.get("/nodes/x/edges", params={"direction": "sideways"}), 422, "direction"),
    ]
    for response, status, named in cases:
        assert response.status_code == status, response.text
        assert named.lower() in response.text.lower(), response.text


def test_batch_past_the_limits_is_413(engine, settings):
    from fastapi.testclient import TestClient

    from codegraph.api.app import create_app
    from codegraph.auth import ApiKeys

    engine.settings.server.max_batch_nodes = 5
    engine.settings.server.max_request_bytes = 4096
    app = create_app(engine, ApiKeys(settings.auth.keys_file))
    with TestClient(app, headers=AUTH) as small:
        too_many = small.post("/nodes", json={"nodes": [node(f"n{i}") for i in range(6)]})
        assert too_many.status_code == 413 and "max_batch_nodes" in too_many.text
        too_big = small.post("/nodes", json={"nodes": [node("n", text="x" * 5000)]})
        assert too_big.status_code == 413 and "max_request_bytes" in too_big.text

        def chunked():  # no Content-Length: the limit still holds
            yield b'{"nodes": [{"id": "n", "kind": "function", "name": "n", "text": "'
            yield b"x" * 5000
            yield b'"}]}'

        streamed = small.post(
            "/nodes", content=chunked(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert small.get("/stats").json()["total_nodes"] == 0


def test_authentication(client, caplog):
    secret = "wrong-key-that-must-not-be-logged"
    with caplog.at_level(logging.WARNING, logger="codegraph.auth"):
        assert client.get("/stats", headers={"Authorization": ""}).status_code == 401
        assert (
            client.get("/stats", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
        )
        assert client.get("/nodes/x", headers={"Authorization": "Basic abc"}).status_code == 401
    failures = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(failures) == 3
    assert not any(secret in message for message in failures)
    assert client.get("/health", headers={"Authorization": ""}).status_code == 200
    assert client.get("/openapi.json", headers={"Authorization": ""}).status_code == 401
    assert client.get("/stats").status_code == 200


def test_an_idempotency_key_answers_its_own_request_only(client):
    key = {"Idempotency-Key": "one-request"}
    first = client.post("/nodes", json={"nodes": [node("idem:a")]}, headers=key)
    again = client.post("/nodes", json={"nodes": [node("idem:a")]}, headers=key)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    # the same key on another request: refused, not answered with the first one's result
    for reused in (
        client.post("/nodes", json={"nodes": [node("idem:b")]}, headers=key),
        client.request("DELETE", "/nodes/idem:a", headers=key),
    ):
        assert reused.status_code == 422, reused.text
        assert "used for a different request" in reused.json()["detail"]
    assert client.get("/nodes/idem:a").status_code == 200
    assert client.get("/nodes/idem:b").status_code == 404


def test_a_retry_is_the_same_request_however_the_client_spells_the_scheme(client):
    """The key's scope is the API key, not the raw header: `bearer KEY` retrying a write
    sent as `Bearer KEY` gets the first answer, not a second application."""
    key = {"Idempotency-Key": "scheme-case"}
    first = client.post("/nodes", json={"nodes": [node("scheme:a")]}, headers=key)
    lower = {**key, "Authorization": f"bearer {API_KEY}"}
    again = client.post("/nodes", json={"nodes": [node("scheme:a")]}, headers=lower)
    assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    assert key_scope(f"Bearer {API_KEY}".encode()) == key_scope(f"BEARER  {API_KEY} ".encode())
    # the scope the releases before this one computed for the usual spelling: unchanged
    old = hashlib.sha256(f"Bearer {API_KEY}".encode()).hexdigest()[:16]
    assert key_scope(f"Bearer {API_KEY}".encode()) == old


def test_an_idempotency_key_with_a_hash_sign_is_refused(client):
    """The replicated log uses KEY#2, KEY#3... for a key whose entry it withdrew: a
    client's own "abc#2" would meet that chain."""
    answer = client.post(
        "/nodes", json={"nodes": [node("hash:a")]}, headers={"Idempotency-Key": "abc#2"}
    )
    assert answer.status_code == 422 and "Idempotency-Key" in answer.text, answer.text
    assert client.get("/nodes/hash:a").status_code == 404
    fine = client.post(
        "/nodes", json={"nodes": [node("hash:b")]}, headers={"Idempotency-Key": 'a!"$%~'}
    )
    assert fine.status_code == 200, fine.text


def test_a_route_whose_handler_raises_counts_its_500_against_that_route(
    engine, settings, monkeypatch
):
    """An unhandled error is answered 500 outside the route; the request metrics must
    still name the route (not '(unmatched)'), or a release failing one route is invisible
    per route (the canary analysis judges routes)."""
    from fastapi.testclient import TestClient
    from prometheus_client import REGISTRY

    from codegraph import search as graph_search
    from codegraph.api.app import create_app
    from codegraph.auth import ApiKeys

    def failing(*args, **kwargs):
        raise RuntimeError("a bug in this route")

    labels = {"method": "GET", "handler": "/search", "code": "500"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0
    monkeypatch.setattr(graph_search, "search", failing)
    app = create_app(engine, ApiKeys(settings.auth.keys_file))
    with TestClient(app, headers=AUTH, raise_server_exceptions=False) as client:
        assert client.get("/search?q=x&mode=text").status_code == 500
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1
