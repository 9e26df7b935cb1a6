"""Replication on the lab fleet (3 app hosts writing through NATS JetStream, HAProxy on
the ops host), each figure beside a baseline measured in the same run:

- ingest through the load balancer, replicated, in batches of 1,000 nodes, timed until
  every host has applied the last batch; against the same batches sent directly to
  all three hosts (today's only way to keep them equal without replication), to a
  standalone service (replication none) started beside the fleet's on each host;
- replication lag under a steady write load at half the replicated ingest rate: from
  the moment a write is answered to the moment each other host has applied it;
- catch-up of a host that missed 100,000 nodes (its service stopped while they were
  written), against the ingest rate of those writes;
- adding a host to a fleet holding many nodes (playbooks/add_host.yml), against the
  restore and catch-up steps it is made of.

Runs against the lab as `make lab` leaves it (brought up if needed) and leaves it up.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import threading
import time

from bench_deploy import APPS, SECRETS, playbook
from common import RESULTS, TOP, record, save

LB = ("10.89.10.10", 8443)
HOSTS = {"cg-lab-app1": "10.89.10.11", "cg-lab-app2": "10.89.10.12", "cg-lab-app3": "10.89.10.13"}
BATCH = 1000
INGEST_BATCHES = 45
CATCH_UP_NODES = 100_000
ADD_HOST_NODES = int(os.environ.get("BENCH_ADD_HOST_NODES", "1000000"))
STANDALONE_PORT = 18080
HOME = "/srv/bench-standalone"  # the standalone services' data, on each host
KEY = (SECRETS / "api_key").read_text().strip()
CONTEXT = ssl.create_default_context(cafile=str(SECRETS / "tls/ca.crt"))


class Api:
    """One kept-alive HTTPS connection."""

    def __init__(self, address: str, port: int) -> None:
        # the fleet CA's certificates name each host's address: verified as dialled
        self.connection = http.client.HTTPSConnection(address, port, context=CONTEXT, timeout=120)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, dict]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        payload = response.read()
        answer = {name.lower(): value for name, value in response.getheaders()}
        return response.status, answer, json.loads(payload) if payload else {}


def batches(start: int, count: int) -> list[dict]:
    return [
        {"nodes": [record(n) for n in range(first, first + BATCH)]}
        for first in range(start, start + count * BATCH, BATCH)
    ]


def applied(host: str) -> int:
    return Api(HOSTS[host], 8080).call("GET", "/replication")[2]["applied_seq"]


def wait_applied(seq: int, hosts: list[str], timeout: float = 1800) -> float:
    """Until every host has applied seq; when the last one did (time.monotonic)."""
    deadline = time.monotonic() + timeout
    clients = {host: Api(HOSTS[host], 8080) for host in hosts}
    while True:
        if all(c.call("GET", "/replication")[2]["applied_seq"] >= seq for c in clients.values()):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{hosts} did not apply {seq}")
        time.sleep(0.05)


def wait_indexed(timeout: float = 1800) -> None:
    """Until no fleet host has vector-index work left: the index is built in the
    background, and a backlog from earlier writes would slow whichever phase runs next."""
    deadline = time.monotonic() + timeout
    while True:  # new connections each time: the service closes idle ones after 5 s
        stats = [Api(HOSTS[host], 8080).call("GET", "/stats")[2] for host in APPS]
        left = sum(s["vector_index_lag"]["operations"] for s in stats)
        if left == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the vector indexes still have {left} writes to index")
        print(f"waiting for the vector indexes: {left} writes to index", file=sys.stderr)
        time.sleep(5)


def post_all(work: list[dict], target: tuple[str, int], threads: int = 3) -> tuple[float, int]:
    """POST every batch (split among threads); seconds taken and the highest seq."""
    seqs: list[int] = []
    lock = threading.Lock()

    def run(part: list[dict]) -> None:
        api = Api(*target)
        for body in part:
            status, answer, detail = api.call("POST", "/nodes", body)
            if status != 200:
                raise RuntimeError(f"{status}: {detail}")
            with lock:
                seqs.append(int(answer.get("x-codegraph-seq", 0)))

    started = time.monotonic()
    workers = [threading.Thread(target=run, args=(work[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.monotonic() - started, max(seqs, default=0)


# ------------------------------------------------------------ the baseline
STANDALONE = f"""
[server]
port = {STANDALONE_PORT}
metrics_port = {STANDALONE_PORT + 1}
tls_cert = "/opt/codegraph/config/server.crt"
tls_key = "/opt/codegraph/config/server.key"
log_level = "warning"
[auth]
keys_file = "/opt/codegraph/config/.env"
[database]
path = "/srv/bench-standalone/rocksdb"
[vector]
path = "/srv/bench-standalone/vector"
[backup]
dir = "/srv/bench-standalone/backups"
[oplog]
path = "/srv/bench-standalone/oplog"
"""


def podman(host: str, *command: str, check: bool = True) -> str:
    result = subprocess.run(
        ["podman", "exec", host, *command], capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{host}: {command}: {result.stderr[-2000:]}")
    return result.stdout


def standalone(action: str) -> None:
    """Start (or stop and remove) a service with replication none beside each host's."""
    for host in HOSTS:
        if action == "start":
            setup = (
                f"rm -rf {HOME} && mkdir -p {HOME} && chown codegraph {HOME} "
                f"&& cat > {HOME}.toml <<'EOF'\n{STANDALONE}EOF"
            )
            podman(host, "sh", "-c", setup)
            podman(
                host,
                "systemd-run", "--unit=standalone", "--uid=codegraph",
                "/opt/codegraph/bin/codegraph-api", "--config", f"{HOME}.toml",
            )  # fmt: skip
        else:
            podman(host, "systemctl", "stop", "standalone", check=False)
            podman(host, "rm", "-rf", HOME, f"{HOME}.toml", check=False)
    if action == "start":
        for host in HOSTS:
            deadline = time.monotonic() + 60
            while (
                podman(
                    host,
                    "sh",
                    "-c",
                    f"curl -sf -o /dev/null https://localhost:{STANDALONE_PORT}/health && echo up",
                    check=False,
                ).strip()
                != "up"
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the standalone service on {host} did not start")
                time.sleep(0.5)  # fmt: skip


def ingest_by_hand(work: list[dict]) -> float:
    """The same batches to every host's standalone service at once; seconds."""
    times: list[float] = []

    def one(host: str) -> None:
        times.append(post_all(work, (HOSTS[host], STANDALONE_PORT), threads=1)[0])

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(host,)) for host in HOSTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def ingest_replicated(work: list[dict]) -> float:
    started = time.monotonic()
    _, seq = post_all(work, LB)
    return wait_applied(seq, APPS) - started


# --------------------------------------------------------------------- lag
def lag_under_load(rate: float, seconds: float, start: int) -> dict:
    """Write at `rate` batches per second through the load balancer for `seconds`,
    while watching every host's applied sequence; the lag of each (entry, other host)."""
    answered: dict[int, float] = {}  # seq -> when its writer got the answer
    first_seen: dict[str, dict[int, float]] = {host: {} for host in APPS}
    stop = threading.Event()

    def watch(host: str) -> None:
        api, last = Api(HOSTS[host], 8080), 0
        while not stop.is_set():
            seq = api.call("GET", "/replication")[2]["applied_seq"]
            now = time.monotonic()
            for entry in range(last + 1, seq + 1):
                first_seen[host][entry] = now
            last = max(last, seq)
            time.sleep(0.01)

    watchers = [threading.Thread(target=watch, args=(host,)) for host in APPS]
    for watcher in watchers:
        watcher.start()
    api, interval, index = Api(*LB), 1 / rate, 0
    deadline = time.monotonic() + seconds
    answered_by: dict[int, str] = {}
    while time.monotonic() < deadline:
        started = time.monotonic()
        status, answer, _ = api.call("POST", "/nodes", batches(start + index * BATCH, 1)[0])
        if status == 200:
            seq = int(answer["x-codegraph-seq"])
            answered[seq] = time.monotonic()
            answered_by[seq] = answer.get("x-codegraph-applied-seq", "")
        index += 1
        time.sleep(max(interval - (time.monotonic() - started), 0))
    time.sleep(3)
    stop.set()
    for watcher in watchers:
        watcher.join()
    lags = [
        max(first_seen[host][seq] - at, 0.0)
        for seq, at in answered.items()
        for host in APPS
        if seq in first_seen[host]
    ]
    lags.sort()
    return {
        "writes": len(answered),
        "samples": len(lags),
        "p50_ms": round(1000 * statistics.median(lags), 1),
        "p99_ms": round(1000 * lags[int(0.99 * (len(lags) - 1))], 1),
        "max_ms": round(1000 * lags[-1], 1),
        "nodes_written": index * BATCH,
    }


# ---------------------------------------------------------------- catch-up
def catch_up(start: int) -> dict:
    podman("cg-lab-app3", "systemctl", "stop", "codegraph")
    work = batches(start, CATCH_UP_NODES // BATCH)
    began = time.monotonic()
    _, seq = post_all(work, LB)
    written = wait_applied(seq, APPS[:2]) - began
    podman("cg-lab-app3", "systemctl", "start", "codegraph")
    restarted = time.monotonic()
    caught_up = wait_applied(seq, ["cg-lab-app3"]) - restarted
    ingest_rate, catch_up_rate = CATCH_UP_NODES / written, CATCH_UP_NODES / caught_up
    return {
        "nodes": CATCH_UP_NODES,
        "ingest_seconds": round(written, 1),
        "ingest_nodes_per_second": round(ingest_rate),
        "catch_up_seconds_after_start": round(caught_up, 1),
        "catch_up_nodes_per_second": round(catch_up_rate),
        "ratio": round(catch_up_rate / ingest_rate, 2),
    }


# ---------------------------------------------------------------- add host
def add_host(start: int) -> dict:
    """Fill the fleet to ADD_HOST_NODES, then replace app3 (a new disk): add_host.yml."""
    have = Api(HOSTS["cg-lab-app1"], 8080).call("GET", "/stats")[2]["total_nodes"]
    missing = max(ADD_HOST_NODES - have, 0) // BATCH
    if missing:
        _, seq = post_all(batches(start, missing), LB)
        wait_applied(seq, APPS)
        wait_indexed()
    podman("cg-lab-app3", "sh", "-c", "systemctl stop codegraph && rm -rf /opt/codegraph/data/*")
    elapsed, output = playbook("add_host.yml", "-e", "add_host=cg-lab-app3", timed_tasks=True)
    tasks = _task_seconds(output)
    restore = tasks["Restore it (offline, as the service user)"]
    catch = tasks[
        "Wait until it has caught up with the log (then the load balancer sends it traffic)"
    ]
    bootstrap = sum(seconds for name, seconds in tasks.items() if name in BOOTSTRAP_TASKS)
    return {
        "nodes": have + missing * BATCH,  # what the fleet held (earlier runs' nodes stay)
        "add_host_seconds_total": round(elapsed, 1),
        "bootstrap_seconds": round(bootstrap, 1),
        "restore_seconds": round(restore, 1),
        "catch_up_seconds": round(catch, 1),
        "goal_seconds": round(restore + catch + 10, 1),
        "tasks": {
            name: round(seconds, 1) for name, seconds in tasks.items() if name in BOOTSTRAP_TASKS
        },
    }


BOOTSTRAP_TASKS = (
    "Take a backup on cg-lab-app1",
    "Read the login user on cg-lab-app1",
    "Pack the backup on cg-lab-app1",
    "Fetch it to the controller",
    "Remove the packed copy on cg-lab-app1",
    "Send it to the hosts that need it",
    "Unpack it there, as the service user",
    "Remove the controller's transfer copy",
    "Stop the service",
    "Set the data it had aside (not the NATS store beside it)",
    "Restore it (offline, as the service user)",
    "Start the service",
    "Wait until it has caught up with the log (then the load balancer sends it traffic)",
)


def _task_seconds(output: str) -> dict[str, float]:
    """The playbook's own tasks (not roles' "role : name") in profile_tasks' recap:
    name -> seconds."""
    recap = output.split("TASKS RECAP", 1)[-1].splitlines()
    tasks = (re.fullmatch(r"(.+?) -+ ?(\d+\.\d+)s", line.strip()) for line in recap)
    return {m[1]: float(m[2]) for m in tasks if m and " : " not in m[1]}


def main() -> None:
    """All phases; `--no-add-host` leaves out the slowest, `--add-host-only` measures
    only it and keeps the other phases' figures of the last run."""
    if subprocess.run(["podman", "container", "exists", "cg-lab-ops"]).returncode != 0:
        subprocess.run(["make", "-C", str(TOP), "lab"], check=True)
    next_id = int(time.time()) * 10_000_000  # new ids in every run: creates, never updates
    if "--add-host-only" in sys.argv:
        result = json.loads((RESULTS / "replication.json").read_text())
        result.pop("machine")
        wait_indexed()
        result["add_host"] = add_host(next_id)
        save("replication", result)
        return
    wait_indexed()
    standalone("start")
    try:
        by_hand = ingest_by_hand(batches(next_id, INGEST_BATCHES))
    finally:
        standalone("stop")
    wait_indexed()
    replicated = ingest_replicated(batches(next_id, INGEST_BATCHES))
    nodes = INGEST_BATCHES * BATCH
    result = {
        "ingest": {
            "nodes": nodes,
            "by_hand_to_all_three_seconds": round(by_hand, 2),
            "by_hand_nodes_per_second": round(nodes / by_hand),
            "replicated_seconds": round(replicated, 2),
            "replicated_nodes_per_second": round(nodes / replicated),
            "ratio": round(by_hand / replicated, 2),
        }
    }
    save("replication", result)  # each phase's figures are kept as soon as they are measured
    next_id += nodes
    rate = (nodes / replicated) / BATCH / 2  # half the replicated ingest, batches per second
    wait_indexed()
    result["lag"] = {"rate_batches_per_second": round(rate, 2), **lag_under_load(rate, 30, next_id)}
    save("replication", result)
    next_id += result["lag"]["nodes_written"]
    wait_indexed()
    result["catch_up"] = catch_up(next_id)
    save("replication", result)
    next_id += CATCH_UP_NODES
    if "--no-add-host" not in sys.argv:
        wait_indexed()
        result["add_host"] = add_host(next_id)
        save("replication", result)


if __name__ == "__main__":
    main()
