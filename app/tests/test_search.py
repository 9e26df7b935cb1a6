"""Text, vector and hybrid search; deleted and updated nodes never come back."""

import numpy as np

from conftest import DIMENSION, node, wait_for_index


def _graph(client):
    client.post(
        "/nodes",
        json={
            "nodes": [
                node(
                    "f:parse_file",
                    name="parse_file",
                    text="def parse_file(path): read and tokenize",
                ),
                node("f:parse_json", name="parse_json", text="def parse_json(text): decode json"),
                node(
                    "c:HttpServer",
                    kind="class",
                    name="HttpServer",
                    qualified_name="net.HttpServer",
                    text="class HttpServer: serve requests over sockets",
                ),
                node("f:render", name="render_template", text="render html template with context"),
            ]
        },
    )


def test_text_search_ranks_exact_names_first(client, engine):
    _graph(client)
    results = client.get("/search", params={"q": "parse_file", "mode": "text"}).json()["results"]
    assert results[0]["node"]["id"] == "f:parse_file"
    assert {r["node"]["id"] for r in results} >= {"f:parse_file", "f:parse_json"}
    by_camel = client.get("/search", params={"q": "server", "mode": "text"}).json()["results"]
    assert [r["node"]["id"] for r in by_camel] == ["c:HttpServer"]
    classes = client.get("/search", params={"q": "parse", "mode": "text", "kind": "class"}).json()
    assert classes["results"] == []


def test_vector_and_hybrid_search_find_similar_code(client, engine):
    _graph(client)
    wait_for_index(engine)
    vector = client.get(
        "/search", params={"q": "tokenize file path", "mode": "vector", "k": 2}
    ).json()
    assert vector["results"][0]["node"]["id"] == "f:parse_file"
    hybrid = client.get("/search", params={"q": "parse json", "mode": "hybrid", "k": 3}).json()
    assert hybrid["results"][0]["node"]["id"] == "f:parse_json"


def test_client_embeddings_are_used_as_given(client, engine):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(20, DIMENSION))
    client.post(
        "/nodes",
        json={"nodes": [node(f"e:{i}", embedding=v.tolist()) for i, v in enumerate(vectors)]},
    )
    wait_for_index(engine)
    query = (vectors[13] + rng.normal(scale=0.01, size=DIMENSION)).tolist()
    found = client.post("/search", json={"embedding": query, "mode": "vector", "k": 3}).json()
    assert found["results"][0]["node"]["id"] == "e:13"
    assert found["results"][0]["score"] > 0.99
    with_embedding = client.get("/nodes/e:13", params={"include_embedding": "true"}).json()
    assert np.allclose(with_embedding["embedding"], vectors[13], atol=1e-6)
    wrong = client.post("/search", json={"embedding": [0.1] * 5, "mode": "vector"})
    assert wrong.status_code == 422 and "dimension" in wrong.text
    zero = client.post("/search", json={"embedding": [0.0] * DIMENSION, "mode": "vector"})
    assert zero.status_code == 422 and "zeros" in zero.text


def test_deleted_and_updated_nodes_never_come_back(client, engine):
    rng = np.random.default_rng(1)
    target = rng.normal(size=DIMENSION)
    others = rng.normal(size=(50, DIMENSION))
    client.post(
        "/nodes",
        json={
            "nodes": [
                node("t:deleted", embedding=target.tolist()),
                node("t:updated", embedding=(target + 0.01).tolist()),
            ]
            + [node(f"o:{i}", embedding=v.tolist()) for i, v in enumerate(others)]
        },
    )
    wait_for_index(engine)
    query = {"embedding": target.tolist(), "mode": "vector", "k": 10}
    ids = [r["node"]["id"] for r in client.post("/search", json=query).json()["results"]]
    assert ids[:2] == ["t:deleted", "t:updated"]

    # Pause the indexer so the index still holds the old vectors: the answer
    # must already be right before the index catches up.
    with engine.indexer.pause_lock:
        client.delete("/nodes/t:deleted")
        client.post("/nodes", json={"nodes": [node("t:updated", embedding=(-target).tolist())]})
        before = [r["node"]["id"] for r in client.post("/search", json=query).json()["results"]]
    wait_for_index(engine)
    after = [r["node"]["id"] for r in client.post("/search", json=query).json()["results"]]
    for ids in (before, after):
        assert "t:deleted" not in ids and "t:updated" not in ids
    assert len(after) == 10  # the filtered HNSW walk still fills k
    opposite = {"embedding": (-target).tolist(), "mode": "vector", "k": 1}
    assert client.post("/search", json=opposite).json()["results"][0]["node"]["id"] == "t:updated"
    stats = client.get("/vector/index/stats").json()
    assert stats["vectors_live"] == 51 and stats["vectors_stale"] == 2


def test_search_errors(client):
    assert client.get("/search", params={"mode": "text"}).status_code == 422
    assert client.get("/search", params={"q": "x", "mode": "fuzzy"}).status_code == 422
    assert client.get("/search", params={"q": "x", "k": 0}).status_code == 422
    assert client.post("/search", json={"mode": "vector"}).status_code == 422
    wrong = client.post("/search", json={"mode": "hybrid", "embedding": [1.0], "q": None})
    assert wrong.status_code == 422 and "dimension" in wrong.text  # found by schemathesis
