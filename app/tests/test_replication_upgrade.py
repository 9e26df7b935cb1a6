"""A rolling deploy from the previous release to this one, under writes: three hosts of
the previous release's service (its source, from this repository's history) are replaced
one at a time by this release's while clients write through every host; the fleet's
entry format is raised once all run this release (as playbooks/deploy.yml does). Every
host ends with the same content and every acknowledged write."""

from __future__ import annotations

import io
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fleet import NatsCluster, at_current_format, create_stream, start_replica, write_keys
from test_replication import _converged
from test_replication_failures import Writers, _all_there

import codegraph
from conftest import Served, start_server

pytestmark = pytest.mark.slow
# codegraph.ops 2.0.0, the previous release (its service, 1.0.0, dates entries by the
# publishing host's clock and knows no entry formats)
PREVIOUS_RELEASE = "2744b8c4cc2c0dd8a9e14a98d611145c2fb81897"
TOP = Path(__file__).resolve().parents[2]
THIS_SOURCE = Path(codegraph.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def previous_source(tmp_path_factory) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(TOP), "archive", PREVIOUS_RELEASE, "app/src"],
        capture_output=True,
        check=False,
    )
    assert archive.returncode == 0, (
        f"the previous release's commit {PREVIOUS_RELEASE} is not in this clone's history "
        f"(a shallow clone?): {archive.stderr.decode()[:300]}"
    )
    out = tmp_path_factory.mktemp("previous")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(out, filter="data")
    return out / "app" / "src"


def _previous_host(root: Path, cluster: NatsCluster, index: int, source: Path) -> Served:
    """A host of the previous release (its settings know no admin keys file)."""
    write_keys(root)
    return start_server(
        root, tls=False, env={"PYTHONPATH": str(source)}, replication=cluster.replication(index)
    )


@pytest.fixture
def previous_fleet(tmp_path, previous_source) -> Iterator[tuple[NatsCluster, list[Served]]]:
    cluster = NatsCluster.create(tmp_path / "nats")
    create_stream(cluster, tmp_path / "admin")
    hosts = [
        _previous_host(tmp_path / f"app{index}", cluster, index, previous_source)
        for index in range(3)
    ]
    yield cluster, hosts
    for host in hosts:
        host.stop(signal.SIGKILL)
    cluster.close()


def test_a_rolling_deploy_from_the_previous_release_under_writes_ends_identical(
    previous_fleet,
):
    cluster, hosts = previous_fleet
    with Writers(hosts) as writers:
        writers.wait_for(200)
        for index, host in enumerate(hosts):  # one at a time, as the rolling deploy does
            host.stop()
            hosts[index] = start_replica(
                host.root, cluster, index, env={"PYTHONPATH": str(THIS_SOURCE)}
            )
            _wait_ready(hosts[index])
            writers.wait_for(len(writers.acknowledged) + 100)
        at_current_format(hosts)  # deploy.yml's last step, once every host runs this release
        writers.wait_for(len(writers.acknowledged) + 200)
    state = _converged(hosts, timeout=60)
    assert state["applied_seq"] > 0
    _all_there(hosts, writers.acknowledged)


def _wait_ready(host: Served, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{host.url}/ready").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(f"{host.url}/ready").text
        time.sleep(0.2)


def test_this_release_has_another_version_than_the_previous_one():
    """Hosts of two releases must be told apart (GET /health, codegraph_build_info)."""
    previous = subprocess.run(
        ["git", "-C", str(TOP), "show", f"{PREVIOUS_RELEASE}:app/pyproject.toml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    current = (TOP / "app" / "pyproject.toml").read_text()

    def version(text: str) -> str:
        return next(line for line in text.splitlines() if line.startswith("version = "))

    assert version(current) != version(previous), version(current)
