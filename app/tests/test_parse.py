"""POST /parse: Python sources become nodes and edges."""

SOURCE_A = '''"""Module a."""
import os
from collections import OrderedDict


class Base:
    """A base."""

    def run(self):
        return self.helper()

    def helper(self):
        return os.getcwd()


class Child(Base):
    async def run(self):
        return load()


def load():
    def inner():
        return 1
    return inner()
'''


def test_python_files_become_nodes_and_edges(client):
    response = client.post("/parse", json={"files": [{"path": "pkg/a.py", "content": SOURCE_A}]})
    assert response.status_code == 200, response.text
    body = response.json()
    ids = {n["id"]: n for n in body["nodes"]}
    assert ids["file:pkg/a.py"]["docstring"] == "Module a."
    assert ids["class:pkg/a.py:Base"]["qualified_name"] == "pkg.a.Base"
    assert ids["function:pkg/a.py:Base.run"]["kind"] == "method"
    assert (
        ids["function:pkg/a.py:Base.run"]["start_line"],
        ids["function:pkg/a.py:Base.run"]["end_line"],
    ) == (9, 10)
    assert ids["function:pkg/a.py:Child.run"]["attributes"] == {"async": True}
    assert "function:pkg/a.py:load.<locals>.inner" in ids
    assert {"module:os", "module:collections"} <= set(ids)
    edges = {(e["source"], e["type"], e["target"]) for e in body["edges"]}
    assert ("file:pkg/a.py", "contains", "class:pkg/a.py:Base") in edges
    assert ("class:pkg/a.py:Base", "contains", "function:pkg/a.py:Base.run") in edges
    assert ("file:pkg/a.py", "imports", "module:os") in edges
    assert ("class:pkg/a.py:Child", "inherits", "class:pkg/a.py:Base") in edges
    assert ("function:pkg/a.py:Base.run", "calls", "function:pkg/a.py:Base.helper") in edges
    assert ("function:pkg/a.py:Child.run", "calls", "function:pkg/a.py:load") in edges
    assert body["stored"]["created"] == len(ids)
    assert client.get("/nodes/class:pkg/a.py:Child/edges", params={"direction": "out"}).json()[
        "edges"
    ]


def test_names_resolve_across_files_of_one_request(client):
    files = [
        {"path": "m/one.py", "content": "def shared():\n    return 1\n"},
        {
            "path": "m/two.py",
            "content": "from m.one import shared\n\ndef use():\n    return shared()\n",
        },
    ]
    body = client.post("/parse", json={"files": files, "store": False}).json()
    assert body["stored"] is None
    assert {
        "source": "function:m/two.py:use",
        "target": "function:m/one.py:shared",
        "type": "calls",
        "attributes": {},
    } in body["edges"]
    assert client.get("/stats").json()["total_nodes"] == 0


def test_parse_errors_are_422(client):
    syntax = client.post("/parse", json={"files": [{"path": "bad.py", "content": "def (:"}]})
    assert syntax.status_code == 422 and "bad.py" in syntax.text and "line 1" in syntax.text
    rust = client.post("/parse", json={"files": [{"path": "lib.rs", "content": "fn main() {}"}]})
    assert rust.status_code == 422 and "not supported" in rust.text and "python" in rust.text
    declared = client.post(
        "/parse", json={"files": [{"path": "x", "content": "", "language": "cobol"}]}
    )
    assert declared.status_code == 422 and "cobol" in declared.text
    twice = client.post("/parse", json={"files": [{"path": "a.py", "content": ""}] * 2})
    assert twice.status_code == 422
    assert client.post("/parse", json={"files": []}).status_code == 422
    assert client.get("/stats").json()["total_nodes"] == 0
