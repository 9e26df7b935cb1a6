"""fsync before acknowledging (the nats role's nats_sync_always) on the lab fleet: Debian 13,
nats-server 2.10, three app hosts, the stream at three replicas.

- shown: strace follows every app host's nats-server (fsync and fdatasync, each with its
  file and its duration) while single-node writes go through the load balancer one at a
  time; for each write answered 200, which servers finished an fsync of the stream's
  files (its message blocks, or its Raft group's log) between the write's send and its
  answer. A quorum (2 of 3) is what an acknowledgement survives on.
- cost: the replicated ingest (45 batches of 1,000 nodes, as in bench_replication) and
  single-node writes (three clients), with `sync_interval: always` and without it
  (nats_sync_always=false, nats-server's default: a sync every two minutes), in the same
  run: always, without, always again (the mean of both), each switch applied by the
  converge and playbooks/nats_rolling_restart.yml.

Runs against the lab as `make lab` leaves it (brought up if needed) and leaves it as
deployed (nats_sync_always true).
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench_deploy import APPS, playbook
from bench_replication import BATCH, INGEST_BATCHES, LB, Api, batches, ingest_replicated, podman
from common import TOP, record, save

PROOF_WRITES = 40
SMALL_WRITES = 600  # single-node writes, three clients
# an fsync (or fdatasync) of a JetStream file: the stream's blocks, or its Raft group's log
TRACED = re.compile(
    r"^\d+\s+(?P<at>\d+\.\d+) f(?:data)?sync\(\d+<(?P<path>[^>]*)>\)\s*=\s*0 <(?P<took>[\d.]+)>"
)


def _nats_pid(host: str) -> str:
    """The host's nats-server, by its process id on this machine (podman top's hpid)."""
    listing = subprocess.run(
        ["podman", "top", host, "hpid", "comm"], capture_output=True, text=True, check=True
    ).stdout
    pids = [line.split()[0] for line in listing.splitlines() if line.endswith("nats-server")]
    if len(pids) != 1:
        raise RuntimeError(f"{host}: expected one nats-server, found {listing!r}")
    return pids[0]


def _syncs_always(host: str) -> bool:
    conf = podman(host, "cat", "/etc/nats-server.conf")
    return re.search(r"^\s*sync_interval:\s*always", conf, re.MULTILINE) is not None


def _one_write(api: Api, index: int) -> tuple[float, float]:
    sent = time.time()  # strace's -ttt clock: the wall clock, shared with the containers
    status, _, detail = api.call("POST", "/nodes", {"nodes": [record(index)]})
    answered = time.time()
    if status != 200:
        raise RuntimeError(f"{status}: {detail}")
    return sent, answered


def traced_writes(first_id: int) -> dict:
    """Writes one at a time under strace; per write, the servers that fsynced in time."""
    folder = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    strace = ["strace", "-f", "-ttt", "-T", "-y", "-e", "trace=fsync,fdatasync"]
    tracers = {
        host: subprocess.Popen(
            [*strace, "-o", str(folder / host), "-p", _nats_pid(host)],
            stderr=subprocess.DEVNULL,
        )
        for host in APPS
    }
    time.sleep(2)  # strace attaches to every thread of each server
    api, windows = Api(*LB), []
    try:
        for index in range(PROOF_WRITES):
            windows.append(_one_write(api, first_id + index))
            time.sleep(0.1)  # the writes' windows apart: each fsync belongs to one of them
    finally:
        for tracer in tracers.values():
            tracer.terminate()
            tracer.wait(30)
    syncs = {host: _syncs(folder / host) for host in APPS}
    quorum, by_file = 0, {"stream blocks": 0, "raft log": 0}
    for sent, answered in windows:
        synced = {
            host: [path for at, took, path in events if sent <= at and at + took <= answered]
            for host, events in syncs.items()
        }
        quorum += sum(1 for paths in synced.values() if paths) >= 2
        paths = [path for found in synced.values() for path in found]
        by_file["stream blocks"] += any("/streams/" in path for path in paths)
        by_file["raft log"] += any("/_js_/" in path for path in paths)
    return {
        "writes": len(windows),
        "acknowledged_after_a_quorum_fsynced": quorum,
        "writes_with_an_fsync_of": by_file,
        "fsyncs_traced": {host: len(events) for host, events in syncs.items()},
        "files": sorted({_shape(path) for events in syncs.values() for _, _, path in events}),
    }


def _syncs(trace: Path) -> list[tuple[float, float, str]]:
    matches = (TRACED.match(line) for line in trace.read_text().splitlines())
    return [(float(m["at"]), float(m["took"]), m["path"]) for m in matches if m]


def _shape(path: str) -> str:
    """A file's path with its numbers and Raft group's name taken out (the kinds of file)."""
    return re.sub(r"S-R3F-\w+", "S-R3F-*", re.sub(r"\d+\.blk", "N.blk", path))


def small_writes(first_id: int) -> float:
    """SMALL_WRITES single-node writes by three clients through the load balancer: per second."""

    def client(part: range) -> None:
        api = Api(*LB)
        for index in part:
            _one_write(api, first_id + index)

    started = time.monotonic()
    clients = [threading.Thread(target=client, args=(range(i, SMALL_WRITES, 3),)) for i in range(3)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    return SMALL_WRITES / (time.monotonic() - started)


def switch(sync_always: bool) -> None:
    """The role's setting, converged, then every server restarted one at a time."""
    setting = f"nats_sync_always={str(sync_always).lower()}"
    playbook("site.yml", "--limit", "codegraph", "-e", setting, mitogen=True)
    playbook("nats_rolling_restart.yml", mitogen=True)
    if any(_syncs_always(host) != sync_always for host in APPS):
        raise RuntimeError(f"the servers' sync_interval is not as {setting}")


def phase(first_id: int) -> dict:
    nodes = INGEST_BATCHES * BATCH
    ingest = ingest_replicated(batches(first_id, INGEST_BATCHES))
    return {
        "proof": traced_writes(first_id + nodes),
        "ingest_nodes_per_second": round(nodes / ingest),
        "single_writes_per_second": round(small_writes(first_id + nodes + PROOF_WRITES), 1),
    }


def main() -> None:
    if subprocess.run(["podman", "container", "exists", "cg-lab-ops"]).returncode != 0:
        subprocess.run(["make", "-C", str(TOP), "lab"], check=True)
    next_id, step = int(time.time()) * 10_000_000, 1_000_000
    if not all(_syncs_always(host) for host in APPS):
        switch(True)
    first = phase(next_id)
    switch(False)
    unsynced = phase(next_id + step)
    switch(True)
    again = phase(next_id + 2 * step)
    synced = {
        "ingest_nodes_per_second": round(
            statistics.mean([first["ingest_nodes_per_second"], again["ingest_nodes_per_second"]])
        ),
        "single_writes_per_second": round(
            statistics.mean([first["single_writes_per_second"], again["single_writes_per_second"]]),
            1,
        ),
    }
    save(
        "sync",
        {
            "always": [first, again],
            "unsynced": unsynced,
            "ingest_ratio": round(
                synced["ingest_nodes_per_second"] / unsynced["ingest_nodes_per_second"], 2
            ),
            "single_write_ratio": round(
                synced["single_writes_per_second"] / unsynced["single_writes_per_second"], 2
            ),
            "synced_mean": synced,
        },
    )


if __name__ == "__main__":
    main()
