#!/usr/bin/env python3
"""Requests through the load balancer until a stop file appears (or a time limit),
counting every outcome. Runs on the load balancer host, against its own front end.

    loadgen.py KEY_FILE IDS_FILE OUT_FILE [SECONDS]

The API key is re-read whenever KEY_FILE changes (a client switching keys during a
rotation); each request records which key it used. OUT_FILE gets a JSON summary.
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
THREADS = 3


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


def worker(key: Key, ids: list[str], deadline: float, results: list, lock: threading.Lock) -> None:
    context = ssl.create_default_context(cafile=CA)
    connection = None
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
        value, key_id = key.current()
        started = time.time()
        try:
            if connection is None:
                connection = http.client.HTTPSConnection(HOST, PORT, context=context, timeout=30)
            connection.request("GET", path, headers={"Authorization": f"Bearer {value}"})
            response = connection.getresponse()
            response.read()
            outcome = response.status
        except Exception as error:  # every failure counts, whatever its kind
            outcome = f"error:{type(error).__name__}"
            connection = None
        with lock:
            results.append((started, outcome, key_id, path))
        time.sleep(0.01)


def main() -> None:
    key_file, ids_file, out_file = sys.argv[1:4]
    deadline = time.time() + (float(sys.argv[4]) if len(sys.argv) > 4 else 1800)
    with open(ids_file) as handle:
        ids = [line.strip() for line in handle if line.strip()]
    key, results, lock = Key(key_file), [], threading.Lock()
    threads = [
        threading.Thread(target=worker, args=(key, ids, deadline, results, lock))
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_outcome: dict[str, int] = {}
    for _, outcome, _, _ in results:
        by_outcome[str(outcome)] = by_outcome.get(str(outcome), 0) + 1
    failures = [
        {"t": t, "outcome": str(o), "key": k, "path": p} for t, o, k, p in results if o != 200
    ]
    summary = {
        "total": len(results),
        "by_outcome": by_outcome,
        "failures": failures[:200],
        "failure_count": len(failures),
        "first": min((r[0] for r in results), default=None),
        "last": max((r[0] for r in results), default=None),
    }
    with open(out_file + ".tmp", "w") as out:
        json.dump(summary, out)
    os.replace(out_file + ".tmp", out_file)


if __name__ == "__main__":
    main()
