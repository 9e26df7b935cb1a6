"""What a replicated fleet answers is true (a real three-node NATS cluster on loopback):
a write is answered 200 only by a host that applied that very entry, 503 only when nothing
was or will be applied, and 504 (outcome unknown) when the host cannot know. An entry a
host cannot apply stops it, loudly, instead of stopping the fleet or being skipped."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
from fleet import create_stream, fresh_fleet, on_the_stream, start_replica
from test_replication import _converged

from conftest import Served, node

pytestmark = pytest.mark.slow
ADMIN = str(Path(sys.executable).with_name("codegraph-admin"))


@pytest.fixture
def fleet(tmp_path):
    """A fresh cluster and three hosts (these tests break them)."""
    yield from fresh_fleet(tmp_path)


def _stopped_saying(host: Served, words: str, timeout: float = 30) -> dict:
    """Wait until the host is not ready and says why; its /replication."""
    deadline = time.monotonic() + timeout
    while True:
        ready = httpx.get(f"{host.url}/ready")
        if ready.status_code == 503 and words in ready.json()["reason"]:
            with host.client() as http:
                return http.get("/replication").json()
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.2)


def test_a_stream_created_again_stops_every_host_instead_of_answering_for_entries_it_never_applied(
    fleet,
    tmp_path,
):
    cluster, hosts = fleet
    with hosts[0].client() as http:
        for i in range(5):
            assert http.post("/nodes", json={"nodes": [node(f"old:{i}")]}).status_code == 200
    _converged(hosts)

    async def delete(js):
        await js.delete_stream("CODEGRAPH")

    on_the_stream(cluster, tmp_path / "admin", delete)
    create_stream(cluster, tmp_path / "admin")  # its sequences start at 1 again
    with hosts[1].client() as http:
        answer = http.post("/nodes", json={"nodes": [node("new")]})
    assert answer.status_code in (503, 504), answer.text  # never 200: not applied here
    for host in hosts:
        status = _stopped_saying(host, "created again")
        assert status["stalled"]
        metrics = httpx.get(f"http://localhost:{host.metrics_port}/metrics").text
        assert "codegraph_replication_stalled 1.0" in metrics
        with host.client() as http:
            assert http.get("/nodes/new").status_code == 404


def test_an_operation_of_a_newer_release_stops_every_host_saying_which_release(
    fleet,
    tmp_path,
):
    cluster, hosts = fleet
    entry = {"ts": time.time(), "m": {"op": "merge_graphs", "from": "x"}, "r": "9.9.9"}

    async def publish(js):
        return await js.publish("codegraph.mutations", orjson.dumps(entry))

    on_the_stream(cluster, tmp_path / "admin", publish, admin=False)
    for host in hosts:
        _stopped_saying(host, "needs release 9.9.9 or later")
    with hosts[0].client() as http:
        refused = http.post("/nodes", json={"nodes": [node("after")]})
    assert refused.status_code == 503 and "cannot apply the log" in refused.text


def test_what_is_not_an_entry_is_refused_alike_everywhere_and_the_fleet_goes_on(
    fleet,
    tmp_path,
):
    cluster, hosts = fleet

    async def publish(js):
        await js.publish("codegraph.mutations", b"\x00 not an entry")
        await js.publish("codegraph.mutations", b'{"ts": 1, "m": "no operation"}')

    on_the_stream(cluster, tmp_path / "admin", publish, admin=False)
    for index, host in enumerate(hosts):
        with host.client() as http:
            answer = http.post("/nodes", json={"nodes": [node(f"after:{index}")]})
            assert answer.status_code == 200, answer.text
    _converged(hosts)
    for host in hosts:
        with host.client() as http:
            status = http.get("/replication").json()
            assert status["refused_entries"] == 2 and not status["stalled"], status
            assert http.get("/nodes/after:0").status_code == 200


def test_a_publish_the_log_does_not_answer_is_answered_by_what_the_log_holds(fleet):
    """The host's own nats-server stops for 3.5 s while a write is in flight: the service
    settles the publication with a fence through another server. 200 only if the write is
    (and stays) on every host; 503 not_applied only if it never lands, even once the
    stopped server passes it on; 504 only with outcome unknown. Sent again with its key,
    it is applied once and answered."""
    cluster, hosts = fleet
    answers: dict[str, httpx.Response] = {}

    def write() -> None:
        with hosts[0].client() as http:
            answers["write"] = http.post(
                "/nodes", json={"nodes": [node("in-flight")]}, headers={"Idempotency-Key": "k-1"}
            )

    cluster.servers[0].process.send_signal(signal.SIGSTOP)
    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(3.5)
    cluster.servers[0].process.send_signal(signal.SIGCONT)
    writer.join(60)
    answer = answers["write"]
    assert answer.status_code in (200, 503, 504), answer.text
    if answer.status_code != 200:
        wanted = "not_applied" if answer.status_code == 503 else "unknown"
        assert answer.json()["outcome"] == wanted, answer.text
    time.sleep(1)  # what the stopped server held reaches the log
    _converged(hosts)
    landed = [host.client().get("/nodes/in-flight").status_code == 200 for host in hosts]
    assert len(set(landed)) == 1  # the same everywhere
    if answer.status_code in (200, 503):
        assert all(landed) == (answer.status_code == 200), answer.text
    with hosts[1].client() as http:  # sent again with its key: applied once, answered
        again = http.post(
            "/nodes", json={"nodes": [node("in-flight")]}, headers={"Idempotency-Key": "k-1"}
        )
        assert again.status_code == 200, again.text
        if answer.status_code == 200:
            assert again.headers["x-codegraph-seq"] == answer.headers["x-codegraph-seq"]
        assert http.get("/nodes/in-flight").status_code == 200


def test_a_patch_is_answered_with_the_record_its_own_entry_produced(fleet):
    """Patches of one node through every host at once: each answer is the node as that
    patch's entry left it, whatever entries came right behind it."""
    _, hosts = fleet
    with hosts[0].client() as http:
        assert http.post("/nodes", json={"nodes": [node("patched")]}).status_code == 200
    answers: list[httpx.Response] = []

    def patch(number: int) -> None:
        with hosts[number % 3].client() as http:
            for round_ in range(5):
                name = f"P{number}-{round_}"
                answers.append(http.patch("/nodes/patched", json={"name": name}))

    threads = [threading.Thread(target=patch, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 30
    versions = set()
    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        asked = orjson.loads(answer.request.content)["name"]
        assert body["name"] == asked, (body, asked)
        versions.add(body["version"])
    assert len(versions) == 30  # each its own entry's record, not the node as it is now


def test_a_used_key_refuses_another_request_after_the_host_restarted(fleet):
    """The first answer is no longer in the host's memory: the entry in the stream says
    which request its key was used for."""
    cluster, hosts = fleet
    first_body = {"nodes": [node("keyed", name="First")]}
    with hosts[0].client() as http:
        first = http.post("/nodes", json=first_body, headers={"Idempotency-Key": "used"})
    assert first.status_code == 200, first.text
    hosts[0].stop()
    hosts[0] = start_replica(hosts[0].root, cluster, 0)
    with hosts[0].client() as http:
        other = http.post(
            "/nodes", json={"nodes": [node("other")]}, headers={"Idempotency-Key": "used"}
        )
        assert other.status_code == 422 and "different request" in other.text, other.text
        again = http.post("/nodes", json=first_body, headers={"Idempotency-Key": "used"})
        assert again.status_code == 200, again.text
        assert again.headers["x-codegraph-seq"] == first.headers["x-codegraph-seq"]
        assert http.get("/nodes/other").status_code == 404


def test_idempotency_keys_are_scoped_to_the_api_key_that_sent_them(fleet):
    """Two clients with API keys of their own, one Idempotency-Key: two writes."""
    _, hosts = fleet
    second = "second-client-" + "k" * 24
    for host in hosts:  # a second key accepted beside the first (a reload, as in a rotation)
        keys = host.root / "config" / ".env"
        keys.write_text(keys.read_text() + f"CODEGRAPH_API_KEYS_PREVIOUS={second}\n")
        host.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while (
        httpx.get(
            f"{hosts[1].url}/stats", headers={"Authorization": f"Bearer {second}"}
        ).status_code
        != 200
    ):
        assert time.monotonic() < deadline, "the second key was not accepted"
        time.sleep(0.2)
    with hosts[0].client() as http:
        mine = http.post("/nodes", json={"nodes": [node("mine")]}, headers={"Idempotency-Key": "k"})
    with hosts[1].client(second) as http:
        theirs = http.post(
            "/nodes", json={"nodes": [node("theirs")]}, headers={"Idempotency-Key": "k"}
        )
    assert mine.status_code == theirs.status_code == 200, (mine.text, theirs.text)
    assert mine.headers["x-codegraph-seq"] != theirs.headers["x-codegraph-seq"]
    _converged(hosts)
    with hosts[2].client() as http:
        assert http.get("/nodes/mine").status_code == http.get("/nodes/theirs").status_code == 200


def test_a_write_larger_than_the_log_takes_is_refused_with_413_before_it_is_sent(fleet, tmp_path):
    cluster, hosts = fleet

    async def limit(js):
        config = (await js.stream_info("CODEGRAPH")).config
        config.max_msg_size = 4096
        await js.update_stream(config)

    on_the_stream(cluster, tmp_path / "admin", limit)
    time.sleep(2.5)  # the hosts read the stream's limits every second
    with hosts[0].client() as http:
        large = http.post("/nodes", json={"nodes": [node("large", text="x" * 8000)]})
        assert large.status_code == 413 and "Nothing was applied" in large.text, large.text
        assert http.post("/nodes", json={"nodes": [node("small")]}).status_code == 200
        assert http.get("/nodes/large").status_code == 404


def test_a_lost_stream_is_made_anew_only_when_asked_and_the_fleet_goes_on_after_forget_stream(
    fleet, tmp_path
):
    """The procedure of docs/replication.md, 'The stream was lost or created again': the
    converge's `codegraph-admin stream` does not quietly create a missing stream; created
    on purpose, the hosts stop; each host, stopped, forgets the old stream and follows the
    new one from its first entry, on top of its data."""
    cluster, hosts = fleet
    with hosts[0].client() as http:
        assert http.post("/nodes", json={"nodes": [node("kept")]}).status_code == 200
        assert http.post("/backup").status_code == 200  # numbered by the old stream
    _converged(hosts)

    async def delete(js):
        await js.delete_stream("CODEGRAPH")

    on_the_stream(cluster, tmp_path / "admin", delete)
    stream = [ADMIN, "--config", str(hosts[0].config_path), "stream", "--replicas", "3"]
    stream += ["--max-age-seconds", "3600", "--max-bytes", str(1 << 30)]
    stream += ["--max-msg-size", str(64 << 20), "--apply"]
    refused = subprocess.run(stream, capture_output=True, text=True, check=False)
    assert refused.returncode == 4 and "does not exist" in refused.stderr, refused.stderr
    made = subprocess.run([*stream, "--create"], capture_output=True, text=True, check=False)
    assert made.returncode == 0 and '"action": "create"' in made.stdout, made.stderr
    for host in hosts:
        _stopped_saying(host, "created again")
    for index, host in enumerate(hosts):
        host.stop()
        forgot = subprocess.run(
            [ADMIN, "--config", str(host.config_path), "forget-stream"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert forgot.returncode == 0, forgot.stderr
        hosts[index] = start_replica(host.root, cluster, index)
    with hosts[1].client() as http:
        answer = http.post("/nodes", json={"nodes": [node("new")]})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-codegraph-seq"] == "1"  # the new stream's first entry
    state = _converged(hosts)
    assert state["applied_seq"] == 1
    for host in hosts:
        with host.client() as http:
            assert http.get("/nodes/kept").status_code == http.get("/nodes/new").status_code == 200
    time.sleep(1.1)
    moment = time.strftime("%Y-%m-%d %H:%M:%S")
    with hosts[0].client() as http:  # the backup's entry numbers are the old stream's
        assert http.post("/replication/pause", json={"reason": "pitr"}).status_code == 200
        prepared = http.post("/recovery/prepare", json={"recovery_time": moment})
        assert prepared.status_code == 422, prepared.text
        assert "does not replay across that change" in prepared.text, prepared.text
