#!/usr/bin/env python3
"""Reads and writes through the load balancer until a stop file appears (or a time
limit), counting every outcome. Runs on the load balancer host, against its own front end.

    loadgen.py KEY_FILE IDS_FILE OUT_FILE [SECONDS]

Readers ask for the seeded nodes, /stats, search and /health. Writers create nodes of
their own (ids lg:<writer>:<n>), each write with an Idempotency-Key and retried with it
while the answer is a 503 or a 504 with Retry-After (the documented answers: not taken,
or outcome unknown: send it again with the same key) or the connection broke: a careful
client. Every acknowledged write is recorded with its
sequence (OUT_FILE.acked: "id seq" lines), and read back at once with
X-CodeGraph-Min-Seq through the load balancer (read your writes, on whichever host).

A request sent on a kept-alive connection that the load balancer closed at that moment
(http.client's RemoteDisconnected, a reset) is sent again once on a new connection, as
HTTP clients do for requests that are safe to repeat (a GET, or a write with an
Idempotency-Key: RFC 9110, 9.2.2); such requests are counted apart ("resent"), and one
that fails again is a failure.

The API key is re-read whenever KEY_FILE changes (a client switching keys during a
rotation); each request records which key it used. OUT_FILE gets a JSON summary;
a 503 or 504 with Retry-After is counted apart from failures.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import ssl
import sys
import threading
import time

HOST, PORT, CA = "127.0.0.1", 8443, "/etc/haproxy/codegraph-ca.crt"
STOP = "/tmp/loadgen.stop"
READERS, WRITERS = 3, 2
NODES_PER_WRITE = 10
WRITE_ATTEMPTS = 30  # a write retried this often (0.5 s apart) before it counts as failed
# what http.client raises when the other end closed a kept-alive connection
CLOSED_WHILE_IDLE = {
    "error:RemoteDisconnected",
    "error:ConnectionResetError",
    "error:BrokenPipeError",
}


class Key:
    def __init__(self, path: str) -> None:
        self.path, self.mtime, self.value, self.id = path, 0.0, "", ""
        self.lock = threading.Lock()

    def current(self) -> tuple[str, str]:
        with self.lock:
            mtime = os.stat(self.path).st_mtime
            if mtime != self.mtime:
                with open(self.path) as handle:
                    self.value = handle.read().strip()
                self.id = hashlib.sha256(self.value.encode()).hexdigest()[:8]
                self.mtime = mtime
            return self.value, self.id


class Client:
    """One connection through the load balancer; every answer noted in results."""

    def __init__(self, key: Key, results: list, lock: threading.Lock) -> None:
        self.key, self.results, self.lock = key, results, lock
        self.context = ssl.create_default_context(cafile=CA)
        self.connection: http.client.HTTPSConnection | None = None
        self.resent = 0  # requests sent again after the connection closed while idle

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[object, dict, bytes]:
        value, key_id = self.key.current()
        started = time.time()
        headers = {**(headers or {}), "Authorization": f"Bearer {value}"}
        safe_to_repeat = method == "GET" or "Idempotency-Key" in headers
        reused = self.connection is not None
        outcome, answer, data = self._send(method, path, body, headers)
        if reused and outcome in CLOSED_WHILE_IDLE and safe_to_repeat:
            self.resent += 1
            outcome, answer, data = self._send(method, path, body, headers)
        with self.lock:
            self.results.append((started, outcome, key_id, f"{method} {path}"))
        return outcome, answer, data

    def _send(
        self, method: str, path: str, body: bytes | None, headers: dict
    ) -> tuple[object, dict, bytes]:
        answer: dict = {}
        data = b""
        try:
            if self.connection is None:
                self.connection = http.client.HTTPSConnection(
                    HOST, PORT, context=self.context, timeout=30
                )
            self.connection.request(
                method,
                path,
                body=body,
                headers={"Content-Type": "application/json", **headers},
            )
            response = self.connection.getresponse()
            data = response.read()
            answer = {name.lower(): text for name, text in response.getheaders()}
            outcome: object = response.status
            if outcome in (503, 504) and "retry-after" in answer:
                outcome = f"{outcome}-retry-after"  # to be sent again (with its key)
        except Exception as error:  # every failure counts, whatever its kind
            outcome = f"error:{type(error).__name__}"
            self.connection = None
        return outcome, answer, data


def reader(client: Client, ids: list[str], deadline: float) -> None:
    rng = random.Random()
    while not os.path.exists(STOP) and time.time() < deadline:
        path = rng.choice(
            [
                "/health",
                "/stats",
                "/search?q=handler&mode=text&k=5",
                f"/nodes/{rng.choice(ids)}",
                f"/nodes/{rng.choice(ids)}",
            ]
        )
        client.request("GET", path)
        time.sleep(0.01)


def writer(client: Client, number: int, deadline: float, acked: list, lock: threading.Lock) -> None:
    batch = 0
    while not os.path.exists(STOP) and time.time() < deadline:
        ids = [f"lg:{number}:{batch:06d}:{i}" for i in range(NODES_PER_WRITE)]
        body = json.dumps(
            {"nodes": [{"id": node_id, "kind": "function", "name": "lg"} for node_id in ids]}
        ).encode()
        key = f"loadgen-{os.getpid()}-{number}-{batch}"
        for _ in range(WRITE_ATTEMPTS):  # the same key: applied once, however often sent
            outcome, answer, _ = client.request("POST", "/nodes", body, {"Idempotency-Key": key})
            if outcome == 200:
                seq = int(answer["x-codegraph-seq"])
                with lock:
                    acked.extend((node_id, seq) for node_id in ids)
                # read it back through the load balancer, from whichever host
                client.request(
                    "GET", f"/nodes/{ids[-1]}", headers={"X-CodeGraph-Min-Seq": str(seq)}
                )
                break
            if not str(outcome).endswith("-retry-after") and not str(outcome).startswith("error:"):
                break  # refused for good: counted as a failure
            time.sleep(0.5)
        batch += 1
        time.sleep(0.05)


def main() -> None:
    key_file, ids_file, out_file = sys.argv[1:4]
    deadline = time.time() + (float(sys.argv[4]) if len(sys.argv) > 4 else 1800)
    with open(ids_file) as handle:
        ids = [line.strip() for line in handle if line.strip()]
    key, results, lock = Key(key_file), [], threading.Lock()
    acked: list[tuple[str, int]] = []
    clients = [Client(key, results, lock) for _ in range(READERS + WRITERS)]
    threads = [
        threading.Thread(target=reader, args=(client, ids, deadline))
        for client in clients[:READERS]
    ] + [
        threading.Thread(target=writer, args=(client, number, deadline, acked, lock))
        for number, client in enumerate(clients[READERS:])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_outcome: dict[str, int] = {}
    by_route: dict[str, int] = {}  # "GET /search", "GET /nodes/{node_id}", "POST /nodes", ...
    per_second: dict[str, dict[int, int]] = {}  # route -> Unix second -> requests sent
    for started, outcome, _, request in results:
        by_outcome[str(outcome)] = by_outcome.get(str(outcome), 0) + 1
        route = request.split("?")[0]
        route = "GET /nodes/{node_id}" if route.startswith("GET /nodes/") else route
        by_route[route] = by_route.get(route, 0) + 1
        seconds = per_second.setdefault(route, {})
        seconds[int(started)] = seconds.get(int(started), 0) + 1
    failures = [
        {"t": t, "outcome": str(o), "key": k, "path": p}
        for t, o, k, p in results
        if o != 200 and not str(o).endswith("-retry-after")
    ]
    with open(out_file + ".acked", "w") as out:
        out.writelines(f"{node_id} {seq}\n" for node_id, seq in acked)
    summary = {
        "total": len(results),
        "by_outcome": by_outcome,
        "by_route": by_route,
        "per_second": per_second,
        "failures": failures[:200],
        "failure_count": len(failures),
        "retryable_503": by_outcome.get("503-retry-after", 0),
        "unknown_504": by_outcome.get("504-retry-after", 0),
        "resent": sum(client.resent for client in clients),
        "acknowledged_writes": len(acked) // NODES_PER_WRITE,
        "max_seq": max((seq for _, seq in acked), default=0),
        "first": min((r[0] for r in results), default=None),
        "last": max((r[0] for r in results), default=None),
    }
    with open(out_file + ".tmp", "w") as out:
        json.dump(summary, out)
    os.replace(out_file + ".tmp", out_file)


if __name__ == "__main__":
    main()
