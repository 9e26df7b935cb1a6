"""Backups, restore and point-in-time recovery."""

import json
import math
import time
from pathlib import Path

from codegraph.store import backups
from codegraph.vector.index import VectorIndex
from conftest import node, wait_for_index


def _ids(client) -> list[str]:
    return [n["id"] for n in client.get("/nodes", params={"limit": 1000}).json()["nodes"]]


def _snapshot(client) -> list[dict]:
    return client.get("/nodes", params={"limit": 1000}).json()["nodes"]


def test_backup_change_restore_gives_back_exactly_the_data(client, engine, settings):
    client.post(
        "/nodes",
        json={
            "nodes": [node(f"b:{i}", text=f"body {i}") for i in range(50)],
            "edges": [{"source": "b:1", "target": "b:2", "type": "calls"}],
        },
    )
    before = _snapshot(client)
    backup = client.post("/backup").json()
    assert backup["backup_id"] and backup["nodes_total"] == 50
    assert set(backup["timings"]) == {
        "waited_for_indexer_seconds",
        "checkpoint_seconds",
        "vector_index_seconds",
        "checksums_seconds",
    }
    manifest = json.loads(
        (Path(settings.backup.dir) / backup["backup_id"] / "manifest.json").read_text()
    )
    assert any(name.startswith("rocksdb/") and name.endswith(".sst") for name in manifest["files"])
    assert "vector/index.bin" in manifest["files"]
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    assert [b["backup_id"] for b in client.get("/backup").json()["backups"]] == [
        backup["backup_id"]
    ]

    client.delete("/nodes/b:1")
    client.post("/nodes", json={"nodes": [node("b:new"), node("b:3", text="changed")]})
    restored = client.post("/backup/restore", json={"backup_id": backup["backup_id"]})
    assert restored.status_code == 200, restored.text
    assert Path(restored.json()["replaced_data_kept_at"]).is_dir()
    assert set(restored.json()["timings"]) == {
        "verify_seconds",
        "stage_and_replay_seconds",
        "swap_and_reopen_seconds",
    }
    assert _snapshot(client) == before
    assert client.get("/nodes/b:1/edges").json()["edges"][0]["target"] == "b:2"
    assert client.get("/stats").json()["total_nodes"] == 50
    wait_for_index(engine)
    assert client.post("/integrity/check").json()["status"] == "ok"


def test_a_backup_links_the_saved_vector_index_and_a_restore_catches_it_up(
    client, engine, settings
):
    client.post("/nodes", json={"nodes": [node(f"v:{i}", text=f"body {i}") for i in range(20)]})
    wait_for_index(engine)
    engine.indexer.save()
    live = Path(settings.vector.path) / "index.bin"
    saved_seq = engine.indexer.index.seq
    # changed after the save: only the queue in the checkpoint has these
    client.post("/nodes", json={"nodes": [node("v:late", text="written after the save")]})
    client.delete("/nodes/v:4")
    wait_for_index(engine)
    backup = client.post("/backup").json()
    in_backup = Path(settings.backup.dir) / backup["backup_id"] / "vector" / "index.bin"
    assert in_backup.stat().st_ino == live.stat().st_ino  # linked, not written again
    manifest = json.loads((in_backup.parent.parent / "manifest.json").read_text())
    assert manifest["index_seq"] == saved_seq < engine.indexer.index.seq

    engine.indexer.save()  # a later save replaces the live file: the backup's stays
    assert in_backup.stat().st_ino != live.stat().st_ino
    assert VectorIndex.load(in_backup).seq == saved_seq
    client.post("/nodes", json={"nodes": [node("v:after-backup", text="after")]})

    restored = client.post("/backup/restore", json={"backup_id": backup["backup_id"]})
    assert restored.status_code == 200, restored.text
    wait_for_index(engine)
    assert engine.indexer.index.seq > saved_seq  # caught up from the checkpoint's queue

    def vector_hits(query: str) -> list[str]:
        answer = client.get("/search", params={"q": query, "mode": "vector", "k": 25}).json()
        return [hit["node"]["id"] for hit in answer["results"]]

    assert "v:late" in vector_hits("written after the save")
    assert "v:4" not in vector_hits("body 4")
    assert "v:after-backup" not in vector_hits("after")
    assert client.post("/integrity/check").json()["status"] == "ok"


def test_the_first_backup_of_a_new_index_saves_it_once_and_links_it(client, settings):
    client.post("/nodes", json={"nodes": [node("n:1", text="one")]})
    live = Path(settings.vector.path) / "index.bin"
    assert not live.exists()
    backup_id = client.post("/backup").json()["backup_id"]
    in_backup = Path(settings.backup.dir) / backup_id / "vector" / "index.bin"
    assert in_backup.stat().st_ino == live.stat().st_ino


def test_a_backup_reuses_the_hashes_of_the_files_the_last_backup_linked(
    client, settings, monkeypatch
):
    client.post("/nodes", json={"nodes": [node(f"h:{i}", text=f"body {i}") for i in range(30)]})
    first = client.post("/backup").json()["backup_id"]
    hashed: list[Path] = []
    real_sha256 = backups.sha256_file

    def counting_sha256(path: Path) -> str:
        hashed.append(path)
        return real_sha256(path)

    monkeypatch.setattr(backups, "sha256_file", counting_sha256)
    second = client.post("/backup").json()["backup_id"]
    root = Path(settings.backup.dir)
    files = json.loads((root / second / "manifest.json").read_text())["files"]
    linked = {  # the SST files and the index, both hard links to the live ones
        name
        for name in files
        if name.endswith(backups.IMMUTABLE_SUFFIXES)
        and (root / first / name).exists()
        and (root / first / name).samefile(root / second / name)
    }
    hashed_names = {str(path.relative_to(root / f".staging-{second}")) for path in hashed}
    assert "vector/index.bin" in linked and any(name.endswith(".sst") for name in linked)
    assert not linked & hashed_names
    assert {name for name in files if name not in linked} <= hashed_names
    for name, entry in files.items():  # a reused hash is still the file's hash
        assert entry["sha256"] == real_sha256(root / second / name), name


def test_a_damaged_backup_is_refused_before_anything_is_replaced(client, settings):
    client.post("/nodes", json={"nodes": [node("d:1")]})
    backup_id = client.post("/backup").json()["backup_id"]
    client.post("/nodes", json={"nodes": [node("d:2")]})
    # Damage the backup's own copy (its SST files are hard links to live ones
    # until compaction replaces those, so write a new file rather than in place).
    sst = next((Path(settings.backup.dir) / backup_id / "rocksdb").glob("*.sst"))
    damaged = bytearray(sst.read_bytes())
    damaged[10:12] = b"\xff\xfe"
    sst.unlink()
    sst.write_bytes(bytes(damaged))
    refused = client.post("/backup/restore", json={"backup_id": backup_id})
    assert refused.status_code == 422 and "sha256 mismatch" in refused.text
    assert sorted(_ids(client)) == ["d:1", "d:2"]
    assert (
        client.post("/backup/restore", json={"backup_id": "20260101T000000Z-abcdef"}).status_code
        == 404
    )
    assert client.post("/backup/restore", json={"backup_id": "../../etc"}).status_code == 422
    assert client.post("/backup/restore", json={}).status_code == 422


def _tick() -> str:
    """Wait into the next second; return the second just finished, as the runbook writes it."""
    now = time.time()
    second = math.ceil(now)
    time.sleep(second - now + 0.05)
    return time.strftime(
        "%Y-%m-%d %H:%M:%S", time.localtime(second - 1 if second - 1 >= now else second)
    )


def _moment_after_now() -> str:
    """A recovery time at or after every write so far and before any later one."""
    now = time.time()
    second = math.ceil(now)
    time.sleep(second - now + 0.05)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


def test_point_in_time_recovery_gives_exactly_the_state_at_that_time(client, engine):
    client.post("/nodes", json={"nodes": [node("p:base")]})
    client.post("/backup")
    client.post("/nodes", json={"nodes": [node("p:one", text="first version")]})
    client.delete("/nodes/p:base")
    at_first = _moment_after_now()
    state_first = _snapshot(client)
    client.post("/nodes", json={"nodes": [node("p:one", text="second version"), node("p:two")]})
    at_second = _moment_after_now()
    state_second = _snapshot(client)
    client.post("/nodes", json={"nodes": [node("p:three")]})

    recovered = client.post("/recovery/point-in-time", json={"recovery_time": at_first})
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["replayed_operations"] == 2
    assert _snapshot(client) == state_first

    # A later recovery can still reach a moment of the replaced timeline.
    again = client.post("/recovery/point-in-time", json={"recovery_time": at_second})
    assert again.status_code == 200, again.text
    assert _snapshot(client) == state_second
    wait_for_index(engine)
    assert client.post("/integrity/check").json()["status"] == "ok"

    # ...and the moment right after that recovery is the recovered state.
    client.post("/nodes", json={"nodes": [node("p:four")]})
    after_recovery = _moment_after_now()
    state_after = _snapshot(client)
    client.delete("/nodes/p:four")
    assert (
        client.post("/recovery/point-in-time", json={"recovery_time": after_recovery}).status_code
        == 200
    )
    assert _snapshot(client) == state_after


def test_point_in_time_errors(client):
    assert (
        client.post(
            "/recovery/point-in-time", json={"recovery_time": "2026-01-01 00:00:00"}
        ).status_code
        == 422
    )
    client.post("/nodes", json={"nodes": [node("e:1")]})
    client.post("/backup")
    cases = {
        "yesterday at noon": "not of the form",
        "2026-13-45 99:00:00": "not of the form",
        "2000-01-01 00:00:00": "no backup at or before",
        "2999-01-01 00:00:00": "in the future",
    }
    for text, message in cases.items():
        response = client.post("/recovery/point-in-time", json={"recovery_time": text})
        assert response.status_code == 422 and message in response.text, response.text
    assert client.post("/recovery/point-in-time", json={"recovery_time": 5}).status_code == 422
    assert _ids(client) == ["e:1"]


def test_backup_retention_keeps_the_newest(client, engine):
    engine.backups.keep = 2
    made = [client.post("/backup").json()["backup_id"] for _ in range(3)]
    listed = [b["backup_id"] for b in client.get("/backup").json()["backups"]]
    assert listed == made[1:]
