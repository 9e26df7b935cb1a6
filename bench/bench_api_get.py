"""GET /nodes/{id} req/s against a bare FastAPI /health on the same server settings.

Both: one uvicorn process, uvloop + httptools, plain HTTP on loopback, no access
log; load from wrk (one thread) with 32 connections for 10 s. CodeGraph's requests
pick a random node of 100,000 (a Lua script), and go through authentication,
metrics and a RocksDB read.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import httpx
from common import API_KEY, Server, free_port, record, save, wrk

NODES = 100_000
LUA = f"""
math.randomseed(42)
request = function()
  local i = math.random(0, {NODES - 1})
  local module = "/mod" .. (i % 1000) .. ".py:handler_" .. i
  return wrk.format("GET", "/nodes/function:src/pkg" .. (i % 100) .. module)
end
"""


def main() -> None:
    port = free_port()
    bare = subprocess.Popen([sys.executable, "bare_app.py", str(port)])
    server = Server()
    try:
        with server.client() as http:
            for start in range(0, NODES, 1000):
                http.post("/nodes", json={"nodes": [record(i) for i in range(start, start + 1000)]})
        server.wait_until_indexed()  # reads measured alone, not beside the index build
        while httpx.get(f"http://127.0.0.1:{port}/health").status_code != 200:
            time.sleep(0.1)
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
            script.write(LUA)
            script.flush()
            rounds = []
            for _ in range(3):  # interleaved, so drift hits both alike
                baseline = wrk(f"http://127.0.0.1:{port}/health")
                nodes = wrk(
                    server.url, script=script.name, headers={"Authorization": f"Bearer {API_KEY}"}
                )
                rounds.append((baseline, nodes))
        baseline = max(b for b, _ in rounds)
        ours = max(n for _, n in rounds)
        save(
            "api_get",
            {
                "nodes": NODES,
                "rounds": rounds,
                "bare_fastapi_health_rps": baseline,
                "get_node_rps": ours,
                "ratio": round(ours / baseline, 3),
                "goal": ">= 0.7",
            },
        )
    finally:
        bare.terminate()
        server.stop()


if __name__ == "__main__":
    main()
