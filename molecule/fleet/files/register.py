#!/usr/bin/env python3
"""Registers through the load balancer: each client overwrites its own node with
increasing values, without an Idempotency-Key, one write at a time, until a stop file
appears. Runs on the load balancer host, against its own front end.

    register.py KEY_FILE OUT_FILE [CLIENTS]

Write v of client c is one entry holding the register reg:c (text v) and a marker node
reg:c:v, so what was applied can be read back: the markers say which values were
applied, the register which one came last. OUT_FILE gets, per client, every value and
the status it was answered (an error of the connection: "error"); nothing is retried.
A write whose connection broke before its answer (the load balancer closes the
connections of a host it marks down) has an unknown outcome, like a 504, but no answer
waited out its deadline: the client waits DEADLINE before its next write, as
docs/replication.md tells clients to.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import threading
import time

HOST, PORT, CA = "127.0.0.1", 8443, "/etc/haproxy/codegraph-ca.crt"
STOP = "/tmp/register.stop"
DEADLINE = 15  # an entry's deadline with the service's defaults is 12.5 s after it arrived


def client(name: str, key: str, answers: list[list]) -> None:
    context = ssl.create_default_context(cafile=CA)
    connection = None
    value = 0
    while not os.path.exists(STOP):
        value += 1
        register = {"id": f"reg:{name}", "kind": "variable", "name": "r", "text": str(value)}
        marker = {"id": f"reg:{name}:{value}", "kind": "variable", "name": "m"}
        body = json.dumps({"nodes": [register, marker]})
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        try:
            if connection is None:
                connection = http.client.HTTPSConnection(HOST, PORT, context=context, timeout=60)
            connection.request("POST", "/nodes", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            answers.append([value, response.status])
        except (OSError, http.client.HTTPException):
            answers.append([value, "error"])
            connection = None
            time.sleep(DEADLINE)


def main() -> None:
    key_file, out = sys.argv[1], sys.argv[2]
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with open(key_file) as handle:
        key = handle.read().strip()
    answers: dict[str, list[list]] = {f"c{index}": [] for index in range(clients)}
    threads = [
        threading.Thread(target=client, args=(name, key, answered))
        for name, answered in answers.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open(out + ".new", "w") as handle:
        json.dump(answers, handle)
    os.replace(out + ".new", out)


if __name__ == "__main__":
    main()
